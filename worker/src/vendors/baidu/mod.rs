//! Baidu 人脸实名认证 H5 (faceprint): an OAuth `client_credentials` access token (cached,
//! refreshed on 100/110/111), the session calls `verifyToken/generate` → `idcard/submit` →
//! `uploadMatchImage`, and the post-verification queries `result/detail|simple|stat|
//! media/query|getall`. Codes are mapped to outcomes in [`response`]; `result/getall` also
//! yields the vendor's per-attempt charges. Digest of the documentation and the choices
//! made where it is ambiguous: `docs/vendors/baidu.md`.

mod client;
mod config;
mod probe;
pub mod request;
pub mod response;

pub use client::BaiduClient;
pub(crate) use client::{
    GENERATE, IDCARD_SUBMIT, RESULT_DETAIL, RESULT_GETALL, RESULT_MEDIA, RESULT_SIMPLE,
    RESULT_STAT, UPLOAD_MATCH_IMAGE,
};
pub use config::{BaiduConfig, DEFAULT_ENDPOINT};
