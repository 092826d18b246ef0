//! Spawns the real `tocsin` binary on loopback with a config written into a temp dir, and talks
//! to it over HTTP.

use std::fs::OpenOptions;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

/// events:write and events:read.
pub const KEY_RW: &str = "it-key-rw-5f1c2d9e8a7b";
/// events:write only.
pub const KEY_W: &str = "it-key-w-0a9b8c7d6e5f";
/// events:read only.
pub const KEY_R: &str = "it-key-r-1b2c3d4e5f60";

pub fn standard_keys() -> String {
    format!(
        r#"
[[api_keys]]
name = "rw"
key = "{KEY_RW}"
scopes = ["events:write", "events:read"]

[[api_keys]]
name = "writer"
key = "{KEY_W}"
scopes = ["events:write"]

[[api_keys]]
name = "reader"
key = "{KEY_R}"
scopes = ["events:read"]
"#
    )
}

/// What a test configures; the harness adds `[server] listen` and `[store]`.
#[derive(Clone)]
pub struct Options {
    /// Extra lines inside `[server]`.
    pub server_extra: String,
    pub log_format: &'static str,
    pub log_level: &'static str,
    /// `[[api_keys]]` tables.
    pub keys: String,
    /// Everything else: `[delivery]`, `[notifiers.*]`, `[[routes]]`, ...
    pub body: String,
    pub env: Vec<(String, String)>,
    /// A whole file used as is, except that `127.0.0.1:9750` becomes the test's port.
    pub raw: Option<String>,
}

impl Options {
    pub fn new(body: impl Into<String>) -> Options {
        Options {
            server_extra: String::new(),
            log_format: "text",
            log_level: "debug",
            keys: standard_keys(),
            body: body.into(),
            env: Vec::new(),
            raw: None,
        }
    }
}

/// A `[delivery]` table with short backoffs for tests.
pub fn fast_delivery(max_attempts: u32) -> String {
    format!(
        "[delivery]\nmax_attempts = {max_attempts}\nbackoff_initial = \"100ms\"\nbackoff_max = \"500ms\"\ntimeout = \"2s\"\n"
    )
}

pub fn slack_notifier(name: &str, url: &str) -> String {
    format!("[notifiers.{name}]\ntype = \"slack_webhook\"\nurl = \"{url}\"\n")
}

pub fn route(notifier: &str, extra: &str) -> String {
    format!("[[routes]]\nnotifier = \"{notifier}\"\n{extra}\n")
}

