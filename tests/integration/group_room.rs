//! A group room a therapist can run (issue 21), end to end: the clinician
//! is the real web client in headless Chromium (web-client/tests/group.mjs,
//! driven one command at a time), the eight others are the Rust test's
//! webrtc-rs peers, four couples (households), over real TLS with the real
//! SFU and ledger.
//!
//! - The clinician's panel lists the four couples, each with Breakout.
//! - A couple sent to a one-minute breakout is warned a minute before, the
//!   others stop receiving its media (and it theirs), a "Message to
//!   breakouts" reaches it, and it comes back by itself; only the couple and
//!   the clinician hear of its household.
//! - A raised hand reaches the clinician's panel and is announced.
//! - With one person spotlighted, a subscriber that asks for the high layer
//!   of the spotlighted video and the low layer of a small tile (as the web
//!   client does) receives exactly those layers, and Chromium's own
//!   getStats show the spotlighted video at the high layer's bitrate and a
//!   small tile's at the low layer's.
//! - With SCREENSHOTS_DIR set, screenshots of the nine-person room (desktop
//!   and 360 px) and of the breakout panel.
//!
//! Needs /usr/bin/chromium, node and `npm ci` in web-client/tests; without
//! them the test says why and passes, unless REQUIRE_BROWSER_CHECK=1.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::browser::{BrowserEnv, BrowserRun};
use crate::helpers::ivf;
use crate::helpers::peer::{Kind, PeerOptions, TestPeer};
use crate::helpers::simulcast::{parse_payload, send_layers};
use crate::helpers::TestApp;

const CLIP: &str = "tests/fixtures/vp8-320x240-30fps.ivf";
const STEP: Duration = Duration::from_secs(30);
/// How long the layers may take to settle after a layer preference.
const LAYERS_SETTLE: Duration = Duration::from_secs(15);

