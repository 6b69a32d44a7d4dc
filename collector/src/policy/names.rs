//! Program-name rules (exec allow/deny by the name a program is run as) →
//! hash map entries keyed by the NUL-padded name.

use std::collections::HashMap;

use collector_common::{NAME_KEY_LEN, NameKey, PathRule};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameRules {
    by_name: HashMap<String, PathRule>,
}

impl NameRules {
    /// `deny` and `allow` are `(rule id, name)`; names are validated to fit.
    pub fn build(deny: &[(u32, &str)], allow: &[(u32, &str)]) -> Self {
        let mut by_name: HashMap<String, PathRule> = HashMap::new();
        for (id, name) in deny {
            let slot = by_name.entry(name.to_string()).or_default();
            if slot.deny_rule == 0 {
                slot.deny_rule = *id;
            }
        }
        for (id, name) in allow {
            let slot = by_name.entry(name.to_string()).or_default();
            if slot.allow_rule == 0 {
                slot.allow_rule = *id;
            }
        }
        Self { by_name }
    }

    /// Map entries: one per distinct name.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    pub fn entries(&self) -> Vec<(NameKey, PathRule)> {
        self.by_name
            .iter()
            .map(|(name, rule)| {
                let mut key = [0u8; NAME_KEY_LEN];
                key[..name.len()].copy_from_slice(name.as_bytes());
                (key, *rule)
            })
            .collect()
    }

    #[cfg(test)]
    pub fn lookup(&self, name: &str) -> Option<&PathRule> {
        self.by_name.get(name)
    }
}
