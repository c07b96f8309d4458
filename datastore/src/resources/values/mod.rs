//! The value types several kinds share, each with one parser (`FromStr`, which serde uses on read) and one
//! printer (`Display`, which serde uses on write), so a field that deserialises holds a valid value and every
//! kind writes it the same way: AS numbers, Go durations, peer addresses, CIDRs, MACs, selectors, route
//! reflector cluster IDs and resource names. Messages name the value, never the field: serde adds the path.
mod asnumber;
mod duration;
mod names;
mod net;
mod selector;

pub use asnumber::AsNumber;
pub use duration::Duration;
pub use names::{check_annotations, check_dns_label, check_label_key, check_label_value, check_name, ResourceName, MAX_NAME_LEN};
pub use net::{Cidr, ClusterId, MacAddr, PeerIp, WireguardKey};
pub use selector::{Selector, MAX_SELECTOR_LEN};

use serde::de::{self, Deserialize, Deserializer};
use std::fmt::Display;
use std::str::FromStr;

/// Serde through `FromStr`/`Display`: the value is a JSON string.
macro_rules! via_str {
    ($t:ty) => {
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use via_str;

/// A Calico string enum: the Go constants as variants, case-sensitive as Calico's schema is, with `FromStr`,
/// `Display` and serde through them.
macro_rules! str_enum {
    ($(#[$meta:meta])* pub enum $name:ident { $($var:ident = $s:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($var),+
        }
        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$var),+];
            pub fn as_str(&self) -> &'static str {
                match self {
                    $($name::$var => $s),+
                }
            }
        }
        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($s => Ok($name::$var),)+
                    other => Err(format!("{other:?} must be one of {}", [$($s),+].join(", "))),
                }
            }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
        $crate::resources::values::via_str!($name);
    };
}
pub(crate) use str_enum;

/// For `deserialize_with` on an optional string-typed field: absent, `null` and `""` are all "not set", as Go's
/// `omitempty` strings are; anything else must parse.
pub(crate) fn empty_is_none<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: Display,
{
    match Option::<String>::deserialize(d)?.as_deref() {
        None | Some("") => Ok(None),
        Some(s) => s.parse().map(Some).map_err(de::Error::custom),
    }
}

/// For `skip_serializing_if` on Go's non-pointer `omitempty` numbers and bools.
pub(crate) fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}
