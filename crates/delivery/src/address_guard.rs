//! Server-side request forgery guard: which addresses webhooks may be delivered to.
//!
//! Every range of IANA's IPv4 and IPv6 Special-Purpose Address Registries that is not
//! globally reachable is refused, by class. Link-local addresses (where cloud metadata
//! services live), unroutable ones (unspecified, "this network", multicast, broadcast)
//! and reserved ones (documentation, benchmarking, protocol assignments, future use) are
//! always refused. Private addresses (RFC 1918, shared carrier-grade NAT, unique local,
//! site-local, local-use NAT64) are refused unless private webhooks are allowed, loopback
//! unless loopback webhooks are allowed. An IPv6 address that carries an IPv4 address
//! (IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible `::a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`,
//! 6to4 `2002:aabb:ccdd::`) is judged by the IPv4 address it reaches, with the same flags.
//! The guard checks every address a host name resolves to, at each connection, so a name
//! that later resolves elsewhere (DNS rebinding) is caught. Refusals name the address
//! (or host), never the URL, whose query may hold a secret.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Which kinds of addresses webhooks may reach.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    pub allow_private: bool,
    pub allow_loopback: bool,
}

/// Why an address is not an ordinary global one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Link-local, where cloud metadata services answer: always refused.
    LinkLocal,
    /// Unspecified, "this network", multicast, broadcast: always refused.
    Unroutable,
    /// Documentation, benchmarking, protocol assignments, future use: always refused.
    Reserved,
    /// Refused unless loopback webhooks are allowed.
    Loopback,
    /// Refused unless private webhooks are allowed.
    Private,
}

impl Class {
    fn name(self) -> &'static str {
        match self {
            Class::LinkLocal => "link-local (cloud metadata)",
            Class::Unroutable => "unroutable",
            Class::Reserved => "reserved",
            Class::Loopback => "loopback",
            Class::Private => "private",
        }
    }

    fn allowed_by(self, policy: &AddressPolicy) -> bool {
        match self {
            Class::Loopback => policy.allow_loopback,
            Class::Private => policy.allow_private,
            Class::LinkLocal | Class::Unroutable | Class::Reserved => false,
        }
    }

    fn hint(self) -> &'static str {
        match self {
            Class::Loopback => "; start the server with --allow-loopback-webhooks to allow it",
            Class::Private => "; start the server with --allow-private-webhooks to allow it",
            Class::LinkLocal | Class::Unroutable | Class::Reserved => "",
        }
    }
}

