//! Tandem: a self-hosted server for secure joint and group video therapy
//! sessions in virtual Intensive Outpatient Programs.
//!
//! This page is the map. docs/architecture.md tells the same story at more
//! length; docs/protocol.md, docs/api.md and docs/compliance.md are the
//! contracts with clients, integrators and auditors.
//!
//! # Modules
//!
//! Folders are named after the clinic's domain. Pure rules (no I/O, time
//! passed in) are kept apart from the code that does I/O, so the rules a
//! clinic cares about are tested without sockets or clocks.
//!
//! | module | what it is |
//! | --- | --- |
//! | [`cluster`] | several nodes on PostgreSQL, the rules: node liveness, room leases and fencing, placement, draining (pure; used by anyone, uses nothing) |
//! | [`config`] | one `Config` from a TOML file and `TANDEM_*` variables, checked at start |
//! | [`tls`] | rustls (TLS 1.2 and 1.3 only), certificate reload, development certificates |
//! | [`auth`] | invite links, staff tokens, API keys and their roles |
//! | [`console`] | the staff console's rules: accounts, passwords, TOTP, sign-in throttle, session expiry |
//! | [`store`] | the database (SQLite, migrations) and its rows: sessions, rosters, ledger events |
//! | [`schedule`] | the clinic's requests become sessions and signed links (REST and CLI alike) |
//! | [`attendance`] | the hash-chained ledger, presence arithmetic, reports, exports, verify |
//! | [`room`] | pure policy of a live session: admission, waiting room, clinician controls |
//! | [`sfu`] | media: shards on str0m that route, negotiate and forward |
//! | [`live`] | one task per live session: runs its `room`, records to the ledger, drives the `sfu` |
//! | `nodes` | a cluster node at work (PostgreSQL): heartbeats, where a join goes (claiming a room's lease, or a redirect), renewing leases, the room command table |
//! | [`signal`] | one signaling WebSocket, from `join` to close |
//! | `webhooks` | signed webhook delivery from the durable outbox (its events are written by `store`), endpoint rules, retries |
//! | [`http`] | the REST API, the signaling upgrade, the browser client, the staff console, health |
//! | [`node`] | this node: its id (kept in the data directory), its URL, its state in a cluster |
//! | [`server`] | starts and stops everything above |
//! | [`metrics`] | the Prometheus names, their HELP text, the recorder (used by anyone, uses nothing) |
//! | `cli` | the `tandem` command |
//!
//! The wire protocol (messages, roles, denial and error codes) is the
//! `tandem-protocol` crate, shared with the load generator (`tandem-load`,
//! crates/loadgen), which is not linked into this server.
//!
//! # Dependencies run one way
//!
//! ```text
//! protocol ← auth ← console ← store ← schedule ← attendance ← room ← live ← nodes ← signal ← http ← server ← cli
//!                                                                     ↖ sfu (protocol and config only)
//!                                         attendance ← webhooks ← http
//! ```
//!
//! A module uses only modules to its left (and `config`, `tls` and
//! `private_file`, which use nothing of the domain, and `cluster`, whose pure rules use nothing). The `sfu` knows rooms
//! only as ids and connections only as numbers; `live` is what joins the
//! room's decisions to media. The store owns its row types and never
//! imports the domain above it. A unit test (`layers`) reads the sources
//! and fails on any reference against this order.
//!
//! # A join, end to end
//!
//! 1. **Link.** A scheduler creates a session (`schedule`); each person on
//!    its roster gets a signed, time-bound invite (`auth::invite`) in the
//!    URL fragment of their link.
//! 2. **Signaling.** The browser opens `wss://HOST/v1/signal` (`http`
//!    upgrades it) and sends `join` with the token (`signal`).
//! 3. **Admission.** The token's signature, window, roster entry, removal
//!    and revocation are judged at this instant (`room::admission`);
//!    failures are counted per address (`room::rate_limit`).
//! 4. **Room.** The person enters their session's live room (`live`), whose
//!    state machine (`room::state`) puts them in the waiting room or in the
//!    room, and answers every clinician action with effects.
//! 5. **Shard.** Admitted people get peer connections on the room's media
//!    shard (`sfu`), which forwards each publisher's packets to the others.
//! 6. **Ledger.** Every change of presence is appended to the hash-chained
//!    ledger (`attendance::ledger`) before anyone is told about it.
//!
//! # Invariants
//!
//! - **The ledger is written before anyone is told.** A room waits for its
//!   events to be durable before it sends the messages that announce them;
//!   a leave is recorded before its socket closes. What cannot be recorded
//!   does not happen: a request whose events (or, for a removal or an end,
//!   whose roster or session row) cannot be written is refused
//!   (`unavailable`) and the room goes back to how it was; a graceful stop
//!   records everyone's departure before the database closes.
//! - **Time is an input.** `room`, `attendance` and the admission rules take
//!   `now` as an argument and never read a clock, so every rule has tests
//!   with plain values.
//! - **One room lives in one shard.** All of a room's peer connections are
//!   on one shard's thread, so forwarding needs no lock, task or channel hop
//!   per packet.

pub mod attendance;
pub mod auth;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod console;
pub mod http;
#[cfg(test)]
mod layers;
pub mod live;
pub mod metrics;
pub mod node;
pub(crate) mod nodes;
mod private_file;
pub mod room;
pub mod schedule;
pub mod server;
pub mod sfu;
pub mod signal;
pub mod store;
pub mod tls;
mod webhooks;
