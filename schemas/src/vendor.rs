//! `Vendor` and `Operation`: which vendor API a job asks for.
//!
//! Operation names are `vendor.api` strings that appear in CSV files and queue messages, so
//! they are part of the versioned contract: renaming one is a schema change.
//!
//! Alibaba Cloud was called `aliyun` here until the vendor got one name across the code, the
//! operations and the quota keys. The old spellings are still *read* (CSV files, queue
//! messages and quota entries written before the rename), never written; and job ids keep
//! being derived from the old operation names (`Operation::identity_name`) so that the same
//! input row is the same job before and after the rename.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Vendor {
    /// Alibaba Cloud 实人认证 (Cloudauth)
    #[serde(alias = "aliyun")]
    Alibaba,
    /// Baidu AI 人脸实名认证 H5 (faceprint)
    Baidu,
    /// Huawei Cloud 人证核身 IVS
    Huawei,
}

impl Vendor {
    pub const ALL: [Vendor; 3] = [Vendor::Alibaba, Vendor::Baidu, Vendor::Huawei];

    pub fn as_str(self) -> &'static str {
        match self {
            Vendor::Alibaba => "alibaba",
            Vendor::Baidu => "baidu",
            Vendor::Huawei => "huawei",
        }
    }
}

/// Alibaba's name before the rename; read, never written.
pub const LEGACY_ALIBABA: &str = "aliyun";

/// Maps a `vendor.rest` string written with the old vendor name to the current one
/// (`aliyun.verify_material` → `alibaba.verify_material`); other strings are returned as
/// they are. For quota keys and operation names read from configuration or files.
pub fn current_name(s: &str) -> std::borrow::Cow<'_, str> {
    match s.split_once('.') {
        Some((v, rest)) if v.eq_ignore_ascii_case(LEGACY_ALIBABA) => {
            format!("{}.{rest}", Vendor::Alibaba.as_str()).into()
        }
        _ => s.into(),
    }
}

impl fmt::Display for Vendor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Vendor {
    type Err = UnknownOperation;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Vendor::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .or_else(|| (s == LEGACY_ALIBABA).then_some(Vendor::Alibaba))
            .ok_or_else(|| UnknownOperation(s.to_string()))
    }
}

/// Every vendor API a job can drive. The string form is `vendor.api`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum Operation {
    /// Alibaba VerifyMaterial (2019-03-07): name + ID + face image (+ ID-card images).
    #[serde(rename = "alibaba.verify_material", alias = "aliyun.verify_material")]
    AlibabaVerifyMaterial,
    /// Alibaba SubmitVerification (2018-09-16): Biz, TicketId and a Material.N list.
    #[serde(
        rename = "alibaba.submit_verification",
        alias = "aliyun.submit_verification"
    )]
    AlibabaSubmitVerification,
    /// Alibaba DescribeVerifyResult (2019-03-07) by BizType + BizId.
    #[serde(
        rename = "alibaba.describe_verify_result",
        alias = "aliyun.describe_verify_result"
    )]
    AlibabaDescribeVerifyResult,
    /// Baidu verifyToken/generate → idcard/submit → uploadMatchImage.
    #[serde(rename = "baidu.start_session")]
    BaiduStartSession,
    #[serde(rename = "baidu.result_detail")]
    BaiduResultDetail,
    #[serde(rename = "baidu.result_simple")]
    BaiduResultSimple,
    #[serde(rename = "baidu.result_stat")]
    BaiduResultStat,
    #[serde(rename = "baidu.result_media")]
    BaiduResultMedia,
    #[serde(rename = "baidu.result_getall")]
    BaiduResultGetall,
    /// Huawei ivs-standard (three factors: identity + face image or video).
    #[serde(rename = "huawei.standard")]
    HuaweiStandard,
    /// Huawei ivs-idcard-extention (two factors: name + ID number, or ID-card images).
    #[serde(rename = "huawei.idcard_extension")]
    HuaweiIdcardExtension,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown operation or vendor {0:?}")]
pub struct UnknownOperation(pub String);

impl Operation {
    pub const ALL: [Operation; 11] = [
        Operation::AlibabaVerifyMaterial,
        Operation::AlibabaSubmitVerification,
        Operation::AlibabaDescribeVerifyResult,
        Operation::BaiduStartSession,
        Operation::BaiduResultDetail,
        Operation::BaiduResultSimple,
        Operation::BaiduResultStat,
        Operation::BaiduResultMedia,
        Operation::BaiduResultGetall,
        Operation::HuaweiStandard,
        Operation::HuaweiIdcardExtension,
    ];

