//! The shard core driven by real str0m clients in memory, with a fake
//! clock: ICE, DTLS, SDP and SRTP all run, no socket is opened.

use std::time::Duration;

use str0m::media::{KeyframeRequestKind, MediaKind, Mid, Rid};
use str0m::net::Protocol;
use str0m::Event;
use uuid::Uuid;

use super::sim::{Side, Sim};
use crate::sfu::{Command, Pc, PeerEvent};
use tandem_protocol::ErrorCode;
use tandem_protocol::MediaKind as SignalKind;

/// Long enough for ICE, DTLS and both negotiations on the fake clock.
const CONNECT: Duration = Duration::from_secs(2);

/// Long enough for a written packet to reach every subscriber.
const DELIVER: Duration = Duration::from_millis(100);

/// The payloads a client's `sub` connection received, as sent (a video
/// payload without its two bytes of VP8 headers; the tests' audio payloads
/// are text, so they never start with the VP8 descriptor's 0x10).
fn received(side: &Side) -> Vec<Vec<u8>> {
    side.rtp()
        .map(|p| {
            let video = p.payload.first() == Some(&0x10) && p.payload.len() > 2;
            p.payload[if video { 2 } else { 0 }..].to_vec()
        })
        .collect()
}

fn tags(tags: &[&[u8]]) -> Vec<Vec<u8>> {
    tags.iter().map(|t| t.to_vec()).collect()
}

/// The `sub` m-line of `kind` that the client was offered first.
fn sub_mid(side: &Side, kind: MediaKind) -> Mid {
    side.events
        .iter()
        .find_map(|e| match e {
            Event::MediaAdded(m) if m.kind == kind => Some(m.mid),
            _ => None,
        })
        .expect("a subscribed track")
}

/// Asks the shard for a keyframe of `mid` as a browser's decoder would.
fn send_pli(side: &mut Side, mid: Mid) {
    side.rtc
        .direct_api()
        .stream_rx_by_mid(mid, None)
        .expect("a receiving stream")
        .request_keyframe(KeyframeRequestKind::Pli);
}

#[test]
fn media_reaches_exactly_the_subscribers_of_its_room_and_group() {
    let mut sim = Sim::new();
    let (room, other_room) = (Uuid::new_v4(), Uuid::new_v4());
    let alice = sim.join(room);
    let bob = sim.join(room);
    let carol = sim.join(room);
    let dave = sim.join(other_room);
    let erin = sim.join(other_room);
    // Carol is in a breakout.
    let conn = sim.clients[carol].conn;
    sim.command(Command::SetGroup { conn, group: 1 });
    let a = sim.publish(alice, true, true, &[]);
    let d = sim.publish(dave, true, false, &[]);
    sim.run(CONNECT);
    for i in [alice, dave] {
        assert!(sim.clients[i].publish.connected(), "publisher {i} connects");
    }
    for i in [bob, erin] {
        assert!(
            sim.clients[i].subscribe.connected(),
            "subscriber {i} connects"
        );
    }
    assert!(
        sim.clients[carol].offers().is_empty(),
        "nothing is offered across groups"
    );

    sim.send(alice, a.audio.unwrap(), None, false, b"alice-audio");
    sim.send(alice, a.video.unwrap(), None, false, b"alice-video");
    sim.send(dave, d.audio.unwrap(), None, false, b"dave-audio");
    sim.run(DELIVER);

    let got: Vec<Vec<u8>> = received(&sim.clients[bob].subscribe);
    assert_eq!(got.len(), 2, "bob gets alice's two packets: {got:?}");
    assert!(got.contains(&b"alice-audio".to_vec()) && got.contains(&b"alice-video".to_vec()));
    assert_eq!(
        received(&sim.clients[erin].subscribe),
        tags(&[b"dave-audio"])
    );
    for i in [alice, carol, dave] {
        assert!(
            received(&sim.clients[i].subscribe).is_empty(),
            "{i} gets nothing"
        );
    }
}

