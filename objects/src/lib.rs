//! Where images, videos and CSV input live: an S3-compatible server, a local folder (embedded
//! mode), or HTTPS. A URI's scheme picks the backend: `s3://bucket/key`, `https://…` /
//! `http://…`, or a relative path under the local folder.
//!
//! # Layout
//! - [`sources`]: the material allowlist (`KYC_MATERIAL_SOURCES`) and the check every
//!   material passes before it is read or presigned
//! - [`address`]: which IP addresses a material download may connect to
//! - [`fetch`]: the download client: a resolver that refuses those addresses at connection
//!   time, redirects held to the allowlist
//! - [`error`]: `ObjectError`, classified into what heals and what does not, without paths
//!   or query strings
//! - [`private_file`]: creates the local files we write for people (reports, rejects) as 0600
//! - [`stall`]: streamed bodies that give up when the source stops sending
//! - this file: [`ObjectStore`], reading and writing by URI
#![warn(unreachable_pub, missing_debug_implementations)]

pub mod address;
pub mod budget;
pub mod error;
pub mod fetch;
pub mod private_file;
pub mod sources;
pub mod stall;

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use tokio::io::AsyncRead;

pub use address::{AddressClass, AddressPolicy, AddressPolicyError};
pub use budget::{MaterialBudget, Reservation};
pub use error::ObjectError;
use error::{http_error, http_status, io_error, s3_error};
pub use sources::{
    origin, AllowedSource, Checked, Material, MaterialSources, NotAllowed, SourceError,
};

/// No material the vendors accept is larger (Huawei video ≤ 10 MB base64); anything bigger
/// is refused before it is read into memory.
pub const MAX_OBJECT_BYTES: u64 = 16 * 1024 * 1024;

/// A material whose request is made and whose answer has begun, its body not yet read (see
/// [`ObjectStore::open`]).
#[derive(Debug)]
pub struct Opened {
    /// The source it came from (for errors: never the key, path or query).
    at: String,
    announced: Option<u64>,
    body: OpenedBody,
}

impl Opened {
    /// The size the source announced (Content-Length, a file's length), if it did.
    pub fn announced(&self) -> Option<u64> {
        self.announced
    }
}

#[derive(Debug)]
enum OpenedBody {
    S3(ByteStream),
    Http(reqwest::Response),
    Local(PathBuf),
}

/// How long an S3 request or a material download may wait for an answer, and a streamed
/// body for its next bytes, unless [`ObjectStore::with_timeout`] says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The slowest upload rate a report upload is allowed before it counts as stalled: its time
/// limit grows with the file (the timeout plus one second per MiB).
const MIN_UPLOAD_BYTES_PER_SEC: u64 = 1024 * 1024;

pub type Result<T, E = ObjectError> = std::result::Result<T, E>;

/// A parsed URI of an object the operator named (CSV input, report output). Materials
/// named by CSV rows go through [`MaterialSources::check`] instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectUri {
    S3 { bucket: String, key: String },
    Http(String),
    Local(PathBuf),
}

impl ObjectUri {
    pub fn parse(uri: &str) -> Result<Self> {
        let uri = uri.trim();
        let invalid = |why| ObjectError::InvalidUri {
            at: origin(uri),
            why,
        };
        if let Some(rest) = uri.strip_prefix("s3://") {
            let (bucket, key) = rest
                .split_once('/')
                .ok_or(invalid("s3 URI needs a bucket and a key"))?;
            if bucket.is_empty() || key.is_empty() {
                return Err(invalid("s3 URI needs a bucket and a key"));
            }
            return Ok(ObjectUri::S3 {
                bucket: bucket.into(),
                key: key.into(),
            });
        }
        if uri.starts_with("https://") || uri.starts_with("http://") {
            return Ok(ObjectUri::Http(uri.into()));
        }
        if uri.is_empty() || uri.contains("://") {
            return Err(invalid("expected s3://, https:// or a relative path"));
        }
        let path = PathBuf::from(uri);
        // A CSV must not reach outside the image folder it was given.
        if path
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Err(invalid("local paths must be relative, without '..'"));
        }
        Ok(ObjectUri::Local(path))
    }
}

