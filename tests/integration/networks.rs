//! Calls across networks a patient really has: a home router's NAT, an
//! office firewall that lets out nothing but TCP to port 443, and a slow,
//! lossy link. Each test builds its own client, router and server
//! namespaces ([`Network`]), runs the real `tandem serve` in the server's,
//! and joins with the webrtc-rs test peer from the client's. The figures
//! each prints (`FIGURE ...`) are quoted in docs/browsers.md.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::runtime::Handle;

use crate::helpers::browser::{self, BrowserEnv, BrowserRun, CallArgs};
use crate::helpers::ivf;
use crate::helpers::layers::{self, Layer};
use crate::helpers::netns::{self, Network, Ns, CLIENT_IP, ROUTER_SERVER_SIDE};
use crate::helpers::peer::RtpRecord;
use crate::helpers::peer::{Kind, PeerOptions, TestPeer};
use crate::helpers::serve::{self, ServeOptions, ServeProcess, TANDEM};
use crate::helpers::{client_trusting, couple_session, TestApp};

static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// For ICE, DTLS and signaling on a busy two-core machine.
const WAIT: Duration = Duration::from_secs(20);

/// The bound: media flows within this long of admission.
const MEDIA_WITHIN: Duration = Duration::from_secs(5);

const CLIP: &str = "tests/fixtures/vp8-320x240-30fps.ivf";

/// The ICE-TCP port of `[media]`, which the office firewall blocks.
const MEDIA_TCP_PORT: u16 = 50_000;

/// An office network behind NAT: nothing but TCP to port 443 leaves it, not
/// even to the server's own ICE-TCP port.
fn office_network(network: &Network) {
    network.masquerade();
    network.client_firewall(
        "table inet office {
           chain output {
             type filter hook output priority filter; policy accept;
             oifname \"lo\" accept
             tcp dport 443 accept
             tcp sport 443 accept
             meta l4proto tcp drop
             meta l4proto udp drop
           }
         }",
    );
}

/// Runs `test` on a thread and a runtime inside the client's namespace,
/// with a `tandem serve` listening on 443 in the server's, once `setup`
/// has made the network what the test needs (before the first packet, so
/// that every connection sees the same NAT and firewall).
///
/// `test` also gets a handle to a runtime in the router's namespace, for
/// peers on the unconstrained side.
fn in_client_namespace<F, Fut>(name: &str, setup: impl FnOnce(&Network), test: F)
where
    F: FnOnce(Arc<Network>, TestApp, Handle) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    // One network test at a time: each runs a server, peers and often a
    // browser, and what they measure (times, an estimator's view of a
    // link) means little on a machine the others starve.
    let _alone = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let Some(network) = Network::create(name) else {
        return;
    };
    setup(&network);
    let network = Arc::new(network);
    let inside = network.clone();
    network.on_thread_in(Ns::Client, move || {
        let runtime = inside.runtime_in(Ns::Client);
        let router = inside.runtime_in(Ns::Router);
        let on_router = router.handle().clone();
        runtime.block_on(async move {
            let dir = tempfile::tempdir().unwrap();
            let (serve, app) = start_server(&inside, dir.path()).await;
            test(inside.clone(), app, on_router).await;
            let log = serve.log_text();
            assert!(!log.contains("panicked"), "the server panicked:\n{log}");
        });
        router.shutdown_background();
    });
}

async fn start_server(network: &Network, dir: &Path) -> (ServeProcess, TestApp) {
    let options = ServeOptions {
        port: Some(443),
        ip: netns::server_ip(),
        tcp_port: MEDIA_TCP_PORT,
        log_filter: "info",
        ..ServeOptions::default()
    };
    let (config, app) = serve::prepare(dir, &dir.join("data"), &options);
    let serve = ServeProcess::start_with(
        network.exec_in(Ns::Server, TANDEM),
        &config,
        &dir.join("serve.log"),
        &app,
    )
    .await;
    (serve, app)
}

