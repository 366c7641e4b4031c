//! Configuration, 12-factor style: every setting is a flag with an environment variable
//! behind it (clap's `env`), and secrets are environment-only. [`ENV_VARS`] lists every
//! variable the binary reads; a test holds the README and the Kubernetes manifests to it.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use kyc_objects::{AddressPolicy, MaterialSources};
use kyc_worker::{AlibabaConfig, BaiduConfig, HuaweiAuth, HuaweiConfig, Quota};

/// Where a variable belongs in a deployment.
// Read by the tests that hold the README and k8s/ to this list.
#[cfg_attr(not(test), allow(dead_code))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Config,
    Secret,
}

/// Every environment variable `kyc` reads.
#[cfg_attr(not(test), allow(dead_code))]
pub const ENV_VARS: &[(&str, Kind)] = &[
    ("KYC_AMQP_URL", Kind::Secret),
    ("KYC_DATABASE_URL", Kind::Secret),
    ("KYC_AMQP_CA_FILE", Kind::Config),
    ("KYC_S3_ENDPOINT", Kind::Config),
    ("KYC_S3_CA_FILE", Kind::Config),
    ("AWS_ACCESS_KEY_ID", Kind::Secret),
    ("AWS_SECRET_ACCESS_KEY", Kind::Secret),
    ("AWS_REGION", Kind::Config),
    ("KYC_QUEUE_PREFIX", Kind::Config),
    ("KYC_MATERIAL_SOURCES", Kind::Config),
    ("KYC_MATERIAL_ALLOW_PRIVATE_ADDRESSES", Kind::Config),
    ("KYC_HTTP_LISTEN", Kind::Config),
    ("KYC_LOG_FORMAT", Kind::Config),
    ("RUST_LOG", Kind::Config),
    ("KYC_WORKER_CONCURRENCY", Kind::Config),
    ("KYC_PREFETCH", Kind::Config),
    ("KYC_SHUTDOWN_GRACE_SECS", Kind::Config),
    ("KYC_QUOTAS", Kind::Config),
    ("KYC_QUOTAS_FILE", Kind::Config),
    ("KYC_HUAWEI_ENDPOINT", Kind::Config),
    ("KYC_HUAWEI_IAM_ENDPOINT", Kind::Config),
    ("HUAWEICLOUD_SDK_PROJECT_ID", Kind::Config),
    ("HUAWEICLOUD_SDK_AK", Kind::Secret),
    ("HUAWEICLOUD_SDK_SK", Kind::Secret),
    ("KYC_HUAWEI_IAM_USER", Kind::Config),
    ("KYC_HUAWEI_IAM_DOMAIN", Kind::Config),
    ("KYC_HUAWEI_IAM_PASSWORD", Kind::Secret),
    ("KYC_HUAWEI_ENTERPRISE_PROJECT_ID", Kind::Config),
    ("KYC_HUAWEI_RETRY_UNCROPPED", Kind::Config),
    ("KYC_ALIBABA_ENDPOINT", Kind::Config),
    ("KYC_ALIBABA_BIZ_TYPE", Kind::Config),
    ("KYC_ALIBABA_PENDING_WINDOW_SECS", Kind::Config),
    ("ALIBABA_CLOUD_ACCESS_KEY_ID", Kind::Secret),
    ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", Kind::Secret),
    ("KYC_BAIDU_ENDPOINT", Kind::Config),
    ("KYC_BAIDU_PLAN_ID", Kind::Config),
    ("KYC_BAIDU_QUALITY_CONTROL", Kind::Config),
    ("KYC_BAIDU_LIVENESS_CONTROL", Kind::Config),
    ("BAIDU_API_KEY", Kind::Secret),
    ("BAIDU_SECRET_KEY", Kind::Secret),
    ("KYC_OPERATOR", Kind::Config),
    (crate::keys::DATA_KEYS, Kind::Secret),
    (crate::keys::DATA_KEY_ID, Kind::Config),
    (crate::keys::INDEX_KEY, Kind::Secret),
    ("KYC_DEAD_LETTER_TTL", Kind::Config),
    ("KYC_RETENTION", Kind::Config),
    ("KYC_SKIP_VERIFIED_WITHIN", Kind::Config),
    ("KYC_DATABASE_TIMEOUT", Kind::Config),
    ("KYC_STATEMENT_TIMEOUT", Kind::Config),
    ("KYC_AMQP_TIMEOUT", Kind::Config),
    ("KYC_S3_TIMEOUT", Kind::Config),
    ("KYC_STUCK_AFTER", Kind::Config),
    ("KYC_MATERIAL_BUDGET", Kind::Config),
    ("KYC_PRICES", Kind::Config),
    ("KYC_PRICES_FILE", Kind::Config),
    ("KYC_SPEND_CAPS", Kind::Config),
    ("KYC_SPEND_TIMEZONE", Kind::Config),
];

