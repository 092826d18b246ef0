//! End-to-end tests: the real `tocsin` binary over HTTP on loopback, with fake Slack and
//! webhook receivers (`tocsin::testkit`).

mod harness;

mod auth;
mod bad_input;
mod cli;
mod delivery;
mod reload;
mod routing;
mod search;
mod secrets;
mod shutdown;
mod webhook;