    pub fn vendor(self) -> Vendor {
        match self {
            Operation::AlibabaVerifyMaterial
            | Operation::AlibabaSubmitVerification
            | Operation::AlibabaDescribeVerifyResult => Vendor::Alibaba,
            Operation::BaiduStartSession
            | Operation::BaiduResultDetail
            | Operation::BaiduResultSimple
            | Operation::BaiduResultStat
            | Operation::BaiduResultMedia
            | Operation::BaiduResultGetall => Vendor::Baidu,
            Operation::HuaweiStandard | Operation::HuaweiIdcardExtension => Vendor::Huawei,
        }
    }

    /// The name job ids and dedup keys are derived from. Frozen: it is the operation's name
    /// as it was when job ids were first derived (Alibaba's under its old vendor name), so
    /// that renaming an operation never turns an old row into a new job (a second call).
    pub fn identity_name(self) -> &'static str {
        match self {
            Operation::AlibabaVerifyMaterial => "aliyun.verify_material",
            Operation::AlibabaSubmitVerification => "aliyun.submit_verification",
            Operation::AlibabaDescribeVerifyResult => "aliyun.describe_verify_result",
            other => other.as_str(),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Operation::AlibabaVerifyMaterial => "alibaba.verify_material",
            Operation::AlibabaSubmitVerification => "alibaba.submit_verification",
            Operation::AlibabaDescribeVerifyResult => "alibaba.describe_verify_result",
            Operation::BaiduStartSession => "baidu.start_session",
            Operation::BaiduResultDetail => "baidu.result_detail",
            Operation::BaiduResultSimple => "baidu.result_simple",
            Operation::BaiduResultStat => "baidu.result_stat",
            Operation::BaiduResultMedia => "baidu.result_media",
            Operation::BaiduResultGetall => "baidu.result_getall",
            Operation::HuaweiStandard => "huawei.standard",
            Operation::HuaweiIdcardExtension => "huawei.idcard_extension",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Operation {
    type Err = UnknownOperation;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = current_name(s.trim());
        Operation::ALL
            .into_iter()
            .find(|op| op.as_str().eq_ignore_ascii_case(&s))
            .ok_or_else(|| UnknownOperation(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_from_str_agree_with_serde() {
        for op in Operation::ALL {
            let json = serde_json::to_string(&op).unwrap();
            assert_eq!(json, format!("\"{}\"", op.as_str()));
            assert_eq!(op.as_str().parse::<Operation>().unwrap(), op);
            assert!(op.as_str().starts_with(op.vendor().as_str()));
        }
    }

    #[test]
    fn the_old_alibaba_names_are_read_but_never_written() {
        for (old, new) in [
            ("aliyun.verify_material", Operation::AlibabaVerifyMaterial),
            (
                "aliyun.submit_verification",
                Operation::AlibabaSubmitVerification,
            ),
            (
                "aliyun.describe_verify_result",
                Operation::AlibabaDescribeVerifyResult,
            ),
        ] {
            assert_eq!(old.parse::<Operation>().unwrap(), new);
            assert_eq!(
                serde_json::from_str::<Operation>(&format!("\"{old}\"")).unwrap(),
                new
            );
            assert!(new.as_str().starts_with("alibaba."));
            // Job ids of rows read before the rename stay the same.
            assert_eq!(new.identity_name(), old);
        }
        assert_eq!("aliyun".parse::<Vendor>().unwrap(), Vendor::Alibaba);
        assert_eq!(
            serde_json::from_str::<Vendor>("\"aliyun\"").unwrap(),
            Vendor::Alibaba
        );
        assert_eq!(Vendor::Alibaba.as_str(), "alibaba");
        assert_eq!(
            current_name("aliyun.VerifyMaterial"),
            "alibaba.VerifyMaterial"
        );
        assert_eq!(current_name("huawei.standard"), "huawei.standard");
        // Every other operation identifies by its own name.
        for op in Operation::ALL
            .into_iter()
            .filter(|o| o.vendor() != Vendor::Alibaba)
        {
            assert_eq!(op.identity_name(), op.as_str());
        }
    }

    #[test]
    fn unknown_operations_are_named_in_the_error() {
        let err = "huawei.nope".parse::<Operation>().unwrap_err();
        assert!(err.to_string().contains("huawei.nope"));
    }
}
