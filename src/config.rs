//! Configuration, 12-factor style: every setting is a flag with an environment variable
//! behind it (clap's `env`), and secrets are environment-only. [`ENV_VARS`] lists every
//! variable the binary reads; a test holds the README and the Kubernetes manifests to it.

use std::collections::HashMap;
use std::time::Duration;

use kyc_worker::{HuaweiAuth, HuaweiConfig, Quota};

/// Where a variable belongs in a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Config,
    Secret,
}

/// Every environment variable `kyc` reads.
pub const ENV_VARS: &[(&str, Kind)] = &[
    ("KYC_AMQP_URL", Kind::Secret),
    ("KYC_DATABASE_URL", Kind::Secret),
    ("KYC_S3_ENDPOINT", Kind::Config),
    ("AWS_ACCESS_KEY_ID", Kind::Secret),
    ("AWS_SECRET_ACCESS_KEY", Kind::Secret),
    ("AWS_REGION", Kind::Config),
    ("KYC_QUEUE_PREFIX", Kind::Config),
    ("KYC_HTTP_LISTEN", Kind::Config),
    ("KYC_LOG_FORMAT", Kind::Config),
    ("RUST_LOG", Kind::Config),
    ("KYC_WORKER_CONCURRENCY", Kind::Config),
    ("KYC_PREFETCH", Kind::Config),
    ("KYC_SHUTDOWN_GRACE_SECS", Kind::Config),
    ("KYC_HUAWEI_ENDPOINT", Kind::Config),
    ("KYC_HUAWEI_IAM_ENDPOINT", Kind::Config),
    ("HUAWEICLOUD_SDK_PROJECT_ID", Kind::Config),
    ("HUAWEICLOUD_SDK_AK", Kind::Secret),
    ("HUAWEICLOUD_SDK_SK", Kind::Secret),
    ("KYC_ALIYUN_ENDPOINT", Kind::Config),
    ("ALIBABA_CLOUD_ACCESS_KEY_ID", Kind::Secret),
    ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", Kind::Secret),
    ("KYC_BAIDU_ENDPOINT", Kind::Config),
    ("KYC_BAIDU_PLAN_ID", Kind::Config),
    ("BAIDU_API_KEY", Kind::Secret),
    ("BAIDU_SECRET_KEY", Kind::Secret),
];

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Huawei settings from the environment, if credentials are configured.
pub fn huawei_from_env() -> Option<HuaweiConfig> {
    let (ak, sk) = (env("HUAWEICLOUD_SDK_AK")?, env("HUAWEICLOUD_SDK_SK")?);
    Some(HuaweiConfig {
        endpoint: env("KYC_HUAWEI_ENDPOINT").unwrap_or_else(|| kyc_worker::vendors::huawei::DEFAULT_ENDPOINT.into()),
        iam_endpoint: env("KYC_HUAWEI_IAM_ENDPOINT")
            .unwrap_or_else(|| kyc_worker::vendors::huawei::DEFAULT_IAM_ENDPOINT.into()),
        region: "cn-north-4".into(),
        project_id: env("HUAWEICLOUD_SDK_PROJECT_ID").unwrap_or_default(),
        auth: HuaweiAuth::AkSk { ak, sk },
        timeout: Duration::from_secs(15),
    })
}

/// The vendors' documented default quotas per API (Huawei IVS FAQ: 10 QPS each).
pub fn default_quotas() -> HashMap<String, Quota> {
    HashMap::from([
        ("huawei.ivs-standard".to_string(), Quota { qps: 10.0, burst: 10 }),
        ("huawei.ivs-idcard-extention".to_string(), Quota { qps: 10.0, burst: 10 }),
    ])
}

/// `S3` endpoint: empty means AWS itself.
pub fn s3_endpoint(flag: Option<&str>) -> Option<String> {
    flag.map(str::trim).filter(|s| !s.is_empty()).map(str::to_string)
}