/// Where materials may come from: the flags of every command that reads CSV material cells
/// (`produce`, `work`, `run`).
#[derive(Debug, Args, Clone)]
pub struct MaterialArgs {
    /// Where material cells may point besides --images, comma-separated:
    /// s3://bucket/prefix/, https://host[:port]/prefix/, or http://host:port/prefix/ to allow
    /// plain HTTP there. Relative paths always mean the --images folder.
    #[arg(long, env = "KYC_MATERIAL_SOURCES", default_value = "")]
    pub material_sources: String,
    /// Non-public address classes material downloads may connect to: loopback, private,
    /// link-local, shared (comma-separated). Default: none.
    #[arg(long, env = "KYC_MATERIAL_ALLOW_PRIVATE_ADDRESSES", default_value = "")]
    pub material_allow_private_addresses: String,
}

impl MaterialArgs {
    /// The allowlist, parsed once; a bad entry stops the command before it reads anything.
    pub fn sources(&self) -> anyhow::Result<MaterialSources> {
        let addresses = AddressPolicy::parse(&self.material_allow_private_addresses)
            .context("KYC_MATERIAL_ALLOW_PRIVATE_ADDRESSES")?;
        Ok(MaterialSources::parse(&self.material_sources)
            .context("KYC_MATERIAL_SOURCES")?
            .with_addresses(addresses))
    }
}

fn env(name: &str) -> Option<String> {
    let read = |n: &str| std::env::var(n).ok().filter(|v| !v.trim().is_empty());
    read(name).or_else(|| {
        // Deployments written before Alibaba had one name here still set KYC_ALIYUN_*.
        let legacy = format!("KYC_ALIYUN_{}", name.strip_prefix("KYC_ALIBABA_")?);
        let value = read(&legacy)?;
        tracing::warn!(variable = %legacy, "deprecated name, read as {name}");
        Some(value)
    })
}

/// Huawei settings from the environment, if credentials are configured: AK/SK (the SDK's
/// default), or else an IAM user whose password token is fetched and cached.
pub fn huawei_from_env() -> Option<HuaweiConfig> {
    let auth = match (env("HUAWEICLOUD_SDK_AK"), env("HUAWEICLOUD_SDK_SK")) {
        (Some(ak), Some(sk)) => HuaweiAuth::AkSk { ak, sk },
        _ => HuaweiAuth::Password {
            user: env("KYC_HUAWEI_IAM_USER")?,
            password: env("KYC_HUAWEI_IAM_PASSWORD")?,
            domain: env("KYC_HUAWEI_IAM_DOMAIN")?,
        },
    };
    Some(HuaweiConfig {
        endpoint: env("KYC_HUAWEI_ENDPOINT")
            .unwrap_or_else(|| kyc_worker::vendors::huawei::DEFAULT_ENDPOINT.into()),
        iam_endpoint: env("KYC_HUAWEI_IAM_ENDPOINT")
            .unwrap_or_else(|| kyc_worker::vendors::huawei::DEFAULT_IAM_ENDPOINT.into()),
        region: "cn-north-4".into(),
        project_id: env("HUAWEICLOUD_SDK_PROJECT_ID").unwrap_or_default(),
        auth,
        timeout: Duration::from_secs(15),
        enterprise_project_id: env("KYC_HUAWEI_ENTERPRISE_PROJECT_ID"),
        retry_uncropped: !matches!(
            env("KYC_HUAWEI_RETRY_UNCROPPED").as_deref(),
            Some("false" | "0" | "no")
        ),
    })
}

