//! Domain rules: the allowed and denied names of `network.domain` are
//! resolved (A and AAAA) with hickory-resolver, again when their answers'
//! TTL runs out, and every change of addresses is handed to the agent,
//! which puts a policy with the new addresses in force. Addresses a name no
//! longer resolves to are dropped (safeguard kept them forever); when a
//! lookup fails, the name keeps its last addresses until it answers again.

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
