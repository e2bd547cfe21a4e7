//! Which outbound URLs an admin may configure (DESIGN §6), and which addresses Ticketbound never calls.
//!
//! A URL must be `https://`, or plain `http://` to a loopback host (`localhost`, 127.0.0.0/8, `::1`: tests and
//! local proxies), and carry no credentials. Whatever the scheme, an address in one of these is refused
//! ([`refused_address`]):
//!
//! - link-local: 169.254.0.0/16 (where the cloud metadata services answer: 169.254.169.254, ECS's
//!   169.254.170.2) and fe80::/10;
//! - other cloud metadata addresses: `fd00:ec2::254` (EC2 over IPv6) and 100.100.100.200 (Alibaba Cloud);
//! - unspecified: 0.0.0.0/8 and `::` (a connection to 0.0.0.0 reaches the machine itself on Linux);
//! - multicast and broadcast: 224.0.0.0/4, 255.255.255.255 and ff00::/8.
//!
//! An IPv6 address that carries an IPv4 one is judged as that IPv4 address ([`canonical_ip`]): IPv4-mapped
//! (`::ffff:169.254.169.254`), IPv4-compatible (`::a9fe:a9fe`) and the NAT64 prefixes `64:ff9b::/96` and
//! `64:ff9b:1::/48`, so no spelling of a refused address passes. Private ranges (10.0.0.0/8, fc00::/7, …) are
//! allowed: an operator's ticket system or provisioner may well live there.
//!
//! This judges the URL as written. A host *name* is judged again where it is called: the one outbound HTTP
//! client resolves it and refuses to connect when any of its addresses is refused
//! (`adapters::tls::outbound_client`), so a name that resolves to a metadata address is caught too.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use url::{Host, Url};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlPolicyError {
    #[error("`{0}` is not a valid absolute URL")]
    Invalid(String),
    #[error(
        "`{0}` must use https:// (plain http:// is allowed only to a loopback host such as 127.0.0.1)"
    )]
    NotHttps(String),
    #[error(
        "`{0}` points at a link-local, cloud metadata, unspecified, multicast or broadcast address, which is refused"
    )]
    Forbidden(String),
    #[error("`{0}` must not carry a username or password; credentials go in their own fields")]
    Credentials(String),
}

const EC2_METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);
const ALIBABA_METADATA: Ipv4Addr = Ipv4Addr::new(100, 100, 100, 200);

/// The address as it is reached: an IPv6 address that carries an IPv4 one (IPv4-mapped `::ffff:a.b.c.d`,
/// IPv4-compatible `::a.b.c.d`, NAT64 `64:ff9b::a.b.c.d` and the local-use NAT64 prefix `64:ff9b:1::/48`) is
/// that IPv4 address; any other address is itself.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => embedded_ipv4(v6).map_or(ip, IpAddr::V4),
    }
}

fn embedded_ipv4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = v6.segments();
    let o = v6.octets();
    let last32 = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    // IPv4-compatible (deprecated, still routed by some stacks); `::` and `::1` are themselves.
    if s[..6] == [0; 6] && !(s[6] == 0 && s[7] <= 1) {
        return Some(last32);
    }
    // The well-known NAT64 prefix (RFC 6052): the IPv4 address is the last 32 bits.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(last32);
    }
    None
}

/// The IPv4 addresses a local-use NAT64 address (`64:ff9b:1::/48`, RFC 8215) may carry: its operator picks the
/// prefix length, so every layout of RFC 6052 that fits inside the /48 is tried (/48, /56, /64, /96).
fn local_nat64_candidates(v6: Ipv6Addr) -> Option<[Ipv4Addr; 4]> {
    let s = v6.segments();
    if s[..3] != [0x64, 0xff9b, 1] {
        return None;
    }
    let o = v6.octets();
    // Bits 64..71 (octet 8) are always zero in RFC 6052 layouts; the IPv4 bytes skip it.
    Some([
        Ipv4Addr::new(o[6], o[7], o[9], o[10]),
        Ipv4Addr::new(o[7], o[9], o[10], o[11]),
        Ipv4Addr::new(o[9], o[10], o[11], o[12]),
        Ipv4Addr::new(o[12], o[13], o[14], o[15]),
    ])
}

fn refused_v4(v4: Ipv4Addr) -> bool {
    v4.is_link_local()
        || v4 == ALIBABA_METADATA
        || v4.octets()[0] == 0
        || v4.is_multicast()
        || v4.is_broadcast()
}