async fn join(
    app: &TestApp,
    links: &HashMap<String, String>,
    id: &str,
    options: PeerOptions,
) -> TestPeer {
    TestPeer::join(app, &links[id], id, options.local_ip(CLIENT_IP.into()))
        .await
        .unwrap_or_else(|e| panic!("{id} could not join: {e:#}"))
}

/// The clinician joins, then the patient; both send. Returns both and the
/// time from the patient's join to the first video the patient received.
async fn call(app: &TestApp, patient_options: PeerOptions) -> (TestPeer, TestPeer, Duration) {
    let links = app.auto_admitted_session(couple_session(-5, 60)).await;
    let clinician = join(app, &links, "clin-1", patient_options.clone()).await;
    clinician.start_sending(50, 30);
    let admitted = Instant::now();
    let patient = join(app, &links, "pat-1", patient_options).await;
    patient.start_sending(50, 30);
    patient
        .wait_for_packets("clin-1", Kind::Video, 1, WAIT)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "no video reached the patient: {e:#}\n{}",
                patient.describe()
            )
        });
    let to_media = admitted.elapsed();
    for (receiver, from) in [(&patient, "clin-1"), (&clinician, "pat-1")] {
        for kind in [Kind::Audio, Kind::Video] {
            let stats = receiver
                .wait_for_packets(from, kind, 40, WAIT)
                .await
                .unwrap_or_else(|e| panic!("{e:#}\n{}", receiver.describe()));
            assert_eq!(
                (stats.foreign, stats.malformed),
                (0, 0),
                "{}",
                receiver.describe()
            );
        }
    }
    (clinician, patient, to_media)
}

#[test]
fn a_patient_behind_a_home_router_gets_media_over_udp() {
    in_client_namespace(
        "a_patient_behind_a_home_router_gets_media_over_udp",
        Network::masquerade,
        |_, app, _| async move {
            let (clinician, patient, to_media) = call(&app, PeerOptions::default()).await;
            eprintln!(
                "FIGURE time to media behind NAT over UDP: {} ms",
                to_media.as_millis()
            );
            assert!(
                to_media < MEDIA_WITHIN,
                "media took {to_media:?} behind NAT"
            );
            for peer in [clinician, patient] {
                peer.close().await;
            }
        },
    );
}

#[test]
fn where_only_tcp_443_gets_out_media_flows_through_the_https_port() {
    in_client_namespace(
        "where_only_tcp_443_gets_out_media_flows_through_the_https_port",
        office_network,
        |_, app, _| async move {
            let (clinician, patient, to_media) =
                call(&app, PeerOptions::default().tcp_only()).await;
            eprintln!(
                "FIGURE time to media through TCP 443: {} ms",
                to_media.as_millis()
            );
            assert!(
                to_media < MEDIA_WITHIN,
                "media took {to_media:?} through TCP 443"
            );
            for peer in [clinician, patient] {
                peer.close().await;
            }
        },
    );
}

/// The clinician's camera in three layers: 72, 264 and 1,056 kbit/s at
/// 30 frames a second. On a 600 kbit/s link only `h` and `q` fit.
const CAMERA: [Layer; 3] = [
    Layer {
        rid: "q",
        marker: b'Q',
        size: 300,
        packets_per_frame: 1,
    },
    Layer {
        rid: "h",
        marker: b'H',
        size: 1100,
        packets_per_frame: 1,
    },
    Layer {
        rid: "f",
        marker: b'F',
        size: 1100,
        packets_per_frame: 4,
    },
];
const FPS: u32 = 30;
const BEST: u8 = b'F';
/// The bound for the switch to a lower layer.
const SWITCH_WITHIN: Duration = Duration::from_secs(10);
/// How long the recovered link may take to bring the best layer back. The
/// issue sets no bound; str0m's estimator climbs back in 4 to 30 s here
/// (docs/browsers.md), so this only says that it does come back.
const RECOVER_WITHIN: Duration = Duration::from_secs(60);

