//! `Vendor` and `Operation`: which vendor API a job asks for.
//!
//! Operation names are `vendor.api` strings that appear in CSV files and queue messages, so
//! they are part of the versioned contract: renaming one is a schema change.

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
    Aliyun,
    /// Baidu AI 人脸实名认证 H5 (faceprint)
    Baidu,
    /// Huawei Cloud 人证核身 IVS
    Huawei,
}

impl Vendor {
    pub const ALL: [Vendor; 3] = [Vendor::Aliyun, Vendor::Baidu, Vendor::Huawei];

    pub fn as_str(self) -> &'static str {
        match self {
            Vendor::Aliyun => "aliyun",
            Vendor::Baidu => "baidu",
            Vendor::Huawei => "huawei",
        }
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
            .ok_or_else(|| UnknownOperation(s.to_string()))
    }
}

/// Every vendor API a job can drive. The string form is `vendor.api`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum Operation {
    /// Alibaba VerifyMaterial (2019-03-07): name + ID + face image (+ ID-card images).
    #[serde(rename = "aliyun.verify_material")]
    AliyunVerifyMaterial,
    /// Alibaba SubmitVerification (2018-09-16): Biz, TicketId and a Material.N list.
    #[serde(rename = "aliyun.submit_verification")]
    AliyunSubmitVerification,
    /// Alibaba DescribeVerifyResult (2019-03-07) by BizType + BizId.
    #[serde(rename = "aliyun.describe_verify_result")]
    AliyunDescribeVerifyResult,
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
        Operation::AliyunVerifyMaterial,
        Operation::AliyunSubmitVerification,
        Operation::AliyunDescribeVerifyResult,
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
            Operation::AliyunVerifyMaterial
            | Operation::AliyunSubmitVerification
            | Operation::AliyunDescribeVerifyResult => Vendor::Aliyun,
            Operation::BaiduStartSession
            | Operation::BaiduResultDetail
            | Operation::BaiduResultSimple
            | Operation::BaiduResultStat
            | Operation::BaiduResultMedia
            | Operation::BaiduResultGetall => Vendor::Baidu,
            Operation::HuaweiStandard | Operation::HuaweiIdcardExtension => Vendor::Huawei,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Operation::AliyunVerifyMaterial => "aliyun.verify_material",
            Operation::AliyunSubmitVerification => "aliyun.submit_verification",
            Operation::AliyunDescribeVerifyResult => "aliyun.describe_verify_result",
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
        let s = s.trim();
        Operation::ALL
            .into_iter()
            .find(|op| op.as_str().eq_ignore_ascii_case(s))
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
    fn unknown_operations_are_named_in_the_error() {
        let err = "huawei.nope".parse::<Operation>().unwrap_err();
        assert!(err.to_string().contains("huawei.nope"));
    }
}
