//! The messages of Janus's WebSocket API (`janus-protocol` subprotocol) that
//! the generator needs to play a VideoRoom participant: plain functions that
//! build requests and read replies, so the peer SFU is driven with exactly
//! the room shapes, payloads and stamps of the Tandem target
//! (docs/benchmarks.md, "Tandem, Janus and the relay side by side").
//!
//! Every request carries a transaction; Janus answers a request on a session
//! or handle with `success` (or `error`) at once, and a plugin request with
//! an `ack` followed later by an `event` of the same transaction. Events that
//! no request asked for (new publishers in the room, `webrtcup`, `media`,
//! `hangup`) carry no transaction. Nothing here touches a socket.

use serde_json::{json, Value};

/// The VideoRoom plugin's name, as `attach` wants it.
pub const VIDEOROOM: &str = "janus.plugin.videoroom";

/// The WebSocket subprotocol Janus speaks its API on.
pub const SUBPROTOCOL: &str = "janus-protocol";

/// A VideoRoom room's shape: everyone publishes Opus audio and VP8 video,
/// as the Tandem target does.
pub fn create_room(
    transaction: &str,
    session: u64,
    handle: u64,
    room: u64,
    publishers: usize,
) -> Value {
    message(
        transaction,
        session,
        handle,
        json!({
            "request": "create",
            "room": room,
            "permanent": false,
            "publishers": publishers,
            "audiocodec": "opus",
            "videocodec": "vp8",
            // No cap from the server: the generator sends a fixed bitrate.
            "bitrate": 0,
            "notify_joining": false,
        }),
        None,
    )
}

pub fn create_session(transaction: &str) -> Value {
    json!({"janus": "create", "transaction": transaction})
}

pub fn attach(transaction: &str, session: u64) -> Value {
    json!({
        "janus": "attach",
        "session_id": session,
        "plugin": VIDEOROOM,
        "transaction": transaction,
    })
}

/// Keeps a session alive (Janus ends sessions silent for 60 s by default).
pub fn keepalive(transaction: &str, session: u64) -> Value {
    json!({"janus": "keepalive", "session_id": session, "transaction": transaction})
}

/// Joins `room` as publisher `feed`, named by the participant's roster id.
pub fn join_publisher(
    transaction: &str,
    session: u64,
    handle: u64,
    room: u64,
    feed: u64,
    display: &str,
) -> Value {
    message(
        transaction,
        session,
        handle,
        json!({
            "request": "join",
            "ptype": "publisher",
            "room": room,
            "id": feed,
            "display": display,
        }),
        None,
    )
}

/// Publishes: the offer with the participant's audio and video tracks.
pub fn configure(transaction: &str, session: u64, handle: u64, offer_sdp: &str) -> Value {
    message(
        transaction,
        session,
        handle,
        json!({"request": "configure", "audio": true, "video": true}),
        Some(jsep("offer", offer_sdp)),
    )
}

/// Subscribes to every stream of `feeds` on a new subscriber handle; Janus
/// answers with an offer.
pub fn join_subscriber(
    transaction: &str,
    session: u64,
    handle: u64,
    room: u64,
    private_id: Option<u64>,
    feeds: &[u64],
) -> Value {
    let mut body = json!({
        "request": "join",
        "ptype": "subscriber",
        "room": room,
        "streams": streams(feeds),
    });
    if let Some(private_id) = private_id {
        body["private_id"] = json!(private_id);
    }
    message(transaction, session, handle, body, None)
}

/// Adds `feeds` to an existing subscription; Janus answers with a new offer.
pub fn subscribe(transaction: &str, session: u64, handle: u64, feeds: &[u64]) -> Value {
    message(
        transaction,
        session,
        handle,
        json!({"request": "subscribe", "streams": streams(feeds)}),
        None,
    )
}

/// The subscriber's answer to Janus's offer.
pub fn start(transaction: &str, session: u64, handle: u64, answer_sdp: &str) -> Value {
    message(
        transaction,
        session,
        handle,
        json!({"request": "start"}),
        Some(jsep("answer", answer_sdp)),
    )
}

