//! Alibaba Cloud 实人认证 (Cloudauth): VerifyMaterial and DescribeVerifyResult (2019-03-07),
//! SubmitVerification (2018-09-16), signed with RPC signature v1 (HMAC-SHA1) in [`sign`].
//!
//! So far: the signer (tested against the official SDK's vectors) and the code table
//! ([`response`]); the requests and the client arrive with the vendor issue
//! (see `docs/vendors/alibaba.md`).

pub mod response;
pub mod sign;
