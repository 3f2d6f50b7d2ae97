use super::*;
use crate::schedule::SessionSettings;

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn person(id: &str, role: RosterRole, household: Option<&str>) -> RosterEntry {
    RosterEntry {
        id: id.into(),
        name: id.to_uppercase(),
        role,
        household: household.map(Into::into),
        mrn: None,
        revoked_at: None,
        removed_at: None,
    }
}

fn session(kind: SessionKind, auto_admit: bool) -> Session {
    Session {
        id: Uuid::new_v4(),
        title: "S".into(),
        kind,
        starts_at: t("2026-03-02T15:00:00Z"),
        ends_at: t("2026-03-02T16:00:00Z"),
        timezone: chrono_tz::UTC,
        roster: vec![
            person("c", RosterRole::Clinician, None),
            person("p", RosterRole::Patient, Some("h1")),
            person("q", RosterRole::Partner, Some("h1")),
            person("r", RosterRole::Patient, Some("h2")),
        ],
        settings: SessionSettings {
            auto_admit,
            early_join_minutes: 15,
            overrun_grace_minutes: 30,
            clinician_grace_minutes: 5,
            e2ee: tandem_protocol::E2eeMode::Off,
        },
        created_at: t("2026-03-01T00:00:00Z"),
        cancelled_at: None,
        ended_at: None,
    }
}

/// A room and a clock in seconds after 15:00.
struct Script {
    room: Room,
    roster: Vec<RosterEntry>,
    /// Each connection's last sign of life (set at its arrival).
    signs: std::collections::HashMap<ConnId, SignOfLife>,
}

impl Script {
    fn new(kind: SessionKind, auto_admit: bool) -> Script {
        let s = session(kind, auto_admit);
        Script {
            roster: s.roster.clone(),
            room: Room::new(&s, vec![]),
            signs: Default::default(),
        }
    }

    fn at(secs: i64) -> DateTime<Utc> {
        t("2026-03-02T15:00:00Z") + Duration::seconds(secs)
    }

    fn arrive(&mut self, conn: ConnId, id: &str, secs: i64) -> Vec<Effect> {
        self.arrive_as(conn, id, secs, false)
    }

    /// A room whose session has the `e2ee` setting `mode`.
    fn with_e2ee(mode: tandem_protocol::E2eeMode) -> Script {
        let mut s = session(SessionKind::Couple, true);
        s.settings.e2ee = mode;
        Script {
            roster: s.roster.clone(),
            room: Room::new(&s, vec![]),
            signs: Default::default(),
        }
    }

    /// `conn` arrives saying whether it can encrypt end to end.
    fn arrive_as(&mut self, conn: ConnId, id: &str, secs: i64, e2ee: bool) -> Vec<Effect> {
        let person = self.roster.iter().find(|p| p.id == id).unwrap().clone();
        let sign_of_life = SignOfLife::new(Self::at(secs));
        self.signs.insert(conn, sign_of_life.clone());
        self.room.handle(
            Input::Arrive {
                conn,
                person,
                attestation: None,
                sign_of_life,
                e2ee,
            },
            Self::at(secs),
        )
    }

    /// `conn` showed life `millis` after 15:00 (a frame or a packet).
    fn alive(&self, conn: ConnId, millis: i64) {
        self.signs[&conn].seen(Self::at(0) + Duration::milliseconds(millis));
    }

    /// `conn` arrives and its media connects at `secs`: presence.
    fn present(&mut self, conn: ConnId, id: &str, secs: i64) {
        self.arrive(conn, id, secs);
        self.room.handle(Input::Connected { conn }, Self::at(secs));
    }

    /// A couple room where the clinician (conn 1) admitted the patient
    /// (conn 2) at 2 s.
    fn patient_admitted() -> Script {
        let mut s = Script::new(SessionKind::Couple, false);
        s.arrive(1, "c", 0);
        s.arrive(2, "p", 1);
        s.act(1, Action::Admit("p".into()), 2);
        s
    }

    /// `conn`'s connection is lost at `secs` (last seen a second before).
    fn lose(&mut self, conn: ConnId, secs: i64) {
        let reason = LeaveReason::Network {
            last_seen: Self::at(secs - 1),
        };
        self.room
            .handle(Input::Leave { conn, reason }, Self::at(secs));
    }

    fn act(&mut self, conn: ConnId, action: Action, secs: i64) -> Vec<Effect> {
        self.room
            .handle(Input::Clinician { conn, action }, Self::at(secs))
    }
}

/// The message types sent to `conn` (closes marked with "close:").
fn to(effects: &[Effect], conn: ConnId) -> Vec<String> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send { conn: c, message } if *c == conn => Some(kind(message)),
            Effect::Close { conn: c, message } if *c == conn => {
                Some(format!("close:{}", kind(message)))
            }
            _ => None,
        })
        .collect()
}

fn kind(message: &ServerMessage) -> String {
    let value = serde_json::to_value(message).unwrap();
    match value["code"].as_str() {
        Some(code) => format!("{}({code})", value["type"].as_str().unwrap()),
        None => value["type"].as_str().unwrap().to_owned(),
    }
}

fn media(effects: &[Effect]) -> Vec<Effect> {
    effects
        .iter()
        .filter(|e| {
            matches!(
                e,
                Effect::StartMedia { .. }
                    | Effect::StopMedia { .. }
                    | Effect::SetGroup { .. }
                    | Effect::Block { .. }
            )
        })
        .cloned()
        .collect()
}

#[test]
fn a_patient_alone_waits_and_the_clinician_admits() {
    let mut s = Script::new(SessionKind::Couple, false);
    let e = s.arrive(2, "p", 0);
    assert_eq!(to(&e, 2), ["waiting"]);
    assert!(
        media(&e).is_empty(),
        "nobody but a clinician is in a room without one"
    );

    let e = s.arrive(1, "c", 10);
    assert_eq!(to(&e, 1), ["joined", "lobby"]);
    assert_eq!(media(&e), [Effect::StartMedia { conn: 1 }]);
    assert!(
        to(&e, 2).is_empty(),
        "still waiting: the clinician has not admitted"
    );

    let e = s.act(1, Action::Admit("p".into()), 20);
    assert_eq!(to(&e, 2), ["joined"]);
    assert_eq!(to(&e, 1), ["participant_joined", "lobby"]);
    assert_eq!(media(&e), [Effect::StartMedia { conn: 2 }]);
    assert!(e.contains(&Effect::Record(RoomEvent::Admitted {
        participant: "p".into(),
        conn: 2,
        by: Some("c".into())
    })));
}

