//! Where a join goes: one room, one node.
//!
//! Whichever node a participant reaches first, everyone in a session must
//! meet in the same room. The node that took the join decides, from the
//! room's lease and the nodes' heartbeat rows:
//!
//! - the room is live here (this node holds its lease and may act): it
//!   stays here;
//! - another node holds a live lease: the participant is redirected there
//!   (`redirect` in docs/protocol.md);
//! - nobody holds it (a new room, or its holder died and the lease
//!   expired): placement picks the node ([`super::placement::place_from`]);
//!   this node claims the lease if it is the one, and otherwise redirects
//!   the participant to it, where the same rule, on the same rows, picks
//!   that node again. A node restarted under its own id takes its own
//!   lease back at once.
//!
//! Placement reads rows that move, so two nodes may pick differently for
//! a moment; the lease's conditional write still lets only one claim, and
//! the client follows at most three redirects in a row.

use chrono::{DateTime, Utc};

use super::lease::{authority, claim, Authority, Claim, Lease};
use super::placement::{place_from, NodeLoad};

/// A node as the cluster sees it: its load and where it is reached.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub load: NodeLoad,
    /// Its `node.public_url`.
    pub url: String,
}

/// What to do with a join for a room.
#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    /// This node acts for the room already.
    Here,
    /// This node takes the room: write `lease` if the row is still at
    /// `replaces` (`store::claim_room_lease`), then route again if that
    /// fails.
    Claim { lease: Lease, replaces: Option<i64> },
    /// Send the participant to the node reached at `url`.
    Redirect { node: String, url: String },
    /// No node can take the room now: the participant is told to try again
    /// in a moment.
    Busy,
}

/// The route of a join reaching `me` for a room whose lease row is
/// `lease`, given the cluster's `members` (this node included, from its own
/// last heartbeat) at `now`.
pub fn route(me: &str, lease: Option<&Lease>, members: &[Member], now: DateTime<Utc>) -> Route {
    if let Some(lease) = lease {
        if let Authority::Acts { .. } = authority(lease, me, now) {
            return Route::Here;
        }
    }
    match claim(lease, me, now) {
        Claim::HeldBy { holder } => redirect(&holder, members),
        Claim::Take {
            lease: taken,
            replaces,
        } => {
            let own_again = lease.is_some_and(|l| l.holder == me);
            let loads: Vec<NodeLoad> = members.iter().map(|m| m.load.clone()).collect();
            match place_from(me, &loads, now) {
                _ if own_again => Route::Claim {
                    lease: taken,
                    replaces,
                },
                Some(chosen) if chosen.node == me => Route::Claim {
                    lease: taken,
                    replaces,
                },
                Some(chosen) => redirect(&chosen.node, members),
                None => Route::Busy,
            }
        }
    }
}

fn redirect(node: &str, members: &[Member]) -> Route {
    match members.iter().find(|m| m.load.node == node) {
        Some(member) => Route::Redirect {
            node: node.to_owned(),
            url: member.url.clone(),
        },
        // A holder without a heartbeat row: gone before it ever beat.
        None => Route::Busy,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::lease::LEASE_TERM;
    use chrono::{TimeDelta, TimeZone};

    fn at(s: i64) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(1_800_000_000_000 + s * 1000)
            .unwrap()
    }

    fn member(id: &str, participants: u32) -> Member {
        Member {
            load: NodeLoad {
                node: id.into(),
                last_beat: at(10),
                draining: false,
                participants,
                max_participants: 100,
                busy_ratio: 0.0,
                fresh_rooms: 0,
            },
            url: format!("https://{id}.clinic.example"),
        }
    }

    fn lease(holder: &str, epoch: i64, expires: i64) -> Lease {
        Lease {
            holder: holder.into(),
            epoch,
            expires_at: at(expires),
        }
    }

    #[test]
    fn a_join_for_a_room_held_elsewhere_is_redirected_to_its_holder() {
        let members = [member("a", 50), member("b", 0)];
        assert_eq!(
            route("b", Some(&lease("a", 1, 15)), &members, at(10)),
            Route::Redirect {
                node: "a".into(),
                url: "https://a.clinic.example".into()
            }
        );
    }

    #[test]
    fn the_holder_keeps_its_room() {
        let members = [member("a", 50), member("b", 0)];
        assert_eq!(
            route("a", Some(&lease("a", 1, 15)), &members, at(10)),
            Route::Here
        );
    }

    #[test]
    fn a_new_room_goes_to_the_least_loaded_node() {
        let members = [member("a", 50), member("b", 10)];
        assert_eq!(
            route("a", None, &members, at(10)),
            Route::Redirect {
                node: "b".into(),
                url: "https://b.clinic.example".into()
            }
        );
        // b, reading the same rows, takes it.
        let Route::Claim { lease, replaces } = route("b", None, &members, at(10)) else {
            panic!("b is the least loaded")
        };
        assert_eq!(
            (lease.holder.as_str(), lease.epoch, replaces),
            ("b", 1, None)
        );
        assert_eq!(lease.expires_at, at(10) + LEASE_TERM);
    }

    #[test]
    fn the_room_of_a_dead_holder_is_claimed_after_its_lease_expires() {
        let mut dead = member("a", 50);
        dead.load.last_beat = at(0);
        let members = [dead, member("b", 10), member("c", 20)];
        // Before expiry: still a's; a join waits for the lease (redirect to
        // a fails, the client comes back through the load balancer).
        assert!(matches!(
            route("c", Some(&lease("a", 4, 11)), &members, at(10)),
            Route::Redirect { .. }
        ));
        let Route::Claim {
            lease: taken,
            replaces,
        } = route("b", Some(&lease("a", 4, 11)), &members, at(11))
        else {
            panic!("expired: b is the least loaded live node")
        };
        assert_eq!((taken.epoch, replaces), (5, Some(4)));
    }

    #[test]
    fn a_restarted_node_takes_its_own_lease_back_whatever_the_load() {
        let members = [member("a", 90), member("b", 0)];
        let Route::Claim { lease: taken, .. } =
            route("a", Some(&lease("a", 2, 9)), &members, at(8))
        else {
            panic!("its own lease")
        };
        assert_eq!(taken.epoch, 3);
    }

    #[test]
    fn with_every_node_draining_or_full_the_join_is_busy() {
        let mut draining = member("a", 0);
        draining.load.draining = true;
        let full = member("b", 100);
        assert_eq!(route("a", None, &[draining, full], at(10)), Route::Busy);
    }

    #[test]
    fn a_holder_past_its_safety_margin_does_not_act_but_sends_people_nowhere_else() {
        // a's lease expires at 11; at 9.5 a may not act (margin 2 s) and
        // nobody else may claim yet: a join to a is busy for a moment, or
        // redirected to a itself, never placed elsewhere.
        let members = [member("a", 0), member("b", 0)];
        let route = route(
            "b",
            Some(&lease("a", 1, 11)),
            &members,
            at(10) - TimeDelta::milliseconds(500),
        );
        assert!(matches!(route, Route::Redirect { ref node, .. } if node == "a"));
    }
}
