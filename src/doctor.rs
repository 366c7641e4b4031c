//! `kyc doctor`: the pre-flight check before a nightly run. One line per check — PASS, WARN,
//! FAIL or SKIP, what was checked, and on failure what to fix, naming settings by their
//! environment variable (never a value: no secret, token, URL or query string) — and exit 0
//! only when nothing failed.
//!
//! Nothing is created, nothing is billed: migrations are compared, not applied; queues are
//! passive-declared, and their arguments checked only once they all exist; buckets are
//! listed with max-keys 1; vendors get one call each that costs nothing (`Probe`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use kyc_objects::sources::AllowedSource;
use kyc_schemas::{Operation, Vendor};
use kyc_store::{DbTimeouts, Store};
use kyc_worker::vendors::{apis_of, Probe, VendorError};

use crate::{commands, config, Conn};

#[derive(Debug, Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    conn: Conn,
    /// Local folder for materials given as relative paths (as `kyc work --images`).
    #[arg(long)]
    images: Option<PathBuf>,
    #[command(flatten)]
    material: config::MaterialArgs,
    /// A vendor clock this far from ours is a warning (the failure threshold is each
    /// vendor's own signature window).
    #[arg(long, default_value = "60s", value_parser = config::parse_duration)]
    warn_skew: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Warn,
    Fail,
    Skip,
}

/// One line of the report.
#[derive(Debug, Clone)]
pub struct Check {
    pub verdict: Verdict,
    pub what: String,
    pub detail: String,
}

impl Check {
    fn new(verdict: Verdict, what: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            verdict,
            what: what.into(),
            detail: detail.into(),
        }
    }
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = match self.verdict {
            Verdict::Pass => "PASS",
            Verdict::Warn => "WARN",
            Verdict::Fail => "FAIL",
            Verdict::Skip => "SKIP",
        };
        write!(f, "{v}  {}: {}", self.what, self.detail)
    }
}

/// How far a vendor's clock may be from ours before it refuses our signatures: Huawei APIG
/// takes `X-Sdk-Date` within 15 minutes, Alibaba a `Timestamp` within 31 (documented
/// windows, `docs/vendors/`). Baidu signs nothing with a timestamp (OAuth tokens).
pub fn skew_limit(vendor: Vendor) -> Option<Duration> {
    match vendor {
        Vendor::Huawei => Some(Duration::from_secs(15 * 60)),
        Vendor::Alibaba => Some(Duration::from_secs(31 * 60)),
        Vendor::Baidu => None,
    }
}

/// The variables that hold a vendor's credentials, for "fix …" hints.
fn credential_vars(vendor: Vendor, token_mode: bool) -> &'static str {
    match vendor {
        Vendor::Huawei if token_mode => {
            "KYC_HUAWEI_IAM_USER, KYC_HUAWEI_IAM_DOMAIN, KYC_HUAWEI_IAM_PASSWORD"
        }
        Vendor::Huawei => "HUAWEICLOUD_SDK_AK, HUAWEICLOUD_SDK_SK",
        Vendor::Alibaba => "ALIBABA_CLOUD_ACCESS_KEY_ID, ALIBABA_CLOUD_ACCESS_KEY_SECRET",
        Vendor::Baidu => "BAIDU_API_KEY, BAIDU_SECRET_KEY",
    }
}

fn endpoint_var(vendor: Vendor, token_mode: bool) -> &'static str {
    match vendor {
        Vendor::Huawei if token_mode => "KYC_HUAWEI_IAM_ENDPOINT",
        Vendor::Huawei => "KYC_HUAWEI_ENDPOINT",
        Vendor::Alibaba => "KYC_ALIBABA_ENDPOINT",
        Vendor::Baidu => "KYC_BAIDU_ENDPOINT",
    }
}

pub async fn run(a: DoctorArgs) -> anyhow::Result<ExitCode> {
    crate::telemetry::init(a.conn.log_format == "json", "error");
    let checks = all_checks(&a).await;
    for c in &checks {
        println!("{c}");
    }
    let failed = checks.iter().filter(|c| c.verdict == Verdict::Fail).count();
    if failed == 0 {
        println!("all checks passed");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("{failed} check(s) failed");
        Ok(ExitCode::FAILURE)
    }
}