#[test]
fn deny_admit_all_and_who_may_act() {
    let mut s = Script::new(SessionKind::Couple, false);
    s.arrive(1, "c", 0);
    s.arrive(2, "p", 1);
    s.arrive(3, "q", 2);
    // A patient cannot admit anyone.
    let e = s.act(2, Action::AdmitAll, 3);
    assert_eq!(to(&e, 2), ["error(not_allowed)"]);
    let e = s.act(1, Action::Deny("q".into()), 4);
    assert_eq!(to(&e, 3), ["close:denied(denied_by_clinician)"]);
    let e = s.act(1, Action::Admit("nobody".into()), 5);
    assert_eq!(to(&e, 1), ["error(bad_state)"]);
    // The denied partner may knock again.
    s.arrive(4, "q", 6);
    let e = s.act(1, Action::AdmitAll, 7);
    assert_eq!(to(&e, 2), ["joined", "participant_joined"]);
    assert_eq!(to(&e, 4), ["joined"]);
    assert_eq!(
        media(&e),
        [
            Effect::StartMedia { conn: 2 },
            Effect::StartMedia { conn: 4 }
        ]
    );
}

#[test]
fn auto_admit_lets_people_in_only_while_a_clinician_is_present() {
    let mut s = Script::new(SessionKind::Couple, true);
    let e = s.arrive(2, "p", 0);
    assert_eq!(to(&e, 2), ["waiting"], "no clinician yet");
    let e = s.arrive(1, "c", 5);
    assert_eq!(to(&e, 2), ["joined"], "admitted when the clinician arrives");
    let e = s.arrive(3, "q", 6);
    assert_eq!(to(&e, 3), ["joined"]);
}

#[test]
fn the_clinician_drops_then_the_grace_runs_out() {
    let mut s = Script::new(SessionKind::Couple, false);
    s.arrive(1, "c", 0);
    s.arrive(2, "p", 1);
    s.act(1, Action::Admit("p".into()), 2);
    let e = s.room.handle(
        Input::Leave {
            conn: 1,
            reason: LeaveReason::Left,
        },
        Script::at(100),
    );
    assert_eq!(to(&e, 2), ["participant_left"]);
    // New arrivals wait while the clinician is away.
    let e = s.arrive(3, "q", 110);
    assert_eq!(to(&e, 3), ["waiting"]);
    // Within the grace (5 minutes) the patient stays.
    let e = s.room.handle(Input::Tick, Script::at(100 + 299));
    assert!(to(&e, 2).is_empty());
    let e = s.room.handle(Input::Tick, Script::at(100 + 300));
    assert_eq!(to(&e, 2), ["waiting"]);
    assert_eq!(media(&e), [Effect::StopMedia { conn: 2 }]);
    let waiting = e.iter().find_map(|e| match e {
        Effect::Send {
            conn: 2,
            message: ServerMessage::Waiting { reason },
        } => *reason,
        _ => None,
    });
    assert_eq!(waiting, Some(WaitingReason::ClinicianAway));
    // The clinician comes back and sees both waiting.
    let e = s.arrive(5, "c", 500);
    let lobby = e.iter().find_map(|e| match e {
        Effect::Send {
            conn: 5,
            message: ServerMessage::Lobby { waiting },
        } => Some(waiting.len()),
        _ => None,
    });
    assert_eq!(lobby, Some(2));
}

#[test]
fn a_clinician_back_within_the_grace_keeps_the_room() {
    let mut s = Script::new(SessionKind::Couple, false);
    s.arrive(1, "c", 0);
    s.arrive(2, "p", 1);
    s.act(1, Action::Admit("p".into()), 2);
    s.room.handle(
        Input::Leave {
            conn: 1,
            reason: LeaveReason::Left,
        },
        Script::at(100),
    );
    s.arrive(3, "c", 200);
    let e = s.room.handle(Input::Tick, Script::at(1000));
    assert!(to(&e, 2).is_empty(), "{e:?}");
}

#[test]
fn a_removed_participant_stays_out() {
    let mut s = Script::new(SessionKind::Couple, true);
    s.arrive(1, "c", 0);
    s.arrive(2, "p", 1);
    let e = s.act(1, Action::Remove("p".into()), 2);
    assert_eq!(to(&e, 2), ["close:removed"]);
    assert_eq!(to(&e, 1), ["participant_left", "lobby"]);
    assert!(e.contains(&Effect::StopMedia { conn: 2 }));
    assert!(e.contains(&Effect::PersistRemoval {
        participant: "p".into()
    }));
    let e = s.arrive(3, "p", 3);
    assert_eq!(to(&e, 3), ["close:denied(removed)"]);
    // Someone not connected can be removed too (and cannot come).
    s.act(1, Action::Remove("q".into()), 4);
    let e = s.arrive(4, "q", 5);
    assert_eq!(to(&e, 4), ["close:denied(removed)"]);
    let e = s.act(1, Action::Remove("c".into()), 6);
    assert_eq!(to(&e, 1), ["error(bad_state)"]);
}

#[test]
fn a_second_device_replaces_the_first_and_keeps_its_place() {
    let mut s = Script::new(SessionKind::Couple, true);
    s.arrive(1, "c", 0);
    s.arrive(2, "p", 1);
    let e = s.arrive(3, "p", 2);
    assert_eq!(to(&e, 2), ["close:replaced"]);
    assert_eq!(to(&e, 3), ["joined"]);
    assert!(to(&e, 1).is_empty(), "no leave and join for the others");
    assert_eq!(
        media(&e),
        [
            Effect::StopMedia { conn: 2 },
            Effect::StartMedia { conn: 3 }
        ]
    );
    assert!(e.contains(&Effect::Record(RoomEvent::Replaced {
        participant: "p".into(),
        old: 2,
        new: 3,
        at: None,
    })));
    // The old connection's late leave changes nothing.
    let e = s.room.handle(
        Input::Leave {
            conn: 2,
            reason: LeaveReason::Left,
        },
        Script::at(3),
    );
    assert!(e.is_empty());
}

