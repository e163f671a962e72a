//! Where the hub may send requests of its own (webhook deliveries, the HTTP node of bot flows).
//! A URL must name a receiver outside this deployment's networks: loopback, private (RFC 1918), carrier-grade NAT, link-local (with the
//! cloud metadata address 169.254.169.254), unique-local, unspecified, multicast and reserved
//! addresses are refused, in every spelling the URL parser accepts (`http://2130706433/` and
//! `http://0x7f000001/` are 127.0.0.1; `::ffff:127.0.0.1` is too). Credentials in the URL
//! (`http://user:pass@host/`) are refused: the signature authenticates deliveries.
//!
//! The check runs twice: when the URL is subscribed ([`Targets::check_subscription`]: literal
//! addresses, `localhost`, and what the name resolves to then) and at every delivery
//! ([`GuardedResolver`], the delivery client's DNS resolver: it resolves the name itself and
//! hands the client only the addresses it checked, so a name that resolves inward later, or
//! between the check and the connection, is refused).
//!
//! An allow-list (`loader.webhooks.allow_internal` for webhooks, `connectors.bots_allow_internal`
//! for bot flows) lists the networks (CIDR) a deployment does post to, e.g. `["10.20.0.0/16"]`
//! for receivers inside its own network, or `["127.0.0.1/32"]` in tests.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use url::{Host, Url};

/// Why a URL may not receive the hub's requests.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("is not a URL: {0}")]
    NotAUrl(String),
    #[error("must be an http:// or https:// URL with a host")]
    Scheme,
    #[error("must not carry credentials (`user:password@`); deliveries are authenticated by their signature")]
    Credentials,
    #[error("names {host}, which is {why}; list its network in the allow-list (allow_internal) to post there")]
    Internal { host: String, why: &'static str },
    #[error(
        "{host} resolves to {addr}, which is {why}; list its network in the allow-list (allow_internal) to post there"
    )]
    ResolvesInward { host: String, addr: IpAddr, why: &'static str },
    #[error("cannot resolve {host}: {reason}")]
    Unresolved { host: String, reason: String },
}

/// Why an address is not a public one, or `None` when it is.
pub fn internal_range(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => internal_v4(v4),
        IpAddr::V6(v6) => internal_v6(v6),
    }
}

fn internal_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        (0, ..) => "unspecified (0.0.0.0/8)",
        (10, ..) => "private (10.0.0.0/8)",
        (100, 64..=127, _) => "carrier-grade NAT (100.64.0.0/10)",
        (127, ..) => "loopback (127.0.0.0/8)",
        (169, 254, _) => "link-local or cloud metadata (169.254.0.0/16)",
        (172, 16..=31, _) => "private (172.16.0.0/12)",
        (192, 0, 0) => "IETF protocol assignments (192.0.0.0/24)",
        (192, 168, _) => "private (192.168.0.0/16)",
        (198, 18..=19, _) => "benchmarking (198.18.0.0/15)",
        (224..=239, ..) => "multicast (224.0.0.0/4)",
        (240..=255, ..) => "reserved or broadcast (240.0.0.0/4)",
        _ => return None,
    })
}

fn internal_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return internal_v4(v4).map(|_| "an IPv4-mapped internal address (::ffff:0:0/96)");
    }
    let s = ip.segments();
    if ip.is_unspecified() {
        return Some("unspecified (::)");
    }
    if ip.is_loopback() {
        return Some("loopback (::1)");
    }
    // IPv4-compatible (deprecated), NAT64 and 6to4 addresses carry an IPv4 address
    let embedded = |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    if s[..6] == [0; 6] && internal_v4(embedded(s[6], s[7])).is_some() {
        return Some("an IPv4-compatible internal address (::/96)");
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] && internal_v4(embedded(s[6], s[7])).is_some() {
        return Some("a NAT64 internal address (64:ff9b::/96)");
    }
    if s[0] == 0x2002 && internal_v4(embedded(s[1], s[2])).is_some() {
        return Some("a 6to4 internal address (2002::/16)");
    }
    Some(match s[0] {
        0xfe80..=0xfebf => "link-local (fe80::/10)",
        0xfec0..=0xfeff => "site-local (fec0::/10)",
        0xfc00..=0xfdff => "unique-local (fc00::/7)",
        0xff00..=0xffff => "multicast (ff00::/8)",
        _ => return None,
    })
}

