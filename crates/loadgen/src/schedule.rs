//! Scheduling the load test's sessions through the public REST API, as a
//! clinic's EHR would, so the generator exercises the same path: one
//! session per room, one invite link per participant.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use chrono::{Duration as Minutes, Utc};
use serde_json::{json, Value};
use url::Url;

/// One place in a room, and the link that admits its holder.
#[derive(Debug, Clone)]
pub struct Seat {
    /// The participant's number in this run (also in their roster id).
    pub index: u32,
    pub room: u32,
    pub clinician: bool,
    /// The invite token; empty for the bare relay, which admits anyone.
    pub token: String,
}

/// The roster id of participant `index`: the generator finds who sent a
/// packet from its stamp and who is in a room from `joined`, by this id.
pub fn participant_id(index: u32) -> String {
    format!("lt-{index}")
}

pub fn index_of(participant_id: &str) -> Option<u32> {
    participant_id.strip_prefix("lt-")?.parse().ok()
}

/// TLS for the API and signaling: the given CA file, or the public web's
/// roots when none is given.
pub fn client_tls(cafile: Option<&Path>) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    match cafile {
        Some(path) => {
            let pem = std::fs::read(path)
                .with_context(|| format!("reading the CA file {}", path.display()))?;
            let mut found = 0;
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                let cert = cert.with_context(|| format!("reading {}", path.display()))?;
                roots
                    .add(cert)
                    .with_context(|| format!("a certificate in {}", path.display()))?;
                found += 1;
            }
            if found == 0 {
                bail!("{} holds no PEM certificate", path.display());
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A client of the REST API with one API key.
pub struct Api {
    client: reqwest::Client,
    base: Url,
    key: String,
}

impl Api {
    pub fn new(base: Url, key: String, tls: Arc<rustls::ClientConfig>) -> anyhow::Result<Api> {
        let client = reqwest::Client::builder()
            .use_preconfigured_tls((*tls).clone())
            .build()
            .context("building the HTTPS client")?;
        Ok(Api { client, base, key })
    }

    /// Schedules room `room` (running now, for long enough) with
    /// `room_size` people, the clinician first; the session's id and their
    /// seats. Participants are numbered from `first_index`.
    pub async fn schedule_room(
        &self,
        room: u32,
        room_size: usize,
        first_index: u32,
        minutes: i64,
        e2ee: bool,
    ) -> anyhow::Result<(String, Vec<Seat>)> {
        let mut body = session_body(room, room_size, first_index, minutes);
        if e2ee {
            body["settings"]["e2ee"] = json!("required");
        }
        let session: Value = self
            .send(self.client.post(self.url("/v1/sessions")?).json(&body))
            .await
            .context("scheduling a session")?;
        let id = session["id"]
            .as_str()
            .context("the session has no id")?
            .to_string();
        let invites: Value = self
            .send(
                self.client
                    .post(self.url(&format!("/v1/sessions/{id}/invites"))?)
                    .json(&json!({})),
            )
            .await
            .context("issuing invites")?;
        let mut seats = Vec::with_capacity(room_size);
        for invite in invites["invites"].as_array().context("no invites")? {
            let pid = invite["participant_id"].as_str().unwrap_or_default();
            let index = index_of(pid).with_context(|| format!("unexpected participant {pid}"))?;
            let url = invite["url"].as_str().context("an invite without a url")?;
            let token = url
                .split_once("#t=")
                .map(|(_, t)| t.to_string())
                .context("an invite url without a token")?;
            seats.push(Seat {
                index,
                room,
                clinician: invite["role"] == "clinician",
                token,
            });
        }
        if seats.len() != room_size {
            bail!("expected {room_size} invites, got {}", seats.len());
        }
        Ok((id, seats))
    }

    /// Cancels a session the run scheduled, so that a staging server's
    /// schedule is not left full of load-test sessions.
    pub async fn cancel(&self, session: &str) -> anyhow::Result<()> {
        self.send(
            self.client
                .delete(self.url(&format!("/v1/sessions/{session}"))?),
        )
        .await
        .with_context(|| format!("cancelling session {session}"))?;
        Ok(())
    }

    fn url(&self, path: &str) -> anyhow::Result<Url> {
        self.base.join(path).context("building an API url")
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let response = request
            .bearer_auth(&self.key)
            .send()
            .await
            .context("the API did not answer")?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let message = body["error"]["message"].as_str().unwrap_or("no message");
            bail!("the API answered {status}: {message}");
        }
        Ok(body)
    }
}

/// A session for one room: a joint (couple) session for 3 people, an
/// individual one for 2, a group of couples for more. Everyone is admitted
/// automatically once the clinician is in, so the test measures the server,
/// not a click.
fn session_body(room: u32, room_size: usize, first_index: u32, minutes: i64) -> Value {
    let kind = match room_size {
        2 => "individual",
        3 => "couple",
        _ => "group",
    };
    let participants: Vec<Value> = (1..room_size as u32)
        .map(|k| {
            let role = if kind == "individual" || k % 2 == 1 {
                "patient"
            } else {
                "partner"
            };
            let mut person = json!({
                "id": participant_id(first_index + k),
                "name": format!("Load test {}", first_index + k),
                "role": role,
            });
            if kind == "group" {
                person["household"] = json!(format!("h{}", k.div_ceil(2)));
            }
            person
        })
        .collect();
    let now = Utc::now();
    json!({
        "title": format!("Load test room {room}"),
        "kind": kind,
        "starts_at": (now - Minutes::minutes(1)).to_rfc3339(),
        "ends_at": (now + Minutes::minutes(minutes)).to_rfc3339(),
        "timezone": "UTC",
        "clinician": {"id": participant_id(first_index), "name": format!("Load test clinician {room}")},
        "participants": participants,
        "settings": {"auto_admit": true},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooms_get_the_session_kind_their_size_calls_for() {
        let couple = session_body(0, 3, 30, 60);
        assert_eq!(couple["kind"], "couple");
        assert_eq!(couple["clinician"]["id"], "lt-30");
        let roles: Vec<&str> = couple["participants"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["role"].as_str().unwrap())
            .collect();
        assert_eq!(roles, ["patient", "partner"]);
        assert_eq!(session_body(0, 2, 0, 60)["kind"], "individual");
        let group = session_body(1, 7, 0, 60);
        assert_eq!(group["kind"], "group");
        assert_eq!(group["participants"].as_array().unwrap().len(), 6);
        assert_eq!(group["participants"][1]["household"], "h1");
        assert_eq!(group["settings"]["auto_admit"], true);
    }

    #[test]
    fn participant_ids_carry_their_number() {
        assert_eq!(index_of(&participant_id(4_711)), Some(4_711));
        assert_eq!(index_of("pt-1042"), None);
    }
}
