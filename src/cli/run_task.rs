//! `tocsin run-task NAME -- COMMAND [ARGS…]`: runs a scheduled task and reports it as heartbeat
//! NAME to a running daemon — a start ping, then success or failure with the exit code and
//! the tail of the output. Exits with the command's exit code; a daemon that cannot be reached
//! is reported on stderr but never stops the task from running.

use std::process::{ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::io::Write;

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::source::heartbeat::MAX_TAIL_BYTES;

#[derive(Debug, clap::Args)]
pub struct RunTaskArgs {
    /// The heartbeat's name (a [[heartbeats]] entry of the daemon)
    pub name: String,
    /// The configuration file, read for [client] url and key [default: $TOCSIN_CONFIG, then ./tocsin.toml]
    #[arg(long, short = 'c')]
    pub config: Option<std::path::PathBuf>,
    /// The daemon's base URL [default: [client] url, then http://<server.listen>]
    #[arg(long, env = "TOCSIN_URL")]
    pub url: Option<String>,
    /// An API key with the scope heartbeats:write [default: [client] key]
    #[arg(long, env = "TOCSIN_KEY", hide_env_values = true)]
    pub key: Option<String>,
    /// The command and its arguments, after `--`
    #[arg(last = true, required = true, num_args = 1..)]
    pub command: Vec<String>,
}

/// The last bytes written by the command, stdout and stderr interleaved.
#[derive(Default, Clone)]
struct Tail(Arc<Mutex<Vec<u8>>>);

impl Tail {
    fn push(&self, bytes: &[u8]) {
        let mut buf = self.0.lock().unwrap_or_else(|e| e.into_inner());
        buf.extend_from_slice(bytes);
        if buf.len() > 2 * MAX_TAIL_BYTES {
            let cut = buf.len() - MAX_TAIL_BYTES;
            buf.drain(..cut);
        }
    }

    fn text(&self) -> String {
        let buf = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let text = String::from_utf8_lossy(&buf).into_owned();
        crate::source::heartbeat::tail(&text).to_string()
    }
}

/// Copies the command's output through to ours (stderr when `to_stderr`), keeping its tail.
async fn copy(mut from: impl AsyncRead + Unpin, to_stderr: bool, tail: Tail) {
    let mut buf = [0u8; 8192];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                tail.push(&buf[..n]);
                // Small writes to our own stdout/stderr: blocking briefly is fine here.
                if to_stderr {
                    let mut e = std::io::stderr().lock();
                    let _ = e.write_all(&buf[..n]);
                    let _ = e.flush();
                } else {
                    let mut o = std::io::stdout().lock();
                    let _ = o.write_all(&buf[..n]);
                    let _ = o.flush();
                }
            }
        }
    }
}

struct Reporter {
    client: reqwest::Client,
    base: String,
    key: String,
    name: String,
}

impl Reporter {
    async fn ping(&self, suffix: &str, body: String) {
        let name = percent_encoding::utf8_percent_encode(&self.name, percent_encoding::NON_ALPHANUMERIC).to_string();
        let url = format!("{}/api/v1/heartbeats/{name}{suffix}", self.base.trim_end_matches('/'));
        let result = self
            .client
            .post(&url)
            .bearer_auth(&self.key)
            .header("content-type", "text/plain; charset=utf-8")
            .body(body)
            .send()
            .await;
        match result {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => {
                let status = r.status();
                let text = r.text().await.unwrap_or_default();
                eprintln!("tocsin run-task: the daemon refused the ping ({status}): {text}");
            }
            Err(e) => eprintln!("tocsin run-task: cannot reach the daemon at {}: {e}", self.base),
        }
    }
}

fn reporter(args: &RunTaskArgs) -> Result<Reporter, String> {
    let path = args
        .config
        .clone()
        .or_else(|| std::env::var_os("TOCSIN_CONFIG").map(Into::into))
        .unwrap_or_else(|| "tocsin.toml".into());
    // The file is needed only for what the flags and environment do not give.
    let config = if args.url.is_some() && args.key.is_some() {
        None
    } else {
        Some(crate::config::load(&path).map_err(|e| format!("cannot read {}:\n{e}", path.display()))?)
    };
    let base = args
        .url
        .clone()
        .or_else(|| config.as_ref().and_then(|c| c.client.url.clone()))
        .or_else(|| config.as_ref().map(|c| format!("http://{}", c.server.listen)))
        .ok_or("no daemon URL: pass --url, set TOCSIN_URL, or set [client] url")?;
    let key = args
        .key
        .clone()
        .or_else(|| config.as_ref().and_then(|c| c.client.key.as_ref().map(|k| k.expose().to_string())))
        .ok_or("no API key: pass --key, set TOCSIN_KEY, or set [client] key")?;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().map_err(|e| e.to_string())?;
    Ok(Reporter { client, base, key, name: args.name.clone() })
}

pub async fn run(args: RunTaskArgs) -> ExitCode {
    let reporter = match reporter(&args) {
        Ok(r) => Some(r),
        Err(e) => {
            eprintln!("tocsin run-task: {e}; running the task without reporting it");
            None
        }
    };
    if let Some(r) = &reporter {
        r.ping("/start", String::new()).await;
    }
    let started = std::time::Instant::now();
    let (program, rest) = args.command.split_first().expect("clap requires a command");
    let child = tokio::process::Command::new(program)
        .args(rest)
        .stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            let message = format!("cannot start {program:?}: {e}");
            eprintln!("tocsin run-task: {message}");
            if let Some(r) = &reporter {
                r.ping("/fail?exit_code=127", message).await;
            }
            return ExitCode::from(127);
        }
    };
    let tail = Tail::default();
    let out = tokio::spawn(copy(child.stdout.take().expect("piped"), false, tail.clone()));
    let err = tokio::spawn(copy(child.stderr.take().expect("piped"), true, tail.clone()));
    let status = child.wait().await;
    let _ = out.await;
    let _ = err.await;
    let code = match status {
        Ok(s) => s.code().unwrap_or_else(|| {
            #[cfg(unix)]
            {
                use std::os::unix::process::ExitStatusExt;
                128 + s.signal().unwrap_or(0)
            }
            #[cfg(not(unix))]
            {
                1
            }
        }),
        Err(e) => {
            eprintln!("tocsin run-task: lost the command: {e}");
            1
        }
    };
    if let Some(r) = &reporter {
        let output = tail.text();
        if code == 0 {
            r.ping("", output).await;
        } else {
            let took = humantime::format_duration(Duration::from_secs(started.elapsed().as_secs()));
            r.ping(&format!("/fail?exit_code={code}"), format!("exit code {code} after {took}\n{output}")).await;
        }
    }
    ExitCode::from(code.clamp(0, 255) as u8)
}
