//! `spawn_app()`: a fresh, isolated environment on the real services, and typed helpers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kyc_objects::{MaterialSources, ObjectStore};
use kyc_queue::{Broker, Topology};
use kyc_schemas::{IdNumber, Job, JobMessage, Keyring, Status};
use kyc_simulator::{SimConfig, Simulator};
use kyc_store::Store;
use kyc_worker::{
    AlibabaConfig, BaiduConfig, Clients, Context, HuaweiAuth, HuaweiConfig, Limiters, Quota,
    RetryPolicy, WorkerSettings,
};
use sqlx::Executor;

/// The keys every test of this binary seals and opens with (fresh for each test run).
pub fn keyring() -> &'static Keyring {
    static KEYS: std::sync::OnceLock<Keyring> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| Keyring::generate("test").unwrap())
}

/// A job as the producer publishes it: version 2, personal fields sealed with [`keyring`].
pub fn message(job: &Job) -> Vec<u8> {
    JobMessage::seal(job, &keyring().data).to_bytes()
}

pub fn service(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: these tests need RabbitMQ, PostgreSQL and S3; run scripts/test-all, which starts them")
    })
}

/// The CA file named by `var` (`KYC_TEST_AMQP_CA_FILE`, `KYC_TEST_S3_CA_FILE`), if set: the
/// services of `scripts/test-all` speak TLS only, with certificates from its throwaway CA.
pub fn test_ca_file(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|v| !v.is_empty())
}

/// The PEM text of the CA file named by `var`, if set.
pub fn test_ca(var: &str) -> Option<String> {
    test_ca_file(var)
        .map(|path| std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{var} {path}: {e}")))
}

/// A connection to the test broker (`KYC_TEST_AMQP_URL`, trusting `KYC_TEST_AMQP_CA_FILE`).
pub async fn amqp_connection(url: &str) -> lapin::Connection {
    kyc_queue::amqp::connect(url, test_ca("KYC_TEST_AMQP_CA_FILE").as_deref())
        .await
        .expect("connect RabbitMQ")
}

/// The test S3 store (`KYC_TEST_S3_ENDPOINT`, trusting `KYC_TEST_S3_CA_FILE`).
pub async fn test_objects() -> ObjectStore {
    ObjectStore::s3(
        Some(&service("KYC_TEST_S3_ENDPOINT")),
        test_ca("KYC_TEST_S3_CA_FILE").as_deref(),
        None,
    )
    .await
    .expect("S3 client")
}

/// `url` with its database replaced by `name`, options (`sslmode`, `sslrootcert`) kept.
pub fn with_database_name(url: &str, name: &str) -> String {
    let mut url = url::Url::parse(url).expect("database URL");
    url.set_path(&format!("/{name}"));
    url.into()
}

/// What a `kyc` child process needs to reach the test services over TLS.
pub fn tls_env() -> Vec<(&'static str, String)> {
    [
        ("KYC_AMQP_CA_FILE", "KYC_TEST_AMQP_CA_FILE"),
        ("KYC_S3_CA_FILE", "KYC_TEST_S3_CA_FILE"),
    ]
    .into_iter()
    .filter_map(|(var, test_var)| test_ca_file(test_var).map(|path| (var, path)))
    .collect()
}
/// A material host the simulated Alibaba never manages to download from.
pub const SIM_TIMEOUT_SOURCE: &str = "https://sim-timeout.example/";

/// Everything a `kyc` child process needs beyond its database and broker URLs: the test CA
/// files (the services speak TLS only) and the test keys (names are sealed).
pub fn child_env() -> Vec<(&'static str, String)> {
    let mut env = tls_env();
    env.push(("KYC_DATA_KEYS", keyring().data.to_config()));
    env.push(("KYC_DATA_KEY_ID", keyring().data.current_id().to_string()));
    env.push(("KYC_INDEX_KEY", keyring().index.to_base64()));
    env
}

pub struct TestApp {
    pub store: Store,
    pub broker: Broker,
    pub objects: ObjectStore,
    pub sim: Simulator,
    pub topology: Topology,
    pub bucket: String,
    pub amqp_url: String,
    pub db_url: String,
    ak: String,
    sk: String,
}

/// Logs go nowhere unless `TEST_LOG` is set (then to stderr, filtered by `RUST_LOG`).
fn init_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            let filter = tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info".into());
            tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_test_writer()
                .init();
        }
    });
}