/// Alibaba settings from the environment, if an AccessKey is configured (the official SDKs'
/// variable names).
pub fn alibaba_from_env() -> Option<AlibabaConfig> {
    Some(AlibabaConfig {
        endpoint: env("KYC_ALIBABA_ENDPOINT")
            .unwrap_or_else(|| kyc_worker::vendors::alibaba::DEFAULT_ENDPOINT.into()),
        access_key_id: env("ALIBABA_CLOUD_ACCESS_KEY_ID")?,
        access_key_secret: env("ALIBABA_CLOUD_ACCESS_KEY_SECRET")?,
        region: "cn-hangzhou".into(),
        biz_type: env("KYC_ALIBABA_BIZ_TYPE"),
        timeout: Duration::from_secs(15),
        url_ttl: Duration::from_secs(600),
        pending_window: env("KYC_ALIBABA_PENDING_WINDOW_SECS")
            .and_then(|v| v.parse().ok())
            .map(Duration::from_secs)
            .unwrap_or(kyc_worker::vendors::alibaba::DEFAULT_PENDING_WINDOW),
    })
}

/// Baidu settings from the environment, if the app's API Key and Secret Key are configured.
pub fn baidu_from_env() -> Option<BaiduConfig> {
    Some(BaiduConfig {
        endpoint: env("KYC_BAIDU_ENDPOINT")
            .unwrap_or_else(|| kyc_worker::vendors::baidu::DEFAULT_ENDPOINT.into()),
        api_key: env("BAIDU_API_KEY")?,
        secret_key: env("BAIDU_SECRET_KEY")?,
        plan_id: env("KYC_BAIDU_PLAN_ID"),
        quality_control: env("KYC_BAIDU_QUALITY_CONTROL"),
        liveness_control: env("KYC_BAIDU_LIVENESS_CONTROL"),
        timeout: Duration::from_secs(15),
    })
}

/// Conservative default quotas per API, 10 QPS each, without bursts: Huawei IVS's documented
/// 10 QPS; Alibaba documents 10–50 per API and account; Baidu's paid face APIs default to 10
/// (the H5 endpoints' own limit is not documented). No burst: a vendor counts calls per
/// second, and a burst of Q on top of a full second's Q would be 2Q in one second. No cap on
/// calls in flight either: the worker's concurrency follows the quota.
pub fn default_quotas() -> HashMap<String, Quota> {
    kyc_worker::vendors::APIS
        .iter()
        .map(|api| {
            (
                kyc_worker::Limiters::key(api),
                Quota {
                    qps: 10.0,
                    burst: 1,
                    max_in_flight: None,
                },
            )
        })
        .collect()
}

/// Parses quota entries `vendor.api=qps[/burst[/max_in_flight]]`, separated by commas or
/// new lines; `#` starts a comment.
pub fn parse_quotas(text: &str) -> anyhow::Result<HashMap<String, Quota>> {
    let mut out = HashMap::new();
    for entry in text
        .lines()
        .flat_map(|l| l.split('#').next().unwrap_or_default().split(','))
    {
        let entry = entry.trim();
        if entry.is_empty() {
            continue;
        }
        let (key, value) = entry.split_once('=').ok_or_else(|| {
            anyhow::anyhow!("quota {entry:?}: expected vendor.api=qps[/burst[/max_in_flight]]")
        })?;
        let mut parts = value.split('/').map(str::trim);
        let qps: f64 = parts
            .next()
            .unwrap_or_default()
            .parse()
            .map_err(|_| anyhow::anyhow!("quota {entry:?}: qps is not a number"))?;
        if !(qps.is_finite() && qps > 0.0 && qps <= 100_000.0) {
            anyhow::bail!("quota {entry:?}: qps must be a number above 0 and at most 100000");
        }
        let burst = match parts.next() {
            Some(b) => b
                .parse()
                .map_err(|_| anyhow::anyhow!("quota {entry:?}: burst is not a whole number"))?,
            // Evenly spaced calls unless a burst is asked for (see `default_quotas`).
            None => 1,
        };
        let max_in_flight = parts
            .next()
            .map(|m| {
                m.parse().map_err(|_| {
                    anyhow::anyhow!("quota {entry:?}: max_in_flight is not a whole number")
                })
            })
            .transpose()?;
        out.insert(
            // Quota files written before the rename say `aliyun.Api`.
            kyc_schemas::vendor::current_name(key.trim()).into_owned(),
            Quota {
                qps,
                burst,
                max_in_flight,
            },
        );
    }
    Ok(out)
}

