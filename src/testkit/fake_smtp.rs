//! A fake SMTP server on loopback: speaks enough ESMTP for a real client (EHLO, AUTH PLAIN,
//! MAIL FROM, RCPT TO, DATA, RSET, NOOP, QUIT), records every accepted mail and can be told to
//! fail a session the ways real servers do: 451 (try again later) after DATA, 550 (no such
//! user) at RCPT TO, or a connection closed before the greeting. It has no TLS: the email
//! notifier's TLS modes are tested for configuration only.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use base64::Engine;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// How one session (connection) fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpFault {
    /// `451 4.3.0` at the end of DATA: a transient refusal.
    Transient,
    /// `550 5.1.1` at every RCPT TO: a permanent refusal.
    Permanent,
    /// Close the connection before the greeting.
    Drop,
}

/// One mail as delivered.
#[derive(Debug, Clone)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    /// The message as sent, dot-unstuffed, lines ending in CRLF.
    pub data: String,
    /// The user name of a successful AUTH, if any.
    pub user: Option<String>,
}

/// One MIME part of a mail, its body decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub content_type: String,
    pub body: String,
}

impl Mail {
    /// A top-level header, unfolded (the first if repeated).
    pub fn header(&self, name: &str) -> Option<String> {
        header_in(head(&self.data), name)
    }

    /// The leaf parts, whatever the nesting of multiparts.
    pub fn parts(&self) -> Vec<Part> {
        let mut out = Vec::new();
        collect_parts(&self.data, &mut out);
        out
    }
}

fn head(entity: &str) -> &str {
    entity.split("\r\n\r\n").next().unwrap_or("")
}

fn header_in(head: &str, name: &str) -> Option<String> {
    let mut value: Option<String> = None;
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some(v) = value.as_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
            continue;
        }
        if value.is_some() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case(name) {
                value = Some(v.trim().to_string());
            }
        }
    }
    value
}

fn collect_parts(entity: &str, out: &mut Vec<Part>) {
    let head_text = head(entity);
    let body = entity.get(head_text.len() + 4..).unwrap_or("");
    let content_type = header_in(head_text, "Content-Type").unwrap_or_else(|| "text/plain".to_string());
    if content_type.to_ascii_lowercase().starts_with("multipart/") {
        let Some(boundary) = content_type.split(';').find_map(|p| p.trim().strip_prefix("boundary=")) else {
            return;
        };
        let delimiter = format!("--{}", boundary.trim_matches('"'));
        for chunk in body.split(delimiter.as_str()).skip(1) {
            if chunk.starts_with("--") {
                break;
            }
            // The CRLF before a delimiter belongs to the delimiter, not to the part.
            let chunk = chunk.strip_prefix("\r\n").unwrap_or(chunk);
            collect_parts(chunk.strip_suffix("\r\n").unwrap_or(chunk), out);
        }
        return;
    }
    let encoding = header_in(head_text, "Content-Transfer-Encoding").unwrap_or_default().to_ascii_lowercase();
    let decoded = match encoding.as_str() {
        "base64" => {
            let joined: String = body.split_whitespace().collect();
            let bytes = base64::engine::general_purpose::STANDARD.decode(joined).unwrap_or_default();
            String::from_utf8_lossy(&bytes).into_owned()
        }
        "quoted-printable" => decode_quoted_printable(body),
        _ => body.to_string(),
    };
    let mime = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    out.push(Part { content_type: mime, body: decoded });
}

fn decode_quoted_printable(text: &str) -> String {
    let text = text.replace("=\r\n", "");
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(b) = hex {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

struct Inner {
    faults: VecDeque<SmtpFault>,
    mails: Vec<Mail>,
    credentials: Option<(String, String)>,
    sessions: u64,
}

struct Shared {
    inner: Mutex<Inner>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The running server. Dropping it stops it.
pub struct FakeSmtp {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for FakeSmtp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeSmtp {
    /// # Panics
    /// If no loopback port can be bound; use [`FakeSmtp::try_start`] to handle that.
    pub async fn start() -> FakeSmtp {
        match FakeSmtp::try_start().await {
            Ok(fake) => fake,
            Err(e) => panic!("fake SMTP cannot bind 127.0.0.1: {e}"),
        }
    }

    pub async fn try_start() -> io::Result<FakeSmtp> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner { faults: VecDeque::new(), mails: Vec::new(), credentials: None, sessions: 0 }),
        });
        let for_task = shared.clone();
        let task = tokio::spawn(async move {
            let mut sessions = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        sessions.spawn(session(stream, for_task.clone()));
                    }
                    Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
                }
            }
        });
        Ok(FakeSmtp { addr, shared, task })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Requires AUTH PLAIN with these before MAIL FROM (`530` otherwise, `535` when wrong).
    pub fn require_credentials(&self, user: &str, password: &str) {
        self.shared.lock().credentials = Some((user.to_string(), password.to_string()));
    }

    /// The next sessions fail so, one fault per connection, in order.
    pub fn set_faults(&self, faults: impl IntoIterator<Item = SmtpFault>) {
        self.shared.lock().faults = faults.into_iter().collect();
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.shared.lock().mails.clone()
    }

    /// Connections accepted so far.
    pub fn sessions(&self) -> u64 {
        self.shared.lock().sessions
    }
}

