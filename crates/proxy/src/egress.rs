//! The egress policy (DESIGN.md §9a): every request the gateway makes on someone's say-so —
//! to an upstream MCP server, a probe, upstream OAuth discovery and token calls, a legacy SSE
//! message endpoint — goes only to public addresses unless the operator allows more. Names are
//! checked after DNS resolution by the client's own resolver, so the connection goes to the
//! address that was checked; literal addresses in URLs are checked before the request is made.
//! Clients built here never follow redirects (a redirect would carry credentials elsewhere).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;

/// Why an outbound request is not made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EgressError {
    #[error("{host} is a private, loopback, link-local or reserved address, which this gateway does not call (see MCPGATE_UPSTREAM_ALLOW_PRIVATE)")]
    Refused { host: String },
    #[error("only http and https URLs are called, not {0}")]
    Scheme(String),
    #[error("the URL has no host")]
    NoHost,
}

/// Which destinations outbound requests may reach.
#[derive(Clone, Debug, Default)]
pub struct Egress {
    /// Everything is allowed (development, tests, a gateway inside a private network).
    allow_private: bool,
    /// Otherwise refused networks that are allowed all the same.
    allowed: Vec<IpNet>,
}

/// Whether an address is anything other than an ordinary public unicast address: private,
/// loopback, link-local, CGNAT, benchmarking, multicast, reserved, documentation, or an IPv6
/// form that embeds or translates to such an IPv4 address.
pub fn is_special(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_special_v4(v4),
        IpAddr::V6(v6) => is_special_v6(v6),
    }
}

fn is_special_v4(v4: Ipv4Addr) -> bool {
    let [a, b, ..] = v4.octets();
    v4.is_private()
        || v4.is_loopback()
        || v4.is_link_local()
        || v4.is_unspecified()
        || v4.is_broadcast()
        || v4.is_multicast()
        || v4.is_documentation()
        || a == 0 // 0.0.0.0/8, "this network"
        || (a == 100 && (b & 0xc0) == 64) // 100.64.0.0/10, carrier-grade NAT
        || (a == 192 && b == 0 && v4.octets()[2] == 0) // 192.0.0.0/24, IETF protocol assignments
        || (a == 198 && (b & 0xfe) == 18) // 198.18.0.0/15, benchmarking
        || a >= 240 // 240.0.0.0/4 reserved, and broadcast
}

fn is_special_v6(v6: Ipv6Addr) -> bool {
    let s = v6.segments();
    if let Some(v4) = v6.to_ipv4_mapped() {
        return is_special_v4(v4);
    }
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from(((hi as u32) << 16) | lo as u32);
    // 64:ff9b::/96 NAT64 (RFC 6052) and 64:ff9b:1::/48 local-use NAT64: treat as the v4 inside,
    // or refuse outright for the local-use prefix.
    if s[0] == 0x64 && s[1] == 0xff9b {
        return s[2] != 0 || is_special_v4(embedded(s[6], s[7]));
    }
    // 2002::/16 6to4 carries an IPv4 address in bits 16..48.
    if s[0] == 0x2002 {
        return is_special_v4(embedded(s[1], s[2]));
    }
    // IPv4-compatible (deprecated) ::a.b.c.d.
    if s[..6] == [0, 0, 0, 0, 0, 0] {
        return true;
    }
    v6.is_loopback()
        || v6.is_unspecified()
        || v6.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // fc00::/7 unique local
        || (s[0] & 0xffc0) == 0xfe80 // fe80::/10 link local
        || (s[0] & 0xffc0) == 0xfec0 // fec0::/10 site local (deprecated)
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x2001 && s[1] == 0) // 2001::/32 Teredo: tunnels to arbitrary IPv4
        || s[0] == 0x0100 && s[1..4] == [0, 0, 0] // 100::/64 discard
}

impl Egress {
    pub fn new(allow_private: bool, allowed: Vec<IpNet>) -> Self {
        Self { allow_private, allowed }
    }

    /// Everything allowed: for tools that only talk to their own control plane.
    pub fn open() -> Self {
        Self { allow_private: true, allowed: Vec::new() }
    }

