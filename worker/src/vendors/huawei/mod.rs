//! Huawei Cloud IVS (人证核身): `POST /v2.0/ivs-standard` (three factors) and
//! `POST /v2.0/ivs-idcard-extention` (two factors), signed with AK/SK `SDK-HMAC-SHA256`
//! ([`sign`]) or an IAM token. Codes are mapped to outcomes in [`response`].

mod client;
mod config;
mod probe;
pub(crate) mod request;
mod response;
mod sign;

pub use client::HuaweiClient;
pub(crate) use client::{EXTENSION, STANDARD};
pub use config::{HuaweiAuth, HuaweiConfig, DEFAULT_ENDPOINT, DEFAULT_IAM_ENDPOINT};