/// Alice publishes video to Bob, who has seen her keyframe: the simulation,
/// Alice, Bob and her video's mid. Bob's link is estimated by str0m (a
/// group room's) or judged by its loss (a joint session's), as
/// `estimate_bandwidth` says ([`crate::sfu::Joining`]).
fn alice_on_video_to_bob(estimate_bandwidth: bool) -> (Sim, usize, usize, Mid) {
    let mut sim = Sim::new();
    sim.estimate_bandwidth = estimate_bandwidth;
    let room = Uuid::new_v4();
    let alice = sim.join(room);
    let bob = sim.join(room);
    let video = sim.publish(alice, false, true, &[]).video.unwrap();
    sim.run(CONNECT);
    sim.send(alice, video, None, true, b"keyframe");
    sim.run(DELIVER);
    assert_eq!(received(&sim.clients[bob].subscribe), tags(&[b"keyframe"]));
    (sim, alice, bob, video)
}

#[test]
fn a_burst_reaches_a_subscriber_in_the_wake_it_arrived_in() {
    // A group room's subscriber is paced by str0m, a joint session's is
    // not; either way a frame of several packets leaves in the wake it
    // arrived in, not one packet per wake of the loop's timer (a
    // millisecond each, and no batch to send).
    for estimate_bandwidth in [true, false] {
        let (mut sim, alice, bob, video) = alice_on_video_to_bob(estimate_bandwidth);
        let frame: Vec<Vec<u8>> = (0..6).map(|i| format!("packet-{i}").into_bytes()).collect();
        for tag in &frame {
            sim.send(alice, video, None, false, tag);
        }
        sim.settle();
        let got = received(&sim.clients[bob].subscribe);
        assert_eq!(
            &got[1..],
            &frame[..],
            "the whole burst, in order, at once (estimated: {estimate_bandwidth})"
        );
    }
}

#[test]
fn a_video_packet_lost_on_the_way_to_a_subscriber_is_sent_again() {
    for estimate_bandwidth in [true, false] {
        let (mut sim, alice, bob, video) = alice_on_video_to_bob(estimate_bandwidth);
        sim.lose_rtp_to(bob, 1);
        for tag in [&b"lost"[..], b"after-1", b"after-2"] {
            sim.send(alice, video, None, false, tag);
            sim.run(Duration::from_millis(33));
        }
        // Bob's NACK reaches the shard, which answers from its cache.
        sim.run(Duration::from_millis(500));
        let got = received(&sim.clients[bob].subscribe);
        assert!(
            got.contains(&b"lost".to_vec()),
            "the lost packet came again (estimated: {estimate_bandwidth}): {got:?}"
        );
    }
}

#[test]
fn breakout_media_stays_in_the_breakout_even_for_a_late_joiner() {
    let mut sim = Sim::new();
    let room = Uuid::new_v4();
    let alice = sim.join(room);
    let bob = sim.join(room);
    let carol = sim.join(room);
    for i in [bob, carol] {
        let conn = sim.clients[i].conn;
        sim.command(Command::SetGroup { conn, group: 1 });
    }
    let c = sim.publish(carol, true, false, &[]);
    sim.run(CONNECT);
    // Frank arrives in the main room while the breakout goes on.
    let frank = sim.join(room);
    sim.run(CONNECT);

    sim.send(carol, c.audio.unwrap(), None, false, b"private");
    sim.run(DELIVER);
    assert_eq!(received(&sim.clients[bob].subscribe), tags(&[b"private"]));
    for i in [alice, frank] {
        assert!(
            received(&sim.clients[i].subscribe).is_empty(),
            "{i} hears nothing"
        );
    }
}