/// Name resolution, behind a trait so that tests can make a name resolve where they need it
/// (a name that turns inward between subscription and delivery).
pub trait Lookup: Send + Sync + 'static {
    fn lookup(&self, host: &str) -> futures::future::BoxFuture<'static, std::io::Result<Vec<IpAddr>>>;
}

/// The system resolver (`getaddrinfo` through tokio).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemLookup;

impl Lookup for SystemLookup {
    fn lookup(&self, host: &str) -> futures::future::BoxFuture<'static, std::io::Result<Vec<IpAddr>>> {
        let host = host.to_owned();
        Box::pin(async move { Ok(tokio::net::lookup_host((host.as_str(), 0)).await?.map(|a| a.ip()).collect()) })
    }
}

/// The webhook target policy: the internal networks a deployment allows, and how names are
/// resolved.
#[derive(Clone)]
pub struct Targets {
    allow: Arc<Vec<IpNet>>,
    lookup: Arc<dyn Lookup>,
}

impl Default for Targets {
    fn default() -> Self {
        Targets::new(Vec::new())
    }
}

impl std::fmt::Debug for Targets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Targets").field("allow", &self.allow).finish_non_exhaustive()
    }
}

impl Targets {
    pub fn new(allow_internal: Vec<IpNet>) -> Self {
        Targets::with_lookup(allow_internal, Arc::new(SystemLookup))
    }

    pub fn with_lookup(allow_internal: Vec<IpNet>, lookup: Arc<dyn Lookup>) -> Self {
        Targets { allow: Arc::new(allow_internal), lookup }
    }