/// A fresh, migrated PostgreSQL database of its own, created through the shared test database.
pub async fn fresh_pg_store() -> Store {
    fresh_pg().await.0
}

/// Like [`fresh_pg_store`], with the database's URL (for spawning the binary against it).
pub async fn fresh_pg() -> (Store, String) {
    let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
    let admin_url = service("KYC_TEST_DATABASE_URL");
    let admin = sqlx::PgPool::connect(&admin_url)
        .await
        .expect("connect to PostgreSQL");
    let db = format!("kyc_test_{id}");
    admin
        .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
        .await
        .expect("create test database");
    admin.close().await;
    let url = with_database_name(&admin_url, &db);
    let store = Store::connect(&url, 8)
        .await
        .expect("connect test database");
    store.migrate().await.expect("migrate");
    (store, url)
}

pub async fn spawn_app() -> TestApp {
    init_logs();
    let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
    let (store, db_url) = fresh_pg().await;

    let amqp_url = service("KYC_TEST_AMQP_URL");
    let topology = Topology::new(format!("test{id}"));
    let broker = Broker::connect_amqp(
        &amqp_url,
        test_ca("KYC_TEST_AMQP_CA_FILE").as_deref(),
        topology.clone(),
    )
    .await
    .expect("connect RabbitMQ");
    broker.declare().await.expect("declare queues");

    let bucket = format!("kyc-test-{id}");
    // Materials may come from this test's bucket only, as KYC_MATERIAL_SOURCES would say
    // (and from the host the simulated Alibaba answers "download timed out" for; it is
    // never fetched by us, Alibaba downloads images itself).
    let objects = test_objects().await.with_material_sources(
        MaterialSources::parse(&format!("s3://{bucket}/,{SIM_TIMEOUT_SOURCE}")).unwrap(),
    );
    objects.ensure_bucket(&bucket).await.expect("create bucket");

    let (ak, sk) = (format!("AK{id}"), format!("SK{id}secret"));
    let mut config = SimConfig::default();
    config.huawei.ak_sk = vec![(ak.clone(), sk.clone())];
    config.huawei.project_id = "test-project".into();
    // The same pair serves as Alibaba AccessKey and Baidu API Key / Secret Key.
    config.alibaba.access_keys = vec![(ak.clone(), sk.clone())];
    config.baidu.clients = vec![(ak.clone(), sk.clone())];
    // The simulated Alibaba downloads presigned URLs from the test S3, over TLS.
    config.alibaba.trusted_ca_pem = test_ca("KYC_TEST_S3_CA_FILE");
    let sim = Simulator::start(config, "127.0.0.1:0")
        .await
        .expect("start simulator");
    TestApp {
        store,
        broker,
        objects,
        sim,
        topology,
        bucket,
        amqp_url,
        db_url,
        ak,
        sk,
    }
}

impl TestApp {
    /// A worker context talking to this app's simulator, with quotas high enough not to
    /// slow the tests down.
    pub fn context(&self) -> Arc<Context> {
        let huawei = self.huawei_config(Duration::from_secs(10));
        let quotas: HashMap<String, Quota> = kyc_worker::vendors::APIS
            .iter()
            .map(|api| (Limiters::key(api), Quota::qps(200.0, 50)))
            .collect();
        Arc::new(Context {
            store: self.store.clone(),
            objects: self.objects.clone(),
            clients: Clients {
                huawei: Some(huawei.build(reqwest::Client::new())),
                alibaba: Some(self.alibaba_config().build(reqwest::Client::new())),
                baidu: Some(self.baidu_config().build(reqwest::Client::new())),
            },
            limiters: Limiters::shared(&quotas, self.store.clone()),
            retry: RetryPolicy {
                max_attempts: 5,
                min_delay: Duration::from_millis(50),
                max_delay: Duration::from_secs(1),
                ..Default::default()
            },
            metrics: Default::default(),
            keys: keyring().data.clone(),
            spend: Default::default(),
        })
    }

    /// An Alibaba client configuration for this app's simulator (scene `RPBasic`).
    pub fn alibaba_config(&self) -> AlibabaConfig {
        AlibabaConfig {
            endpoint: self.sim.base_url(),
            access_key_id: self.ak.clone(),
            access_key_secret: self.sk.clone(),
            region: "cn-hangzhou".into(),
            biz_type: Some("RPBasic".into()),
            timeout: Duration::from_secs(10),
            url_ttl: Duration::from_secs(300),
            pending_window: kyc_worker::vendors::alibaba::DEFAULT_PENDING_WINDOW,
        }
    }

