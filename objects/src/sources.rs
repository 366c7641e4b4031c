//! Where materials may come from: the allowlist (`KYC_MATERIAL_SOURCES`), parsed once into
//! [`MaterialSources`], and the check every material URI passes before anything reads it
//! (the producer when it validates a row, the worker again before it fetches).
//!
//! Matching is on normalised locations, never on raw text: schemes and hosts compared
//! case-insensitively, default ports filled in, paths split into percent-decoded segments
//! and compared segment by segment, so `https://h/faces-evil/x` is not under
//! `https://h/faces/`. A location with a `.` or `..` segment (also percent-encoded), an
//! encoded `/` or `\` inside a segment, or user info (`https://allowed@evil/`) is refused
//! outright rather than normalised: a server may resolve it differently than we would.
//! Query strings and fragments are not part of the match, and no error repeats them.

use std::fmt;
use std::path::{Component, PathBuf};

use url::{Host, Url};

use crate::address::{AddressClass, AddressPolicy};

/// One allowlist entry: an S3 bucket and key prefix, or a URL scheme, host, port and path
/// prefix. Its `Display` is the canonical form (safe to log: it is configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedSource {
    S3 {
        bucket: String,
        /// Empty (the whole bucket) or ending in `/`.
        prefix: String,
    },
    Url {
        /// `https`, or `http` when the entry says so.
        scheme: String,
        host: Host<String>,
        port: u16,
        /// Decoded path segments of the prefix (a folder: the object is below it).
        prefix: Vec<String>,
    },
}

/// Why an allowlist entry could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("material source {entry:?}: {why}")]
pub struct SourceError {
    pub entry: String,
    pub why: &'static str,
}

/// Why a material location is refused. Carries no part of the location itself: the
/// caller names it by column and by [`origin`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotAllowed {
    #[error("not an allowed material source")]
    NotListed,
    #[error("not an allowed material source (http is allowed only where a source says http://)")]
    PlainHttp,
    #[error("not an allowed material source (user info in the URL)")]
    UserInfo,
    #[error("not an allowed material source ('.' or '..' segment, or an encoded '/' or '\\')")]
    DotSegment,
    #[error("not an allowed material source (the address is {0})")]
    Address(AddressClass),
    #[error("not an allowed material source (too many redirects)")]
    TooManyRedirects,
    #[error("not an allowed material source (not a valid s3://, https:// URI or relative path)")]
    Malformed,
}

/// A material location that passed the allowlist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Material {
    S3 {
        bucket: String,
        key: String,
    },
    Url(Url),
    /// Relative to the local image folder (whoever reads it must have one).
    Local(PathBuf),
}

/// A checked material and the source that allowed it (shown in errors instead of the
/// location, which could hold an ID number or a signature).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub material: Material,
    pub source: String,
}

/// The allowlist: entries, plus the non-public address classes fetches may reach.
/// Relative paths are always allowed by the list: they can only name files under the
/// worker's own image folder (`--images`), and without one they cannot be read at all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MaterialSources {
    entries: Vec<AllowedSource>,
    addresses: AddressPolicy,
}

