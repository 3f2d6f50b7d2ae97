//! One room, one node: the lease of a live session.
//!
//! A live session is owned by the node holding its lease row: `holder`,
//! `epoch` and `expires_at`. The database makes claims atomic (a
//! conditional update on the epoch the claimant read, so that of two nodes
//! that read the same expired lease only one wins); these rules say what a
//! node may do with what it read:
//!
//! - [`claim`]: a lease that is absent, expired, or held by this node's own
//!   id (a previous run of it) may be taken; every claim increments the
//!   epoch, so the previous holder's writes, which carry the old epoch, are
//!   refused from then on (fencing, docs/compliance.md).
//! - [`authority`]: before every decision for a room, and at every tick,
//!   the holder asks whether it may still act. It may until
//!   [`SAFETY_MARGIN`] before the lease expires, so that a holder whose
//!   renewals stopped (a frozen process, a partition) has stopped acting
//!   before any other node can claim. The margin also absorbs clocks that
//!   differ between nodes by less than it (run NTP; docs/deployment.md).
//! - [`renewal`]: the holder renews every [`RENEW_EVERY`] while it may act;
//!   once it may not, it does not renew but gives the room up.

use chrono::{DateTime, TimeDelta, Utc};

/// How long a claim or a renewal holds. Long enough that a database
/// restart (renewals failing for up to 6 s) costs a room nothing; short
/// enough that a dead holder's rooms move within 15 s of its death.
pub const LEASE_TERM: TimeDelta = TimeDelta::seconds(10);

/// How often the holder renews: three chances before the lease runs out.
pub const RENEW_EVERY: TimeDelta = TimeDelta::seconds(2);

/// How long before expiry the holder stops acting.
pub const SAFETY_MARGIN: TimeDelta = TimeDelta::seconds(2);

/// A lease row as read from the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The node id of the holder.
    pub holder: String,
    /// Incremented by every claim; 1 for the first.
    pub epoch: i64,
    pub expires_at: DateTime<Utc>,
}

/// What a node that does not act for a room may do about its lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Take it: write this lease if the row still has the epoch read
    /// (`None`: if there is still no row).
    Take { lease: Lease, replaces: Option<i64> },
    /// Another node holds it: send the participant there.
    HeldBy { holder: String },
}

/// Whether `node` may claim the room whose lease is `current` (`None`: no
/// row yet) at `now`.
pub fn claim(current: Option<&Lease>, node: &str, now: DateTime<Utc>) -> Claim {
    let take = |epoch: i64, replaces| Claim::Take {
        lease: Lease {
            holder: node.to_owned(),
            epoch,
            expires_at: now + LEASE_TERM,
        },
        replaces,
    };
    match current {
        None => take(1, None),
        Some(lease) if lease.holder == node || lease.expires_at <= now => {
            take(lease.epoch + 1, Some(lease.epoch))
        }
        Some(lease) => Claim::HeldBy {
            holder: lease.holder.clone(),
        },
    }
}

/// Whether the holder may still act for its room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authority {
    /// It may, until `until`.
    Acts { until: DateTime<Utc> },
    /// It may not: it drops the room's participants (they reconnect and
    /// reach the new holder) and writes nothing more for it.
    Stop,
}

/// Whether `node`, holding `lease` as last written by it, may act at `now`.
pub fn authority(lease: &Lease, node: &str, now: DateTime<Utc>) -> Authority {
    let until = lease.expires_at - SAFETY_MARGIN;
    if lease.holder == node && now < until {
        Authority::Acts { until }
    } else {
        Authority::Stop
    }
}

/// The new expiry for a renewal at `now`, written only if the row still
/// has `lease`'s holder and epoch; `None` when the holder may no longer act
/// (a renewal then would revive a lease another node may be claiming).
pub fn renewal(lease: &Lease, node: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    match authority(lease, node, now) {
        Authority::Acts { .. } => Some(now + LEASE_TERM),
        Authority::Stop => None,
    }
}

/// Whether it is time to renew a lease last written at `renewed_at`.
pub fn renewal_due(renewed_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    now - renewed_at >= RENEW_EVERY
}

/// A lease this node holds for one of its rooms, kept at every tick of
/// the room: renewed while the node may act, given up once it may not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub lease: Lease,
    /// When the lease was last written (claimed or renewed).
    pub written_at: DateTime<Utc>,
}

/// What the holder does about its lease at a tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Nothing yet.
    Wait,
    /// Write this expiry (`store::renew_room_lease`); on success call
    /// [`Held::renewed`], on "row changed" give the room up; on a database
    /// error try again at the next tick.
    Renew { expires_at: DateTime<Utc> },
    /// Stop acting for the room now: its people are disconnected (they
    /// reconnect and reach the node that holds it next) and nothing more
    /// is written for it.
    GiveUp,
}

impl Held {
    pub fn new(lease: Lease, written_at: DateTime<Utc>) -> Held {
        Held { lease, written_at }
    }

    /// What to do about the lease at `now`.
    pub fn tick(&self, now: DateTime<Utc>) -> Keep {
        let me = &self.lease.holder;
        match authority(&self.lease, me, now) {
            Authority::Stop => Keep::GiveUp,
            Authority::Acts { .. } if renewal_due(self.written_at, now) => {
                match renewal(&self.lease, me, now) {
                    Some(expires_at) => Keep::Renew { expires_at },
                    None => Keep::GiveUp,
                }
            }
            Authority::Acts { .. } => Keep::Wait,
        }
    }

    /// The renewal decided at `at` was written.
    pub fn renewed(&mut self, expires_at: DateTime<Utc>, at: DateTime<Utc>) {
        self.lease.expires_at = expires_at;
        self.written_at = at;
    }