/// One registry entry: a network, its prefix length, its class (`None`: a globally
/// reachable exception inside a refused range) and what it is.
type Range<A> = (A, u8, Option<Class>, &'static str);

/// IANA IPv4 Special-Purpose Address Registry, the entries not globally reachable, and
/// the exceptions inside them. The first match decides.
const V4_RANGES: &[Range<Ipv4Addr>] = &[
    (Ipv4Addr::new(192, 0, 0, 9), 32, None, "Port Control Protocol anycast"),
    (Ipv4Addr::new(192, 0, 0, 10), 32, None, "TURN anycast"),
    (
        Ipv4Addr::new(0, 0, 0, 0),
        8,
        Some(Class::Unroutable),
        "this network, 0.0.0.0/8",
    ),
    (Ipv4Addr::new(10, 0, 0, 0), 8, Some(Class::Private), "10.0.0.0/8"),
    (
        Ipv4Addr::new(100, 64, 0, 0),
        10,
        Some(Class::Private),
        "shared carrier-grade NAT, 100.64.0.0/10",
    ),
    (Ipv4Addr::new(127, 0, 0, 0), 8, Some(Class::Loopback), "127.0.0.0/8"),
    (
        Ipv4Addr::new(169, 254, 0, 0),
        16,
        Some(Class::LinkLocal),
        "169.254.0.0/16",
    ),
    (Ipv4Addr::new(172, 16, 0, 0), 12, Some(Class::Private), "172.16.0.0/12"),
    (
        Ipv4Addr::new(192, 0, 0, 0),
        24,
        Some(Class::Reserved),
        "IETF protocol assignments, 192.0.0.0/24",
    ),
    (
        Ipv4Addr::new(192, 0, 2, 0),
        24,
        Some(Class::Reserved),
        "documentation, 192.0.2.0/24",
    ),
    (
        Ipv4Addr::new(192, 88, 99, 0),
        24,
        Some(Class::Reserved),
        "6to4 relay anycast, 192.88.99.0/24",
    ),
    (
        Ipv4Addr::new(192, 168, 0, 0),
        16,
        Some(Class::Private),
        "192.168.0.0/16",
    ),
    (
        Ipv4Addr::new(198, 18, 0, 0),
        15,
        Some(Class::Reserved),
        "benchmarking, 198.18.0.0/15",
    ),
    (
        Ipv4Addr::new(198, 51, 100, 0),
        24,
        Some(Class::Reserved),
        "documentation, 198.51.100.0/24",
    ),
    (
        Ipv4Addr::new(203, 0, 113, 0),
        24,
        Some(Class::Reserved),
        "documentation, 203.0.113.0/24",
    ),
    (
        Ipv4Addr::new(224, 0, 0, 0),
        4,
        Some(Class::Unroutable),
        "multicast, 224.0.0.0/4",
    ),
    (
        Ipv4Addr::new(255, 255, 255, 255),
        32,
        Some(Class::Unroutable),
        "broadcast, 255.255.255.255",
    ),
    (
        Ipv4Addr::new(240, 0, 0, 0),
        4,
        Some(Class::Reserved),
        "future use, 240.0.0.0/4",
    ),
];

/// IANA IPv6 Special-Purpose Address Registry, as [`V4_RANGES`]. The ranges that carry an
/// IPv4 address (`::ffff:0:0/96`, `::/96`, `64:ff9b::/96`, `2002::/16`) are decoded
/// before this table is consulted.
const V6_RANGES: &[Range<Ipv6Addr>] = &[
    (
        Ipv6Addr::new(0x2001, 1, 0, 0, 0, 0, 0, 1),
        128,
        None,
        "Port Control Protocol anycast",
    ),
    (Ipv6Addr::new(0x2001, 1, 0, 0, 0, 0, 0, 2), 128, None, "TURN anycast"),
    (
        Ipv6Addr::new(0x2001, 1, 0, 0, 0, 0, 0, 3),
        128,
        None,
        "DNS-SD service registration anycast",
    ),
    (Ipv6Addr::new(0x2001, 3, 0, 0, 0, 0, 0, 0), 32, None, "AMT"),
    (Ipv6Addr::new(0x2001, 4, 0x112, 0, 0, 0, 0, 0), 48, None, "AS112-v6"),
    (Ipv6Addr::new(0x2001, 0x20, 0, 0, 0, 0, 0, 0), 28, None, "ORCHIDv2"),
    (
        Ipv6Addr::new(0x2001, 0x30, 0, 0, 0, 0, 0, 0),
        28,
        None,
        "drone remote ID",
    ),
    (Ipv6Addr::UNSPECIFIED, 128, Some(Class::Unroutable), "unspecified, ::"),
    (Ipv6Addr::LOCALHOST, 128, Some(Class::Loopback), "::1"),
    (
        Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0),
        48,
        Some(Class::Private),
        "local-use NAT64, 64:ff9b:1::/48",
    ),
    (
        Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0),
        64,
        Some(Class::Reserved),
        "discard-only, 100::/64",
    ),
    (
        Ipv6Addr::new(0x100, 0, 0, 1, 0, 0, 0, 0),
        64,
        Some(Class::Reserved),
        "dummy prefix, 100:0:0:1::/64",
    ),
    (
        Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0),
        32,
        Some(Class::Reserved),
        "documentation, 2001:db8::/32",
    ),
    (
        Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0),
        23,
        Some(Class::Reserved),
        "IETF protocol assignments, 2001::/23",
    ),
    (
        Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0),
        20,
        Some(Class::Reserved),
        "documentation, 3fff::/20",
    ),
    (
        Ipv6Addr::new(0x5f00, 0, 0, 0, 0, 0, 0, 0),
        16,
        Some(Class::Reserved),
        "segment routing SIDs, 5f00::/16",
    ),
    (
        Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0),
        7,
        Some(Class::Private),
        "unique local, fc00::/7",
    ),
    (
        Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0),
        10,
        Some(Class::LinkLocal),
        "fe80::/10",
    ),
    (
        Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0),
        10,
        Some(Class::Private),
        "site-local, fec0::/10",
    ),
    (
        Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0),
        8,
        Some(Class::Unroutable),
        "multicast, ff00::/8",
    ),
];

