//! Tandem's load generator (`tandem-load`, also reached as
//! `tandem load-test`): schedules sessions through
//! the REST API, joins them with synthetic participants that publish and
//! receive real WebRTC media, and measures what a clinic would feel: loss,
//! added latency and the time to see everyone, at a given number of rooms.
//!
//! A run has four phases. Scheduling creates one session per room. Joining
//! starts every participant, clinicians first, a limited number at a time;
//! a participant is ready once it receives every track of its room. Then,
//! after a short warm-up, the measurement window: counts and latencies come
//! only from packets sent inside it. Last, a drain second lets packets in
//! flight arrive before everyone leaves.
//!
//! The same generator speaks plain RTP to a bare UDP relay
//! ([`relay`]) so that the server can be compared with the machine's
//! ceiling, speaks Janus's VideoRoom API ([`janus`]) so that a peer SFU
//! is measured with the same media, and can join without media to measure
//! signaling alone.

mod arrival;
pub mod cli;
pub mod janus;
mod janus_room;
mod pacing;
mod participant;
mod peers;
mod process;
mod reception;
pub mod relay;
mod report;
mod schedule;
mod sender;
mod stamp;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::{stream, StreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::{watch, Semaphore};
use url::Url;

pub use participant::{Mode, Traffic};
pub use report::Report;

use participant::{Clock, Live, Shared};
use report::RunFacts;
use schedule::{Api, Seat};

/// Everything a run needs to know.
#[derive(Debug, Clone)]
pub struct Plan {
    pub mode: Mode,
    /// The server's URL; several for a cluster's nodes (the first schedules).
    pub bases: Vec<Url>,
    pub api_key: Option<String>,
    pub cafile: Option<PathBuf>,
    pub rooms: usize,
    pub room_size: usize,
    pub window: Duration,
    pub warmup: Duration,
    pub traffic: Traffic,
    pub bind_ip: IpAddr,
    pub join_concurrency: usize,
    pub join_timeout: Duration,
    /// The server's process, for its CPU time and memory.
    pub server_pid: Option<u32>,
    pub progress: bool,
    /// Leave the scheduled sessions in place after the run (they are
    /// cancelled otherwise).
    pub keep_sessions: bool,
    /// Join again after a dropped connection (signaling only).
    pub rejoin: bool,
}

/// How long packets in flight get to arrive after the window closes.
const DRAIN: Duration = Duration::from_secs(1);

impl Plan {
    fn check(&self) -> anyhow::Result<()> {
        if self.bases.is_empty() {
            bail!("--base must be given at least once");
        }
        if self.rooms == 0 {
            bail!("--rooms must be at least 1");
        }
        if !(2..=20).contains(&self.room_size) {
            bail!("--size must be from 2 to 20 (a room's roster limit)");
        }
        if self.window.is_zero() {
            bail!("--seconds must be at least 1");
        }
        let t = &self.traffic;
        if t.audio_pps == 0 || t.video_pps == 0 || t.video_fps == 0 {
            bail!("packet and frame rates must be at least 1");
        }
        if t.video_payload() < stamp::STAMP_LEN + 2 || t.video_payload() > stamp::MAX_PAYLOAD {
            bail!(
                "--video-kbps and --video-pps give {} bytes per video packet; it must be from {} to {}",
                t.video_payload(),
                stamp::STAMP_LEN + 2,
                stamp::MAX_PAYLOAD
            );
        }
        if matches!(self.mode, Mode::Media | Mode::Signaling) && self.api_key.is_none() {
            bail!("--api-key is needed to schedule sessions (create one with `tandem apikey create --role scheduler`)");
        }
        if self.join_concurrency == 0 {
            bail!("--join-concurrency must be at least 1");
        }
        if let Some(pid) = self.server_pid {
            process::read(Some(pid)).with_context(|| format!("--server-pid {pid}"))?;
        }
        Ok(())
    }

    fn mode_name(&self) -> &'static str {
        match self.mode {
            Mode::Media => "media",
            Mode::Signaling => "signaling",
            Mode::Relay(_) => "relay",
            Mode::Janus(_) => "janus",
        }
    }
}

