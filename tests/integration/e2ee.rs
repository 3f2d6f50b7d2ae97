//! End-to-end encryption over the real server (issue 19): the `e2ee`
//! session setting, the refusal of clients that cannot encrypt in a
//! `required` room, the fallback of a `preferred` room, and the relay of
//! key material (public keys to the room, a wrapped media key to its one
//! recipient), and what a client with a valid link but no keys receives
//! from the real web client: frames it cannot open. The browsers' own
//! side is `web_client_e2ee`.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::browser::{BrowserEnv, BrowserRun};
use crate::helpers::peer::{Kind, PeerOptions, TestPeer};
use crate::helpers::signal_client::SignalClient;
use crate::helpers::{couple_session, vp8, TestApp};

const WAIT: Duration = Duration::from_secs(5);

/// A session running now with `e2ee` = `mode`, admitting rostered people
/// while the clinician is in; its id and tokens by participant id.
async fn session_with(app: &TestApp, mode: &str) -> (String, HashMap<String, String>) {
    let mut body = couple_session(-5, 60);
    body["settings"] = json!({"auto_admit": true, "e2ee": mode});
    let created = app.create_session(&body).await;
    assert_eq!(created["settings"]["e2ee"], mode, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let links = app.invite_tokens(&id).await;
    (id, links)
}

async fn session(app: &TestApp, mode: &str) -> HashMap<String, String> {
    session_with(app, mode).await.1
}

/// Joins, saying whether the client can encrypt; the `joined` or `denied`.
async fn join(app: &TestApp, token: &str, e2ee: bool) -> (SignalClient, Value) {
    let mut client = SignalClient::connect(app).await.unwrap();
    client
        .send_json(json!({"type": "join", "token": token, "e2ee": e2ee}))
        .await
        .unwrap();
    let reply = client
        .recv_until_any(&["joined", "denied"], WAIT)
        .await
        .unwrap();
    (client, reply)
}

#[tokio::test]
async fn the_setting_is_checked_and_defaults_to_off() {
    let app = TestApp::spawn().await;
    let mut body = couple_session(-5, 60);
    body["settings"] = json!({"e2ee": "always"});
    let response = app.post("/v1/sessions").json(&body).send().await.unwrap();
    assert_eq!(response.status(), 422);
    let problem: Value = response.json().await.unwrap();
    assert!(problem.to_string().contains("settings.e2ee"), "{problem}");
    let created = app.create_session(&couple_session(-5, 60)).await;
    assert_eq!(created["settings"]["e2ee"], "off", "{created}");
}

#[tokio::test]
async fn a_required_room_refuses_a_client_that_cannot_encrypt() {
    let app = TestApp::spawn().await;
    let links = session(&app, "required").await;
    let (_clinician, joined) = join(&app, &links["clin-1"], true).await;
    assert_eq!(joined["e2ee"], json!({"mode": "required", "active": true}));
    let (patient, denied) = join(&app, &links["pat-1"], false).await;
    assert_eq!(denied["type"], "denied", "{denied}");
    assert_eq!(denied["code"], "e2ee_required");
    patient.wait_closed(WAIT).await.unwrap();
    let (_patient, joined) = join(&app, &links["pat-1"], true).await;
    assert_eq!(joined["type"], "joined", "{joined}");
}

#[tokio::test]
async fn keys_are_relayed_and_a_wrapped_key_only_to_its_recipient() {
    let app = TestApp::spawn().await;
    let links = session(&app, "preferred").await;
    let (mut clinician, joined) = join(&app, &links["clin-1"], true).await;
    assert_eq!(joined["e2ee"], json!({"mode": "preferred", "active": true}));
    clinician
        .send_json(json!({"type": "e2ee_public_key", "public_key": "Q0xJTg=="}))
        .await
        .unwrap();
    // The patient entering gets the clinician's current key after joined.
    let (mut patient, _) = join(&app, &links["pat-1"], true).await;
    let key = patient.recv_until("e2ee_public_key", WAIT).await.unwrap();
    assert_eq!(
        key,
        json!({"type": "e2ee_public_key", "participant": "clin-1", "public_key": "Q0xJTg=="})
    );
    patient
        .send_json(json!({"type": "e2ee_public_key", "public_key": "UEFU"}))
        .await
        .unwrap();
    let key = clinician.recv_until("e2ee_public_key", WAIT).await.unwrap();
    assert_eq!(key["participant"], "pat-1");

    // A partner whose client cannot encrypt: the room falls back, and
    // everyone is told.
    let (mut partner, joined) = join(&app, &links["par-1"], false).await;
    assert_eq!(
        joined["e2ee"],
        json!({"mode": "preferred", "active": false})
    );
    for who in [&mut clinician, &mut patient] {
        let told = who.recv_until("e2ee", WAIT).await.unwrap();
        assert_eq!(
            told,
            json!({"type": "e2ee", "mode": "preferred", "active": false})
        );
    }

    patient
        .send_json(
            json!({"type": "e2ee_media_key", "to": "clin-1", "key_id": 9, "wrapped": "U0VBTEVE"}),
        )
        .await
        .unwrap();
    let wrapped = clinician.recv_until("e2ee_media_key", WAIT).await.unwrap();
    assert_eq!(
        wrapped,
        json!({"type": "e2ee_media_key", "from": "pat-1", "key_id": 9, "wrapped": "U0VBTEVE"})
    );
    // Nobody else got it, nor any public key of the others.
    partner.send_json(json!({"type": "ping"})).await.unwrap();
    partner.recv_until("pong", WAIT).await.unwrap();
    assert_eq!(partner.log().count("e2ee_media_key"), 0);
    assert_eq!(partner.log().count("e2ee_public_key"), 0);
    assert_eq!(patient.log().count("e2ee_media_key"), 0);

    // A key for someone not in the room, and a malformed one, are refused.
    patient
        .send_json(
            json!({"type": "e2ee_media_key", "to": "nobody", "key_id": 1, "wrapped": "AA=="}),
        )
        .await
        .unwrap();
    let error = patient.recv_until("error", WAIT).await.unwrap();
    assert_eq!(error["code"], "bad_state");
    patient
        .send_json(json!({"type": "e2ee_public_key", "public_key": "not base64!"}))
        .await
        .unwrap();
    let error = patient.recv_until("error", WAIT).await.unwrap();
    assert_eq!(error["code"], "bad_message");
    assert!(error["message"].as_str().unwrap().contains("public_key"));

    // The partner leaves: end to end again.
    partner.send_json(json!({"type": "leave"})).await.unwrap();
    let told = clinician.recv_until("e2ee", WAIT).await.unwrap();
    assert_eq!(told["active"], true);
}

/// The SFrame header right after a frame's clear bytes: (KID, CTR, the
/// header's length), or why it is not one.
fn sframe_header(frame: &[u8], clear: usize) -> Result<(u64, u64, usize), String> {
    let config = *frame.get(clear).ok_or("no header")?;
    let mut at = clear + 1;
    let mut field = |extended: bool, value: u8| -> Result<u64, String> {
        if !extended {
            return Ok(u64::from(value));
        }
        let n = usize::from(value) + 1;
        let bytes = frame.get(at..at + n).ok_or("header cut short")?;
        at += n;
        Ok(bytes.iter().fold(0, |v, b| v << 8 | u64::from(*b)))
    };
    let kid = field(config & 0x80 != 0, (config >> 4) & 7)?;
    let ctr = field(config & 0x08 != 0, config & 7)?;
    Ok((kid, ctr, at - clear))
}

/// A patient's client that says it can encrypt but never publishes a key
/// joins with a valid link while the clinician's real web client (in
/// Chromium) sends video: every VP8 frame it receives is SFrame, with only
/// the clear bytes the SFU needs readable, under a key nobody sent it.
#[tokio::test]
async fn a_client_without_the_keys_receives_only_frames_it_cannot_open() {
    let Some(env) =
        BrowserEnv::or_skip("a_client_without_the_keys_receives_only_frames_it_cannot_open")
    else {
        return;
    };
    let app = TestApp::spawn().await;
    let (session_id, links) = session_with(&app, "preferred").await;
    let mut chromium = BrowserRun::web_client(&env, &app, &session_id, &links["clin-1"]).unwrap();
    chromium.wait_result(Duration::from_secs(30)).await.unwrap();

    let peer = TestPeer::join(
        &app,
        &links["pat-1"],
        "pat-1",
        PeerOptions::default()
            .receive_only()
            .claims_e2ee()
            .reassemble_vp8(),
    )
    .await
    .unwrap();
    let joined = peer.wait_joined(WAIT).await.unwrap();
    assert_eq!(joined["e2ee"], json!({"mode": "preferred", "active": true}));
    let frames = peer
        .wait_for(
            "20 of the clinician's VP8 frames",
            Duration::from_secs(30),
            || {
                let frames: Vec<Vec<u8>> = peer
                    .tracks_of("clin-1", Kind::Video)
                    .into_iter()
                    .flat_map(|t| t.frames)
                    .collect();
                (frames.len() >= 20).then_some(frames)
            },
        )
        .await
        .unwrap();
    let mut kids = std::collections::BTreeSet::new();
    let mut last_ctr = None;
    for (i, frame) in frames.iter().enumerate() {
        // The clear bytes are a VP8 frame tag (the SFU's keyframe detection
        // and the depacketizer read them); what follows is SFrame.
        let header = vp8::parse_frame(frame).unwrap_or_else(|e| panic!("frame {i}: {e}"));
        let clear = if header.keyframe { 10 } else { 3 };
        let (kid, ctr, length) =
            sframe_header(frame, clear).unwrap_or_else(|e| panic!("frame {i}: {e}"));
        assert!(
            kid >= 8,
            "frame {i}: KID {kid} is not the page's random KID"
        );
        assert!(
            frame.len() >= clear + length + 16,
            "frame {i}: no room for the AES-GCM tag"
        );
        if let Some(last) = last_ctr {
            assert!(ctr > last, "frame {i}: counter {ctr} after {last}");
        }
        last_ctr = Some(ctr);
        kids.insert(kid);
    }
    assert!(
        frames.iter().any(|f| vp8::parse_frame(f).unwrap().keyframe),
        "a keyframe among the frames"
    );
    // Nobody sent this client a key: it cannot open any of them.
    assert!(
        peer.messages()
            .iter()
            .all(|m| m["type"] != "e2ee_media_key"),
        "a media key reached the client without keys"
    );
    eprintln!(
        "{} frames, KIDs {kids:?}, all SFrame after the clear bytes",
        frames.len()
    );
    let _ = chromium.command("quit", Duration::from_secs(10)).await;
}