/// The layer that started the frames received in the last `window`, if all
/// of them were one layer.
fn steady_layer(rtp: &[RtpRecord], window: Duration) -> Option<u8> {
    let timeline = layers::layer_timeline(&CAMERA, rtp);
    let (last_at, _) = *timeline.last()?;
    if last_at.elapsed() > Duration::from_millis(500) {
        return None; // nothing arriving
    }
    let recent: Vec<u8> = timeline
        .iter()
        .filter(|(at, _)| at.elapsed() <= window)
        .map(|&(_, layer)| layer)
        .collect();
    let first = *recent.first()?;
    (recent.len() >= 5 && recent.iter().all(|&l| l == first)).then_some(first)
}

/// The RTP sequence numbers of received audio, extended past their 16-bit
/// wrap in arrival order. The SFU rewrites audio sequence numbers by a
/// fixed offset per subscriber, so a gap is a packet lost on the way.
fn audio_seqs(rtp: &[RtpRecord]) -> Vec<i64> {
    let mut out = Vec::with_capacity(rtp.len());
    let mut last: Option<(u16, i64)> = None;
    for p in rtp {
        let ext = match last {
            Some((seq, ext)) => ext + i64::from(p.seq.wrapping_sub(seq) as i16),
            None => i64::from(p.seq),
        };
        last = Some((p.seq, ext));
        out.push(ext);
    }
    out
}

/// Audio packets numbered in `from..to` that arrived, and how many were
/// sent in that range.
fn audio_received(rtp: &[RtpRecord], from: i64, to: i64) -> (usize, usize) {
    let got: std::collections::BTreeSet<i64> = audio_seqs(rtp)
        .into_iter()
        .filter(|seq| (from..to).contains(seq))
        .collect();
    (got.len(), (to - from).max(0) as usize)
}

fn latest_audio_seq(rtp: &[RtpRecord]) -> i64 {
    audio_seqs(rtp).into_iter().max().unwrap_or(0)
}

