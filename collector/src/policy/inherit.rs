//! The nearest deny and allow rule for each entry of a prefix trie (path
//! prefixes, networks), in one pass over the entries in order.

use collector_common::PathRule;

/// Fills each entry's missing deny and allow rule from the nearest entry
/// that contains it. `entries` must be sorted so that every entry comes
/// after the entries containing it, and the entries an entry contains
/// follow it without a gap (byte order does this for path keys, address
/// then prefix length for networks).
///
/// The entries containing the current one are kept on a stack, deepest on
/// top: each entry is pushed and popped once, so the cost is one
/// `contains` per step, whatever the depth of nesting.
pub(super) fn nearest<K>(entries: &mut [(K, PathRule)], contains: impl Fn(&K, &K) -> bool) {
    let mut ancestors: Vec<usize> = Vec::new();
    for i in 0..entries.len() {
        while let Some(&top) = ancestors.last() {
            if contains(&entries[top].0, &entries[i].0) {
                break;
            }
            ancestors.pop();
        }
        if let Some(&top) = ancestors.last() {
            // The top's rules already are its own or its nearest ancestor's.
            let inherited = entries[top].1;
            let rule = &mut entries[i].1;
            if rule.deny_rule == 0 {
                rule.deny_rule = inherited.deny_rule;
            }
            if rule.allow_rule == 0 {
                rule.allow_rule = inherited.allow_rule;
            }
        }
        ancestors.push(i);
    }
}
