//! `ASNumber` (`api/pkg/lib/numorstring/asnumber.go`): a 32-bit AS number, read from a JSON number, a decimal
//! string (`"64512"`) or asdot (`"1.10"` = 1 × 65536 + 10), written as a JSON number.
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AsNumber(pub u32);

impl AsNumber {
    /// 0 is what Go's zero value means: "not set" on a BGPPeer's `asNumber`, and reserved (RFC 7607) as a
    /// real AS, so the kinds refuse it wherever a number is used.
    pub fn is_zero(&self) -> bool {
        self.0 == 0
    }

    /// asdot form (`"1.10"`) for numbers above 65535, the plain number otherwise (RFC 5396 "asdot").
    pub fn asdot(&self) -> String {
        if self.0 > 0xffff {
            format!("{}.{}", self.0 >> 16, self.0 & 0xffff)
        } else {
            self.0.to_string()
        }
    }
}

fn too_big(s: impl fmt::Display) -> String {
    format!("AS number {s} is larger than 4294967295")
}

fn digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

impl FromStr for AsNumber {
    type Err = String;

    /// Calico's `ASNumberFromString`: decimal digits (leading zeros allowed, no sign), or two asdot halves of
    /// at most 65535 each.
    fn from_str(s: &str) -> Result<AsNumber, String> {
        if digits(s) {
            return match s.parse::<u32>() {
                Ok(n) => Ok(AsNumber(n)),
                Err(_) => Err(too_big(s)),
            };
        }
        let bad = || format!("{s:?} is not an AS number (a number up to 4294967295, or asdot like \"1.10\")");
        let (hi, lo) = s.split_once('.').ok_or_else(bad)?;
        if !digits(hi) || !digits(lo) {
            return Err(bad());
        }
        match (hi.parse::<u16>(), lo.parse::<u16>()) {
            (Ok(hi), Ok(lo)) => Ok(AsNumber((u32::from(hi) << 16) | u32::from(lo))),
            _ => Err(format!("{s:?} is not an AS number: each asdot half is at most 65535")),
        }
    }
}

impl fmt::Display for AsNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Serialize for AsNumber {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(self.0)
    }
}

impl<'de> Deserialize<'de> for AsNumber {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<AsNumber, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = AsNumber;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an AS number (a number, \"64512\" or asdot \"1.10\")")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<AsNumber, E> {
                u32::try_from(n).map(AsNumber).map_err(|_| E::custom(too_big(n)))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<AsNumber, E> {
                match u64::try_from(n) {
                    Ok(n) => self.visit_u64(n),
                    Err(_) => Err(E::custom(format!("AS number {n} is negative"))),
                }
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<AsNumber, E> {
                Err(E::custom(format!("AS number {n} is not a whole number")))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<AsNumber, E> {
                s.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn as_numbers_are_read_as_calico_reads_them_and_written_as_numbers() {
        for (input, want) in [
            (json!(64512), 64512),
            (json!("64512"), 64512),
            (json!("1.10"), 65546),
            (json!("0.65535"), 65535),
            (json!("65535.65535"), u32::MAX),
            (json!(4294967295u64), u32::MAX),
            (json!("007"), 7),
            (json!(0), 0),
        ] {
            let asn: AsNumber = serde_json::from_value(input.clone()).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(asn.0, want, "{input}");
            assert_eq!(serde_json::to_value(asn).unwrap(), json!(want), "written as a JSON number");
        }
        assert_eq!(AsNumber(65546).asdot(), "1.10");
        assert_eq!(AsNumber(64512).asdot(), "64512");
        assert_eq!(AsNumber(64512).to_string(), "64512");
    }

    #[test]
    fn bad_as_numbers_say_why() {
        for (input, msg) in [
            (json!(4294967296u64), "larger than 4294967295"),
            (json!("4294967296"), "larger than 4294967295"),
            (json!("abc"), "not an AS number"),
            (json!(""), "not an AS number"),
            (json!("+5"), "not an AS number"),
            (json!(" 5"), "not an AS number"),
            (json!("1.2.3"), "not an AS number"),
            (json!("1."), "not an AS number"),
            (json!("1.65536"), "at most 65535"),
            (json!(-1), "negative"),
            (json!(1.5), "whole number"),
            (json!(true), "an AS number"),
            (json!(null), "an AS number"),
        ] {
            let err = serde_json::from_value::<AsNumber>(input.clone()).unwrap_err().to_string();
            assert!(err.contains(msg), "{input}: {err}");
        }
    }
}
