//! Aligned text tables (kubectl style: a header row, columns padded, no borders, so each line still splits
//! on whitespace for scripts that parse the human output).
use std::fmt;

pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Table {
        Table { headers: headers.iter().map(|h| h.to_string()).collect(), rows: Vec::new() }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.headers.len();
        let mut width: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate().take(n) {
                width[i] = width[i].max(c.chars().count());
            }
        }
        for r in std::iter::once(&self.headers).chain(&self.rows) {
            let mut line = String::new();
            for (i, w) in width.iter().enumerate() {
                let cell = r.get(i).map(String::as_str).unwrap_or("");
                line.push_str(&format!("{cell:<w$}   ", w = *w));
            }
            writeln!(f, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn columns_are_aligned() {
        let mut t = super::Table::new(&["GROUPING", "CIDR", "IPS IN USE"]);
        t.row(vec!["IP Pool".into(), "10.0.0.0/16".into(), "3 (0%)".into()]);
        let s = t.to_string();
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines[0], "GROUPING   CIDR          IPS IN USE");
        assert_eq!(lines[1], "IP Pool    10.0.0.0/16   3 (0%)");
        assert_eq!(lines[1].split_whitespace().nth(3), Some("3"), "scripts split rows on whitespace");
    }
}