/// A whole number from the environment; unset or empty is `None` (Kubernetes config maps
/// carry every variable, the unused ones empty).
pub fn env_number<T: std::str::FromStr>(name: &str) -> anyhow::Result<Option<T>> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v.trim().parse().map(Some).map_err(|_| {
            anyhow::anyhow!("{name}={v:?} is not a whole number (leave it empty for the default)")
        }),
        _ => Ok(None),
    }
}

/// Quotas: the defaults, then `KYC_QUOTAS_FILE`, then `KYC_QUOTAS` (later entries win).
pub fn quotas() -> anyhow::Result<HashMap<String, Quota>> {
    let mut q = default_quotas();
    q.extend(explicit_quotas()?);
    Ok(q)
}

/// Only the quotas set in `KYC_QUOTAS_FILE` and `KYC_QUOTAS`, without the defaults: what
/// `kyc doctor` holds against the list of APIs.
pub fn explicit_quotas() -> anyhow::Result<HashMap<String, Quota>> {
    let mut q = HashMap::new();
    if let Some(path) = env("KYC_QUOTAS_FILE") {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| anyhow::anyhow!("KYC_QUOTAS_FILE {path}: {e}"))?;
        q.extend(parse_quotas(&text)?);
    }
    if let Some(text) = env("KYC_QUOTAS") {
        q.extend(parse_quotas(&text)?);
    }
    Ok(q)
}

/// The price table: `KYC_PRICES_FILE`, then `KYC_PRICES` (later entries win). No defaults:
/// the vendors' list prices are not in the copied documentation, and a guessed price is
/// worse than "no price configured".
pub fn prices() -> anyhow::Result<kyc_schemas::money::PriceTable> {
    let mut t = kyc_schemas::money::PriceTable::default();
    if let Some(path) = env("KYC_PRICES_FILE") {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| anyhow::anyhow!("KYC_PRICES_FILE {path}: {e}"))?;
        t.extend_from(&text)
            .map_err(|e| anyhow::anyhow!("KYC_PRICES_FILE {path}: price {e}"))?;
    }
    if let Some(text) = env("KYC_PRICES") {
        t.extend_from(&text)
            .map_err(|e| anyhow::anyhow!("KYC_PRICES: price {e}"))?;
    }
    Ok(t)
}

/// Spend caps (`KYC_SPEND_CAPS`), their day (`KYC_SPEND_TIMEZONE`, Beijing by default) and
/// the prices a money cap is counted in, checked together.
pub fn spend_settings() -> anyhow::Result<kyc_worker::spend::SpendSettings> {
    let caps = match env("KYC_SPEND_CAPS") {
        Some(text) => kyc_schemas::money::SpendCaps::parse(&text)
            .map_err(|e| anyhow::anyhow!("KYC_SPEND_CAPS: cap {e}"))?,
        None => Default::default(),
    };
    let zone = match env("KYC_SPEND_TIMEZONE") {
        Some(text) => kyc_schemas::money::SpendZone::parse(&text)
            .map_err(|e| anyhow::anyhow!("KYC_SPEND_TIMEZONE: {e}"))?,
        None => Default::default(),
    };
    let settings = kyc_worker::spend::SpendSettings {
        caps,
        prices: prices()?,
        zone,
        ..Default::default()
    };
    settings.validate()?;
    Ok(settings)
}

