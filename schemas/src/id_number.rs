//! `IdNumber`: a PRC resident identity card number (GB 11643-1999), parsed once.
//!
//! Holding an `IdNumber` is proof that the value has 18 characters, a real birth date and a
//! correct ISO 7064 MOD 11-2 check character. Everything downstream (job ids, vendor calls,
//! the simulator's outcome table) relies on that and never re-checks.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Weights of the first 17 digits in the MOD 11-2 checksum (GB 11643-1999, 7.2).
const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
/// Check character for each remainder 0..=10.
const CHECK_CHARS: [char; 11] = ['1', '0', 'X', '9', '8', '7', '6', '5', '4', '3', '2'];

#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "String", into = "String")]
#[schemars(
    with = "String",
    description = "18-character PRC resident ID number with a valid GB 11643-1999 checksum; check character `X` upper-case"
)]
pub struct IdNumber(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdNumberError {
    #[error("ID number is empty")]
    Empty,
    #[error("15-digit legacy ID numbers (pre-1999) are not accepted; ask the customer for the 18-digit number")]
    Legacy15,
    #[error("ID number must have 18 characters, found {0}")]
    Length(usize),
    #[error("ID number may contain only digits and a final X")]
    Characters,
    #[error("ID number has an impossible birth date")]
    BirthDate,
    #[error("ID number checksum does not match (GB 11643-1999)")]
    Checksum,
}

impl IdNumber {
    /// Parses and checks an ID number. Surrounding spaces are ignored and a lower-case `x`
    /// is accepted and stored upper-case, as vendors expect.
    pub fn parse(raw: &str) -> Result<Self, IdNumberError> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(IdNumberError::Empty);
        }
        let n = s.chars().count();
        if n == 15 && s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(IdNumberError::Legacy15);
        }
        if n != 18 {
            return Err(IdNumberError::Length(n));
        }
        let normalized = s.to_ascii_uppercase();
        let bytes = normalized.as_bytes();
        if !bytes[..17].iter().all(u8::is_ascii_digit)
            || !(bytes[17].is_ascii_digit() || bytes[17] == b'X')
        {
            return Err(IdNumberError::Characters);
        }
        if !valid_birth_date(&normalized[6..14]) {
            return Err(IdNumberError::BirthDate);
        }
        if check_char(&bytes[..17]) != bytes[17] as char {
            return Err(IdNumberError::Checksum);
        }
        Ok(Self(normalized))
    }

    /// Builds a valid ID number from its first 17 digits by computing the check character.
    /// Used by the sample-data generator and the tests; panics on non-digits.
    pub fn with_checksum(first17: &str) -> Result<Self, IdNumberError> {
        if first17.len() != 17 || !first17.bytes().all(|b| b.is_ascii_digit()) {
            return Err(IdNumberError::Characters);
        }
        let mut s = first17.to_string();
        s.push(check_char(first17.as_bytes()));
        Self::parse(&s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The three-digit sequence code (positions 15–17); odd for men, even for women.
    pub fn sequence_code(&self) -> &str {
        &self.0[14..17]
    }

    /// The ID number as reports show it by default: first 3 and last 4 characters.
    pub fn masked(&self) -> String {
        crate::mask::mask_middle(&self.0, 3, 4)
    }
}

fn check_char(first17: &[u8]) -> char {
    let sum: u32 = first17
        .iter()
        .zip(WEIGHTS)
        .map(|(d, w)| u32::from(d - b'0') * w)
        .sum();
    CHECK_CHARS[(sum % 11) as usize]
}

fn valid_birth_date(yyyymmdd: &str) -> bool {
    let (Ok(y), Ok(m), Ok(d)) = (
        yyyymmdd[0..4].parse::<u32>(),
        yyyymmdd[4..6].parse::<u32>(),
        yyyymmdd[6..8].parse::<u32>(),
    ) else {
        return false;
    };
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1800..=2100).contains(&y) && (1..=days).contains(&d)
}

impl TryFrom<String> for IdNumber {
    type Error = IdNumberError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<IdNumber> for String {
    fn from(value: IdNumber) -> Self {
        value.0
    }
}

impl AsRef<str> for IdNumber {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Masked, so that an ID number can never reach a log line through `{:?}`.
impl fmt::Debug for IdNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdNumber({})", self.masked())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // From GB 11643-1999's own example and public test numbers; none is a real person's.
    const VALID: &str = "11010519491231002X";

    #[test]
    fn a_valid_number_parses() {
        assert_eq!(IdNumber::parse(VALID).unwrap().as_str(), VALID);
    }

    #[test]
    fn lowercase_x_is_accepted_and_normalized() {
        let id = IdNumber::parse("11010519491231002x").unwrap();
        assert_eq!(id.as_str(), VALID);
    }

    #[test]
    fn surrounding_spaces_are_ignored() {
        assert_eq!(
            IdNumber::parse("  11010519491231002X ").unwrap().as_str(),
            VALID
        );
    }

    #[test]
    fn a_wrong_check_character_is_rejected() {
        assert_eq!(
            IdNumber::parse("110105194912310021"),
            Err(IdNumberError::Checksum)
        );
    }

    #[test]
    fn a_15_digit_legacy_number_is_rejected_with_a_clear_message() {
        let err = IdNumber::parse("110105491231002").unwrap_err();
        assert_eq!(err, IdNumberError::Legacy15);
        assert!(err.to_string().contains("15-digit"));
        assert!(err.to_string().contains("18-digit"));
    }

    #[test]
    fn wrong_lengths_and_characters_are_rejected() {
        assert_eq!(IdNumber::parse(""), Err(IdNumberError::Empty));
        assert_eq!(IdNumber::parse("1234"), Err(IdNumberError::Length(4)));
        assert_eq!(
            IdNumber::parse("1101051949123100XX"),
            Err(IdNumberError::Characters)
        );
        assert_eq!(
            IdNumber::parse("11010519491331002X"),
            Err(IdNumberError::BirthDate)
        );
    }

    #[test]
    fn with_checksum_computes_the_check_character() {
        assert_eq!(
            IdNumber::with_checksum("11010519491231002")
                .unwrap()
                .as_str(),
            VALID
        );
        // Every remainder maps to exactly one check character, including X.
        for seq in 0..200 {
            let first = format!("44030419900101{seq:03}");
            let id = IdNumber::with_checksum(&first).unwrap();
            assert_eq!(IdNumber::parse(id.as_str()).unwrap(), id);
        }
    }

    #[test]
    fn debug_output_masks_the_number() {
        let shown = format!("{:?}", IdNumber::parse(VALID).unwrap());
        assert_eq!(shown, "IdNumber(110***********002X)");
        assert!(!shown.contains("19491231"));
    }

    #[test]
    fn serde_parses_on_the_way_in() {
        let ok: IdNumber = serde_json::from_str(&format!("\"{VALID}\"")).unwrap();
        assert_eq!(ok.sequence_code(), "002");
        assert!(serde_json::from_str::<IdNumber>("\"110105194912310021\"").is_err());
    }
}
