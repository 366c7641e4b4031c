//! `PersonName`: the name on an identity document, trimmed and checked once.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Vendors cap names well below this (Huawei IVS.0011 on over-long values); 64 characters
/// covers every real Chinese and transliterated name while refusing pasted garbage.
const MAX_CHARS: usize = 64;

#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "String", into = "String")]
#[schemars(
    with = "String",
    description = "Trimmed, non-empty person name, at most 64 characters"
)]
pub struct PersonName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PersonNameError {
    #[error("name is empty")]
    Empty,
    #[error("name is longer than {MAX_CHARS} characters")]
    TooLong,
    #[error("name contains control characters")]
    ControlCharacters,
    #[error("name contains digits or one of <>{{}}\\\"/;")]
    ForbiddenCharacters,
}

impl PersonName {
    pub fn parse(raw: &str) -> Result<Self, PersonNameError> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(PersonNameError::Empty);
        }
        if s.chars().count() > MAX_CHARS {
            return Err(PersonNameError::TooLong);
        }
        if s.chars().any(char::is_control) {
            return Err(PersonNameError::ControlCharacters);
        }
        if s.chars().any(|c| {
            c.is_ascii_digit() || matches!(c, '<' | '>' | '{' | '}' | '\\' | '"' | '/' | ';')
        }) {
            return Err(PersonNameError::ForbiddenCharacters);
        }
        Ok(Self(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn masked(&self) -> String {
        crate::mask::mask_name(&self.0)
    }
}

impl TryFrom<String> for PersonName {
    type Error = PersonNameError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<PersonName> for String {
    fn from(value: PersonName) -> Self {
        value.0
    }
}

impl AsRef<str> for PersonName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PersonName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PersonName({})", self.masked())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed() {
        assert_eq!(PersonName::parse("  张三 ").unwrap().as_str(), "张三");
    }

    #[test]
    fn whitespace_only_names_are_rejected() {
        assert_eq!(PersonName::parse(" \t "), Err(PersonNameError::Empty));
    }

    #[test]
    fn overlong_names_are_rejected() {
        assert_eq!(
            PersonName::parse(&"张".repeat(65)),
            Err(PersonNameError::TooLong)
        );
        assert!(PersonName::parse(&"张".repeat(64)).is_ok());
    }

    #[test]
    fn names_with_digits_or_markup_are_rejected() {
        assert_eq!(
            PersonName::parse("张3"),
            Err(PersonNameError::ForbiddenCharacters)
        );
        assert_eq!(
            PersonName::parse("<b>"),
            Err(PersonNameError::ForbiddenCharacters)
        );
        assert_eq!(
            PersonName::parse("张\u{0}三"),
            Err(PersonNameError::ControlCharacters)
        );
    }

    #[test]
    fn minority_names_with_middle_dots_are_accepted() {
        assert!(PersonName::parse("阿依古丽·买买提").is_ok());
    }

    #[test]
    fn debug_output_masks_the_name() {
        assert_eq!(
            format!("{:?}", PersonName::parse("张三丰").unwrap()),
            "PersonName(张**)"
        );
    }
}