#[test]
fn a_blocked_kind_is_not_forwarded_until_unblocked() {
    let mut sim = Sim::new();
    let room = Uuid::new_v4();
    let alice = sim.join(room);
    let bob = sim.join(room);
    let a = sim.publish(alice, true, true, &[]);
    sim.run(CONNECT);
    let (audio, video) = (a.audio.unwrap(), a.video.unwrap());
    let conn = sim.clients[alice].conn;

    sim.command(Command::Block {
        conn,
        kind: SignalKind::Audio,
        blocked: true,
    });
    sim.send(alice, audio, None, false, b"muted");
    sim.send(alice, video, None, false, b"seen");
    sim.run(DELIVER);
    assert_eq!(received(&sim.clients[bob].subscribe), tags(&[b"seen"]));

    sim.command(Command::Block {
        conn,
        kind: SignalKind::Audio,
        blocked: false,
    });
    sim.send(alice, audio, None, false, b"heard");
    sim.run(DELIVER);
    assert_eq!(
        received(&sim.clients[bob].subscribe),
        tags(&[b"seen", b"heard"])
    );

    // Unblocking video asks the publisher for a keyframe at once.
    sim.command(Command::Block {
        conn,
        kind: SignalKind::Video,
        blocked: true,
    });
    sim.send(alice, video, None, false, b"hidden");
    sim.run(Duration::from_secs(1));
    let before = sim.clients[alice].publish.keyframe_requests();
    sim.command(Command::Block {
        conn,
        kind: SignalKind::Video,
        blocked: false,
    });
    sim.run(DELIVER);
    assert_eq!(sim.clients[alice].publish.keyframe_requests(), before + 1);
    assert!(!received(&sim.clients[bob].subscribe).contains(&b"hidden".to_vec()));
}

#[test]
fn keyframe_requests_reach_the_publisher_at_most_every_500_ms() {
    let mut sim = Sim::new();
    let room = Uuid::new_v4();
    let alice = sim.join(room);
    let bob = sim.join(room);
    let carol = sim.join(room);
    let a = sim.publish(alice, false, true, &[]);
    sim.run(CONNECT);
    let video = a.video.unwrap();
    sim.send(alice, video, None, true, b"frame");
    // Past the requests the shard itself made when bob and carol connected.
    sim.run(Duration::from_secs(1));
    let base = sim.clients[alice].publish.keyframe_requests();

    // Both subscribers lose the picture at once: one request.
    for i in [bob, carol] {
        let mid = sub_mid(&sim.clients[i].subscribe, MediaKind::Video);
        send_pli(&mut sim.clients[i].subscribe, mid);
    }
    sim.run(Duration::from_millis(100));
    assert_eq!(sim.clients[alice].publish.keyframe_requests(), base + 1);

    // More within the interval: none.
    let mid = sub_mid(&sim.clients[bob].subscribe, MediaKind::Video);
    for _ in 0..3 {
        send_pli(&mut sim.clients[bob].subscribe, mid);
        sim.run(Duration::from_millis(100));
    }
    assert_eq!(sim.clients[alice].publish.keyframe_requests(), base + 1);

    // After it: the next one goes through.
    sim.run(Duration::from_millis(200));
    send_pli(&mut sim.clients[bob].subscribe, mid);
    sim.run(Duration::from_millis(100));
    assert_eq!(sim.clients[alice].publish.keyframe_requests(), base + 2);
}

