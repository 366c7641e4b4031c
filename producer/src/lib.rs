//! The producer: CSV rows in, validated jobs out onto the queue, refused rows into a rejects
//! file with their reasons. Nothing is dropped silently and nothing is published twice.
//!
//! # Layout (a row's path)
//! - [`csv_source`]: a file or `s3://` object read as a stream of records (constant memory)
//! - [`bounded`]: the guard that stops a record over the bound before it is buffered
//! - [`identity`]: the input's identity, from which the default batch id derives
//! - [`validate`]: record → `Job` with the domain types, or a `Reject` naming the column
//! - [`rejects`]: the rejects CSV (row, column, masked value, reason)
//! - [`skipped`]: rows the re-verification policy left out, with the pass that covers them
//! - [`publish`]: chunks of jobs → database (resumable) → queue with pipelined confirms
#![warn(unreachable_pub, missing_debug_implementations)]

pub mod bounded;
pub mod csv_source;
pub mod identity;
pub mod publish;
pub mod rejects;
pub mod skipped;
pub mod validate;

use std::path::PathBuf;

use kyc_schemas::{Keyring, Operation};

pub use bounded::DEFAULT_MAX_RECORD_BYTES;
pub use csv_source::{Encoding, InputFailure};
pub use identity::default_batch_id;
pub use publish::{produce, ProduceError, Summary};
pub use tokio_util::sync::CancellationToken;
pub use validate::Reject;

/// What to produce and how.
#[derive(Debug, Clone)]
pub struct ProduceSettings {
    pub batch_id: String,
    /// A local path or `s3://bucket/key`.
    pub input: String,
    /// Base for image cells that are keys rather than full URIs: `s3://bucket/prefix/`, or
    /// `None` to keep keys relative (resolved by the worker's local image folder).
    pub images: Option<String>,
    /// Where material cells may point besides `images` (`KYC_MATERIAL_SOURCES`); a row
    /// naming anything else is refused.
    pub material_sources: kyc_objects::MaterialSources,
    /// The operation for rows without an `operation` column or with an empty cell.
    pub default_operation: Option<Operation>,
    pub rejects_path: PathBuf,
    pub dry_run: bool,
    /// Jobs per database insert and per confirm window.
    pub window: usize,
    pub encoding: Encoding,
    /// No record longer than this is buffered: the run stops, naming its line.
    pub max_record_bytes: usize,
    /// Seal names and ID numbers (database rows, queue messages) and key the job ids and
    /// duplicate checks. The index key must stay the same for the life of a batch: a resumed
    /// run recognises its jobs by their ids.
    pub keys: Keyring,
    /// Re-verification policy: a row whose person already passed the same operation (in
    /// another batch) this recently is not published; it is listed in the skipped file.
    pub skip_verified_within: Option<std::time::Duration>,
}
