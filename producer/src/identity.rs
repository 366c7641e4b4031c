//! The input's identity, from which the default batch id derives: a re-run of the same input
//! (a Kubernetes Job retried after a crash, an operator running the command twice) lands in
//! the same batch, whose job ids are the same, so nothing is published or billed twice; a
//! changed file is a new batch.
//!
//! A local file is identified by a SHA-256 of its bytes, read in chunks (never held whole);
//! an S3 object by bucket, key and version id (or ETag), without reading it.

use std::io::Read;

use kyc_objects::ObjectStore;
use sha2::{Digest, Sha256};

use crate::csv_source::SourceError;

/// `in-` and 16 hex characters of the identity's SHA-256: short enough for a report header,
/// long enough that two inputs never meet.
pub async fn default_batch_id(
    input: &str,
    objects: Option<&ObjectStore>,
) -> Result<String, SourceError> {
    let identity = if input.starts_with("s3://") {
        let objects = objects.ok_or_else(|| SourceError::Open {
            uri: input.into(),
            source: kyc_objects::ObjectError::NoS3 {
                at: kyc_objects::origin(input),
            },
        })?;
        let id = objects
            .s3_identity(input)
            .await
            .map_err(|source| SourceError::Open {
                uri: input.into(),
                source,
            })?;
        format!("s3\0{input}\0{id}")
    } else {
        let path = input.to_string();
        let digest = tokio::task::spawn_blocking(move || file_sha256(&path))
            .await
            .map_err(|e| SourceError::BadHeader(format!("hashing the input failed: {e}")))?
            .map_err(|source| SourceError::OpenFile {
                uri: input.into(),
                source,
            })?;
        format!("file\0{digest}")
    };
    Ok(format!(
        "in-{}",
        &hex::encode(Sha256::digest(identity))[..16]
    ))
}

fn file_sha256(path: &str) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_same_bytes_give_the_same_batch_and_a_change_a_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.csv"), dir.path().join("b.csv"));
        std::fs::write(&a, "name\nx\n").unwrap();
        std::fs::write(&b, "name\nx\n").unwrap();
        let id_a = default_batch_id(a.to_str().unwrap(), None).await.unwrap();
        assert_eq!(
            id_a,
            default_batch_id(b.to_str().unwrap(), None).await.unwrap()
        );
        assert!(id_a.starts_with("in-") && id_a.len() == 19, "{id_a}");
        std::fs::write(&b, "name\ny\n").unwrap();
        assert_ne!(
            id_a,
            default_batch_id(b.to_str().unwrap(), None).await.unwrap()
        );
    }
}
