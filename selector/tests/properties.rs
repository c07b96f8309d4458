//! Property tests with a seeded generator (no extra crate; the seed is printed, and `SELECTOR_SEED=<n>` replays a
//! run): random trees rendered in random but equivalent spellings parse back to the same tree and evaluate like
//! a reference evaluator; the canonical form round-trips; and no input, valid, mutated or garbage, panics.
use selector::{Expr, Selector};
use std::collections::{BTreeMap, BTreeSet};

const LABELS: &[&str] = &["a", "b", "zone", "projectcalico.org/zone", "in", "has", "all", "not", "contains", "x-1_y.z/w"];
const VALUES: &[&str] = &["", "x", "xy", "yx", "a b", "it's", "say \"hi\"", "é", "&&", ")", "\n", "\t", "{,}"];
const FRAGMENTS: &[&str] = &[
    "(", ")", "{", "}", ",", "\"", "'", "=", "==", "!", "!=", "&", "&&", "|", "||", " ", "\t", "\n", "has(", "all(", "global(", "in", "not", "notin",
    "contains", "starts", "with", "ends", "a", "b.c/d", "-", "é", "\u{0}", "%", "x",
];

struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }
}

/// Fixed seeds so a plain `cargo test` is reproducible, plus one from the clock (or `SELECTOR_SEED`) so repeated
/// runs explore further.
fn seeds() -> Vec<u64> {
    let extra = std::env::var("SELECTOR_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(7));
    eprintln!("extra seed {extra} (replay with SELECTOR_SEED={extra})");
    vec![1, 2, 3, extra]
}

/// A random tree as the parser builds them: `And`/`Or` of two or more, sets as sets. `Not(Not(_))` only when
/// `double_not` (the parser makes one from `!(!x)` only).
fn gen_expr(r: &mut Rng, depth: usize, double_not: bool) -> Expr {
    let label = |r: &mut Rng| r.pick(LABELS).to_string();
    let value = |r: &mut Rng| r.pick(VALUES).to_string();
    let set = |r: &mut Rng| (0..r.below(4)).map(|_| r.pick(VALUES).to_string()).collect::<BTreeSet<_>>();
    if depth == 0 || r.chance(35) {
        return match r.below(11) {
            0 => Expr::All,
            1 => Expr::Global,
            2 => Expr::Has(label(r)),
            3 => Expr::Eq(label(r), value(r)),
            4 => Expr::Ne(label(r), value(r)),
            5 => Expr::Contains(label(r), value(r)),
            6 => Expr::StartsWith(label(r), value(r)),
            7 => Expr::EndsWith(label(r), value(r)),
            8 => Expr::In(label(r), set(r)),
            9 => Expr::NotIn(label(r), set(r)),
            _ => Expr::Has(label(r)),
        };
    }
    match r.below(3) {
        0 => {
            let inner = gen_expr(r, depth - 1, double_not);
            if matches!(inner, Expr::Not(_)) && !double_not {
                inner
            } else {
                Expr::Not(Box::new(inner))
            }
        }
        1 => Expr::And((0..2 + r.below(3)).map(|_| gen_expr(r, depth - 1, double_not)).collect()),
        _ => Expr::Or((0..2 + r.below(3)).map(|_| gen_expr(r, depth - 1, double_not)).collect()),
    }
}

fn space(r: &mut Rng) -> &'static str {
    ["", "", " ", "\t", "  ", " \t "][r.below(6)]
}

/// At least one space: between a label and a word operator.
fn gap(r: &mut Rng) -> &'static str {
    [" ", " ", "\t", "  "][r.below(4)]
}

fn quote(r: &mut Rng, v: &str) -> String {
    let q = match (v.contains('"'), v.contains('\'')) {
        (true, _) => '\'',
        (_, true) => '"',
        _ if r.chance(50) => '\'',
        _ => '"',
    };
    format!("{q}{v}{q}")
}

