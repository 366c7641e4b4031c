//! `Job`: one verification request as it travels on the queue (schema version 1).
//!
//! A job is self-contained: the worker needs nothing but the job and the object store to make
//! the vendor call. Materials are URIs (`s3://bucket/key`, `https://…`, or a path relative to
//! the image folder in embedded mode), never image bytes, so messages stay small.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{IdNumber, Mobile, Operation, PersonName};

/// Version of the job message. A worker dead-letters messages of a version it does not know
/// rather than guessing at their meaning.
pub const JOB_SCHEMA_VERSION: u32 = 1;

/// Deterministic job id: the same batch id and row content always give the same id, which is
/// what makes re-running a producer (or redelivering a message) safe.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(transparent)]
pub struct JobId(String);

impl JobId {
    /// Derives the id from the batch id and the row's canonical content (see the producer).
    /// 128 bits of SHA-256 keep collisions out of reach for any batch size while staying short.
    pub fn derive(batch_id: &str, canonical_content: &str) -> Self {
        let mut h = Sha256::new();
        h.update(batch_id.as_bytes());
        h.update([0u8]);
        h.update(canonical_content.as_bytes());
        Self(hex::encode(&h.finalize()[..16]))
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

/// The queue message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(
    title = "kyc-batch job",
    description = "One identity verification request, version 1"
)]
pub struct Job {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Job {
        Job {
            schema_version: JOB_SCHEMA_VERSION,
            job_id: JobId::derive("b1", "row"),
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
    fn job_ids_are_deterministic_and_depend_on_both_inputs() {
        assert_eq!(JobId::derive("b", "x"), JobId::derive("b", "x"));
        assert_ne!(JobId::derive("b", "x"), JobId::derive("c", "x"));
        assert_ne!(JobId::derive("b", "x"), JobId::derive("b", "y"));
        assert_eq!(JobId::derive("b", "x").as_str().len(), 32);
    }
}
