//! What a load test measured: each participant's own counts, and the run's
//! figures compiled from them.
//!
//! Loss is computed pair by pair. A receiver expects, from each publisher
//! in its room, exactly the packets that publisher sent inside the
//! measurement window; packets are matched by the stamp they carry, so a
//! packet sent in the window and delivered just after it still counts, and
//! one sent before it never does. Only participants that were receiving
//! every track of their room when the window opened take part: one that
//! never got in is an error, not a loss.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::process::Usage;
use super::reception::TrackReception;
use super::stamp::Track;

/// One participant's counts at the end of a run.
#[derive(Debug)]
pub struct Outcome {
    pub index: u32,
    pub room: u32,
    /// Receiving every track of the room (or, signaling only, admitted)
    /// before the measurement window opened.
    pub ready: bool,
    /// From opening the signaling connection (TLS, WebSocket, `join`) until
    /// the first packet of every track of the people already in the room
    /// when it was admitted (signaling only: until `joined`). `None` when it
    /// never happened or nobody was there.
    pub join_time: Option<Duration>,
    /// Packets sent inside the window, per track (audio, video: every
    /// layer of it with simulcast).
    pub sent_in_window: [u64; 2],
    /// What arrived, per publisher, track and simulcast layer (0 without).
    pub received: HashMap<(u32, Track, u8), TrackReception>,
    /// Added latency of packets sent inside the window, in microseconds,
    /// until the participant's loop saw them.
    pub latency_us: Histogram<u64>,
    /// The same until the kernel queued them on the participant's socket
    /// (`crate::arrival`).
    pub wire_latency_us: Histogram<u64>,
    pub errors: BTreeMap<String, u64>,
    /// The node (host:port) that admitted it.
    pub node: Option<String>,
    /// `redirect`s it was sent on its way there.
    pub redirects: u32,
    /// With `--rejoin`: each time its connection dropped, how long until it
    /// was in the room again.
    pub rejoin_times: Vec<Duration>,
}

impl Outcome {
    pub fn new(index: u32, room: u32) -> Outcome {
        Outcome {
            index,
            room,
            ready: false,
            join_time: None,
            sent_in_window: [0; 2],
            received: HashMap::new(),
            latency_us: new_histogram(),
            wire_latency_us: new_histogram(),
            errors: BTreeMap::new(),
            node: None,
            redirects: 0,
            rejoin_times: Vec::new(),
        }
    }

    pub fn error(&mut self, kind: impl Into<String>) {
        *self.errors.entry(kind.into()).or_default() += 1;
    }
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new(3).expect("3 significant figures is a valid histogram precision")
}

/// Facts about the run that participants do not know.
#[derive(Debug, Clone)]
pub struct RunFacts {
    pub mode: &'static str,
    pub rooms: usize,
    pub room_size: usize,
    pub window: Duration,
    /// Participants admitted per second while everyone joined at once.
    pub join_rate: Option<f64>,
    pub server: Option<Usage>,
    pub generator: Option<Usage>,
    /// Publishers sent simulcast video.
    pub simulcast: bool,
    /// Nodes the participants arrived through (several for a cluster).
    pub nodes: usize,
}

/// How a cluster spread the run's rooms (with several `--base`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Spread {
    /// Rooms whose people were all admitted by each node (host:port).
    pub rooms_by_node: BTreeMap<String, usize>,
    /// Rooms whose people were admitted by more than one node: each
    /// session must be one room on one node, so anything but 0 is a fault.
    pub split_rooms: usize,
    /// `redirect`s the participants followed to their room's node.
    pub redirects: u64,
}