async fn wait_for_layer(
    peer: &TestPeer,
    what: &str,
    within: Duration,
    wanted: impl Fn(u8) -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        let video = peer.tracks_of("clin-1", Kind::Video);
        let rtp = video.first().map(|t| t.rtp.as_slice()).unwrap_or(&[]);
        if steady_layer(rtp, Duration::from_secs(1)).is_some_and(&wanted) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "{} did not get {what} within {within:?}; layers of the last 2 s: {:?}",
            peer.id(),
            layers::layer_timeline(&CAMERA, rtp)
                .iter()
                .filter(|(at, _)| at.elapsed() <= Duration::from_secs(2))
                .map(|&(_, l)| l as char)
                .collect::<String>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[test]
fn a_patient_on_a_slow_link_gets_a_lower_layer_keeps_audio_and_recovers() {
    in_client_namespace(
        "a_patient_on_a_slow_link_gets_a_lower_layer_keeps_audio_and_recovers",
        |_| {},
        |network, app, on_router| async move {
            let app = Arc::new(app);
            let links = Arc::new(app.auto_admitted_session(couple_session(-5, 60)).await);
            // The clinician (publishing three layers) and the partner are on
            // the router's side, whose links stay fast.
            let rids: Vec<&str> = CAMERA.iter().map(|l| l.rid).collect();
            let on_fast_side = |id: &'static str, options: PeerOptions| {
                let (app, links) = (app.clone(), links.clone());
                on_router.spawn(async move {
                    TestPeer::join(
                        &app,
                        &links[id],
                        id,
                        options.local_ip(ROUTER_SERVER_SIDE.into()),
                    )
                    .await
                    .unwrap_or_else(|e| panic!("{id} could not join: {e:#}"))
                })
            };
            let clinician = on_fast_side("clin-1", PeerOptions::default().publish_simulcast(&rids))
                .await
                .unwrap();
            let partner = on_fast_side(
                "par-1",
                PeerOptions::default().receive_only().record_packets(),
            )
            .await
            .unwrap();
            let patient = join(
                &app,
                &links,
                "pat-1",
                PeerOptions::default().receive_only().record_packets(),
            )
            .await;
            let sending =
                on_router.spawn(layers::send(clinician.writer(), CAMERA.to_vec(), FPS, 90));

            // Before: both get the best layer. (str0m's estimate can dip in
            // a call's first seconds and then climb back: allow for that.)
            for peer in [&patient, &partner] {
                wait_for_layer(peer, "the best layer", RECOVER_WITHIN, |l| l == BEST).await;
            }

            // The patient's link turns slow and lossy.
            network.shape_client_downlink(600, 2);
            let shaped_at = latest_audio_seq(&patient.tracks_of("clin-1", Kind::Audio)[0].rtp);
            let switched =
                wait_for_layer(&patient, "a lower layer", SWITCH_WITHIN, |l| l != BEST).await;
            eprintln!(
                "FIGURE switch to a lower layer on 600 kbit/s, 2 % loss: {} ms",
                switched.as_millis()
            );
            // Audio is measured once the queue the best layer filled has
            // drained: from 2 s after the switch, for 10 s.
            tokio::time::sleep(Duration::from_secs(2)).await;
            let lower_from = latest_audio_seq(&patient.tracks_of("clin-1", Kind::Audio)[0].rtp);
            tokio::time::sleep(Duration::from_secs(10)).await;
            let audio = patient.tracks_of("clin-1", Kind::Audio)[0].rtp.clone();
            let lower_to = latest_audio_seq(&audio) - i64::from(FPS); // a second's margin for the queue
            let (got, sent) = audio_received(&audio, lower_from, lower_to);
            let loss = 100.0 * (sent - got) as f64 / sent as f64;
            let (got_all, sent_all) = audio_received(&audio, shaped_at, lower_to);
            let loss_all = 100.0 * (sent_all - got_all) as f64 / sent_all as f64;
            eprintln!(
                "FIGURE audio loss on the slow link: {loss:.1} % on the lower layer ({got}/{sent}), \
                 {loss_all:.1} % from the moment the link slowed ({got_all}/{sent_all})"
            );
            assert!(
                sent >= 4 * FPS as usize,
                "too little audio measured: {sent}"
            );
            // The link itself drops 2 % at random, so a few hundred packets
            // measure the loss only to within about a percent: the test
            // fails when the loss is significantly above the 3 % allowed
            // (two standard deviations of a 3 % loss over this sample).
            let allowed = 3.0 + 200.0 * (0.03 * 0.97 / sent as f64).sqrt();
            assert!(
                loss <= allowed,
                "audio loss {loss:.1} % on the slow link ({got}/{sent}), \
                 significantly above 3 % (over {allowed:.1} %)"
            );

            // The link recovers: the best layer comes back.
            network.unshape_client_downlink();
            let recovered = wait_for_layer(&patient, "the best layer again", RECOVER_WITHIN, |l| {
                l == BEST
            })
            .await;
            eprintln!(
                "FIGURE best layer back after the link recovered: {} ms",
                recovered.as_millis()
            );

            let partner_video = partner.tracks_of("clin-1", Kind::Video)[0].rtp.clone();
            let partner_layers: String = layers::layer_timeline(&CAMERA, &partner_video)
                .iter()
                .skip_while(|&&(_, l)| l != BEST)
                .map(|&(_, l)| l as char)
                .collect();
            // Unaffected: the partner's link never changed, so its frames
            // stay at the best layer (a starved two-core machine may make
            // its estimator dip for a moment, never for long).
            let best_share = partner_layers
                .chars()
                .filter(|&l| l == BEST as char)
                .count() as f64
                / partner_layers.len().max(1) as f64;
            eprintln!(
                "FIGURE the partner's frames at the best layer meanwhile: {:.0} %",
                best_share * 100.0
            );
            assert!(
                best_share >= 0.9,
                "the partner's layers changed although its link did not: {partner_layers}"
            );
            sending.abort();
            for peer in [clinician, partner, patient] {
                peer.close().await;
            }
        },
    );
}

/// A running couple session that admits rostered people once the
/// clinician is in: its id and its links' tokens by participant id.
async fn auto_admitted_couple(app: &TestApp) -> (String, HashMap<String, String>) {
    let mut body = couple_session(-5, 60);
    body["settings"] = serde_json::json!({"auto_admit": true});
    let session = app.create_session(&body).await;
    let session_id = session["id"].as_str().unwrap().to_owned();
    let links = app.invite_tokens(&session_id).await;
    (session_id, links)
}