/// Who runs an unmasked export, for its audit record: `--operator` / `KYC_OPERATOR` when set,
/// else the operating-system account running `kyc` (its name, looked up from the effective
/// user id, not from `$USER`). `None` when neither is known: the export is then refused.
pub fn operator(configured: Option<&str>) -> Option<kyc_report::Operator> {
    if let Some(name) = configured.map(str::trim).filter(|n| !n.is_empty()) {
        return Some(kyc_report::Operator {
            name: name.to_string(),
            source: kyc_report::OperatorSource::Configured,
        });
    }
    whoami::username()
        .ok()
        .filter(|n| !n.trim().is_empty())
        .map(|name| kyc_report::Operator {
            name,
            source: kyc_report::OperatorSource::OsUser,
        })
}

/// A size as an operator writes it: bytes, or a whole number with KiB, MiB or GiB.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (number, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => t.split_at(i),
        None => (t, ""),
    };
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        other => {
            return Err(format!(
                "{t:?}: unknown unit {other:?}; use KiB, MiB or GiB"
            ))
        }
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{t:?}: expected a whole number above zero, e.g. 512MiB"))
}

/// `KYC_SKIP_VERIFIED_WITHIN`, when set and not empty.
pub fn skip_verified_within_from_env() -> anyhow::Result<Option<Duration>> {
    env("KYC_SKIP_VERIFIED_WITHIN")
        .map(|v| parse_duration(&v).map_err(|e| anyhow::anyhow!("KYC_SKIP_VERIFIED_WITHIN: {e}")))
        .transpose()
}

/// The inverse of [`parse_duration`]: the largest unit that divides the duration (`30d`).
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// A duration as an operator writes it: a whole number and a unit, `d`, `h`, `m` or `s`
/// (`180d`, `14d`, `36h`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let unit = t.chars().last().unwrap_or(' ');
    let number = &t[..t.len() - unit.len_utf8().min(t.len())];
    let secs_per_unit = match unit {
        'd' => 86_400,
        'h' => 3_600,
        'm' => 60,
        's' => 1,
        _ => {
            return Err(format!(
                "{t:?}: expected a number and d, h, m or s, e.g. 180d"
            ))
        }
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{t:?}: expected a whole number before the unit, e.g. 180d"))?;
    n.checked_mul(secs_per_unit)
        .filter(|s| *s > 0)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{t:?}: must be above zero and below 500 billion years"))
}

/// The PEM text of a CA file named by `var` (a flag or its variable), checked to hold at
/// least one certificate; `None` when unset or empty.
pub fn ca_pem(path: Option<&Path>, var: &str) -> anyhow::Result<Option<String>> {
    let Some(path) = path.filter(|p| !p.as_os_str().is_empty()) else {
        return Ok(None);
    };
    let pem = std::fs::read_to_string(path)
        .with_context(|| format!("Failed to read {var} {}", path.display()))?;
    if !pem.contains("-----BEGIN CERTIFICATE-----") {
        anyhow::bail!(
            "{var} {}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it",
            path.display()
        );
    }
    Ok(Some(pem))
}

/// Connections that would carry names, ID numbers or images unencrypted or to an unverified
/// server, one warning each. Loopback addresses are exempt (a local broker, a sidecar). Only
/// variable names and modes are quoted: a URL may hold a password.
pub fn transport_warnings(database: &str, amqp: &str, s3_endpoint: Option<&str>) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(url) = url::Url::parse(database) {
        if matches!(url.scheme(), "postgres" | "postgresql") && !is_loopback(&url) {
            let mode = url
                .query_pairs()
                .find(|(k, _)| k == "sslmode")
                .map(|(_, v)| v.into_owned())
                .unwrap_or_else(|| "prefer".into());
            if !matches!(mode.as_str(), "verify-full" | "verify-ca") {
                out.push(format!(
                    "KYC_DATABASE_URL has sslmode={mode}: the PostgreSQL server is not verified \
                     (and `prefer` falls back to plaintext); use sslmode=verify-full&sslrootcert=<CA file>"
                ));
            }
        }
    }
    if let Ok(url) = url::Url::parse(amqp) {
        if url.scheme() == "amqp" && !is_loopback(&url) {
            out.push(
                "KYC_AMQP_URL is amqp://: jobs (names, ID numbers) cross the network \
                 unencrypted; use amqps:// (port 5671)"
                    .into(),
            );
        }
    }
    if let Some(Ok(url)) = s3_endpoint.map(url::Url::parse) {
        if url.scheme() == "http" && !is_loopback(&url) {
            out.push(
                "KYC_S3_ENDPOINT is http://: images and CSV files cross the network \
                 unencrypted; use https://"
                    .into(),
            );
        }
    }
    out
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        None => true,
        // postgres:// and amqp:// are not "special" schemes to the URL standard, so their
        // IPv4 hosts arrive unparsed.
        Some(url::Host::Domain(d)) => {
            d.eq_ignore_ascii_case("localhost")
                || d.parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
    }
}