#[test]
fn mute_is_enforced_and_unmuting_needs_permission_when_asked() {
    let mut s = Script::new(SessionKind::Couple, true);
    s.arrive(1, "c", 0);
    s.arrive(2, "p", 1);
    let e = s.act(
        1,
        Action::Mute {
            participant: "p".into(),
            kind: MediaKind::Audio,
            allow_unmute: false,
        },
        2,
    );
    assert_eq!(to(&e, 2), ["muted"]);
    assert_eq!(to(&e, 1), ["media"]);
    assert_eq!(
        media(&e),
        [Effect::Block {
            conn: 2,
            kind: MediaKind::Audio,
            blocked: true
        }]
    );
    let e = s.room.handle(
        Input::Media {
            conn: 2,
            audio: true,
            video: true,
        },
        Script::at(3),
    );
    assert_eq!(to(&e, 2), ["error(not_allowed)"]);
    assert!(media(&e).is_empty(), "still blocked");
    let e = s.act(
        1,
        Action::AllowUnmute {
            participant: "p".into(),
            kind: MediaKind::Audio,
        },
        4,
    );
    assert_eq!(to(&e, 2), ["unmute_allowed"]);
    let e = s.room.handle(
        Input::Media {
            conn: 2,
            audio: true,
            video: true,
        },
        Script::at(5),
    );
    assert_eq!(
        media(&e),
        [Effect::Block {
            conn: 2,
            kind: MediaKind::Audio,
            blocked: false
        }]
    );
    assert_eq!(to(&e, 1), ["media"]);
    // With permission to unmute, the participant may unmute at once.
    s.act(
        1,
        Action::Mute {
            participant: "p".into(),
            kind: MediaKind::Video,
            allow_unmute: true,
        },
        6,
    );
    let e = s.room.handle(
        Input::Media {
            conn: 2,
            audio: true,
            video: true,
        },
        Script::at(7),
    );
    assert_eq!(
        media(&e),
        [Effect::Block {
            conn: 2,
            kind: MediaKind::Video,
            blocked: false
        }]
    );
}

#[test]
fn end_closes_the_room_for_everyone() {
    let mut s = Script::new(SessionKind::Couple, false);
    s.arrive(1, "c", 0);
    s.arrive(2, "p", 1);
    s.arrive(3, "q", 2);
    s.act(1, Action::Admit("p".into()), 3);
    let e = s.act(1, Action::End, 4);
    for conn in [1, 2, 3] {
        assert_eq!(to(&e, conn), ["close:ended"], "conn {conn}");
    }
    assert!(e.contains(&Effect::PersistEnd));
    assert!(e.contains(&Effect::Finished));
    assert!(s.room.is_finished());
    let e = s.arrive(4, "p", 5);
    assert_eq!(to(&e, 4), ["close:denied(session_ended)"]);
}

#[test]
fn warnings_before_the_room_closes_then_ended() {
    let mut s = Script::new(SessionKind::Couple, true);
    s.arrive(1, "c", 0);
    s.arrive(2, "p", 1);
    // The room closes at 16:30 (end + 30 min grace) = 5400 s after 15:00.
    let close = 5400;
    let cases = [
        (close - 301, vec![]),
        (close - 300, vec!["session_ending"]),
        (close - 200, vec![]),
        (close - 61, vec![]),
        (close - 60, vec!["session_ending"]),
        (close - 1, vec![]),
        (close, vec!["close:ended"]),
    ];
    for (secs, expected) in cases {
        let e = s.room.handle(Input::Tick, Script::at(secs));
        assert_eq!(to(&e, 2), expected, "at {secs}");
    }
    assert!(s.room.is_finished());
}

#[test]
fn a_breakout_groups_one_household_and_ends() {
    let mut s = Script::new(SessionKind::Group, true);
    s.arrive(1, "c", 0);
    s.arrive(2, "p", 1);
    s.arrive(3, "q", 2);
    s.arrive(4, "r", 3);
    let e = s.act(
        1,
        Action::Breakout {
            household: "h1".into(),
            with_clinician: false,
            minutes: None,
        },
        4,
    );
    assert_eq!(
        media(&e),
        [
            Effect::SetGroup { conn: 2, group: 1 },
            Effect::SetGroup { conn: 3, group: 1 }
        ]
    );
    // A household member who arrives later goes straight to the breakout.
    let e = s.room.handle(
        Input::Leave {
            conn: 3,
            reason: LeaveReason::Left,
        },
        Script::at(5),
    );
    assert!(media(&e).contains(&Effect::StopMedia { conn: 3 }));
    let e = s.arrive(5, "q", 6);
    assert_eq!(
        media(&e),
        [
            Effect::StartMedia { conn: 5 },
            Effect::SetGroup { conn: 5, group: 1 }
        ]
    );
    let e = s.act(
        1,
        Action::Breakout {
            household: "h2".into(),
            with_clinician: true,
            minutes: None,
        },
        7,
    );
    assert_eq!(
        media(&e),
        [
            Effect::SetGroup { conn: 1, group: 2 },
            Effect::SetGroup { conn: 4, group: 2 }
        ]
    );
    let e = s.act(
        1,
        Action::EndBreakout {
            household: "h1".into(),
        },
        8,
    );
    assert_eq!(
        media(&e),
        [
            Effect::SetGroup { conn: 2, group: 0 },
            Effect::SetGroup { conn: 5, group: 0 }
        ]
    );
    let e = s.act(
        1,
        Action::Breakout {
            household: "nope".into(),
            with_clinician: false,
            minutes: None,
        },
        9,
    );
    assert_eq!(to(&e, 1), ["error(bad_state)"]);
}

#[test]
fn presence_starts_when_media_connects_and_once() {
    let mut s = Script::new(SessionKind::Couple, true);
    s.arrive(1, "c", 0);
    let person = s.roster[1].clone();
    let attestation = Attestation {
        state: "NY".into(),
        at_home: true,
        private: true,
    };
    let e = s.room.handle(
        Input::Arrive {
            conn: 2,
            person,
            attestation: Some(attestation.clone()),
            sign_of_life: Default::default(),
            e2ee: false,
        },
        Script::at(1),
    );
    assert_eq!(
        e.first(),
        Some(&Effect::Record(RoomEvent::Attestation {
            participant: "p".into(),
            conn: 2,
            attestation
        }))
    );
    let e = s.room.handle(Input::Connected { conn: 2 }, Script::at(2));
    assert_eq!(
        e,
        [Effect::Record(RoomEvent::Joined {
            participant: "p".into(),
            conn: 2,
            video: true
        })]
    );
    assert!(s
        .room
        .handle(Input::Connected { conn: 2 }, Script::at(3))
        .is_empty());
    assert_eq!(s.room.present(), [2]);
    // Someone waiting has no presence even if a peer connection connects.
    let mut w = Script::new(SessionKind::Couple, false);
    w.arrive(5, "p", 0);
    assert!(w
        .room
        .handle(Input::Connected { conn: 5 }, Script::at(1))
        .is_empty());
}