fn in_prefix(address: u128, network: u128, prefix: u8, bits: u32) -> bool {
    let host_bits = bits - u32::from(prefix);
    address.checked_shr(host_bits).unwrap_or(0) == network.checked_shr(host_bits).unwrap_or(0)
}

fn v4_range(ip: Ipv4Addr) -> Option<(Class, &'static str)> {
    V4_RANGES
        .iter()
        .find(|(network, prefix, ..)| in_prefix(u32::from(ip).into(), u32::from(*network).into(), *prefix, 32))
        .and_then(|(_, _, class, what)| Some(((*class)?, *what)))
}

fn v6_range(ip: Ipv6Addr) -> Option<(Class, &'static str)> {
    V6_RANGES
        .iter()
        .find(|(network, prefix, ..)| in_prefix(u128::from(ip), u128::from(*network), *prefix, 128))
        .and_then(|(_, _, class, what)| Some(((*class)?, *what)))
}

/// The IPv4 address an IPv6 address carries and reaches: IPv4-mapped (`::ffff:0:0/96`),
/// IPv4-compatible (`::/96`, but not `::` and `::1`), NAT64's well-known prefix
/// (`64:ff9b::/96`) and 6to4 (`2002::/16`, the 32 bits after the prefix).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    const MAPPED: u128 = 0xffff;
    const COMPATIBLE: u128 = 0;
    const NAT64: u128 = 0x0064_ff9b_0000_0000_0000_0000;
    let bits = u128::from(ip);
    // Truncations keep exactly the 32 bits that hold the IPv4 address.
    if ip.is_unspecified() || ip.is_loopback() {
        None
    } else if matches!(bits >> 32, MAPPED | COMPATIBLE | NAT64) {
        Some(Ipv4Addr::from(bits as u32))
    } else if ip.segments()[0] == 0x2002 {
        Some(Ipv4Addr::from((bits >> 80) as u32))
    } else {
        None
    }
}
impl AddressPolicy {
    /// Refuses `ip` with the reason, or lets it through.
    pub fn check(&self, ip: IpAddr) -> Result<(), String> {
        let (class, what, embedded) = match ip {
            IpAddr::V4(v4) => match v4_range(v4) {
                Some((class, what)) => (class, what, None),
                None => return Ok(()),
            },
            IpAddr::V6(v6) => match embedded_v4(v6) {
                Some(v4) => match v4_range(v4) {
                    Some((class, what)) => (class, what, Some(v4)),
                    None => return Ok(()),
                },
                None => match v6_range(v6) {
                    Some((class, what)) => (class, what, None),
                    None => return Ok(()),
                },
            },
        };
        if class.allowed_by(self) {
            return Ok(());
        }
        let carries = embedded.map(|v4| format!(" carries {v4}, which")).unwrap_or_default();
        Err(format!(
            "address {ip}{carries} is {} ({what}) and webhooks may not reach it{}",
            class.name(),
            class.hint()
        ))
    }

    /// Refuses a URL whose host is a literal address the policy refuses. Host names are
    /// checked by the resolver at each connection instead.
    pub fn check_literal(&self, url: &str) -> Result<(), String> {
        reqwest::Url::parse(url).map_or(Ok(()), |url| self.check_literal_url(&url))
    }

    /// [`Self::check_literal`] for a URL parsed once and used for many requests.
    pub fn check_literal_url(&self, url: &reqwest::Url) -> Result<(), String> {
        let literal = url.host_str().and_then(|h| h.trim_matches(['[', ']']).parse().ok());
        literal.map_or(Ok(()), |ip| self.check(ip))
    }

    /// Refuses a URL whose host is, or resolves now to, an address the policy refuses.
    /// A host that does not resolve yet passes: every connection is checked again.
    pub async fn check_url(&self, url: &str) -> Result<(), String> {
        self.check_literal(url)?;
        let Some((host, port)) = reqwest::Url::parse(url)
            .ok()
            .and_then(|u| Some((u.host_str()?.to_owned(), u.port_or_known_default()?)))
        else {
            return Ok(());
        };
        let Ok(addresses) = tokio::net::lookup_host((host.as_str(), port)).await else {
            return Ok(());
        };
        for address in addresses {
            self.check(address.ip())
                .map_err(|reason| format!("{host} resolves to {}; {reason}", address.ip()))?;
        }
        Ok(())
    }
}