/// What the errors show of a location: its scheme and host (or bucket), never its path,
/// query or user info.
pub fn origin(uri: &str) -> String {
    let uri = uri.trim();
    let Some((scheme, rest)) = uri.split_once("://") else {
        return "the local image folder".into();
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    let scheme = scheme.to_ascii_lowercase();
    let clean = |s: &str| {
        s.chars()
            .filter(|c| c.is_ascii_alphanumeric() || "-._:[]".contains(*c))
            .take(80)
            .collect::<String>()
    };
    format!("{}://{}", clean(&scheme), clean(host))
}

impl AllowedSource {
    /// Parses `s3://bucket/prefix/`, `https://host[:port]/prefix/` or `http://host:port/prefix/`.
    pub fn parse(entry: &str) -> Result<Self, SourceError> {
        let e = entry.trim();
        let err = |why| SourceError {
            entry: e.to_string(),
            why,
        };
        if let Some(rest) = strip_prefix_ci(e, "s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty()
                || !bucket
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
            {
                return Err(err(
                    "an S3 source is s3://bucket/prefix/ with a valid bucket name",
                ));
            }
            if prefix.contains(['?', '#']) || has_dot_segment(prefix) {
                return Err(err(
                    "a prefix may not hold '.', '..', encoded separators, '?' or '#'",
                ));
            }
            let prefix = if prefix.is_empty() || prefix.ends_with('/') {
                prefix.to_string()
            } else {
                format!("{prefix}/")
            };
            return Ok(AllowedSource::S3 {
                bucket: bucket.to_string(),
                prefix,
            });
        }
        let url = Url::parse(e).map_err(|_| {
            err("expected s3://bucket/prefix/, https://host[:port]/prefix/ or http://host:port/prefix/")
        })?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err(err(
                "expected s3://bucket/prefix/, https://host[:port]/prefix/ or http://host:port/prefix/",
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(err("a source may not carry user info"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(err("a source may not carry a query or a fragment"));
        }
        if has_dot_segment(raw_path(e)) {
            return Err(err("a prefix may not hold '.', '..' or encoded separators"));
        }
        let (host, port) = match (url.host(), url.port_or_known_default()) {
            (Some(h), Some(p)) => (h.to_owned(), p),
            _ => return Err(err("a URL source needs a host")),
        };
        let mut prefix = decoded_segments(&url).ok_or_else(|| err("invalid path"))?;
        if prefix.last().is_some_and(String::is_empty) {
            prefix.pop();
        }
        Ok(AllowedSource::Url {
            scheme: url.scheme().to_string(),
            host,
            port,
            prefix,
        })
    }

    /// Whether a normalised location is below this entry.
    fn covers(&self, m: &Material) -> bool {
        match (self, m) {
            (
                AllowedSource::S3 { bucket, prefix },
                Material::S3 {
                    bucket: b, key: k, ..
                },
            ) => bucket == b && k.len() > prefix.len() && k.starts_with(prefix.as_str()),
            (
                AllowedSource::Url {
                    scheme,
                    host,
                    port,
                    prefix,
                },
                Material::Url(url),
            ) => {
                let Some(segments) = decoded_segments(url) else {
                    return false;
                };
                url.scheme() == scheme
                    && url.host().map(|h| h.to_owned()).as_ref() == Some(host)
                    && url.port_or_known_default() == Some(*port)
                    && segments.len() > prefix.len()
                    && segments.starts_with(prefix)
                    && segments.last().is_some_and(|s| !s.is_empty())
            }
            _ => false,
        }
    }
}

impl fmt::Display for AllowedSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllowedSource::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
            AllowedSource::Url {
                scheme,
                host,
                port,
                prefix,
            } => {
                write!(f, "{scheme}://{host}:{port}/")?;
                for s in prefix {
                    write!(f, "{}/", percent_encoding::utf8_percent_encode(s, SEGMENT))?;
                }
                Ok(())
            }
        }
    }
}

/// Characters escaped when a prefix segment is shown again.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'?')
    .add(b'\\');

impl MaterialSources {
    /// Parses a comma-separated allowlist; empty entries are ignored.
    pub fn parse(list: &str) -> Result<Self, SourceError> {
        let entries = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(AllowedSource::parse)
            .collect::<Result<_, _>>()?;
        Ok(Self {
            entries,
            addresses: AddressPolicy::default(),
        })
    }

    /// Adds the `--images` location when it is an `s3://` prefix (a local folder needs no
    /// entry: relative paths are always confined to it).
    pub fn with_images(mut self, images: Option<&str>) -> Result<Self, SourceError> {
        if let Some(base) = images.filter(|i| i.contains("://")) {
            let entry = AllowedSource::parse(base)?;
            if !self.entries.contains(&entry) {
                self.entries.push(entry);
            }
        }
        Ok(self)
    }

    /// Sets which non-public address classes fetches may reach.
    pub fn with_addresses(mut self, addresses: AddressPolicy) -> Self {
        self.addresses = addresses;
        self
    }

    pub fn entries(&self) -> &[AllowedSource] {
        &self.entries
    }

    pub fn addresses(&self) -> &AddressPolicy {
        &self.addresses
    }

    /// Checks one material URI: syntax, normalisation, the list and (for IP-literal hosts,
    /// which no resolver sees) the address policy.
    pub fn check(&self, uri: &str) -> Result<Checked, NotAllowed> {
        let uri = uri.trim();
        if uri.is_empty() {
            return Err(NotAllowed::Malformed);
        }
        let material = normalise(uri)?;
        if let Material::Local(_) = material {
            return Ok(Checked {
                material,
                source: "the local image folder".into(),
            });
        }
        let entry = self
            .entries
            .iter()
            .find(|e| e.covers(&material))
            .ok_or_else(|| match &material {
                Material::Url(u)
                    if u.scheme() == "http"
                        && self.entries.iter().any(|e| {
                            let mut https = u.clone();
                            https.set_scheme("https").is_ok()
                                && https.set_port(None).is_ok()
                                && e.covers(&Material::Url(https))
                        }) =>
                {
                    NotAllowed::PlainHttp
                }
                _ => NotAllowed::NotListed,
            })?;
        if let Material::Url(url) = &material {
            let ip = match url.host() {
                Some(Host::Ipv4(ip)) => Some(std::net::IpAddr::V4(ip)),
                Some(Host::Ipv6(ip)) => Some(std::net::IpAddr::V6(ip)),
                _ => None,
            };
            if let Some(ip) = ip {
                self.addresses.check(ip).map_err(NotAllowed::Address)?;
            }
        }
        Ok(Checked {
            source: entry.to_string(),
            material,
        })
    }

    /// A redirect from `first` (the URL originally asked for) to `next` is followed only if
    /// `next` passes [`MaterialSources::check`] under the same entry: it never leaves the
    /// prefix, host, port or scheme the original was allowed by.
    pub fn check_redirect(&self, first: &Url, next: &Url) -> Result<(), NotAllowed> {
        let from = self.check(first.as_str())?;
        let to = self.check(next.as_str())?;
        if from.source == to.source {
            Ok(())
        } else {
            Err(NotAllowed::NotListed)
        }
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    (s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix))
        .then(|| &s[prefix.len()..])
}

/// Parses and normalises a material URI, refusing the forms a server could read
/// differently from us.
fn normalise(uri: &str) -> Result<Material, NotAllowed> {
    if let Some(rest) = strip_prefix_ci(uri, "s3://") {
        let (bucket, key) = rest.split_once('/').ok_or(NotAllowed::Malformed)?;
        if bucket.is_empty() || key.is_empty() || key.ends_with('/') {
            return Err(NotAllowed::Malformed);
        }
        if has_dot_segment(key) {
            return Err(NotAllowed::DotSegment);
        }
        return Ok(Material::S3 {
            bucket: bucket.to_string(),
            key: key.to_string(),
        });
    }
    if strip_prefix_ci(uri, "https://").is_some() || strip_prefix_ci(uri, "http://").is_some() {
        // Before parsing: the parser would resolve `..` itself, hiding what was asked for.
        if has_dot_segment(raw_path(uri)) {
            return Err(NotAllowed::DotSegment);
        }
        let url = Url::parse(uri).map_err(|_| NotAllowed::Malformed)?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(NotAllowed::UserInfo);
        }
        if url.host().is_none() {
            return Err(NotAllowed::Malformed);
        }
        decoded_segments(&url).ok_or(NotAllowed::DotSegment)?;
        return Ok(Material::Url(url));
    }
    if uri.contains("://") || uri.contains('\\') {
        return Err(NotAllowed::Malformed);
    }
    let path = PathBuf::from(uri);
    if has_dot_segment(uri)
        || path
            .components()
            .any(|c| !matches!(c, Component::Normal(_)))
    {
        return Err(NotAllowed::DotSegment);
    }
    Ok(Material::Local(path))
}