#[test]
fn a_lost_connection_ends_presence_at_its_last_sign_of_life() {
    let mut s = Script::new(SessionKind::Couple, true);
    s.arrive(1, "c", 0);
    s.arrive(2, "p", 1);
    s.room.handle(Input::Connected { conn: 2 }, Script::at(2));
    let last_seen = Script::at(40);
    let e = s.room.handle(
        Input::Leave {
            conn: 2,
            reason: LeaveReason::Network { last_seen },
        },
        Script::at(70),
    );
    assert!(e.contains(&Effect::Record(RoomEvent::Left {
        participant: "p".into(),
        conn: 2,
        reason: Reason::Network,
        at: Some(last_seen),
    })));
    assert!(s.room.present().is_empty());
}

#[test]
fn a_network_drop_does_not_send_an_admitted_person_back_to_wait() {
    let mut s = Script::patient_admitted();
    s.lose(2, 5);
    let e = s.arrive(3, "p", 6);
    assert_eq!(to(&e, 3), ["joined"], "back in at once after a drop");
    // Leaving on purpose and coming back means knocking again.
    s.room.handle(
        Input::Leave {
            conn: 3,
            reason: LeaveReason::Left,
        },
        Script::at(7),
    );
    let e = s.arrive(4, "p", 8);
    assert_eq!(to(&e, 4), ["waiting"]);
    // Without a clinician in the room a returning person waits.
    let mut s = Script::patient_admitted();
    s.lose(2, 5);
    s.room.handle(
        Input::Leave {
            conn: 1,
            reason: LeaveReason::Left,
        },
        Script::at(6),
    );
    let e = s.arrive(3, "p", 7);
    assert_eq!(to(&e, 3), ["waiting"]);
}

#[test]
fn breakouts_are_for_group_sessions() {
    let mut s = Script::new(SessionKind::Couple, true);
    s.arrive(1, "c", 0);
    let e = s.act(
        1,
        Action::Breakout {
            household: "h1".into(),
            with_clinician: false,
            minutes: None,
        },
        1,
    );
    assert_eq!(to(&e, 1), ["error(bad_state)"]);
}

/// The presence records among `effects`.
fn presence_records(effects: &[Effect]) -> Vec<RoomEvent> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Record(r @ (RoomEvent::Left { .. } | RoomEvent::Replaced { .. })) => {
                Some(r.clone())
            }
            _ => None,
        })
        .collect()
}

fn left(who: &str, conn: ConnId, reason: Reason, millis: Option<i64>) -> RoomEvent {
    RoomEvent::Left {
        participant: who.into(),
        conn,
        reason,
        at: millis.map(|ms| Script::at(0) + Duration::milliseconds(ms)),
    }
}

