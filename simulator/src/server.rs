//! Start-up, routing and the admin endpoints. `Simulator::start` binds (port 0 in tests),
//! serves in the background, and hands back the address and the shared state.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::faults::{Delays, FaultConfig, Quotas, Seen, VendorFaults};
use crate::ledger::{Arrival, Ledger, LedgerSummary};
use crate::vendors::alibaba::{self, AlibabaSim, AlibabaState};
use crate::vendors::baidu::{self, BaiduSim, BaiduState};
use crate::vendors::huawei::{self, HuaweiSim};

#[derive(Debug, Clone, Default)]
pub struct SimConfig {
    pub huawei: HuaweiSim,
    pub alibaba: AlibabaSim,
    pub baidu: BaiduSim,
    pub faults: FaultConfig,
}

#[derive(Debug)]
pub struct AppState {
    pub config: SimConfig,
    pub faults: RwLock<FaultConfig>,
    pub ledger: Ledger,
    pub quotas: Quotas,
    pub delays: Delays,
    /// Vendor calls received and not yet answered (the ledger holds answered ones).
    pub in_flight: AtomicUsize,
    pub seen: Seen,
    /// Issued IAM tokens → expiry (ms since epoch).
    pub tokens: Mutex<std::collections::HashMap<String, i64>>,
    pub alibaba: AlibabaState,
    pub baidu: BaiduState,
}

impl AppState {
    pub fn faults(&self) -> FaultConfig {
        self.faults.read().expect("faults lock").clone()
    }

    /// The simulator's clock: real time moved by `faults.clock_offset_secs`, so that tests
    /// can let sessions and tokens expire without waiting hours.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now()
            + chrono::Duration::seconds(self.faults.read().expect("faults lock").clock_offset_secs)
    }
}

impl AppState {
    /// Counts a vendor call as in flight until the guard drops (answered, or its task ended).
    pub fn busy(&self) -> Busy<'_> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        Busy(&self.in_flight)
    }

    /// Whether a call of `vendor.api` arriving at `arrival` fits that API's quota.
    pub fn admit(&self, vendor: &str, api: &str, f: &VendorFaults, arrival: Arrival) -> bool {
        self.quotas.admit(
            &format!("{vendor}.{api}"),
            f.qps_of(api),
            f.burst,
            arrival.at,
        )
    }

    /// Waits the injected answer time of one admitted call of `api`.
    pub async fn latency(&self, f: &VendorFaults, api: &str) {
        let seed = self.faults.read().expect("faults lock").seed;
        let d = self.delays.delay(f, api, seed);
        if !d.is_zero() {
            tokio::time::sleep(d).await;
        }
    }
}

/// See [`AppState::busy`].
#[derive(Debug)]
pub struct Busy<'a>(&'a AtomicUsize);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

pub type Shared = Arc<AppState>;

/// A running simulator. Dropping it does not stop it; call [`Simulator::stop`].
#[derive(Debug)]
pub struct Simulator {
    addr: SocketAddr,
    state: Shared,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Simulator {
    /// Binds `listen` (e.g. `127.0.0.1:0`) and serves in a background task.
    pub async fn start(config: SimConfig, listen: &str) -> std::io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let alibaba = AlibabaState::new(&config.alibaba)?;
        let state = Arc::new(AppState {
            faults: RwLock::new(config.faults.clone()),
            config,
            ledger: Ledger::default(),
            quotas: Quotas::default(),
            delays: Delays::default(),
            in_flight: AtomicUsize::new(0),
            seen: Seen::default(),
            tokens: Mutex::new(Default::default()),
            alibaba,
            baidu: BaiduState::default(),
        });
        let app = router(state.clone());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(Self {
            addr,
            state,
            stop: Some(tx),
            task,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, the endpoint to give the clients.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn ledger(&self) -> LedgerSummary {
        summary(&self.state)
    }

    /// Vendor calls received and not answered yet: once 0 (and no client sends more), the
    /// ledger holds every call that arrived.
    pub fn in_flight(&self) -> usize {
        self.state.in_flight.load(Ordering::SeqCst)
    }

    pub fn set_faults(&self, faults: FaultConfig) {
        *self.state.faults.write().expect("faults lock") = faults;
    }

    /// Serves until `stop` is called; used by `kyc simulate`.
    pub async fn wait(self) {
        let _ = self.task.await;
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let _ = self.task.await;
    }
}

fn summary(state: &AppState) -> LedgerSummary {
    state.ledger.summary()
}

pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/admin/ledger", get(admin_ledger))
        .route(
            "/admin/faults",
            get(admin_get_faults).post(admin_set_faults),
        )
        .route("/admin/reset", post(admin_reset))
        .merge(huawei::routes())
        .merge(alibaba::routes())
        .merge(baidu::routes())
        // Every answer's `Date` is the simulator's clock, so that `clock_offset_secs` looks
        // like a vendor whose clock (or ours) is off: what `kyc doctor` measures.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            date_header,
        ))
        // Vendors accept bodies up to 12 MB (Huawei AK/SK); their own checks answer above
        // that, not a generic 413 from the framework.
        .layer(axum::extract::DefaultBodyLimit::max(16 * 1024 * 1024))
        .with_state(state)
}

/// Sets `Date` from [`AppState::now`] (hyper only adds its own when none is set).
async fn date_header(
    State(s): State<Shared>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let now = s.now();
    let mut resp = next.run(req).await;
    let date = now.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    if let Ok(v) = axum::http::HeaderValue::from_str(&date) {
        resp.headers_mut().insert(axum::http::header::DATE, v);
    }
    resp
}

async fn admin_ledger(State(s): State<Shared>) -> Json<LedgerSummary> {
    Json(summary(&s))
}

async fn admin_get_faults(State(s): State<Shared>) -> Json<FaultConfig> {
    Json(s.faults())
}

async fn admin_set_faults(
    State(s): State<Shared>,
    Json(f): Json<FaultConfig>,
) -> Json<FaultConfig> {
    *s.faults.write().expect("faults lock") = f.clone();
    Json(f)
}

async fn admin_reset(State(s): State<Shared>) -> &'static str {
    s.ledger.clear();
    "ok"
}
