//! Tandem's integration tests, in one test binary: the real server over
//! real TLS, real WebRTC peers (webrtc-rs), the real `tandem` binary and
//! headless Chromium, grouped by capability, one module each. `helpers`
//! holds what they share: the server they run against, the signaling
//! client, the one webrtc-rs test peer and the browser environment.
//!
//! One binary because linking is what costs: every test binary links the
//! server, webrtc-rs and their dependencies again. Run a group with
//! `cargo test --test integration media::`.

mod helpers;

mod admission;
mod attendance;
mod browser;
mod cli;
mod cluster;
mod console;
mod console_api;
mod drain;
mod durability;
mod e2ee;
mod group_room;
mod invites;
mod load_test;
mod media;
mod metrics;
mod networks;
mod openapi;
mod postgres;
mod scheduling;
mod series;
mod sessions_api;
mod signaling;
mod simulcast;
mod tls;
mod web_client;
mod web_client_e2ee;
mod web_client_reach;
mod web_client_webkit;
mod webhooks;