/// (name, what happens after the clinician (1) and the patient (2) are
/// present, the presence records of its last step)
type PresenceCase = (&'static str, fn(&mut Script) -> Vec<Effect>, Vec<RoomEvent>);

/// Issue 20, fault 2 (and every other end the room decides): presence
/// ends at the connection's last sign of life; a connection silent for
/// more than 5 s had been lost, which is a disconnect.
#[test]
fn presence_ends_at_the_last_sign_of_life() {
    let cases: Vec<PresenceCase> = vec![
        (
            "a reconnect 20 s after the old connection's last sign of life",
            |s| {
                s.alive(2, 40_000);
                s.arrive(3, "p", 60)
            },
            vec![
                left("p", 2, Reason::Network, Some(40_000)),
                RoomEvent::Replaced {
                    participant: "p".into(),
                    old: 2,
                    new: 3,
                    at: None,
                },
            ],
        ),
        (
            "a second device while the first is alive",
            |s| {
                s.alive(2, 59_500);
                s.arrive(3, "p", 60)
            },
            vec![RoomEvent::Replaced {
                participant: "p".into(),
                old: 2,
                new: 3,
                at: Some(Script::at(0) + Duration::milliseconds(59_500)),
            }],
        ),
        (
            "the clinician ends the session; the patient silent for 30 s",
            |s| {
                s.alive(1, 60_000);
                s.alive(2, 30_000);
                s.act(1, Action::End, 60)
            },
            vec![
                left("c", 1, Reason::SessionEnd, Some(60_000)),
                left("p", 2, Reason::Network, Some(30_000)),
            ],
        ),
        (
            "a removal ends presence at the last packet",
            |s| {
                s.alive(1, 60_000);
                s.alive(2, 59_000);
                s.act(1, Action::Remove("p".into()), 60)
            },
            vec![left("p", 2, Reason::Removed, Some(59_000))],
        ),
        (
            "a lost socket whose media outlived its last frame",
            |s| {
                s.alive(2, 50_000);
                let last_seen = Script::at(40);
                let lost = LeaveReason::Network { last_seen };
                s.room.handle(
                    Input::Leave {
                        conn: 2,
                        reason: lost,
                    },
                    Script::at(70),
                )
            },
            vec![left("p", 2, Reason::Network, Some(50_000))],
        ),
        (
            "a leave the client asked for ends when it was asked",
            |s| {
                s.alive(2, 20_000);
                s.room.handle(
                    Input::Leave {
                        conn: 2,
                        reason: LeaveReason::Left,
                    },
                    Script::at(70),
                )
            },
            vec![left("p", 2, Reason::Left, None)],
        ),
        (
            "the clinician away past the grace; the patient silent since 100 s",
            |s| {
                s.room.handle(
                    Input::Leave {
                        conn: 1,
                        reason: LeaveReason::Left,
                    },
                    Script::at(10),
                );
                s.alive(2, 100_000);
                s.room.handle(Input::Tick, Script::at(310))
            },
            vec![left("p", 2, Reason::Network, Some(100_000))],
        ),
        (
            "a revocation of a live connection",
            |s| {
                s.alive(2, 79_999);
                s.room.handle(
                    Input::Revoked {
                        participant: "p".into(),
                    },
                    Script::at(80),
                )
            },
            vec![left("p", 2, Reason::Revoked, Some(79_999))],
        ),
    ];
    for (name, script, want) in cases {
        let mut s = Script::new(SessionKind::Couple, true);
        s.present(1, "c", 0);
        s.present(2, "p", 1);
        let effects = script(&mut s);
        assert_eq!(presence_records(&effects), want, "{name}");
    }
    // Someone waiting has no presence: their record is left as it was.
    let mut s = Script::new(SessionKind::Couple, false);
    s.arrive(2, "p", 0);
    let e = s.arrive(3, "p", 60);
    assert_eq!(
        presence_records(&e),
        [RoomEvent::Replaced {
            participant: "p".into(),
            old: 2,
            new: 3,
            at: None
        }]
    );
}

/// Issue 20, fault 7: only connections with open presence and a recent
/// sign of life get a heartbeat, and it says when that sign came.
#[test]
fn heartbeats_only_for_connections_with_a_recent_sign_of_life() {
    let ms = |m: i64| Script::at(0) + Duration::milliseconds(m);
    // (clinician's last sign, patient's last sign, now, heartbeats)
    type Case = (i64, i64, i64, Vec<(ConnId, i64)>);
    let cases: Vec<Case> = vec![
        (19_000, 14_000, 20, vec![(1, 19_000)]),
        (20_000, 15_000, 20, vec![(1, 20_000), (2, 15_000)]),
        (2_000, 3_000, 20, vec![]),
        // A sign of life stamped after `now` claims no more than `now`.
        (21_000, 20_000, 20, vec![(1, 20_000), (2, 20_000)]),
    ];
    for (clinician, patient, now, want) in cases {
        let mut s = Script::new(SessionKind::Couple, true);
        s.present(1, "c", 0);
        s.present(2, "p", 1);
        s.arrive(3, "q", 2); // in the room, but no media yet
        s.alive(1, clinician);
        s.alive(2, patient);
        s.alive(3, now * 1000);
        let want: Vec<(ConnId, DateTime<Utc>)> =
            want.into_iter().map(|(c, m)| (c, ms(m))).collect();
        assert_eq!(
            s.room.heartbeats(Script::at(now)),
            want,
            "{clinician} {patient} {now}"
        );
    }
}

#[test]
fn revocation_and_cancellation_take_people_out() {
    let mut s = Script::new(SessionKind::Couple, true);
    s.arrive(1, "c", 0);
    s.arrive(2, "p", 1);
    let e = s.room.handle(
        Input::Revoked {
            participant: "p".into(),
        },
        Script::at(2),
    );
    assert_eq!(to(&e, 2), ["close:denied(revoked)"]);
    assert_eq!(to(&e, 1), ["participant_left", "lobby"]);
    let e = s.room.handle(Input::Cancelled, Script::at(3));
    assert_eq!(to(&e, 1), ["close:ended"]);
    assert!(
        !e.contains(&Effect::PersistEnd),
        "a cancellation is already stored"
    );
}

#[test]
fn a_stop_ends_everyones_presence_with_server_restart_and_not_the_session() {
    let mut s = Script::new(SessionKind::Couple, false);
    s.present(1, "c", 0);
    s.arrive(2, "p", 1);
    s.act(1, Action::Admit("p".into()), 2);
    s.room.handle(Input::Connected { conn: 2 }, Script::at(2));
    s.arrive(3, "q", 3);
    for conn in [1, 2] {
        s.alive(conn, 3_900);
    }
    let e = s.room.handle(Input::Stop, Script::at(4));
    for conn in [1, 2, 3] {
        assert_eq!(to(&e, conn), ["close:error(server_restart)"], "{conn}");
    }
    let left: Vec<(&str, ConnId, Reason, Option<DateTime<Utc>>)> = e
        .iter()
        .filter_map(|e| match e {
            Effect::Record(RoomEvent::Left {
                participant,
                conn,
                reason,
                at,
            }) => Some((participant.as_str(), *conn, *reason, *at)),
            _ => None,
        })
        .collect();
    // Each presence ends at its connection's last sign of life; the
    // waiting partner had none to end.
    let last = Some(Script::at(0) + Duration::milliseconds(3_900));
    assert_eq!(
        left,
        [
            ("c", 1, Reason::ServerRestart, last),
            ("p", 2, Reason::ServerRestart, last),
            ("q", 3, Reason::ServerRestart, None),
        ]
    );
    assert_eq!(
        media(&e),
        [Effect::StopMedia { conn: 1 }, Effect::StopMedia { conn: 2 }]
    );
    assert!(!e.iter().any(|e| matches!(
        e,
        Effect::Finished | Effect::PersistEnd | Effect::Record(RoomEvent::SessionEnded { .. })
    )));
    assert!(!s.room.is_finished());
}

#[test]
fn a_media_message_that_changes_nothing_is_neither_recorded_nor_told() {
    let mut s = Script::new(SessionKind::Couple, false);
    s.arrive(1, "c", 0);
    s.arrive(2, "p", 1);
    s.act(1, Action::Admit("p".into()), 2);
    s.arrive(3, "q", 3);
    let media = |audio, video| Input::Media {
        conn: 3,
        audio,
        video,
    };
    // The waiting partner repeats its state: nothing, however often.
    for i in 0..1000 {
        assert_eq!(s.room.handle(media(true, true), Script::at(4)), [], "{i}");
    }
    let e = s.room.handle(media(false, true), Script::at(5));
    assert!(matches!(
        e.as_slice(),
        [Effect::Record(RoomEvent::MediaChanged { audio: false, .. })]
    ));
    assert_eq!(s.room.handle(media(false, true), Script::at(6)), []);
    // In the room, a change is told once.
    let e = s.room.handle(
        Input::Media {
            conn: 2,
            audio: true,
            video: false,
        },
        Script::at(7),
    );
    assert_eq!(to(&e, 1), ["media"]);
    let e = s.room.handle(
        Input::Media {
            conn: 2,
            audio: true,
            video: false,
        },
        Script::at(8),
    );
    assert_eq!(e, []);
}

/// The messages of one type sent to `conn`, as JSON.
fn sent(effects: &[Effect], conn: ConnId, kind: &str) -> Vec<serde_json::Value> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send { conn: c, message } if *c == conn => {
                let v = serde_json::to_value(message).unwrap();
                (v["type"] == kind).then_some(v)
            }
            _ => None,
        })
        .collect()
}