impl Spread {
    fn of(by_room: &BTreeMap<u32, Vec<&Outcome>>) -> Spread {
        let mut spread = Spread {
            rooms_by_node: BTreeMap::new(),
            split_rooms: 0,
            redirects: 0,
        };
        for members in by_room.values() {
            spread.redirects += members.iter().map(|o| u64::from(o.redirects)).sum::<u64>();
            let nodes: BTreeSet<&str> = members.iter().filter_map(|o| o.node.as_deref()).collect();
            match nodes.len() {
                0 => {}
                1 => {
                    let node = nodes.into_iter().next().unwrap_or_default();
                    *spread.rooms_by_node.entry(node.to_owned()).or_default() += 1;
                }
                _ => spread.split_rooms += 1,
            }
        }
        spread
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    /// Percentiles of `histogram` divided by `scale` (µs to ms: 1000).
    fn of(histogram: &Histogram<u64>, scale: f64) -> Option<Percentiles> {
        if histogram.is_empty() {
            return None;
        }
        let at = |q: f64| histogram.value_at_quantile(q) as f64 / scale;
        Some(Percentiles {
            p50: at(0.50),
            p95: at(0.95),
            p99: at(0.99),
            max: histogram.max() as f64 / scale,
        })
    }
}

/// The run's figures; serialised as the `--json` output.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub mode: String,
    pub rooms: usize,
    pub room_size: usize,
    pub participants: usize,
    pub ready: usize,
    pub seconds: f64,
    pub sent_pps: f64,
    pub received_pps: f64,
    pub expected_pps: f64,
    /// Percent of expected packets that never arrived; `None` without media.
    pub loss_percent: Option<f64>,
    pub reordered: u64,
    pub duplicates: u64,
    pub latency_ms: Option<Percentiles>,
    /// Added latency until the kernel queued a packet for its receiver,
    /// which leaves out the time it waited for the generator's busy loop;
    /// `None` if the kernel stamped nothing.
    pub wire_latency_ms: Option<Percentiles>,
    pub join_ms: Option<Percentiles>,
    /// With `--rejoin`: from a dropped connection to `joined` again (a
    /// failover as the clients see it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejoin_ms: Option<Percentiles>,
    #[serde(skip_serializing_if = "is_zero")]
    pub rejoins: usize,
    pub join_rate_per_second: Option<f64>,
    /// Publishers sent simulcast video; expected counts a layer over the
    /// span each subscriber received it.
    pub simulcast: bool,
    /// With simulcast: video packets received per second of each layer
    /// (`q`, `h`, `f`), which shows the layers the SFU chose.
    pub video_layers_pps: Option<[f64; 3]>,
    pub errors: BTreeMap<String, u64>,
    pub server: Option<Usage>,
    pub generator: Option<Usage>,
    /// With several nodes: where the rooms went.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nodes: Option<Spread>,
}

