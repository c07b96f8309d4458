//! Go's `time.Duration` as Kubernetes' `metav1.Duration` carries it in JSON: read with Go's `ParseDuration`
//! (`"120s"`, `"1h30m"`, `"1.5s"`, `"-2m"`, `"0"`), written with Go's `Duration.String` (`"2m0s"`,
//! `"1h30m0s"`), so a stored value reads exactly as Calico stores it.
use std::fmt;
use std::str::FromStr;

/// Nanoseconds, Go's range (an `int64`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(i64);

const NANOS_PER_SEC: u64 = 1_000_000_000;
/// Go's `1<<63`: the magnitude limit (reachable only negative).
const LIMIT: u64 = 1 << 63;

impl Duration {
    pub fn from_secs(s: u32) -> Duration {
        Duration(i64::from(s) * NANOS_PER_SEC as i64)
    }

    pub fn nanos(&self) -> i64 {
        self.0
    }

    pub fn is_negative(&self) -> bool {
        self.0 < 0
    }

    /// The duration as std's, `None` when negative.
    pub fn as_std(&self) -> Option<std::time::Duration> {
        u64::try_from(self.0).ok().map(std::time::Duration::from_nanos)
    }

    /// Whole seconds, rounded down (what BIRD's timers take); `None` when negative.
    pub fn whole_secs(&self) -> Option<u64> {
        self.as_std().map(|d| d.as_secs())
    }
}

fn unit(u: &str) -> Option<u64> {
    Some(match u {
        "ns" => 1,
        "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
        "ms" => 1_000_000,
        "s" => NANOS_PER_SEC,
        "m" => 60 * NANOS_PER_SEC,
        "h" => 3600 * NANOS_PER_SEC,
        _ => return None,
    })
}

impl FromStr for Duration {
    type Err = String;

    /// Go's `time.ParseDuration`: a sign, then one or more `<number><unit>` (units ns, us/µs, ms, s, m, h;
    /// the number may have a fraction); `"0"` needs no unit.
    fn from_str(orig: &str) -> Result<Duration, String> {
        let invalid = |why: &str| format!("{orig:?} is not a duration ({why}; e.g. \"120s\", \"2m0s\", \"1h30m\")");
        let (neg, mut s) = match orig.as_bytes().first() {
            Some(b'-') => (true, &orig[1..]),
            Some(b'+') => (false, &orig[1..]),
            _ => (false, orig),
        };
        if s == "0" {
            return Ok(Duration(0));
        }
        if s.is_empty() {
            return Err(invalid("empty"));
        }
        let mut total: u64 = 0;
        while !s.is_empty() {
            let number_len = s.bytes().take_while(|b| b.is_ascii_digit() || *b == b'.').count();
            let (number, rest) = s.split_at(number_len);
            let (int, frac) = number.split_once('.').unwrap_or((number, ""));
            if int.is_empty() && frac.is_empty() {
                return Err(invalid("a number must come before each unit"));
            }
            if frac.contains('.') {
                return Err(invalid("two decimal points"));
            }
            let unit_len = rest.bytes().take_while(|b| !(b.is_ascii_digit() || *b == b'.')).count();
            let (u, rest) = rest.split_at(unit_len);
            if u.is_empty() {
                return Err(invalid("missing unit"));
            }
            let per = unit(u).ok_or_else(|| invalid(&format!("unknown unit {u:?}")))?;
            let overflow = || invalid("too long: at most about 292 years");
            let mut v: u64 = 0;
            for d in int.bytes() {
                v = v.checked_mul(10).and_then(|v| v.checked_add(u64::from(d - b'0'))).filter(|v| *v <= LIMIT).ok_or_else(overflow)?;
            }
            v = v.checked_mul(per).filter(|v| *v <= LIMIT).ok_or_else(overflow)?;
            // Go keeps at most 18 or so fraction digits and scales them in floating point; so do we.
            let (mut f, mut scale) = (0u64, 1f64);
            for d in frac.bytes() {
                if f > (i64::MAX as u64) / 10 {
                    break;
                }
                f = f * 10 + u64::from(d - b'0');
                scale *= 10.0;
            }
            if f > 0 {
                v = v.checked_add((f as f64 * (per as f64 / scale)) as u64).filter(|v| *v <= LIMIT).ok_or_else(overflow)?;
            }
            total = total.checked_add(v).filter(|t| *t <= LIMIT).ok_or_else(overflow)?;
            s = rest;
        }
        if neg {
            Ok(Duration(0i64.wrapping_sub_unsigned(total)))
        } else {
            i64::try_from(total).map(Duration).map_err(|_| invalid("too long: at most about 292 years"))
        }
    }
}

