//! Personal data at rest and on the queue: AES-256-GCM envelopes with rotating keys, and a
//! keyed hash (blind index) for comparing values nobody may read.
//!
//! It lives here, in the lowest crate, because every floor needs it and none of it is I/O:
//! the producer seals job messages and derives job ids, the worker opens messages, the store
//! seals columns, the report opens them for an unmasked export. Keys come in as text (the
//! binary reads the environment or the embedded run's key file); nothing here reads either.
//!
//! - An envelope is `v1.<kid>.<nonce>.<ciphertext+tag>` (base64url, no padding) with a fresh
//!   random 96-bit nonce per value. The key id travels with the value, so after a rotation
//!   old values open with the old key while new ones are sealed with the current key.
//! - Every value is sealed with *associated data* naming where it belongs (`jobs.subject_name`
//!   plus the job id, say): a ciphertext copied onto another row or field does not open.
//! - [`IndexKey`] is separate from the data keys and does not rotate with them: job ids and
//!   duplicate keys are HMAC-SHA256 under it, so they must stay stable across a data-key
//!   rotation (a resumed batch would otherwise publish every job again).
//! - Key material sits in [`SecretKey`], whose `Debug` prints nothing of it.

use std::collections::BTreeMap;
use std::fmt;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Envelope format version: the first dot-separated part of every sealed value.
const ENVELOPE_VERSION: &str = "v1";

/// 256 bits of key material. `Debug` redacts; there is no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey([u8; 32]);

impl SecretKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Self {
        Self(Aes256Gcm::generate_key(OsRng).into())
    }

    /// Decodes a base64 (standard or URL-safe, padded or not) 32-byte key. The error never
    /// quotes the text: it is a secret, even when malformed.
    pub fn from_base64(text: &str) -> Result<Self, KeyConfigError> {
        let t = text.trim();
        let bytes = STANDARD
            .decode(t)
            .or_else(|_| URL_SAFE_NO_PAD.decode(t.trim_end_matches('=')))
            .map_err(|_| KeyConfigError::NotBase64)?;
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| KeyConfigError::Length(b.len()))?;
        Ok(Self(arr))
    }

    /// The key as standard base64, for writing the embedded run's key file. Never log this.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

/// Why key configuration was refused. Never carries key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyConfigError {
    #[error("a key is not valid base64")]
    NotBase64,
    #[error("a key must be 32 bytes (256 bits), found {0}")]
    Length(usize),
    #[error("entry {0} of the data keys is not `kid:base64key`")]
    Entry(usize),
    #[error("key id {0:?} must be 1–32 characters of A–Z, a–z, 0–9, '_' or '-'")]
    BadKeyId(String),
    #[error("key id {0:?} appears twice in the data keys")]
    DuplicateKeyId(String),
    #[error("no data keys are configured")]
    Empty,
    #[error("the current key id {0:?} is not among the data keys")]
    UnknownCurrent(String),
    #[error("several data keys are configured: name the one to write with")]
    NoCurrent,
}

/// Why a sealed value did not open. Names the key id, never the data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("sealed value is malformed (expected {ENVELOPE_VERSION}.<kid>.<nonce>.<ciphertext>)")]
    Malformed,
    #[error("sealed with key id {kid:?}, which is not configured (add it to the data keys to read this value)")]
    UnknownKeyId { kid: String },
    #[error("sealed value does not open with key {kid:?}: wrong key material for this id, or the value was altered or moved")]
    Failed { kid: String },
    #[error("opened value is not valid UTF-8")]
    NotText,
}

fn valid_kid(kid: &str) -> bool {
    (1..=32).contains(&kid.len())
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The data keys by id, and which one seals new values.
#[derive(Clone)]
pub struct DataKeys {
    keys: BTreeMap<String, SecretKey>,
    current: String,
}

impl fmt::Debug for DataKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataKeys")
            .field("key_ids", &self.keys.keys().collect::<Vec<_>>())
            .field("current", &self.current)
            .finish()
    }
}