    /// Why `ip` may not receive webhooks, or `None` when it may.
    pub fn refusal(&self, ip: IpAddr) -> Option<&'static str> {
        let canonical = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let why = internal_range(ip)?;
        if self.allow.iter().any(|net| net.contains(&ip) || net.contains(&canonical)) { None } else { Some(why) }
    }

    /// `localhost` and `*.localhost` are loopback whatever a resolver says (RFC 6761).
    fn localhost_refusal(&self, name: &str) -> Option<TargetError> {
        let loopback_refused = self.refusal(IpAddr::V4(Ipv4Addr::LOCALHOST)).is_some()
            && self.refusal(IpAddr::V6(Ipv6Addr::LOCALHOST)).is_some();
        (is_localhost(name) && loopback_refused)
            .then(|| TargetError::Internal { host: name.to_owned(), why: "loopback (localhost)" })
    }

    /// Parses a URL and checks everything that does not need DNS: scheme, host, credentials,
    /// a literal internal address, `localhost`.
    pub fn parse(&self, raw: &str) -> Result<Url, TargetError> {
        let url = Url::parse(raw.trim()).map_err(|e| TargetError::NotAUrl(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(TargetError::Scheme);
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(TargetError::Credentials);
        }
        let refused = |ip: IpAddr| self.refusal(ip).map(|why| TargetError::Internal { host: ip.to_string(), why });
        let refusal = match url.host() {
            Some(Host::Ipv4(ip)) => refused(IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => refused(IpAddr::V6(ip)),
            Some(Host::Domain(name)) => self.localhost_refusal(name),
            None => None,
        };
        refusal.map_or(Ok(url), Err)
    }

    /// Resolves `host` and keeps the addresses that may receive webhooks; refused when none
    /// is left (the error names the first address refused).
    pub async fn resolve(&self, host: &str) -> Result<Vec<IpAddr>, TargetError> {
        if let Some(refused) = self.localhost_refusal(host) {
            return Err(refused);
        }
        let found = self
            .lookup
            .lookup(host)
            .await
            .map_err(|e| TargetError::Unresolved { host: host.to_owned(), reason: e.to_string() })?;
        let Some(&first) = found.first() else {
            return Err(TargetError::Unresolved { host: host.to_owned(), reason: "no address".into() });
        };
        let allowed: Vec<IpAddr> = found.iter().copied().filter(|ip| self.refusal(*ip).is_none()).collect();
        if allowed.is_empty() {
            let why = self.refusal(first).unwrap_or("internal");
            return Err(TargetError::ResolvesInward { host: host.to_owned(), addr: first, why });
        }
        Ok(allowed)
    }

    /// The check when a URL is subscribed: [`Targets::parse`], then, for a name, what it
    /// resolves to now (within `timeout`). A name that does not resolve yet is accepted: the
    /// delivery-time check stands guard.
    pub async fn check_subscription(&self, raw: &str, timeout: Duration) -> Result<Url, TargetError> {
        let url = self.parse(raw)?;
        if let Some(Host::Domain(name)) = url.host() {
            let resolved = tokio::time::timeout(timeout, self.resolve(name)).await;
            if let Ok(Err(e @ (TargetError::ResolvesInward { .. } | TargetError::Internal { .. }))) = resolved {
                return Err(e);
            }
        }
        Ok(url)
    }

    /// The check at delivery time for what [`Targets::parse`] can see (a literal address, the
    /// scheme, credentials); names are checked by [`GuardedResolver`] as the client resolves them.
    pub fn check_delivery(&self, raw: &str) -> Result<Url, TargetError> {
        self.parse(raw)
    }

    /// The resolver of the delivery client.
    pub fn resolver(&self) -> Arc<GuardedResolver> {
        Arc::new(GuardedResolver { targets: self.clone() })
    }
}

/// A stored URL as it may be shown: credentials (from subscriptions made before they were
/// refused) are cut out.
pub fn without_credentials(raw: &str) -> String {
    match Url::parse(raw) {
        Ok(mut url) if !url.username().is_empty() || url.password().is_some() => {
            // both succeed on an http(s) URL with a host, the only kind ever stored
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.to_string()
        }
        _ => raw.to_owned(),
    }
}

fn is_localhost(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

/// The delivery client's DNS resolver: resolves a receiver's name with [`Targets::resolve`];
/// the client connects only to the addresses returned here, the ones that were checked.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    targets: Targets,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let targets = self.targets.clone();
        Box::pin(async move {
            let addrs = targets.resolve(name.as_str()).await?;
            Ok(Box::new(addrs.into_iter().map(|ip| SocketAddr::new(ip, 0))) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_internal_spelling_is_refused_and_public_addresses_pass() {
        let t = Targets::default();
        for url in [
            "http://127.0.0.1/",
            "http://127.1.2.3:8080/x",
            "http://[::1]/",
            "http://localhost/",
            "http://LOCALHOST./",
            "http://api.localhost/",
            "http://0.0.0.0/",
            "http://0/",
            "http://10.1.2.3/",
            "http://172.16.0.1/",
            "http://172.31.255.255/",
            "http://192.168.1.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://100.64.0.1/",
            "http://[fe80::1]/",
            "http://[fc00::1]/",
            "http://[fd00:ec2::254]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "http://[::127.0.0.1]/",
            "http://[64:ff9b::a00:1]/",
            "http://[2002:7f00:1::]/",
            "http://[::]/",
            "http://2130706433/",
            "http://0x7f000001/",
            "http://0177.0.0.1/",
            "http://127.1/",
            "http://224.0.0.1/",
            "http://255.255.255.255/",
        ] {
            assert!(matches!(t.parse(url), Err(TargetError::Internal { .. })), "{url}: {:?}", t.parse(url));
        }
        for url in
            ["https://example.com/hook", "http://8.8.8.8/", "http://[2001:4860:4860::8888]/", "http://172.32.0.1/"]
        {
            assert!(t.parse(url).is_ok(), "{url}");
        }
        assert_eq!(t.parse("http://user:pass@example.com/"), Err(TargetError::Credentials));
        assert_eq!(t.parse("http://user@example.com/"), Err(TargetError::Credentials));
        assert_eq!(t.parse("ftp://example.com/"), Err(TargetError::Scheme));
        assert!(matches!(t.parse("not a url"), Err(TargetError::NotAUrl(_))));
        let e = t.parse("http://user:hunter2@example.com/").unwrap_err().to_string();
        assert!(!e.contains("hunter2"), "{e}");
        assert_eq!(without_credentials("http://user:hunter2@example.com/x"), "http://example.com/x");
        assert_eq!(without_credentials("https://example.com/x"), "https://example.com/x");
    }

    #[test]
    fn the_allow_list_lets_configured_networks_through_and_nothing_else() {
        let t = Targets::new(vec!["127.0.0.1/32".parse().unwrap(), "10.20.0.0/16".parse().unwrap()]);
        assert!(t.parse("http://127.0.0.1:9000/hook").is_ok());
        assert!(t.parse("http://[::ffff:127.0.0.1]/").is_ok());
        assert!(t.parse("http://localhost:9000/").is_ok());
        assert!(t.parse("http://10.20.3.4/").is_ok());
        assert!(t.parse("http://127.0.0.2/").is_err());
        assert!(t.parse("http://10.21.0.1/").is_err());
        assert!(t.parse("http://169.254.169.254/").is_err());
    }

    /// A resolver that knows a few names.
    struct Table(Vec<(&'static str, Vec<IpAddr>)>);

    impl Lookup for Table {
        fn lookup(&self, host: &str) -> futures::future::BoxFuture<'static, std::io::Result<Vec<IpAddr>>> {
            let found = self.0.iter().find(|(name, _)| *name == host).map(|(_, ips)| ips.clone());
            Box::pin(async move { found.ok_or_else(|| std::io::Error::other("no such name")) })
        }
    }

    #[tokio::test]
    async fn names_are_resolved_and_only_public_or_allowed_addresses_are_kept() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let table = Arc::new(Table(vec![
            ("inward.example", vec![ip("127.0.0.1")]),
            ("metadata.example", vec![ip("169.254.169.254"), ip("fd00:ec2::254")]),
            ("mixed.example", vec![ip("10.0.0.1"), ip("93.184.216.34")]),
            ("public.example", vec![ip("93.184.216.34")]),
        ]));
        let t = Targets::with_lookup(vec![], table.clone());
        assert!(matches!(t.resolve("localhost").await, Err(TargetError::Internal { .. })));
        let e = t.resolve("inward.example").await.unwrap_err();
        assert!(e.to_string().contains("resolves to 127.0.0.1"), "{e}");
        assert!(matches!(t.resolve("metadata.example").await, Err(TargetError::ResolvesInward { .. })));
        assert_eq!(t.resolve("mixed.example").await.unwrap(), vec![ip("93.184.216.34")]);
        assert!(matches!(t.resolve("nowhere.example").await, Err(TargetError::Unresolved { .. })));
        let d = Duration::from_secs(1);
        assert!(t.check_subscription("http://inward.example/", d).await.is_err());
        assert!(t.check_subscription("http://public.example/", d).await.is_ok());
        assert!(t.check_subscription("http://nowhere.example/", d).await.is_ok(), "checked again at delivery");
        let allowed = Targets::with_lookup(vec!["127.0.0.0/8".parse().unwrap()], table);
        assert_eq!(allowed.resolve("inward.example").await.unwrap(), vec![ip("127.0.0.1")]);
        assert!(allowed.check_subscription("http://inward.example/", d).await.is_ok());
    }
}