    /// A Baidu client configuration for this app's simulator (plan `sim-authority`).
    pub fn baidu_config(&self) -> BaiduConfig {
        BaiduConfig {
            endpoint: self.sim.base_url(),
            api_key: self.ak.clone(),
            secret_key: self.sk.clone(),
            plan_id: Some("sim-authority".into()),
            quality_control: Some("NORMAL".into()),
            liveness_control: None,
            timeout: Duration::from_secs(10),
        }
    }

    /// The credentials this app's simulator accepts.
    /// `kyc produce` as a child process with this app's database, broker and queue prefix,
    /// run in the input's folder (where it writes the rejects and skipped files by default).
    pub fn produce_child(&self, args: &[&str], s3_endpoint: Option<&str>) -> std::process::Output {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_kyc"));
        if let Some(input) = args.iter().skip_while(|a| **a != "--input").nth(1) {
            if let Some(dir) = std::path::Path::new(input).parent().filter(|d| d.is_dir()) {
                cmd.current_dir(dir);
            }
        }
        cmd.arg("produce")
            .arg("--quiet")
            .args(args)
            .env("KYC_DATABASE_URL", &self.db_url)
            .env("KYC_AMQP_URL", &self.amqp_url)
            .env("KYC_QUEUE_PREFIX", &self.topology.prefix)
            .env_remove("KYC_SKIP_VERIFIED_WITHIN")
            .envs(child_env());
        if let Some(ep) = s3_endpoint {
            cmd.env("KYC_S3_ENDPOINT", ep);
        }
        cmd.output().expect("run kyc produce")
    }