impl DataKeys {
    /// Parses `kid1:base64key,kid2:base64key` (commas or new lines) and the id of the key to
    /// seal with; the id may be left out when there is exactly one key.
    pub fn parse(keys: &str, current: Option<&str>) -> Result<Self, KeyConfigError> {
        let mut map = BTreeMap::new();
        for (i, entry) in keys
            .split([',', '\n'])
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .enumerate()
        {
            let (kid, key) = entry.split_once(':').ok_or(KeyConfigError::Entry(i + 1))?;
            let kid = kid.trim();
            if !valid_kid(kid) {
                return Err(KeyConfigError::BadKeyId(kid.to_string()));
            }
            let key = SecretKey::from_base64(key)?;
            if map.insert(kid.to_string(), key).is_some() {
                return Err(KeyConfigError::DuplicateKeyId(kid.to_string()));
            }
        }
        let current = match current.map(str::trim).filter(|c| !c.is_empty()) {
            Some(c) if map.contains_key(c) => c.to_string(),
            Some(c) => return Err(KeyConfigError::UnknownCurrent(c.to_string())),
            None if map.len() == 1 => map.keys().next().cloned().unwrap_or_default(),
            None if map.is_empty() => return Err(KeyConfigError::Empty),
            None => return Err(KeyConfigError::NoCurrent),
        };
        Ok(Self { keys: map, current })
    }

    /// One fresh key under `kid`.
    pub fn generate(kid: &str) -> Result<Self, KeyConfigError> {
        if !valid_kid(kid) {
            return Err(KeyConfigError::BadKeyId(kid.to_string()));
        }
        Ok(Self {
            keys: BTreeMap::from([(kid.to_string(), SecretKey::generate())]),
            current: kid.to_string(),
        })
    }

    /// The id new values are sealed with.
    pub fn current_id(&self) -> &str {
        &self.current
    }

    /// `kid:base64key,…`: the configuration text these keys were parsed from. Secret.
    pub fn to_config(&self) -> String {
        self.keys
            .iter()
            .map(|(kid, k)| format!("{kid}:{}", k.to_base64()))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Seals `plaintext` with the current key. `context` is bound to the ciphertext (it is
    /// not stored): opening needs the same context.
    pub fn seal(&self, plaintext: &[u8], context: &str) -> String {
        let key = &self.keys[&self.current];
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&key.0));
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let aad = aad(&self.current, context);
        let ct = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: aad.as_bytes(),
                },
            )
            .expect("AES-GCM encrypts any message under 64 GiB");
        format!(
            "{ENVELOPE_VERSION}.{}.{}.{}",
            self.current,
            URL_SAFE_NO_PAD.encode(nonce),
            URL_SAFE_NO_PAD.encode(ct)
        )
    }

    pub fn seal_str(&self, plaintext: &str, context: &str) -> String {
        self.seal(plaintext.as_bytes(), context)
    }

    /// Opens a value sealed by [`DataKeys::seal`] with any configured key.
    pub fn open(&self, sealed: &str, context: &str) -> Result<Vec<u8>, CryptoError> {
        let mut parts = sealed.split('.');
        let (Some(ENVELOPE_VERSION), Some(kid), Some(nonce), Some(ct), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(CryptoError::Malformed);
        };
        if !valid_kid(kid) {
            return Err(CryptoError::Malformed);
        }
        let key = self
            .keys
            .get(kid)
            .ok_or_else(|| CryptoError::UnknownKeyId {
                kid: kid.to_string(),
            })?;
        let nonce = URL_SAFE_NO_PAD
            .decode(nonce)
            .ok()
            .filter(|n| n.len() == 12)
            .ok_or(CryptoError::Malformed)?;
        let ct = URL_SAFE_NO_PAD
            .decode(ct)
            .map_err(|_| CryptoError::Malformed)?;
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&key.0));
        let aad = aad(kid, context);
        cipher
            .decrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &ct,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Failed {
                kid: kid.to_string(),
            })
    }

    pub fn open_str(&self, sealed: &str, context: &str) -> Result<String, CryptoError> {
        String::from_utf8(self.open(sealed, context)?).map_err(|_| CryptoError::NotText)
    }

    /// The key id a sealed value names, without opening it (for rotation: which rows still
    /// use an old key).
    pub fn key_id_of(sealed: &str) -> Option<&str> {
        let mut parts = sealed.split('.');
        match (parts.next(), parts.next()) {
            (Some(ENVELOPE_VERSION), Some(kid)) if valid_kid(kid) => Some(kid),
            _ => None,
        }
    }
}