/// Whether Ticketbound refuses to call `ip` (the list is in this module's documentation), judged on its
/// [`canonical_ip`].
pub fn refused_address(ip: IpAddr) -> bool {
    match canonical_ip(ip) {
        IpAddr::V4(v4) => refused_v4(v4),
        IpAddr::V6(v6) => {
            v6 == EC2_METADATA_V6
                || (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6.is_unspecified()
                || v6.is_multicast()
                || local_nat64_candidates(v6).is_some_and(|all| all.into_iter().any(refused_v4))
        }
    }
}

/// Whether `ip` is a loopback address, in any spelling (`::ffff:127.0.0.1` is).
pub fn is_loopback(ip: IpAddr) -> bool {
    canonical_ip(ip).is_loopback()
}

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
    if ip.is_some_and(refused_address) {
        return Err(UrlPolicyError::Forbidden(raw.to_owned()));
    }
    let loopback = match &host {
        Host::Domain(name) => name.eq_ignore_ascii_case("localhost"),
        _ => ip.is_some_and(is_loopback),
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

    fn forbidden(raw: &str) -> bool {
        matches!(check_outbound_url(raw), Err(UrlPolicyError::Forbidden(_)))
    }

    #[test]
    fn https_anywhere_and_http_to_loopback_are_allowed() {
        assert!(check_outbound_url("https://acme.atlassian.net").is_ok());
        assert!(check_outbound_url("http://127.0.0.1:9000/hook").is_ok());
        assert!(check_outbound_url("http://localhost:9000/hook").is_ok());
        assert!(check_outbound_url("http://[::1]:9000/hook").is_ok());
        assert!(check_outbound_url("http://[::ffff:127.0.0.1]:9000/hook").is_ok());
    }

    #[test]
    fn private_and_public_addresses_are_allowed_over_https() {
        for raw in [
            "https://10.0.0.5/",
            "https://192.168.1.10:8443/jira",
            "https://[fd12:3456::1]/",
            "https://[2001:db8::1]/",
            "https://[64:ff9b::8.8.8.8]/",
            "https://[::ffff:93.184.216.34]/",
        ] {
            assert!(check_outbound_url(raw).is_ok(), "{raw}");
        }
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
            "https://169.254.170.2/v2/credentials",
            "https://100.100.100.200/latest/meta-data",
            "https://[fd00:ec2::254]/",
            "https://[fe80::1]/",
            "https://[febf::1]/",
        ] {
            assert!(forbidden(raw), "{raw}");
        }
    }

    #[test]
    fn every_ipv6_spelling_of_the_metadata_address_is_refused() {
        for raw in [
            // IPv4-mapped, in both notations.
            "https://[::ffff:169.254.169.254]/",
            "https://[::ffff:a9fe:a9fe]/",
            // IPv4-compatible.
            "https://[::a9fe:a9fe]/",
            "https://[::169.254.169.254]/",
            // NAT64, well-known prefix.
            "https://[64:ff9b::a9fe:a9fe]/",
            "https://[64:ff9b::169.254.169.254]/",
            // NAT64, local-use prefix, /96 and /48 layouts.
            "https://[64:ff9b:1::a9fe:a9fe]/",
            "https://[64:ff9b:1:a9fe:00a9:fe00::]/",
            // Decimal and hexadecimal IPv4 spellings (the URL parser normalises them).
            "https://2852039166/",
            "https://0xa9.0xfe.0xa9.0xfe/",
        ] {
            assert!(forbidden(raw), "{raw}");
        }
    }

    #[test]
    fn unspecified_multicast_and_broadcast_addresses_are_refused() {
        for raw in [
            "http://0.0.0.0:8080/",
            "https://0.1.2.3/",
            "https://[::]/",
            "https://[::ffff:0.0.0.0]/",
            "https://224.0.0.1/",
            "https://239.255.255.250/",
            "https://255.255.255.255/",
            "https://[ff02::1]/",
            "https://[::ffff:224.0.0.1]/",
        ] {
            assert!(forbidden(raw), "{raw}");
        }
    }

    #[test]
    fn canonical_ip_unwraps_embedded_ipv4_only() {
        let v4: IpAddr = "169.254.169.254".parse().unwrap();
        for spelling in [
            "::ffff:169.254.169.254",
            "::a9fe:a9fe",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert_eq!(canonical_ip(spelling.parse().unwrap()), v4, "{spelling}");
        }
        for itself in ["::1", "::", "2001:db8::1", "fe80::1"] {
            let ip: IpAddr = itself.parse().unwrap();
            assert_eq!(canonical_ip(ip), ip, "{itself}");
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
