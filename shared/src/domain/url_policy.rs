//! Which outbound URLs an admin may configure (DESIGN §6): `https://` anywhere, plain `http://` only to a
//! loopback host, and never a link-local or cloud metadata address.
//!
//! This checks the URL as written. A public name that resolves to a metadata address at call time is not caught
//! here; the Lambda functions run outside a VPC by default, where that address answers nothing of ours.

use std::net::{IpAddr, Ipv6Addr};
use url::{Host, Url};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlPolicyError {
    #[error("`{0}` is not a valid absolute URL")]
    Invalid(String),
    #[error(
        "`{0}` must use https:// (plain http:// is allowed only to a loopback host such as 127.0.0.1)"
    )]
    NotHttps(String),
    #[error("`{0}` points at a link-local or cloud metadata address, which is refused")]
    Forbidden(String),
    #[error("`{0}` must not carry a username or password; credentials go in their own fields")]
    Credentials(String),
}

const EC2_METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);

/// Checks `raw` and returns it parsed.
pub fn check_outbound_url(raw: &str) -> Result<Url, UrlPolicyError> {
    let url = Url::parse(raw).map_err(|_| UrlPolicyError::Invalid(raw.to_owned()))?;
    let host = url
        .host()
        .ok_or_else(|| UrlPolicyError::Invalid(raw.to_owned()))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlPolicyError::Credentials(raw.to_owned()));
    }
    let ip = match &host {
        Host::Ipv4(v4) => Some(IpAddr::V4(*v4)),
        Host::Ipv6(v6) => Some(IpAddr::V6(*v6)),
        Host::Domain(_) => None,
    };
    if let Some(ip) = ip {
        let forbidden = match ip {
            IpAddr::V4(v4) => v4.is_link_local(),
            IpAddr::V6(v6) => v6 == EC2_METADATA_V6 || (v6.segments()[0] & 0xffc0) == 0xfe80,
        };
        if forbidden {
            return Err(UrlPolicyError::Forbidden(raw.to_owned()));
        }
    }
    let loopback = match &host {
        Host::Domain(name) => name.eq_ignore_ascii_case("localhost"),
        _ => ip.is_some_and(|ip| ip.is_loopback()),
    };
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        _ => Err(UrlPolicyError::NotHttps(raw.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_anywhere_and_http_to_loopback_are_allowed() {
        assert!(check_outbound_url("https://acme.atlassian.net").is_ok());
        assert!(check_outbound_url("http://127.0.0.1:9000/hook").is_ok());
        assert!(check_outbound_url("http://localhost:9000/hook").is_ok());
        assert!(check_outbound_url("http://[::1]:9000/hook").is_ok());
    }

    #[test]
    fn plain_http_elsewhere_is_refused() {
        assert!(matches!(
            check_outbound_url("http://example.com/hook"),
            Err(UrlPolicyError::NotHttps(_))
        ));
        assert!(matches!(
            check_outbound_url("ftp://example.com/"),
            Err(UrlPolicyError::NotHttps(_))
        ));
    }

    #[test]
    fn metadata_and_link_local_addresses_are_refused() {
        for raw in [
            "http://169.254.169.254/latest",
            "https://169.254.10.1/",
            "https://[fd00:ec2::254]/",
            "https://[fe80::1]/",
        ] {
            assert!(
                matches!(check_outbound_url(raw), Err(UrlPolicyError::Forbidden(_))),
                "{raw}"
            );
        }
    }

    #[test]
    fn junk_and_embedded_credentials_are_refused() {
        assert!(matches!(
            check_outbound_url("not a url"),
            Err(UrlPolicyError::Invalid(_))
        ));
        assert!(matches!(
            check_outbound_url("https://u:p@example.com/"),
            Err(UrlPolicyError::Credentials(_))
        ));
    }
}