/// Reads materials by URI, within the allowlist it was given. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ObjectStore {
    s3: Option<aws_sdk_s3::Client>,
    local_root: Option<PathBuf>,
    sources: Arc<MaterialSources>,
    dns: Dns,
    http: reqwest::Client,
    /// Where local files can be fetched over HTTP (embedded mode serves its image folder
    /// so that a vendor that downloads images itself can reach them).
    local_url_base: Option<String>,
    /// Bound of every request (S3 and downloads) and of each wait for a body's next bytes.
    timeout: Duration,
    /// Bytes of materials (and their bodies) in flight, shared by clones; none = unbounded.
    budget: Option<MaterialBudget>,
}

/// The resolver under the address guard (the system's, or a test's).
#[derive(Clone)]
struct Dns(Arc<dyn reqwest::dns::Resolve>);

impl std::fmt::Debug for Dns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Dns")
    }
}

impl Default for Dns {
    fn default() -> Self {
        Dns(Arc::new(fetch::SystemResolver))
    }
}

impl ObjectStore {
    fn new(s3: Option<aws_sdk_s3::Client>, local_root: Option<PathBuf>) -> Self {
        let sources = Arc::new(MaterialSources::default());
        let dns = Dns::default();
        Self {
            s3,
            local_root,
            http: fetch::client(&sources, dns.0.clone()),
            sources,
            dns,
            local_url_base: None,
            timeout: DEFAULT_TIMEOUT,
            budget: None,
        }
    }

    /// A budget of `bytes` for materials and the bodies built from them
    /// ([`ObjectStore::material_budget`]): a job reserves what its materials announce after
    /// [`ObjectStore::open`] and before [`ObjectStore::read`], and waits while it is spent.
    pub fn with_material_budget(mut self, bytes: u64) -> Self {
        self.budget = Some(MaterialBudget::new(bytes));
        self
    }

    pub fn material_budget(&self) -> Option<&MaterialBudget> {
        self.budget.as_ref()
    }