    /// Parses `MCPGATE_UPSTREAM_ALLOWED_NETWORKS` entries (`10.0.0.0/8`, `fd00::/8`, or a bare
    /// address).
    pub fn parse_networks(entries: &[String]) -> Result<Vec<IpNet>, String> {
        entries
            .iter()
            .map(|entry| {
                let entry = entry.trim();
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("upstream_allowed_networks: {entry:?} is not a CIDR network or address"))
            })
            .collect()
    }

    pub fn permits(&self, ip: IpAddr) -> bool {
        self.allow_private || !is_special(ip) || self.allowed.iter().any(|net| net.contains(&ip))
    }

    /// The URL's scheme and, when its host is a literal address, that address. Names are
    /// checked when they resolve.
    pub fn check_url(&self, url: &url::Url) -> Result<(), EgressError> {
        match url.scheme() {
            "http" | "https" => {}
            other => return Err(EgressError::Scheme(other.to_owned())),
        }
        let ip = match url.host().ok_or(EgressError::NoHost)? {
            url::Host::Ipv4(v4) => IpAddr::V4(v4),
            url::Host::Ipv6(v6) => IpAddr::V6(v6),
            url::Host::Domain(_) => return Ok(()),
        };
        if self.permits(ip) {
            Ok(())
        } else {
            Err(EgressError::Refused { host: url.host_str().unwrap_or_default().to_owned() })
        }
    }

    /// The check made when a URL is registered: the literal address, or every address its name
    /// resolves to now. A name that does not resolve yet is accepted; it is checked again on
    /// every connection.
    pub async fn check_destination(&self, url: &url::Url) -> Result<(), EgressError> {
        self.check_url(url)?;
        if self.allow_private {
            return Ok(());
        }
        let Some(url::Host::Domain(name)) = url.host() else { return Ok(()) };
        let port = url.port_or_known_default().unwrap_or(443);
        let lookup = tokio::time::timeout(std::time::Duration::from_secs(5), tokio::net::lookup_host((name, port)));
        if let Ok(Ok(addresses)) = lookup.await {
            for address in addresses {
                if !self.permits(address.ip()) {
                    return Err(EgressError::Refused { host: name.to_owned() });
                }
            }
        }
        Ok(())
    }

    /// The addresses a name resolves to (system resolver) that this policy permits. A name
    /// whose every address is refused fails to resolve, with the reason; the HTTP clients'
    /// resolvers use this, so a connection goes only to an address that was checked.
    pub async fn resolve(&self, host: &str) -> std::io::Result<Vec<SocketAddr>> {
        let found: Vec<SocketAddr> = tokio::net::lookup_host((host, 0)).await?.collect();
        let permitted: Vec<SocketAddr> = found.iter().copied().filter(|a| self.permits(a.ip())).collect();
        if permitted.is_empty() && !found.is_empty() {
            let refused = EgressError::Refused { host: host.to_owned() };
            return Err(std::io::Error::new(std::io::ErrorKind::PermissionDenied, refused));
        }
        Ok(permitted)
    }

    /// A client builder that resolves through this policy, follows no redirect and ignores
    /// proxy environment variables (a proxy would make the resolved address meaningless).
    pub fn builder(self: &Arc<Self>) -> reqwest::ClientBuilder {
        let mut builder = crate::http_client::builder().redirect(reqwest::redirect::Policy::none()).no_proxy();
        if !self.allow_private {
            builder = builder.dns_resolver(Arc::new(Resolver(self.clone())));
        }
        builder
    }
}

/// reqwest's resolver: [`Egress::resolve`].
struct Resolver(Arc<Egress>);

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0.clone();
        Box::pin(async move {
            let addrs: reqwest::dns::Addrs = Box::new(policy.resolve(name.as_str()).await?.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_addresses_are_recognised() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "198.18.0.1",
            "198.19.255.255",
            "240.0.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.0.170",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::1",
            "2002:7f00:1::",
            "2002:c0a8:101::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "2001:db8::1",
        ] {
            assert!(is_special(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "2606:4700::1111", "8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"] {
            assert!(!is_special(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn literal_hosts_are_checked_and_networks_can_be_allowed() {
        let strict = Egress::default();
        for url in [
            "http://127.0.0.1:8080/mcp",
            "http://[::ffff:127.0.0.1]/",
            "http://0.0.0.0:9/",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]:3000/",
        ] {
            let parsed = url::Url::parse(url).unwrap();
            assert!(matches!(strict.check_url(&parsed), Err(EgressError::Refused { .. })), "{url}");
        }
        assert!(strict.check_url(&url::Url::parse("https://mcp.example.com/x").unwrap()).is_ok());
        assert!(strict.check_url(&url::Url::parse("file:///etc/passwd").unwrap()).is_err());
        let nets = Egress::parse_networks(&["10.0.0.0/8".into(), " 127.0.0.1 ".into()]).unwrap();
        let some = Egress::new(false, nets);
        assert!(some.check_url(&url::Url::parse("http://10.2.3.4/").unwrap()).is_ok());
        assert!(some.check_url(&url::Url::parse("http://127.0.0.1:9/").unwrap()).is_ok());
        assert!(some.check_url(&url::Url::parse("http://127.0.0.2:9/").unwrap()).is_err());
        assert!(Egress::parse_networks(&["10.0.0.0/33".into()]).is_err());
        assert!(Egress::open().check_url(&url::Url::parse("http://127.0.0.1/").unwrap()).is_ok());
    }

    #[tokio::test]
    async fn names_resolving_to_refused_addresses_are_refused() {
        let strict = Egress::default();
        let url = url::Url::parse("http://localhost:9/mcp").unwrap();
        assert!(matches!(strict.check_destination(&url).await, Err(EgressError::Refused { .. })));
        let strict = Arc::new(strict);
        let client = strict.builder().build().unwrap();
        let err = client.get("http://localhost:9/").send().await.unwrap_err();
        let mut cause: Option<&dyn std::error::Error> = Some(&err);
        let mut refused = false;
        while let Some(e) = cause {
            refused |= e.to_string().contains("does not call");
            cause = e.source();
        }
        assert!(refused, "resolution refused: {err:?}");
    }
}