/// The clinician, a webrtc-rs peer on the router's (fast) side playing a
/// VP8 clip that a browser can decode.
async fn clinician_playing_the_clip(
    app: &Arc<TestApp>,
    links: &HashMap<String, String>,
    on_router: &Handle,
) -> TestPeer {
    let clip = ivf::read(&Path::new(env!("CARGO_MANIFEST_DIR")).join(CLIP)).unwrap();
    let (app, link) = (app.clone(), links["clin-1"].clone());
    on_router
        .spawn(async move {
            let options = PeerOptions::default()
                .publish_clip(clip)
                .local_ip(ROUTER_SERVER_SIDE.into());
            TestPeer::join(&app, &link, "clin-1", options)
                .await
                .unwrap_or_else(|e| panic!("the clinician could not join: {e:#}"))
        })
        .await
        .unwrap()
}

/// Chromium as the patient, in the client's namespace, and a clinician
/// (webrtc-rs, playing a VP8 clip) on the router's side. Returns what
/// call.mjs reported once Chromium decoded 30 frames of the clinician.
async fn chromium_patient(app: Arc<TestApp>, on_router: &Handle) -> serde_json::Value {
    let env =
        BrowserEnv::or_skip("chromium in a network namespace").expect("checked by the caller");
    let (session_id, links) = auto_admitted_couple(&app).await;
    let spki = browser::spki_sha256_base64(&app.certs.key).unwrap();
    let clinician = clinician_playing_the_clip(&app, &links, on_router).await;
    let mut chromium = BrowserRun::start(
        &env,
        &CallArgs {
            url: &app.base,
            session: &session_id,
            token: &links["pat-1"],
            spki: &spki,
            expect_stream: "clin-1",
            frames: 30,
            timeout: Duration::from_secs(30),
            resolve: Some(netns::server_ip()),
        },
    )
    .unwrap();
    let result = match chromium.wait_result(Duration::from_secs(40)).await {
        Ok(result) => result,
        Err(e) => {
            chromium.stop().await;
            panic!("{e:#}\n{}", clinician.describe());
        }
    };
    chromium.finish(Duration::from_secs(10)).await.unwrap();
    clinician.close().await;
    result
}

#[test]
fn chromium_behind_a_home_router_gets_media_over_udp() {
    if BrowserEnv::or_skip("chromium_behind_a_home_router_gets_media_over_udp").is_none() {
        return;
    }
    in_client_namespace(
        "chromium_behind_a_home_router_gets_media_over_udp",
        Network::masquerade,
        |_, app, on_router| async move {
            let result = chromium_patient(Arc::new(app), &on_router).await;
            eprintln!(
                "FIGURE Chromium behind NAT: 30 frames decoded {} ms after launch, route {}",
                result["elapsed_ms"], result["sub_route"]
            );
            assert_eq!(result["sub_route"]["protocol"], "udp", "{result}");
            assert_eq!(result["pub_route"]["protocol"], "udp", "{result}");
        },
    );
}

#[test]
fn chromium_where_only_tcp_443_gets_out_gets_media_through_the_https_port() {
    if BrowserEnv::or_skip("chromium_where_only_tcp_443_gets_out_gets_media_through_the_https_port")
        .is_none()
    {
        return;
    }
    in_client_namespace(
        "chromium_where_only_tcp_443_gets_out_gets_media_through_the_https_port",
        office_network,
        |_, app, on_router| async move {
            let result = chromium_patient(Arc::new(app), &on_router).await;
            eprintln!(
                "FIGURE Chromium through TCP 443: 30 frames decoded {} ms after launch, route {}",
                result["elapsed_ms"], result["sub_route"]
            );
            for route in ["sub_route", "pub_route"] {
                assert_eq!(result[route]["protocol"], "tcp", "{result}");
                assert_eq!(result[route]["remotePort"], 443, "{result}");
            }
        },
    );
}

