//! Which network addresses a photo download may reach.
//!
//! Photo URLs are written by strangers (through the API), so they may point at the machine itself, the
//! local network or a cloud metadata service. Unless the API itself lives on such an address (a test
//! or self-hosted server) or the user allows it (`source.allow_private_photo_hosts`), a download is
//! refused at every step where the address can be seen: the URL's IP literal before sending, every
//! redirect hop, the addresses a host name resolves to (a DNS resolver that drops the private ones)
//! and the address actually connected to, before the body is read.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::Url;

/// The config key that lets photo downloads reach private addresses, as named in errors.
pub const ALLOW_KEY: &str = "source.allow_private_photo_hosts";

/// Whether `ip` is not a public internet address: loopback, private, link-local, unique-local,
/// carrier-grade NAT (where some clouds keep their metadata service), multicast, reserved or
/// unspecified, including IPv4 addresses written in IPv6 forms (mapped, compatible, NAT64, 6to4).
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_private_v4(v4),
        IpAddr::V6(v6) => is_private_v6(v6),
    }
}

/// [`is_private`] for IPv4.
fn is_private_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    a == 0 // "this network", 0.0.0.0
        || a == 10
        || a == 127
        || (a == 100 && (64..128).contains(&b)) // shared address space (100.64/10)
        || (a == 169 && b == 254) // link-local, cloud metadata (169.254.169.254)
        || (a == 172 && (16..32).contains(&b))
        || (a == 192 && b == 168)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || a >= 224 // multicast, reserved, broadcast
}

/// [`is_private`] for IPv6.
fn is_private_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    let embedded_v4 = |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_private_v4(v4);
    }
    if s[..6] == [0; 6] {
        // ::, ::1 and the deprecated IPv4-compatible ::a.b.c.d.
        return ip.is_unspecified() || ip.is_loopback() || is_private_v4(embedded_v4(s[6], s[7]));
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        // NAT64: the IPv4 address it translates to.
        return is_private_v4(embedded_v4(s[6], s[7]));
    }
    if s[0] == 0x2002 {
        // 6to4: the IPv4 address of the relay.
        return is_private_v4(embedded_v4(s[1], s[2]));
    }
    (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7 (AWS metadata fd00:ec2::254)
        || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (s[0] & 0xffc0) == 0xfec0 // site-local fec0::/10 (deprecated)
        || (s[0] & 0xff00) == 0xff00 // multicast
        || (s[0] == 0x0064 && s[1] == 0xff9b && s[2] == 1) // local-use NAT64 64:ff9b:1::/48
        || (s[0] == 0x0100 && s[1..4] == [0; 3]) // discard-only 100::/64
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
}

/// The IP address a URL's host is written as, if it is one. The URL parser has already turned the
/// decimal, hex and octal IPv4 forms (`http://2130706433/`) into dotted quads.
pub fn literal_ip(url: &Url) -> Option<IpAddr> {
    let host = url.host_str()?;
    host.trim_start_matches('[').trim_end_matches(']').parse().ok()
}

/// Whether a URL's host is this machine: a loopback IP literal, `localhost` or a name under
/// `.localhost` (RFC 6761). Plain http to such a host never leaves the machine.
pub fn is_loopback_host(url: &Url) -> bool {
    match literal_ip(url) {
        Some(ip) => ip.is_loopback() || ip.to_canonical().is_loopback(),
        None => url
            .host_str()
            .is_some_and(|h| h == "localhost" || h.ends_with(".localhost")),
    }
}

/// Whether a URL's host is a loopback or private address by its text ([`is_loopback_host`], or an IP
/// literal [`is_private`]): an API there is a test or self-hosted server, and its photos may be too.
pub fn is_private_host(url: &Url) -> bool {
    is_loopback_host(url) || literal_ip(url).is_some_and(is_private)
}

/// Where photo downloads may go: everywhere, or public addresses only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressPolicy {
    /// Private, loopback and reserved addresses are allowed too.
    pub allow_private: bool,
}

impl AddressPolicy {
    /// Public addresses only: the default for photo URLs, which strangers write.
    pub const PUBLIC_ONLY: AddressPolicy = AddressPolicy { allow_private: false };

