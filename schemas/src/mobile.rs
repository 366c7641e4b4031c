//! `Mobile`: an 11-digit mainland China mobile number, as the vendors' 运营商 checks take it.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "String", into = "String")]
#[schemars(
    with = "String",
    description = "11-digit mainland mobile number starting with 1"
)]
pub struct Mobile(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("mobile number must be 11 digits starting with 1 (an optional +86 prefix is removed)")]
pub struct MobileError;

impl Mobile {
    pub fn parse(raw: &str) -> Result<Self, MobileError> {
        let s: String = raw
            .trim()
            .chars()
            .filter(|c| *c != ' ' && *c != '-')
            .collect();
        let s = s.strip_prefix("+86").unwrap_or(&s);
        let b = s.as_bytes();
        if b.len() == 11 && b[0] == b'1' && b.iter().all(u8::is_ascii_digit) {
            Ok(Self(s.to_string()))
        } else {
            Err(MobileError)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Mobile {
    type Error = MobileError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Mobile> for String {
    fn from(value: Mobile) -> Self {
        value.0
    }
}

impl fmt::Debug for Mobile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mobile({})", crate::mask::mask_middle(&self.0, 3, 4))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatted_numbers_are_normalized() {
        assert_eq!(
            Mobile::parse("+86 138-1234-5678").unwrap().as_str(),
            "13812345678"
        );
    }

    #[test]
    fn short_or_foreign_numbers_are_rejected() {
        assert!(Mobile::parse("1381234567").is_err());
        assert!(Mobile::parse("23812345678").is_err());
        assert!(Mobile::parse("1381234567a").is_err());
    }
}