    /// Bounds every S3 request (connect, and the wait for the answer to begin), every
    /// material download, and each wait for the next bytes of a streamed body by `timeout`.
    /// A server that accepts and never answers costs a job this long, then a retry.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self.s3 = self.s3.take().map(|c| {
            let conf = c
                .config()
                .to_builder()
                .timeout_config(s3_timeouts(timeout))
                .build();
            aws_sdk_s3::Client::from_conf(conf)
        });
        self
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// A store that reads local paths under `root` and nothing from S3 (embedded mode).
    /// Materials: local paths only, until [`ObjectStore::with_material_sources`].
    pub fn local(root: impl Into<PathBuf>) -> Self {
        Self::new(None, Some(root.into()))
    }

    /// Local paths get URLs under `base` from [`ObjectStore::presign_get`] (`base/<path>`).
    pub fn with_local_url_base(mut self, base: impl Into<String>) -> Self {
        self.local_url_base = Some(base.into());
        self
    }

    /// Where materials may come from ([`ObjectStore::get`], [`ObjectStore::presign_get`]).
    pub fn with_material_sources(mut self, sources: MaterialSources) -> Self {
        self.sources = Arc::new(sources);
        self.http = fetch::client(&self.sources, self.dns.0.clone());
        self
    }

    /// Resolves material hosts with `dns` instead of the system resolver; the address guard
    /// still filters what it returns (tests map names to special addresses this way).
    pub fn with_dns(mut self, dns: Arc<dyn reqwest::dns::Resolve>) -> Self {
        self.dns = Dns(dns);
        self.http = fetch::client(&self.sources, self.dns.0.clone());
        self
    }

    pub fn material_sources(&self) -> &MaterialSources {
        &self.sources
    }

    /// A store backed by S3. Credentials and region come from the standard AWS environment
    /// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`); with an explicit
    /// `endpoint` (MinIO, s3s, Ceph…) path-style addressing is used, as those servers expect.
    /// `ca_pem` (PEM certificates) is trusted for `https://` endpoints on top of the system's
    /// roots, for a server with a private CA; certificates are always verified.
    /// Materials: local paths only, until [`ObjectStore::with_material_sources`].
    pub async fn s3(
        endpoint: Option<&str>,
        ca_pem: Option<&str>,
        local_root: Option<PathBuf>,
    ) -> Result<Self> {
        // The region is given, never looked up: the default chain would ask the cloud's
        // metadata service, which is no place for a batch job on a laptop or in CI to call.
        let region = std::env::var("AWS_REGION")
            .or_else(|_| std::env::var("AWS_DEFAULT_REGION"))
            .ok()
            .filter(|r| !r.trim().is_empty())
            .unwrap_or_else(|| "us-east-1".to_string());
        let mut loader = aws_config::from_env()
            .region(aws_sdk_s3::config::Region::new(region))
            .timeout_config(s3_timeouts(DEFAULT_TIMEOUT));
        if let Some(ep) = endpoint {
            loader = loader.endpoint_url(ep);
        }
        if let Some(pem) = ca_pem {
            loader = loader.http_client(https_client_trusting(pem)?);
        }
        let shared = loader.load().await;
        let conf = aws_sdk_s3::config::Builder::from(&shared);
        let conf = if endpoint.is_some() {
            conf.force_path_style(true)
        } else {
            conf
        };
        Ok(Self::new(
            Some(aws_sdk_s3::Client::from_conf(conf.build())),
            local_root,
        ))
    }

    /// The same store, reading S3 through `client` (other credentials or settings).
    pub fn with_s3_client(mut self, client: aws_sdk_s3::Client) -> Self {
        self.s3 = Some(client);
        self
    }

    pub fn s3_client(&self) -> Option<&aws_sdk_s3::Client> {
        self.s3.as_ref()
    }

    fn s3_for(&self, at: &str) -> Result<&aws_sdk_s3::Client> {
        self.s3
            .as_ref()
            .ok_or_else(|| ObjectError::NoS3 { at: at.into() })
    }

    fn local_path(&self, rel: &Path) -> Result<PathBuf> {
        let root = self.local_root.as_ref().ok_or(ObjectError::NoLocalFolder)?;
        Ok(root.join(rel))
    }

    /// Checks a material URI against the allowlist without reading it. A local path also
    /// needs this store to have a local folder.
    pub fn check_material(&self, uri: &str) -> Result<Checked> {
        let checked = self
            .sources
            .check(uri)
            .map_err(|why| ObjectError::NotAllowed {
                at: origin(uri),
                why,
            })?;
        if let Material::Local(_) = checked.material {
            self.local_root.as_ref().ok_or(ObjectError::NoLocalFolder)?;
        }
        Ok(checked)
    }

    /// Reads a whole material (an image or a video) from an allowed source, refusing
    /// anything over [`MAX_OBJECT_BYTES`].
    pub async fn get(&self, uri: &str) -> Result<Bytes> {
        let opened = self.open(uri).await?;
        self.read(opened).await
    }

    /// The first half of [`ObjectStore::get`]: the request is made and its answer begun (its
    /// announced size known, anything announced over [`MAX_OBJECT_BYTES`] refused), the body
    /// not yet read. A job opens all its materials, reserves their announced sizes out of
    /// the budget at once, then reads them ([`ObjectStore::read`]).
    pub async fn open(&self, uri: &str) -> Result<Opened> {
        let Checked { material, source } = self.check_material(uri)?;
        let at = source.as_str().to_string();
        let too_large = |size: u64| ObjectError::TooLarge {
            at: at.clone(),
            size,
        };
        match material {
            Material::S3 { bucket, key } => {
                // Boxed: the SDK's request future is large, and unboxed it would sit in every
                // job's future for the job's whole life, not only while the request runs.
                let out = Box::pin(
                    self.s3_for(&at)?
                        .get_object()
                        .bucket(&bucket)
                        .key(&key)
                        .send(),
                )
                .await
                .map_err(|e| s3_error(&at, e))?;
                let announced = out.content_length().map(|n| n.max(0) as u64);
                if let Some(size) = announced.filter(|s| *s > MAX_OBJECT_BYTES) {
                    return Err(too_large(size));
                }
                Ok(Opened {
                    announced,
                    body: OpenedBody::S3(out.body),
                    at,
                })
            }
            Material::Url(url) => {
                let resp = self
                    .http
                    .get(url)
                    .timeout(self.timeout)
                    .send()
                    .await
                    .map_err(|e| http_error(&at, e))?;
                if !resp.status().is_success() {
                    return Err(http_status(&at, resp.status()));
                }
                let announced = resp.content_length();
                if let Some(size) = announced.filter(|s| *s > MAX_OBJECT_BYTES) {
                    return Err(too_large(size));
                }
                Ok(Opened {
                    announced,
                    body: OpenedBody::Http(resp),
                    at,
                })
            }
            Material::Local(rel) => {
                let path = self.local_path(&rel)?;
                let meta = tokio::fs::metadata(&path)
                    .await
                    .map_err(|e| io_error(&at, e))?;
                if meta.len() > MAX_OBJECT_BYTES {
                    return Err(too_large(meta.len()));
                }
                Ok(Opened {
                    announced: Some(meta.len()),
                    body: OpenedBody::Local(path),
                    at,
                })
            }
        }
    }

    /// The second half of [`ObjectStore::get`]: reads the body of an opened object, never past
    /// [`MAX_OBJECT_BYTES`] whatever was announced, nor waiting longer than the timeout for
    /// its next bytes.
    pub async fn read(&self, opened: Opened) -> Result<Bytes> {
        let Opened {
            at,
            body,
            announced,
        } = opened;
        match body {
            // Read at most one byte past the limit: a server that sent no length must not
            // make us hold an unbounded body, nor one that stops sending hold the job.
            OpenedBody::S3(stream) => {
                read_limited(
                    stall::StallGuard::new(stream.into_async_read(), self.timeout),
                    &at,
                    announced,
                )
                .await
            }
            OpenedBody::Http(mut resp) => {
                // Sized from the announced length, as `read_limited` does for S3.
                let mut body =
                    Vec::with_capacity(announced.map_or(0, |n| n.min(MAX_OBJECT_BYTES) as usize));
                while let Some(chunk) = resp.chunk().await.map_err(|e| http_error(&at, e))? {
                    body.extend_from_slice(&chunk);
                    if body.len() as u64 > MAX_OBJECT_BYTES {
                        return Err(ObjectError::TooLarge {
                            at,
                            size: body.len() as u64,
                        });
                    }
                }
                Ok(body.into())
            }
            OpenedBody::Local(path) => Ok(tokio::fs::read(&path)
                .await
                .map_err(|e| io_error(&at, e))?
                .into()),
        }
    }

    /// Opens an object as a byte stream (CSV input): never read whole into memory.
    pub async fn reader(&self, uri: &str) -> Result<Box<dyn AsyncRead + Send + Unpin>> {
        let at = origin(uri);
        match ObjectUri::parse(uri)? {
            ObjectUri::S3 { bucket, key } => {
                let out = self
                    .s3_for(&at)?
                    .get_object()
                    .bucket(&bucket)
                    .key(&key)
                    .send()
                    .await
                    .map_err(|e| s3_error(&at, e))?;
                Ok(Box::new(stall::StallGuard::new(
                    out.body.into_async_read(),
                    self.timeout,
                )))
            }
            ObjectUri::Http(_) => Err(ObjectError::InvalidUri {
                at,
                why: "CSV input must be a file or s3:// URI",
            }),
            ObjectUri::Local(rel) => {
                let path = self.local_path(&rel)?;
                Ok(Box::new(
                    tokio::fs::File::open(&path)
                        .await
                        .map_err(|e| io_error(&at, e))?,
                ))
            }
        }
    }

    /// What identifies an S3 object's content without reading it: its version id where the
    /// bucket keeps versions, else its ETag. Two reads with the same identity read the same
    /// bytes, which is what makes a re-run of the same input a no-op.
    pub async fn s3_identity(&self, uri: &str) -> Result<String> {
        let at = origin(uri);
        let ObjectUri::S3 { bucket, key } = ObjectUri::parse(uri)? else {
            return Err(ObjectError::InvalidUri {
                at,
                why: "not an s3:// URI",
            });
        };
        let head = self
            .s3_for(&at)?
            .head_object()
            .bucket(&bucket)
            .key(&key)
            .send()
            .await
            .map_err(|e| s3_error(&at, e))?;
        Ok(match (head.version_id(), head.e_tag()) {
            (Some(v), _) if v != "null" => format!("version:{v}"),
            (_, Some(etag)) => format!("etag:{etag}"),
            _ => format!("size:{}", head.content_length().unwrap_or_default()),
        })
    }

    /// Writes an object (report upload, test fixtures).
    pub async fn put(&self, uri: &str, data: Bytes) -> Result<()> {
        let at = origin(uri);
        match ObjectUri::parse(uri)? {
            ObjectUri::S3 { bucket, key } => {
                self.s3_for(&at)?
                    .put_object()
                    .bucket(&bucket)
                    .key(&key)
                    .body(ByteStream::from(data))
                    .send()
                    .await
                    .map_err(|e| s3_error(&at, e))?;
                Ok(())
            }
            ObjectUri::Http(_) => Err(ObjectError::InvalidUri {
                at,
                why: "cannot write to an https URI",
            }),
            ObjectUri::Local(rel) => {
                let path = self.local_path(&rel)?;
                if let Some(dir) = path.parent() {
                    tokio::fs::create_dir_all(dir)
                        .await
                        .map_err(|e| io_error(&at, e))?;
                }
                tokio::fs::write(&path, &data)
                    .await
                    .map_err(|e| io_error(&at, e))
            }
        }
    }

    /// Uploads a local file (a report, a rejects file) without reading it into memory.
    pub async fn put_file(&self, uri: &str, path: &Path) -> Result<()> {
        let at = origin(uri);
        match ObjectUri::parse(uri)? {
            ObjectUri::S3 { bucket, key } => {
                let body = ByteStream::from_path(path)
                    .await
                    .map_err(|_| ObjectError::Io {
                        at: "the local file to upload".into(),
                        kind: std::io::ErrorKind::Other,
                    })?;
                // A large report takes longer than one request's bound to send: the limit
                // grows with its size instead of cutting it off.
                let size = body.size_hint().1.unwrap_or(0);
                let limit = self.timeout + Duration::from_secs(size / MIN_UPLOAD_BYTES_PER_SEC);
                let upload = aws_sdk_s3::config::timeout::TimeoutConfig::builder()
                    .connect_timeout(self.timeout)
                    .disable_read_timeout()
                    .operation_timeout(limit)
                    .build();
                self.s3_for(&at)?
                    .put_object()
                    .bucket(&bucket)
                    .key(&key)
                    .body(body)
                    .customize()
                    .config_override(aws_sdk_s3::config::Builder::new().timeout_config(upload))
                    .send()
                    .await
                    .map_err(|e| s3_error(&at, e))?;
                Ok(())
            }
            _ => Err(ObjectError::InvalidUri {
                at,
                why: "put_file uploads to s3:// only",
            }),
        }
    }

    /// A URL a vendor can download an allowed material from: presigned for `s3://`, valid
    /// for `expires_in`, so the vendor fetches the image without our credentials and
    /// without it passing through us; as given for `https://`.
    pub async fn presign_get(&self, uri: &str, expires_in: Duration) -> Result<String> {
        let Checked { material, source } = self.check_material(uri)?;
        let at = source.as_str();
        match material {
            Material::S3 { bucket, key } => {
                let cfg =
                    PresigningConfig::expires_in(expires_in).map_err(|_| ObjectError::Refused {
                        at: at.into(),
                        detail: "invalid presigning lifetime".into(),
                    })?;
                let req = self
                    .s3_for(at)?
                    .get_object()
                    .bucket(&bucket)
                    .key(&key)
                    .presigned(cfg)
                    .await
                    .map_err(|e| s3_error(at, e))?;
                Ok(req.uri().to_string())
            }
            Material::Url(url) => Ok(url.into()),
            Material::Local(rel) => match &self.local_url_base {
                Some(base) => Ok(format!(
                    "{}/{}",
                    base.trim_end_matches('/'),
                    rel.components()
                        .map(|c| urlencoding_segment(&c.as_os_str().to_string_lossy()))
                        .collect::<Vec<_>>()
                        .join("/")
                )),
                None => Err(ObjectError::InvalidUri {
                    at: at.into(),
                    why: "a local path has no URL a vendor can fetch",
                }),
            },
        }
    }

    /// Lists at most one key under `prefix` of `bucket` (ListObjectsV2, max-keys 1): proves
    /// the bucket exists and this key may read it, without reading any object. `kyc doctor`.
    pub async fn list_one(&self, bucket: &str, prefix: &str) -> Result<()> {
        let at = format!("s3://{bucket}/");
        let client = self.s3_for(&at)?;
        client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .max_keys(1)
            .send()
            .await
            .map_err(|e| s3_error(&at, e))?;
        Ok(())
    }

    /// Creates a bucket if it does not exist (tests, the local demo).
    pub async fn ensure_bucket(&self, bucket: &str) -> Result<()> {
        let at = format!("s3://{bucket}");
        let client = self.s3_for(&at)?;
        if client.head_bucket().bucket(bucket).send().await.is_ok() {
            return Ok(());
        }
        client
            .create_bucket()
            .bucket(bucket)
            .send()
            .await
            .map_err(|e| s3_error(&at, e))?;
        Ok(())
    }
}

