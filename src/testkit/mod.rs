//! Test support: faithful fakes of the services tocsin talks to, served on loopback.
//! Used by the integration tests and the load generator; never by the daemon itself.

pub mod fake_chat;
pub mod fake_es;
pub mod fake_receiver;
pub mod fake_slack;
pub mod fake_slack_api;
pub mod fake_smtp;
pub mod http;
