#!/usr/bin/env bash
# The project's one test command (README, CI): formatting, then every unit and end-to-end test.
# It needs only the Rust toolchain; everything else the tests use (SQLite, fake Slack, fake
# Elasticsearch) is built in or started by the tests themselves on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo build --locked --all-targets
cargo test --locked --all-targets -- --test-threads "${TOCSIN_TEST_THREADS:-4}"