/// Every S3 request: `timeout` to connect, and again for the answer to begin (a body that
/// follows is bounded per read by [`stall::StallGuard`]). Not a limit on the whole operation,
/// so that a long upload is not cut off.
fn s3_timeouts(timeout: Duration) -> aws_sdk_s3::config::timeout::TimeoutConfig {
    aws_sdk_s3::config::timeout::TimeoutConfig::builder()
        .connect_timeout(timeout)
        .read_timeout(timeout)
        .build()
}

/// The SDK's own HTTPS client (rustls on aws-lc-rs, like every other connection of ours) with
/// `pem` added to the system's roots. The certificates are checked here, at start-up: the SDK
/// parses them only on its first connection, and panics if they are bad.
fn https_client_trusting(pem: &str) -> Result<aws_sdk_s3::config::SharedHttpClient> {
    use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
    use rustls::pki_types::{pem::PemObject, CertificateDer};

    let bad = |why: String| ObjectError::CaCertificate(why);
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("not PEM: {e}")))?;
    if certs.is_empty() {
        return Err(bad("no PEM certificate found".into()));
    }
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| bad(format!("not a usable CA certificate: {e}")))?;
    }
    let trust = tls::TrustStore::default().with_pem_certificate(pem.as_bytes());
    let context = tls::TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .map_err(|e| bad(e.to_string()))?;
    Ok(aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
        .tls_context(context)
        .build_https())
}

