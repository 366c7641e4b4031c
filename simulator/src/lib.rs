//! The vendor simulator: one HTTP server that speaks the vendors' APIs the way their
//! official SDKs expect (paths, auth and signatures checked, documented bodies and error
//! codes), answers deterministically from the input (`docs/simulator.md`), throttles with
//! each vendor's own signal, injects faults on demand, and keeps a ledger of billable calls.
//! It serves the tests, the benchmarks and the embedded `kyc run`.
//!
//! # Layout
//! - [`server`]: router, start-up, admin endpoints (`/admin/ledger`, `/admin/faults`)
//! - [`scenario`]: which answer an input gets (the ID number's sequence code)
//! - [`ledger`]: every call received, billable or not
//! - [`faults`]: latency, error rates, quotas, one-shot faults per request
//! - [`vendors`]: one folder per vendor, each with the same files: `auth` (tokens,
//!   signatures), `routes` (paths, validation, answers), `codes` (what it may send, from the
//!   shared table), `scenarios` (what the vendor decides), `mod` (accounts, state)
//!
//! Signature checks are written server-side, independently of the worker's signers: if
//! both shared one implementation, a signing bug would pass every test and fail in production.
#![warn(unreachable_pub, missing_debug_implementations)]

pub mod faults;
pub mod ledger;
pub mod scenario;
pub mod server;
pub mod vendors;

pub use faults::{default_burst, FaultConfig, Latency, VendorFaults};
pub use ledger::{LedgerEntry, LedgerSummary};
pub use server::{SimConfig, Simulator};
