//! `tandem demo`: Tandem running on this machine in one command.
//!
//! It makes what a production install is given: a certificate (from a local
//! development CA the user can trust), a database with a joint session
//! starting now, an admin API key, and the join links. A second run reuses
//! all of it, so links already opened in a browser keep working.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};

use chrono::{Duration, Utc};
use clap::Args;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::admin::create_api_key;
use super::sessions::print_invites;
use super::{init_logging, open_store, scheduler_on};
use crate::auth::ApiRole;
use crate::config::Config;
use crate::private_file;
use crate::schedule::{
    ClinicianRequest, ParticipantRequest, Scheduler, Series, SeriesRequest, Session,
    SessionRequest, SessionStatus,
};
use crate::server::{self, Listeners};
use crate::tls::devcert;

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// HTTPS port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 8443)]
    port: u16,
    /// Where the database, signing key and demo state live.
    #[arg(long, default_value = "data")]
    data_dir: PathBuf,
    /// Where the development CA and certificate are written.
    #[arg(long, default_value = "certs")]
    certs_dir: PathBuf,
    /// Accept a database file of 0 bytes and make it a new, empty database.
    #[arg(long)]
    init: bool,
    /// The address media (UDP and ICE-TCP) binds and announces in ICE
    /// candidates: one of this machine's own addresses. The default,
    /// 127.0.0.1, works for Chromium on this machine; Firefox never uses
    /// 127.0.0.1 candidates, so give it another address of this machine.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    media_ip: IpAddr,
    /// End-to-end encryption of the demo's sessions (and of sessions
    /// created on this server without the setting): off, preferred or
    /// required.
    #[arg(long, default_value = "preferred", value_parser = e2ee_mode)]
    e2ee: tandem_protocol::E2eeMode,
}

fn e2ee_mode(text: &str) -> Result<tandem_protocol::E2eeMode, String> {
    tandem_protocol::E2eeMode::parse(text)
        .ok_or_else(|| "must be off, preferred or required".to_owned())
}

/// Whether this machine has a route off loopback: a UDP socket "connected"
/// to a documentation address (RFC 5737; nothing is sent) gets a
/// non-loopback source address only when some interface other than `lo`
/// can reach beyond the machine.
fn has_route_off_loopback() -> bool {
    UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
        .and_then(|socket| {
            socket.connect((Ipv4Addr::new(192, 0, 2, 1), 9))?;
            socket.local_addr()
        })
        .is_ok_and(|local| !local.ip().is_loopback() && !local.ip().is_unspecified())
}

/// The warning for a demo whose media only 127.0.0.1 can reach on a host
/// with nothing but loopback, or `None`.
fn loopback_warning(media_ip: IpAddr, route_off_loopback: bool) -> Option<String> {
    (media_ip.is_loopback() && !route_off_loopback).then(|| {
        format!(
            "Warning: this machine has only a loopback network, and media is announced on \
             {media_ip}. Firefox cannot connect to {media_ip} (it never uses loopback \
             candidates): Firefox users are admitted, but their call never connects. \
             Chromium on this machine works. For Firefox, give this machine \
             another address (for example a dummy interface) and pass it with \
             --media-ip ADDRESS."
        )
    })
}

/// What a second run needs from the first: the demo session and the admin
/// key (kept in a 0600 file, since only its hash is in the database).
#[derive(Debug, Serialize, Deserialize)]
struct DemoState {
    session_id: Uuid,
    api_key: String,
    /// The demo's weekly series (absent in the state of older versions).
    #[serde(default)]
    series_id: Option<Uuid>,
}

fn state_path(data_dir: &Path) -> PathBuf {
    data_dir.join("demo.json")
}

fn read_state(data_dir: &Path) -> Option<DemoState> {
    let text = std::fs::read_to_string(state_path(data_dir)).ok()?;
    serde_json::from_str(&text).ok()
}

fn demo_request(now: chrono::DateTime<Utc>) -> SessionRequest {
    let person = |id: &str, name: &str, role: &str| ParticipantRequest {
        id: Some(id.into()),
        name: Some(name.into()),
        role: Some(role.into()),
        household: None,
        mrn: None,
    };
    SessionRequest {
        title: Some("Demo joint session".into()),
        kind: Some("couple".into()),
        starts_at: Some(now.to_rfc3339()),
        ends_at: Some((now + Duration::minutes(60)).to_rfc3339()),
        timezone: None,
        clinician: Some(ClinicianRequest {
            id: Some("demo-clinician".into()),
            name: Some("Dr Rivera".into()),
        }),
        participants: Some(vec![
            person("demo-patient", "Alex Morgan", "patient"),
            person("demo-partner", "Sam Morgan", "partner"),
        ]),
        settings: None,
        // A new demo session may start while the last run's is still in
        // its overrun grace, with the same demo people.
        allow_overlap: Some(true),
    }
}