    /// The policy of a source whose API is at `api` (`None`: no API, a replay): private addresses
    /// are allowed when the user says so or when the API itself is on one.
    pub fn for_api(api: Option<&Url>, allow_private: bool) -> Self {
        AddressPolicy {
            allow_private: allow_private || api.is_some_and(is_private_host),
        }
    }

    /// Checks a URL before a request is sent to it (also every redirect hop): only http(s), and no
    /// private IP literal unless allowed. Host names are checked when they resolve.
    pub fn check_url(&self, url: &Url) -> Result<(), String> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("{url} is not an http or https URL"));
        }
        match literal_ip(url) {
            Some(ip) if !self.allow_private && is_private(ip) => Err(refusal(url.host_str().unwrap_or(""), ip)),
            _ => Ok(()),
        }
    }

    /// Checks the address a response came from, before its body is read. An unknown address is
    /// refused too when private addresses are: nothing would show where the bytes came from.
    pub fn check_connected(&self, url: &Url, remote: Option<SocketAddr>) -> Result<(), String> {
        if self.allow_private {
            return Ok(());
        }
        match remote {
            Some(addr) if is_private(addr.ip()) => Err(format!(
                "{url} was answered from {}; {}",
                addr.ip(),
                refusal(url.host_str().unwrap_or(""), addr.ip())
            )),
            Some(_) => Ok(()),
            None => Err(format!(
                "{url}: the address connected to is unknown, so it cannot be checked; set {ALLOW_KEY} = true to download anyway"
            )),
        }
    }

    /// A DNS resolver for an HTTP client under this policy, when it needs one of its own.
    pub fn resolver(&self) -> Option<std::sync::Arc<PublicResolver>> {
        (!self.allow_private).then(|| std::sync::Arc::new(PublicResolver))
    }
}

/// A download refused by the address rules (from the resolver or a redirect hop), so the caller can
/// tell it from network trouble: it is not worth retrying.
#[derive(Debug)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// The [`Refused`] somewhere in an error's chain of sources, if any.
pub fn refused_in<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a Refused> {
    let mut next = Some(e);
    while let Some(err) = next {
        if let Some(r) = err.downcast_ref::<Refused>() {
            return Some(r);
        }
        next = err.source();
    }
    None
}

/// Why a download to `ip` is refused, and what to do if it was meant.
fn refusal(host: &str, ip: IpAddr) -> String {
    format!(
        "photo host {host} is a private, loopback or reserved address ({ip}); refused (set {ALLOW_KEY} = true if photos are meant to come from there)"
    )
}

/// A DNS resolver that resolves with the system's resolver and drops private addresses, so a client
/// never connects to one through a host name. A name with only private addresses is an error.
#[derive(Debug, Clone, Copy, Default)]
pub struct PublicResolver;

impl Resolve for PublicResolver {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(resolve_public(name.as_str().to_string()))
    }
}