impl Report {
    pub fn compile(outcomes: &[Outcome], facts: RunFacts) -> Report {
        /// What `receiver` should have had of `publisher`'s `track` and
        /// what it had. A subscriber gets one simulcast layer at a time,
        /// and which one is the SFU's choice: a layer's loss is counted
        /// over the span it was received in ([`TrackReception`]).
        fn expected_and_received(
            receiver: &Outcome,
            publisher: &Outcome,
            track: Track,
            simulcast: bool,
        ) -> (u64, u64) {
            let layers = receiver
                .received
                .iter()
                .filter(|((p, t, _), _)| *p == publisher.index && *t == track);
            if simulcast && track == Track::Video {
                layers.fold((0, 0), |(e, r), (_, got)| {
                    (e + got.expected_in_span(), r + got.unique_in_window)
                })
            } else {
                let got = layers.map(|(_, got)| got.unique_in_window).sum();
                (publisher.sent_in_window[track.index()], got)
            }
        }

        let seconds = facts.window.as_secs_f64().max(f64::MIN_POSITIVE);
        let mut expected = 0u64;
        let mut received = 0u64;
        let mut sent = 0u64;
        let (mut reordered, mut duplicates) = (0, 0);
        let mut latency = new_histogram();
        let mut wire_latency = new_histogram();
        let mut joins = new_histogram();
        let mut rejoins = new_histogram();
        let mut errors = BTreeMap::new();
        let mut layers = [0u64; 3];

        let mut by_room: BTreeMap<u32, Vec<&Outcome>> = BTreeMap::new();
        for outcome in outcomes {
            by_room.entry(outcome.room).or_default().push(outcome);
            for (kind, n) in &outcome.errors {
                *errors.entry(kind.clone()).or_default() += n;
            }
            if let Some(t) = outcome.join_time {
                let _ = joins.record((t.as_micros() as u64).max(1));
            }
            for t in &outcome.rejoin_times {
                let _ = rejoins.record((t.as_micros() as u64).max(1));
            }
            for (&(_, track, layer), got) in &outcome.received {
                if track == Track::Video && usize::from(layer) < layers.len() {
                    layers[usize::from(layer)] += got.unique_in_window;
                }
            }
            for track in outcome.received.values() {
                reordered += track.reordered;
                duplicates += track.duplicates;
            }
        }
        for members in by_room.values() {
            let ready: Vec<&&Outcome> = members.iter().filter(|o| o.ready).collect();
            for publisher in &ready {
                sent += publisher.sent_in_window.iter().sum::<u64>();
            }
            for receiver in &ready {
                let _ = latency.add(&receiver.latency_us);
                let _ = wire_latency.add(&receiver.wire_latency_us);
                for publisher in &ready {
                    if publisher.index == receiver.index {
                        continue;
                    }
                    for track in Track::ALL {
                        let (e, r) =
                            expected_and_received(receiver, publisher, track, facts.simulcast);
                        expected += e;
                        received += r;
                    }
                }
            }
        }
        let loss_percent = (expected > 0)
            .then(|| expected.saturating_sub(received) as f64 / expected as f64 * 100.0);
        Report {
            mode: facts.mode.to_string(),
            rooms: facts.rooms,
            room_size: facts.room_size,
            participants: outcomes.len(),
            ready: outcomes.iter().filter(|o| o.ready).count(),
            seconds: facts.window.as_secs_f64(),
            sent_pps: sent as f64 / seconds,
            received_pps: received as f64 / seconds,
            expected_pps: expected as f64 / seconds,
            loss_percent,
            reordered,
            duplicates,
            latency_ms: Percentiles::of(&latency, 1_000.0),
            wire_latency_ms: Percentiles::of(&wire_latency, 1_000.0),
            join_ms: Percentiles::of(&joins, 1_000.0),
            rejoin_ms: Percentiles::of(&rejoins, 1_000.0),
            rejoins: rejoins.len() as usize,
            join_rate_per_second: facts.join_rate,
            simulcast: facts.simulcast,
            video_layers_pps: facts.simulcast.then(|| layers.map(|n| n as f64 / seconds)),
            errors,
            server: facts.server,
            generator: facts.generator,
            nodes: (facts.nodes > 1).then(|| Spread::of(&by_room)),
        }
    }