#[test]
fn simulcast_layers_switch_on_a_keyframe_of_the_new_layer() {
    let mut sim = Sim::new();
    let room = Uuid::new_v4();
    let alice = sim.join(room);
    let a = sim.publish(alice, false, true, &["l", "h"]);
    let bob = sim.join(room);
    sim.run(CONNECT);
    assert!(sim.clients[bob].subscribe.connected());
    let video = a.video.unwrap();
    let (low, high) = (Some("l"), Some("h"));

    // Nothing is forwarded before a keyframe of the chosen layer; the
    // chosen layer (unmeasured yet: the first) is asked for one.
    sim.send(alice, video, low, false, b"l0");
    sim.send(alice, video, high, false, b"h0");
    sim.send(alice, video, high, true, b"h0-key");
    sim.run(DELIVER);
    assert!(received(&sim.clients[bob].subscribe).is_empty());
    let asked: Vec<Option<Rid>> = sim.clients[alice]
        .publish
        .events
        .iter()
        .filter_map(|e| match e {
            Event::KeyframeRequest(r) => Some(r.rid),
            _ => None,
        })
        .collect();
    assert!(asked.contains(&Some("l".into())), "asked: {asked:?}");

    sim.send(alice, video, low, true, b"l1-key");
    sim.send(alice, video, high, false, b"h1");
    sim.run(DELIVER);
    assert_eq!(received(&sim.clients[bob].subscribe), tags(&[b"l1-key"]));

    // A second of media measures the layers: the bigger one is better and
    // is switched to on its keyframe, the stream continuing without a gap.
    for _ in 0..33 {
        sim.send(alice, video, low, false, &[b'l'; 100]);
        sim.send(alice, video, high, false, &[b'h'; 1000]);
        sim.run(Duration::from_millis(33));
    }
    sim.send(alice, video, low, false, b"l-last");
    sim.send(alice, video, high, false, b"h-not-yet");
    sim.run(DELIVER);
    let got = received(&sim.clients[bob].subscribe);
    assert_eq!(got.last(), Some(&b"l-last".to_vec()));
    assert!(
        got.iter().all(|p| p.first() != Some(&b'h')),
        "only the low layer so far"
    );

    // (One at a time: the publisher's pacer may reorder its two streams.)
    sim.send(alice, video, high, true, b"h-key");
    sim.run(DELIVER);
    sim.send(alice, video, low, false, b"l-after");
    sim.run(DELIVER);
    let bob_rtp: Vec<_> = sim.clients[bob].subscribe.rtp().collect();
    let (last_low, first_high) = (bob_rtp[bob_rtp.len() - 2], bob_rtp[bob_rtp.len() - 1]);
    assert!(last_low.payload.ends_with(b"l-last"));
    assert!(first_high.payload.ends_with(b"h-key"));
    assert_eq!(*first_high.seq_no, *last_low.seq_no + 1);
    assert_eq!(first_high.header.ssrc, last_low.header.ssrc, "one stream");
}

#[test]
fn a_garbage_offer_is_rejected_and_a_good_one_still_works() {
    let mut sim = Sim::new();
    let alice = sim.join(Uuid::new_v4());
    let conn = sim.clients[alice].conn;
    sim.command(Command::Offer {
        conn,
        pc: Pc::Pub,
        sdp: "v=0\r\nnot sdp at all".into(),
    });
    sim.command(Command::Offer {
        conn,
        pc: Pc::Sub,
        sdp: "v=0\r\n".into(),
    });
    sim.run(DELIVER);
    assert_eq!(
        sim.clients[alice].rejected(),
        [ErrorCode::BadMessage, ErrorCode::BadState]
    );

    sim.publish(alice, true, false, &[]);
    sim.run(CONNECT);
    assert!(sim.clients[alice].publish.connected());
    assert_eq!(sim.clients[alice].rejected().len(), 2);
}

#[test]
fn an_answer_without_an_offer_is_rejected() {
    let mut sim = Sim::new();
    let alice = sim.join(Uuid::new_v4());
    let conn = sim.clients[alice].conn;
    for pc in [Pc::Pub, Pc::Sub] {
        sim.command(Command::Answer {
            conn,
            pc,
            sdp: "v=0\r\n".into(),
        });
    }
    sim.run(DELIVER);
    assert_eq!(
        sim.clients[alice].rejected(),
        [ErrorCode::BadState, ErrorCode::BadState]
    );
}

#[test]
fn a_refused_sub_answer_is_rejected_and_its_tracks_offered_again() {
    let mut sim = Sim::new();
    let room = Uuid::new_v4();
    let alice = sim.join(room);
    let bob = sim.join(room);
    sim.clients[bob].auto = false;
    let a = sim.publish(alice, true, false, &[]);
    sim.run(CONNECT);
    assert_eq!(sim.clients[bob].offers().len(), 1);

    let conn = sim.clients[bob].conn;
    sim.command(Command::Answer {
        conn,
        pc: Pc::Sub,
        sdp: "garbage".into(),
    });
    sim.run(DELIVER);
    assert_eq!(sim.clients[bob].rejected(), [ErrorCode::BadMessage]);
    let offers = sim.clients[bob].offers();
    assert_eq!(offers.len(), 2, "the track is offered again");
    assert!(offers[1].contains("m=audio"));

    // Answering the new offer works.
    sim.clients[bob].auto = true;
    sim.answer_last_offer(bob);
    sim.run(CONNECT);
    assert!(sim.clients[bob].subscribe.connected());
    sim.send(alice, a.audio.unwrap(), None, false, b"hello");
    sim.run(DELIVER);
    assert_eq!(received(&sim.clients[bob].subscribe), tags(&[b"hello"]));
}

