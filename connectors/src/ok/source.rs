//! Where a webhook delivery comes from, with no I/O: OK signs nothing, so besides the path token
//! an account may allow only some source addresses (OK's published ranges, or its own list),
//! checked against the connection's peer, or, when the peer is a trusted proxy, against the first
//! address of `X-Forwarded-For` (read from the right) that is not a trusted proxy itself.

use std::net::IpAddr;

/// The ranges OK's webhooks come from, as OK publishes them (`docs/platforms.md#ok`, §6.1).
pub const OK_RANGES: &[&str] = &["217.20.145.192/28", "217.20.151.160/28", "217.20.153.48/28"];

/// The keyword for [`OK_RANGES`] in `settings.allowed_sources`.
pub const OK_KEYWORD: &str = "ok";

/// An address range: `10.0.0.0/8`, `2001:db8::/32`, or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// IPv4-mapped IPv6 addresses (`::ffff:217.20.145.200`) as IPv4.
pub fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(addr),
        v4 => v4,
    }
}

impl Cidr {
    /// `a.b.c.d/n`, `x::y/n` or a plain address; host bits must be zero.
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| format!("{s:?} is not an address or a range like 10.0.0.0/8"))?;
        let addr = canonical(addr);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: the prefix must be 0 to {max}"))?,
            None => max,
        };
        let cidr = Cidr { addr, prefix };
        if cidr.network() != bits(addr) {
            return Err(format!("{s:?} has host bits set (the range starts at {})", cidr.start()));
        }
        Ok(cidr)
    }

    fn mask(&self) -> u128 {
        let width = if self.addr.is_ipv4() { 32 } else { 128 };
        if self.prefix == 0 { 0 } else { (u128::MAX << (width - u32::from(self.prefix))) & width_mask(width) }
    }

    fn network(&self) -> u128 {
        bits(self.addr) & self.mask()
    }

    fn start(&self) -> IpAddr {
        let n = self.network();
        match self.addr {
            IpAddr::V4(_) => IpAddr::V4((n as u32).into()),
            IpAddr::V6(_) => IpAddr::V6(n.into()),
        }
    }

    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = canonical(addr);
        addr.is_ipv4() == self.addr.is_ipv4() && bits(addr) & self.mask() == self.network()
    }
}

fn width_mask(width: u32) -> u128 {
    if width == 128 { u128::MAX } else { (1u128 << width) - 1 }
}

fn bits(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// A list of ranges from settings; [`OK_KEYWORD`] stands for [`OK_RANGES`].
pub fn parse_list(name: &str, entries: &[String]) -> Result<Vec<Cidr>, String> {
    let mut out = Vec::new();
    for entry in entries {
        if entry.trim().eq_ignore_ascii_case(OK_KEYWORD) {
            out.extend(OK_RANGES.iter().map(|r| Cidr::parse(r).expect("OK's ranges parse")));
        } else {
            out.push(Cidr::parse(entry).map_err(|e| format!("{name}: {e}"))?);
        }
    }
    Ok(out)
}

fn any(ranges: &[Cidr], addr: IpAddr) -> bool {
    ranges.iter().any(|r| r.contains(addr))
}

/// The address a delivery comes from: the peer, or, when the peer is one of `trusted` proxies,
/// the right-most address of `forwarded_for` (every `X-Forwarded-For` header in order) that is
/// not a trusted proxy (all of them trusted: the left-most). `Err` says why it cannot be told.
pub fn client(peer: Option<IpAddr>, forwarded_for: &[&str], trusted: &[Cidr]) -> Result<IpAddr, String> {
    let peer = canonical(peer.ok_or("the connection's address is unknown")?);
    if !any(trusted, peer) {
        return Ok(peer);
    }
    let hops: Vec<&str> =
        forwarded_for.iter().flat_map(|h| h.split(',')).map(str::trim).filter(|h| !h.is_empty()).collect();
    if hops.is_empty() {
        return Err(format!("the trusted proxy {peer} did not say whom it forwards (no X-Forwarded-For)"));
    }
    let mut chosen = None;
    for hop in hops.iter().rev() {
        let addr = parse_hop(hop).ok_or_else(|| format!("X-Forwarded-For holds {hop:?}, not an address"))?;
        chosen = Some(addr);
        if !any(trusted, addr) {
            break;
        }
    }
    Ok(chosen.expect("at least one hop"))
}

/// One `X-Forwarded-For` entry: an address, `[v6]:port` or `v4:port`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(addr) = hop.parse::<IpAddr>() {
        return Some(canonical(addr));
    }
    if let Some(rest) = hop.strip_prefix('[') {
        return rest.split_once(']').and_then(|(a, _)| a.parse().ok()).map(canonical);
    }
    hop.rsplit_once(':').and_then(|(a, _)| a.parse::<std::net::Ipv4Addr>().ok()).map(IpAddr::V4)
}