/// A DNS resolver for the webhook client that drops the addresses the policy refuses,
/// and fails when none is left.
pub struct GuardedResolver {
    pub policy: AddressPolicy,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refusal = None;
            let allowed: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|addr| match policy.check(addr.ip()) {
                    Ok(()) => true,
                    Err(reason) => {
                        refusal = Some(reason);
                        false
                    }
                })
                .collect();
            if allowed.is_empty() {
                let reason = refusal.unwrap_or_else(|| format!("{host} has no address"));
                return Err(reason.into());
            }
            let addrs: Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

impl GuardedResolver {
    pub fn shared(policy: AddressPolicy) -> Arc<GuardedResolver> {
        Arc::new(GuardedResolver { policy })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const CLOSED: AddressPolicy = AddressPolicy {
        allow_private: false,
        allow_loopback: false,
    };
    const PRIVATE: AddressPolicy = AddressPolicy {
        allow_private: true,
        allow_loopback: false,
    };
    const LOOPBACK: AddressPolicy = AddressPolicy {
        allow_private: false,
        allow_loopback: true,
    };
    const OPEN: AddressPolicy = AddressPolicy {
        allow_private: true,
        allow_loopback: true,
    };

    /// What each policy does with an address: `N` never allowed, `P` with private
    /// webhooks allowed, `L` with loopback allowed, `G` global, always allowed.
    const CASES: &[(&str, char, &str)] = &[
        // IPv4 registry.
        ("0.0.0.0", 'N', "unroutable"),
        ("0.1.2.3", 'N', "this network"),
        ("10.1.2.3", 'P', "private"),
        ("100.64.0.1", 'P', "carrier-grade NAT"),
        ("100.127.255.255", 'P', "carrier-grade NAT"),
        ("100.128.0.1", 'G', ""),
        ("127.0.0.1", 'L', "loopback"),
        ("127.255.0.9", 'L', "loopback"),
        ("169.254.169.254", 'N', "link-local (cloud metadata)"),
        ("172.16.0.1", 'P', "private"),
        ("172.31.255.255", 'P', "private"),
        ("172.32.0.1", 'G', ""),
        ("192.0.0.1", 'N', "IETF protocol assignments"),
        ("192.0.0.170", 'N', "IETF protocol assignments"),
        ("192.0.0.9", 'G', ""),
        ("192.0.0.10", 'G', ""),
        ("192.0.2.1", 'N', "documentation"),
        ("192.88.99.1", 'N', "6to4 relay"),
        ("192.168.1.1", 'P', "private"),
        ("198.18.0.1", 'N', "benchmarking"),
        ("198.19.255.255", 'N', "benchmarking"),
        ("198.20.0.1", 'G', ""),
        ("198.51.100.7", 'N', "documentation"),
        ("203.0.113.7", 'N', "documentation"),
        ("224.0.0.1", 'N', "multicast"),
        ("239.255.255.250", 'N', "multicast"),
        ("240.0.0.1", 'N', "future use"),
        ("255.255.255.254", 'N', "future use"),
        ("255.255.255.255", 'N', "broadcast"),
        ("93.184.216.34", 'G', ""),
        ("8.8.8.8", 'G', ""),
        // IPv6 registry.
        ("::", 'N', "unspecified"),
        ("::1", 'L', "loopback"),
        ("100::1", 'N', "discard-only"),
        ("100:0:0:1::1", 'N', "dummy prefix"),
        ("2001::1", 'N', "IETF protocol assignments"),
        ("2001:2::1", 'N', "IETF protocol assignments"),
        ("2001:1ff::1", 'N', "IETF protocol assignments"),
        ("2001:1::1", 'G', ""),
        ("2001:1::2", 'G', ""),
        ("2001:1::4", 'N', "IETF protocol assignments"),
        ("2001:3::1", 'G', ""),
        ("2001:4:112::1", 'G', ""),
        ("2001:20::1", 'G', ""),
        ("2001:30::1", 'G', ""),
        ("2001:200::1", 'G', ""),
        ("2001:db8::1", 'N', "documentation"),
        ("3fff::1", 'N', "documentation"),
        ("3fff:fff::1", 'N', "documentation"),
        ("4000::1", 'G', ""),
        ("5f00::1", 'N', "segment routing"),
        ("fc00::1", 'P', "unique local"),
        ("fd12:3456::1", 'P', "unique local"),
        ("fe80::1", 'N', "link-local (cloud metadata)"),
        ("febf::1", 'N', "link-local (cloud metadata)"),
        ("fec0::1", 'P', "site-local"),
        ("ff02::1", 'N', "multicast"),
        ("64:ff9b:1::a00:1", 'P', "local-use NAT64"),
        ("2606:2800:220:1::1", 'G', ""),
        // IPv4 carried in IPv6 is judged as that IPv4 address.
        ("::ffff:127.0.0.1", 'L', "carries 127.0.0.1, which is loopback"),
        ("::ffff:10.0.0.1", 'P', "carries 10.0.0.1, which is private"),
        (
            "::ffff:169.254.169.254",
            'N',
            "carries 169.254.169.254, which is link-local",
        ),
        ("::ffff:198.18.0.1", 'N', "benchmarking"),
        ("::ffff:93.184.216.34", 'G', ""),
        ("::127.0.0.1", 'L', "carries 127.0.0.1, which is loopback"),
        ("::169.254.169.254", 'N', "link-local"),
        ("::0.0.0.2", 'N', "this network"),
        ("::93.184.216.34", 'G', ""),
        ("64:ff9b::127.0.0.1", 'L', "carries 127.0.0.1, which is loopback"),
        ("64:ff9b::10.0.0.1", 'P', "private"),
        ("64:ff9b::169.254.169.254", 'N', "link-local"),
        ("64:ff9b::240.0.0.1", 'N', "future use"),
        ("64:ff9b::93.184.216.34", 'G', ""),
        ("2002:7f00:1::", 'L', "carries 127.0.0.1, which is loopback"),
        ("2002:a9fe:a9fe::1", 'N', "carries 169.254.169.254, which is link-local"),
        ("2002:c0a8:101::", 'P', "carries 192.168.1.1, which is private"),
        ("2002:c633:6407:1::", 'N', "documentation"),
        ("2002:5db8:d822::1", 'G', ""),
    ];

    #[test]
    fn every_special_purpose_range_is_judged_with_the_flags_of_its_class() {
        for &(address, allowed, needle) in CASES {
            let verdicts = [CLOSED, PRIVATE, LOOPBACK, OPEN].map(|policy| policy.check(ip(address)));
            let expected = match allowed {
                'G' => [true, true, true, true],
                'P' => [false, true, false, true],
                'L' => [false, false, true, true],
                'N' => [false, false, false, false],
                other => panic!("unknown verdict {other}"),
            };
            assert_eq!(
                verdicts.each_ref().map(Result::is_ok),
                expected,
                "{address}: {verdicts:?}"
            );
            if let Err(message) = &verdicts[0] {
                assert!(message.contains(needle), "{address}: {message}");
                assert!(message.starts_with(&format!("address {}", ip(address))), "{message}");
            }
        }
    }

    #[test]
    fn refusals_say_which_flag_allows_the_address() {
        let message = CLOSED.check(ip("::ffff:127.0.0.1")).unwrap_err();
        assert_eq!(
            message,
            "address ::ffff:127.0.0.1 carries 127.0.0.1, which is loopback (127.0.0.0/8) and webhooks may not \
             reach it; start the server with --allow-loopback-webhooks to allow it"
        );
        let message = CLOSED.check(ip("10.1.2.3")).unwrap_err();
        assert!(message.ends_with("--allow-private-webhooks to allow it"), "{message}");
        let message = OPEN.check(ip("169.254.169.254")).unwrap_err();
        assert!(!message.contains("--allow"), "nothing allows metadata: {message}");
    }

    #[test]
    fn literal_hosts_are_checked_and_refusals_keep_the_query_out() {
        for url in [
            "http://127.0.0.1:8080/hook?code=s3cret",
            "http://[::ffff:127.0.0.1]/hook?code=s3cret",
            "http://[64:ff9b::7f00:1]/hook?code=s3cret",
            "http://2130706433/hook?code=s3cret",
            "https://198.18.0.1/hook?code=s3cret",
        ] {
            let message = CLOSED.check_literal(url).unwrap_err();
            assert!(
                !message.contains("s3cret") && !message.contains("/hook"),
                "{url}: {message}"
            );
        }
        assert!(CLOSED.check_literal("https://93.184.216.34/hook?code=s3cret").is_ok());
        assert!(LOOPBACK.check_literal("http://[::ffff:127.0.0.1]:9/").is_ok());
        // Names are checked at connection time, by the resolver.
        assert!(CLOSED.check_literal("https://example.com/hook").is_ok());
    }
}
