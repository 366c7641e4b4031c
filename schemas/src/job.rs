//! `Job`: one verification request, and [`JobMessage`], the form it travels in on the queue.
//!
//! A job is self-contained: the worker needs nothing but the job and the object store to make
//! the vendor call. Materials are URIs (`s3://bucket/key`, `https://…`, or a path relative to
//! the image folder in embedded mode), never image bytes, so messages stay small.
//!
//! Version 2 (this code writes it) seals the subject (name, ID number, mobile, user id) and the
//! material URIs into one AES-GCM envelope ([`crate::crypto`]): a message at rest in the
//! broker, and every dead-letter copy of it, holds ciphertext only. Version 1 carried them in
//! clear; it is exactly [`Job`]'s own JSON, and workers still read it so that messages queued
//! before an upgrade are worked off (they never write it).

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::crypto::{CryptoError, DataKeys, IndexKey};
use crate::{IdNumber, Mobile, Operation, PersonName};

/// Version of the job message this code writes. A worker dead-letters messages of a version
/// it does not know rather than guessing at their meaning.
pub const JOB_SCHEMA_VERSION: u32 = 2;

/// The version before personal fields were sealed: still read, never written.
pub const CLEAR_JOB_SCHEMA_VERSION: u32 = 1;

/// Deterministic job id: the same batch id and row content always give the same id, which is
/// what makes re-running a producer (or redelivering a message) safe.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(transparent)]
pub struct JobId(String);

impl JobId {
    /// Derives the id from the batch id and the row's canonical content (see the producer).
    /// Keyed (HMAC-SHA256 under the index key): the content holds a name and an ID number,
    /// and an ID number has few enough possible values that a plain hash of it, shown in
    /// logs and sent to vendors as a reference, could be reversed by trying them all.
    /// 128 bits keep collisions out of reach for any batch size while staying short.
    pub fn derive(key: &IndexKey, batch_id: &str, canonical_content: &str) -> Self {
        Self(hex::encode(
            &key.hash("job_id", &[batch_id, canonical_content])[..16],
        ))
    }

    /// Wraps an id read back from the database or a message.
    pub fn from_stored(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The kind of identity document. Only mainland resident ID cards are verified today; the
/// other values exist because Baidu's `certificate_type` accepts them (0–5).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum IdType {
    /// 中国大陆居民二代身份证 (Baidu certificate_type 0)
    #[default]
    ResidentId,
}

/// Who is being verified. Every field is optional at this level because operations need
/// different subsets (a Baidu result query needs only a verify_token); the producer checks
/// that each operation gets what it requires.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Subject {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<PersonName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_number: Option<IdNumber>,
    #[serde(default)]
    pub id_type: IdType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mobile: Option<Mobile>,
    /// The customer's own user id, passed to vendors that take one (Alibaba UserId, Baidu).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
}

/// Images and videos, as URIs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Materials {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub face_image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_card_front: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_card_back: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video: Option<String>,
    /// The portrait stored in the ID card's chip (Alibaba SubmitVerification `IDPic`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_chip_photo: Option<String>,
}

impl Materials {
    pub fn is_empty(&self) -> bool {
        self.face_image.is_none()
            && self.id_card_front.is_none()
            && self.id_card_back.is_none()
            && self.video.is_none()
            && self.id_chip_photo.is_none()
    }
}

/// Vendor-side references and options a job may carry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct VendorRefs {
    /// Alibaba BizType (scene configured in the console).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub biz_type: Option<String>,
    /// Alibaba BizId (our reference for one verification).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub biz_id: Option<String>,
    /// Alibaba 2018 TicketId / Baidu verify_token of an earlier session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_token: Option<String>,
    /// Baidu plan_id (方案 id from the console).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_id: Option<String>,
    /// Huawei video liveness actions, e.g. "1,3" (1 left, 2 right, 3 nod, 4 mouth).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actions: Option<String>,
    /// Huawei nod_threshold, in degrees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nod_threshold: Option<f64>,
}

/// One job as the stages handle it, personal fields in clear. Its JSON is also the version 1
/// queue message (still read by workers, never written).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(
    title = "kyc-batch job, version 1 (read only)",
    description = "One identity verification request with personal fields in clear; workers still read it, nothing writes it"
)]
pub struct Job {
    /// The message version the job was read from ([`JOB_SCHEMA_VERSION`] for new jobs).
    pub schema_version: u32,
    pub job_id: JobId,
    pub batch_id: String,
    /// 1-based line of the source CSV's record (header is row 1), for tracing a row back.
    pub source_row: u64,
    /// The customer's reference for this person (their account id), echoed into reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_ref: Option<String>,
    pub operation: Operation,
    pub subject: Subject,
    #[serde(default, skip_serializing_if = "Materials::is_empty")]
    pub materials: Materials,
    #[serde(default)]
    pub vendor_refs: VendorRefs,
}

impl Job {
    pub fn vendor(&self) -> crate::Vendor {
        self.operation.vendor()
    }
}

/// The queue message (version 2): routing and references in clear, personal fields sealed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(
    title = "kyc-batch job",
    description = "One identity verification request, version 2: subject and materials sealed"
)]
pub struct JobMessage {
    /// Always [`JOB_SCHEMA_VERSION`] for messages written by this code.
    pub schema_version: u32,
    pub job_id: JobId,
    pub batch_id: String,
    /// 1-based line of the source CSV's record (header is row 1), for tracing a row back.
    pub source_row: u64,
    /// The customer's reference for this person (their account id), echoed into reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_ref: Option<String>,
    pub operation: Operation,
    #[serde(default)]
    pub vendor_refs: VendorRefs,
    /// [`SealedPersonal`] as JSON, sealed: `v1.<kid>.<nonce>.<ciphertext>` (AES-256-GCM,
    /// associated data `job-message` and the job id, so it opens in this message only).
    pub personal: String,
}

