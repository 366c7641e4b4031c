//! Where the keys that protect personal data come from: the environment (a Kubernetes Secret)
//! in server mode, or, for `kyc run` with nothing configured, a key file created next to the
//! SQLite database. Key material is never printed or logged; errors name variables, files
//! and key ids only.
//!
//! - `KYC_DATA_KEYS`: `kid:base64key,…`, every AES-256 key values may be sealed with
//! - `KYC_DATA_KEY_ID`: the id new values are sealed with (optional with a single key)
//! - `KYC_INDEX_KEY`: base64 HMAC key of job ids and duplicate checks; never rotates with
//!   the data keys (see `kyc_schemas::crypto`)

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use kyc_schemas::{DataKeys, IndexKey, Keyring};

pub const DATA_KEYS: &str = "KYC_DATA_KEYS";
pub const DATA_KEY_ID: &str = "KYC_DATA_KEY_ID";
pub const INDEX_KEY: &str = "KYC_INDEX_KEY";

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Reads the keys from `vars` (the environment, or a key file's lines). `None` when neither
/// data keys nor an index key are set; an error when they are set but unusable.
fn from_vars(vars: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Option<PartialKeys>> {
    let data = vars(DATA_KEYS)
        .map(|k| DataKeys::parse(&k, vars(DATA_KEY_ID).as_deref()))
        .transpose()
        .with_context(|| format!("{DATA_KEYS} / {DATA_KEY_ID} are not usable"))?;
    let index = vars(INDEX_KEY)
        .map(|k| IndexKey::from_base64(&k))
        .transpose()
        .with_context(|| format!("{INDEX_KEY} is not usable"))?;
    Ok((data.is_some() || index.is_some()).then_some(PartialKeys { data, index }))
}

struct PartialKeys {
    data: Option<DataKeys>,
    index: Option<IndexKey>,
}

fn missing(var: &str, command: &str, why: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "{var} is not set: `{command}` needs it {why}. Generate keys with `openssl rand -base64 32` \
         and see README.md, \"What personal data is stored, and for how long\""
    )
}

/// The data keys, required (`kyc work`, `kyc report outcomes --unmasked`).
pub fn require_data_keys(command: &str, why: &str) -> anyhow::Result<DataKeys> {
    match from_vars(&env)?.and_then(|k| k.data) {
        Some(d) => Ok(d),
        None => Err(missing(DATA_KEYS, command, why)),
    }
}

/// The data keys if configured (`kyc migrate` seals rows from older versions with them).
pub fn optional_data_keys() -> anyhow::Result<Option<DataKeys>> {
    Ok(from_vars(&env)?.and_then(|k| k.data))
}

/// Data keys and index key, both required (`kyc produce`).
pub fn require_keyring(command: &str) -> anyhow::Result<Keyring> {
    let keys = from_vars(&env)?;
    let (data, index) = match keys {
        Some(PartialKeys {
            data: Some(d),
            index: Some(i),
        }) => (d, i),
        Some(PartialKeys { data: None, .. }) | None => {
            return Err(missing(
                DATA_KEYS,
                command,
                "to seal names and ID numbers in the database and in job messages",
            ))
        }
        Some(PartialKeys { index: None, .. }) => {
            return Err(missing(
                INDEX_KEY,
                command,
                "to derive job ids and duplicate checks without revealing ID numbers",
            ))
        }
    };
    Ok(Keyring { data, index })
}

/// `kyc run`'s keys: the environment's if configured, else the key file next to a SQLite
/// database (created on first use, mode 0600), else fresh keys for an in-memory database.
/// Returns the keys and, when a file was created, its path (the caller says so).
pub fn embedded(database_url: &str) -> anyhow::Result<(Keyring, Option<PathBuf>)> {
    if from_vars(&env)?.is_some() {
        return Ok((require_keyring("kyc run")?, None));
    }
    let Some(db) = sqlite_file(database_url) else {
        if database_url.starts_with("sqlite:") {
            // `:memory:`: the data lives as long as the process, and so can the key.
            return Ok((Keyring::generate("memory")?, None));
        }
        bail!(
            "{DATA_KEYS} and {INDEX_KEY} are not set: `kyc run` creates a key file only next to a \
             SQLite database; configure keys for {}",
            database_url.split(':').next().unwrap_or_default()
        );
    };
    let path = key_file_path(&db);
    if path.exists() {
        return Ok((read_key_file(&path)?, None));
    }
    let kid = format!("local-{}", chrono::Utc::now().format("%Y%m%d"));
    let keys = Keyring::generate(&kid)?;
    write_key_file(&path, &keys)?;
    Ok((keys, Some(path)))
}

/// The file of a `sqlite:` URL, if it names one.
fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let file = rest.split('?').next().unwrap_or_default();
    (!file.is_empty() && !file.contains(":memory:")).then(|| PathBuf::from(file))
}

/// `kyc.db` → `kyc.db.keys`.
pub fn key_file_path(db: &Path) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(".keys");
    db.with_file_name(name)
}

fn read_key_file(path: &Path) -> anyhow::Result<Keyring> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("Failed to read the key file {}", path.display()))?;
    let vars: HashMap<String, String> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let get = |k: &str| vars.get(k).cloned().filter(|v| !v.is_empty());
    match from_vars(&get).with_context(|| format!("key file {}", path.display()))? {
        Some(PartialKeys {
            data: Some(data),
            index: Some(index),
        }) => Ok(Keyring { data, index }),
        _ => bail!(
            "key file {} lacks {DATA_KEYS} or {INDEX_KEY}",
            path.display()
        ),
    }
}

fn write_key_file(path: &Path, keys: &Keyring) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    // create_new: two runs starting at once never overwrite each other's key.
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("Failed to create the key file {}", path.display()))?;
    let text = format!(
        "# Keys of the personal data in the database next to this file (kyc run).\n\
         # Keep this file with the database and private: without it, names and ID numbers\n\
         # stored in the database cannot be read; with it, they can.\n\
         {DATA_KEYS}={}\n{DATA_KEY_ID}={}\n{INDEX_KEY}={}\n",
        keys.data.to_config(),
        keys.data.current_id(),
        keys.index.to_base64()
    );
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("Failed to write the key file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_name_their_file() {
        assert_eq!(
            sqlite_file("sqlite://kyc.db"),
            Some(PathBuf::from("kyc.db"))
        );
        assert_eq!(
            sqlite_file("sqlite:/tmp/x.db?mode=rwc"),
            Some(PathBuf::from("/tmp/x.db"))
        );
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("postgres://h/db"), None);
        assert_eq!(
            key_file_path(Path::new("/tmp/x.db")),
            PathBuf::from("/tmp/x.db.keys")
        );
    }

    #[test]
    fn a_created_key_file_is_private_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.db.keys");
        let keys = Keyring::generate("local-1").unwrap();
        write_key_file(&path, &keys).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let back = read_key_file(&path).unwrap();
        let sealed = keys.data.seal_str("v", "c");
        assert_eq!(back.data.open_str(&sealed, "c").unwrap(), "v");
        assert_eq!(back.index.hash("d", &["x"]), keys.index.hash("d", &["x"]));
        // Never overwritten.
        assert!(write_key_file(&path, &Keyring::generate("other").unwrap()).is_err());
    }
}
