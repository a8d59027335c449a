//! The client address of a request, behind trusted reverse proxies.

use std::net::{IpAddr, SocketAddr};

use warp::http::HeaderMap;

/// The client IP of a request, inserted into the request's extensions by
/// `serve()` for later filters (rate limits) and shown in the access log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

/// The client of a request: the TCP peer, or, only when the peer is a trusted
/// proxy, the last address in `X-Forwarded-For` that is not itself a trusted
/// proxy (walking the chain from the right, the side our proxies appended).
/// A peer that is not trusted cannot change the answer with any header; an
/// unparsable entry stops the walk at the last address known good.
pub fn client_ip(peer: SocketAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    let peer_ip = canonical(peer.ip());
    if !trusted.iter().any(|t| canonical(*t) == peer_ip) {
        return peer_ip;
    }
    let mut client = peer_ip;
    // Several X-Forwarded-For headers are one list, in order.
    let entries: Vec<&str> =
        headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).collect();
    for entry in entries.iter().rev() {
        let Some(ip) = parse_entry(entry.trim()) else { break };
        client = ip;
        if !trusted.iter().any(|t| canonical(*t) == ip) {
            break;
        }
    }
    client
}

/// `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]:443`.
fn parse_entry(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    s.parse::<SocketAddr>().ok().map(|a| canonical(a.ip()))
}

/// IPv4-mapped IPv6 addresses (`::ffff:10.0.0.5`) as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warp::http::HeaderValue;

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", HeaderValue::from_str(v).expect("value"));
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn peer(s: &str) -> SocketAddr {
        SocketAddr::new(ip(s), 40000)
    }

    #[test]
    fn without_trusted_proxies_the_peer_is_the_client() {
        assert_eq!(client_ip(peer("192.0.2.7"), &xff(&["203.0.113.9"]), &[]), ip("192.0.2.7"));
    }

    #[test]
    fn a_spoofed_header_from_an_untrusted_peer_is_ignored() {
        let trusted = [ip("10.0.0.5")];
        assert_eq!(client_ip(peer("192.0.2.7"), &xff(&["1.1.1.1", "10.0.0.5"]), &trusted), ip("192.0.2.7"));
    }

    #[test]
    fn a_trusted_proxy_names_the_client() {
        let trusted = [ip("10.0.0.5")];
        assert_eq!(client_ip(peer("10.0.0.5"), &xff(&["203.0.113.9"]), &trusted), ip("203.0.113.9"));
        // no header: the proxy itself
        assert_eq!(client_ip(peer("10.0.0.5"), &HeaderMap::new(), &trusted), ip("10.0.0.5"));
    }

    #[test]
    fn chains_take_the_last_untrusted_address() {
        let trusted = [ip("10.0.0.5"), ip("10.0.0.6")];
        // the client spoofed 1.1.1.1; our proxies appended the real one and each other
        let h = xff(&["1.1.1.1, 203.0.113.9, 10.0.0.6"]);
        assert_eq!(client_ip(peer("10.0.0.5"), &h, &trusted), ip("203.0.113.9"));
        // the same chain over several headers
        let h = xff(&["1.1.1.1", "203.0.113.9", "10.0.0.6"]);
        assert_eq!(client_ip(peer("10.0.0.5"), &h, &trusted), ip("203.0.113.9"));
        // all trusted: the leftmost
        let h = xff(&["10.0.0.6"]);
        assert_eq!(client_ip(peer("10.0.0.5"), &h, &trusted), ip("10.0.0.6"));
    }

    #[test]
    fn garbage_stops_the_walk_at_the_last_good_address() {
        let trusted = [ip("10.0.0.5")];
        let h = xff(&["203.0.113.9, not-an-ip"]);
        assert_eq!(client_ip(peer("10.0.0.5"), &h, &trusted), ip("10.0.0.5"));
        let h = xff(&["[2001:db8::1]:443"]);
        assert_eq!(client_ip(peer("10.0.0.5"), &h, &trusted), ip("2001:db8::1"));
        // an IPv4-mapped peer matches its IPv4 proxy entry
        let h = xff(&["203.0.113.9:1234"]);
        assert_eq!(client_ip(peer("::ffff:10.0.0.5"), &h, &trusted), ip("203.0.113.9"));
    }
}
