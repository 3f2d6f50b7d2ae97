//! Common slots: times on a step grid when everyone listed is available and
//! none of them is in another session.
//!
//! Why interval arithmetic rather than trying every grid point: the free
//! time of all people is intersected once and the busy sessions (widened by
//! the requested gap) are cut out of it, so the cost grows with the number
//! of windows and sessions, not with the length of the range. A property
//! test checks the result against trying every grid point.
//!
//! Pure: availability and sessions come in as intervals; no clock.

use chrono::{DateTime, Duration, Utc};

use super::availability::{merge, Interval};

/// What to look for. The grid starts at `from`: slots start at `from`,
/// `from + step`, `from + 2·step`, … and end by `to`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SlotQuery {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub duration: Duration,
    pub step: Duration,
    /// Buffer kept free before and after every busy session.
    pub gap: Duration,
    pub limit: usize,
}

/// The spans covered by every list of `lists` (each sorted and disjoint).
fn intersect(lists: &[Vec<Interval>]) -> Vec<Interval> {
    let Some((first, rest)) = lists.split_first() else {
        return Vec::new();
    };
    rest.iter().fold(first.clone(), |acc, other| {
        let (mut i, mut j, mut out) = (0, 0, Vec::new());
        while i < acc.len() && j < other.len() {
            let start = acc[i].0.max(other[j].0);
            let end = acc[i].1.min(other[j].1);
            if start < end {
                out.push((start, end));
            }
            if acc[i].1 < other[j].1 {
                i += 1;
            } else {
                j += 1;
            }
        }
        out
    })
}

/// `free` (sorted, disjoint) minus `busy` (sorted, disjoint).
fn subtract(free: &[Interval], busy: &[Interval]) -> Vec<Interval> {
    let mut out = Vec::new();
    for &(mut start, end) in free {
        for &(b_start, b_end) in busy {
            if b_end <= start || b_start >= end {
                continue;
            }
            if b_start > start {
                out.push((start, b_start));
            }
            start = start.max(b_end);
        }
        if start < end {
            out.push((start, end));
        }
    }
    out
}