/// The demo session of an earlier run while it still has ten minutes to
/// go, otherwise a new one starting now.
async fn demo_session(
    scheduler: &Scheduler,
    previous: Option<&DemoState>,
) -> anyhow::Result<(Session, bool)> {
    let now = Utc::now();
    if let Some(state) = previous {
        if let Ok(session) = scheduler.get(state.session_id).await {
            if session.status(now) == SessionStatus::Scheduled
                && session.ends_at > now + Duration::minutes(10)
            {
                return Ok((session, false));
            }
        }
    }
    let session = scheduler
        .create(&demo_request(now), now)
        .await
        .map_err(|e| anyhow::anyhow!("cannot create the demo session: {e:?}"))?;
    Ok((session, true))
}

/// The demo's small weekly series: four sessions of the demo couple, a
/// day after the demo session at the same wall-clock hour, so its one
/// link per person can be shown (it opens 15 minutes before each).
fn demo_series_request(now: chrono::DateTime<Utc>, timezone: &str) -> SeriesRequest {
    let tz: chrono_tz::Tz = timezone.parse().unwrap_or(chrono_tz::UTC);
    let first = (now + Duration::days(1)).with_timezone(&tz);
    let request = demo_request(now);
    SeriesRequest {
        title: Some("Demo weekly couples group".into()),
        kind: Some("couple".into()),
        timezone: Some(tz.name().into()),
        rrule: Some("FREQ=WEEKLY;COUNT=4".into()),
        first_starts_at: Some(first.format("%Y-%m-%dT%H:00:00").to_string()),
        duration_minutes: Some(50),
        clinician: request.clinician,
        participants: request.participants,
        settings: None,
        // A rerun a day later may place a new series over the last one's.
        allow_overlap: Some(true),
    }
}

/// The series of an earlier run while it has an occurrence to come,
/// otherwise a new one.
async fn demo_series(
    scheduler: &Scheduler,
    previous: Option<&DemoState>,
    timezone: &str,
) -> anyhow::Result<(Series, bool)> {
    let now = Utc::now();
    if let Some(id) = previous.and_then(|s| s.series_id) {
        if let Ok(series) = scheduler.series(id).await {
            if series.record.cancelled_at.is_none()
                && series
                    .sessions
                    .iter()
                    .any(|s| s.status(now) == SessionStatus::Scheduled)
            {
                return Ok((series, false));
            }
        }
    }
    let series = scheduler
        .create_series(&demo_series_request(now, timezone), now)
        .await
        .map_err(|e| anyhow::anyhow!("cannot create the demo series: {e}"))?;
    Ok((series, true))
}

/// The demo admin's staff account (admin and clinician `demo-clinician`,
/// the demo session's clinician), made once, and a fresh one-time sign-in
/// link for it.
async fn demo_console_link(store: &crate::store::Store, config: &Config) -> anyhow::Result<String> {
    use crate::http::staff::StaffConsole;
    const EMAIL: &str = "admin@demo.tandem.test";
    let console = StaffConsole::new(store.clone(), config);
    let now = Utc::now();
    let account = match console.find(EMAIL).await {
        Ok(account) => account,
        Err(_) => {
            let roles = [ApiRole::Admin, ApiRole::Clinician];
            console
                .add(EMAIL, "Demo admin", &roles, Some("demo-clinician"), now)
                .await?
                .0
        }
    };
    Ok(console.sign_in_link(&account, now).await?)
}