/// `v / 10^prec` and the fraction `.ddd` with trailing zeros dropped (Go's `fmtFrac`).
fn split_frac(v: u64, prec: u32) -> (u64, String) {
    let p = 10u64.pow(prec);
    let frac = format!("{:0width$}", v % p, width = prec as usize);
    let frac = frac.trim_end_matches('0');
    (v / p, if frac.is_empty() { String::new() } else { format!(".{frac}") })
}

impl fmt::Display for Duration {
    /// Go's `Duration.String`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let u = self.0.unsigned_abs();
        if self.0 < 0 {
            f.write_str("-")?;
        }
        if u == 0 {
            return f.write_str("0s");
        }
        if u < NANOS_PER_SEC {
            let (prec, unit) = match u {
                0..1_000 => (0, "ns"),
                1_000..1_000_000 => (3, "\u{b5}s"),
                _ => (6, "ms"),
            };
            let (int, frac) = split_frac(u, prec);
            return write!(f, "{int}{frac}{unit}");
        }
        let (secs, frac) = split_frac(u, 9);
        let (mins, hours) = (secs / 60, secs / 3600);
        match (hours, mins) {
            (0, 0) => write!(f, "{secs}{frac}s"),
            (0, _) => write!(f, "{mins}m{}{frac}s", secs % 60),
            _ => write!(f, "{hours}h{}m{}{frac}s", mins % 60, secs % 60),
        }
    }
}

super::via_str!(Duration);

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Duration {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn go_durations_parse_and_print_as_go_does() {
        for (input, nanos, printed) in [
            ("120s", 120 * NANOS_PER_SEC as i64, "2m0s"),
            ("2m0s", 120 * NANOS_PER_SEC as i64, "2m0s"),
            ("1h30m", 5400 * NANOS_PER_SEC as i64, "1h30m0s"),
            ("90m", 5400 * NANOS_PER_SEC as i64, "1h30m0s"),
            ("10s", 10 * NANOS_PER_SEC as i64, "10s"),
            ("1.5s", 1_500_000_000, "1.5s"),
            (".5s", 500_000_000, "500ms"),
            ("1.s", 1_000_000_000, "1s"),
            ("0", 0, "0s"),
            ("-0", 0, "0s"),
            ("0s", 0, "0s"),
            ("+5s", 5_000_000_000, "5s"),
            ("-2m", -120_000_000_000, "-2m0s"),
            ("300ms", 300_000_000, "300ms"),
            ("1.5ms", 1_500_000, "1.5ms"),
            ("2us", 2_000, "2\u{b5}s"),
            ("2\u{3bc}s", 2_000, "2\u{b5}s"),
            ("7ns", 7, "7ns"),
            ("1h1m1.000000001s", 3_661_000_000_001, "1h1m1.000000001s"),
            ("100h", 360_000_000_000_000, "100h0m0s"),
            ("2562047h47m16.854775807s", i64::MAX, "2562047h47m16.854775807s"),
            ("-2562047h47m16.854775808s", i64::MIN, "-2562047h47m16.854775808s"),
        ] {
            let got = d(input);
            assert_eq!(got.nanos(), nanos, "{input}");
            assert_eq!(got.to_string(), printed, "{input}");
            assert_eq!(d(printed), got, "{printed} parses back");
        }
        assert_eq!(Duration::from_secs(120).to_string(), "2m0s");
        assert_eq!(d("90s").whole_secs(), Some(90));
        assert_eq!(d("-1s").as_std(), None);
    }

    #[test]
    fn bad_durations_are_refused() {
        for bad in
            ["", "s", "120", "1x", "1.2.3s", ".s", "-", "1 s", " 1s", "1s ", "1h-1m", "2562047h47m16.854775808s", "9999999999999999999h", "1e3s"]
        {
            let err = bad.parse::<Duration>().unwrap_err();
            assert!(err.contains("not a duration"), "{bad:?}: {err}");
        }
    }
}