#[test]
fn commands_for_unknown_connections_change_nothing() {
    let mut sim = Sim::new();
    let alice = sim.join(Uuid::new_v4());
    let stranger = 999;
    let sdp = "v=0\r\n".to_string();
    sim.command(Command::Offer {
        conn: stranger,
        pc: Pc::Pub,
        sdp: sdp.clone(),
    });
    sim.command(Command::Answer {
        conn: stranger,
        pc: Pc::Sub,
        sdp,
    });
    sim.command(Command::Candidate {
        conn: stranger,
        pc: Pc::Pub,
        candidate: Some("candidate:1 1 udp 2122260223 10.9.9.9 5000 typ host".into()),
    });
    sim.command(Command::SetGroup {
        conn: stranger,
        group: 3,
    });
    sim.command(Command::Block {
        conn: stranger,
        kind: SignalKind::Video,
        blocked: true,
    });
    sim.command(Command::Leave { conn: stranger });
    sim.run(DELIVER);
    assert!(sim.clients[alice].signals.is_empty());
    assert_eq!(sim.core.peers.len(), 1);
    assert_eq!(sim.core.rooms.len(), 1);
}

#[test]
fn unusable_candidates_are_ignored() {
    let mut sim = Sim::new();
    let alice = sim.join(Uuid::new_v4());
    let conn = sim.clients[alice].conn;
    for candidate in [
        None,
        Some("not a candidate".to_string()),
        Some("a=candidate:1 1 udp 2122260223 4f1e.local 5000 typ host".to_string()),
    ] {
        sim.command(Command::Candidate {
            conn,
            pc: Pc::Pub,
            candidate,
        });
    }
    sim.run(DELIVER);
    assert!(sim.clients[alice].rejected().is_empty());
}

#[test]
fn datagrams_are_routed_by_source_address_and_strangers_dropped() {
    let mut sim = Sim::new();
    let room = Uuid::new_v4();
    let alice = sim.join(room);
    let bob = sim.join(room);
    sim.publish(alice, true, false, &[]);
    sim.run(CONNECT);
    let route = |sim: &Sim, i: usize, pc: Pc| {
        let side = match pc {
            Pc::Pub => &sim.clients[i].publish,
            Pc::Sub => &sim.clients[i].subscribe,
        };
        sim.core.routes.get(&(Protocol::Udp, side.addr)).copied()
    };
    let (a, b) = (sim.clients[alice].conn, sim.clients[bob].conn);
    assert_eq!(route(&sim, alice, Pc::Pub), Some((a, Pc::Pub)));
    assert_eq!(route(&sim, bob, Pc::Sub), Some((b, Pc::Sub)));

    // Garbage, and a STUN-shaped packet from nobody: dropped, unanswered.
    let sent = sim.sent.len();
    let stranger = "10.9.9.9:5000".parse().unwrap();
    let mut stun = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
    stun.extend_from_slice(&[7; 12]);
    for data in [&b"\x80garbage"[..], &stun, &[]] {
        sim.core
            .handle_datagram(sim.now, Protocol::Udp, stranger, sim.udp, data);
    }
    sim.core.flush(sim.now);
    assert!(sim.core.poll_transmit().is_none());
    assert!(!sim.core.routes.contains_key(&(Protocol::Udp, stranger)));
    assert_eq!(sim.sent.len(), sent);

    // A publisher who leaves is forgotten and renegotiated away.
    sim.command(Command::Leave { conn: a });
    sim.run(DELIVER);
    assert_eq!(route(&sim, alice, Pc::Pub), None);
    assert!(sim.core.ufrags.values().all(|&(c, _)| c != a));
    assert_eq!(sim.core.ufrags.len(), 2, "bob's two connections");
    let offers = sim.clients[bob].offers();
    assert_eq!(offers.len(), 2);
    assert!(offers[1].contains("a=inactive"), "{}", offers[1]);
}