/// Reads a stream to the end, refusing it as soon as it passes [`MAX_OBJECT_BYTES`].
async fn read_limited(
    reader: impl AsyncRead + Unpin,
    at: &str,
    announced: Option<u64>,
) -> Result<Bytes> {
    use tokio::io::AsyncReadExt;
    // Sized from the announced length: grown by doubling instead, a 100 KiB image held a
    // 128 KiB buffer and was copied twice on the way. (`read_to_end` finds the end of a full
    // buffer of its starting size with a small read on the stack, without growing it.) The
    // announcement is only a hint, never trusted past the limit.
    let hint = announced.map_or(0, |n| n.min(MAX_OBJECT_BYTES) as usize);
    let mut body = Vec::with_capacity(hint);
    reader
        .take(MAX_OBJECT_BYTES + 1)
        .read_to_end(&mut body)
        .await
        .map_err(|_| ObjectError::S3 {
            at: at.into(),
            message: "the body could not be read".into(),
        })?;
    if body.len() as u64 > MAX_OBJECT_BYTES {
        return Err(ObjectError::TooLarge {
            at: at.into(),
            size: body.len() as u64,
        });
    }
    Ok(body.into())
}

/// Percent-encodes one path segment (RFC 3986 unreserved characters kept).
fn urlencoding_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_are_classified_by_scheme() {
        assert_eq!(
            ObjectUri::parse("s3://b/k/1.jpg").unwrap(),
            ObjectUri::S3 {
                bucket: "b".into(),
                key: "k/1.jpg".into()
            }
        );
        assert!(matches!(
            ObjectUri::parse("https://x/y").unwrap(),
            ObjectUri::Http(_)
        ));
        assert_eq!(
            ObjectUri::parse("faces/1.jpg").unwrap(),
            ObjectUri::Local("faces/1.jpg".into())
        );
    }

    #[test]
    fn paths_escaping_the_folder_are_refused() {
        assert!(ObjectUri::parse("../etc/passwd").is_err());
        assert!(ObjectUri::parse("/etc/passwd").is_err());
        assert!(ObjectUri::parse("s3://bucket-only").is_err());
        assert!(ObjectUri::parse("ftp://x/y").is_err());
    }

    #[tokio::test]
    async fn unusable_ca_certificates_are_refused_before_any_connection() {
        for (pem, why) in [
            ("", "no PEM certificate"),
            ("not a certificate", "no PEM certificate"),
            (
                "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
                "not a usable CA certificate",
            ),
        ] {
            let err = ObjectStore::s3(Some("https://127.0.0.1:1"), Some(pem), None)
                .await
                .unwrap_err();
            assert!(
                matches!(&err, ObjectError::CaCertificate(m) if m.contains(why)),
                "{pem:?}: {err}"
            );
        }
    }

    #[tokio::test]
    async fn local_objects_round_trip_and_missing_ones_are_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let store = ObjectStore::local(dir.path());
        store
            .put("a/b.jpg", Bytes::from_static(b"jpeg"))
            .await
            .unwrap();
        assert_eq!(
            store.get("a/b.jpg").await.unwrap(),
            Bytes::from_static(b"jpeg")
        );
        assert!(matches!(
            store.get("a/c.jpg").await,
            Err(ObjectError::NotFound { .. })
        ));
        // Not on the allowlist: refused before S3 (absent here) is even asked for.
        assert!(matches!(
            store.get("s3://b/k").await,
            Err(ObjectError::NotAllowed { .. })
        ));
        let store = store.with_material_sources(MaterialSources::parse("s3://b/").unwrap());
        assert!(matches!(
            store.get("s3://b/k").await,
            Err(ObjectError::NoS3 { .. })
        ));
    }
}