/// The address the client moves to.
const MOVED_IP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(10, 77, 1, 3);
/// The bound: media back within this long of an address change.
const BACK_WITHIN: Duration = Duration::from_secs(5);

#[test]
fn a_patient_whose_address_changes_gets_media_back_without_leaving_the_room() {
    let name = "a_patient_whose_address_changes_gets_media_back_without_leaving_the_room";
    let Some(env) = BrowserEnv::or_skip(name) else {
        return;
    };
    in_client_namespace(
        name,
        |_| {},
        move |network, app, on_router| async move {
            use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
            let app = Arc::new(app);
            let (session_id, links) = auto_admitted_couple(&app).await;
            let invites = app.invites(&session_id).await;
            let patient_url = invites
                .iter()
                .find(|i| i["participant_id"] == "pat-1")
                .and_then(|i| i["url"].as_str())
                .expect("the patient's link")
                .to_owned();
            let clinician = clinician_playing_the_clip(&app, &links, &on_router).await;

            let mut node = tokio::process::Command::new(&env.node)
                .arg("roam.mjs")
                .args(["--url", &patient_url])
                .args([
                    "--spki",
                    &browser::spki_sha256_base64(&app.certs.key).unwrap(),
                ])
                .arg(format!("--resolve={}", netns::server_ip()))
                .current_dir(&env.dir)
                .env("TANDEM_CHROMIUM", &env.chromium)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .expect("node roam.mjs starts");
            let mut stdin = node.stdin.take().unwrap();
            let mut stdout = BufReader::new(node.stdout.take().unwrap()).lines();
            let mut next = async || {
                tokio::time::timeout(Duration::from_secs(60), stdout.next_line())
                    .await
                    .expect("roam.mjs answers within a minute")
                    .unwrap()
                    .unwrap_or_default()
            };
            let ready = next().await;
            assert_eq!(
                ready,
                "READY",
                "roam.mjs: {ready}\n{}",
                clinician.describe()
            );

            network.move_client(MOVED_IP);
            stdin.write_all(b"MOVED\n").await.unwrap();
            let line = next().await;
            let result: serde_json::Value = serde_json::from_str(
                line.strip_prefix("RESULT ")
                    .unwrap_or_else(|| panic!("roam.mjs: {line}")),
            )
            .unwrap();
            stdin.write_all(b"done\n").await.unwrap();
            let _ = node.wait().await;

            let back = Duration::from_millis(result["recovered_ms"].as_u64().unwrap());
            eprintln!(
                "FIGURE media back after an address change: {} ms; {result}",
                back.as_millis()
            );
            assert_eq!(result["call_still_shown"], true, "{result}");
            let screens = result["screens"].to_string();
            assert!(
                !screens.contains("waiting room"),
                "the patient saw the waiting room: {screens}"
            );
            assert!(
                back <= BACK_WITHIN,
                "media came back after {back:?}: {result}"
            );

            // Attendance: the patient's presence has no gap longer than that.
            clinician.close().await;
            // A new HTTP client: the test's own pooled connection left with
            // the old address too.
            let fresh = client_trusting(&[&app.certs.ca_cert], app.https_addr)
                .build()
                .unwrap();
            let report: serde_json::Value = fresh
                .get(app.url(&format!("/v1/attendance/sessions/{session_id}?format=json")))
                .bearer_auth(&app.admin_key)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let patient = report["participants"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["participant_id"] == "pat-1")
                .unwrap_or_else(|| panic!("no patient in {report}"));
            let intervals = patient["intervals"].as_array().unwrap();
            let at = |v: &serde_json::Value| {
                chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap()
            };
            let gaps: Vec<i64> = intervals
                .windows(2)
                .filter(|w| w[0]["end"].is_string())
                .map(|w| (at(&w[1]["start"]) - at(&w[0]["end"])).num_milliseconds())
                .collect();
            eprintln!("FIGURE attendance gaps across the address change: {gaps:?} ms");
            assert!(
                gaps.iter().all(|&g| g <= BACK_WITHIN.as_millis() as i64),
                "gaps {gaps:?} ms in {intervals:?}"
            );
        },
    );
}