/// The associated data: the envelope's header and where the value belongs.
fn aad(kid: &str, context: &str) -> String {
    format!("{ENVELOPE_VERSION}.{kid}\u{1f}{context}")
}

/// The key of the blind indexes (job ids, duplicate keys). Stable for the life of the data.
#[derive(Clone)]
pub struct IndexKey(SecretKey);

impl fmt::Debug for IndexKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IndexKey(<redacted>)")
    }
}

impl IndexKey {
    pub fn from_base64(text: &str) -> Result<Self, KeyConfigError> {
        SecretKey::from_base64(text).map(Self)
    }

    pub fn generate() -> Self {
        Self(SecretKey::generate())
    }

    /// Secret: for the embedded run's key file only.
    pub fn to_base64(&self) -> String {
        self.0.to_base64()
    }

    /// HMAC-SHA256 of `parts` under this key, in the `domain` (each use its own, so a job id
    /// can never equal a duplicate key). Parts are length-prefixed: no two lists collide.
    pub fn hash(&self, domain: &str, parts: &[&str]) -> [u8; 32] {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&(self.0).0).expect("HMAC takes any key length");
        for p in std::iter::once(domain).chain(parts.iter().copied()) {
            mac.update(&(p.len() as u64).to_be_bytes());
            mac.update(p.as_bytes());
        }
        mac.finalize().into_bytes().into()
    }
}

/// Everything needed to protect personal data: the data keys and the index key.
#[derive(Debug, Clone)]
pub struct Keyring {
    pub data: DataKeys,
    pub index: IndexKey,
}

