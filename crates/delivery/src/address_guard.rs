//! Server-side request forgery guard: which addresses webhooks may be delivered to.
//!
//! Link-local addresses (where cloud metadata services live), unspecified, multicast and
//! broadcast addresses are always refused. Private and shared (carrier-grade NAT)
//! addresses are refused unless private webhooks are allowed, loopback unless loopback
//! webhooks are allowed. The guard checks every address a host name resolves to, at
//! each connection, so a name that later resolves elsewhere (DNS rebinding) is caught.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Which kinds of addresses webhooks may reach.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    pub allow_private: bool,
    pub allow_loopback: bool,
}

fn v4_class(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_link_local() {
        Some("link-local (cloud metadata)")
    } else if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() || a == 0 {
        Some("unroutable")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_private() || (a == 100 && (64..128).contains(&b)) {
        Some("private")
    } else {
        None
    }
}

fn v6_class(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4_class(v4);
    }
    let first = ip.segments()[0];
    if (first & 0xffc0) == 0xfe80 {
        Some("link-local (cloud metadata)")
    } else if ip.is_unspecified() || ip.is_multicast() {
        Some("unroutable")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if (first & 0xfe00) == 0xfc00 {
        Some("private")
    } else {
        None
    }
}

impl AddressPolicy {
    /// Refuses `ip` with the reason, or lets it through.
    pub fn check(&self, ip: IpAddr) -> Result<(), String> {
        let class = match ip {
            IpAddr::V4(v4) => v4_class(v4),
            IpAddr::V6(v6) => v6_class(v6),
        };
        let refused = match class {
            None => false,
            Some("loopback") => !self.allow_loopback,
            Some("private") => !self.allow_private,
            Some(_) => true,
        };
        match class {
            Some(class) if refused => {
                let hint = match class {
                    "loopback" => "; start the server with --allow-loopback-webhooks to allow it",
                    "private" => "; start the server with --allow-private-webhooks to allow it",
                    _ => "",
                };
                Err(format!("address {ip} is {class} and webhooks may not reach it{hint}"))
            }
            _ => Ok(()),
        }
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

    #[test]
    fn metadata_and_link_local_are_always_refused() {
        let open = AddressPolicy {
            allow_private: true,
            allow_loopback: true,
        };
        for addr in [
            "169.254.169.254",
            "fe80::1",
            "0.0.0.0",
            "224.0.0.1",
            "::ffff:169.254.169.254",
            "::",
        ] {
            assert!(open.check(ip(addr)).is_err(), "{addr}");
        }
    }

    #[test]
    fn private_and_loopback_need_their_flags() {
        let closed = AddressPolicy::default();
        for addr in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "fd00::1",
            "127.0.0.1",
            "::1",
        ] {
            assert!(closed.check(ip(addr)).is_err(), "{addr}");
        }
        let message = closed.check(ip("127.0.0.1")).unwrap_err();
        assert!(message.contains("--allow-loopback-webhooks"), "{message}");
        let loopback = AddressPolicy {
            allow_loopback: true,
            ..AddressPolicy::default()
        };
        assert!(loopback.check(ip("127.0.0.1")).is_ok());
        assert!(loopback.check(ip("10.0.0.1")).is_err());
        for addr in ["93.184.216.34", "2606:2800:220:1::1"] {
            assert!(closed.check(ip(addr)).is_ok(), "{addr}");
        }
    }
}
