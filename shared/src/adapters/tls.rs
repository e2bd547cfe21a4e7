//! One TLS root store per process, loaded once, shared by every HTTP client in it: the ticket-system client,
//! the provisioner client, the notification channels' client (all three built by [`outbound_client`]) and
//! (with the feature `aws`) the AWS SDK's.
//!
//! Each client loading the system's trusted roots on its own reads every file of the certificate store once
//! per client (three times before the first event of a Lambda function, about 440 file opens on Debian). The
//! roots are read here the first time a client is built and reused by the others; each SDK configuration gets
//! one HTTP client, shared by the SDK clients built from it.
//!
//! The outbound client also resolves host names itself ([`PolicyResolver`]): a name is resolved, and the call
//! is refused before any connection when one of its addresses is one the outbound URL policy refuses
//! (`domain::url_policy::refused_address`: link-local and cloud metadata, unspecified, multicast, broadcast, in
//! any IPv6 spelling). The policy judges a URL when it is configured; this judges what its name means when it
//! is called, so a name pointed at 169.254.169.254 receives no token and no signed call.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;

/// The system's trusted roots could not give a usable store.
#[derive(Debug, Clone, thiserror::Error)]
#[error("no usable trusted root certificate in the system's store ({0})")]
pub struct TlsRootsError(String);

/// The trusted roots: the DER of each system root that parses as a trust anchor, and the store built from them.
struct Roots {
    // Read by the AWS SDK's client only.
    #[cfg_attr(not(feature = "aws"), allow(dead_code))]
    ders: Vec<CertificateDer<'static>>,
    config: Arc<rustls::ClientConfig>,
}

fn load() -> Result<Roots, TlsRootsError> {
    let found = rustls_native_certs::load_native_certs();
    let mut store = RootCertStore::empty();
    let mut ders = Vec::with_capacity(found.certs.len());
    for cert in found.certs {
        // Only what parses as a trust anchor: the AWS SDK's store panics on one that does not.
        if store.add(cert.clone()).is_ok() {
            ders.push(cert);
        }
    }
    if store.is_empty() {
        let errors: Vec<String> = found.errors.iter().map(ToString::to_string).collect();
        return Err(TlsRootsError(errors.join("; ")));
    }
    // The same cryptography the HTTP stack is built with (reqwest's `rustls` feature and the SDK both use
    // aws-lc-rs), named explicitly so two linked providers never make the process default ambiguous.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsRootsError(e.to_string()))?
        .with_root_certificates(store)
        .with_no_client_auth();
    Ok(Roots {
        ders,
        config: Arc::new(config),
    })
}

fn roots() -> Result<&'static Roots, TlsRootsError> {
    static ROOTS: OnceLock<Result<Roots, TlsRootsError>> = OnceLock::new();
    ROOTS.get_or_init(load).as_ref().map_err(Clone::clone)
}

/// The rustls configuration every reqwest client of the process uses (`tls_backend_preconfigured`): the
/// system roots, read once.
pub fn client_config() -> Result<rustls::ClientConfig, TlsRootsError> {
    Ok(roots()?.config.as_ref().clone())
}

/// A host name resolved to an address Ticketbound never calls. Permanent: the call is not retried, and nothing
/// was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{host}` resolves to {address}, a link-local, cloud metadata, unspecified, multicast or broadcast address, which is refused"
)]
pub struct RefusedAddress {
    pub host: String,
    pub address: IpAddr,
}

/// The policy refusal behind a failed call, if that is why it failed: callers report it as permanent (a wrong
/// URL or DNS record to fix), not as a ticket system or provisioner that is down for a while.
pub fn refused_address(error: &reqwest::Error) -> Option<&RefusedAddress> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(refused) = e.downcast_ref::<RefusedAddress>() {
            return Some(refused);
        }
        source = e.source();
    }
    None
}

type LookupFuture = Pin<Box<dyn Future<Output = std::io::Result<Vec<SocketAddr>>> + Send>>;

/// How a host name becomes addresses: the system's resolver in production; tests inject a fixed answer.
pub type Lookup = Arc<dyn Fn(String) -> LookupFuture + Send + Sync>;

fn system_lookup() -> Lookup {
    Arc::new(|host: String| {
        Box::pin(async move {
            // Port 0: the connector sets the URL's port on each address.
            Ok(tokio::net::lookup_host((host.as_str(), 0)).await?.collect())
        })
    })
}

/// The outbound client's DNS resolver: resolves through its [`Lookup`], then refuses the whole name when any of
/// its addresses is refused (not just skipping that one: a name answering both a public and a metadata address
/// is not one to trust), so the connector never sees a refused address. An IP literal does not come here (the
/// connector uses it as is); literals are judged when the URL is configured.
pub struct PolicyResolver {
    lookup: Lookup,
}

impl PolicyResolver {
    pub fn new(lookup: Lookup) -> Self {
        Self { lookup }
    }
}

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        let lookup = Arc::clone(&self.lookup);
        Box::pin(async move {
            let addresses = lookup(host.clone()).await?;
            if let Some(refused) = addresses
                .iter()
                .find(|a| crate::domain::url_policy::refused_address(a.ip()))
            {
                tracing::warn!(%host, address = %refused.ip(), "outbound call refused: the name resolves to a refused address");
                return Err(Box::new(RefusedAddress {
                    host,
                    address: refused.ip(),
                })
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            let addresses: reqwest::dns::Addrs = Box::new(addresses.into_iter());
            Ok(addresses)
        })
    }
}