fn recorded(effects: &[Effect]) -> Vec<RoomEvent> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Record(event) => Some(event.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn only_clinicians_learn_households_and_each_person_their_own_couple() {
    let mut s = Script::new(SessionKind::Group, false);
    s.arrive(1, "c", 0);
    let e = s.arrive(2, "p", 1);
    assert_eq!(sent(&e, 1, "lobby")[0]["waiting"][0]["household"], "h1");
    let e = s.act(1, Action::AdmitAll, 2);
    let joined = &sent(&e, 2, "joined")[0];
    assert_eq!(joined["you"]["household"], "h1");
    assert!(joined["participants"][0].get("household").is_none());
    assert_eq!(
        sent(&e, 1, "participant_joined")[0]["participant"]["household"],
        "h1"
    );
    s.arrive(3, "r", 3);
    let e = s.act(1, Action::Admit("r".into()), 4);
    s.arrive(4, "q", 5);
    let e2 = s.act(1, Action::Admit("q".into()), 6);
    // Partners see each other's household: it is their own.
    assert_eq!(
        sent(&e2, 2, "participant_joined")[0]["participant"]["household"],
        "h1"
    );
    assert!(sent(&e2, 3, "participant_joined")[0]["participant"]
        .get("household")
        .is_none());
    // The patient of another couple sees r without a household, and r
    // sees p without one; the clinician sees both.
    assert!(sent(&e, 2, "participant_joined")[0]["participant"]
        .get("household")
        .is_none());
    let joined = &sent(&e, 3, "joined")[0];
    for p in joined["participants"].as_array().unwrap() {
        assert!(p.get("household").is_none(), "{p}");
    }
}

#[test]
fn a_timed_breakout_warns_a_minute_before_and_returns_by_itself() {
    let mut s = four_in_a_group();
    let e = s.act(1, breakout("h1", false, Some(2)), 10);
    let ends_at = Script::at(130);
    for conn in [1, 2, 3] {
        let b = &sent(&e, conn, "breakout")[0];
        assert_eq!(b["active"], true);
        assert_eq!(b["ends_at"], serde_json::to_value(ends_at).unwrap());
    }
    assert!(
        sent(&e, 4, "breakout").is_empty(),
        "another couple's patient does not learn the household"
    );
    assert_eq!(
        recorded(&e),
        [RoomEvent::BreakoutStarted {
            household: "h1".into(),
            with_clinician: false,
            ends_at: Some(ends_at),
        }]
    );
    // Quiet until a minute before the end.
    let e = s.room.handle(Input::Tick, Script::at(69));
    assert!(sent(&e, 2, "breakout_ending").is_empty());
    let e = s.room.handle(Input::Tick, Script::at(70));
    for conn in [1, 2, 3] {
        assert_eq!(sent(&e, conn, "breakout_ending")[0]["seconds_left"], 60);
    }
    assert!(sent(&e, 4, "breakout_ending").is_empty());
    let e = s.room.handle(Input::Tick, Script::at(71));
    assert!(sent(&e, 2, "breakout_ending").is_empty(), "warned once");
    // Back by itself at the end.
    let e = s.room.handle(Input::Tick, Script::at(130));
    assert_eq!(
        media(&e),
        [
            Effect::SetGroup { conn: 2, group: 0 },
            Effect::SetGroup { conn: 3, group: 0 }
        ]
    );
    assert_eq!(sent(&e, 2, "breakout")[0]["active"], false);
    assert_eq!(
        recorded(&e),
        [RoomEvent::BreakoutEnded {
            household: "h1".into()
        }]
    );
}

#[test]
fn bring_everyone_back_ends_every_breakout_and_messages_reach_them() {
    let mut s = four_in_a_group();
    for household in ["h1", "h2"] {
        s.act(1, breakout(household, false, None), 5);
    }
    let e = s.act(
        1,
        Action::BreakoutMessage("  Two minutes, please. ".into()),
        6,
    );
    for conn in [1, 2, 3, 4] {
        let m = &sent(&e, conn, "breakout_message")[0];
        assert_eq!(m["text"], "Two minutes, please.");
        assert_eq!(m["from"], "C");
    }
    let e = s.act(1, Action::EndAllBreakouts, 7);
    assert_eq!(recorded(&e).len(), 2);
    assert!(media(&e)
        .iter()
        .all(|m| matches!(m, Effect::SetGroup { group: 0, .. })));
    assert_eq!(media(&e).len(), 3);
    // Nobody in a breakout: a message reaches only the clinician.
    let e = s.act(1, Action::BreakoutMessage("hello".into()), 8);
    assert_eq!(to(&e, 2), Vec::<String>::new());
    // Only a clinician may do it.
    let e = s.room.handle(
        Input::Clinician {
            conn: 2,
            action: Action::EndAllBreakouts,
        },
        Script::at(9),
    );
    assert_eq!(to(&e, 2), ["error(not_allowed)"]);
}

#[test]
fn the_clinician_sees_who_speaks_in_a_breakout_they_are_not_in() {
    let mut s = Script::new(SessionKind::Group, true);
    s.arrive(1, "c", 0);
    s.arrive(2, "p", 1);
    s.arrive(4, "r", 3);
    let speak = |s: &mut Script, conn, secs| {
        s.room.handle(
            Input::Speaking {
                conn,
                speaking: true,
            },
            Script::at(secs),
        )
    };
    // In the main room the clinician hears them: nothing to tell.
    assert!(to(&speak(&mut s, 2, 4), 1).is_empty());
    s.act(1, breakout("h1", false, None), 5);
    let e = speak(&mut s, 2, 6);
    assert_eq!(
        sent(&e, 1, "speaking")[0],
        serde_json::json!({"type": "speaking", "participant": "p", "speaking": true})
    );
    assert!(to(&e, 4).is_empty(), "only clinicians");
    // With the clinician inside, they hear it themselves.
    s.act(1, breakout("h1", true, None), 7);
    assert!(to(&speak(&mut s, 2, 8), 1).is_empty());
}

#[test]
fn hands_are_raised_in_order_and_lowered_by_their_owner_or_the_clinician() {
    let mut s = four_in_a_group();
    let hand = |s: &mut Script, conn, raised, secs| {
        s.room
            .handle(Input::Hand { conn, raised }, Script::at(secs))
    };
    let ids = |e: &[Effect], conn| -> Vec<String> {
        sent(e, conn, "hands").last().unwrap()["raised"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["id"].as_str().unwrap().to_owned())
            .collect()
    };
    hand(&mut s, 4, true, 10);
    let e = hand(&mut s, 2, true, 11);
    assert_eq!(ids(&e, 1), ["r", "p"], "oldest first");
    assert_eq!(ids(&e, 3), ["r", "p"], "everyone sees them");
    assert!(to(&hand(&mut s, 2, true, 12), 1).is_empty(), "already up");
    // A patient cannot lower someone else's hand.
    let e = s.act(2, Action::LowerHand("r".into()), 13);
    assert_eq!(to(&e, 2), ["error(not_allowed)"]);
    let e = s.act(1, Action::LowerHand("r".into()), 14);
    assert_eq!(ids(&e, 2), ["p"]);
    let e = s.act(1, Action::LowerHand("r".into()), 15);
    assert_eq!(to(&e, 1), ["error(bad_state)"]);
    // Leaving lowers one's hand; a newcomer learns the hands up.
    hand(&mut s, 3, true, 16);
    let e = s.room.handle(
        Input::Leave {
            conn: 2,
            reason: LeaveReason::Left,
        },
        Script::at(17),
    );
    assert_eq!(ids(&e, 1), ["q"]);
    let e = s.arrive(5, "p", 18);
    assert_eq!(ids(&e, 5), ["q"]);
    let e = hand(&mut s, 3, false, 19);
    assert!(ids(&e, 1).is_empty());
    // Hands are not attendance.
    assert!(recorded(&e).is_empty());
}

#[test]
fn the_spotlight_is_shown_to_everyone_and_ends_when_its_person_leaves() {
    let mut s = Script::new(SessionKind::Group, true);
    s.arrive(1, "c", 0);
    s.arrive(2, "p", 1);
    s.arrive(4, "r", 3);
    let e = s.act(1, Action::Spotlight(Some("p".into())), 4);
    for conn in [1, 2, 4] {
        assert_eq!(sent(&e, conn, "spotlight")[0]["participant"], "p");
    }
    let e = s.act(1, Action::Spotlight(Some("q".into())), 5);
    assert_eq!(to(&e, 1), ["error(bad_state)"], "q is not in the room");
    let e = s.arrive(5, "q", 6);
    assert_eq!(sent(&e, 5, "spotlight")[0]["participant"], "p");
    let e = s.room.handle(
        Input::Leave {
            conn: 2,
            reason: LeaveReason::Left,
        },
        Script::at(7),
    );
    assert!(sent(&e, 4, "spotlight")[0]["participant"].is_null());
}

#[test]
fn breakouts_still_running_are_closed_in_the_ledger_at_the_end() {
    let mut s = Script::new(SessionKind::Group, true);
    s.arrive(1, "c", 0);
    s.arrive(2, "p", 1);
    s.act(1, breakout("h1", false, Some(30)), 2);
    let e = s.act(1, Action::End, 3);
    assert!(recorded(&e).contains(&RoomEvent::BreakoutEnded {
        household: "h1".into()
    }));
}

/// A group session with the clinician (1), the couple h1 (2, 3) and r of
/// h2 (4) in the room.
fn four_in_a_group() -> Script {
    let mut s = Script::new(SessionKind::Group, true);
    s.arrive(1, "c", 0);
    s.arrive(2, "p", 1);
    s.arrive(3, "q", 2);
    s.arrive(4, "r", 3);
    s
}

fn breakout(household: &str, with_clinician: bool, minutes: Option<u32>) -> Action {
    Action::Breakout {
        household: household.into(),
        with_clinician,
        minutes,
    }
}

mod e2ee {
    use super::*;
    use tandem_protocol::E2eeMode;

    fn key(s: &mut Script, conn: ConnId, public_key: &str) -> Vec<Effect> {
        s.room.handle(
            Input::PublicKey {
                conn,
                public_key: public_key.into(),
            },
            Script::at(30),
        )
    }

    fn wrapped(s: &mut Script, conn: ConnId, to_id: &str, blob: &str) -> Vec<Effect> {
        s.room.handle(
            Input::MediaKey {
                conn,
                to: to_id.into(),
                key_id: 7,
                wrapped: blob.into(),
            },
            Script::at(31),
        )
    }

    /// A preferred room (auto-admit) with c, p and q in it, each with a key.
    fn three_with_keys() -> Script {
        let mut s = Script::with_e2ee(E2eeMode::Preferred);
        for (conn, id) in [(1, "c"), (2, "p"), (3, "q")] {
            s.arrive_as(conn, id, 0, true);
            key(&mut s, conn, &format!("KEY{id}"));
        }
        s
    }

    #[test]
    fn a_wrapped_media_key_reaches_only_its_recipient() {
        let mut s = three_with_keys();
        let e = wrapped(&mut s, 2, "q", "QkxPQg==");
        assert_eq!(to(&e, 3), ["e2ee_media_key"]);
        assert_eq!(
            sent(&e, 3, "e2ee_media_key"),
            [
                serde_json::json!({"type": "e2ee_media_key", "from": "p", "key_id": 7, "wrapped": "QkxPQg=="})
            ]
        );
        assert!(to(&e, 1).is_empty() && to(&e, 2).is_empty(), "{e:?}");
        assert!(recorded(&e).is_empty(), "a key is never recorded");
        // Nobody by that id in the room (or oneself): the sender is told.
        assert_eq!(
            to(&wrapped(&mut s, 2, "r", "AA=="), 2),
            ["error(bad_state)"]
        );
        assert_eq!(
            to(&wrapped(&mut s, 2, "p", "AA=="), 2),
            ["error(bad_state)"]
        );
    }

    #[test]
    fn public_keys_go_to_the_room_and_a_newcomer_gets_only_the_current_ones() {
        let mut s = Script::with_e2ee(E2eeMode::Preferred);
        s.arrive_as(1, "c", 0, true);
        s.arrive_as(2, "p", 1, true);
        let e = key(&mut s, 2, "P1");
        assert_eq!(
            sent(&e, 1, "e2ee_public_key"),
            [
                serde_json::json!({"type": "e2ee_public_key", "participant": "p", "public_key": "P1"})
            ]
        );
        assert!(to(&e, 2).is_empty());
        assert!(
            key(&mut s, 2, "P1").is_empty(),
            "the same key again: nothing"
        );
        key(&mut s, 1, "C1");
        // p reconnects (a new key pair); then leaves for good.
        s.arrive_as(4, "p", 5, true);
        key(&mut s, 4, "P2");
        s.room.handle(
            Input::Leave {
                conn: 4,
                reason: LeaveReason::Left,
            },
            Script::at(6),
        );
        // q enters: it gets c's current key, nothing of p's.
        let e = s.arrive_as(3, "q", 7, true);
        assert_eq!(to(&e, 3)[0], "joined");
        assert_eq!(
            sent(&e, 3, "e2ee_public_key"),
            [
                serde_json::json!({"type": "e2ee_public_key", "participant": "c", "public_key": "C1"})
            ]
        );
        let joined = &sent(&e, 3, "joined")[0];
        assert_eq!(
            joined["e2ee"],
            serde_json::json!({"mode": "preferred", "active": true})
        );
    }

    #[test]
    fn a_required_room_refuses_a_client_that_cannot_encrypt() {
        let mut s = Script::with_e2ee(E2eeMode::Required);
        s.arrive_as(1, "c", 0, true);
        let e = s.arrive_as(2, "p", 1, false);
        assert_eq!(to(&e, 2), ["close:denied(e2ee_required)"]);
        assert_eq!(
            recorded(&e),
            [RoomEvent::Denied {
                participant: "p".into(),
                conn: 2,
                code: DenialCode::E2eeRequired
            }]
        );
        assert!(to(&e, 1).is_empty(), "the room did not change");
        // A second device that cannot encrypt does not take the place of
        // one that can.
        let e = s.arrive_as(3, "c", 2, false);
        assert_eq!(to(&e, 3), ["close:denied(e2ee_required)"]);
        assert!(to(&e, 1).is_empty());
        let e = s.arrive_as(4, "p", 3, true);
        assert_eq!(to(&e, 4)[0], "joined");
    }

    #[test]
    fn a_preferred_room_falls_back_while_someone_cannot_encrypt_and_everyone_is_told() {
        let mut s = Script::with_e2ee(E2eeMode::Preferred);
        let e = s.arrive_as(1, "c", 0, true);
        assert_eq!(recorded(&e)[0], RoomEvent::E2ee { active: true });
        let e = s.arrive_as(2, "p", 1, false);
        assert_eq!(
            sent(&e, 1, "e2ee"),
            [serde_json::json!({"type": "e2ee", "mode": "preferred", "active": false})]
        );
        assert_eq!(
            sent(&e, 2, "joined")[0]["e2ee"],
            serde_json::json!({"mode": "preferred", "active": false})
        );
        assert!(sent(&e, 2, "e2ee").is_empty(), "told in its joined");
        assert!(recorded(&e).contains(&RoomEvent::E2ee { active: false }));
        // The client that cannot encrypt gets no keys.
        let e = key(&mut s, 1, "C1");
        assert!(to(&e, 2).is_empty());
        let e = s.room.handle(
            Input::Leave {
                conn: 2,
                reason: LeaveReason::Left,
            },
            Script::at(40),
        );
        assert_eq!(
            sent(&e, 1, "e2ee"),
            [serde_json::json!({"type": "e2ee", "mode": "preferred", "active": true})]
        );
        assert!(recorded(&e).contains(&RoomEvent::E2ee { active: true }));
    }

    #[test]
    fn keys_are_refused_when_e2ee_is_off_or_before_the_room() {
        let mut s = Script::with_e2ee(E2eeMode::Off);
        let e = s.arrive_as(1, "c", 0, true);
        assert_eq!(
            sent(&e, 1, "joined")[0]["e2ee"],
            serde_json::json!({"mode": "off", "active": false})
        );
        assert!(recorded(&e)
            .iter()
            .all(|r| !matches!(r, RoomEvent::E2ee { .. })));
        assert_eq!(to(&key(&mut s, 1, "C1"), 1), ["error(not_allowed)"]);
        let mut s = Script::with_e2ee(E2eeMode::Preferred);
        s.arrive_as(2, "p", 0, true);
        assert_eq!(
            to(&key(&mut s, 2, "P1"), 2),
            ["error(bad_state)"],
            "waiting"
        );
    }
}

#[test]
fn someone_back_before_the_clinician_is_admitted_as_the_clinician_returns() {
    let mut s = Script::patient_admitted();
    s.lose(1, 4);
    s.lose(2, 4);
    // The patient's client reconnects first: no clinician, so it waits...
    let e = s.arrive(3, "p", 5);
    assert_eq!(to(&e, 3), ["waiting"]);
    // ...and is in the room as soon as the clinician is back.
    let e = s.arrive(4, "c", 6);
    assert_eq!(to(&e, 3), ["joined"]);
    assert!(to(&e, 4).contains(&"joined".to_owned()));
}

#[test]
fn a_room_taken_over_from_another_node_brings_its_people_back_without_waiting() {
    let mut s = Script::new(SessionKind::Couple, false);
    let before = crate::room::takeover::Takeover {
        readmit: ["p".to_owned()].into_iter().collect(),
        clinician_was_in: true,
    };
    s.room.take_over(before, Script::at(0));
    // Whoever reconnects first, the patient ends in the room with the
    // clinician and never waits once the clinician is there.
    let e = s.arrive(2, "p", 1);
    assert_eq!(
        to(&e, 2),
        ["waiting"],
        "nobody but a clinician alone in a room"
    );
    let e = s.arrive(1, "c", 2);
    assert_eq!(to(&e, 2), ["joined"]);
    let e = s.arrive(3, "q", 3);
    assert_eq!(to(&e, 3), ["waiting"], "the partner had not been admitted");
}

#[test]
fn after_a_takeover_without_a_clinician_back_in_the_grace_people_wait() {
    let mut s = Script::new(SessionKind::Couple, false);
    let before = crate::room::takeover::Takeover {
        readmit: ["p".to_owned()].into_iter().collect(),
        clinician_was_in: true,
    };
    s.room.take_over(before, Script::at(0));
    s.room.handle(Input::Tick, Script::at(6 * 60));
    s.arrive(2, "p", 6 * 60 + 1);
    let e = s.arrive(1, "c", 6 * 60 + 2);
    assert!(to(&e, 2).is_empty(), "the clinician admits them again");
}
