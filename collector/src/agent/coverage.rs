//! What the agent says at start-up about how this kernel covers each row
//! of the policy.

use tracing::{info, warn};

use crate::kernel::{Coverage, Reason, Row};

/// One line per row: enforced, audit only or unavailable. The reason
/// BPF-LSM is unavailable is said once, however many rows it affects.
pub fn report(rows: &[Row]) {
    let mut said = Vec::new();
    for row in rows {
        match &row.coverage {
            Coverage::Enforced { hooks } => {
                info!(tier = row.coverage.tier(), hooks = %hooks.join(","), "{}: enforced by BPF-LSM", row.name);
            }
            Coverage::AuditOnly { hooks, reason } => {
                if !said.contains(&reason) && matches!(reason, Reason::Lsm(_)) {
                    warn!("BPF-LSM unavailable: {reason}");
                    said.push(reason);
                }
                warn!(
                    tier = row.coverage.tier(),
                    hooks = %hooks.join(","),
                    "{}: audit only (fallback to tracepoints): reported, not blocked",
                    row.name
                );
            }
            Coverage::Unavailable { reason } => {
                if !said.contains(&reason) {
                    warn!("BPF-LSM unavailable: {reason}");
                    said.push(reason);
                }
                warn!(
                    tier = row.coverage.tier(),
                    "{}: unavailable on this kernel", row.name
                );
            }
            Coverage::Disabled => {}
        }
    }
}
