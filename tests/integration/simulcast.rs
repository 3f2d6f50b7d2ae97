//! Simulcast forwarding end to end: a publisher sends three layers of one
//! video (rids `q`, `h`, `f`, each with its own SSRC, told apart by the SFU
//! through the RTP stream id header extension), and a subscriber in a small
//! room receives one track carrying only the best layer once the SFU has
//! measured the layers' rates, switching at a keyframe it asked for with a
//! PLI, with RTP sequence numbers and timestamps continuous across the switch.
//!
//! Both participants are the common [`TestPeer`]: the publisher announces
//! simulcast encodings and the test writes each layer's packets itself,
//! stamped with the mid and rid header extensions negotiated for the
//! sender; the subscriber keeps the RTP header of every packet it receives.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::peer::{Kind, PeerOptions, RtpRecord, TestPeer, TrackReport};
use crate::helpers::simulcast::{parse_payload, send_layers, FPS, LAYERS, SDES_RID};
use crate::helpers::{couple_session, TestApp};

const WAIT: Duration = Duration::from_secs(15);

/// How long the layers are sent.
const SEND_FOR: Duration = Duration::from_secs(4);
/// The switch to the best layer must have happened by then (rates are
/// measured over the first second, then one PLI round trip).
const SWITCH_BY: Duration = Duration::from_millis(2500);
const BEST: usize = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_room_receives_only_the_best_simulcast_layer_as_one_continuous_track() {
    let started = Instant::now();
    let app = TestApp::spawn().await;
    let mut body = couple_session(-5, 60);
    body["settings"] = json!({"auto_admit": true});
    let session = app.create_session(&body).await;
    let links: HashMap<String, String> = app.invite_tokens(session["id"].as_str().unwrap()).await;

    // The clinician first (rostered people are admitted once they are in).
    // Both are admitted at once; the patient's pub connection is connected
    // when join returns.
    let clinician = TestPeer::join(
        &app,
        &links["clin-1"],
        "clin-1",
        PeerOptions::default().receive_only().record_packets(),
    )
    .await
    .expect("the clinician joins");
    let rids: Vec<&str> = LAYERS.iter().map(|l| l.rid).collect();
    let patient = TestPeer::join(
        &app,
        &links["pat-1"],
        "pat-1",
        PeerOptions::default().publish_simulcast(&rids),
    )
    .await
    .expect("the patient joins");
    for peer in [&clinician, &patient] {
        peer.wait_for_message("joined", Duration::ZERO)
            .await
            .expect("admitted at once");
    }

    // The offer announces the three layers and the rid header extension,
    // and the SFU's answer accepts both.
    let offer = patient.pub_offer().unwrap();
    let answer = patient
        .wait_for("the pub answer", WAIT, || patient.pub_answer())
        .await
        .unwrap();
    let video_offer = video_section(&offer);
    let video_answer = video_section(&answer);
    for rid in ["q", "h", "f"] {
        assert!(
            video_offer.contains(&format!("a=rid:{rid} send")),
            "{video_offer}"
        );
    }
    assert!(
        video_offer.contains("a=simulcast:send q;h;f"),
        "{video_offer}"
    );
    for (what, section) in [("offer", &video_offer), ("answer", &video_answer)] {
        assert!(
            section
                .lines()
                .any(|l| l.starts_with("a=extmap:") && l.ends_with(SDES_RID)),
            "no rtp-stream-id extmap in the pub {what}:\n{section}"
        );
    }
    assert!(
        video_answer.contains("a=simulcast:recv q;h;f"),
        "the SFU did not accept the simulcast layers:\n{video_answer}"
    );

    // The clinician is offered the patient's video and is connected.
    clinician
        .wait_for(
            "the patient's video in a sub offer, connected",
            WAIT,
            || {
                let offer = clinician.sub_offer()?;
                (video_msids(&offer).contains(&"pat-1".to_owned()) && clinician.sub_connected())
                    .then_some(())
            },
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let sending_from = Instant::now();
    let writer = patient.writer();
    let sending = tokio::spawn(send_layers(writer.clone()));
    tokio::time::sleep(SEND_FOR).await;
    sending.abort();
    let _ = sending.await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sending_took = sending_from.elapsed();

    let publisher_problems = patient.problems();
    assert!(publisher_problems.is_empty(), "{publisher_problems:?}");
    let sent = patient.sent(Kind::Video);
    assert!(sent >= 3 * 90, "the patient sent only {sent} video packets");

    // (1) One video track from the patient, in the offer and on the wire.
    let sub_offer = clinician.sub_offer().unwrap();
    let video_lines: Vec<String> = video_msids(&sub_offer);
    assert_eq!(
        video_lines.iter().filter(|m| *m == "pat-1").count(),
        1,
        "video m-lines of the clinician's sub offer by msid: {video_lines:?}"
    );
    let tracks: Vec<Received> = clinician.tracks().iter().map(Received::from).collect();
    let videos: Vec<&Received> = tracks
        .iter()
        .filter(|t| t.stream_id == "pat-1" && t.kind == Kind::Video)
        .collect();
    assert_eq!(
        videos.len(),
        1,
        "video tracks from the patient: {:?}",
        tracks.iter().map(Received::summary).collect::<Vec<_>>()
    );
    let video = videos[0];
    let packets = &video.packets;
    let summary = video.summary();
    let ssrcs: std::collections::BTreeSet<u32> = packets.iter().map(|p| p.ssrc).collect();
    assert_eq!(ssrcs.len(), 1, "one SSRC on the track: {summary}");
    assert!(
        packets.iter().all(|p| p.layer.is_some()),
        "unreadable payloads: {summary}"
    );

    // (2) Once the best layer arrives, only the best layer arrives, from
    // a keyframe on, soon after the rates could be measured.
    let best = LAYERS[BEST].marker;
    let first_best = packets
        .iter()
        .position(|p| p.layer == Some(best))
        .unwrap_or_else(|| panic!("the best layer never arrived: {summary}"));
    let switch = &packets[first_best];
    let after: Vec<&Rx> = packets[first_best..].iter().collect();
    let intruders = after.iter().filter(|p| p.layer != Some(best)).count();
    assert_eq!(
        intruders, 0,
        "other layers interleaved after the switch to {}: {summary}",
        best as char
    );
    assert!(
        switch.keyframe,
        "the switch to {} was not at a keyframe: {summary}",
        best as char
    );
    let switched_after = switch.at.duration_since(sending_from);
    assert!(
        switched_after <= SWITCH_BY,
        "switched to the best layer only after {switched_after:?}: {summary}"
    );
    // No packet of the best layer lost after the switch.
    for pair in after.windows(2) {
        assert_eq!(
            pair[1].layer_seq,
            pair[0].layer_seq + 1,
            "a gap in layer {}: {summary}",
            best as char
        );
    }
    let expected = (SEND_FOR.saturating_sub(SWITCH_BY).as_secs_f64() * f64::from(FPS)) as usize;
    assert!(
        after.len() >= expected,
        "only {} packets of the best layer: {summary}",
        after.len()
    );

    // (3) One continuous RTP stream: every sequence number follows the one
    // before and every timestamp advances by one frame, across the switch.
    for (i, pair) in packets.windows(2).enumerate() {
        assert_eq!(
            (
                pair[1].seq.wrapping_sub(pair[0].seq),
                pair[1].timestamp.wrapping_sub(pair[0].timestamp)
            ),
            (1, 90_000 / FPS),
            "RTP packet {} -> {} ({} -> {}): {summary}",
            i,
            i + 1,
            pair[0].describe(),
            pair[1].describe()
        );
    }

    // (4) The switch asked the publisher for a keyframe of the best layer.
    let plis: HashMap<usize, usize> = writer
        .video_ssrcs()
        .iter()
        .map(|&ssrc| writer.keyframe_requests(ssrc))
        .enumerate()
        .filter(|&(_, n)| n > 0)
        .collect();
    assert!(
        plis.get(&BEST).copied().unwrap_or(0) >= 1,
        "no keyframe request for layer {}; requests by layer: {plis:?}",
        LAYERS[BEST].rid
    );

    eprintln!(
        "simulcast: {summary}; switched to {} at packet {first_best}, {switched_after:?} \
         after sending started; keyframe requests by layer index: {plis:?}; sent {sent} video \
         packets in {sending_took:?}; test took {:?}",
        best as char,
        started.elapsed()
    );
    patient.close().await;
    clinician.close().await;
    app.stop().await;
}

/// The lines of the first video m-section of `sdp`.
fn video_section(sdp: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in sdp.lines().map(str::trim_end) {
        if line.starts_with("m=") {
            inside = line.starts_with("m=video") && out.is_empty();
        }
        if inside {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The msid stream of every active video m-section, in order.
fn video_msids(sdp: &str) -> Vec<String> {
    let mut sections: Vec<Vec<&str>> = Vec::new();
    for line in sdp.lines().map(str::trim_end) {
        if line.starts_with("m=") {
            sections.push(vec![line]);
        } else if let Some(section) = sections.last_mut() {
            section.push(line);
        }
    }
    sections
        .iter()
        .filter(|s| s[0].starts_with("m=video") && !s.contains(&"a=inactive"))
        .filter_map(|s| {
            let msid = s
                .iter()
                .find_map(|l| l.strip_prefix("a=msid:"))
                .or_else(|| {
                    s.iter()
                        .filter(|l| l.starts_with("a=ssrc:"))
                        .find_map(|l| l.split_once(" msid:").map(|(_, m)| m))
                })?;
            msid.split_whitespace().next().map(str::to_owned)
        })
        .collect()
}

/// One received RTP packet, as the subscriber saw it.
#[derive(Debug, Clone)]
struct Rx {
    seq: u16,
    timestamp: u32,
    ssrc: u32,
    /// The layer marker of the payload (`Q`, `H`, `F`), if readable.
    layer: Option<u8>,
    layer_seq: u32,
    keyframe: bool,
    at: Instant,
}

impl From<&RtpRecord> for Rx {
    fn from(rtp: &RtpRecord) -> Rx {
        let (layer, layer_seq, keyframe) = parse_payload(&rtp.payload);
        Rx {
            seq: rtp.seq,
            timestamp: rtp.timestamp,
            ssrc: rtp.ssrc,
            layer,
            layer_seq,
            keyframe,
            at: rtp.at,
        }
    }
}

impl Rx {
    fn describe(&self) -> String {
        format!(
            "seq {} ts {} layer {}#{}{}",
            self.seq,
            self.timestamp,
            self.layer.map_or('?', char::from),
            self.layer_seq,
            if self.keyframe { " key" } else { "" }
        )
    }
}

/// One track as the subscriber received it.
#[derive(Debug, Clone)]
struct Received {
    stream_id: String,
    kind: Kind,
    packets: Vec<Rx>,
}

impl From<&TrackReport> for Received {
    fn from(track: &TrackReport) -> Received {
        Received {
            stream_id: track.stream_id.clone(),
            kind: track.kind,
            packets: track.rtp.iter().map(Rx::from).collect(),
        }
    }
}

impl Received {
    /// `pat-1/video: 120 packets, layers Q×31 F×89`: the runs of layers.
    fn summary(&self) -> String {
        let mut runs: Vec<(char, usize)> = Vec::new();
        for p in &self.packets {
            let layer = p.layer.map_or('?', char::from);
            match runs.last_mut() {
                Some((l, n)) if *l == layer => *n += 1,
                _ => runs.push((layer, 1)),
            }
        }
        let runs: Vec<String> = runs.iter().map(|(l, n)| format!("{l}x{n}")).collect();
        format!(
            "{}/{:?}: {} packets, layer runs [{}]",
            self.stream_id,
            self.kind,
            self.packets.len(),
            runs.join(" ")
        )
    }
}