pub struct Daemon {
    pub dir: TempDir,
    pub opts: Options,
    pub port: u16,
    child: Option<Child>,
    pub http: reqwest::Client,
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

impl Daemon {
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("tocsin.toml")
    }
    pub fn stdout_path(&self) -> PathBuf {
        self.dir.path().join("stdout.log")
    }
    pub fn stderr_path(&self) -> PathBuf {
        self.dir.path().join("stderr.log")
    }
    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("tocsin.db")
    }

    pub fn render_config(&self, opts: &Options) -> String {
        if let Some(raw) = &opts.raw {
            return raw.replace("127.0.0.1:9750", &format!("127.0.0.1:{}", self.port));
        }
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n{server_extra}\n\n[store]\nurl = \"sqlite://{db}\"\n\n[log]\nformat = \"{fmt}\"\nlevel = \"{level}\"\n\n{keys}\n{body}\n",
            port = self.port,
            server_extra = opts.server_extra,
            db = self.db_path().display(),
            fmt = opts.log_format,
            level = opts.log_level,
            keys = opts.keys,
            body = opts.body,
        )
    }

    pub fn write_config(&self, opts: &Options) {
        std::fs::write(self.config_path(), self.render_config(opts)).expect("write config");
    }

    /// Starts a daemon in a fresh temp dir and waits until `/readyz` answers 200.
    pub async fn start(opts: Options) -> Daemon {
        let dir = tempfile::Builder::new().prefix("tocsin-it-").tempdir().expect("temp dir");
        let mut daemon = Daemon {
            dir,
            opts,
            port: 0,
            child: None,
            http: reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("client"),
        };
        daemon.launch().await;
        daemon
    }

    /// (Re)starts the process on the same temp dir and DB; picks a new port if needed.
    pub async fn launch(&mut self) {
        assert!(self.child.is_none(), "already running");
        for _ in 0..5 {
            if self.port == 0 || TcpListener::bind(("127.0.0.1", self.port)).is_err() {
                self.port = free_port();
            }
            let opts = self.opts.clone();
            self.write_config(&opts);
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_tocsin"));
            cmd.arg("serve")
                .arg("--config")
                .arg(self.config_path())
                .current_dir(self.dir.path())
                .env_remove("RUST_LOG")
                .env_remove("TOCSIN_CONFIG")
                .stdin(Stdio::null())
                .stdout(append(&self.stdout_path()))
                .stderr(append(&self.stderr_path()));
            for (k, v) in &self.opts.env {
                cmd.env(k, v);
            }
            let child = cmd.spawn().expect("spawn tocsin");
            self.child = Some(child);
            if self.wait_ready(Duration::from_secs(15)).await {
                return;
            }
            let exited = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()).is_some();
            if !exited {
                self.kill();
                panic!("tocsin did not become ready in 15 s; the end of stderr:\n{}", self.stderr_tail());
            }
            self.child = None;
            if !self.stderr().contains("cannot listen") {
                panic!("tocsin exited at start; the end of stderr:\n{}", self.stderr_tail());
            }
            self.port = 0;
        }
        panic!("could not start tocsin on a free port; the end of stderr:\n{}", self.stderr_tail());
    }

    async fn wait_ready(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if child.try_wait().ok().flatten().is_some() {
                    return false;
                }
            }
            if let Ok(r) = self.http.get(self.url("/readyz")).timeout(Duration::from_millis(500)).send().await {
                if r.status().as_u16() == 200 {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        false
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn signal(&self, sig: &str) {
        let status =
            Command::new("kill").arg(format!("-{sig}")).arg(self.pid().to_string()).status().expect("run kill");
        assert!(status.success(), "kill -{sig} failed");
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            if child.try_wait().ok().flatten().is_none() {
                let _ = Command::new("kill").arg("-KILL").arg(child.id().to_string()).status();
            }
            let _ = child.wait();
        }
    }

    /// Waits for the process to exit (after a signal); `None` on timeout.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let child = self.child.as_mut().expect("running");
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM and wait for the exit.
    pub async fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        self.signal("TERM");
        match self.wait_exit(timeout).await {
            Some(status) => status,
            None => {
                self.kill();
                panic!("tocsin did not exit within {timeout:?} of SIGTERM; the end of stderr:\n{}", self.stderr_tail());
            }
        }
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.stdout_path()).unwrap_or_default()
    }
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.stderr_path()).unwrap_or_default()
    }

    /// The last lines of stderr, without the SQL statements the debug level logs: what a
    /// failure message needs (CI keeps only the start and end of a long one).
    pub fn stderr_tail(&self) -> String {
        let all = self.stderr();
        let lines: Vec<&str> = all.lines().filter(|l| !l.contains("sqlx::query")).collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    pub async fn post_raw(&self, key: Option<&str>, body: impl Into<reqwest::Body>) -> (u16, Value, String) {
        let mut req = self.http.post(self.url("/api/v1/events")).header("content-type", "application/json").body(body);
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        let r = req.send().await.expect("POST /api/v1/events");
        read(r).await
    }

    pub async fn post(&self, key: &str, body: &Value) -> (u16, Value) {
        let (status, json, _) = self.post_raw(Some(key), body.to_string()).await;
        (status, json)
    }

    /// Posts and asserts 202.
    pub async fn accept(&self, body: &Value) -> Value {
        let (status, json) = self.post(KEY_RW, body).await;
        assert_eq!(status, 202, "POST {body} → {json}");
        json
    }

    pub async fn get(&self, key: Option<&str>, path_and_query: &str) -> (u16, Value, String) {
        let mut req = self.http.get(self.url(path_and_query));
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        let r = req.send().await.unwrap_or_else(|e| panic!("GET {path_and_query}: {e}"));
        read(r).await
    }

    pub async fn metrics(&self) -> String {
        self.get(None, "/metrics").await.2
    }

    /// The value of one metric line, by its full name with labels as printed.
    pub async fn metric(&self, name_and_labels: &str) -> Option<f64> {
        metric_value(&self.metrics().await, name_and_labels)
    }
}

pub fn metric_value(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name_and_labels)?;
        let rest = rest.strip_prefix(' ')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

async fn read(r: reqwest::Response) -> (u16, Value, String) {
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, json, text)
}

fn append(path: &Path) -> Stdio {
    Stdio::from(OpenOptions::new().create(true).append(true).open(path).expect("open log file"))
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
        // For debugging a test: `IT_KEEP_LOGS=DIR cargo test --test it` copies each daemon's
        // config and logs there.
        if let Some(keep) = std::env::var_os("IT_KEEP_LOGS") {
            let name = self.dir.path().file_name().map(|n| n.to_os_string()).unwrap_or_default();
            let target = Path::new(&keep).join(name);
            if std::fs::create_dir_all(&target).is_ok() {
                for file in ["tocsin.toml", "stdout.log", "stderr.log"] {
                    let _ = std::fs::copy(self.dir.path().join(file), target.join(file));
                }
            }
        }
    }
}

