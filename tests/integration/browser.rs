//! A real browser in a room: headless Chromium (Debian's, driven by
//! playwright-core from web-client/tests) with a fake camera and microphone
//! joins a couple session through the join page of a real server over real
//! TLS, together with a Rust (webrtc-rs) participant, and each decodes the
//! other's video.
//!
//! - Chromium decodes the Rust peer's VP8 (a libvpx clip,
//!   tests/fixtures/vp8-320x240-30fps.ivf): `framesDecoded` in its getStats
//!   grows past 30, at the clip's 320x240.
//! - The Rust peer reassembles Chromium's VP8 (the fake camera, encoded by
//!   Chromium's libvpx) into complete frames, keyframes with a valid frame
//!   header of the size Chromium says it sends.
//!
//! Needs /usr/bin/chromium, node and `npm ci` in web-client/tests; without
//! them the test says why and passes, unless REQUIRE_BROWSER_CHECK=1 (CI).

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::browser::{self, BrowserEnv, BrowserRun, CallArgs};
use crate::helpers::ivf;
use crate::helpers::peer::{Kind, PeerOptions, TestPeer};
use crate::helpers::{couple_session, TestApp};

const CLIP: &str = "tests/fixtures/vp8-320x240-30fps.ivf";
/// Frames each side must decode (Chromium) or reassemble (Rust).
const FRAMES: u64 = 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_and_a_rust_peer_decode_each_others_video() {
    let Some(env) = BrowserEnv::or_skip("chromium_and_a_rust_peer_decode_each_others_video") else {
        return;
    };
    let started = Instant::now();
    let clip = ivf::read(&Path::new(env!("CARGO_MANIFEST_DIR")).join(CLIP)).unwrap();
    assert_eq!((clip.header.width, clip.header.height), (320, 240));

    let app = TestApp::spawn().await;
    // Running now; the patient is let in without a waiting room once the
    // clinician is there (as in the media tests; admission has its own tests).
    let mut body = couple_session(-5, 60);
    body["settings"] = json!({"auto_admit": true});
    let session = app.create_session(&body).await;
    let session_id = session["id"].as_str().unwrap().to_owned();
    let links: HashMap<String, String> = app.invite_tokens(&session_id).await;
    let spki = browser::spki_sha256_base64(&app.certs.key).unwrap();

    // The clinician is the Rust peer, the patient the browser. The Rust
    // peer plays the clip and checks the VP8 it receives, asking for a
    // keyframe while none has come, as a browser does.
    let options = PeerOptions::default()
        .publish_clip(clip)
        .reassemble_vp8()
        .connect_timeout(Duration::from_secs(10));
    let rust = TestPeer::join(&app, &links["clin-1"], "clin-1", options)
        .await
        .unwrap_or_else(|e| panic!("the Rust peer could not join: {e:#}"));
    rust.wait_for_message("joined", Duration::ZERO)
        .await
        .unwrap_or_else(|e| panic!("the Rust peer was not admitted at once: {e:#}"));
    eprintln!("rust peer connected after {:?}", started.elapsed());

    let mut chromium = BrowserRun::start(
        &env,
        &CallArgs {
            url: &app.base,
            session: &session_id,
            token: &links["pat-1"],
            spki: &spki,
            expect_stream: "clin-1",
            frames: FRAMES as u32,
            timeout: Duration::from_secs(25),
            resolve: None,
        },
    )
    .unwrap();
    let result = match chromium.wait_result(Duration::from_secs(35)).await {
        Ok(result) => result,
        Err(e) => {
            chromium.stop().await;
            panic!("{e:#}\n{}", rust.describe());
        }
    };
    eprintln!("browser result after {:?}: {result}", started.elapsed());

    // Chromium's side: it decoded the Rust peer's clip, at the clip's size.
    let received = &result["received_video"];
    let decoded = received["framesDecoded"].as_u64().unwrap_or(0);
    assert!(
        decoded >= FRAMES,
        "Chromium decoded {decoded} frames: {result}"
    );
    assert_eq!(received["codec"], "video/VP8", "{result}");
    assert_eq!(
        (&received["frameWidth"], &received["frameHeight"]),
        (&Value::from(320), &Value::from(240)),
        "Chromium decoded frames of another size than the clip's: {result}"
    );
    assert_eq!(result["participant"], "pat-1", "{result}");
    assert_eq!(
        result["remote_video_streams"],
        json!(["clin-1"]),
        "{result}"
    );

    // The Rust side: complete VP8 frames from Chromium, and keyframes with
    // a valid header of the size Chromium says it encodes (a new size
    // always starts with a keyframe, which may still be on its way).
    let sent = &result["sent_video"];
    assert_eq!(sent["codec"], "video/VP8", "{result}");
    let encoded = (
        sent["frameWidth"].as_u64().unwrap_or(0),
        sent["frameHeight"].as_u64().unwrap_or(0),
    );
    let video = rust
        .wait_for_track_where(
            "pat-1",
            Kind::Video,
            &format!("{FRAMES} complete VP8 frames and a keyframe of {encoded:?}"),
            Duration::from_secs(10),
            |t| {
                t.vp8.frames >= FRAMES
                    && t.vp8
                        .keyframe_sizes
                        .iter()
                        .any(|&(w, h)| (u64::from(w), u64::from(h)) == encoded)
            },
        )
        .await;
    let described = rust.describe();
    let outcome = chromium.finish(Duration::from_secs(10)).await;
    let video = video.unwrap_or_else(|e| panic!("{e:#}"));
    outcome.unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!("{described}");
    if let Some(dir) = std::env::var_os("BROWSER_CHECK_DUMP") {
        // For a look: `ffmpeg -i DIR/from-chromium.ivf frame%03d.png`.
        let path = Path::new(&dir).join("from-chromium.ivf");
        let (w, h) = video.vp8.keyframe_sizes[0];
        std::fs::write(&path, ivf::write(w, h, 30, &video.frames)).unwrap();
        eprintln!("wrote {} frames to {}", video.frames.len(), path.display());
    }
    let published = (rust.sent(Kind::Video), rust.keyframes_sent());
    assert!(
        published.0 >= FRAMES && published.1 > 0,
        "the Rust peer published {} frames, {} keyframes",
        published.0,
        published.1
    );
    let counts = &video.vp8;
    assert_eq!(counts.bad, 0, "frames with a broken header: {counts:?}");
    // A real picture size: the fake camera's 640x480 or a step down from
    // it, in whatever aspect the page asked the camera for.
    for &(width, height) in &counts.keyframe_sizes {
        assert!(
            (16..=1920).contains(&width) && (16..=1080).contains(&height),
            "a keyframe of {width}x{height}: {counts:?}"
        );
    }
    // Loopback: nothing should be lost inside a frame.
    assert!(
        counts.incomplete <= 2,
        "{} incomplete frames: {counts:?}",
        counts.incomplete
    );
    let audio = rust.tracks_of("pat-1", Kind::Audio);
    assert!(
        audio.iter().map(|a| a.rtp_packets).sum::<u64>() > 0,
        "no audio from Chromium: {described}"
    );
    assert!(rust.problems().is_empty(), "{described}");
    eprintln!(
        "Chromium decoded {decoded} frames of 320x240; the Rust peer reassembled {} frames \
         ({} keyframes, sizes {:?}); {:?} in all",
        counts.frames,
        counts.keyframes,
        counts.keyframe_sizes,
        started.elapsed()
    );
    rust.close().await;
    app.stop().await;
}
