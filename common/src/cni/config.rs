//! Turning a network config into a plugin's typed struct, with errors that name the offending key.
use super::error::{code, CniError};
use serde::de::DeserializeOwned;

/// Deserialises `value` into `T`; unknown keys are ignored, a malformed known key is a code-7 error naming it.
pub fn parse<T: DeserializeOwned>(value: &serde_json::Value) -> Result<T, CniError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        CniError::new(code::INVALID_CONFIG, format!("invalid network config: {path}: {}", e.into_inner()))
    })
}

#[cfg(test)]
mod tests {
    #[derive(serde::Deserialize, Debug)]
    struct C {
        #[allow(dead_code)]
        mtu: u32,
    }

    #[test]
    fn names_the_key() {
        let e = super::parse::<C>(&serde_json::json!({"mtu": "big", "other": 1})).unwrap_err();
        assert_eq!(e.code, 7);
        assert!(e.msg.contains("mtu"), "{}", e.msg);
        assert!(super::parse::<C>(&serde_json::json!({"mtu": 9000, "other": 1})).is_ok());
    }
}
