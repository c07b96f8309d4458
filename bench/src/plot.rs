//! A dependency-free SVG grouped bar chart: categories along x, one bar per series, values labelled.

pub struct Chart<'a> {
    pub title: &'a str,
    pub y_label: &'a str,
    pub categories: Vec<String>,
    /// (series name, one value per category; NaN = no bar)
    pub series: Vec<(String, Vec<f64>)>,
}

const COLORS: [&str; 5] = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b"];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

impl Chart<'_> {
    pub fn svg(&self) -> String {
        let (w, h, left, right, top, bottom) = (760.0, 380.0, 70.0, 20.0, 40.0, 90.0);
        let plot_w = w - left - right;
        let plot_h = h - top - bottom;
        let max = self.series.iter().flat_map(|(_, v)| v.iter().copied()).filter(|v| v.is_finite()).fold(0.0_f64, f64::max);
        let max = if max <= 0.0 { 1.0 } else { nice(max * 1.1) };
        let mut s = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
             <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
             <text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">{}</text>\n",
            w / 2.0,
            esc(self.title)
        );
        for i in 0..=5 {
            let v = max * i as f64 / 5.0;
            let y = top + plot_h - plot_h * i as f64 / 5.0;
            s += &format!("<line x1=\"{left}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\n", w - right);
            s += &format!("<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n", left - 6.0, y + 4.0, fmt(v));
        }
        s += &format!(
            "<text x=\"16\" y=\"{:.1}\" transform=\"rotate(-90 16 {:.1})\" text-anchor=\"middle\">{}</text>\n",
            top + plot_h / 2.0,
            top + plot_h / 2.0,
            esc(self.y_label)
        );
        let n_cat = self.categories.len().max(1) as f64;
        let group_w = plot_w / n_cat;
        let bar_w = (group_w * 0.8) / self.series.len().max(1) as f64;
        for (ci, cat) in self.categories.iter().enumerate() {
            let gx = left + group_w * ci as f64 + group_w * 0.1;
            for (si, (_, vals)) in self.series.iter().enumerate() {
                let v = vals.get(ci).copied().unwrap_or(f64::NAN);
                if !v.is_finite() {
                    continue;
                }
                let bh = plot_h * v / max;
                let x = gx + bar_w * si as f64;
                let y = top + plot_h - bh;
                s += &format!(
                    "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"{}\"/>\n",
                    bar_w * 0.92,
                    COLORS[si % COLORS.len()]
                );
                s += &format!("<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"10\">{}</text>\n", x + bar_w * 0.46, y - 3.0, fmt(v));
            }
            s += &format!("<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n", gx + group_w * 0.4, top + plot_h + 16.0, esc(cat));
        }
        s += &format!("<line x1=\"{left}\" x2=\"{}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"black\"/>\n", w - right, top + plot_h, top + plot_h);
        for (si, (name, _)) in self.series.iter().enumerate() {
            let y = h - bottom + 40.0 + 16.0 * (si / 2) as f64;
            let x = left + (si % 2) as f64 * plot_w / 2.0;
            s += &format!("<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"12\" height=\"12\" fill=\"{}\"/>\n", y - 10.0, COLORS[si % COLORS.len()]);
            s += &format!("<text x=\"{:.1}\" y=\"{y:.1}\">{}</text>\n", x + 18.0, esc(name));
        }
        s + "</svg>\n"
    }
}

/// A round axis maximum at or above `v`.
fn nice(v: f64) -> f64 {
    let mag = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * mag).find(|c| *c >= v).unwrap_or(10.0 * mag)
}

fn fmt(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chart_has_a_bar_per_finite_value() {
        let c = Chart {
            title: "t",
            y_label: "ms",
            categories: vec!["a".into(), "b".into()],
            series: vec![("x".into(), vec![1.0, 2.0]), ("y".into(), vec![f64::NAN, 3.0])],
        };
        let svg = c.svg();
        assert_eq!(svg.matches("<rect x=").count(), 3 + 2, "3 bars + 2 legend boxes");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    }

    #[test]
    fn nice_rounds_up() {
        assert_eq!(nice(7.3), 10.0);
        assert_eq!(nice(23.0), 25.0);
        assert_eq!(nice(0.42), 0.5);
    }
}