fn address(arg: &str) -> String {
    match (arg.find('<'), arg.find('>')) {
        (Some(start), Some(end)) if start < end => arg[start + 1..end].to_string(),
        _ => arg.trim().to_string(),
    }
}

async fn session(stream: TcpStream, shared: Arc<Shared>) -> io::Result<()> {
    let fault = {
        let mut inner = shared.lock();
        inner.sessions += 1;
        inner.faults.pop_front()
    };
    if fault == Some(SmtpFault::Drop) {
        return Ok(());
    }
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 fake.smtp.test ESMTP tocsin-fake\r\n").await?;
    let required = shared.lock().credentials.clone();
    let mut user: Option<String> = None;
    let mut from: Option<String> = None;
    let mut to: Vec<String> = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end_matches(['\r', '\n']);
        let (verb, arg) = command.split_once(' ').unwrap_or((command, ""));
        let reply: String = match verb.to_ascii_uppercase().as_str() {
            "EHLO" => "250-fake.smtp.test greets you\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250-AUTH PLAIN\r\n250 SIZE 10485760\r\n"
                .to_string(),
            "HELO" => "250 fake.smtp.test\r\n".to_string(),
            "AUTH" => {
                let (mechanism, initial) = arg.split_once(' ').unwrap_or((arg, ""));
                if !mechanism.eq_ignore_ascii_case("PLAIN") {
                    "504 5.5.4 Unrecognized authentication type\r\n".to_string()
                } else {
                    let response = if initial.is_empty() {
                        write.write_all(b"334 \r\n").await?;
                        let mut next = String::new();
                        lines.read_line(&mut next).await?;
                        next.trim().to_string()
                    } else {
                        initial.to_string()
                    };
                    let decoded = base64::engine::general_purpose::STANDARD.decode(response).unwrap_or_default();
                    let fields: Vec<String> =
                        decoded.split(|b| *b == 0).map(|f| String::from_utf8_lossy(f).into_owned()).collect();
                    match (&required, fields.as_slice()) {
                        (Some((u, p)), [_, given_user, given_pass]) if given_user == u && given_pass == p => {
                            user = Some(u.clone());
                            "235 2.7.0 Authentication successful\r\n".to_string()
                        }
                        (None, [_, given_user, _]) => {
                            user = Some(given_user.clone());
                            "235 2.7.0 Authentication successful\r\n".to_string()
                        }
                        _ => "535 5.7.8 Error: authentication failed: authentication failure\r\n".to_string(),
                    }
                }
            }
            "MAIL" if required.is_some() && user.is_none() => "530 5.7.0 Authentication required\r\n".to_string(),
            "MAIL" => {
                from = Some(address(arg));
                to.clear();
                "250 2.1.0 Ok\r\n".to_string()
            }
            "RCPT" if from.is_none() => "503 5.5.1 Error: need MAIL command\r\n".to_string(),
            "RCPT" => {
                let rcpt = address(arg);
                if fault == Some(SmtpFault::Permanent) {
                    format!("550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown in local recipient table\r\n")
                } else {
                    to.push(rcpt);
                    "250 2.1.5 Ok\r\n".to_string()
                }
            }
            "DATA" if to.is_empty() => "503 5.5.1 Error: need RCPT command\r\n".to_string(),
            "DATA" => {
                write.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n").await?;
                let mut data = String::new();
                loop {
                    let mut l = String::new();
                    if lines.read_line(&mut l).await? == 0 {
                        return Ok(());
                    }
                    if l == ".\r\n" || l == ".\n" {
                        break;
                    }
                    let l = l.strip_prefix('.').filter(|_| l.starts_with("..")).unwrap_or(&l);
                    data.push_str(l);
                }
                if fault == Some(SmtpFault::Transient) {
                    "451 4.3.0 Error: queue file write error, try again later\r\n".to_string()
                } else {
                    let mail = Mail { from: from.take().unwrap_or_default(), to: std::mem::take(&mut to), data, user: user.clone() };
                    let mut inner = shared.lock();
                    inner.mails.push(mail);
                    format!("250 2.0.0 Ok: queued as {:08X}\r\n", inner.mails.len())
                }
            }
            "RSET" => {
                from = None;
                to.clear();
                "250 2.0.0 Ok\r\n".to_string()
            }
            "NOOP" => "250 2.0.0 Ok\r\n".to_string(),
            "QUIT" => {
                write.write_all(b"221 2.0.0 Bye\r\n").await?;
                return Ok(());
            }
            "STARTTLS" => "454 4.7.0 TLS not available\r\n".to_string(),
            _ => "502 5.5.2 Error: command not recognized\r\n".to_string(),
        };
        write.write_all(reply.as_bytes()).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nested_parts() {
        let data = "Subject: hi\r\n there\r\nContent-Type: multipart/alternative; boundary=\"B\"\r\n\r\n--B\r\n\
                    Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
                    caf=C3=A9 =\r\nbar\r\n--B\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\n\
                    PGI+eDwvYj4=\r\n--B--\r\n";
        let mail = Mail { from: String::new(), to: vec![], data: data.to_string(), user: None };
        assert_eq!(mail.header("subject").as_deref(), Some("hi there"));
        assert_eq!(
            mail.parts(),
            vec![
                Part { content_type: "text/plain".into(), body: "café bar".into() },
                Part { content_type: "text/html".into(), body: "<b>x</b>".into() },
            ]
        );
    }
}