    /// No errors, everyone ready, (with media) packets flowed, and no
    /// room split across nodes.
    pub fn is_clean(&self) -> bool {
        self.errors.is_empty()
            && self.nodes.as_ref().is_none_or(|n| n.split_rooms == 0)
            && self.ready == self.participants
            && (self.mode == "signaling" || self.received_pps > 0.0)
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn thousands(n: f64) -> String {
    let digits = format!("{:.0}", n);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 && c != '-' {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} rooms x {} people, {}{} ({:.1} s measured)",
            self.rooms,
            self.room_size,
            self.mode,
            if self.simulcast { ", simulcast" } else { "" },
            self.seconds
        )?;
        let row = |f: &mut fmt::Formatter<'_>, name: &str, value: String| {
            writeln!(f, "  {name:<22} {value}")
        };
        row(
            f,
            "participants ready",
            format!("{} of {}", self.ready, self.participants),
        )?;
        if self.mode != "signaling" {
            row(f, "sent", format!("{} packets/s", thousands(self.sent_pps)))?;
            row(
                f,
                "received",
                format!(
                    "{} packets/s (expected {})",
                    thousands(self.received_pps),
                    thousands(self.expected_pps)
                ),
            )?;
            row(
                f,
                "loss",
                match self.loss_percent {
                    Some(loss) => format!(
                        "{loss:.3} % (reordered {}, duplicates {})",
                        self.reordered, self.duplicates
                    ),
                    None => "n/a (nothing was expected)".into(),
                },
            )?;
            if let Some([q, h, full]) = self.video_layers_pps {
                row(
                    f,
                    "video layers q/h/f",
                    format!(
                        "{} / {} / {} packets/s received",
                        thousands(q),
                        thousands(h),
                        thousands(full)
                    ),
                )?;
            }
            let latency = |l: &Option<Percentiles>| match l {
                Some(l) => format!(
                    "{:.2} / {:.2} / {:.2} ms (max {:.2})",
                    l.p50, l.p95, l.p99, l.max
                ),
                None => "n/a".into(),
            };
            row(f, "latency p50/p95/p99", latency(&self.latency_ms))?;
            row(f, "wire p50/p95/p99", latency(&self.wire_latency_ms))?;
        }
        row(
            f,
            "join time p50/p99",
            match &self.join_ms {
                Some(j) => format!("{:.0} / {:.0} ms (max {:.0})", j.p50, j.p99, j.max),
                None => "n/a".into(),
            },
        )?;
        if let Some(r) = &self.rejoin_ms {
            row(
                f,
                "back in after a drop",
                format!(
                    "{} times; p50/p99 {:.0} / {:.0} ms (max {:.0})",
                    self.rejoins, r.p50, r.p99, r.max
                ),
            )?;
        }
        if let Some(rate) = self.join_rate_per_second {
            row(f, "join rate", format!("{rate:.0} participants/s"))?;
        }
        if let Some(spread) = &self.nodes {
            let rooms: Vec<String> = spread
                .rooms_by_node
                .iter()
                .map(|(node, n)| format!("{node} {n}"))
                .collect();
            row(f, "rooms by node", rooms.join(", "))?;
            row(
                f,
                "split rooms",
                format!(
                    "{} (redirects followed: {})",
                    spread.split_rooms, spread.redirects
                ),
            )?;
        }
        if let Some(s) = &self.server {
            row(
                f,
                "server",
                format!(
                    "CPU {:.1} % of a core, RSS {:.1} MiB (peak {:.1})",
                    s.cpu_percent, s.rss_mib, s.peak_rss_mib
                ),
            )?;
        }
        if let Some(g) = &self.generator {
            row(
                f,
                "generator",
                format!("CPU {:.1} % of a core", g.cpu_percent),
            )?;
        }
        let errors = if self.errors.is_empty() {
            "none".to_string()
        } else {
            self.errors
                .iter()
                .map(|(k, n)| format!("{k}: {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        row(f, "errors", errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> RunFacts {
        RunFacts {
            mode: "media",
            rooms: 1,
            room_size: 3,
            window: Duration::from_secs(10),
            join_rate: None,
            server: None,
            generator: None,
            simulcast: false,
            nodes: 1,
        }
    }

    /// A participant of room 0 that sent `sent` packets per track and got
    /// `got[publisher]` unique packets per track from each publisher.
    fn outcome(index: u32, sent: u64, got: &[(u32, u64)]) -> Outcome {
        let mut o = Outcome::new(index, 0);
        o.ready = true;
        o.sent_in_window = [sent, sent];
        for &(publisher, n) in got {
            for track in Track::ALL {
                let r = o.received.entry((publisher, track, 0)).or_default();
                for seq in 0..n as u32 {
                    r.record(seq, true);
                }
            }
        }
        let _ = o.latency_us.record(500);
        o
    }

    #[test]
    fn loss_is_what_each_receiver_missed_of_what_each_publisher_sent() {
        let outcomes = [
            outcome(0, 100, &[(1, 100), (2, 100)]),
            outcome(1, 100, &[(0, 100), (2, 100)]),
            outcome(2, 100, &[(0, 90), (1, 100)]),
        ];
        let report = Report::compile(&outcomes, facts());
        // 3 publishers x 2 tracks x 100 packets x 2 receivers.
        assert_eq!(report.expected_pps, 120.0);
        assert_eq!(report.received_pps, 118.0);
        assert_eq!(report.sent_pps, 60.0);
        let loss = report.loss_percent.unwrap();
        assert!((loss - 20.0 / 1200.0 * 100.0).abs() < 1e-9, "{loss}");
        assert_eq!(report.latency_ms.as_ref().unwrap().p50, 0.5);
        assert!(report.is_clean());
    }

    #[test]
    fn someone_who_never_got_in_is_an_error_not_a_loss() {
        let mut absent = Outcome::new(2, 0);
        absent.error("join_timeout");
        let outcomes = [
            outcome(0, 100, &[(1, 100)]),
            outcome(1, 100, &[(0, 100)]),
            absent,
        ];
        let report = Report::compile(&outcomes, facts());
        assert_eq!(report.loss_percent, Some(0.0));
        assert_eq!((report.ready, report.participants), (2, 3));
        assert_eq!(report.errors.get("join_timeout"), Some(&1));
        assert!(!report.is_clean());
        let table = report.to_string();
        assert!(table.contains("2 of 3"), "{table}");
        assert!(table.contains("join_timeout: 1"), "{table}");
    }

    #[test]
    fn rooms_do_not_expect_each_others_media() {
        let mut a = outcome(0, 50, &[(1, 50)]);
        let mut b = outcome(1, 50, &[(0, 50)]);
        let c = Outcome {
            room: 1,
            ..outcome(2, 50, &[])
        };
        a.room = 0;
        b.room = 0;
        let report = Report::compile(&[a, b, c], facts());
        assert_eq!(report.loss_percent, Some(0.0));
    }

    #[test]
    fn a_simulcast_layer_counts_as_lost_only_inside_the_span_it_was_forwarded() {
        // Publisher 1 sent 100 audio and 300 video packets (three layers);
        // receiver 0 got audio, then layer 0 (seq 0..=49, all of it), then
        // layer 2 (seq 100..=199 with 10 missing).
        let mut receiver = outcome(0, 0, &[]);
        let audio = receiver.received.entry((1, Track::Audio, 0)).or_default();
        for seq in 0..100 {
            audio.record(seq, true);
        }
        let low = receiver.received.entry((1, Track::Video, 0)).or_default();
        for seq in 0..50 {
            low.record(seq, true);
        }
        let high = receiver.received.entry((1, Track::Video, 2)).or_default();
        for seq in (100..200).filter(|s| s % 10 != 5) {
            high.record(seq, true);
        }
        let mut publisher = outcome(1, 0, &[]);
        publisher.sent_in_window = [100, 300];
        let facts = RunFacts {
            simulcast: true,
            room_size: 2,
            ..facts()
        };
        let report = Report::compile(&[receiver, publisher], facts);
        assert_eq!(report.expected_pps, (100.0 + 50.0 + 100.0) / 10.0);
        assert_eq!(report.received_pps, (100.0 + 50.0 + 90.0) / 10.0);
        assert_eq!(report.sent_pps, 40.0);
        assert!(report.simulcast);
        assert_eq!(report.video_layers_pps, Some([5.0, 0.0, 9.0]));
    }

    #[test]
    fn a_cluster_run_counts_rooms_per_node_and_flags_a_split_room() {
        let admitted = |index: u32, room: u32, node: &str, redirects: u32| {
            let mut o = Outcome::new(index, room);
            o.node = Some(node.into());
            o.redirects = redirects;
            o
        };
        let outcomes = [
            // Room 0 met on node a (one person was sent there by b).
            admitted(0, 0, "a:443", 0),
            admitted(1, 0, "a:443", 1),
            // Room 1 on node b.
            admitted(2, 1, "b:443", 0),
            admitted(3, 1, "b:443", 0),
            // Room 2 split: its people were admitted by two nodes.
            admitted(4, 2, "a:443", 0),
            admitted(5, 2, "b:443", 0),
        ];
        let one = Report::compile(&outcomes, facts());
        assert_eq!(one.nodes, None, "a single server reports no spread");
        let report = Report::compile(
            &outcomes,
            RunFacts {
                nodes: 2,
                rooms: 3,
                ..facts()
            },
        );
        let spread = report.nodes.as_ref().expect("several nodes: a spread");
        assert_eq!(
            spread.rooms_by_node,
            BTreeMap::from([("a:443".to_owned(), 1), ("b:443".to_owned(), 1)])
        );
        assert_eq!(spread.split_rooms, 1);
        assert_eq!(spread.redirects, 1);
        assert!(!report.is_clean(), "a split room is a failed run");
        assert!(report.to_string().contains("split rooms"), "{report}");
    }

    #[test]
    fn large_numbers_are_grouped_by_thousands() {
        assert_eq!(thousands(150_000.0), "150,000");
        assert_eq!(thousands(961.4), "961");
        assert_eq!(thousands(1_234_567.0), "1,234,567");
    }
}