fn streams(feeds: &[u64]) -> Value {
    feeds.iter().map(|feed| json!({"feed": feed})).collect()
}

/// The candidates ride in the SDP (str0m puts its host candidate there), so
/// Janus is told not to wait for trickled ones.
fn jsep(kind: &str, sdp: &str) -> Value {
    json!({"type": kind, "sdp": sdp, "trickle": false})
}

fn message(
    transaction: &str,
    session: u64,
    handle: u64,
    body: Value,
    jsep: Option<Value>,
) -> Value {
    let mut message = json!({
        "janus": "message",
        "session_id": session,
        "handle_id": handle,
        "transaction": transaction,
        "body": body,
    });
    if let Some(jsep) = jsep {
        message["jsep"] = jsep;
    }
    message
}

/// One message from Janus, as far as the generator cares.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// A session or handle request succeeded: the new id, if it made one,
    /// and the plugin's synchronous answer, if any.
    Success {
        transaction: String,
        id: Option<u64>,
        plugin: Option<Room>,
    },
    /// A plugin request was taken; its `event` follows.
    Ack {
        transaction: String,
    },
    /// An event from the VideoRoom plugin on handle `sender`, with Janus's
    /// SDP if it carries one.
    Event {
        transaction: Option<String>,
        sender: u64,
        room: Room,
        jsep: Option<Jsep>,
    },
    /// The PeerConnection of `sender` came up (`webrtcup`) or went down
    /// (`hangup`).
    WebrtcUp {
        sender: u64,
    },
    Hangup {
        sender: u64,
        reason: String,
    },
    /// Janus refused a request.
    Error {
        transaction: Option<String>,
        code: i64,
        reason: String,
    },
    /// Anything else (`media`, `slowlink`, keepalive acks without a
    /// transaction the caller tracks, ...).
    Other,
}

/// Janus's SDP in an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jsep {
    pub offer: bool,
    pub sdp: String,
}

/// What the VideoRoom plugin said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Room {
    Created,
    /// Joined as a publisher: its private id and the publishers already in.
    Joined {
        private_id: Option<u64>,
        publishers: Vec<Publisher>,
    },
    /// Publishers that (newly) publish in the room.
    Publishers(Vec<Publisher>),
    /// A subscription was made or changed (its offer is in the event).
    Attached,
    Updated,
    /// Our own request went through (`configured`, `started`, `leaving`).
    Ok,
    /// The plugin refused a request.
    Error {
        code: i64,
        reason: String,
    },
    Other,
}

/// A publisher in a room, as Janus lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publisher {
    pub feed: u64,
    pub display: Option<String>,
}

/// Reads one message; an error for text that is not a Janus message.
pub fn parse(text: &str) -> Result<Reply, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let kind = v["janus"].as_str().ok_or("no `janus` field")?;
    let transaction = v["transaction"].as_str().map(str::to_string);
    let sender = v["sender"].as_u64().unwrap_or_default();
    Ok(match kind {
        "success" => Reply::Success {
            transaction: transaction.ok_or("a success without a transaction")?,
            id: v["data"]["id"].as_u64(),
            plugin: v["plugindata"].get("data").map(room_event),
        },
        "ack" => match transaction {
            Some(transaction) => Reply::Ack { transaction },
            None => Reply::Other,
        },
        "event" => Reply::Event {
            transaction,
            sender,
            room: room_event(&v["plugindata"]["data"]),
            jsep: v.get("jsep").and_then(|j| {
                Some(Jsep {
                    offer: j["type"].as_str()? == "offer",
                    sdp: j["sdp"].as_str()?.to_string(),
                })
            }),
        },
        "webrtcup" => Reply::WebrtcUp { sender },
        "hangup" => Reply::Hangup {
            sender,
            reason: v["reason"].as_str().unwrap_or_default().to_string(),
        },
        "error" => Reply::Error {
            transaction,
            code: v["error"]["code"].as_i64().unwrap_or_default(),
            reason: v["error"]["reason"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        },
        _ => Reply::Other,
    })
}

