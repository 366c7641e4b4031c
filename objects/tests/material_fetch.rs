//! Material downloads against real HTTP servers on loopback: what an allowlist entry lets
//! through, which redirects are followed, which answers heal, and that a refused address
//! is refused before any connection. Every server here listens on 127.0.0.1; names that
//! stand for other addresses are resolved by a test resolver and never dialled (the
//! special non-loopback addresses are checked at the resolver alone, in `fetch.rs`).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use axum::Router;
use kyc_objects::{
    AddressClass, AddressPolicy, MaterialSources, NotAllowed, ObjectError, ObjectStore,
};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

const FACE: &[u8] = b"\xff\xd8 a face";

/// A loopback server: counts accepted connections and requests per path.
struct Server {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    hits: Arc<Mutex<HashMap<String, usize>>>,
}

impl Server {
    fn port(&self) -> u16 {
        self.addr.port()
    }

    fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

#[derive(Clone)]
struct Routes {
    hits: Arc<Mutex<HashMap<String, usize>>>,
    /// Where `/m/redirect-*` point (filled in once the ports are known).
    targets: Arc<Mutex<HashMap<String, String>>>,
}

async fn serve(State(r): State<Routes>, Path(path): Path<String>) -> Response {
    *r.hits
        .lock()
        .unwrap()
        .entry(format!("/{path}"))
        .or_default() += 1;
    let redirect = |to: String| (StatusCode::FOUND, [(header::LOCATION, to)]).into_response();
    match path.as_str() {
        "m/face.jpg" | "other/face.jpg" => FACE.into_response(),
        "m/loop" => redirect("/m/loop".into()),
        "m/403" => StatusCode::FORBIDDEN.into_response(),
        "m/404" => StatusCode::NOT_FOUND.into_response(),
        "m/400" => StatusCode::BAD_REQUEST.into_response(),
        "m/503" => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        "m/429" => StatusCode::TOO_MANY_REQUESTS.into_response(),
        p if p.starts_with("m/redirect-") => {
            let to = r.targets.lock().unwrap().get(p).cloned();
            match to {
                Some(to) => redirect(to),
                None => StatusCode::NOT_FOUND.into_response(),
            }
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn start(targets: Arc<Mutex<HashMap<String, String>>>) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let hits = Arc::new(Mutex::new(HashMap::new()));
    let counted = connections.clone();
    let listener = listener.tap_io(move |_| {
        counted.fetch_add(1, Ordering::SeqCst);
    });
    let app = Router::new()
        .route("/{*path}", get(serve))
        .with_state(Routes {
            hits: hits.clone(),
            targets,
        });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Server {
        addr,
        connections,
        hits,
    }
}

/// Test names → addresses, all on loopback here.
struct Names(HashMap<&'static str, IpAddr>);

impl Resolve for Names {
    fn resolve(&self, name: Name) -> Resolving {
        let ip = self.0.get(name.as_str()).copied();
        Box::pin(async move {
            let ip = ip.ok_or("unknown test name")?;
            Ok(Box::new(std::iter::once(SocketAddr::new(ip, 0))) as Addrs)
        })
    }
}

fn names() -> Arc<Names> {
    Arc::new(Names(HashMap::from([
        ("loopback.test", "127.0.0.1".parse().unwrap()),
        ("mapped.test", "::ffff:127.0.0.1".parse().unwrap()),
        ("images.test", "127.0.0.1".parse().unwrap()),
    ])))
}

fn store(list: &str, allow: &[AddressClass]) -> ObjectStore {
    let dir = std::env::temp_dir();
    ObjectStore::local(dir)
        .with_material_sources(
            MaterialSources::parse(list)
                .unwrap()
                .with_addresses(AddressPolicy::allowing(allow)),
        )
        .with_dns(names())
}

fn refusal(r: Result<bytes::Bytes, ObjectError>) -> NotAllowed {
    match r {
        Err(ObjectError::NotAllowed { why, .. }) => why,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn loopback_addresses_are_refused_before_any_connection_unless_allowed() {
    let server = start(Default::default()).await;
    let port = server.port();
    let list = format!(
        "http://loopback.test:{port}/m/,http://mapped.test:{port}/m/,http://127.0.0.1:{port}/m/,http://[::ffff:127.0.0.1]:{port}/m/"
    );
    let strict = store(&list, &[]);
    for url in [
        format!("http://loopback.test:{port}/m/face.jpg"),
        format!("http://mapped.test:{port}/m/face.jpg"),
        format!("http://127.0.0.1:{port}/m/face.jpg"),
        format!("http://[::ffff:127.0.0.1]:{port}/m/face.jpg"),
    ] {
        let e = strict.get(&url).await.unwrap_err();
        assert!(!e.is_transient(), "{url}: {e}");
        assert_eq!(
            refusal(Err(e)),
            NotAllowed::Address(AddressClass::Loopback),
            "{url}"
        );
    }
    // The same name, allowed: one connection arrives. Had a refused fetch connected, its
    // connection would have been accepted first.
    let allowed = store(&list, &[AddressClass::Loopback]);
    let body = allowed
        .get(&format!("http://loopback.test:{port}/m/face.jpg"))
        .await
        .unwrap();
    assert_eq!(&body[..], FACE);
    assert_eq!(server.connections.load(Ordering::SeqCst), 1);
    assert_eq!(server.hits("/m/face.jpg"), 1);
}

#[tokio::test]
async fn redirects_are_followed_inside_the_prefix_and_refused_out_of_it() {
    let targets: Arc<Mutex<HashMap<String, String>>> = Default::default();
    let server = start(targets.clone()).await;
    let other = start(Default::default()).await;
    let (port, other_port) = (server.port(), other.port());
    for (from, to) in [
        ("m/redirect-inside", "/m/face.jpg".to_string()),
        ("m/redirect-prefix", "/other/face.jpg".into()),
        ("m/redirect-dots", "/m/../other/face.jpg".into()),
        (
            "m/redirect-host",
            format!("http://loopback.test:{port}/m/face.jpg"),
        ),
        (
            "m/redirect-port",
            format!("http://images.test:{other_port}/m/face.jpg"),
        ),
        (
            "m/redirect-https",
            format!("https://images.test:{port}/m/face.jpg"),
        ),
    ] {
        targets.lock().unwrap().insert(from.into(), to);
    }
    // Both hosts and ports are on the list, each under its own entry: a redirect may not
    // hop from one entry to another.
    let s = store(
        &format!(
            "http://images.test:{port}/m/,http://loopback.test:{port}/m/,http://images.test:{other_port}/m/,https://images.test:{port}/m/"
        ),
        &[AddressClass::Loopback],
    );
    let url = |p: &str| format!("http://images.test:{port}/{p}");

    assert_eq!(&s.get(&url("m/redirect-inside")).await.unwrap()[..], FACE);
    assert_eq!(server.hits("/m/face.jpg"), 1);
    for path in [
        "m/redirect-prefix",
        "m/redirect-dots",
        "m/redirect-host",
        "m/redirect-port",
        "m/redirect-https",
    ] {
        let why = refusal(s.get(&url(path)).await);
        assert!(
            matches!(why, NotAllowed::NotListed | NotAllowed::DotSegment),
            "{path}: {why:?}"
        );
    }
    assert_eq!(
        refusal(s.get(&url("m/loop")).await),
        NotAllowed::TooManyRedirects
    );
    assert_eq!(
        server.hits("/m/loop"),
        1 + kyc_objects::fetch::MAX_REDIRECTS
    );
    // No refused redirect was requested: nothing reached the other prefix or the other port.
    assert_eq!(server.hits("/other/face.jpg"), 0);
    assert_eq!(server.hits("/m/face.jpg"), 1);
    assert_eq!(other.connections.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn refusals_fail_at_once_and_only_what_can_heal_is_transient() {
    let server = start(Default::default()).await;
    let port = server.port();
    let s = store(
        &format!("http://images.test:{port}/m/"),
        &[AddressClass::Loopback],
    );
    let get = |p: &str| {
        let url = format!("http://images.test:{port}/m/{p}?X-Amz-Signature=SECRET");
        let s = &s;
        async move { s.get(&url).await }
    };
    for (path, transient) in [
        ("403", false),
        ("404", false),
        ("400", false),
        ("503", true),
        ("429", true),
    ] {
        let e = get(path).await.unwrap_err();
        assert_eq!(e.is_transient(), transient, "{path}: {e}");
        let text = format!("{e} {e:?}");
        // Named by the allowlist entry it failed against, not by its path or query.
        assert!(
            !text.contains("SECRET") && !text.contains(&format!("/m/{path}")),
            "{path}: {text}"
        );
        assert!(
            text.contains(&format!("http://images.test:{port}/m/")),
            "{text}"
        );
    }
    assert!(matches!(
        get("404").await,
        Err(ObjectError::NotFound { .. })
    ));
    // A closed port is a connection failure: transient.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let s = store(
        &format!("http://images.test:{closed}/m/"),
        &[AddressClass::Loopback],
    );
    let e = s
        .get(&format!("http://images.test:{closed}/m/face.jpg"))
        .await
        .unwrap_err();
    assert!(e.is_transient(), "{e}");
}
