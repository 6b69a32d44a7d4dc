//! Domain rules: the allowed and denied names of `network.domain` are
//! resolved (A and AAAA) with hickory-resolver, again when their answers'
//! TTL runs out, and every change of addresses is handed to the agent,
//! which puts a policy with the new addresses in force. Addresses a name no
//! longer resolves to are dropped (safeguard kept them forever); when a
//! lookup fails, the name keeps its last addresses until it answers again.

pub mod proxy;

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use hickory_resolver::{
    TokioResolver,
    config::{LookupIpStrategy, NameServerConfig, NameServerConfigGroup, ResolverConfig},
    name_server::TokioConnectionProvider,
    proto::xfer::Protocol,
};
use tokio::{sync::mpsc, time::Instant};
use tracing::{debug, warn};

/// Addresses per name, sorted.
pub type Resolved = BTreeMap<String, Vec<IpAddr>>;

/// How long an address `dns_proxy` answered stays in force past its TTL:
/// clients keep answers longer than they are told (and a denied address
/// kept too long refuses only what its name once answered).
pub const LEARNED_GRACE: Duration = Duration::from_secs(600);
/// Addresses kept per name from the proxy's answers; past it, those that
/// expire first go.
pub const LEARNED_PER_NAME_MAX: usize = 4096;

/// Addresses `dns_proxy` answered for names under domain rules, each until
/// it expires; in force together with what the names resolve to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Learned(BTreeMap<String, BTreeMap<IpAddr, Instant>>);

impl Learned {
    /// Keeps `addrs` of `name` until `until` (or later, if they already
    /// were).
    pub fn add(&mut self, name: &str, addrs: &[IpAddr], until: Instant) {
        let kept = self.0.entry(name.to_string()).or_default();
        for &ip in addrs {
            let at = kept.entry(ip).or_insert(until);
            *at = (*at).max(until);
        }
        while kept.len() > LEARNED_PER_NAME_MAX {
            let Some((&first, _)) = kept.iter().min_by_key(|(_, until)| **until) else {
                break;
            };
            kept.remove(&first);
        }
    }

    /// Drops what has expired by `now`; true if anything was.
    pub fn expire(&mut self, now: Instant) -> bool {
        let before = self.len();
        for kept in self.0.values_mut() {
            kept.retain(|_, until| *until > now);
        }
        self.0.retain(|_, kept| !kept.is_empty());
        self.len() != before
    }

    /// Addresses kept, over every name.
    pub fn len(&self) -> usize {
        self.0.values().map(BTreeMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `resolved` with these addresses added to their names'.
    pub fn merged(&self, resolved: &Resolved) -> Resolved {
        let mut out = resolved.clone();
        for (name, kept) in &self.0 {
            let addrs = out.entry(name.clone()).or_default();
            addrs.extend(kept.keys());
            addrs.sort();
            addrs.dedup();
        }
        out
    }

    /// Forgets names no rule has any longer.
    pub fn keep_names(&mut self, names: &[String]) {
        self.0.retain(|name, _| names.contains(name));
    }
}

/// Bounds on how soon a name is looked up again.
const MIN_REFRESH: Duration = Duration::from_secs(1);
const MAX_REFRESH: Duration = Duration::from_secs(3600);
/// After a failed lookup.
const RETRY: Duration = Duration::from_secs(30);

/// A resolver for `nameservers`, or the system's (/etc/resolv.conf) when
/// there are none.
pub fn resolver(nameservers: &[SocketAddr]) -> anyhow::Result<TokioResolver> {
    let mut builder = if nameservers.is_empty() {
        TokioResolver::builder_tokio()
            .map_err(|e| anyhow::anyhow!("cannot read the system's resolver configuration: {e}"))?
    } else {
        let mut group = NameServerConfigGroup::new();
        for addr in nameservers {
            group.push(NameServerConfig::new(*addr, Protocol::Udp));
            group.push(NameServerConfig::new(*addr, Protocol::Tcp));
        }
        TokioResolver::builder_with_config(
            ResolverConfig::from_parts(None, vec![], group),
            TokioConnectionProvider::default(),
        )
    };
    let options = builder.options_mut();
    options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    options.timeout = Duration::from_secs(2);
    options.attempts = 2;
    Ok(builder.build())
}

/// Looks every name up once: the addresses found (a name that fails keeps
/// `previous`'s) and when to look again.
pub async fn resolve_all(
    resolver: &TokioResolver,
    names: &[String],
    previous: &Resolved,
) -> (Resolved, Instant) {
    let mut out = Resolved::new();
    let mut next = Instant::now() + MAX_REFRESH;
    for name in names {
        // A fully qualified name: no search domains.
        let fqdn = format!("{}.", name.trim_end_matches('.'));
        match resolver.lookup_ip(fqdn.as_str()).await {
            Ok(lookup) => {
                let mut addrs: Vec<IpAddr> = lookup.iter().collect();
                addrs.sort();
                addrs.dedup();
                let valid = lookup.valid_until().into();
                next = next.min(valid);
                debug!(name, ?addrs, "resolved");
                out.insert(name.clone(), addrs);
            }
            Err(e) => {
                warn!("cannot resolve {name} (network.domain): {e}; keeping its last addresses");
                next = next.min(Instant::now() + RETRY);
                if let Some(addrs) = previous.get(name) {
                    out.insert(name.clone(), addrs.clone());
                }
            }
        }
    }
    let now = Instant::now();
    (out, next.clamp(now + MIN_REFRESH, now + MAX_REFRESH))
}

/// Keeps `names` resolved, sending the whole set whenever it changes.
/// `first` is what the agent started with.
pub async fn watch(
    resolver: TokioResolver,
    names: Vec<String>,
    mut current: Resolved,
    mut next: Instant,
    updates: mpsc::Sender<Resolved>,
) {
    loop {
        tokio::time::sleep_until(next).await;
        let (resolved, when) = resolve_all(&resolver, &names, &current).await;
        next = when;
        if resolved != current {
            current = resolved.clone();
            if updates.send(resolved).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learned_addresses_join_the_resolved_ones_until_they_expire() {
        let now = Instant::now();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let resolved = Resolved::from([("x.test".to_string(), vec![a])]);
        let mut learned = Learned::default();
        learned.add("x.test", &[b, a], now + Duration::from_secs(5));
        learned.add("y.test", &[b], now + Duration::from_secs(60));
        let merged = learned.merged(&resolved);
        assert_eq!(merged["x.test"], [a, b]);
        assert_eq!(merged["y.test"], [b]);
        assert!(!learned.expire(now));
        assert!(learned.expire(now + Duration::from_secs(10)));
        assert_eq!(learned.merged(&resolved)["x.test"], [a]);
        assert_eq!(learned.len(), 1);
        learned.keep_names(&["x.test".to_string()]);
        assert!(learned.is_empty());
    }

    #[test]
    fn a_name_keeps_at_most_its_bound_the_latest_to_expire() {
        let now = Instant::now();
        let mut learned = Learned::default();
        for i in 0..LEARNED_PER_NAME_MAX as u32 + 10 {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            learned.add("x.test", &[ip], now + Duration::from_secs(u64::from(i)));
        }
        assert_eq!(learned.len(), LEARNED_PER_NAME_MAX);
        let merged = learned.merged(&Resolved::new());
        assert_eq!(merged["x.test"][0], IpAddr::from([10, 0, 0, 10]));
    }
}
