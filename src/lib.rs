//! Tandem: a self-hosted server for secure joint and group video therapy
//! sessions in virtual Intensive Outpatient Programs.
//!
//! The modules follow the clinic's domain: [`schedule`] (sessions, rosters,
//! invite links), [`auth`] (tokens, keys, roles), [`room`] (who may enter a
//! live session), [`signal`] (the WebSocket protocol), [`sfu`] (media), [`store`] (the database), [`http`] (the REST API and the
//! browser client), [`tls`] (HTTPS only), [`config`], and [`server`], which
//! runs them together. `cli` is the `tandem` command; [`loadtest`] is its
//! load generator.

pub mod attendance;
pub mod auth;
pub mod cli;
pub mod config;
pub mod http;
pub mod loadtest;
mod private_file;
pub mod room;
pub mod schedule;
pub mod server;
pub mod sfu;
pub mod signal;
pub mod store;
pub mod tls;