async fn all_checks(a: &DoctorArgs) -> Vec<Check> {
    let mut out = Vec::new();
    let embedded = a.conn.database.starts_with("sqlite:");
    out.extend(database(&a.conn).await);
    if embedded {
        out.push(Check::new(
            Verdict::Skip,
            "broker",
            "embedded mode (a sqlite: database): `kyc run` uses its in-process queue, no RabbitMQ",
        ));
    } else {
        out.push(broker(&a.conn).await);
    }
    out.extend(materials(a).await);
    let enabled = vendors(&mut out, a.warn_skew).await;
    out.push(quotas(&enabled));
    out
}

async fn database(conn: &Conn) -> Vec<Check> {
    let timeouts = DbTimeouts {
        connect: conn.database_timeout,
        statement: conn.statement_timeout,
    };
    let store = match Store::connect_with(&conn.database, 2, timeouts).await {
        Ok(s) => s,
        Err(e) => {
            return vec![Check::new(
                Verdict::Fail,
                "database",
                format!("{e}: fix KYC_DATABASE_URL (or raise KYC_DATABASE_TIMEOUT)"),
            )]
        }
    };
    let backend = match store.backend() {
        kyc_store::Backend::Postgres => "PostgreSQL",
        kyc_store::Backend::Sqlite => "SQLite",
    };
    let mut out = vec![Check::new(
        Verdict::Pass,
        "database",
        format!("{backend} reachable"),
    )];
    out.push(match store.migration_state().await {
        Err(e) => Check::new(
            Verdict::Fail,
            "database migrations",
            format!("could not read the migration table: {e}"),
        ),
        Ok(m) if m.is_current() => Check::new(
            Verdict::Pass,
            "database migrations",
            format!("current ({} applied, as built into this kyc)", m.applied),
        ),
        Ok(m) => {
            let mut why = Vec::new();
            if m.never_migrated {
                why.push("never migrated".to_string());
            }
            let list = |v: &[i64]| {
                v.iter()
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            if !m.not_applied.is_empty() && !m.never_migrated {
                why.push(format!("not applied: {}", list(&m.not_applied)));
            }
            if !m.failed.is_empty() {
                why.push(format!("failed half-way: {}", list(&m.failed)));
            }
            if !m.checksum_mismatch.is_empty() {
                why.push(format!(
                    "applied from a different file (checksum mismatch): {}",
                    list(&m.checksum_mismatch)
                ));
            }
            if !m.unknown.is_empty() {
                why.push(format!(
                    "applied but unknown to this kyc (the database is newer: upgrade kyc): {}",
                    list(&m.unknown)
                ));
            }
            Check::new(
                Verdict::Fail,
                "database migrations",
                format!("{}: run `kyc migrate`", why.join("; ")),
            )
        }
    });
    store.close().await;
    out
}

async fn broker(conn: &Conn) -> Check {
    let what = "broker";
    let broker = match commands::broker(conn, conn.topology()).await {
        Ok(b) => b,
        Err(e) => {
            return Check::new(
                Verdict::Fail,
                what,
                format!("{e:#}: fix KYC_AMQP_URL / KYC_AMQP_CA_FILE, or raise KYC_AMQP_TIMEOUT"),
            )
        }
    };
    let n = kyc_queue::verify::queue_names(&conn.topology()).len();
    let check = match broker.verify_topology().await {
        Ok(missing) if missing.is_empty() => Check::new(
            Verdict::Pass,
            what,
            format!("reachable; {n} queues (work, delay, dead-letter; prefix KYC_QUEUE_PREFIX={}) declared with the expected arguments", conn.queue_prefix),
        ),
        Ok(missing) => Check::new(
            Verdict::Fail,
            what,
            format!(
                "reachable, but {} of {n} queues are not declared ({}): start `kyc work` (or `kyc produce`), which declares them, or check KYC_QUEUE_PREFIX",
                missing.len(),
                missing.join(", ")
            ),
        ),
        Err(e) => Check::new(
            Verdict::Fail,
            what,
            format!(
                "a queue exists with other arguments than this version declares: {}",
                arguments_message(&e)
            ),
        ),
    };
    broker.close().await;
    check
}

/// The broker's refusal, reduced to what names the queue and the argument.
fn arguments_message(e: &kyc_queue::QueueError) -> String {
    let text = e.to_string();
    match text.find("PRECONDITION_FAILED") {
        Some(i) => format!(
            "{}; move its messages elsewhere if needed, delete it (rabbitmqctl delete_queue <queue>) and start `kyc work`, which declares it anew",
            text[i..].trim_end_matches('"')
        ),
        None => text,
    }
}

async fn materials(a: &DoctorArgs) -> Vec<Check> {
    let mut out = Vec::new();
    let sources = match a.material.sources() {
        Ok(s) => s,
        Err(e) => {
            return vec![Check::new(
                Verdict::Fail,
                "material sources",
                format!("{e:#}: fix KYC_MATERIAL_SOURCES"),
            )]
        }
    };
    if let Some(dir) = &a.images {
        out.push(match std::fs::read_dir(dir) {
            Ok(_) => Check::new(
                Verdict::Pass,
                "material source (local folder)",
                format!("{} readable", dir.display()),
            ),
            Err(e) => Check::new(
                Verdict::Fail,
                "material source (local folder)",
                format!("{}: {}: fix --images", dir.display(), e.kind()),
            ),
        });
    }
    let s3: Vec<(&String, &String)> = sources
        .entries()
        .iter()
        .filter_map(|e| match e {
            AllowedSource::S3 { bucket, prefix } => Some((bucket, prefix)),
            AllowedSource::Url { .. } => None,
        })
        .collect();
    for e in sources.entries() {
        if let AllowedSource::Url { .. } = e {
            out.push(Check::new(
                Verdict::Skip,
                format!("material source {e}"),
                "a web source has no listing: each material is fetched by its own URL",
            ));
        }
    }
    if !s3.is_empty() {
        match commands::objects(&a.conn, None).await {
            Err(e) => out.push(Check::new(
                Verdict::Fail,
                "material sources (S3)",
                format!("{e:#}"),
            )),
            Ok(objects) => {
                for (bucket, prefix) in s3 {
                    let what = format!("material source s3://{bucket}/{prefix}");
                    out.push(match objects.list_one(bucket, prefix).await {
                        Ok(()) => {
                            Check::new(Verdict::Pass, what, "readable (ListObjectsV2, max-keys 1)")
                        }
                        Err(e) => Check::new(Verdict::Fail, what, s3_fix(bucket, &e)),
                    });
                }
            }
        }
    }
    if out.is_empty() {
        out.push(Check::new(
            Verdict::Skip,
            "material sources",
            "none configured (KYC_MATERIAL_SOURCES is empty and no --images)",
        ));
    }
    out
}

/// What to do about a bucket that cannot be listed.
fn s3_fix(bucket: &str, e: &kyc_objects::ObjectError) -> String {
    let text = e.to_string();
    if text.contains("NoSuchBucket") {
        format!("bucket {bucket} does not exist: fix KYC_MATERIAL_SOURCES (or create the bucket)")
    } else if text.contains("AccessDenied") {
        format!("this S3 key may not list bucket {bucket}: fix AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or the bucket policy")
    } else {
        format!("{text}: check KYC_S3_ENDPOINT, KYC_S3_CA_FILE and KYC_S3_TIMEOUT")
    }
}

/// Probes every vendor with credentials; returns those that have them (their operations are
/// the enabled ones).
async fn vendors(out: &mut Vec<Check>, warn_skew: Duration) -> Vec<Vendor> {
    let http = commands::http_client();
    let mut enabled = Vec::new();
    for vendor in [Vendor::Huawei, Vendor::Alibaba, Vendor::Baidu] {
        let (probe, token_mode) = match vendor {
            Vendor::Huawei => match config::huawei_from_env() {
                Some(c) => {
                    let token = matches!(c.auth, kyc_worker::HuaweiAuth::Password { .. });
                    (Some(c.build(http.clone()).probe().await), token)
                }
                None => (None, false),
            },
            Vendor::Alibaba => (
                match config::alibaba_from_env() {
                    Some(c) => Some(c.build(http.clone()).probe().await),
                    None => None,
                },
                false,
            ),
            Vendor::Baidu => (
                match config::baidu_from_env() {
                    Some(c) => Some(c.build(http.clone()).probe().await),
                    None => None,
                },
                false,
            ),
        };
        let Some(probe) = probe else {
            out.push(Check::new(
                Verdict::Skip,
                format!("{vendor} credentials"),
                format!(
                    "none configured ({}): its queue is not consumed, `kyc run` uses the simulator",
                    credential_vars(vendor, false)
                ),
            ));
            continue;
        };
        enabled.push(vendor);
        let clock = clock_check(vendor, &probe, warn_skew);
        out.push(credentials_check(
            vendor,
            &probe,
            token_mode,
            clock.verdict == Verdict::Fail,
        ));
        out.push(clock);
    }
    enabled
}

fn credentials_check(vendor: Vendor, p: &Probe, token_mode: bool, clock_off: bool) -> Check {
    let what = format!("{vendor} credentials");
    let vars = credential_vars(vendor, token_mode);
    match &p.result {
        Ok(()) => Check::new(Verdict::Pass, what, format!("accepted ({})", p.call)),
        Err(e) => {
            let code = e.code();
            let clock = if clock_off {
                " (or this host's clock: see the clock line)"
            } else {
                ""
            };
            match e {
                VendorError::Permanent {
                    reason: kyc_schemas::Reason::AuthFailed,
                    ..
                }
                | VendorError::AuthExpired { .. } => Check::new(
                    Verdict::Fail,
                    what,
                    format!("refused ({code}) by {}: fix {vars}{clock}", p.call),
                ),
                VendorError::Throttled { .. } => Check::new(
                    Verdict::Warn,
                    what,
                    format!("not confirmed: the vendor throttled the probe ({code}); run again"),
                ),
                VendorError::Transient { .. } => Check::new(
                    Verdict::Fail,
                    what,
                    format!(
                        "could not reach the vendor ({code}): check {} and the network",
                        endpoint_var(vendor, token_mode)
                    ),
                ),
                VendorError::Permanent { reason, .. } => Check::new(
                    Verdict::Fail,
                    what,
                    format!(
                        "the vendor answered {code} ({}) to {}: check the account and {vars}{clock}",
                        reason.as_str(),
                        p.call
                    ),
                ),
            }
        }
    }
}

fn clock_check(vendor: Vendor, p: &Probe, warn: Duration) -> Check {
    let what = format!("{vendor} clock");
    let Some(skew) = p.skew_secs() else {
        return Check::new(
            Verdict::Warn,
            what,
            "the vendor's answer had no Date header: skew not measured",
        );
    };
    let direction = if skew >= 0 { "ahead of" } else { "behind" };
    let off = format!(
        "the vendor's Date is {} s {direction} this host's clock",
        skew.abs()
    );
    let limit = skew_limit(vendor);
    match limit {
        Some(l) if skew.unsigned_abs() > l.as_secs() => Check::new(
            Verdict::Fail,
            what,
            format!(
                "{off}; {vendor} refuses signed requests more than {} min off: set this host's clock (NTP)",
                l.as_secs() / 60
            ),
        ),
        _ if skew.unsigned_abs() > warn.as_secs() => Check::new(
            Verdict::Warn,
            what,
            format!(
                "{off} (warning above {} s{}): check NTP",
                warn.as_secs(),
                limit
                    .map(|l| format!(", failure above {} min", l.as_secs() / 60))
                    .unwrap_or_default()
            ),
        ),
        _ => Check::new(
            Verdict::Pass,
            what,
            format!(
                "{} s off ({})",
                skew.abs(),
                match limit {
                    Some(l) => format!("limit {} min", l.as_secs() / 60),
                    None => "this vendor signs no timestamps".into(),
                }
            ),
        ),
    }
}

/// Every API the enabled vendors' operations call has a quota, and every configured quota
/// names an API that exists (a typo would leave the real one on the default).
fn quotas(enabled: &[Vendor]) -> Check {
    let what = "quotas";
    let all = match config::quotas() {
        Ok(q) => q,
        Err(e) => {
            return Check::new(
                Verdict::Fail,
                what,
                format!("{e:#}: fix KYC_QUOTAS / KYC_QUOTAS_FILE"),
            )
        }
    };
    let explicit = config::explicit_quotas().unwrap_or_default();
    let known: Vec<String> = kyc_worker::vendors::APIS
        .iter()
        .map(kyc_worker::Limiters::key)
        .collect();
    let mut unknown: Vec<&String> = explicit.keys().filter(|k| !known.contains(k)).collect();
    unknown.sort();
    if !unknown.is_empty() {
        return Check::new(
            Verdict::Fail,
            what,
            format!(
                "KYC_QUOTAS / KYC_QUOTAS_FILE name APIs no operation calls: {} (keys are {}): fix the spelling",
                unknown.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
                known.join(", ")
            ),
        );
    }
    if enabled.is_empty() {
        return Check::new(
            Verdict::Skip,
            what,
            "no vendor has credentials, so no operation is enabled",
        );
    }
    let needed = needed_apis(enabled);
    let missing: Vec<&String> = needed.iter().filter(|k| !all.contains_key(*k)).collect();
    if !missing.is_empty() {
        return Check::new(
            Verdict::Fail,
            what,
            format!(
                "no quota for {}: set them in KYC_QUOTAS",
                missing
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    }
    let defaulted: Vec<&String> = needed
        .iter()
        .filter(|k| !explicit.contains_key(*k))
        .collect();
    let mut detail = format!(
        "all {} APIs the enabled operations call have one",
        needed.len()
    );
    if defaulted.is_empty() {
        Check::new(Verdict::Pass, what, detail)
    } else {
        detail.push_str(&format!(
            "; {} on the built-in default of 10 QPS ({}): set KYC_QUOTAS to your account's figures",
            defaulted.len(),
            defaulted
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        Check::new(Verdict::Warn, what, detail)
    }
}

/// The quota keys of every API the operations of `vendors` call, sorted.
fn needed_apis(vendors: &[Vendor]) -> Vec<String> {
    let mut keys: Vec<String> = Operation::ALL
        .into_iter()
        .filter(|op| vendors.contains(&op.vendor()))
        .flat_map(|op| apis_of(op).iter().map(kyc_worker::Limiters::key))
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(skew: i64) -> Probe {
        let now = chrono::Utc::now();
        Probe {
            call: "test",
            signature_only: false,
            vendor_date: Some(now + chrono::Duration::seconds(skew)),
            sent_at: now,
            received_at: now,
            result: Ok(()),
        }
    }

    #[test]
    fn skew_fails_beyond_the_vendors_window_and_warns_beyond_the_threshold() {
        let warn = Duration::from_secs(60);
        assert_eq!(
            clock_check(Vendor::Huawei, &probe(5), warn).verdict,
            Verdict::Pass
        );
        assert_eq!(
            clock_check(Vendor::Huawei, &probe(-120), warn).verdict,
            Verdict::Warn
        );
        let fail = clock_check(Vendor::Huawei, &probe(3600), warn);
        assert_eq!(fail.verdict, Verdict::Fail);
        assert!(
            fail.detail.contains("3600 s ahead") && fail.detail.contains("15 min"),
            "{fail}"
        );
        // Alibaba's window is 31 minutes; Baidu signs no timestamps and only warns.
        assert_eq!(
            clock_check(Vendor::Alibaba, &probe(-1200), warn).verdict,
            Verdict::Warn
        );
        assert_eq!(
            clock_check(Vendor::Baidu, &probe(7200), warn).verdict,
            Verdict::Warn
        );
    }

    #[test]
    fn a_refused_secret_names_the_variables_and_no_value() {
        let mut p = probe(0);
        p.result = Err(VendorError::Permanent {
            code: "InvalidAccessKeyId.NotFound".into(),
            message: "Specified access key is not found.".into(),
            reason: kyc_schemas::Reason::AuthFailed,
        });
        let c = credentials_check(Vendor::Alibaba, &p, false, false);
        assert_eq!(c.verdict, Verdict::Fail);
        assert!(c.detail.contains("ALIBABA_CLOUD_ACCESS_KEY_SECRET"), "{c}");
    }

    #[test]
    fn the_apis_of_huawei_alone_are_its_two_endpoints() {
        assert_eq!(
            needed_apis(&[Vendor::Huawei]),
            vec!["huawei.ivs-idcard-extention", "huawei.ivs-standard"]
        );
    }
}
