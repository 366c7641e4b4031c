//! Versioned message types shared by every stage of kyc-batch, and the domain newtypes that
//! make invalid subjects unrepresentable. No I/O lives here: the producer, the worker, the
//! simulator and the reports all agree on these types, and `json/` holds their JSON Schemas.
//!
//! # Layout
//! - [`id_number`]: `IdNumber`, an 18-digit resident ID whose GB 11643-1999 checksum was checked
//! - [`person_name`]: `PersonName`, trimmed and non-empty
//! - [`mobile`]: `Mobile`, an 11-digit mainland mobile number
//! - [`vendor`]: `Vendor` and `Operation`, the `vendor.api` values a CSV row may ask for
//! - [`job`]: `Job`, and `JobMessage`, the queue message (schema version [`JOB_SCHEMA_VERSION`],
//!   personal fields sealed)
//! - [`crypto`]: AES-256-GCM envelopes with rotating data keys, and the keyed hash (blind
//!   index) behind job ids and duplicate checks
//! - [`outcome`]: `Outcome`, `Status`, `Reason`: one normalized result per job
//! - [`codes`]: every vendor code → (status, reason, retry class, source), one table per vendor
//! - [`mask`]: how PII is shown when it must be shown at all (reports, `Debug`)
//! - [`redact`]: `scrub` for text that leaves the process, `Secret` and `redact_url` for `Debug`
//! - [`safe_csv`]: the CSV writer of every file we hand to people: no cell runs as a formula
//! - [`money`]: exact amounts, the price table per vendor × product, spend caps and the spend day
#![warn(unreachable_pub, missing_debug_implementations)]

pub mod codes;
pub mod crypto;
pub mod id_number;
pub mod job;
pub mod mask;
pub mod mobile;
pub mod money;
pub mod outcome;
pub mod person_name;
pub mod redact;
pub mod safe_csv;
pub mod vendor;

pub use crypto::{CryptoError, DataKeys, IndexKey, KeyConfigError, Keyring, SecretKey};
pub use id_number::{IdNumber, IdNumberError};
pub use job::{
    IdType, Job, JobId, JobMessage, Materials, OpenError, SealedPersonal, Subject, VendorRefs,
    CLEAR_JOB_SCHEMA_VERSION, JOB_SCHEMA_VERSION,
};
pub use mobile::{Mobile, MobileError};
pub use outcome::{Outcome, Reason, Status, OUTCOME_SCHEMA_VERSION};
pub use person_name::{PersonName, PersonNameError};
pub use redact::{redact_url, scrub, scrub_unbounded, Secret};
pub use vendor::{Operation, UnknownOperation, Vendor};

/// The JSON Schemas of the versioned messages, as committed under `schemas/json/`.
/// A test compares these with the files, so the files cannot drift from the types.
pub fn json_schemas() -> Vec<(&'static str, serde_json::Value)> {
    vec![
        (
            "job.v1.schema.json",
            serde_json::to_value(schemars::schema_for!(Job)).expect("schema serializes"),
        ),
        (
            "job.v2.schema.json",
            serde_json::to_value(schemars::schema_for!(JobMessage)).expect("schema serializes"),
        ),
        (
            "job-personal.v2.schema.json",
            serde_json::to_value(schemars::schema_for!(SealedPersonal)).expect("schema serializes"),
        ),
        (
            "outcome.v1.schema.json",
            serde_json::to_value(schemars::schema_for!(Outcome)).expect("schema serializes"),
        ),
    ]
}