#[test]
fn the_core_answers_with_its_candidates_and_events_in_order() {
    let mut sim = Sim::new();
    let alice = sim.join(Uuid::new_v4());
    sim.publish(alice, true, true, &[]);
    sim.run(CONNECT);
    let signals = &sim.clients[alice].signals;
    assert!(matches!(signals[0], PeerEvent::Answer { pc: Pc::Pub, .. }));
    let candidates: Vec<&PeerEvent> = signals
        .iter()
        .filter(|s| matches!(s, PeerEvent::Candidate { pc: Pc::Pub, .. }))
        .collect();
    // UDP, ICE-TCP, then the end of candidates.
    assert_eq!(candidates.len(), 3);
    assert!(matches!(
        candidates[2],
        PeerEvent::Candidate {
            candidate: None,
            ..
        }
    ));
    assert!(signals.contains(&PeerEvent::Connected { pc: Pc::Pub }));
}

/// A `pub` offer from client `i`'s own str0m, as text (not sent).
fn pub_offer(sim: &mut Sim, i: usize) -> String {
    let mut api = sim.clients[i].publish.rtc.sdp_api();
    api.add_media(
        MediaKind::Audio,
        str0m::media::Direction::SendOnly,
        None,
        None,
        None,
    );
    let (offer, _pending) = api.apply().expect("a change to offer");
    offer.to_sdp_string()
}

/// The messages of the rejections client `i` received.
fn rejection_messages(sim: &Sim, i: usize) -> Vec<String> {
    sim.clients[i]
        .signals
        .iter()
        .filter_map(|s| match s {
            PeerEvent::Rejected { message, .. } => Some(message.clone()),
            _ => None,
        })
        .collect()
}

fn answers(sim: &Sim, i: usize) -> usize {
    sim.clients[i]
        .signals
        .iter()
        .filter(|s| matches!(s, PeerEvent::Answer { .. }))
        .count()
}

#[test]
fn offers_without_a_usable_fingerprint_are_refused() {
    let mut sim = Sim::new();
    let alice = sim.join(Uuid::new_v4());
    sim.clients[alice].auto = false;
    let conn = sim.clients[alice].conn;
    let good = pub_offer(&mut sim, alice);
    let fingerprint = good
        .lines()
        .find(|l| l.starts_with("a=fingerprint:"))
        .expect("str0m offers carry a fingerprint")
        .to_owned();
    let without: String = good
        .split_inclusive("\r\n")
        .filter(|l| !l.starts_with("a=fingerprint:"))
        .collect();
    let bad = [
        without.clone(),
        good.replace(&fingerprint, "a=fingerprint:sha-256 not-a-fingerprint"),
        good.replace(&fingerprint, "a=fingerprint:sha-256 AB:CD"),
        good.replace(
            &fingerprint,
            "a=fingerprint:md5 AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89",
        ),
    ];
    for (n, sdp) in bad.iter().enumerate() {
        sim.command(Command::Offer {
            conn,
            pc: Pc::Pub,
            sdp: sdp.clone(),
        });
        sim.run(DELIVER);
        assert_eq!(answers(&sim, alice), 0, "offer {n} was answered");
        assert_eq!(
            sim.clients[alice].rejected().len(),
            n + 1,
            "offer {n} was not refused"
        );
    }
    assert!(sim.clients[alice]
        .rejected()
        .iter()
        .all(|c| *c == ErrorCode::BadMessage));
    for message in rejection_messages(&sim, alice) {
        assert!(message.contains("fingerprint"), "{message}");
    }
    // The peer connection is untouched: the good offer is answered.
    sim.command(Command::Offer {
        conn,
        pc: Pc::Pub,
        sdp: good,
    });
    sim.run(DELIVER);
    assert_eq!(answers(&sim, alice), 1);
}

