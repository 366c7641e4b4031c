//! The HTTP client that downloads `https://` materials, and the two guards that hold it to
//! the allowlist after the first request has left:
//! - a DNS resolver ([`GuardedResolver`]) that drops every address the policy refuses, so
//!   the address checked is the address connected to (a name that resolves to a public
//!   address for a check and to 169.254.169.254 for the fetch gains nothing);
//! - a redirect policy that follows at most [`MAX_REDIRECTS`] hops, each under the same
//!   allowlist entry as the URL asked for.
//!
//! IP-literal hosts never reach a resolver; [`crate::MaterialSources::check`] judges them.
//! Proxies are off: a proxy would resolve the name itself, out of the resolver's sight.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::address::{AddressClass, AddressPolicy};
use crate::sources::{MaterialSources, NotAllowed};

/// Redirect hops followed before a download is refused.
pub const MAX_REDIRECTS: usize = 3;

/// The resolver found addresses, all of them in classes the policy refuses. Names the
/// class, never the host (it came from a CSV row).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("address not allowed: the name resolves only to {0} addresses")]
pub struct AddressRefused(pub AddressClass);

/// Resolves names with the system resolver (`getaddrinfo` on a blocking thread).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// Wraps a resolver and keeps only the addresses `policy` allows.
#[derive(Clone)]
pub struct GuardedResolver {
    inner: Arc<dyn Resolve>,
    policy: AddressPolicy,
}

impl fmt::Debug for GuardedResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardedResolver")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl GuardedResolver {
    pub fn new(inner: Arc<dyn Resolve>, policy: AddressPolicy) -> Self {
        Self { inner, policy }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let inner = self.inner.resolve(name);
        let policy = self.policy.clone();
        Box::pin(async move {
            let mut refused = None;
            let kept: Vec<SocketAddr> = inner
                .await?
                .filter(|a| match policy.check(a.ip()) {
                    Ok(()) => true,
                    Err(class) => {
                        refused.get_or_insert(class);
                        false
                    }
                })
                .collect();
            match (kept.is_empty(), refused) {
                (true, Some(class)) => Err(Box::new(AddressRefused(class)) as _),
                _ => Ok(Box::new(kept.into_iter()) as Addrs),
            }
        })
    }
}

/// The material download client: guarded resolver, guarded redirects, no proxy.
pub fn client(sources: &Arc<MaterialSources>, dns: Arc<dyn Resolve>) -> reqwest::Client {
    let redirects = sources.clone();
    let policy = reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() > MAX_REDIRECTS {
            return attempt.error(NotAllowed::TooManyRedirects);
        }
        let first = attempt.previous().first().cloned();
        match first.map(|f| redirects.check_redirect(&f, attempt.url())) {
            Some(Ok(())) => attempt.follow(),
            Some(Err(e)) => attempt.error(e),
            None => attempt.error(NotAllowed::NotListed),
        }
    });
    reqwest::Client::builder()
        .dns_resolver(GuardedResolver::new(dns, sources.addresses().clone()))
        .redirect(policy)
        .no_proxy()
        .build()
        .expect("TLS backend initializes")
}

/// The guard's refusal inside a reqwest error, if that is why it failed.
pub(crate) fn refusal(e: &reqwest::Error) -> Option<NotAllowed> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(a) = s.downcast_ref::<AddressRefused>() {
            return Some(NotAllowed::Address(a.0));
        }
        if let Some(n) = s.downcast_ref::<NotAllowed>() {
            return Some(*n);
        }
        source = s.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::net::IpAddr;

    use super::*;

    /// Test names → addresses; nothing is looked up and nothing is dialled.
    struct Fixed(HashMap<&'static str, Vec<IpAddr>>);

    impl Resolve for Fixed {
        fn resolve(&self, name: Name) -> Resolving {
            let addrs: Vec<SocketAddr> = self.0[name.as_str()]
                .iter()
                .map(|ip| SocketAddr::new(*ip, 0))
                .collect();
            Box::pin(async move { Ok(Box::new(addrs.into_iter()) as Addrs) })
        }
    }

    fn resolver(policy: AddressPolicy) -> GuardedResolver {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let map = HashMap::from([
            ("metadata.test", vec![ip("169.254.169.254")]),
            ("private.test", vec![ip("10.0.0.1")]),
            ("cgnat.test", vec![ip("100.64.0.1")]),
            ("mapped.test", vec![ip("::ffff:127.0.0.1")]),
            ("linklocal6.test", vec![ip("fe80::1")]),
            ("ula.test", vec![ip("fd00::1")]),
            ("nat64.test", vec![ip("64:ff9b::a9fe:a9fe")]),
            ("loopback.test", vec![ip("127.0.0.1"), ip("::1")]),
            ("mixed.test", vec![ip("10.0.0.1"), ip("127.0.0.1")]),
        ]);
        GuardedResolver::new(Arc::new(Fixed(map)), policy)
    }

    async fn resolve(r: &GuardedResolver, name: &str) -> Result<Vec<IpAddr>, String> {
        r.resolve(name.parse().unwrap())
            .await
            .map(|a| a.map(|s| s.ip()).collect())
            .map_err(|e| e.to_string())
    }

    #[tokio::test]
    async fn names_of_special_addresses_resolve_to_nothing() {
        let r = resolver(AddressPolicy::default());
        for (name, class) in [
            ("metadata.test", "link-local"),
            ("private.test", "private"),
            ("cgnat.test", "shared"),
            ("mapped.test", "loopback"),
            ("linklocal6.test", "link-local"),
            ("ula.test", "private"),
            ("nat64.test", "link-local"),
            ("loopback.test", "loopback"),
        ] {
            let e = resolve(&r, name).await.unwrap_err();
            assert_eq!(
                e,
                format!("address not allowed: the name resolves only to {class} addresses"),
                "{name}"
            );
        }
    }

    #[tokio::test]
    async fn allowed_classes_pass_and_refused_addresses_are_dropped_from_a_mix() {
        let r = resolver(AddressPolicy::allowing(&[AddressClass::Loopback]));
        assert_eq!(
            resolve(&r, "mixed.test").await.unwrap(),
            ["127.0.0.1".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(resolve(&r, "loopback.test").await.unwrap().len(), 2);
        assert!(resolve(&r, "metadata.test").await.is_err());
    }
}