impl Keyring {
    /// Fresh keys, for the embedded run's key file (and tests).
    pub fn generate(kid: &str) -> Result<Self, KeyConfigError> {
        Ok(Self {
            data: DataKeys::generate(kid)?,
            index: IndexKey::generate(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_b64(byte: u8) -> String {
        STANDARD.encode([byte; 32])
    }

    #[test]
    fn sealed_values_open_with_the_same_context_only() {
        let keys = DataKeys::generate("k1").unwrap();
        let sealed = keys.seal_str("张三丰", "jobs.subject_name\u{1f}job-1");
        assert!(sealed.starts_with("v1.k1."));
        assert!(!sealed.contains("张三丰"));
        assert_eq!(
            keys.open_str(&sealed, "jobs.subject_name\u{1f}job-1")
                .unwrap(),
            "张三丰"
        );
        assert_eq!(
            keys.open_str(&sealed, "jobs.subject_name\u{1f}job-2"),
            Err(CryptoError::Failed { kid: "k1".into() })
        );
    }

    #[test]
    fn each_value_gets_a_fresh_nonce() {
        let keys = DataKeys::generate("k1").unwrap();
        assert_ne!(keys.seal_str("same", "c"), keys.seal_str("same", "c"));
    }

    #[test]
    fn rotation_keeps_old_values_readable() {
        let old = DataKeys::parse(&format!("kid1:{}", key_b64(1)), None).unwrap();
        let sealed_old = old.seal_str("110105194912310021", "c");
        let rotated = DataKeys::parse(
            &format!("kid1:{},kid2:{}", key_b64(1), key_b64(2)),
            Some("kid2"),
        )
        .unwrap();
        let sealed_new = rotated.seal_str("110105194912310021", "c");
        assert_eq!(DataKeys::key_id_of(&sealed_new), Some("kid2"));
        assert_eq!(
            rotated.open_str(&sealed_old, "c").unwrap(),
            "110105194912310021"
        );
        assert_eq!(
            rotated.open_str(&sealed_new, "c").unwrap(),
            "110105194912310021"
        );
        // The old configuration cannot read the new key's values, and says which key it lacks.
        let err = old.open_str(&sealed_new, "c").unwrap_err();
        assert_eq!(err, CryptoError::UnknownKeyId { kid: "kid2".into() });
        assert!(err.to_string().contains("kid2"));
    }

    #[test]
    fn altered_values_are_refused() {
        let keys = DataKeys::generate("k1").unwrap();
        let sealed = keys.seal_str("x", "c");
        let mut chars: Vec<char> = sealed.chars().collect();
        let last = chars.len() - 1;
        chars[last] = if chars[last] == 'A' { 'B' } else { 'A' };
        let altered: String = chars.into_iter().collect();
        assert!(keys.open(&altered, "c").is_err());
        assert_eq!(keys.open("v1.k1.x", "c"), Err(CryptoError::Malformed));
        assert_eq!(keys.open("plain text", "c"), Err(CryptoError::Malformed));
    }

    #[test]
    fn configuration_errors_never_quote_key_material() {
        let bad = "kid1:c2VjcmV0LXRvby1zaG9ydA==";
        let err = DataKeys::parse(bad, None).unwrap_err();
        assert_eq!(err, KeyConfigError::Length(16));
        assert!(!err.to_string().contains("c2VjcmV0"));
        assert_eq!(
            DataKeys::parse("kid1:not base64!!", None).unwrap_err(),
            KeyConfigError::NotBase64
        );
        let two = format!("a:{},b:{}", key_b64(1), key_b64(2));
        assert_eq!(
            DataKeys::parse(&two, None).unwrap_err(),
            KeyConfigError::NoCurrent
        );
        assert_eq!(
            DataKeys::parse(&two, Some("c")).unwrap_err(),
            KeyConfigError::UnknownCurrent("c".into())
        );
        assert_eq!(
            DataKeys::parse("", None).unwrap_err(),
            KeyConfigError::Empty
        );
        assert_eq!(
            DataKeys::parse(&format!("bad id:{}", key_b64(1)), None).unwrap_err(),
            KeyConfigError::BadKeyId("bad id".into())
        );
    }

    #[test]
    fn debug_output_redacts_key_material() {
        let keys = Keyring::generate("k1").unwrap();
        let shown = format!("{keys:?}");
        assert!(shown.contains("k1") && shown.contains("redacted"));
        assert!(!shown.contains(&keys.index.to_base64()));
        assert!(!shown.contains(&keys.data.to_config()[3..]));
    }

    #[test]
    fn configuration_text_round_trips() {
        let keys = DataKeys::generate("local").unwrap();
        let again = DataKeys::parse(&keys.to_config(), Some("local")).unwrap();
        let sealed = keys.seal_str("v", "c");
        assert_eq!(again.open_str(&sealed, "c").unwrap(), "v");
    }

    #[test]
    fn index_hashes_are_keyed_and_domain_separated() {
        let a = IndexKey::from_base64(&key_b64(1)).unwrap();
        let b = IndexKey::from_base64(&key_b64(2)).unwrap();
        assert_eq!(a.hash("d", &["x"]), a.hash("d", &["x"]));
        assert_ne!(a.hash("d", &["x"]), b.hash("d", &["x"]));
        assert_ne!(a.hash("d", &["x"]), a.hash("e", &["x"]));
        assert_ne!(a.hash("d", &["ab", "c"]), a.hash("d", &["a", "bc"]));
    }
}
