//! tocsin: a self-hosted monitoring bot that tells a team, in the chat it already lives in,
//! what it must know about its application — and nothing it doesn't.
//!
//! The crate is one library with a thin binary (`src/main.rs`). See `ARCHITECTURE.md` at the
//! repository root for the bird's-eye view, the path of an event and the invariants.

pub mod alert;
pub mod api;
pub mod app;
pub mod check;
pub mod cli;
pub mod config;
pub mod es;
pub mod event;
pub mod idle;
pub mod ingest;
pub mod message;
pub mod metrics;
pub mod notify;
pub mod pipeline;
pub mod shared;
pub mod silence;
pub mod source;
pub mod store;
pub mod telemetry;
pub mod testkit;
