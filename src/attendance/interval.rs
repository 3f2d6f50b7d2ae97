//! Interval arithmetic for attendance: half-open `[start, end)` spans of
//! milliseconds, and sets of them.
//!
//! Attended time is `union(participant) ∩ union(clinician) ∩ window`;
//! conjoint time intersects three people; partner-only time subtracts the
//! patient. Everything an auditor checks reduces to these few operations, so
//! they live here alone, small and property-tested: the union never exceeds
//! the sum of its parts, intersection is commutative, and minutes are
//! floored, never rounded up.

use std::cmp::{max, min};

/// Milliseconds since the Unix epoch.
pub(crate) type Millis = i64;

/// `[start, end)`; empty when `end <= start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Interval {
    pub start: Millis,
    pub end: Millis,
}

impl Interval {
    pub(crate) fn new(start: Millis, end: Millis) -> Interval {
        Interval { start, end }
    }

    pub(crate) fn len(&self) -> Millis {
        max(0, self.end - self.start)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.end <= self.start
    }
}

/// A set of disjoint, non-adjacent, sorted, non-empty intervals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Intervals(Vec<Interval>);

impl Intervals {
    /// The union of any intervals (overlapping, unsorted, empty ones too).
    pub(crate) fn union_of(parts: impl IntoIterator<Item = Interval>) -> Intervals {
        let mut parts: Vec<Interval> = parts.into_iter().filter(|i| !i.is_empty()).collect();
        parts.sort();
        let mut merged: Vec<Interval> = Vec::with_capacity(parts.len());
        for part in parts {
            match merged.last_mut() {
                Some(last) if part.start <= last.end => last.end = max(last.end, part.end),
                _ => merged.push(part),
            }
        }
        Intervals(merged)
    }

    #[cfg(test)]
    pub(crate) fn as_slice(&self) -> &[Interval] {
        &self.0
    }

    /// Total length in milliseconds.
    pub(crate) fn total(&self) -> Millis {
        self.0.iter().map(Interval::len).sum()
    }

    pub(crate) fn union(&self, other: &Intervals) -> Intervals {
        Intervals::union_of(self.0.iter().chain(other.0.iter()).copied())
    }

    pub(crate) fn intersect(&self, other: &Intervals) -> Intervals {
        let (a, b) = (&self.0, &other.0);
        let (mut i, mut j) = (0, 0);
        let mut out = Vec::new();
        while i < a.len() && j < b.len() {
            let start = max(a[i].start, b[j].start);
            let end = min(a[i].end, b[j].end);
            if start < end {
                out.push(Interval { start, end });
            }
            if a[i].end < b[j].end {
                i += 1;
            } else {
                j += 1;
            }
        }
        Intervals(out)
    }

    /// What of `self` is not in `other`.
    pub(crate) fn subtract(&self, other: &Intervals) -> Intervals {
        let mut out = Vec::new();
        let mut j = 0;
        for &part in &self.0 {
            let mut start = part.start;
            while j < other.0.len() && other.0[j].end <= start {
                j += 1;
            }
            let mut k = j;
            while k < other.0.len() && other.0[k].start < part.end {
                let cut = other.0[k];
                if cut.start > start {
                    out.push(Interval {
                        start,
                        end: cut.start,
                    });
                }
                start = max(start, cut.end);
                k += 1;
            }
            if start < part.end {
                out.push(Interval {
                    start,
                    end: part.end,
                });
            }
        }
        Intervals(out)
    }

    /// The part inside `window`.
    pub(crate) fn clip(&self, window: Interval) -> Intervals {
        self.intersect(&Intervals::union_of([window]))
    }
}

/// Whole minutes in `millis`, floored: 59.999 s is 0 minutes.
pub(crate) fn floor_minutes(millis: Millis) -> i64 {
    max(0, millis) / 60_000
}

/// Whole seconds in `millis`, floored.
pub(crate) fn floor_seconds(millis: Millis) -> i64 {
    max(0, millis) / 1000
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn set(parts: &[(i64, i64)]) -> Intervals {
        Intervals::union_of(parts.iter().map(|&(s, e)| Interval::new(s, e)))
    }

    #[test]
    fn examples() {
        let a = set(&[(0, 10), (5, 20), (30, 40)]);
        assert_eq!(a, set(&[(0, 20), (30, 40)]));
        assert_eq!(a.total(), 30);
        let b = set(&[(15, 35)]);
        assert_eq!(a.intersect(&b), set(&[(15, 20), (30, 35)]));
        assert_eq!(a.subtract(&b), set(&[(0, 15), (35, 40)]));
        assert_eq!(a.clip(Interval::new(10, 32)), set(&[(10, 20), (30, 32)]));
        // Adjacent spans merge: a reconnect at the same millisecond is one stay.
        assert_eq!(set(&[(0, 10), (10, 20)]).as_slice().len(), 1);
        assert_eq!(floor_minutes(59_999), 0);
        assert_eq!(floor_minutes(60_000), 1);
        assert_eq!(floor_minutes(-5), 0);
    }

    fn arb_parts() -> impl Strategy<Value = Vec<(i64, i64)>> {
        prop::collection::vec(
            (0i64..10_000, 0i64..2_000).prop_map(|(s, l)| (s, s + l)),
            0..12,
        )
    }

    /// Membership of one millisecond, the definition everything must agree with.
    fn contains(parts: &[(i64, i64)], t: i64) -> bool {
        parts.iter().any(|&(s, e)| s <= t && t < e)
    }

    proptest! {
        #[test]
        fn the_union_never_exceeds_the_sum_of_its_parts(parts in arb_parts()) {
            let sum: i64 = parts.iter().map(|&(s, e)| e - s).sum();
            let union = set(&parts);
            prop_assert!(union.total() <= sum);
            // Disjoint, sorted, non-adjacent.
            for pair in union.as_slice().windows(2) {
                prop_assert!(pair[0].end < pair[1].start);
            }
        }

        #[test]
        fn intersection_is_commutative_and_within_both(a in arb_parts(), b in arb_parts()) {
            let (x, y) = (set(&a), set(&b));
            let ab = x.intersect(&y);
            prop_assert_eq!(&ab, &y.intersect(&x));
            prop_assert!(ab.total() <= x.total().min(y.total()));
        }

        #[test]
        fn operations_agree_with_membership(a in arb_parts(), b in arb_parts(), t in 0i64..12_000) {
            let (x, y) = (set(&a), set(&b));
            let member = |s: &Intervals| s.as_slice().iter().any(|i| i.start <= t && t < i.end);
            prop_assert_eq!(member(&x), contains(&a, t));
            prop_assert_eq!(member(&x.union(&y)), contains(&a, t) || contains(&b, t));
            prop_assert_eq!(member(&x.intersect(&y)), contains(&a, t) && contains(&b, t));
            prop_assert_eq!(member(&x.subtract(&y)), contains(&a, t) && !contains(&b, t));
        }

        #[test]
        fn subtraction_and_intersection_partition(a in arb_parts(), b in arb_parts()) {
            let (x, y) = (set(&a), set(&b));
            prop_assert_eq!(x.subtract(&y).total() + x.intersect(&y).total(), x.total());
        }

        #[test]
        fn minutes_never_round_up(ms in 0i64..100_000_000) {
            let m = floor_minutes(ms);
            prop_assert!(m * 60_000 <= ms);
            prop_assert!((m + 1) * 60_000 > ms);
        }
    }
}