/// A household member: id, name, role.
type Member = (&'static str, &'static str, &'static str);

/// Household, then its two members.
const COUPLES: [(&str, [Member; 2]); 4] = [
    (
        "h-a",
        [("a1", "Ana Ruiz", "patient"), ("a2", "Ben Ruiz", "partner")],
    ),
    (
        "h-b",
        [
            ("b1", "Cleo Park", "patient"),
            ("b2", "Dev Park", "partner"),
        ],
    ),
    (
        "h-c",
        [("c1", "Eli Shaw", "patient"), ("c2", "Fay Shaw", "partner")],
    ),
    (
        "h-d",
        [("d1", "Gus Lin", "patient"), ("d2", "Hana Lin", "partner")],
    ),
];

/// The two who publish simulcast (three layers of 48, 144 and 264 kbit/s):
/// the one spotlighted, and one who stays a small tile.
const SPOTLIGHT: &str = "d1";
const SMALL: &str = "d2";

fn group_session() -> Value {
    let start = chrono::Utc::now() - chrono::Duration::minutes(5);
    let end = start + chrono::Duration::minutes(60);
    let participants: Vec<Value> = COUPLES
        .iter()
        .flat_map(|(household, members)| {
            members.iter().map(move |(id, name, role)| {
                json!({"id": id, "name": name, "role": role, "household": household})
            })
        })
        .collect();
    json!({
        "title": "Couples group",
        "kind": "group",
        "starts_at": start.to_rfc3339(),
        "ends_at": end.to_rfc3339(),
        "timezone": "America/New_York",
        "clinician": {"id": "clin-g", "name": "Dr Rivera"},
        "participants": participants,
        "settings": {"auto_admit": true},
    })
}

/// All video RTP packets `peer` has received from `from` so far.
fn video_packets(peer: &TestPeer, from: &str) -> u64 {
    peer.tracks_of(from, Kind::Video)
        .iter()
        .map(|t| t.rtp_packets)
        .sum()
}

/// The layer markers of the last `n` video packets `peer` received from `from`.
fn last_layers(peer: &TestPeer, from: &str, n: usize) -> String {
    let mut packets: Vec<_> = peer
        .tracks_of(from, Kind::Video)
        .into_iter()
        .flat_map(|t| t.rtp)
        .collect();
    packets.sort_by_key(|p| p.at);
    packets
        .iter()
        .rev()
        .take(n)
        .map(|p| parse_payload(&p.payload).0.map_or('?', char::from))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clinician_in_chromium_runs_a_group_of_four_couples() {
    let Some(env) = BrowserEnv::or_skip("a_clinician_in_chromium_runs_a_group_of_four_couples")
    else {
        return;
    };
    let started = Instant::now();
    let clip = ivf::read(&Path::new(env!("CARGO_MANIFEST_DIR")).join(CLIP)).unwrap();
    let app = TestApp::spawn().await;
    let session = app.create_session(&group_session()).await;
    let session_id = session["id"].as_str().unwrap().to_owned();
    let links: HashMap<String, String> = app.invite_tokens(&session_id).await;

    // The clinician first: with auto_admit, the couples then go straight in.
    let mut chromium = BrowserRun::web_client(&env, &app, &session_id, &links["clin-g"]).unwrap();
    chromium.wait_result(STEP).await.unwrap();

    let mut peers: HashMap<&str, TestPeer> = HashMap::new();
    let mut senders = Vec::new();
    for (_, members) in COUPLES {
        for (id, _, _) in members {
            let options = if id == SPOTLIGHT || id == SMALL {
                PeerOptions::default().publish_simulcast(&["q", "h", "f"])
            } else if id == "b1" {
                PeerOptions::default()
                    .publish_clip(clip.clone())
                    .record_packets()
            } else {
                PeerOptions::default().publish_clip(clip.clone())
            };
            let peer = TestPeer::join(&app, &links[id], id, options)
                .await
                .unwrap_or_else(|e| panic!("{id} could not join: {e:#}"));
            peer.wait_joined(STEP).await.unwrap();
            if id == SPOTLIGHT || id == SMALL {
                senders.push(tokio::spawn(send_layers(peer.writer())));
            }
            peers.insert(id, peer);
        }
    }
    eprintln!("eight peers in the room after {:?}", started.elapsed());

    // (1) The panel lists the four couples, partners together, each with Breakout.
    let listed = chromium.command("couples 4", STEP).await.unwrap();
    for (i, (household, members)) in COUPLES.iter().enumerate() {
        let row = &listed["couples"][i];
        assert_eq!(row["household"], *household, "{listed}");
        assert_eq!(row["label"], format!("Couple {household}"), "{listed}");
        let names: Vec<&str> = members.iter().map(|m| m.1).collect();
        assert_eq!(row["members"], json!(names), "{listed}");
        assert_eq!(row["buttons"], json!(["Breakout"]), "{listed}");
    }
    // Each couple's partners learn their own household, and nobody else's.
    let joined = peers["a1"].wait_for_message("joined", STEP).await.unwrap();
    assert_eq!(joined["you"]["household"], "h-a");
    let b1 = &peers["b1"];
    let a1_seen_by_b1 = b1
        .messages()
        .into_iter()
        .filter(|m| m["type"] == "participant_joined" && m["participant"]["id"] == "a1")
        .collect::<Vec<_>>();
    assert!(
        a1_seen_by_b1
            .iter()
            .all(|m| m["participant"].get("household").is_none()),
        "{a1_seen_by_b1:?}"
    );

    // Screenshots of the nine-person room, then back to the desktop size.
    b1.wait_for("a1's video at b1", STEP, || {
        (video_packets(b1, "a1") > 30).then_some(())
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    for command in [
        "shot group-room 1280 800",
        "shot group-room-360 360 740",
        "size 1280 800",
    ] {
        chromium.command(command, STEP).await.unwrap();
    }

    // (2) A one-minute breakout for couple h-a, on their own.
    let breakout_at = Instant::now();
    let state = chromium.command("breakout h-a 1", STEP).await.unwrap();
    assert!(
        state["state"]
            .as_str()
            .unwrap()
            .starts_with("In a breakout"),
        "{state}"
    );
    let a1 = &peers["a1"];
    let started_msg = a1
        .wait_for_message_where("breakout active", STEP, |m| {
            m["type"] == "breakout" && m["active"] == true
        })
        .await
        .unwrap();
    assert_eq!(started_msg["household"], "h-a");
    assert!(started_msg["ends_at"].is_string(), "{started_msg}");
    let warning = a1.wait_for_message("breakout_ending", STEP).await.unwrap();
    assert!(warning["seconds_left"].as_u64().unwrap() <= 60, "{warning}");
    chromium
        .command("panelshot breakout-panel", STEP)
        .await
        .unwrap();
    // The others do not receive the couple's media, nor the couple theirs.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = (
        video_packets(b1, "a1") + video_packets(b1, "a2"),
        video_packets(a1, "b1") + video_packets(a1, "c1"),
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let during = (
        video_packets(b1, "a1") + video_packets(b1, "a2"),
        video_packets(a1, "b1") + video_packets(a1, "c1"),
    );
    assert_eq!(
        before, during,
        "media crossed the breakout (b1 from h-a, a1 from b1 and c1)"
    );
    assert!(
        video_packets(a1, "a2") > 0,
        "the couple sees each other in the breakout"
    );
    // Nobody outside the couple hears of its household or its messages.
    assert!(
        !b1.messages()
            .iter()
            .any(|m| m["type"] == "breakout" || m["type"] == "breakout_message"),
        "b1 was told of h-a's breakout"
    );

    // It comes back by itself at the end of its minute.
    let back = chromium
        .command("returned h-a 80000", Duration::from_secs(90))
        .await
        .unwrap();
    let took = breakout_at.elapsed();
    assert_eq!(back["state"], "In the group", "{back}");
    assert!(
        took >= Duration::from_secs(55) && took <= Duration::from_secs(75),
        "the breakout lasted {took:?}"
    );
    a1.wait_for_message_where("breakout ended", STEP, |m| {
        m["type"] == "breakout" && m["active"] == false
    })
    .await
    .unwrap();
    let ended = video_packets(b1, "a1");
    b1.wait_for("a1's video again after the breakout", STEP, || {
        (video_packets(b1, "a1") > ended + 30).then_some(())
    })
    .await
    .unwrap();
    eprintln!("the breakout returned by itself after {took:?}");

    // (3) A raised hand reaches the clinician.
    peers["c1"]
        .send_json(json!({"type": "raise_hand"}))
        .await
        .unwrap();
    let hand = chromium.command("hand Eli Shaw", STEP).await.unwrap();
    assert_eq!(hand["hands"], json!(["Eli Shaw"]), "{hand}");
    assert_eq!(hand["lower"], 1, "{hand}");
    let hands = b1.wait_for_message("hands", STEP).await.unwrap();
    assert_eq!(hands["raised"][0]["id"], "c1");

    // (4) Spotlight: the high layer for the spotlighted video, the low
    // layer for a small tile.
    let spot = chromium.command("spotlight Gus Lin", STEP).await.unwrap();
    assert_eq!(spot["featured"], "Gus Lin", "{spot}");
    chromium
        .command("shot group-spotlight 1280 800", STEP)
        .await
        .unwrap();
    let told = b1.wait_for_message("spotlight", STEP).await.unwrap();
    assert_eq!(told["participant"], SPOTLIGHT);
    // b1 asks as the web client does for a large and a small tile.
    b1.send_json(json!({"type": "layer_preference", "layers": {SPOTLIGHT: "high", SMALL: "low"}}))
        .await
        .unwrap();
    // The high layer still has to fit the subscriber's bandwidth estimate
    // (the SFU never congests a subscriber for a large tile); on a loaded
    // test machine the estimate may dip for a moment, so the layers are
    // looked at until they settle, for up to LAYERS_SETTLE.
    let settle = Instant::now();
    let (mut spot_layers, mut small_layers);
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        (spot_layers, small_layers) = (last_layers(b1, SPOTLIGHT, 30), last_layers(b1, SMALL, 30));
        let done = spot_layers == "F".repeat(30) && small_layers == "Q".repeat(30);
        if done || settle.elapsed() > LAYERS_SETTLE {
            break;
        }
    }
    assert_eq!(spot_layers, "F".repeat(30), "{SPOTLIGHT} at b1");
    assert_eq!(small_layers, "Q".repeat(30), "{SMALL} at b1");
    eprintln!("b1 receives the layers wanted after {:?}", settle.elapsed());
    // Chromium (whose page asked for these layers itself: the spotlighted
    // tile is large, d2's small) cannot read the layer markers; its
    // getStats bitrate tells the layers apart by their ratio. As sent they
    // are 264 (f), 144 (h) and 48 (q) kbit/s, but on a loaded machine the
    // sender falls behind and the SFU paces to Chromium's estimate, so the
    // check is only that the spotlighted video is well above the low layer
    // (at least 2.5 times the small tile's); b1 above checks the exact layers.
    let mut rates = Value::Null;
    let kbps = |rates: &Value, id: &str| rates["kbps"][id].as_i64().unwrap_or(0);
    for _ in 0..4 {
        rates = chromium.command("rates 3000", STEP).await.unwrap();
        eprintln!("Chromium receives (kbit/s): {rates}");
        if kbps(&rates, SMALL) > 0 && 2 * kbps(&rates, SPOTLIGHT) > 5 * kbps(&rates, SMALL) {
            break;
        }
    }
    assert!(
        kbps(&rates, SMALL) > 0 && 2 * kbps(&rates, SPOTLIGHT) > 5 * kbps(&rates, SMALL),
        "Chromium receives the spotlighted video at {} kbit/s and a small tile's at {}: {rates}",
        kbps(&rates, SPOTLIGHT),
        kbps(&rates, SMALL)
    );
    // Back from the breakout, the couple is seen again by the clinician.
    for id in ["a1", "a2"] {
        assert!(
            kbps(&rates, id) > 0,
            "Chromium receives nothing of {id}: {rates}"
        );
    }

    let done = chromium.command("quit", STEP).await.unwrap();
    assert_eq!(done["problems"], json!([]), "{done}");
    chromium.finish(Duration::from_secs(15)).await.unwrap();
    for sender in senders {
        sender.abort();
    }
    for (_, peer) in peers {
        let problems = peer.problems();
        assert!(problems.is_empty(), "{}: {problems:?}", peer.id());
        peer.close().await;
    }
    eprintln!("group room test took {:?}", started.elapsed());
    app.stop().await;
}