/// Polls `f` until it returns true or the timeout passes.
pub async fn eventually<F, Fut>(timeout: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if f().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `text` fallback of each Slack message.
pub fn texts(messages: &[Value]) -> Vec<String> {
    messages.iter().map(|m| m["text"].as_str().unwrap_or_default().to_string()).collect()
}

/// An event whose sequence number is visible both as a field (`*seq*\nN` in a message of its
/// own) and in its title (`KIND #N`, the `• title` line of a folded backlog summary).
pub fn seq_event(kind: &str, seq: u64) -> Value {
    serde_json::json!({"kind": kind, "title": format!("{kind} #{seq}"), "fields": {"seq": seq.to_string()}})
}

/// A `[delivery.rate_limits]` table that turns pacing off for these notifiers: for tests whose
/// subject is not pacing and that send more, faster, than Slack's 1 message/second.
pub fn unpaced(notifiers: &[&str]) -> String {
    let mut table = String::from("[delivery.rate_limits]\n");
    for n in notifiers {
        table.push_str(&format!("{n} = {{ per_second = 0 }}\n"));
    }
    table
}

/// The header of a backlog folded to respect a destination's rate limit.
const FOLDED: &str = "notifications folded to respect the rate limit";

/// The `• title: text` lines of a backlog summary, in order; `None` for any other message.
/// Panics when the summary leaves items unlisted ("and N more"): their order cannot be checked.
pub fn folded_items(message: &Value) -> Option<Vec<String>> {
    let text = message["text"].as_str()?;
    if !text.lines().next().is_some_and(|l| l.contains(FOLDED)) {
        return None;
    }
    if let Some(more) = text.lines().find(|l| l.starts_with("and ") && l.ends_with(" more")) {
        panic!("a folded summary leaves items unlisted ({more}); use fewer messages or unpaced(): {text}");
    }
    Some(text.lines().filter_map(|l| l.strip_prefix("• ")).map(str::to_string).collect())
}

/// The sequence numbers one Slack message stands for: its `seq` field, or, for a backlog
/// summary, the `#N` in the title of each listed item (see `seq_event`).
pub fn seqs_in(message: &Value) -> Vec<u64> {
    if let Some(items) = folded_items(message) {
        return items
            .iter()
            .map(|item| {
                let title = item.split(": ").next().unwrap_or(item);
                let n = title.rsplit_once('#').and_then(|(_, n)| n.trim().parse().ok());
                n.unwrap_or_else(|| panic!("no #seq in the folded item {item:?}"))
            })
            .collect();
    }
    vec![seq_of(message).unwrap_or_else(|| panic!("no seq field in {message}"))]
}

/// The sequence numbers of Slack messages in the order a reader sees them: a message's `seq`
/// field, and the listed items of backlog summaries in place.
pub fn seqs(messages: &[Value]) -> Vec<u64> {
    messages.iter().flat_map(seqs_in).collect()
}

/// How many of these messages are backlog summaries.
pub fn folded_count(messages: &[Value]) -> usize {
    messages
        .iter()
        .filter(|m| m["text"].as_str().is_some_and(|t| t.lines().next().is_some_and(|l| l.contains(FOLDED))))
        .count()
}

pub fn seq_of(message: &Value) -> Option<u64> {
    let blocks = message["blocks"].as_array()?;
    for block in blocks {
        if let Some(fields) = block["fields"].as_array() {
            for f in fields {
                let text = f["text"].as_str().unwrap_or_default();
                if let Some(rest) = text.strip_prefix("*seq*\n") {
                    return rest.trim().parse().ok();
                }
            }
        }
    }
    None
}

/// Every `text` inside the Block Kit blocks, joined: what a reader sees.
pub fn block_text(message: &Value) -> String {
    let mut out = Vec::new();
    collect_text(&message["blocks"], &mut out);
    out.join("\n")
}

fn collect_text(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, val) in map {
                if k == "text" {
                    if let Some(s) = val.as_str() {
                        out.push(s.to_string());
                        continue;
                    }
                }
                collect_text(val, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_text(i, out)),
        _ => {}
    }
}

impl Daemon {
    /// Polls `GET /api/v1/deliveries/dead` (with `key`) until it lists at least `count`
    /// entries; returns the last body's text and entries.
    pub async fn dead_letters_until(&self, key: &str, count: usize, timeout: Duration) -> (String, Vec<Value>) {
        let deadline = Instant::now() + timeout;
        loop {
            let (_, body, text) = self.get(Some(key), "/api/v1/deliveries/dead").await;
            let entries = body["dead_letters"].as_array().cloned().unwrap_or_default();
            if entries.len() >= count || Instant::now() > deadline {
                return (text, entries);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
