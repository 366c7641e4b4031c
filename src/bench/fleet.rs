//! Everything a worker-process benchmark runs against: a scratch database, a queue prefix of
//! its own, the simulator in this process, and `kyc work` child processes.

use std::io::Write;

use anyhow::Context as _;
use kyc_producer::{CancellationToken, Encoding, ProduceSettings};
use kyc_queue::{Broker, Topology};
use kyc_schemas::IdNumber;
use kyc_store::Store;

use super::*;

/// A face the benchmarks send (one of the generated cartoons, ≥ 10 KB as IVS requires).
pub(super) const FACE: &[u8] = include_bytes!("../../examples/images/faces/face01.jpg");

/// A fresh bucket on the S3 server for one benchmark run, and the store that reaches it.
pub(super) async fn scratch_bucket(
    conn: &crate::Conn,
) -> anyhow::Result<(kyc_objects::ObjectStore, String)> {
    use anyhow::Context as _;
    let objects = crate::commands::objects(conn, None).await?;
    let bucket = format!(
        "kyc-bench-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    objects
        .ensure_bucket(&bucket)
        .await
        .context("Failed to create a bucket (KYC_S3_ENDPOINT, AWS_* credentials)")?;
    Ok((objects, bucket))
}

/// The sample face padded with filler to `bytes` (at least its own size): a valid JPEG start
/// for the vendor's checks, of the size a benchmark asks for.
pub(super) fn padded_face(bytes: usize) -> bytes::Bytes {
    let mut image = FACE.to_vec();
    image.resize(bytes.max(FACE.len()), 0x5A);
    image.into()
}

/// Everything a worker-process benchmark runs against: a scratch database, a queue prefix of
/// its own, and the simulator in this process.
pub(super) struct Fleet {
    /// Keys of this run's scratch data; the worker processes get the data keys in their env.
    pub(super) keys: kyc_schemas::Keyring,
    pub(super) store: Store,
    pub(super) scratch: Option<(String, String)>,
    pub(super) db_url: String,
    pub(super) topology: Topology,
    pub(super) broker: Broker,
    pub(super) sim: kyc_simulator::Simulator,
    pub(super) creds: crate::embedded::SimCredentials,
    pub(super) dir: tempfile::TempDir,
    /// Passed on to the worker processes (flags given to `kyc bench` are not in their env).
    pub(super) conn: Conn,
}

impl Fleet {
    pub(super) async fn start(
        conn: &Conn,
        faults: kyc_simulator::FaultConfig,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let (store, scratch, db_url) = scratch_store_url(conn, dir.path()).await?;
        let topology = Topology::new(format!(
            "bench{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        ));
        let broker = crate::commands::broker(conn, topology.clone()).await?;
        broker.declare().await?;
        let (mut config, creds) = crate::embedded::simulator_config();
        config.faults = faults;
        let sim = kyc_simulator::Simulator::start(config, "127.0.0.1:0").await?;
        std::fs::write(dir.path().join("face.jpg"), FACE)?;
        Ok(Self {
            keys: kyc_schemas::Keyring::generate("bench")?,
            store,
            scratch,
            db_url,
            topology,
            broker,
            sim,
            creds,
            dir,
            conn: conn.clone(),
        })
    }

    /// Publishes `n` jobs, every `two_factor_every`-th two-factor (no image), the others
    /// three-factor with `face`; 1 or 0: every job fetches the image, as in a nightly run.
    /// `sources`: the material allowlist `face` is on (empty for a local file).
    pub(super) async fn produce_with(
        &self,
        n: usize,
        face: &str,
        sources: &str,
        two_factor_every: usize,
    ) -> anyhow::Result<()> {
        let mut csv = Vec::new();
        let w = &mut csv;
        writeln!(w, "operation,name,id_number,face_image")?;
        for i in 0..n {
            let id = IdNumber::with_checksum(&format!(
                "{}19900101{:03}",
                110_000 + i / 800,
                100 + i % 800
            ))
            .expect("digits");
            if two_factor_every > 1 && i % two_factor_every == two_factor_every - 1 {
                writeln!(w, "huawei.idcard_extension,王伟,{},", id.as_str())?;
            } else {
                writeln!(w, "huawei.standard,王伟,{},{face}", id.as_str())?;
            }
        }
        self.produce_csv(&csv, sources).await
    }

    /// Publishes the rows of `csv` (header included) as batch `bench`.
    pub(super) async fn produce_csv(&self, csv: &[u8], sources: &str) -> anyhow::Result<()> {
        let input = self.dir.path().join("jobs.csv");
        std::fs::write(&input, csv)?;
        let settings = ProduceSettings {
            batch_id: "bench".into(),
            input: input.display().to_string(),
            images: None,
            material_sources: kyc_objects::MaterialSources::parse(sources)?,
            default_operation: None,
            rejects_path: self.dir.path().join("rejects.csv"),
            dry_run: false,
            window: 500,
            encoding: Encoding::Auto,
            max_record_bytes: kyc_producer::DEFAULT_MAX_RECORD_BYTES,
            keys: self.keys.clone(),
            skip_verified_within: None,
        };
        kyc_producer::produce(
            &settings,
            None,
            &self.store,
            &self.broker,
            &CancellationToken::new(),
            |_| {},
        )
        .await?;
        Ok(())
    }

    pub(super) fn spawn_workers(
        &self,
        n: usize,
        quotas: &str,
        concurrency: Option<usize>,
        sources: &str,
        extra_env: &[(&str, String)],
    ) -> anyhow::Result<Vec<std::process::Child>> {
        let exe = std::env::current_exe()?;
        // Unset, the workers' concurrency follows the quota (their default).
        let fixed: Vec<(&str, String)> = concurrency
            .map(|c| {
                vec![
                    ("KYC_WORKER_CONCURRENCY", c.to_string()),
                    ("KYC_PREFETCH", (c * 2).to_string()),
                ]
            })
            .unwrap_or_default();
        let optional: Vec<(&str, String)> = [
            (
                "KYC_AMQP_CA_FILE",
                self.conn
                    .amqp_ca_file
                    .as_ref()
                    .map(|p| p.display().to_string()),
            ),
            ("KYC_S3_ENDPOINT", self.conn.s3_endpoint.clone()),
            (
                "KYC_S3_CA_FILE",
                self.conn
                    .s3_ca_file
                    .as_ref()
                    .map(|p| p.display().to_string()),
            ),
        ]
        .into_iter()
        .filter_map(|(k, v)| Some((k, v?)))
        .collect();
        (0..n)
            .map(|_| {
                std::process::Command::new(&exe)
                    .arg("work")
                    .arg("--images")
                    .arg(self.dir.path())
                    .env("KYC_DATABASE_URL", &self.db_url)
                    .env("KYC_AMQP_URL", &self.conn.amqp)
                    // Unset rather than empty: an empty file name is refused.
                    .env_remove("KYC_AMQP_CA_FILE")
                    .env_remove("KYC_S3_ENDPOINT")
                    .env_remove("KYC_S3_CA_FILE")
                    .envs(optional.iter().map(|(k, v)| (*k, v.as_str())))
                    .env("KYC_QUEUE_PREFIX", &self.topology.prefix)
                    .env(crate::keys::DATA_KEYS, self.keys.data.to_config())
                    .env(crate::keys::DATA_KEY_ID, self.keys.data.current_id())
                    .env("KYC_HTTP_LISTEN", "127.0.0.1:0")
                    .env("KYC_QUOTAS", quotas)
                    .env("KYC_MATERIAL_SOURCES", sources)
                    .env_remove("KYC_WORKER_CONCURRENCY")
                    .env_remove("KYC_PREFETCH")
                    .envs(fixed.iter().map(|(k, v)| (*k, v.as_str())))
                    .env(
                        "RUST_LOG",
                        std::env::var("KYC_BENCH_WORKER_LOG").unwrap_or_else(|_| "error".into()),
                    )
                    .env("HUAWEICLOUD_SDK_AK", &self.creds.huawei_ak)
                    .env("HUAWEICLOUD_SDK_SK", &self.creds.huawei_sk)
                    .env("HUAWEICLOUD_SDK_PROJECT_ID", &self.creds.project_id)
                    .env("KYC_HUAWEI_ENDPOINT", self.sim.base_url())
                    .env("ALIBABA_CLOUD_ACCESS_KEY_ID", &self.creds.alibaba_ak)
                    .env(
                        "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
                        &self.creds.alibaba_secret,
                    )
                    .env("KYC_ALIBABA_ENDPOINT", self.sim.base_url())
                    .env("KYC_ALIBABA_BIZ_TYPE", crate::embedded::SIM_BIZ_TYPE)
                    .envs(extra_env.iter().map(|(k, v)| (*k, v.as_str())))
                    .stdout(std::process::Stdio::null())
                    .spawn()
                    .context("Failed to start a worker process")
            })
            .collect()
    }

    pub(super) async fn stop(self, workers: Vec<std::process::Child>) -> anyhow::Result<()> {
        stop_workers(workers);
        self.broker.close().await;
        delete_queues(&self.conn, &self.topology).await;
        self.sim.stop().await;
        drop_scratch(self.store, self.scratch).await
    }
}
