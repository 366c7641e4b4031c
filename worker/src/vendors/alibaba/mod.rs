//! Alibaba Cloud 实人认证 (Cloudauth): VerifyMaterial and DescribeVerifyResult (2019-03-07),
//! SubmitVerification (2018-09-16), signed with RPC signature v1 (HMAC-SHA1) in [`sign`].
//! Codes are mapped to outcomes in [`response`]; `docs/vendors/alibaba.md` is the digest of
//! the vendor's documentation and the choices made where it is ambiguous.

mod client;
mod config;
mod probe;
pub mod request;
pub mod response;
pub mod sign;

pub use client::AlibabaClient;
pub(crate) use client::{DESCRIBE_VERIFY_RESULT, SUBMIT_VERIFICATION, VERIFY_MATERIAL};
pub use config::{AlibabaConfig, DEFAULT_ENDPOINT, DEFAULT_PENDING_WINDOW};
