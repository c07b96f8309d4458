//! Calico's behaviour, case by case: ten tricky cases of Calico's selector parser (behaviour read from
//! projectcalico/calico libcalico-go/lib/selector/parser/parser_test.go; one test each), then match tables, rejected selectors and canonical forms checked against libcalico-go's selector.
use selector::{Expr, Selector};
use std::collections::BTreeMap;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn sel(src: &str) -> Selector {
    Selector::parse(src).unwrap_or_else(|e| panic!("{e}"))
}

fn matches(src: &str, pairs: &[(&str, &str)]) -> bool {
    sel(src).matches(&labels(pairs))
}

fn canon(src: &str) -> String {
    sel(src).to_string()
}

fn rejected(src: &str) -> bool {
    Selector::parse(src).is_err()
}

#[test]
fn case_01_negation_and_not_equal_match_absent_labels() {
    assert_eq!(sel(r#"!a == "x""#).expr(), &Expr::Not(Box::new(Expr::Eq("a".into(), "x".into()))));
    assert!(matches(r#"!a == "x""#, &[]));
    assert!(matches(r#"!a == "x""#, &[("a", "y")]));
    assert!(!matches(r#"!a == "x""#, &[("a", "x")]));
    assert!(matches(r#"a != "x""#, &[]));
    assert!(matches(r#"a != "x""#, &[("b", "x")]));
    assert!(!matches(r#"a != "x""#, &[("a", "x")]));
    // The positive operators never match an absent label.
    for op in [r#"a == "x""#, r#"a contains """#, r#"a starts with """#, r#"a ends with """#, r#"a in {"x"}"#, "has(a)"] {
        assert!(!matches(op, &[("b", "x")]), "{op}");
    }
}

#[test]
fn case_02_sets_absent_and_empty() {
    assert!(matches(r#"a not in {"x"}"#, &[]));
    assert!(!matches(r#"a not in {"x"}"#, &[("a", "x")]));
    assert!(matches(r#"a not in {"x"}"#, &[("a", "y")]));
    for l in [&[][..], &[("a", "")], &[("a", "x")]] {
        assert!(!matches("a in {}", l), "in {{}} {l:?}");
        assert!(matches("a not in {}", l), "not in {{}} {l:?}");
    }
}

#[test]
fn case_03_trailing_comma_and_duplicates() {
    assert_eq!(sel(r#"a in {"x",}"#), sel(r#"a in {"x"}"#));
    assert_eq!(canon(r#"a in {"z", "z", "x", "y", "x", "a"}"#), r#"a in {"a", "x", "y", "z"}"#);
    assert_eq!(canon(r#"a in {'z','z',}"#), r#"a in {"z"}"#);
    for bad in ["a in {,}", r#"a in {"x",,}"#, r#"a in {"x" "y"}"#, r#"a in {"x""#, "a in {"] {
        assert!(rejected(bad), "{bad}");
    }
}

#[test]
fn case_04_operators_only_after_a_label() {
    assert_eq!(sel(r#"in == "x""#).expr(), &Expr::Eq("in".into(), "x".into()));
    assert_eq!(sel(r#"has == "x""#).expr(), &Expr::Eq("has".into(), "x".into()));
    assert_eq!(sel(r#"not in {"x"}"#).expr(), &Expr::In("not".into(), ["x".to_string()].into()));
    assert_eq!(sel(r#"contains contains "contains""#).expr(), &Expr::Contains("contains".into(), "contains".into()));
    assert!(matches(r#"in == "x""#, &[("in", "x")]));
    assert!(rejected("has (a)"));
    assert!(rejected("all ()"));
    assert!(rejected("global ()"));
}

#[test]
fn case_05_one_word_operators_and_spaces_in_parens() {
    assert_eq!(sel(r#"a notin {"x"}"#), sel(r#"a not in {"x"}"#));
    assert_eq!(sel(r#"a startswith "x""#), sel(r#"a starts with "x""#));
    assert_eq!(sel(r#"a endswith "x""#), sel(r#"a ends with "x""#));
    assert_eq!(sel(r#"a not  	in {"x"}"#), sel(r#"a not in {"x"}"#));
    assert_eq!(canon(r#"a startswith '"'"#), r#"a starts with '"'"#);
    assert_eq!(canon(r#"a endswith "'""#), r#"a ends with "'""#);
    assert_eq!(sel("all( )"), Selector::all());
    assert_eq!(sel("has( a )").expr(), &Expr::Has("a".into()));
    assert_eq!(sel("global(\t)").expr(), &Expr::Global);
    for bad in [r#"a notinx {"x"}"#, r#"a starts withx "x""#, r#"a containsx "x""#, r#"a in"#] {
        assert!(rejected(bad), "{bad}");
    }
}

#[test]
fn case_06_only_space_and_tab_are_whitespace() {
    assert_eq!(sel(" \t has(a) \t&&\thas(b) \t"), sel("has(a) && has(b)"));
    assert_eq!(sel(" \t "), Selector::all());
    for bad in ["has(a)\n", "\nhas(a)", "has(a) &&\nhas(b)", "a\n== 'x'", "\r", "has(a)\u{a0}", "\u{3000}has(a)"] {
        let e = Selector::parse(bad).unwrap_err();
        assert!(e.offset() <= bad.len(), "{bad:?}: {e}");
    }
    // Inside a string a newline is just a byte of the value.
    assert!(matches("a == 'x\ny'", &[("a", "x\ny")]));
}

#[test]
fn case_07_quotes_without_escapes_and_bad_selectors() {
    assert!(matches(r#"a == "it's""#, &[("a", "it's")]));
    assert!(matches(r#"a == 'say "hi"'"#, &[("a", r#"say "hi""#)]));
    assert!(matches(r#"a == "back\""#, &[("a", "back\\")]), "a backslash is not an escape");
    assert!(matches(r#"a in {"'", '"', "c"}"#, &[("a", "\"")]));
    assert!(matches(r#"a in {"'", '"', "c"}"#, &[("a", "'")]));
    assert!(!matches(r#"a not in {"'", '"', "c"}"#, &[("a", "'")]));
    // libcalico-go's list of bad selectors.
    for bad in [
        "b == b",
        "b contains b",
        "b starts with b",
        "b ends with b",
        "'b1' == b",
        "b",
        "a b",
        "!",
        r#"foo == "bar" &"#,
        r#"foo == "bar" |"#,
        "foo != ||",
        r#"foo in {"", ||"#,
        r#"foo in """#,
        r#""FOO"#,
        r#""FOO'"#,
        "'FOO",
        "(",
        r#"(a == "foo""#,
        ")",
        "()",
        "%",
        r#"a == "b" && %"#,
        r#"a == "b" || %"#,
        "a ",
        "has(foo) &&",
        "has()",
        "has(foo",
        "all(",
        "global(",
        "a = 'x'",
        "a === 'x'",
        "a !== 'x'",
        "a ! == 'x'",
        "== 'x'",
        "a == 'x' ||",
        "|| a == 'x'",
        "a == 'x' && && b == 'y'",
        "has(a) has(b)",
        "has(a)b",
        "!all() all()",
    ] {
        assert!(rejected(bad), "{bad:?} should be rejected");
    }
}

#[test]
fn case_08_and_binds_tighter_than_or() {
    let want = sel(r#"a == "1" || (b == "2" && c == "3")"#);
    assert_eq!(sel(r#"a == "1" || b == "2" && c == "3""#), want);
    assert_eq!(want.to_string(), r#"(a == "1" || (b == "2" && c == "3"))"#);
    assert!(matches(r#"a == "1" || b == "2" && c == "3""#, &[("a", "1")]));
    assert!(!matches(r#"a == "1" || b == "2" && c == "3""#, &[("b", "2")]));
    assert!(!matches(r#"(a == "1" || b == "2") && c == "3""#, &[("a", "1")]));
    // `!` binds to one term only.
    assert!(matches(r#"! a == 'a1' || ! b == 'b1'"#, &[("a", "a1")]));
    assert!(!matches(r#"! a == 'a1' || ! b == 'b1'"#, &[("a", "a1"), ("b", "b1")]));
    assert!(matches("!(!has(a) || has(b))", &[("a", "a")]));
}

#[test]
fn case_09_runs_of_not_collapse_by_parity() {
    let has_a = Expr::Has("a".into());
    let not_has_a = Expr::Not(Box::new(has_a.clone()));
    for (src, want) in [
        ("!!has(a)", &has_a),
        ("! !!has(a)", &not_has_a),
        ("!!! has(a)", &not_has_a),
        ("!! ! has(a)", &not_has_a),
        ("!!!!has(a)", &has_a),
        ("! has(a)", &not_has_a),
    ] {
        assert_eq!(sel(src).expr(), want, "{src}");
    }
    assert!(!matches("!!has(b)", &[("a", "b")]));
    // Through parentheses the negations stay: !(!x) is printed `!!x`, which means the same.
    assert_eq!(canon("!(!has(a))"), "!!has(a)");
    assert_eq!(sel("!all()").expr(), &Expr::Not(Box::new(Expr::All)));
    assert!(!matches("!all()", &[]));
    assert!(!matches("!global()", &[("a", "b")]));
}

#[test]
fn case_10_label_keys() {
    assert!(matches("projectcalico.org/zone == 'z1'", &[("projectcalico.org/zone", "z1")]));
    assert!(matches("has(kubernetes.io/hostname)", &[("kubernetes.io/hostname", "n1")]));
    assert!(matches("a-b_c.d/e-1 in {'x'}", &[("a-b_c.d/e-1", "x")]));
    // Any label byte may come first, digits and punctuation too.
    assert!(matches("1 == '2'", &[("1", "2")]));
    assert!(matches("/ == 'x'", &[("/", "x")]));
    assert!(matches("-a != 'x'", &[]));
    let long = "k".repeat(512);
    assert!(matches(&format!("{long} == 'v'"), &[(&long, "v")]));
    assert!(rejected(&format!("{long}k == 'v'")));
    assert!(rejected(&format!("has({long}k)")));
    for bad in ["a:b == 'x'", "a@b == 'x'", "é == 'x'", "a b == 'x'", "has(a:b)"] {
        assert!(rejected(bad), "{bad}");
    }
    assert!(selector::is_valid_label("projectcalico.org/name"));
    assert!(!selector::is_valid_label("") && !selector::is_valid_label("a b") && !selector::is_valid_label(&format!("{long}k")));
}

#[test]
fn empty_selector_is_all() {
    for src in ["", " ", "\t", "all()", " all() ", " (all() )", "((all()))"] {
        assert_eq!(sel(src), Selector::all(), "{src:?}");
        assert_eq!(canon(src), "all()");
    }
    assert!(matches("", &[]) && matches("", &[("a", "b")]));
    assert_eq!(canon("global()"), "global()");
    assert!(matches(" global()", &[("a", "b")]));
}

/// Label sets a selector must select, and ones it must not.
type LabelSets<'a> = &'a [&'a [(&'a str, &'a str)]];

#[test]
fn calico_match_table() {
    let m: &[(&str, LabelSets, LabelSets)] = &[
        (r#"a == "b""#, &[&[("a", "b")], &[("a", "b"), ("c", "d")]], &[&[], &[("a", "c")], &[("c", "d")]]),
        (r#"a == "b" && c == "d""#, &[&[("a", "b"), ("c", "d")]], &[&[], &[("a", "b"), ("c", "e")], &[("c", "d")], &[("a", "b")]]),
        (r#"a == "b" || c == "d""#, &[&[("a", "b"), ("c", "d")], &[("a", "b")], &[("c", "d")]], &[&[], &[("a", "e"), ("c", "e")]]),
        (r#"a contains "a""#, &[&[("a", "a")], &[("a", "bab")]], &[&[], &[("a", "b")], &[("b", "aaa")]]),
        (r#"a starts with "a""#, &[&[("a", "a")], &[("a", "abb")]], &[&[], &[("a", "baa")], &[("b", "aaa")]]),
        (r#"a ends with "a""#, &[&[("a", "a")], &[("a", "bba")]], &[&[], &[("a", "aab")], &[("b", "aaa")]]),
        (r#"!a in {"a"}"#, &[&[("a", "b")], &[]], &[&[("a", "a")]]),
        (r#"a in {"a", "b"}"#, &[&[("a", "a")], &[("a", "b")]], &[&[("a", "c")]]),
        (r#"a not in {"d", "e"}"#, &[&[("a", "a")]], &[&[("a", "d")]]),
        ("has(a) && !has(b)", &[&[("a", "a")]], &[&[("a", "a"), ("b", "b")]]),
        ("!has(b) && has(a)", &[&[("a", "a")]], &[&[("b", "b")]]),
        ("!(has(b) || !has(a))", &[&[("a", "a")]], &[&[]]),
        ("a == 'a1' || b != 'b1'", &[&[("a", "a1"), ("b", "b1")]], &[&[("b", "b1")]]),
        ("a != 'a1' || b != 'b1'", &[&[]], &[&[("a", "a1"), ("b", "b1")]]),
        ("a != 'a1' && !b == 'b1'", &[&[]], &[&[("a", "a1"), ("b", "b1")]]),
    ];
    for (src, yes, no) in m {
        let reparsed = sel(&canon(src));
        for l in yes.iter() {
            assert!(matches(src, l), "{src} should match {l:?}");
            assert!(reparsed.matches(&labels(l)), "canonical {reparsed} should match {l:?}");
        }
        for l in no.iter() {
            assert!(!matches(src, l), "{src} should not match {l:?}");
            assert!(!reparsed.matches(&labels(l)), "canonical {reparsed} should not match {l:?}");
        }
    }
}

#[test]
fn canonical_forms() {
    for (src, want) in [
        ("! (has( b)||! has(a ))", "!(has(b) || !has(a))"),
        (r#"! (a == "b"&&! c != "d")"#, r#"!(a == "b" && !c != "d")"#),
        (r#"a == "'""#, r#"a == "'""#),
        (r#"a == '"'"#, r#"a == '"'"#),
        (r#"a contains '"'"#, r#"a contains '"'"#),
        (r#"a!='"'"#, r#"a != '"'"#),
        ("a == 'x'", r#"a == "x""#),
        (r#"a in {"d", "a", "b"}"#, r#"a in {"a", "b", "d"}"#),
        ("a notin{}", "a not in {}"),
        ("!(k == 'v')", r#"!k == "v""#),
        ("k == 'v' && x == 'y' && has(z)", r#"(k == "v" && x == "y" && has(z))"#),
        ("(a == 'x' && b == 'y') && c == 'z'", r#"((a == "x" && b == "y") && c == "z")"#),
        ("!(!(k == 'v' && has(t) || all()) && (a in {'b', 'c'}))", r#"!(!((k == "v" && has(t)) || all()) && a in {"b", "c"})"#),
    ] {
        assert_eq!(canon(src), want, "{src}");
        assert_eq!(canon(want), want, "canonical form of {src} is stable");
    }
}

#[test]
fn error_messages_name_the_position() {
    let e = Selector::parse("has(foo").unwrap_err();
    assert_eq!(e.to_string(), r#"selector "has(foo": expected ')' to close 'has(' at 7"#);
    let e = Selector::parse("zone in {a}").unwrap_err();
    assert_eq!(e.to_string(), r#"selector "zone in {a}": expected a quoted string or '}' at 9"#);
    let e = Selector::parse("zone == a").unwrap_err();
    assert_eq!((e.offset(), e.problem()), (8, "expected a quoted string"));
    let e = Selector::parse("rack == 'r1' || rack = 'r2'").unwrap_err();
    assert_eq!((e.offset(), e.problem()), (21, "expected '=='"));
    let e = Selector::parse("zone").unwrap_err();
    assert!(e.to_string().ends_with("after label \"zone\" at 4"), "{e}");
}
