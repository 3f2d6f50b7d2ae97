//! The ledger's chain, verified on a schedule (`attendance.verify_every_secs`,
//! hourly by default), so that a break is told without anyone asking: an
//! error in the log and a `ledger.verify_failed` webhook, as the REST
//! verify does.
//!
//! [`ChainWatch`] decides what a verification means, given what earlier
//! ones showed; it keeps no clock and does no I/O. A break is reported once,
//! not at every check while it lasts (a pager that repeats every hour is
//! switched off); a different break is reported again. It also catches the
//! one change the chain itself cannot show: a ledger that is shorter than
//! one this node verified earlier (its newest events cut off), which
//! otherwise only a head kept elsewhere reveals (docs/compliance.md).

use chrono::{DateTime, Utc};

use super::ledger::Verification;

/// A break to report: the first event that does not hold, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Break {
    pub seq: i64,
    pub expected_seq: i64,
    pub problem: String,
}

/// What the checks of one node have seen.
#[derive(Debug, Default)]
pub(crate) struct ChainWatch {
    /// The break last reported, while it lasts.
    reported: Option<Break>,
    /// The longest sound chain verified, and when.
    longest: Option<(i64, DateTime<Utc>)>,
}

impl ChainWatch {
    /// What the verification made at `now` means: a break not reported
    /// yet, or nothing.
    pub(crate) fn observe(
        &mut self,
        verification: &Verification,
        now: DateTime<Utc>,
    ) -> Option<Break> {
        let found = match verification {
            Verification::Broken {
                seq,
                expected_seq,
                problem,
            } => Some(Break {
                seq: *seq,
                expected_seq: *expected_seq,
                problem: problem.clone(),
            }),
            Verification::Ok { events, .. } => match self.longest {
                Some((longest, at)) if *events < longest => Some(Break {
                    seq: events + 1,
                    expected_seq: events + 1,
                    problem: format!(
                        "the ledger ends at event {events}, but {longest} events were verified at {}: \
                         the newest events are missing",
                        at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    ),
                }),
                _ => {
                    self.longest = Some((*events, now));
                    None
                }
            },
        };
        match found {
            Some(found) if self.reported.as_ref() == Some(&found) => None,
            Some(found) => {
                self.reported = Some(found.clone());
                Some(found)
            }
            None => {
                self.reported = None;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        format!("2030-03-02T{s}Z").parse().unwrap()
    }

    fn ok(events: i64) -> Verification {
        Verification::Ok {
            events,
            head: format!("head-{events}"),
        }
    }

    fn broken(seq: i64) -> Verification {
        Verification::Broken {
            seq,
            expected_seq: seq,
            problem: "its content does not match its hash".into(),
        }
    }

    #[test]
    fn a_break_is_reported_once_while_it_lasts_and_a_new_one_again() {
        let mut watch = ChainWatch::default();
        assert_eq!(watch.observe(&ok(10), t("09:00:00")), None);
        let first = watch.observe(&broken(2), t("10:00:00")).unwrap();
        assert_eq!((first.seq, first.expected_seq), (2, 2));
        assert_eq!(
            watch.observe(&broken(2), t("11:00:00")),
            None,
            "the same break"
        );
        assert_eq!(watch.observe(&broken(7), t("12:00:00")).unwrap().seq, 7);
    }

    #[test]
    fn a_ledger_shorter_than_one_verified_before_is_a_break() {
        let mut watch = ChainWatch::default();
        assert_eq!(watch.observe(&ok(10), t("09:00:00")), None);
        assert_eq!(
            watch.observe(&ok(12), t("10:00:00")),
            None,
            "growth is sound"
        );
        let cut = watch.observe(&ok(9), t("11:00:00")).unwrap();
        assert_eq!(cut.seq, 10);
        assert!(
            cut.problem
                .contains("ends at event 9, but 12 events were verified at 2030-03-02T10:00:00Z"),
            "{}",
            cut.problem
        );
        assert_eq!(watch.observe(&ok(9), t("12:00:00")), None, "told once");
    }

    #[test]
    fn a_repaired_chain_clears_the_report_so_a_later_break_is_told() {
        let mut watch = ChainWatch::default();
        assert!(watch.observe(&broken(2), t("09:00:00")).is_some());
        assert_eq!(watch.observe(&ok(5), t("10:00:00")), None);
        assert!(watch.observe(&broken(2), t("11:00:00")).is_some());
    }
}