/// The slots, in time order: each lies inside every person's availability
/// (`available`, one list per person, each sorted and disjoint) and keeps
/// `gap` away from every interval of `busy`.
pub(crate) fn common_slots(
    query: &SlotQuery,
    available: &[Vec<Interval>],
    busy: &[Interval],
) -> Vec<Interval> {
    let busy = merge(
        busy.iter()
            .map(|(s, e)| (*s - query.gap, *e + query.gap))
            .collect(),
    );
    let free = subtract(&intersect(available), &busy);
    let step_ms = query.step.num_milliseconds().max(1);
    let mut slots = Vec::new();
    for (start, end) in free {
        let start = start.max(query.from);
        let end = end.min(query.to);
        // The first grid point at or after `start`.
        let offset = (start - query.from).num_milliseconds();
        let k = (offset + step_ms - 1).div_euclid(step_ms);
        let mut t = query.from + Duration::milliseconds(k * step_ms);
        while t + query.duration <= end {
            if slots.len() == query.limit {
                return slots;
            }
            slots.push((t, t + query.duration));
            t += query.step;
        }
    }
    slots
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::availability::AvailabilityRequest;
    use proptest::prelude::*;
    use serde_json::json;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn query(from: &str, to: &str, minutes: i64) -> SlotQuery {
        SlotQuery {
            from: t(from),
            to: t(to),
            duration: Duration::minutes(minutes),
            step: Duration::minutes(15),
            gap: Duration::zero(),
            limit: 100,
        }
    }

    fn availability(body: serde_json::Value) -> super::super::availability::Availability {
        serde_json::from_value::<AvailabilityRequest>(body)
            .unwrap()
            .validate()
            .unwrap()
    }

    #[test]
    fn a_day_where_a_60_minute_slot_fits_exactly() {
        let q = query("2026-12-07T00:00:00Z", "2026-12-08T00:00:00Z", 60);
        let a = vec![(t("2026-12-07T18:00:00Z"), t("2026-12-07T19:00:00Z"))];
        assert_eq!(common_slots(&q, std::slice::from_ref(&a), &[]), a);
        // One minute less and nothing fits.
        let short = vec![(t("2026-12-07T18:00:00Z"), t("2026-12-07T18:59:00Z"))];
        assert!(common_slots(&q, &[short], &[]).is_empty());
    }

    #[test]
    fn partners_in_two_time_zones_meet_where_their_evenings_overlap() {
        // New York 17:00-21:00 is 22:00-02:00 UTC in December;
        // London 20:00-23:00 is 20:00-23:00 UTC: they share 22:00-23:00.
        let ny = availability(json!({"timezone": "America/New_York",
            "weekly": [{"day": "mon", "start": "17:00", "end": "21:00"}]}));
        let london = availability(json!({"timezone": "Europe/London",
            "weekly": [{"day": "mon", "start": "20:00", "end": "23:00"}]}));
        let q = query("2026-12-07T00:00:00Z", "2026-12-08T12:00:00Z", 60);
        let lists = [ny.intervals(q.from, q.to), london.intervals(q.from, q.to)];
        assert_eq!(
            common_slots(&q, &lists, &[]),
            vec![(t("2026-12-07T22:00:00Z"), t("2026-12-07T23:00:00Z"))]
        );
    }

    #[test]
    fn an_exception_that_removes_a_day_leaves_no_slot_on_it() {
        let a = availability(json!({"timezone": "America/New_York",
            "weekly": [{"day": "thu", "start": "18:00", "end": "21:00"}],
            "exceptions": [{"date": "2026-12-24", "available": false}]}));
        let q = query("2026-12-20T00:00:00Z", "2027-01-03T00:00:00Z", 180);
        let slots = common_slots(&q, &[a.intervals(q.from, q.to)], &[]);
        assert_eq!(
            slots,
            vec![(t("2026-12-31T23:00:00Z"), t("2027-01-01T02:00:00Z"))]
        );
    }

    #[test]
    fn sessions_and_their_gap_are_kept_free() {
        let mut q = query("2026-12-07T00:00:00Z", "2026-12-08T00:00:00Z", 60);
        q.gap = Duration::minutes(15);
        let a = vec![(t("2026-12-07T09:00:00Z"), t("2026-12-07T13:00:00Z"))];
        let busy = [(t("2026-12-07T10:00:00Z"), t("2026-12-07T11:00:00Z"))];
        let starts: Vec<_> = common_slots(&q, &[a], &busy)
            .into_iter()
            .map(|(s, _)| s.format("%H:%M").to_string())
            .collect();
        assert_eq!(starts, ["11:15", "11:30", "11:45", "12:00"]);
    }

    #[test]
    fn the_limit_keeps_the_earliest() {
        let mut q = query("2026-12-07T00:00:00Z", "2026-12-08T00:00:00Z", 30);
        q.limit = 2;
        let a = vec![(t("2026-12-07T09:00:00Z"), t("2026-12-07T12:00:00Z"))];
        let got = common_slots(&q, &[a], &[]);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0, t("2026-12-07T09:00:00Z"));
        assert_eq!(got[1].0, t("2026-12-07T09:15:00Z"));
    }

    /// Spans on a minute grid from a base time, sorted and disjoint.
    fn spans(max: usize) -> impl Strategy<Value = Vec<Interval>> {
        prop::collection::vec((0i64..3000, 1i64..400), 0..max).prop_map(|raw| {
            let base = t("2026-12-07T00:00:00Z");
            merge(
                raw.into_iter()
                    .map(|(s, len)| {
                        (
                            base + Duration::minutes(s),
                            base + Duration::minutes(s + len),
                        )
                    })
                    .collect(),
            )
        })
    }

    proptest! {
        #[test]
        fn every_slot_is_valid_and_no_valid_grid_slot_is_missed(
            people in prop::collection::vec(spans(6), 1..4),
            busy in spans(5),
            from in 0i64..600,
            len in 30i64..3000,
            duration in 5i64..240,
            step in prop::sample::select(vec![5i64, 10, 15, 30, 60]),
            gap in prop::sample::select(vec![0i64, 5, 15]),
        ) {
            let base = t("2026-12-07T00:00:00Z");
            let q = SlotQuery {
                from: base + Duration::minutes(from),
                to: base + Duration::minutes(from + len),
                duration: Duration::minutes(duration),
                step: Duration::minutes(step),
                gap: Duration::minutes(gap),
                limit: usize::MAX,
            };
            let got = common_slots(&q, &people, &busy);
            // Every grid point, tried one by one.
            let mut expected = Vec::new();
            let mut s = q.from;
            while s + q.duration <= q.to {
                let e = s + q.duration;
                let everyone = people.iter().all(|list| list.iter().any(|(a, b)| *a <= s && e <= *b));
                let clear = busy.iter().all(|(b0, b1)| e + q.gap <= *b0 || *b1 + q.gap <= s);
                if everyone && clear {
                    expected.push((s, e));
                }
                s += q.step;
            }
            prop_assert_eq!(got, expected);
        }
    }
}