/// Some spelling of `e` that must parse back to exactly `e`.
fn render(r: &mut Rng, e: &Expr) -> String {
    let term = match e {
        Expr::And(es) | Expr::Or(es) => {
            let is_and = matches!(e, Expr::And(_));
            let parts: Vec<String> = es
                .iter()
                .map(|x| {
                    // Same-kind children need parentheses (else they flatten), as does an `||` inside `&&`.
                    let must = matches!((is_and, x), (true, Expr::And(_) | Expr::Or(_)) | (false, Expr::Or(_)));
                    let s = render(r, x);
                    if must || r.chance(10) {
                        format!("({}{s}{})", space(r), space(r))
                    } else {
                        s
                    }
                })
                .collect();
            let op = if is_and { "&&" } else { "||" };
            return parts.iter().enumerate().fold(String::new(), |mut out, (i, p)| {
                if i > 0 {
                    out.push_str(space(r));
                    out.push_str(op);
                    out.push_str(space(r));
                }
                out.push_str(p);
                out
            });
        }
        Expr::Not(inner) => match **inner {
            Expr::Not(_) | Expr::And(_) | Expr::Or(_) => format!("!{}({})", space(r), render(r, inner)),
            _ => format!("{}{}{}", "!!".repeat(r.below(2)), "!", space(r)) + &render(r, inner),
        },
        Expr::All => format!("all({})", space(r)),
        Expr::Global => format!("global({})", space(r)),
        Expr::Has(k) => format!("has({}{k}{})", space(r), space(r)),
        Expr::Eq(k, v) => format!("{k}{}=={}{}", space(r), space(r), quote(r, v)),
        Expr::Ne(k, v) => format!("{k}{}!={}{}", space(r), space(r), quote(r, v)),
        Expr::Contains(k, v) => format!("{k}{}contains{}{}", gap(r), space(r), quote(r, v)),
        Expr::StartsWith(k, v) => format!("{k}{}{}{}{}", gap(r), ["starts with", "startswith", "starts \t with"][r.below(3)], space(r), quote(r, v)),
        Expr::EndsWith(k, v) => format!("{k}{}{}{}{}", gap(r), ["ends with", "endswith", "ends  with"][r.below(3)], space(r), quote(r, v)),
        Expr::In(k, vs) | Expr::NotIn(k, vs) => {
            let op = if matches!(e, Expr::In(..)) { "in" } else { ["not in", "notin", "not\tin"][r.below(3)] };
            let mut items: Vec<String> = vs.iter().map(|v| quote(r, v)).collect();
            if let Some(dup) = items.first().cloned().filter(|_| r.chance(30)) {
                items.push(dup);
            }
            for i in (1..items.len()).rev() {
                items.swap(i, r.below(i + 1));
            }
            let sep = format!("{},{}", space(r), space(r));
            let trailing = if !items.is_empty() && r.chance(30) { "," } else { "" };
            format!("{k}{}{op}{}{{{}{}{trailing}{}}}", gap(r), space(r), space(r), items.join(&sep), space(r))
        }
    };
    // An even run of `!` changes nothing.
    if r.chance(10) {
        format!("!!{}{term}", space(r))
    } else {
        term
    }
}

type LabelList = Vec<(String, String)>;

fn gen_labels(r: &mut Rng) -> LabelList {
    let mut out: LabelList = Vec::new();
    for k in LABELS {
        if r.chance(40) {
            let v = match r.below(3) {
                0 => r.pick(VALUES).to_string(),
                1 => format!("{}{}", r.pick(VALUES), r.pick(VALUES)),
                _ => format!("{}{}{}", r.pick(VALUES), r.pick(VALUES), r.pick(VALUES)),
            };
            out.push((k.to_string(), v));
        }
    }
    out
}

/// Calico's semantics written out another way: a linear scan of the labels, `!=` and `not in` as negations,
/// `in` as a disjunction of `==`, prefixes and suffixes by byte comparison.
fn reference(e: &Expr, labels: &LabelList) -> bool {
    let value = |k: &str| labels.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_bytes());
    let eq = |k: &str, v: &str| value(k) == Some(v.as_bytes());
    match e {
        Expr::All | Expr::Global => true,
        Expr::Has(k) => value(k).is_some(),
        Expr::Eq(k, v) => eq(k, v),
        Expr::Ne(k, v) => !eq(k, v),
        Expr::Contains(k, v) => value(k).is_some_and(|x| v.is_empty() || x.windows(v.len()).any(|w| w == v.as_bytes())),
        Expr::StartsWith(k, v) => value(k).is_some_and(|x| x.len() >= v.len() && &x[..v.len()] == v.as_bytes()),
        Expr::EndsWith(k, v) => value(k).is_some_and(|x| x.len() >= v.len() && &x[x.len() - v.len()..] == v.as_bytes()),
        Expr::In(k, vs) => vs.iter().any(|v| eq(k, v)),
        Expr::NotIn(k, vs) => !vs.iter().any(|v| eq(k, v)),
        Expr::Not(x) => !reference(x, labels),
        Expr::And(xs) => xs.iter().fold(true, |acc, x| acc & reference(x, labels)),
        Expr::Or(xs) => xs.iter().fold(false, |acc, x| acc | reference(x, labels)),
    }
}