fn room_event(data: &Value) -> Room {
    if let Some(code) = data["error_code"].as_i64() {
        return Room::Error {
            code,
            reason: data["error"].as_str().unwrap_or_default().to_string(),
        };
    }
    let publishers = || -> Vec<Publisher> {
        data["publishers"]
            .as_array()
            .map(|list| {
                list.iter()
                    .filter_map(|p| {
                        Some(Publisher {
                            feed: p["id"].as_u64()?,
                            display: p["display"].as_str().map(str::to_string),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    match data["videoroom"].as_str().unwrap_or_default() {
        "created" => Room::Created,
        "joined" => Room::Joined {
            private_id: data["private_id"].as_u64(),
            publishers: publishers(),
        },
        "attached" => Room::Attached,
        "updated" => Room::Updated,
        "event" if data.get("publishers").is_some() => Room::Publishers(publishers()),
        "event"
            if data.get("configured").is_some()
                || data.get("started").is_some()
                || data.get("leaving").is_some()
                || data.get("unpublished").is_some() =>
        {
            Room::Ok
        }
        _ => Room::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_carry_the_session_handle_and_transaction() {
        let join = join_publisher("t3", 11, 22, 1_000, 5, "lt-4");
        assert_eq!(join["janus"], "message");
        assert_eq!(join["session_id"], 11);
        assert_eq!(join["handle_id"], 22);
        assert_eq!(join["transaction"], "t3");
        assert_eq!(join["body"]["request"], "join");
        assert_eq!(join["body"]["ptype"], "publisher");
        assert_eq!(join["body"]["room"], 1_000);
        assert_eq!(join["body"]["id"], 5);
        assert_eq!(join["body"]["display"], "lt-4");
        assert!(join.get("jsep").is_none());

        let configure = configure("t4", 11, 22, "v=0\r\n");
        assert_eq!(configure["jsep"]["type"], "offer");
        assert_eq!(configure["jsep"]["sdp"], "v=0\r\n");
        assert_eq!(configure["jsep"]["trickle"], false);

        let start = start("t5", 11, 23, "v=0\r\n");
        assert_eq!(start["body"]["request"], "start");
        assert_eq!(start["jsep"]["type"], "answer");

        let sub = join_subscriber("t6", 11, 23, 1_000, Some(77), &[2, 3]);
        assert_eq!(sub["body"]["ptype"], "subscriber");
        assert_eq!(sub["body"]["private_id"], 77);
        assert_eq!(sub["body"]["streams"], json!([{"feed": 2}, {"feed": 3}]));
        assert_eq!(
            subscribe("t7", 11, 23, &[4])["body"],
            json!({"request": "subscribe", "streams": [{"feed": 4}]})
        );

        let room = create_room("t2", 11, 22, 1_000, 9);
        assert_eq!(room["body"]["publishers"], 9);
        assert_eq!(room["body"]["videocodec"], "vp8");
        assert_eq!(attach("t1", 11)["plugin"], VIDEOROOM);
        assert_eq!(keepalive("k", 11)["janus"], "keepalive");
        assert_eq!(create_session("t0")["janus"], "create");
    }

    #[test]
    fn a_session_and_a_handle_come_back_as_success_with_their_ids() {
        let reply = parse(r#"{"janus":"success","transaction":"t0","data":{"id":4242}}"#).unwrap();
        assert_eq!(
            reply,
            Reply::Success {
                transaction: "t0".into(),
                id: Some(4242),
                plugin: None
            }
        );
        let created = parse(
            r#"{"janus":"success","session_id":1,"transaction":"t2","sender":2,
                "plugindata":{"plugin":"janus.plugin.videoroom","data":{"videoroom":"created","room":1000,"permanent":false}}}"#,
        )
        .unwrap();
        assert_eq!(
            created,
            Reply::Success {
                transaction: "t2".into(),
                id: None,
                plugin: Some(Room::Created)
            }
        );
    }

    #[test]
    fn joined_lists_the_publishers_already_in_the_room() {
        let reply = parse(
            r#"{"janus":"event","session_id":1,"transaction":"t3","sender":2,
                "plugindata":{"plugin":"janus.plugin.videoroom","data":{
                  "videoroom":"joined","room":1000,"id":5,"private_id":99,
                  "publishers":[{"id":3,"display":"lt-2","streams":[]},{"id":4,"display":"lt-3"}]}}}"#,
        )
        .unwrap();
        let Reply::Event {
            transaction,
            sender,
            room,
            jsep,
        } = reply
        else {
            panic!("an event")
        };
        assert_eq!(
            (transaction.as_deref(), sender, jsep),
            (Some("t3"), 2, None)
        );
        assert_eq!(
            room,
            Room::Joined {
                private_id: Some(99),
                publishers: vec![
                    Publisher {
                        feed: 3,
                        display: Some("lt-2".into())
                    },
                    Publisher {
                        feed: 4,
                        display: Some("lt-3".into())
                    },
                ]
            }
        );
    }

    #[test]
    fn offers_answers_and_new_publishers_are_read_from_events() {
        let answer = parse(
            r#"{"janus":"event","transaction":"t4","sender":2,
                "plugindata":{"plugin":"janus.plugin.videoroom","data":{"videoroom":"event","room":1000,"configured":"ok"}},
                "jsep":{"type":"answer","sdp":"v=0"}}"#,
        )
        .unwrap();
        let Reply::Event { room, jsep, .. } = answer else {
            panic!("an event")
        };
        assert_eq!(room, Room::Ok);
        assert_eq!(
            jsep,
            Some(Jsep {
                offer: false,
                sdp: "v=0".into()
            })
        );

        let attached = parse(
            r#"{"janus":"event","transaction":"t6","sender":3,
                "plugindata":{"plugin":"janus.plugin.videoroom","data":{"videoroom":"attached","room":1000,"streams":[]}},
                "jsep":{"type":"offer","sdp":"v=0"}}"#,
        )
        .unwrap();
        let Reply::Event { room, jsep, .. } = attached else {
            panic!("an event")
        };
        assert_eq!(room, Room::Attached);
        assert!(jsep.unwrap().offer);

        let newcomer = parse(
            r#"{"janus":"event","sender":2,
                "plugindata":{"plugin":"janus.plugin.videoroom","data":{"videoroom":"event","room":1000,
                  "publishers":[{"id":6,"display":"lt-5"}]}}}"#,
        )
        .unwrap();
        let Reply::Event {
            transaction, room, ..
        } = newcomer
        else {
            panic!("an event")
        };
        assert_eq!(transaction, None);
        assert_eq!(
            room,
            Room::Publishers(vec![Publisher {
                feed: 6,
                display: Some("lt-5".into())
            }])
        );
    }

    #[test]
    fn refusals_keep_their_code_and_reason() {
        let plugin = parse(
            r#"{"janus":"event","transaction":"t3","sender":2,
                "plugindata":{"plugin":"janus.plugin.videoroom","data":{"videoroom":"event","error_code":426,"error":"No such room (1000)"}}}"#,
        )
        .unwrap();
        let Reply::Event { room, .. } = plugin else {
            panic!("an event")
        };
        assert_eq!(
            room,
            Room::Error {
                code: 426,
                reason: "No such room (1000)".into()
            }
        );

        let core = parse(
            r#"{"janus":"error","transaction":"t1","error":{"code":458,"reason":"No such session 1"}}"#,
        )
        .unwrap();
        assert_eq!(
            core,
            Reply::Error {
                transaction: Some("t1".into()),
                code: 458,
                reason: "No such session 1".into()
            }
        );
    }

    #[test]
    fn core_events_and_garbage() {
        assert_eq!(
            parse(r#"{"janus":"webrtcup","session_id":1,"sender":2}"#).unwrap(),
            Reply::WebrtcUp { sender: 2 }
        );
        assert_eq!(
            parse(r#"{"janus":"hangup","sender":2,"reason":"DTLS alert"}"#).unwrap(),
            Reply::Hangup {
                sender: 2,
                reason: "DTLS alert".into()
            }
        );
        assert_eq!(
            parse(r#"{"janus":"media","sender":2,"type":"video","receiving":true}"#).unwrap(),
            Reply::Other
        );
        assert!(parse("not json").is_err());
        assert!(parse(r#"{"no":"janus"}"#).is_err());
    }
}
