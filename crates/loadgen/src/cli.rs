//! The command lines of `tandem-load` (also reached as `tandem load-test`)
//! and `tandem-relay` (also `tandem udp-relay`): the load generator and the
//! bare relay that benchmarks compare the server with (docs/benchmarks.md).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use url::Url;

use crate::{Mode, Plan, Traffic};

/// Synthetic rooms with real WebRTC peers against a Tandem server.
#[derive(Debug, Parser)]
#[command(name = "tandem-load", version)]
pub struct LoadTestArgs {
    /// The server's public URL. Repeat it for a cluster (several nodes on
    /// one PostgreSQL): sessions are scheduled through the first, and
    /// participants arrive through each in turn, so that the nodes have to
    /// send them to their room's node.
    #[arg(long, value_name = "URL", default_value = "https://localhost:8443")]
    base: Vec<Url>,
    /// An API key with the scheduler (or admin) role.
    #[arg(long, value_name = "KEY")]
    api_key: Option<String>,
    /// CA certificate(s) to trust for the server (PEM); without it, the
    /// public web's roots.
    #[arg(long, value_name = "FILE")]
    cafile: Option<PathBuf>,
    /// Concurrent rooms (sessions).
    #[arg(long, default_value_t = 1)]
    rooms: usize,
    /// People per room, the clinician included: 3 is a joint session.
    #[arg(long, default_value_t = 3)]
    size: usize,
    /// Length of the measurement window.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Seconds between everyone being ready and the window opening.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Audio packets per second per participant (Opus-sized, 160 bytes).
    #[arg(long, default_value_t = 50)]
    audio_pps: u32,
    /// Video bitrate per participant, in kbit/s.
    #[arg(long, default_value_t = 1200)]
    video_kbps: u64,
    /// Video packets per second per participant.
    #[arg(long, default_value_t = 110)]
    video_pps: u32,
    /// Video frames per second (packets are sent a frame at a time).
    #[arg(long, default_value_t = 30)]
    video_fps: u32,
    /// Join and stay connected without media: signaling capacity.
    #[arg(long, conflicts_with = "relay")]
    signaling_only: bool,
    /// With --signaling-only: a participant whose connection drops (its
    /// node died) joins again through the other nodes, as the browser
    /// client does; the report gives the time from the drop to `joined`
    /// again (a cluster's failover as its clients see it).
    #[arg(long, requires = "signaling_only")]
    rejoin: bool,
    /// Send plain RTP through a bare UDP relay (`tandem-relay`) at
    /// IP:PORT instead of the server: the machine's ceiling.
    #[arg(long, value_name = "IP:PORT")]
    relay: Option<String>,
    /// Join rooms of a Janus VideoRoom (the peer SFU) over its WebSocket API
    /// at this URL (ws://IP:PORT) instead of a Tandem server: same rooms,
    /// media and stamps; the rooms are created by the run.
    #[arg(long, value_name = "URL", conflicts_with_all = ["relay", "signaling_only"])]
    janus: Option<Url>,
    /// The address the generator's sockets bind.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    bind_ip: IpAddr,
    /// Participants joining at the same time.
    #[arg(long, default_value_t = 50)]
    join_concurrency: usize,
    /// Seconds everyone has to be ready; whoever is not is an error.
    #[arg(long, default_value_t = 60)]
    join_timeout: u64,
    /// Worker threads of the generator (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// The server's process id, to report its CPU time and memory.
    #[arg(long, value_name = "PID")]
    server_pid: Option<u32>,
    /// Also write the report as JSON to this file ("-" for standard output).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
    /// End-to-end encrypted rooms: sessions with `e2ee` = `required`,
    /// joins that say so, and payloads opaque (SFrame-shaped: the few
    /// clear bytes the SFU reads, then pseudo-random bytes) so that
    /// capacity with E2EE is measured.
    #[arg(long)]
    e2ee: bool,
    /// Publish video as three simulcast layers (rids `q`, `h`, `f`: a
    /// tenth, a quarter and all of --video-kbps), as browsers do, so that
    /// the SFU chooses a layer per subscriber. Not with --relay.
    #[arg(long, conflicts_with = "relay")]
    simulcast: bool,
    /// Keep the scheduled sessions afterwards (by default they are
    /// cancelled once everyone has left).
    #[arg(long)]
    keep_sessions: bool,
}

pub async fn load_test(args: LoadTestArgs) -> anyhow::Result<()> {
    let mode = match (&args.relay, &args.janus, args.signaling_only) {
        (Some(relay), _, _) => Mode::Relay(crate::parse_relay(relay)?),
        // Rooms numbered from a random base, so runs against the same
        // Janus never meet an earlier run's rooms.
        (None, Some(_), _) => Mode::Janus(u64::from(rand::random::<u32>() | 1) << 16),
        (None, None, true) => Mode::Signaling,
        (None, None, false) => Mode::Media,
    };
    let plan = Plan {
        mode,
        bases: match args.janus {
            Some(janus) => vec![janus],
            None => args.base,
        },
        api_key: args.api_key,
        cafile: args.cafile,
        rooms: args.rooms,
        room_size: args.size,
        window: Duration::from_secs(args.seconds),
        warmup: Duration::from_secs(args.warmup),
        traffic: Traffic {
            audio_pps: args.audio_pps,
            video_pps: args.video_pps,
            video_fps: args.video_fps,
            video_bitrate_bps: args.video_kbps.saturating_mul(1000),
            e2ee: args.e2ee,
            simulcast: args.simulcast,
        },
        bind_ip: args.bind_ip,
        join_concurrency: args.join_concurrency,
        join_timeout: Duration::from_secs(args.join_timeout),
        server_pid: args.server_pid,
        progress: !args.quiet && std::io::IsTerminal::is_terminal(&std::io::stderr()),
        keep_sessions: args.keep_sessions,
        rejoin: args.rejoin,
    };
    let report = crate::run(plan).await?;
    print!("{report}");
    if let Some(path) = args.json {
        let json = serde_json::to_string_pretty(&report)?;
        if path.as_os_str() == "-" {
            println!("{json}");
        } else {
            std::fs::write(&path, json + "\n")
                .with_context(|| format!("writing {}", path.display()))?;
        }
    }
    Ok(())
}

/// A bare RTP relay: the machine's forwarding ceiling.
#[derive(Debug, Parser)]
#[command(name = "tandem-relay", version)]
pub struct UdpRelayArgs {
    /// The address to relay on.
    #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:40000")]
    listen: SocketAddr,
}

pub fn udp_relay(args: UdpRelayArgs) -> anyhow::Result<()> {
    crate::relay::serve(args.listen).with_context(|| format!("relaying on {}", args.listen))
}
