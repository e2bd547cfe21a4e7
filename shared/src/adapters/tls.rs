//! One TLS root store per process, loaded once, shared by every HTTP client in it: the ticket-system client,
//! the provisioner client, the notification channels' client (all three built by [`outbound_client`]) and
//! (with the feature `aws`) the AWS SDK's.
//!
//! Each client loading the system's trusted roots on its own reads every file of the certificate store once
//! per client (three times before the first event of a Lambda function, about 440 file opens on Debian). The
//! roots are read here the first time a client is built and reused by the others; each SDK configuration gets
//! one HTTP client, shared by the SDK clients built from it.

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

/// The outbound HTTP client every adapter calling a server of the operator's or a vendor's builds: never
/// follows a redirect (a request carries a credential, in a header or in the URL itself), names Ticketbound in
/// `User-Agent`, and trusts the process's one root store. With `timeout`, every call is bounded by it and
/// connecting by at most 5 s of it; without, each request sets its own.
pub fn outbound_client(timeout: Option<std::time::Duration>) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
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
}