/// The outbound HTTP client every adapter calling a server of the operator's or a vendor's builds: never
/// follows a redirect (a request carries a credential, in a header or in the URL itself), names Ticketbound in
/// `User-Agent`, trusts the process's one root store, and resolves names through [`PolicyResolver`]. With
/// `timeout`, every call is bounded by it and connecting by at most 5 s of it; without, each request sets its
/// own.
pub fn outbound_client(timeout: Option<std::time::Duration>) -> Result<reqwest::Client, String> {
    outbound_client_resolving(timeout, system_lookup())
}

/// [`outbound_client`] with the name lookup given: what tests use to point a name at an address.
pub fn outbound_client_resolving(
    timeout: Option<std::time::Duration>,
    lookup: Lookup,
) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .dns_resolver(Arc::new(PolicyResolver::new(lookup)))
        .user_agent(concat!("ticketbound/", env!("CARGO_PKG_VERSION")))
        .tls_backend_preconfigured(client_config().map_err(|e| e.to_string())?);
    if let Some(timeout) = timeout {
        builder = builder
            .timeout(timeout)
            .connect_timeout(timeout.min(std::time::Duration::from_secs(5)));
    }
    builder
        .build()
        .map_err(|e| format!("building the HTTP client: {e}"))
}

/// An HTTP client for the AWS SDK over the same roots. Build one per SDK configuration and share it with every
/// SDK client made from it (DynamoDB, Scheduler, Secrets Manager) and the SDK's own credential providers. Not
/// one per process: its connection pool belongs to the Tokio runtime that first uses it, and a process may run
/// several runtimes (every `#[tokio::test]` has its own).
#[cfg(feature = "aws")]
pub fn aws_http_client() -> Result<aws_sdk_dynamodb::config::SharedHttpClient, TlsRootsError> {
    use aws_smithy_http_client::tls::{self, TlsContext, TrustStore, rustls_provider::CryptoMode};
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;

    static CONTEXT: OnceLock<Result<TlsContext, TlsRootsError>> = OnceLock::new();
    let context = CONTEXT
        .get_or_init(|| {
            // The SDK takes extra roots as PEM only; "native roots" off, so it does not read the store again.
            let mut pem = String::new();
            for der in &roots()?.ders {
                pem.push_str("-----BEGIN CERTIFICATE-----\n");
                for line in STANDARD.encode(der).as_bytes().chunks(64) {
                    pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
                    pem.push('\n');
                }
                pem.push_str("-----END CERTIFICATE-----\n");
            }
            TlsContext::builder()
                .with_trust_store(
                    TrustStore::empty()
                        .with_native_roots(false)
                        .with_pem_certificate(pem),
                )
                .build()
                .map_err(|e| TlsRootsError(e.to_string()))
        })
        .clone()?;
    Ok(aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
        .tls_context(context)
        .build_https())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_client_gets_the_same_roots_read_once() {
        let first = roots().expect("this machine has trusted roots");
        let second = roots().expect("cached");

        assert!(
            std::ptr::eq(first, second),
            "the store is read once per process"
        );
        assert!(!first.ders.is_empty());
        assert!(client_config().is_ok());
    }

    fn answering(addresses: &'static [&'static str]) -> Lookup {
        Arc::new(move |_host| {
            Box::pin(async move {
                Ok(addresses
                    .iter()
                    .map(|a| SocketAddr::new(a.parse().unwrap(), 0))
                    .collect())
            })
        })
    }

    async fn resolve(lookup: Lookup, host: &str) -> Result<Vec<SocketAddr>, String> {
        use reqwest::dns::Resolve;
        let name: reqwest::dns::Name = host.parse().expect("a host name");
        PolicyResolver::new(lookup)
            .resolve(name)
            .await
            .map(Iterator::collect)
            .map_err(|e| e.to_string())
    }

    #[tokio::test]
    async fn a_name_resolving_to_a_refused_address_in_any_spelling_is_refused() {
        for answer in [
            &["169.254.169.254"][..],
            &["::ffff:169.254.169.254"],
            &["::a9fe:a9fe"],
            &["64:ff9b::a9fe:a9fe"],
            &["fd00:ec2::254"],
            &["0.0.0.0"],
            &["224.0.0.251"],
            // One refused address among good ones refuses the name.
            &["93.184.216.34", "169.254.169.254"],
        ] {
            let refused = resolve(answering(answer), "tickets.example.com")
                .await
                .expect_err("refused");
            assert!(
                refused.contains("`tickets.example.com` resolves to"),
                "{answer:?}: {refused}"
            );
        }
    }

    #[tokio::test]
    async fn a_name_resolving_to_public_private_or_loopback_addresses_resolves() {
        for answer in [
            &["93.184.216.34"][..],
            &["10.1.2.3", "fd12::1"],
            &["127.0.0.1", "::1"],
        ] {
            let resolved = resolve(answering(answer), "tickets.example.com")
                .await
                .expect("allowed");
            assert_eq!(resolved.len(), answer.len());
        }
    }

    #[tokio::test]
    async fn the_outbound_client_refuses_before_connecting_and_says_why() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                drop(stream);
            }
        });
        let url = format!("http://tickets.example.com:{port}/rest/api/3/myself");

        // The loopback answer reaches the listener: the resolver is the one the client uses.
        let good = outbound_client_resolving(None, answering(&["127.0.0.1"])).unwrap();
        let reached = good.get(&url).send().await;
        assert!(reached.is_err(), "the listener closes without answering");
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);

        let bad =
            outbound_client_resolving(None, answering(&["127.0.0.1", "::ffff:169.254.169.254"]))
                .unwrap();
        let error = bad
            .get(&url)
            .header("authorization", "Bearer secret")
            .send()
            .await
            .expect_err("refused");
        let refused = refused_address(&error).expect("the policy refusal is findable");
        assert_eq!(refused.host, "tickets.example.com");
        assert_eq!(
            refused.address,
            "::ffff:169.254.169.254".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            accepted.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "nothing was sent"
        );
    }
}