pub(crate) async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let listeners = Listeners::bind(&crate::config::ServerSection {
        listen: SocketAddr::from((Ipv4Addr::LOCALHOST, args.port)),
        redirect_listen: None,
        shutdown_grace_secs: 5,
        ..Config::default().server
    })?;
    let port = listeners.https_addr().port();

    let mut config = Config {
        public_url: format!("https://localhost:{port}"),
        data_dir: args.data_dir.clone(),
        ..Config::default()
    };
    config.server.listen = listeners.https_addr();
    config.tls.cert_file = args.certs_dir.join("cert.pem");
    config.tls.key_file = args.certs_dir.join("key.pem");
    config.log.filter = "warn,tandem=info".into();
    // Media on loopback (or --media-ip), on free ports, so that instances
    // run side by side.
    config.media.bind_ip = Some(args.media_ip);
    config.sessions.e2ee = args.e2ee;
    config.media.udp_port = 0;
    config.media.tcp_port = 0;
    // The demo admin signs in with the printed one-time link; a second
    // factor is for real deployments.
    config.console.require_totp = false;
    config.validate()?;
    init_logging(&config);

    let hosts = ["localhost", "127.0.0.1", "::1"].map(String::from);
    let certs = devcert::ensure(&args.certs_dir, &hosts)?;
    let store = open_store(&config, args.init).await?;
    let scheduler = scheduler_on(&config, store.clone())?;

    let previous = read_state(&args.data_dir);
    let api_key = match &previous {
        Some(state)
            if store
                .active_api_key(&crate::auth::api_key::hash(&state.api_key))
                .await?
                .is_some() =>
        {
            state.api_key.clone()
        }
        _ => create_api_key(&store, ApiRole::Admin, "demo admin").await?,
    };
    let (session, created) = demo_session(&scheduler, previous.as_ref()).await?;
    let (series, series_created) = demo_series(
        &scheduler,
        previous.as_ref(),
        &config.sessions.default_timezone,
    )
    .await?;
    let state = DemoState {
        session_id: session.id,
        api_key: api_key.clone(),
        series_id: Some(series.record.id),
    };
    private_file::write(
        &state_path(&args.data_dir),
        serde_json::to_string_pretty(&state)?.as_bytes(),
    )?;
    let invites = scheduler
        .invites(session.id, Utc::now())
        .await
        .map_err(|e| anyhow::anyhow!("cannot issue the demo links: {e:?}"))?;
    let series_invites = scheduler
        .series_invites(series.record.id, Utc::now())
        .await
        .map_err(|e| anyhow::anyhow!("cannot issue the demo series links: {e}"))?;

    let ca = certs.ca_cert.display();
    println!();
    println!("Tandem demo");
    println!();
    println!(
        "  Development CA:  {ca}  ({}; trust it in your browser or use curl --cacert)",
        if certs.created { "new" } else { "reused" }
    );
    println!("  Database:        {}", config.database_path().display());
    println!("  Admin API key:   {api_key}");
    println!(
        "  Session:         {}  {} – {} UTC  ({})",
        session.id,
        session.starts_at.format("%Y-%m-%d %H:%M"),
        session.ends_at.format("%H:%M"),
        if created { "new" } else { "reused" }
    );
    println!();
    println!("Join links (one per person; each works only for that person):");
    print_invites(&session, &invites);
    println!();
    let first = &series.sessions[0];
    println!(
        "Weekly series:   {}  {} sessions from {} UTC, {} ({})",
        series.record.id,
        series.sessions.len(),
        first.starts_at.format("%Y-%m-%d %H:%M"),
        series.record.rrule,
        if series_created { "new" } else { "reused" }
    );
    println!("Series links (one per person, for every session of the series; each opens 15 min before a session):");
    for invite in &series_invites {
        println!("  series {:<10} {}", invite.role.as_str(), invite.url);
    }
    println!();
    let console_link = demo_console_link(&store, &config).await?;
    println!("Staff console (one-time sign-in link for the demo admin, who is also clinician demo-clinician):");
    println!("console  {console_link}");
    println!();
    println!("Try the API:");
    println!(
        "  curl --cacert {ca} -H 'Authorization: Bearer {api_key}' https://localhost:{port}/v1/sessions/{}",
        session.id
    );
    println!();

    let signals = server::StopSignals::listen()?;
    let running =
        server::start_with(config, listeners, server::Options { init: args.init }).await?;
    // Before the "Listening" line, which ends what a script reads (the
    // pipe may close after it).
    println!("Media on {}", args.media_ip);
    if let Some(warning) = loopback_warning(args.media_ip, has_route_off_loopback()) {
        println!();
        println!("{warning}");
        println!();
    }
    println!("Listening on https://localhost:{port}  (Ctrl-C to stop)");
    running.run_until(signals, false).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loopback_only_host_is_warned_about_firefox() {
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let warning = loopback_warning(lo, false).expect("a warning");
        assert!(
            warning.contains("Firefox cannot connect to 127.0.0.1"),
            "{warning}"
        );
        assert!(warning.contains("--media-ip"), "{warning}");
        assert_eq!(loopback_warning(lo, true), None);
        assert_eq!(loopback_warning("10.1.2.3".parse().unwrap(), false), None);
    }
}