    /// The variables that point a `kyc` child at this app's simulator with the credentials
    /// it accepts, for all three vendors.
    pub fn vendor_env(&self) -> Vec<(&'static str, String)> {
        let url = self.sim.base_url();
        vec![
            ("HUAWEICLOUD_SDK_AK", self.ak.clone()),
            ("HUAWEICLOUD_SDK_SK", self.sk.clone()),
            ("HUAWEICLOUD_SDK_PROJECT_ID", "test-project".into()),
            ("KYC_HUAWEI_ENDPOINT", url.clone()),
            ("KYC_HUAWEI_IAM_ENDPOINT", url.clone()),
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", self.ak.clone()),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", self.sk.clone()),
            ("KYC_ALIBABA_ENDPOINT", url.clone()),
            ("KYC_ALIBABA_BIZ_TYPE", "RPBasic".into()),
            ("BAIDU_API_KEY", self.ak.clone()),
            ("BAIDU_SECRET_KEY", self.sk.clone()),
            ("KYC_BAIDU_ENDPOINT", url),
            ("KYC_BAIDU_PLAN_ID", "sim-authority".into()),
        ]
    }

    /// A Huawei client configuration (AK/SK) for this app's simulator.
    pub fn huawei_config(&self, timeout: Duration) -> HuaweiConfig {
        HuaweiConfig {
            endpoint: self.sim.base_url(),
            iam_endpoint: self.sim.base_url(),
            region: "cn-north-4".into(),
            project_id: "test-project".into(),
            auth: self.huawei_auth(),
            timeout,
            enterprise_project_id: None,
            retry_uncropped: true,
        }
    }

    /// A worker context calling this app's Huawei simulator through `store` (e.g. a store
    /// reached through a fault-injecting proxy), with the account quotas `quotas`.
    pub fn huawei_context_on(
        &self,
        store: Store,
        quotas: &HashMap<String, kyc_worker::Quota>,
    ) -> Arc<Context> {
        let base = self.context();
        Arc::new(Context {
            store: store.clone(),
            objects: base.objects.clone(),
            clients: kyc_worker::Clients {
                huawei: Some(
                    self.huawei_config(Duration::from_secs(10))
                        .build(reqwest::Client::new()),
                ),
                ..Default::default()
            },
            limiters: kyc_worker::Limiters::shared(quotas, store),
            retry: kyc_worker::RetryPolicy::default(),
            metrics: Default::default(),
            keys: keyring().data.clone(),
            spend: Default::default(),
        })
    }

    pub fn huawei_auth(&self) -> HuaweiAuth {
        HuaweiAuth::AkSk {
            ak: self.ak.clone(),
            sk: self.sk.clone(),
        }
    }

    /// Starts a worker (its own consumers on the shared queues); the returned sender stops it.
    pub async fn spawn_worker(
        &self,
    ) -> (
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    ) {
        self.spawn_worker_with(self.context()).await
    }

    /// Like [`TestApp::spawn_worker`], with a context of the caller's making.
    pub async fn spawn_worker_with(
        &self,
        ctx: Arc<Context>,
    ) -> (
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    ) {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let broker = self.broker.clone();
        let settings = WorkerSettings {
            concurrency: Some(8),
            prefetch: Some(16),
            shutdown_grace: Duration::from_secs(10),
            ..WorkerSettings::default()
        };
        let handle = tokio::spawn(async move {
            kyc_worker::run(ctx, broker, settings, async {
                let _ = rx.await;
            })
            .await
            .expect("worker runs");
        });
        (tx, handle)
    }

    /// Starts `kyc work` as a separate process against this app's services and simulator;
    /// its logs (JSON) go to `log`.
    pub fn spawn_worker_process(
        &self,
        log: &std::path::Path,
        env: &[(&str, &str)],
    ) -> std::process::Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_kyc"));
        cmd.arg("work")
            .env("KYC_DATABASE_URL", &self.db_url)
            .env("KYC_AMQP_URL", &self.amqp_url)
            .env("KYC_QUEUE_PREFIX", &self.topology.prefix)
            .env("KYC_HTTP_LISTEN", "127.0.0.1:0")
            .env("KYC_LOG_FORMAT", "json")
            .env(
                "RUST_LOG",
                "debug,lapin=info,hyper=info,h2=info,aws_smithy_runtime=info,aws_config=info",
            )
            .env("HUAWEICLOUD_SDK_AK", &self.ak)
            .env("HUAWEICLOUD_SDK_SK", &self.sk)
            .env("HUAWEICLOUD_SDK_PROJECT_ID", "test-project")
            .env("KYC_HUAWEI_ENDPOINT", self.sim.base_url())
            .env("ALIBABA_CLOUD_ACCESS_KEY_ID", &self.ak)
            .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", &self.sk)
            .env("KYC_ALIBABA_ENDPOINT", self.sim.base_url())
            .env("KYC_ALIBABA_BIZ_TYPE", "RPBasic")
            .env("BAIDU_API_KEY", &self.ak)
            .env("BAIDU_SECRET_KEY", &self.sk)
            .env("KYC_BAIDU_ENDPOINT", self.sim.base_url())
            .env("KYC_BAIDU_PLAN_ID", "sim-authority")
            .env("KYC_S3_ENDPOINT", service("KYC_TEST_S3_ENDPOINT"))
            .env("KYC_DATA_KEYS", keyring().data.to_config())
            .env("KYC_DATA_KEY_ID", keyring().data.current_id())
            .env("KYC_INDEX_KEY", keyring().index.to_base64())
            .envs(tls_env())
            .env("KYC_MATERIAL_SOURCES", format!("s3://{}/", self.bucket))
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.spawn().expect("spawn kyc work")
    }

    /// Produces `n` two-factor jobs (no images) as batch `batch`; returns the ID numbers.
    pub async fn produce_extension_jobs(
        &self,
        batch: &str,
        n: usize,
        dir: &std::path::Path,
    ) -> Vec<String> {
        let mut text = String::from("operation,customer_ref,name,id_number\n");
        let mut ids = Vec::new();
        for i in 0..n {
            let id = IdNumber::with_checksum(&format!(
                "{}19850101{:03}",
                120_000 + i / 800,
                100 + i % 800
            ))
            .unwrap();
            text.push_str(&format!(
                "huawei.idcard_extension,C{i},欧阳娜娜,{}\n",
                id.as_str()
            ));
            ids.push(id.as_str().to_string());
        }
        let published = self.produce_text(batch, &text, dir).await;
        assert_eq!(published as usize, n);
        ids
    }

    /// Writes `text` as `<dir>/<batch>.csv` and produces it as batch `batch` (rejects go to
    /// `<dir>/<batch>.rejects.csv`); returns how many jobs were published.
    pub async fn produce_text(&self, batch: &str, text: &str, dir: &std::path::Path) -> u64 {
        let input = dir.join(format!("{batch}.csv"));
        std::fs::write(&input, text).unwrap();
        let settings = kyc_producer::ProduceSettings {
            batch_id: batch.into(),
            input: input.display().to_string(),
            images: None,
            material_sources: self.objects.material_sources().clone(),
            default_operation: None,
            rejects_path: dir.join(format!("{batch}.rejects.csv")),
            dry_run: false,
            window: 200,
            encoding: Default::default(),
            max_record_bytes: kyc_producer::DEFAULT_MAX_RECORD_BYTES,
            keys: keyring().clone(),
            skip_verified_within: None,
        };
        kyc_producer::produce(
            &settings,
            None,
            &self.store,
            &self.broker,
            &kyc_producer::CancellationToken::new(),
            |_| {},
        )
        .await
        .unwrap()
        .published
    }

    /// Uploads the sample faces to `s3://<bucket>/faces/`.
    pub async fn upload_faces(&self) {
        let dir = std::path::PathBuf::from(
            std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR"),
        )
        .join("examples/images/faces");
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_string();
            let data = Bytes::from(std::fs::read(&path).unwrap());
            self.objects
                .put(&format!("s3://{}/faces/{name}", self.bucket), data)
                .await
                .unwrap();
        }
    }

    pub async fn wait_for_outcomes(&self, batch: &str, n: i64, within: Duration) {
        let start = Instant::now();
        loop {
            let have = self.store.outcome_count(batch).await.unwrap();
            if have >= n {
                return;
            }
            assert!(
                start.elapsed() < within,
                "only {have} of {n} outcomes after {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// (source_row → (status, reason, attempts)) for a batch.
    pub async fn outcomes(&self, batch: &str) -> HashMap<i64, (String, String, i64)> {
        self.outcomes_keyed(batch, |r| r.source_row.unwrap()).await
    }

    /// (job_id → (status, reason, attempts)) for a batch, jobs table or not.
    pub async fn outcomes_by_job(&self, batch: &str) -> HashMap<String, (String, String, i64)> {
        self.outcomes_keyed(batch, |r| r.job_id.clone()).await
    }

    async fn outcomes_keyed<K: std::hash::Hash + Eq>(
        &self,
        batch: &str,
        key: impl Fn(&kyc_store::queries::OutcomeRow) -> K,
    ) -> HashMap<K, (String, String, i64)> {
        let mut out = HashMap::new();
        let filter = kyc_store::queries::OutcomeFilter {
            batch_id: Some(batch.into()),
            ..Default::default()
        };
        self.store
            .for_each_outcome(&filter, |r| {
                out.insert(key(&r), (r.status, r.reason, r.attempts));
                Ok(())
            })
            .await
            .unwrap();
        out
    }

    /// Billable calls according to our billing counters, all days and products.
    pub async fn billable_calls_counted(&self) -> i64 {
        self.store
            .billing_rows()
            .await
            .unwrap()
            .iter()
            .map(|b| b.billable_calls)
            .sum()
    }

    /// Every message in a queue as the broker holds it: (message id, body, headers). The
    /// messages stay in the queue (they are returned when the channel closes).
    /// Waits until a vendor's work queue has no message ready (all taken by consumers).
    pub async fn wait_queue_taken(&self, vendor: kyc_schemas::Vendor, within: Duration) {
        let start = Instant::now();
        loop {
            let (ready, _) = self.work_queue_state(vendor).await;
            if ready == 0 {
                return;
            }
            assert!(
                start.elapsed() < within,
                "{ready} messages still ready after {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// (messages ready, consumers) of a vendor's work queue, without touching its messages.
    pub async fn work_queue_state(&self, vendor: kyc_schemas::Vendor) -> (u32, u32) {
        self.queue_state(self.topology.work_queue(vendor).as_str())
            .await
    }

    /// (messages ready, consumers) of any queue, by a passive declare: nothing is taken.
    pub async fn queue_state(&self, queue: &str) -> (u32, u32) {
        let conn = amqp_connection(&self.amqp_url).await;
        let ch = conn.create_channel().await.unwrap();
        let q = ch
            .queue_declare(
                queue.into(),
                lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                Default::default(),
            )
            .await
            .unwrap();
        let _ = conn.close(0, "done".into()).await;
        (q.message_count(), q.consumer_count())
    }

    pub async fn peek_queue(&self, queue: &str) -> Vec<(String, Vec<u8>, String)> {
        let conn = amqp_connection(&self.amqp_url).await;
        let ch = conn.create_channel().await.unwrap();
        let mut out = Vec::new();
        while let Some(msg) = ch
            .basic_get(
                queue.into(),
                lapin::options::BasicGetOptions { no_ack: false },
            )
            .await
            .unwrap()
        {
            let props = &msg.delivery.properties;
            out.push((
                props
                    .message_id()
                    .as_ref()
                    .map(|m| m.to_string())
                    .unwrap_or_default(),
                msg.delivery.data.clone(),
                format!("{:?}", props.headers()),
            ));
        }
        let _ = conn.close(200, "peeked".into()).await;
        out
    }

    /// Takes one message from the dead-letter queue: (message id, reason header).
    pub async fn take_dead_letter(&self) -> Option<(String, String)> {
        let conn = amqp_connection(&self.amqp_url).await;
        let ch = conn.create_channel().await.unwrap();
        let msg = ch
            .basic_get(
                self.topology.dead_letter_queue().as_str().into(),
                lapin::options::BasicGetOptions { no_ack: true },
            )
            .await
            .unwrap()?;
        let props = &msg.delivery.properties;
        let id = props.message_id().as_ref().unwrap().to_string();
        let reason = match props
            .headers()
            .as_ref()
            .unwrap()
            .inner()
            .get("x-kyc-dead-reason")
        {
            Some(lapin::types::AMQPValue::LongString(s)) => s.to_string(),
            other => panic!("dead letter {id} has no reason header: {other:?}"),
        };
        Some((id, reason))
    }

    pub async fn cleanup(self) {
        self.sim.stop().await;
        if let Ok(conn) =
            kyc_queue::amqp::connect(&self.amqp_url, test_ca("KYC_TEST_AMQP_CA_FILE").as_deref())
                .await
        {
            if let Ok(ch) = conn.create_channel().await {
                let mut queues: Vec<String> = kyc_schemas::Vendor::ALL
                    .iter()
                    .map(|v| self.topology.work_queue(*v))
                    .collect();
                queues.push(self.topology.dead_letter_queue());
                for v in kyc_schemas::Vendor::ALL {
                    for b in kyc_queue::topology::DELAY_BUCKETS {
                        queues.push(self.topology.delay_queue(v, b));
                    }
                }
                for q in queues {
                    let _ = ch.queue_delete(q.as_str().into(), Default::default()).await;
                }
            }
        }
        self.broker.close().await;
        self.store.close().await;
    }
}

/// An ID number whose sequence code is `seq` (the simulator's outcome selector).
pub fn id_with_seq(n: usize, seq: &str) -> IdNumber {
    let birth = format!("19{:02}{:02}{:02}", 60 + n % 40, 1 + n % 12, 1 + n % 28);
    IdNumber::with_checksum(&format!("440304{birth}{seq}")).unwrap()
}

/// What the simulator answers for a sequence code, normalized.
pub fn predicted(operation: &str, seq: &str) -> (Status, &'static str) {
    let three = operation == "huawei.standard";
    match seq {
        "901" => (Status::Failed, "identity_mismatch"),
        "902" if three => (Status::Failed, "face_mismatch"),
        "903" if three => (Status::Failed, "image_quality"),
        "906" if three => (Status::Error, "id_photo_missing"),
        "930" => (Status::NotFound, "no_record"),
        _ => (Status::Passed, "verified"),
    }
}

/// A loopback server that accepts connections and never says a word: a hung S3, broker or
/// database as a client sees it. Returns its port; the sockets are held until the test ends.
pub async fn silent_server() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    port
}

/// A loopback port with nothing listening on it.
pub fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child's stdout and stderr, for assertions and failure messages.
pub fn output_text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The batch id `kyc produce` printed: `batch <id> (<encoding>): …`.
pub fn batch_of(o: &std::process::Output) -> String {
    let out = String::from_utf8_lossy(&o.stdout);
    let line = out
        .lines()
        .find(|l| l.starts_with("batch "))
        .unwrap_or_else(|| panic!("no summary line in {}", output_text(o)));
    line["batch ".len()..]
        .split(' ')
        .next()
        .unwrap()
        .to_string()
}

/// Polls `cond` every 50 ms until it holds; fails naming `what` after `within`. Fault tests
/// wait on the condition they prove, never on a fixed sleep.
pub async fn wait_until<F, Fut>(what: &str, within: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !cond().await {
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