/// `url` with its database (the path) replaced by `name`; user, host and options such as
/// `sslmode` and `sslrootcert` stay. `None` if `url` is not a URL.
pub fn with_database_name(url: &str, name: &str) -> Option<String> {
    let mut url = url::Url::parse(url).ok()?;
    url.set_path(&format!("/{name}"));
    Some(url.into())
}

/// `S3` endpoint: empty means AWS itself.
pub fn s3_endpoint(flag: Option<&str>) -> Option<String> {
    flag.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use clap::CommandFactory;

    use super::*;

    fn root() -> std::path::PathBuf {
        std::path::PathBuf::from(
            std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR"),
        )
    }

    /// `KEY:` lines of one YAML mapping (`data:` or `stringData:`), without a YAML parser.
    fn yaml_keys(path: &str, section: &str) -> BTreeSet<String> {
        let text = std::fs::read_to_string(root().join(path)).unwrap();
        let mut keys = BTreeSet::new();
        let mut inside = false;
        for line in text.lines() {
            if line.starts_with(section) {
                inside = true;
                continue;
            }
            if inside && !line.starts_with(' ') && !line.trim().is_empty() {
                inside = false;
            }
            let t = line.trim_start();
            if inside && line.starts_with("  ") && !t.starts_with('#') {
                if let Some((k, _)) = t.split_once(':') {
                    keys.insert(k.trim().to_string());
                }
            }
        }
        keys
    }

    fn names(kind: Kind) -> BTreeSet<String> {
        ENV_VARS
            .iter()
            .filter(|(_, k)| *k == kind)
            .map(|(n, _)| n.to_string())
            .collect()
    }

    #[test]
    fn quota_keys_written_with_alibabas_old_name_are_read_as_alibaba() {
        let q = parse_quotas("aliyun.VerifyMaterial=7").unwrap();
        assert_eq!(q["alibaba.VerifyMaterial"].qps, 7.0);
        assert!(!q.contains_key("aliyun.VerifyMaterial"));
        // And that key is one the limiter really uses.
        assert!(default_quotas().contains_key("alibaba.VerifyMaterial"));
    }

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_bytes("512MiB"), Ok(512 << 20));
        assert_eq!(parse_bytes("1GiB"), Ok(1 << 30));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert!(parse_bytes("12MB").is_err());
        assert!(parse_bytes("0MiB").is_err());
    }

    #[test]
    fn quotas_parse_with_defaults_for_burst() {
        let q =
            parse_quotas("huawei.ivs-standard=5/2/8, # comment\nhuawei.ivs-idcard-extention=2.5")
                .unwrap();
        assert_eq!(
            q["huawei.ivs-standard"],
            Quota {
                qps: 5.0,
                burst: 2,
                max_in_flight: Some(8)
            }
        );
        assert_eq!(
            q["huawei.ivs-idcard-extention"],
            Quota {
                qps: 2.5,
                burst: 1,
                max_in_flight: None
            }
        );
        assert!(parse_quotas("huawei.x=fast")
            .unwrap_err()
            .to_string()
            .contains("huawei.x=fast"));
        assert!(parse_quotas("huawei.x=0").is_err());
        assert!(parse_quotas("huawei.x=inf").is_err() && parse_quotas("huawei.x=NaN").is_err());
    }

    #[test]
    fn durations_take_a_unit() {
        assert_eq!(
            parse_duration("180d"),
            Ok(Duration::from_secs(180 * 86_400))
        );
        assert_eq!(parse_duration("36h"), Ok(Duration::from_secs(36 * 3_600)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert!(parse_duration("180").is_err());
        assert!(parse_duration("0d").is_err());
        assert!(parse_duration("d").is_err());
        assert!(parse_duration("1.5d").is_err());
        assert!(parse_duration("180天").is_err() && parse_duration("").is_err());
    }

    #[test]
    fn unencrypted_or_unverified_connections_to_other_hosts_are_warned_about() {
        let quiet = transport_warnings(
            "postgres://u:secret@db.internal/kyc?sslmode=verify-full&sslrootcert=/ca.crt",
            "amqps://u:secret@mq.internal:5671/%2f",
            Some("https://s3.internal:9000"),
        );
        assert!(quiet.is_empty(), "{quiet:?}");
        let local = transport_warnings(
            "postgres://u:secret@127.0.0.1/kyc",
            "amqp://u:secret@localhost:5672/%2f",
            Some("http://[::1]:9000"),
        );
        assert!(local.is_empty(), "{local:?}");
        assert!(transport_warnings("sqlite://kyc.db", "amqp://127.0.0.1", None).is_empty());
        let loud = transport_warnings(
            "postgres://u:secret@db.internal/kyc?sslmode=require",
            "amqp://u:secret@mq.internal:5672/%2f",
            Some("http://s3.internal:9000"),
        );
        assert_eq!(loud.len(), 3, "{loud:?}");
        assert!(loud[0].contains("sslmode=require"));
        assert!(
            transport_warnings("postgres://db.internal/kyc", "amqps://x", None)[0]
                .contains("sslmode=prefer")
        );
        assert!(loud.iter().all(|w| !w.contains("secret")), "{loud:?}");
    }

    #[test]
    fn a_scratch_database_keeps_the_connection_options() {
        assert_eq!(
            with_database_name(
                "postgres://kyc:p%40ss@127.0.0.1:5433/kyc?sslmode=verify-full&sslrootcert=/s/ca.crt",
                "kyc_bench_1"
            )
            .unwrap(),
            "postgres://kyc:p%40ss@127.0.0.1:5433/kyc_bench_1?sslmode=verify-full&sslrootcert=/s/ca.crt"
        );
    }

    #[test]
    fn ca_files_must_hold_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(ca_pem(None, "KYC_S3_CA_FILE").unwrap(), None);
        assert_eq!(ca_pem(Some(Path::new("")), "KYC_S3_CA_FILE").unwrap(), None);
        let missing = ca_pem(Some(&dir.path().join("nope.crt")), "KYC_S3_CA_FILE").unwrap_err();
        assert!(
            format!("{missing:#}").contains("KYC_S3_CA_FILE"),
            "{missing:#}"
        );
        let key = dir.path().join("key.pem");
        std::fs::write(&key, "-----BEGIN PRIVATE KEY-----\n").unwrap();
        let err = ca_pem(Some(&key), "KYC_AMQP_CA_FILE").unwrap_err();
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
    }

    #[test]
    fn every_flag_backed_by_the_environment_is_listed() {
        fn walk(cmd: &clap::Command, out: &mut BTreeSet<String>) {
            for arg in cmd.get_arguments() {
                if let Some(env) = arg.get_env() {
                    out.insert(env.to_string_lossy().into_owned());
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, out);
            }
        }
        let mut from_clap = BTreeSet::new();
        walk(&crate::Cli::command(), &mut from_clap);
        let listed: BTreeSet<String> = ENV_VARS.iter().map(|(n, _)| n.to_string()).collect();
        let missing: Vec<_> = from_clap.difference(&listed).collect();
        assert!(
            missing.is_empty(),
            "read through clap but not in ENV_VARS: {missing:?}"
        );
    }

    #[test]
    fn kubernetes_config_map_and_secret_carry_exactly_the_variables_read() {
        assert_eq!(
            yaml_keys("k8s/base/configmap.yaml", "data:"),
            names(Kind::Config)
        );
        assert_eq!(
            yaml_keys("k8s/examples/secret.example.yaml", "stringData:"),
            names(Kind::Secret)
        );
    }

    #[test]
    fn the_readme_documents_every_variable() {
        let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
        for (name, _) in ENV_VARS {
            assert!(
                readme.contains(&format!("`{name}`")),
                "README.md does not document {name}"
            );
        }
    }
}