/// Resolves `host` with the system's resolver (on the blocking pool) and keeps the public addresses.
async fn resolve_public(host: String) -> Result<Addrs, Box<dyn std::error::Error + Send + Sync>> {
    let lookup = host.clone();
    let all: Vec<SocketAddr> = tokio::task::spawn_blocking(move || (lookup.as_str(), 0).to_socket_addrs())
        .await
        .map_err(|e| format!("resolving {host}: {e}"))??
        .collect();
    let (public, private): (Vec<SocketAddr>, Vec<SocketAddr>) = all.into_iter().partition(|a| !is_private(a.ip()));
    if public.is_empty() && !private.is_empty() {
        let ips: Vec<String> = private.iter().map(|a| a.ip().to_string()).collect();
        return Err(Box::new(Refused(format!(
            "photo host {host} resolves only to private, loopback or reserved addresses ({}); refused (set {ALLOW_KEY} = true if photos are meant to come from there)",
            ips.join(", ")
        ))));
    }
    Ok(Box::new(public.into_iter()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn private_loopback_link_local_and_metadata_addresses_are_private_in_every_form() {
        for a in [
            "127.0.0.1",
            "127.255.0.9",
            "0.0.0.0",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.100.100.200",
            "224.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "fc00::1",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:c0a8:0101::1",
            "ff02::1",
        ] {
            assert!(is_private(ip(a)), "{a} counts as private");
        }
        for a in [
            "8.8.8.8",
            "172.32.0.1",
            "172.15.255.255",
            "192.169.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert!(!is_private(ip(a)), "{a} is public");
        }
    }

    #[test]
    fn ip_literals_are_read_in_the_forms_the_url_parser_normalises() {
        let url = |s: &str| Url::parse(s).unwrap();
        for (s, want) in [
            ("http://2130706433:8080/a.jpg", "127.0.0.1"),
            ("http://0x7f.1/a.jpg", "127.0.0.1"),
            ("http://0177.0.0.1/a.jpg", "127.0.0.1"),
            ("http://[::ffff:7f00:1]/a.jpg", "::ffff:127.0.0.1"),
            ("http://[::1]:80/", "::1"),
        ] {
            assert_eq!(literal_ip(&url(s)), Some(ip(want)), "{s}");
            assert!(AddressPolicy::PUBLIC_ONLY.check_url(&url(s)).is_err(), "{s} is refused");
            assert!(
                AddressPolicy { allow_private: true }.check_url(&url(s)).is_ok(),
                "{s} may be allowed"
            );
        }
        assert_eq!(literal_ip(&url("https://images-ssl.gotinder.com/a.jpg")), None);
        assert!(AddressPolicy::PUBLIC_ONLY
            .check_url(&url("https://images-ssl.gotinder.com/a.jpg"))
            .is_ok());
        assert!(AddressPolicy::PUBLIC_ONLY
            .check_url(&url("file:///etc/passwd"))
            .is_err());
        let err = AddressPolicy::PUBLIC_ONLY
            .check_url(&url("http://169.254.169.254/latest/meta-data"))
            .unwrap_err();
        assert!(err.contains("169.254.169.254") && err.contains(ALLOW_KEY), "{err}");
    }

    #[test]
    fn an_api_on_a_private_address_allows_private_photo_hosts() {
        let url = |s: &str| Url::parse(s).unwrap();
        assert!(AddressPolicy::for_api(Some(&url("http://127.0.0.1:8080")), false).allow_private);
        assert!(AddressPolicy::for_api(Some(&url("http://localhost:8080")), false).allow_private);
        assert!(AddressPolicy::for_api(Some(&url("https://192.168.1.5")), false).allow_private);
        assert!(!AddressPolicy::for_api(Some(&url("https://api.gotinder.com")), false).allow_private);
        assert!(AddressPolicy::for_api(Some(&url("https://api.gotinder.com")), true).allow_private);
        assert!(!AddressPolicy::for_api(None, false).allow_private);
        assert!(is_loopback_host(&url("http://[::1]:9/")));
        assert!(is_loopback_host(&url("http://api.localhost/")));
        assert!(!is_loopback_host(&url("http://10.0.0.1/")));
        assert!(!is_loopback_host(&url("http://localhost.example.com/")));
    }

    #[test]
    fn the_connected_address_is_checked_and_an_unknown_one_refused() {
        let url = Url::parse("https://photos.example/a.jpg").unwrap();
        let p = AddressPolicy::PUBLIC_ONLY;
        let err = p
            .check_connected(&url, Some("10.0.0.7:443".parse().unwrap()))
            .unwrap_err();
        assert!(err.contains("10.0.0.7") && err.contains(ALLOW_KEY), "{err}");
        assert!(p
            .check_connected(&url, Some("[::ffff:127.0.0.1]:443".parse().unwrap()))
            .is_err());
        assert!(p.check_connected(&url, None).is_err());
        assert!(p
            .check_connected(&url, Some("93.184.216.34:443".parse().unwrap()))
            .is_ok());
        let allowed = AddressPolicy { allow_private: true };
        assert!(allowed
            .check_connected(&url, Some("10.0.0.7:443".parse().unwrap()))
            .is_ok());
    }

    #[tokio::test]
    async fn the_resolver_drops_private_addresses() {
        let err = match PublicResolver.resolve("localhost".parse().unwrap()).await {
            Ok(addrs) => panic!("localhost resolved to {:?}", addrs.collect::<Vec<_>>()),
            Err(e) => e.to_string(),
        };
        assert!(
            err.contains("localhost") && err.contains("127.0.0.1") && err.contains(ALLOW_KEY),
            "{err}"
        );
    }
}