/// Runs the load test; its report.
pub async fn run(plan: Plan) -> anyhow::Result<Report> {
    plan.check()?;
    let tls = schedule::client_tls(plan.cafile.as_deref())?;
    let signal_urls = match plan.mode {
        Mode::Janus(_) => plan.bases.iter().map(Url::to_string).collect(),
        _ => plan
            .bases
            .iter()
            .map(signal_url)
            .collect::<Result<Vec<_>, _>>()?,
    };
    let (seats, scheduled) = match plan.mode {
        Mode::Relay(_) => (unscheduled_seats(&plan), None),
        Mode::Janus(base) => {
            janus_room::create_rooms(&signal_urls[0], base, plan.rooms, plan.room_size).await?;
            (unscheduled_seats(&plan), None)
        }
        _ => {
            let (seats, api, sessions) = schedule_rooms(&plan, tls.clone()).await?;
            (seats, Some((api, sessions)))
        }
    };
    let total = seats.len();

    let (stop_tx, stop_rx) = watch::channel(false);
    let shared = Arc::new(Shared {
        mode: plan.mode,
        signal_urls,
        tls,
        bind_ip: plan.bind_ip,
        traffic: plan.traffic,
        room_size: plan.room_size,
        clock: Clock::new(),
        joining: Arc::new(Semaphore::new(plan.join_concurrency)),
        live: Live::default(),
        stop: stop_rx,
        rejoin: plan.rejoin,
    });

    let joining = bar(
        &plan,
        total as u64,
        "joining  {bar:30} {pos}/{len} ready {msg}",
    );
    let started = Instant::now();
    let tasks: Vec<_> = seats
        .into_iter()
        .map(|seat| {
            let (index, room) = (seat.index, seat.room);
            let task = tokio::spawn(participant::run(shared.clone(), seat));
            (index, room, task)
        })
        .collect();
    let mut all_ready_after = None;
    while started.elapsed() < plan.join_timeout {
        let ready = shared.live.ready.load(Ordering::Relaxed) as usize;
        let failed = shared.live.failed.load(Ordering::Relaxed) as usize;
        joining.set_position(ready as u64);
        joining.set_message(if failed > 0 {
            format!("({failed} failed)")
        } else {
            String::new()
        });
        if ready == total {
            all_ready_after = Some(started.elapsed());
            break;
        }
        if ready + failed >= total {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    joining.finish();
    let join_rate = match (plan.mode, all_ready_after) {
        (Mode::Signaling, Some(after)) => Some(total as f64 / after.as_secs_f64()),
        _ => None,
    };

    tokio::time::sleep(plan.warmup).await;
    let window_start = Instant::now();
    shared.clock.open_window(window_start, plan.window);
    let server_before = plan
        .server_pid
        .and_then(|pid| process::read(Some(pid)).ok());
    let generator_before = process::read(None).ok();

    let measuring = bar(
        &plan,
        plan.window.as_secs(),
        "measuring {bar:30} {pos}/{len} s  {msg}",
    );
    let (mut last_sent, mut last_received) = (0, 0);
    while window_start.elapsed() < plan.window {
        tokio::time::sleep(Duration::from_secs(1).min(plan.window)).await;
        let sent = shared.live.sent.load(Ordering::Relaxed);
        let received = shared.live.received.load(Ordering::Relaxed);
        measuring.set_position(window_start.elapsed().as_secs());
        measuring.set_message(format!(
            "sent {} pkt/s, received {} pkt/s",
            sent - last_sent,
            received - last_received
        ));
        (last_sent, last_received) = (sent, received);
    }
    // A server that ended during the run has no figures; the report says so.
    let server = server_before.and_then(|before| {
        let pid = plan.server_pid?;
        Some(process::read(Some(pid)).ok()?.usage_since(&before))
    });
    let generator =
        generator_before.and_then(|before| Some(process::read(None).ok()?.usage_since(&before)));
    measuring.finish_and_clear();

    tokio::time::sleep(DRAIN).await;
    let _ = stop_tx.send(true);
    let mut outcomes = Vec::with_capacity(total);
    for (index, room, mut task) in tasks {
        let outcome = match tokio::time::timeout(Duration::from_secs(10), &mut task).await {
            Ok(Ok(outcome)) => outcome,
            // Not expected (participants leave within a few seconds of the
            // stop, and return their errors): counted, and the run goes on.
            Ok(Err(_)) | Err(_) => {
                task.abort();
                let mut lost = report::Outcome::new(index, room);
                lost.error("participant_hung");
                lost
            }
        };
        outcomes.push(outcome);
    }
    label_incomplete_rooms(&mut outcomes);
    let mut report = Report::compile(
        &outcomes,
        RunFacts {
            mode: plan.mode_name(),
            rooms: plan.rooms,
            room_size: plan.room_size,
            window: plan.window,
            join_rate,
            server,
            generator,
            simulcast: plan.traffic.simulcast,
            nodes: plan.bases.len(),
        },
    );
    if plan.server_pid.is_some() && report.server.is_none() {
        report.errors.insert("server_process_gone".into(), 1);
    }
    if let (Some((api, sessions)), false) = (scheduled, plan.keep_sessions) {
        let failed = cancel_sessions(&api, &sessions).await;
        if failed > 0 {
            report.errors.insert("session_cancel_failed".into(), failed);
        }
    }
    Ok(report)
}

/// In a room where someone failed, the others never receive every track of
/// their room: their `join_timeout` is the room's, not their own.
fn label_incomplete_rooms(outcomes: &mut [report::Outcome]) {
    let failed_rooms: std::collections::HashSet<u32> = outcomes
        .iter()
        .filter(|o| o.errors.keys().any(|k| k != "join_timeout"))
        .map(|o| o.room)
        .collect();
    for outcome in outcomes.iter_mut() {
        if failed_rooms.contains(&outcome.room) {
            if let Some(n) = outcome.errors.remove("join_timeout") {
                *outcome.errors.entry("room_incomplete".into()).or_default() += n;
            }
        }
    }
}

/// Cancels the run's sessions, a few at a time; how many could not be.
async fn cancel_sessions(api: &Api, sessions: &[String]) -> u64 {
    stream::iter(sessions)
        .map(|id| api.cancel(id))
        .buffer_unordered(8)
        .filter(|result| std::future::ready(result.is_err()))
        .count()
        .await as u64
}

fn bar(plan: &Plan, len: u64, template: &str) -> ProgressBar {
    if !plan.progress {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Schedules every room, a few at a time: the seats (clinicians first),
/// the API client, and the sessions' ids.
async fn schedule_rooms(
    plan: &Plan,
    tls: Arc<rustls::ClientConfig>,
) -> anyhow::Result<(Vec<Seat>, Arc<Api>, Vec<String>)> {
    let key = plan.api_key.clone().context("an API key")?;
    let api = Arc::new(Api::new(plan.bases[0].clone(), key, tls)?);
    // Sessions run long enough for the whole test, in whole minutes.
    let minutes = 30 + (plan.warmup + plan.window + plan.join_timeout).as_secs() as i64 / 60;
    let size = plan.room_size;
    let scheduling = bar(
        plan,
        plan.rooms as u64,
        "scheduling {bar:30} {pos}/{len} rooms",
    );
    let results: Vec<anyhow::Result<(String, Vec<Seat>)>> = stream::iter(0..plan.rooms as u32)
        .map(|room| {
            let api = api.clone();
            let scheduling = scheduling.clone();
            async move {
                let seats = api
                    .schedule_room(room, size, room * size as u32, minutes, plan.traffic.e2ee)
                    .await?;
                scheduling.inc(1);
                anyhow::Ok(seats)
            }
        })
        .buffered(8)
        .collect()
        .await;
    scheduling.finish_and_clear();
    let mut rooms = Vec::with_capacity(results.len());
    let mut failure = None;
    for result in results {
        match result {
            Ok(room) => rooms.push(room),
            Err(e) => failure = failure.or(Some(e)),
        }
    }
    if let Some(e) = failure {
        // Leave nothing behind: the sessions that were made are cancelled.
        let made: Vec<String> = rooms.into_iter().map(|(id, _)| id).collect();
        cancel_sessions(&api, &made).await;
        return Err(e);
    }
    // Every clinician before anyone else, so that no one waits behind a
    // room whose clinician has not started.
    let (sessions, seats): (Vec<String>, Vec<Vec<Seat>>) = rooms.into_iter().unzip();
    let (clinicians, others): (Vec<Seat>, Vec<Seat>) =
        seats.into_iter().flatten().partition(|s| s.clinician);
    Ok((
        clinicians.into_iter().chain(others).collect(),
        api,
        sessions,
    ))
}

/// Seats for targets that schedule nothing (the relay, Janus): numbered as
/// the API would number them, the first of each room its clinician.
fn unscheduled_seats(plan: &Plan) -> Vec<Seat> {
    (0..plan.rooms as u32)
        .flat_map(|room| {
            (0..plan.room_size as u32).map(move |k| Seat {
                index: room * plan.room_size as u32 + k,
                room,
                clinician: k == 0,
                token: String::new(),
            })
        })
        .collect()
}

fn signal_url(base: &Url) -> anyhow::Result<String> {
    let mut url = base.join("/v1/signal").context("the signaling url")?;
    let scheme = match url.scheme() {
        "https" => "wss",
        "http" => bail!("--base must be https: Tandem serves nothing over plain HTTP"),
        other => bail!("--base has an unknown scheme {other}"),
    };
    url.set_scheme(scheme)
        .map_err(|_| anyhow::anyhow!("cannot make a wss url from {base}"))?;
    Ok(url.to_string())
}

/// The relay's address, parsed from `--relay`.
pub fn parse_relay(addr: &str) -> anyhow::Result<SocketAddr> {
    addr.parse()
        .with_context(|| format!("--relay {addr}: expected IP:PORT"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_participant_makes_its_rooms_timeouts_the_rooms_fault() {
        let mut failed = report::Outcome::new(0, 1);
        failed.error("denied_token_invalid");
        let mut roommate = report::Outcome::new(1, 1);
        roommate.error("join_timeout");
        let mut elsewhere = report::Outcome::new(2, 2);
        elsewhere.error("join_timeout");
        let mut outcomes = [failed, roommate, elsewhere];
        label_incomplete_rooms(&mut outcomes);
        assert_eq!(
            outcomes[0].errors.keys().collect::<Vec<_>>(),
            ["denied_token_invalid"]
        );
        assert_eq!(
            outcomes[1].errors.keys().collect::<Vec<_>>(),
            ["room_incomplete"]
        );
        assert_eq!(
            outcomes[2].errors.keys().collect::<Vec<_>>(),
            ["join_timeout"]
        );
    }

    #[test]
    fn the_signaling_url_follows_the_base() {
        let base = Url::parse("https://video.clinic.example:8443").unwrap();
        assert_eq!(
            signal_url(&base).unwrap(),
            "wss://video.clinic.example:8443/v1/signal"
        );
        let plain = Url::parse("http://localhost:8080").unwrap();
        assert!(signal_url(&plain)
            .unwrap_err()
            .to_string()
            .contains("https"));
    }
}
