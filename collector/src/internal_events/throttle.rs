//! When a happening that can repeat is said.

/// Says the first `burst` occurrences, then the ones whose running count is
/// a power of two (…, 64, 128, 256, …): a flood costs one line per
/// doubling, and each line carries the running total. Decided on the
/// happening's counter in the [`Registry`](super::Registry), so it needs no
/// state, clock or lock of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttle {
    burst: u64,
}

impl Throttle {
    /// The 1st, 2nd, 4th, 8th, … occurrence.
    pub const DOUBLING: Throttle = Throttle { burst: 1 };

    /// Every occurrence up to `burst`, then [`Throttle::DOUBLING`].
    pub const fn after(burst: u64) -> Self {
        Self { burst }
    }

    /// Whether the occurrence that brought the count to `n` (from 1) is
    /// said.
    pub fn allows(self, n: u64) -> bool {
        n <= self.burst || n.is_power_of_two()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn said(t: Throttle, up_to: u64) -> Vec<u64> {
        (1..=up_to).filter(|n| t.allows(*n)).collect()
    }

    #[test]
    fn doubling_says_each_power_of_two() {
        assert_eq!(said(Throttle::DOUBLING, 100), [1, 2, 4, 8, 16, 32, 64]);
        // A million repeats: 20 lines.
        assert_eq!(said(Throttle::DOUBLING, 1_000_000).len(), 20);
    }

    #[test]
    fn a_burst_is_said_whole_then_doubling() {
        assert_eq!(
            said(Throttle::after(10), 100),
            [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 16, 32, 64]
        );
        assert!(Throttle::after(10).allows(1 << 40));
        assert!(!Throttle::after(10).allows((1 << 40) + 1));
    }
}