/// The path part of a raw `scheme://authority/path?query#fragment` string, or `""`.
fn raw_path(uri: &str) -> &str {
    let rest = uri.split_once("://").map_or(uri, |(_, r)| r);
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    rest.find(['/', '\\']).map_or("", |i| &rest[i..])
}

/// Whether any segment is `.` or `..` (raw or percent-decoded, either slash), or decodes to
/// something holding a separator or a NUL.
fn has_dot_segment(path: &str) -> bool {
    path.split(['/', '\\']).any(|seg| {
        let decoded = percent_encoding::percent_decode_str(seg).decode_utf8_lossy();
        matches!(seg, "." | "..")
            || matches!(decoded.as_ref(), "." | "..")
            || decoded.contains(['/', '\\', '\0'])
    })
}

/// The URL's path as decoded segments; `None` if a segment decodes to a separator or a dot.
fn decoded_segments(url: &Url) -> Option<Vec<String>> {
    url.path_segments()?
        .map(|seg| {
            let d = percent_encoding::percent_decode_str(seg)
                .decode_utf8()
                .ok()?
                .into_owned();
            (!matches!(d.as_str(), "." | "..") && !d.contains(['/', '\\', '\0'])).then_some(d)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(list: &str) -> MaterialSources {
        MaterialSources::parse(list).unwrap()
    }

    #[test]
    fn entries_parse_into_canonical_forms() {
        let s = sources(
            "s3://imgs/faces, S3://imgs2/, https://Img.Example.COM/kyc/faces/, http://127.0.0.1:8080/a%20b",
        );
        let shown: Vec<String> = s.entries().iter().map(|e| e.to_string()).collect();
        assert_eq!(
            shown,
            [
                "s3://imgs/faces/",
                "s3://imgs2/",
                "https://img.example.com:443/kyc/faces/",
                "http://127.0.0.1:8080/a%20b/"
            ]
        );
    }

    #[test]
    fn bad_entries_are_refused_with_the_entry_named() {
        for bad in [
            "ftp://x/y/",
            "s3:///prefix/",
            "s3://b/../x/",
            "https://user@host/p/",
            "https://host/p/?sig=1",
            "https://host/a/%2e%2e/b/",
            "faces/",
        ] {
            let e = MaterialSources::parse(bad).unwrap_err();
            assert_eq!(e.entry, bad);
        }
    }

    #[test]
    fn objects_below_an_entry_are_allowed_and_name_the_entry() {
        let s = sources("s3://imgs/faces/,https://img.example.com/kyc/");
        let c = s.check("s3://imgs/faces/2026/1.jpg").unwrap();
        assert_eq!(c.source, "s3://imgs/faces/");
        let c = s
            .check("HTTPS://IMG.example.com:443/kyc/1.jpg?X-Amz-Signature=abc#f")
            .unwrap();
        assert_eq!(c.source, "https://img.example.com:443/kyc/");
        assert!(s.check("https://img.example.com/kyc/%61.jpg").is_ok());
        assert!(matches!(
            s.check("faces/1.jpg").unwrap().material,
            Material::Local(_)
        ));
    }

    #[test]
    fn everything_else_is_refused() {
        let s = sources("s3://imgs/faces/,https://img.example.com/kyc/");
        use NotAllowed::*;
        for (uri, why) in [
            ("s3://other/faces/1.jpg", NotListed),
            ("s3://imgs/facesX/1.jpg", NotListed),
            ("s3://imgs/faces/", Malformed),
            ("s3://imgs/faces/../secret.jpg", DotSegment),
            ("s3://imgs/faces/%2e%2e/secret.jpg", DotSegment),
            ("https://img.example.com/kyc-evil/1.jpg", NotListed),
            ("https://img.example.com/kyc/../admin", DotSegment),
            ("https://img.example.com/kyc/%2E%2e/admin", DotSegment),
            ("https://img.example.com/kyc/.%2e/admin", DotSegment),
            ("https://img.example.com/kyc/a%2f..%2fadmin", DotSegment),
            ("https://img.example.com/kyc/a%5c..%5cadmin", DotSegment),
            ("https://img.example.com/kyc\\..\\admin", DotSegment),
            ("https://img.example.com@evil.example/kyc/1.jpg", UserInfo),
            ("https://u:p@img.example.com/kyc/1.jpg", UserInfo),
            ("https://img.example.com:8443/kyc/1.jpg", NotListed),
            ("https://img.example.com.evil.example/kyc/1.jpg", NotListed),
            ("http://img.example.com/kyc/1.jpg", PlainHttp),
            ("https://169.254.169.254/latest/meta-data/", NotListed),
            ("https://img.example.com/kyc/", NotListed),
            ("../etc/passwd", DotSegment),
            ("/etc/passwd", DotSegment),
            ("faces/./1.jpg", DotSegment),
            ("file:///etc/passwd", Malformed),
            ("gopher://x/y", Malformed),
            ("", Malformed),
        ] {
            assert_eq!(s.check(uri).map(|_| ()), Err(why), "{uri}");
        }
    }

    #[test]
    fn ip_literal_hosts_meet_the_address_policy() {
        let list = "http://127.0.0.1:9000/m/,https://[::ffff:a9fe:a9fe]/m/,https://10.0.0.1/m/";
        let strict = sources(list);
        assert_eq!(
            strict.check("http://127.0.0.1:9000/m/1.jpg").map(|_| ()),
            Err(NotAllowed::Address(AddressClass::Loopback))
        );
        assert_eq!(
            strict
                .check("https://[::ffff:169.254.169.254]/m/1")
                .map(|_| ()),
            Err(NotAllowed::Address(AddressClass::LinkLocal))
        );
        assert_eq!(
            strict.check("https://10.0.0.1/m/1").map(|_| ()),
            Err(NotAllowed::Address(AddressClass::Private))
        );
        let loopback =
            sources(list).with_addresses(AddressPolicy::allowing(&[AddressClass::Loopback]));
        assert!(loopback.check("http://127.0.0.1:9000/m/1.jpg").is_ok());
        assert!(loopback.check("https://10.0.0.1/m/1").is_err());
    }

    #[test]
    fn redirects_stay_under_the_entry_that_allowed_the_first_url() {
        let s = sources("https://a.example/m/,https://b.example/m/");
        let u = |s: &str| Url::parse(s).unwrap();
        assert!(s
            .check_redirect(&u("https://a.example/m/1"), &u("https://a.example/m/2?x=1"))
            .is_ok());
        assert!(s
            .check_redirect(&u("https://a.example/m/1"), &u("https://b.example/m/1"))
            .is_err());
        assert!(s
            .check_redirect(&u("https://a.example/m/1"), &u("https://a.example/other"))
            .is_err());
    }

    #[test]
    fn the_images_prefix_joins_the_list_and_origins_hide_paths_and_queries() {
        let s = MaterialSources::default()
            .with_images(Some("s3://imgs/nightly/"))
            .unwrap();
        assert!(s.check("s3://imgs/nightly/1.jpg").is_ok());
        assert!(s.check("s3://imgs/other/1.jpg").is_err());
        assert_eq!(
            origin("https://user:pw@Evil.example:8080/110105194912310021.jpg?X-Amz-Signature=s"),
            "https://Evil.example:8080"
        );
        assert_eq!(origin("s3://bucket/110105194912310021.jpg"), "s3://bucket");
        assert_eq!(
            origin("faces/110105194912310021.jpg"),
            "the local image folder"
        );
    }
}