/// What [`JobMessage::personal`] holds once opened.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(
    title = "kyc-batch job, sealed part",
    description = "The personal fields of a version 2 job message, before sealing"
)]
pub struct SealedPersonal {
    pub subject: Subject,
    #[serde(default, skip_serializing_if = "Materials::is_empty")]
    pub materials: Materials,
}

/// Why a version 2 message did not open into a job.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("personal fields: {0}")]
    Crypto(#[from] CryptoError),
    /// The serde message is not quoted: it could contain a value.
    #[error("personal fields opened but are not a valid subject ({0})")]
    Invalid(String),
}

fn message_context(job_id: &JobId) -> String {
    format!("job-message\u{1f}{job_id}")
}

impl JobMessage {
    /// Seals a job's personal fields with the current data key.
    pub fn seal(job: &Job, keys: &DataKeys) -> Self {
        let personal = SealedPersonal {
            subject: job.subject.clone(),
            materials: job.materials.clone(),
        };
        let plain = serde_json::to_vec(&personal).expect("subjects serialize");
        Self {
            schema_version: JOB_SCHEMA_VERSION,
            job_id: job.job_id.clone(),
            batch_id: job.batch_id.clone(),
            source_row: job.source_row,
            customer_ref: job.customer_ref.clone(),
            operation: job.operation,
            vendor_refs: job.vendor_refs.clone(),
            personal: keys.seal(&plain, &message_context(&job.job_id)),
        }
    }

    /// The message's bytes on the queue.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("job messages serialize")
    }

    /// Opens the personal fields with whichever configured key sealed them.
    pub fn open(self, keys: &DataKeys) -> Result<Job, OpenError> {
        let plain = keys.open(&self.personal, &message_context(&self.job_id))?;
        let personal: SealedPersonal = serde_json::from_slice(&plain).map_err(|e| {
            OpenError::Invalid(format!(
                "{:?} error at line {} column {}",
                e.classify(),
                e.line(),
                e.column()
            ))
        })?;
        Ok(Job {
            schema_version: self.schema_version,
            job_id: self.job_id,
            batch_id: self.batch_id,
            source_row: self.source_row,
            customer_ref: self.customer_ref,
            operation: self.operation,
            subject: personal.subject,
            materials: personal.materials,
            vendor_refs: self.vendor_refs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Job {
        Job {
            schema_version: JOB_SCHEMA_VERSION,
            job_id: JobId::derive(&IndexKey::generate(), "b1", "row"),
            batch_id: "b1".into(),
            source_row: 2,
            customer_ref: Some("C-1".into()),
            operation: Operation::HuaweiStandard,
            subject: Subject {
                name: Some(PersonName::parse("张三").unwrap()),
                id_number: Some(IdNumber::parse("11010519491231002X").unwrap()),
                ..Subject::default()
            },
            materials: Materials {
                face_image: Some("s3://faces/1.jpg".into()),
                ..Materials::default()
            },
            vendor_refs: VendorRefs::default(),
        }
    }

    #[test]
    fn a_job_round_trips_through_json() {
        let job = sample();
        let json = serde_json::to_string(&job).unwrap();
        let back: Job = serde_json::from_str(&json).unwrap();
        assert_eq!(back, job);
        assert!(json.contains("\"operation\":\"huawei.standard\""));
    }

    #[test]
    fn a_message_with_a_bad_id_number_does_not_deserialize() {
        let json = serde_json::to_string(&sample())
            .unwrap()
            .replace("11010519491231002X", "110105194912310021");
        assert!(serde_json::from_str::<Job>(&json).is_err());
    }

    #[test]
    fn job_ids_are_deterministic_and_depend_on_both_inputs_and_the_key() {
        let k = IndexKey::generate();
        assert_eq!(JobId::derive(&k, "b", "x"), JobId::derive(&k, "b", "x"));
        assert_ne!(JobId::derive(&k, "b", "x"), JobId::derive(&k, "c", "x"));
        assert_ne!(JobId::derive(&k, "b", "x"), JobId::derive(&k, "b", "y"));
        assert_ne!(
            JobId::derive(&k, "b", "x"),
            JobId::derive(&IndexKey::generate(), "b", "x")
        );
        assert_eq!(JobId::derive(&k, "b", "x").as_str().len(), 32);
    }

    #[test]
    fn a_message_holds_no_personal_field_in_clear_and_opens_to_the_job() {
        let keys = DataKeys::generate("k1").unwrap();
        let job = sample();
        let bytes = JobMessage::seal(&job, &keys).to_bytes();
        let text = String::from_utf8(bytes.clone()).unwrap();
        for clear in ["张三", "11010519491231002X", "s3://faces/1.jpg"] {
            assert!(!text.contains(clear), "{clear} is in the message");
        }
        assert!(text.contains("\"schema_version\":2"));
        let msg: JobMessage = serde_json::from_slice(&bytes).unwrap();
        let mut expected = job;
        expected.schema_version = JOB_SCHEMA_VERSION;
        assert_eq!(msg.open(&keys).unwrap(), expected);
    }

    #[test]
    fn sealed_fields_moved_to_another_message_do_not_open() {
        let keys = DataKeys::generate("k1").unwrap();
        let a = JobMessage::seal(&sample(), &keys);
        let mut other = sample();
        other.job_id = JobId::from_stored("another");
        let mut b = JobMessage::seal(&other, &keys);
        b.personal = a.personal;
        assert!(matches!(
            b.open(&keys),
            Err(OpenError::Crypto(CryptoError::Failed { .. }))
        ));
    }
}