/// Whether a delivery from `client` is let through by `allowed` (an empty list lets everyone).
pub fn allowed(allowed: &[Cidr], client: IpAddr) -> bool {
    allowed.is_empty() || any(allowed, client)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_parse_and_contain() {
        let ok = parse_list("allowed_sources", &["ok".into()]).unwrap();
        assert_eq!(ok.len(), 3);
        assert!(allowed(&ok, ip("217.20.145.193")));
        assert!(allowed(&ok, ip("217.20.145.207")));
        assert!(!allowed(&ok, ip("217.20.145.208")), "a /28 is 16 addresses");
        assert!(allowed(&ok, ip("217.20.153.50")));
        assert!(allowed(&ok, ip("::ffff:217.20.151.161")), "IPv4-mapped IPv6");
        assert!(!allowed(&ok, ip("127.0.0.1")));
        assert!(allowed(&[], ip("203.0.113.7")), "no list: everyone");

        let mine =
            parse_list("x", &["10.0.0.0/8".into(), "2001:db8::/32".into(), "192.0.2.7".into(), "0.0.0.0/0".into()])
                .unwrap();
        assert!(mine[0].contains(ip("10.200.3.4")) && !mine[0].contains(ip("11.0.0.1")));
        assert!(mine[1].contains(ip("2001:db8:ffff::1")) && !mine[1].contains(ip("2001:db9::1")));
        assert!(mine[2].contains(ip("192.0.2.7")) && !mine[2].contains(ip("192.0.2.8")));
        assert!(mine[3].contains(ip("8.8.8.8")) && !mine[3].contains(ip("::1")), "v4 ranges hold v4 only");
        assert_eq!(mine[0].to_string(), "10.0.0.0/8");

        assert!(Cidr::parse("10.0.0.1/8").unwrap_err().contains("host bits"));
        assert!(Cidr::parse("10.0.0.0/33").unwrap_err().contains("prefix"));
        assert!(Cidr::parse("example.com").is_err());
        assert!(parse_list("trusted_proxies", &["nope".into()]).unwrap_err().starts_with("trusted_proxies"));
    }

    #[test]
    fn the_client_behind_trusted_proxies() {
        let trusted = parse_list("t", &["127.0.0.1/32".into(), "10.0.0.0/8".into()]).unwrap();
        // not behind a proxy: the peer, whatever the header says
        assert_eq!(client(Some(ip("217.20.145.200")), &["1.2.3.4"], &trusted).unwrap(), ip("217.20.145.200"));
        assert_eq!(client(Some(ip("203.0.113.9")), &[], &[]).unwrap(), ip("203.0.113.9"));
        // behind: the first untrusted from the right, so a forged left part does not count
        assert_eq!(client(Some(ip("127.0.0.1")), &["217.20.145.200"], &trusted).unwrap(), ip("217.20.145.200"));
        assert_eq!(
            client(Some(ip("127.0.0.1")), &["217.20.145.200, 203.0.113.7, 10.1.1.1"], &trusted).unwrap(),
            ip("203.0.113.7"),
            "the forged 217.20.145.200 on the left is not believed"
        );
        assert_eq!(
            client(Some(ip("10.0.0.2")), &["217.20.145.200", "10.9.9.9"], &trusted).unwrap(),
            ip("217.20.145.200"),
            "headers in order"
        );
        assert_eq!(
            client(Some(ip("127.0.0.1")), &["10.1.1.1, 10.2.2.2"], &trusted).unwrap(),
            ip("10.1.1.1"),
            "all trusted: the left-most"
        );
        assert_eq!(client(Some(ip("127.0.0.1")), &["[2001:db8::7]:4711"], &trusted).unwrap(), ip("2001:db8::7"));
        assert_eq!(client(Some(ip("127.0.0.1")), &["203.0.113.7:4711"], &trusted).unwrap(), ip("203.0.113.7"));
        assert!(client(Some(ip("127.0.0.1")), &[], &trusted).unwrap_err().contains("X-Forwarded-For"));
        assert!(client(Some(ip("127.0.0.1")), &["unknown"], &trusted).is_err());
        assert!(client(None, &[], &trusted).is_err());
        assert_eq!(client(Some(ip("::ffff:127.0.0.1")), &["203.0.113.7"], &trusted).unwrap(), ip("203.0.113.7"));
    }
}
