//! The two table layouts calicoctl prints. `tabwriter`: `get`'s tables, Go's `text/tabwriter` as calicoctl
//! sets it up (`NewWriter(out, 5, 1, 3, ' ', 0)`: every cell, the last one too, padded to its column's widest
//! cell plus 3, at least 5). `boxed`: `ipam show`'s, go-pretty's default style (`+---+` rules, headers
//! centred, columns left-aligned unless said otherwise).

/// Header and rows, each cell tab-terminated in calicoctl's template, so every column is padded.
pub fn tabwriter(header: &[String], rows: &[Vec<String>]) -> String {
    let n = header.len();
    let width: Vec<usize> = (0..n)
        .map(|i| {
            let widest =
                std::iter::once(header).chain(rows.iter().map(Vec::as_slice)).map(|r| r.get(i).map_or(0, |c| c.chars().count())).max().unwrap_or(0);
            (widest + 3).max(5)
        })
        .collect();
    let mut out = String::new();
    for row in std::iter::once(header).chain(rows.iter().map(Vec::as_slice)) {
        for (i, w) in width.iter().enumerate() {
            let cell = row.get(i).map(String::as_str).unwrap_or("");
            out.push_str(cell);
            out.push_str(&" ".repeat(w - cell.chars().count()));
        }
        out.push('\n');
    }
    out
}

#[derive(Clone, Copy, PartialEq)]
pub enum Align {
    Left,
    Right,
}

pub fn boxed(header: &[&str], rows: &[Vec<String>], align: &[Align]) -> String {
    let n = header.len();
    let width: Vec<usize> = (0..n)
        .map(|i| rows.iter().map(|r| r.get(i).map_or(0, |c| c.chars().count())).chain([header[i].chars().count()]).max().unwrap_or(0))
        .collect();
    let rule = {
        let mut r = String::from("+");
        for w in &width {
            r.push_str(&"-".repeat(w + 2));
            r.push('+');
        }
        r.push('\n');
        r
    };
    let mut out = rule.clone();
    out.push('|');
    for (i, h) in header.iter().enumerate() {
        let pad = width[i] - h.chars().count();
        let left = pad / 2;
        out.push_str(&format!(" {}{h}{} |", " ".repeat(left), " ".repeat(pad - left)));
    }
    out.push('\n');
    out.push_str(&rule);
    for row in rows {
        out.push('|');
        for (i, w) in width.iter().enumerate() {
            let cell = row.get(i).map(String::as_str).unwrap_or("");
            let pad = " ".repeat(w - cell.chars().count());
            match align.get(i).copied().unwrap_or(Align::Left) {
                Align::Left => out.push_str(&format!(" {cell}{pad} |")),
                Align::Right => out.push_str(&format!(" {pad}{cell} |")),
            }
        }
        out.push('\n');
    }
    if !rows.is_empty() {
        out.push_str(&rule);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tabwriter_pads_every_column_like_calicoctl() {
        let h = vec!["NAME".to_string(), "CIDR".into(), "SELECTOR".into()];
        let t = tabwriter(&h, &[vec!["ippool-name1".into(), "10.0.1.0/24".into(), "foo == 'bar'".into()]]);
        assert_eq!(t, "NAME           CIDR          SELECTOR       \nippool-name1   10.0.1.0/24   foo == 'bar'   \n");
        assert_eq!(tabwriter(&["NAME".to_string()], &[vec!["a".into()]]), "NAME   \na      \n", "at least 5, plus 3 of padding");
    }

    #[test]
    fn boxed_is_go_prettys_default_style() {
        let t = boxed(
            &["PEER ADDRESS", "PEER TYPE", "STATE", "SINCE", "INFO"],
            &[vec!["172.17.8.102".into(), "node-to-node mesh".into(), "up".into(), "23:30:04".into(), "Established".into()]],
            &[],
        );
        let want = "\
+--------------+-------------------+-------+----------+-------------+
| PEER ADDRESS |     PEER TYPE     | STATE |  SINCE   |    INFO     |
+--------------+-------------------+-------+----------+-------------+
| 172.17.8.102 | node-to-node mesh | up    | 23:30:04 | Established |
+--------------+-------------------+-------+----------+-------------+
";
        assert_eq!(t, want);
    }
}