#[test]
fn refusals_of_sdp_are_plain_words() {
    let mut sim = Sim::new();
    let alice = sim.join(Uuid::new_v4());
    let conn = sim.clients[alice].conn;
    let good = pub_offer(&mut sim, alice);
    for sdp in [
        "v=0\r\nnot sdp at all".to_string(),
        good.replace("m=audio", "m=audio x y z"),
        good.replace("a=ice-ufrag:", "a=ice-ufrag"),
        "garbage".to_string(),
    ] {
        sim.command(Command::Offer {
            conn,
            pc: Pc::Pub,
            sdp,
        });
    }
    sim.command(Command::Answer {
        conn,
        pc: Pc::Sub,
        sdp: "v=0\r\n".into(),
    });
    sim.run(DELIVER);
    let messages = rejection_messages(&sim, alice);
    assert!(!messages.is_empty());
    for message in messages {
        eprintln!("{message}");
        assert!(!message.contains("0x"), "an address in: {message}");
        assert!(
            !message.contains('{') && !message.contains("Some(") && !message.contains("Error"),
            "debug output in: {message}"
        );
    }
}

/// str0m (0.25, ICE-lite) hands DTLS, SRTP and SRTCP only from an address
/// ICE has validated: the nominated pair's, or one that sent a binding
/// request with the right ufrag and password (`Rtc::accepts`). So DTLS from
/// anywhere else, even from an address the client trickled as a candidate,
/// never reaches a peer connection: the shard drops it unrouted.
#[test]
fn dtls_is_taken_only_from_the_address_ice_validated() {
    let mut sim = Sim::new();
    let alice = sim.join(Uuid::new_v4());
    sim.publish(alice, true, false, &[]);
    sim.run(CONNECT);
    assert!(sim.clients[alice].publish.connected());
    let conn = sim.clients[alice].conn;

    // An address alice announced herself, which never passed a check.
    let trickled: std::net::SocketAddr = "10.1.0.1:4999".parse().unwrap();
    sim.command(Command::Candidate {
        conn,
        pc: Pc::Pub,
        candidate: Some(format!(
            "candidate:1 1 udp 2130706431 {} {} typ host",
            trickled.ip(),
            trickled.port()
        )),
    });
    let stranger: std::net::SocketAddr = "10.9.9.9:4000".parse().unwrap();
    // A ClientHello record and an application-data record (epoch 1).
    let mut hello = vec![22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12];
    hello.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    let mut data = vec![23, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 9, 0, 16];
    data.extend_from_slice(&[0xab; 16]);
    let sent = sim.sent.len();
    for from in [stranger, trickled] {
        for record in [&hello, &data] {
            sim.core
                .handle_datagram(sim.now, Protocol::Udp, from, sim.udp, record);
        }
        sim.core.flush(sim.now);
        while let Some(t) = sim.core.poll_transmit() {
            assert_ne!(t.destination, from, "answered DTLS from {from}");
        }
        assert!(
            !sim.core.routes.contains_key(&(Protocol::Udp, from)),
            "DTLS from {from} was routed"
        );
    }
    assert_eq!(sim.sent.len(), sent);
    // Alice's own path is unharmed.
    sim.run(DELIVER);
    let own = sim.clients[alice].publish.addr;
    assert_eq!(
        sim.core.routes.get(&(Protocol::Udp, own)).copied(),
        Some((conn, Pc::Pub))
    );
    assert!(!sim.clients[alice].publish.events.iter().any(|e| matches!(
        e,
        Event::IceConnectionStateChange(str0m::IceConnectionState::Disconnected)
    )));
}

#[test]
fn a_couple_back_from_a_breakout_is_seen_and_heard_again_by_everyone() {
    let mut sim = Sim::new();
    let room = Uuid::new_v4();
    let clinician = sim.join(room);
    let ana = sim.join(room);
    let ben = sim.join(room);
    let cleo = sim.join(room);
    let a = sim.publish(ana, true, true, &[]);
    let b = sim.publish(ben, true, true, &[]);
    sim.run(CONNECT);
    for group in [1, 0] {
        for i in [ana, ben] {
            let conn = sim.clients[i].conn;
            sim.command(Command::SetGroup { conn, group });
        }
        sim.run(CONNECT);
    }
    sim.send(ana, a.video.unwrap(), None, false, b"ana-back");
    sim.send(ben, b.audio.unwrap(), None, false, b"ben-back");
    sim.run(DELIVER);
    for i in [clinician, cleo] {
        let got = received(&sim.clients[i].subscribe);
        assert!(
            got.contains(&b"ana-back".to_vec()) && got.contains(&b"ben-back".to_vec()),
            "{i} gets {got:?}"
        );
        // Browsers refuse an offer whose m-lines share an msid: the track
        // offered again must not take the old, inactive line's.
        let offer = sim.clients[i]
            .offers()
            .last()
            .copied()
            .unwrap_or_default()
            .to_owned();
        let msids: Vec<&str> = offer.lines().filter(|l| l.starts_with("a=msid:")).collect();
        let unique: std::collections::HashSet<&&str> = msids.iter().collect();
        assert_eq!(
            unique.len(),
            msids.len(),
            "{i}: duplicate msid lines in\n{offer}"
        );
    }
}

