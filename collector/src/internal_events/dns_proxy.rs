//! `dns_proxy`: each query it answers, by outcome.

use tracing::{debug, error, warn};

use super::{Counter, InternalEvent, Registry, Throttle};

/// How the proxy answered a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsProxyOutcome {
    /// An upstream's answer, about no name under a domain rule, passed on.
    Answered,
    /// An answer about a name under a domain rule, passed on once its
    /// addresses were in force.
    RuleHit,
    /// SERVFAIL: no upstream answered.
    UpstreamFailure,
    /// SERVFAIL: the answer's addresses could not be put in force.
    NotInForce,
}

impl DnsProxyOutcome {
    pub const ALL: [DnsProxyOutcome; 4] = [
        DnsProxyOutcome::Answered,
        DnsProxyOutcome::RuleHit,
        DnsProxyOutcome::UpstreamFailure,
        DnsProxyOutcome::NotInForce,
    ];

    /// Its counter in the registry.
    pub fn counter(self) -> Counter {
        match self {
            DnsProxyOutcome::Answered => Counter::DnsProxyAnswered,
            DnsProxyOutcome::RuleHit => Counter::DnsProxyRuleHits,
            DnsProxyOutcome::UpstreamFailure => Counter::DnsProxyUpstreamFailures,
            DnsProxyOutcome::NotInForce => Counter::DnsProxyNotInForce,
        }
    }

    /// Its value of `safeguard.dns_proxy.outcome`.
    pub fn name(self) -> &'static str {
        use semconv::dns_proxy_outcome as o;
        match self {
            DnsProxyOutcome::Answered => o::ANSWERED,
            DnsProxyOutcome::RuleHit => o::RULE_HIT,
            DnsProxyOutcome::UpstreamFailure => o::UPSTREAM_FAILURE,
            DnsProxyOutcome::NotInForce => o::NOT_IN_FORCE,
        }
    }
}

/// One query answered.
pub struct DnsProxyAnswered<'a> {
    pub outcome: DnsProxyOutcome,
    /// The name asked about (for the log only).
    pub name: &'a str,
}

impl InternalEvent for DnsProxyAnswered<'_> {
    fn emit(self, registry: &Registry) {
        let n = registry.add(self.outcome.counter(), 1);
        let name = self.name;
        match self.outcome {
            DnsProxyOutcome::Answered | DnsProxyOutcome::RuleHit => {
                debug!(name, outcome = self.outcome.name(), "dns_proxy: answered");
            }
            DnsProxyOutcome::UpstreamFailure => {
                if Throttle::DOUBLING.allows(n) {
                    warn!(
                        failures = n,
                        "dns_proxy: no upstream answered for {name}: SERVFAIL"
                    );
                }
            }
            DnsProxyOutcome::NotInForce => {
                if Throttle::DOUBLING.allows(n) {
                    error!(
                        failures = n,
                        "dns_proxy: the addresses of {name} could not be put in force: SERVFAIL"
                    );
                }
            }
        }
    }
}