    /// Whether the holder may act for the room at `now` (every room
    /// decision and ledger write asks).
    pub fn may_act(&self, now: DateTime<Utc>) -> bool {
        matches!(
            authority(&self.lease, &self.lease.holder, now),
            Authority::Acts { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(ms: i64) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(1_800_000_000_000 + ms).unwrap()
    }

    fn held(by: &str, epoch: i64, expires_ms: i64) -> Lease {
        Lease {
            holder: by.into(),
            epoch,
            expires_at: at(expires_ms),
        }
    }

    #[test]
    fn the_first_claim_has_epoch_one_and_runs_a_term() {
        let Claim::Take { lease, replaces } = claim(None, "a", at(0)) else {
            panic!("a free room is taken")
        };
        assert_eq!(lease, held("a", 1, 10_000));
        assert_eq!(replaces, None);
    }

    #[test]
    fn a_live_lease_of_another_node_sends_the_participant_there() {
        assert_eq!(
            claim(Some(&held("a", 3, 10_000)), "b", at(9_999)),
            Claim::HeldBy { holder: "a".into() }
        );
    }

    #[test]
    fn an_expired_lease_is_taken_with_the_next_epoch() {
        let Claim::Take { lease, replaces } = claim(Some(&held("a", 3, 10_000)), "b", at(10_000))
        else {
            panic!("an expired lease is free")
        };
        assert_eq!(lease, held("b", 4, 20_000));
        assert_eq!(replaces, Some(3));
    }

    #[test]
    fn a_restarted_node_claims_its_own_lease_again_with_a_new_epoch() {
        // Its previous run's writes, with epoch 3, are refused from now on.
        let Claim::Take { lease, .. } = claim(Some(&held("a", 3, 10_000)), "a", at(1_000)) else {
            panic!("a node's own lease is its to take")
        };
        assert_eq!(lease.epoch, 4);
    }

    #[test]
    fn the_holder_stops_acting_before_anyone_else_may_claim() {
        let lease = held("a", 1, 10_000);
        assert_eq!(
            authority(&lease, "a", at(7_999)),
            Authority::Acts { until: at(8_000) }
        );
        assert_eq!(authority(&lease, "a", at(8_000)), Authority::Stop);
        // Between the holder's stop and the expiry, no one acts.
        assert_eq!(
            claim(Some(&lease), "b", at(9_999)),
            Claim::HeldBy { holder: "a".into() }
        );
        assert!(matches!(
            claim(Some(&lease), "b", at(10_000)),
            Claim::Take { .. }
        ));
    }

    #[test]
    fn a_node_never_acts_on_a_lease_held_by_another() {
        assert_eq!(
            authority(&held("a", 1, 10_000), "b", at(0)),
            Authority::Stop
        );
    }

    #[test]
    fn a_frozen_holder_does_not_renew_on_waking() {
        // Renewed at 0 (expires 10 s), frozen, wakes at 9 s: it may not act,
        // and must not revive the lease another node may have claimed.
        let lease = held("a", 1, 10_000);
        assert_eq!(renewal(&lease, "a", at(9_000)), None);
        assert_eq!(renewal(&lease, "a", at(2_000)), Some(at(12_000)));
    }

    #[test]
    fn renewals_every_two_seconds_keep_a_holder_acting_without_a_gap() {
        let mut lease = held("a", 1, 10_000);
        let mut now = at(0);
        for _ in 0..10 {
            now += RENEW_EVERY;
            assert!(renewal_due(now - RENEW_EVERY, now));
            lease.expires_at = renewal(&lease, "a", now).expect("renewed in time");
            assert!(matches!(
                authority(&lease, "a", now + RENEW_EVERY - TimeDelta::milliseconds(1)),
                Authority::Acts { .. }
            ));
        }
        assert!(!renewal_due(now, now + TimeDelta::milliseconds(1_999)));
    }

    #[test]
    fn a_kept_lease_is_renewed_every_two_seconds() {
        let mut held = Held::new(held("a", 1, 10_000), at(0));
        assert_eq!(held.tick(at(1_999)), Keep::Wait);
        assert_eq!(
            held.tick(at(2_000)),
            Keep::Renew {
                expires_at: at(12_000)
            }
        );
        held.renewed(at(12_000), at(2_000));
        assert_eq!(held.tick(at(3_000)), Keep::Wait);
        assert!(held.may_act(at(9_999)));
    }

    #[test]
    fn a_holder_whose_renewals_fail_gives_the_room_up_before_it_expires() {
        // The database did not answer from 2 s to 7 s (retried each tick):
        // a restart that short costs the room nothing.
        let held = Held::new(held("a", 1, 10_000), at(0));
        assert!(matches!(held.tick(at(7_000)), Keep::Renew { .. }));
        assert!(held.may_act(at(7_999)));
        assert_eq!(held.tick(at(8_000)), Keep::GiveUp);
        assert!(!held.may_act(at(8_000)));
    }

    #[test]
    fn a_holder_frozen_past_its_lease_gives_the_room_up_on_waking() {
        let held = Held::new(held("a", 1, 10_000), at(0));
        assert_eq!(held.tick(at(30_000)), Keep::GiveUp);
    }

    #[test]
    fn a_failover_fits_in_fifteen_seconds() {
        // The worst case: the holder dies just after a renewal; its lease
        // runs a full term, and the client's reconnect has what is left.
        assert!(LEASE_TERM + TimeDelta::seconds(5) <= TimeDelta::seconds(15));
        assert!(SAFETY_MARGIN < LEASE_TERM - RENEW_EVERY);
    }
}