fn as_map(labels: &LabelList) -> BTreeMap<String, String> {
    labels.iter().cloned().collect()
}

#[test]
fn random_spellings_parse_to_the_tree_and_evaluate_like_the_reference() {
    for seed in seeds() {
        let mut r = Rng::new(seed);
        for _ in 0..3000 {
            let e = gen_expr(&mut r, 4, true);
            let src = format!("{}{}{}", space(&mut r), render(&mut r, &e), space(&mut r));
            let parsed = Selector::parse(&src).unwrap_or_else(|err| panic!("seed {seed}: {src:?} for {e:?}: {err}"));
            assert_eq!(parsed.expr(), &e, "seed {seed}: {src:?}");
            for _ in 0..8 {
                let l = gen_labels(&mut r);
                assert_eq!(parsed.matches(&as_map(&l)), reference(&e, &l), "seed {seed}: {src:?} on {l:?}");
            }
        }
    }
}

#[test]
fn canonical_form_round_trips() {
    for seed in seeds() {
        let mut r = Rng::new(seed);
        for _ in 0..3000 {
            let e = gen_expr(&mut r, 5, false);
            let shown = e.to_string();
            let back = Selector::parse(&shown).unwrap_or_else(|err| panic!("seed {seed}: {shown:?}: {err}"));
            assert_eq!(back.expr(), &e, "seed {seed}: {shown:?}");
            assert_eq!(back.to_string(), shown, "seed {seed}");
        }
        // With `!(!x)` allowed the text may lose the double negation, never the meaning.
        for _ in 0..1000 {
            let e = gen_expr(&mut r, 5, true);
            let back = Selector::parse(&e.to_string()).unwrap_or_else(|err| panic!("seed {seed}: {e}: {err}"));
            for _ in 0..4 {
                let l = gen_labels(&mut r);
                assert_eq!(back.matches(&as_map(&l)), reference(&e, &l), "seed {seed}: {e} on {l:?}");
            }
        }
    }
}

/// Parses anything without panicking; an error points inside the text at a character boundary, and an accepted
/// selector's canonical form means the same and is a fixed point after one round.
fn check_any(src: &str, r: &mut Rng) {
    match Selector::parse(src) {
        Err(e) => {
            assert!(e.offset() <= src.len() && src.is_char_boundary(e.offset()), "{src:?}: {e}");
            assert!(e.to_string().contains(e.problem()));
        }
        Ok(s) => {
            let shown = s.to_string();
            let again = Selector::parse(&shown).unwrap_or_else(|e| panic!("{src:?} printed as {shown:?}: {e}"));
            let fixed = Selector::parse(&again.to_string()).unwrap_or_else(|e| panic!("{shown:?}: {e}"));
            assert_eq!(fixed, again, "{src:?}");
            for _ in 0..4 {
                let l = gen_labels(r);
                assert_eq!(again.matches(&as_map(&l)), reference(s.expr(), &l), "{src:?} vs {shown:?} on {l:?}");
            }
        }
    }
}

#[test]
fn no_input_panics() {
    for seed in seeds() {
        let mut r = Rng::new(seed);
        for _ in 0..5000 {
            let garbage: String = (0..r.below(40)).map(|_| r.pick(FRAGMENTS)).collect();
            check_any(&garbage, &mut r);
            // A valid selector with one edit: a cut, an insertion or a truncation, on character boundaries.
            let e = gen_expr(&mut r, 3, true);
            let mut src = render(&mut r, &e);
            let cuts: Vec<usize> = (0..=src.len()).filter(|&i| src.is_char_boundary(i)).collect();
            let (mut i, mut j) = (cuts[r.below(cuts.len())], cuts[r.below(cuts.len())]);
            if i > j {
                std::mem::swap(&mut i, &mut j);
            }
            match r.below(3) {
                0 => src.replace_range(i..j, ""),
                1 => src.insert_str(i, r.pick(FRAGMENTS)),
                _ => src.truncate(i),
            }
            check_any(&src, &mut r);
        }
    }
    for huge in ["(".repeat(100_000), ")".repeat(100_000), "!".repeat(100_000), "a".repeat(100_000), "\"".repeat(99_999)] {
        check_any(&huge, &mut Rng::new(9));
    }
    check_any("has(a) && ".repeat(20_000).trim_end_matches(" && "), &mut Rng::new(9));
}