#[test]
fn the_audio_level_in_packets_tells_who_is_speaking() {
    let mut sim = Sim::new();
    let room = Uuid::new_v4();
    let alice = sim.join(room);
    let _bob = sim.join(room);
    let a = sim.publish(alice, true, false, &[]);
    sim.run(CONNECT);
    let speaking = |sim: &Sim| -> Vec<bool> {
        sim.clients[alice]
            .signals
            .iter()
            .filter_map(|s| match s {
                PeerEvent::Speaking { speaking } => Some(*speaking),
                _ => None,
            })
            .collect()
    };
    let audio = a.audio.unwrap();
    sim.send_audio_level(alice, audio, -127, b"quiet");
    sim.run(DELIVER);
    assert!(speaking(&sim).is_empty(), "silence is not speech");
    sim.send_audio_level(alice, audio, -20, b"hello");
    sim.run(DELIVER);
    assert_eq!(speaking(&sim), [true]);
    // Quiet packets for longer than a pause between words: speech is over.
    for _ in 0..12 {
        sim.send_audio_level(alice, audio, -100, b"...");
        sim.run(DELIVER);
    }
    assert_eq!(speaking(&sim), [true, false]);
}

/// `seconds` of Alice's two-layer camera (`l` small, `h` large) at 30
/// frames a second, each layer with a keyframe every tenth frame, and the
/// layer of the last frame Bob received.
fn camera(sim: &mut Sim, alice: usize, video: Mid, bob: usize, seconds: u32) -> Option<u8> {
    for frame in 0..30 * seconds {
        let key = frame % 10 == 0;
        sim.send(alice, video, Some("l"), key, &[b'l'; 100]);
        sim.send(alice, video, Some("h"), key, &[b'h'; 1000]);
        sim.run(Duration::from_millis(33));
    }
    received(&sim.clients[bob].subscribe)
        .last()
        .and_then(|tag| tag.first().copied())
}

#[test]
fn a_joint_sessions_subscriber_reporting_heavy_loss_gets_the_small_layer_until_its_link_is_clean() {
    use crate::sfu::loss_estimate::FIRST_BACKOFF;
    let mut sim = Sim::new();
    sim.estimate_bandwidth = false;
    let room = Uuid::new_v4();
    let alice = sim.join(room);
    let video = sim.publish(alice, false, true, &["l", "h"]).video.unwrap();
    let bob = sim.join(room);
    sim.run(CONNECT);
    assert_eq!(
        camera(&mut sim, alice, video, bob, 3),
        Some(b'h'),
        "a joint session gets the best"
    );

    // Two seconds of packets to Bob are lost, retransmissions too: his
    // receiver report says so, and the shard, which has no estimator for
    // him, cuts by the loss.
    sim.lose_rtp_to(bob, 60);
    assert_eq!(
        camera(&mut sim, alice, video, bob, 4),
        Some(b'l'),
        "the small layer after the loss"
    );
    assert_eq!(
        camera(&mut sim, alice, video, bob, 5),
        Some(b'l'),
        "and it stays"
    );

    // A clean link is tried with the large layer again.
    let back = FIRST_BACKOFF.as_secs() as u32;
    assert_eq!(
        camera(&mut sim, alice, video, bob, back),
        Some(b'h'),
        "the best again"
    );
}
