//! A generic HTTP receiver for the `webhook` notifier: records every request and answers from
//! a script of replies, then 200.

use std::collections::VecDeque;
use std::future::pending;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use serde_json::Value;
use tokio::sync::watch;

use super::http::{ConnKill, LoopbackServer};

/// One scripted answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Status {
        status: u16,
        body: String,
        retry_after: Option<String>,
    },
    /// A redirect to `location` (a receiver that moved).
    Redirect {
        status: u16,
        location: String,
    },
    /// Close the socket without answering.
    Drop,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply::Status { status, body: String::new(), retry_after: None }
    }

    pub fn with_body(status: u16, body: impl Into<String>) -> Reply {
        Reply::Status { status, body: body.into(), retry_after: None }
    }

    /// A 429 with a `Retry-After` header, given verbatim so malformed values can be tested.
    pub fn rate_limited(retry_after: impl Into<String>) -> Reply {
        Reply::Status { status: 429, body: String::new(), retry_after: Some(retry_after.into()) }
    }

    pub fn redirect(status: u16, location: impl Into<String>) -> Reply {
        Reply::Redirect { status, location: location.into() }
    }
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

#[derive(Default)]
struct Inner {
    script: VecDeque<Reply>,
    requests: Vec<Request>,
}

struct Shared {
    inner: Mutex<Inner>,
    count: watch::Sender<usize>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Accepts any method on any path.
pub struct FakeReceiver {
    server: LoopbackServer,
    shared: Arc<Shared>,
}

impl FakeReceiver {
    /// # Panics
    /// If no loopback port can be bound; use [`FakeReceiver::try_start`] to handle that.
    pub async fn start() -> FakeReceiver {
        match FakeReceiver::try_start().await {
            Ok(fake) => fake,
            Err(e) => panic!("fake receiver cannot bind 127.0.0.1: {e}"),
        }
    }

    pub async fn try_start() -> io::Result<FakeReceiver> {
        let (count, _) = watch::channel(0usize);
        let shared = Arc::new(Shared { inner: Mutex::new(Inner::default()), count });
        let router = Router::new().fallback(receive).with_state(shared.clone());
        let server = LoopbackServer::start(router).await?;
        Ok(FakeReceiver { server, shared })
    }

    /// `http://127.0.0.1:PORT/hook`.
    pub fn url(&self) -> String {
        format!("{}/hook", self.server.base_url())
    }

    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    /// The next requests get these replies, in order; after them, 200.
    pub fn set_replies(&self, replies: impl IntoIterator<Item = Reply>) {
        self.shared.lock().script = replies.into_iter().collect();
    }

    pub fn requests(&self) -> Vec<Request> {
        self.shared.lock().requests.clone()
    }

    /// Waits until at least `count` requests arrived; false on timeout.
    pub async fn wait_for(&self, count: usize, timeout: Duration) -> bool {
        let mut changes = self.shared.count.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if *changes.borrow_and_update() >= count {
                return true;
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return *self.shared.count.borrow() >= count,
            }
        }
    }

    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

async fn receive(
    State(shared): State<Arc<Shared>>,
    kill: Option<Extension<ConnKill>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let reply = {
        let mut inner = shared.lock();
        inner.requests.push(Request { method, path: uri.path().to_string(), headers, body, at: Instant::now() });
        inner.script.pop_front()
    };
    shared.count.send_modify(|n| *n += 1);
    match reply {
        None => StatusCode::OK.into_response(),
        Some(Reply::Redirect { status, location }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::FOUND);
            let mut response = status.into_response();
            if let Ok(value) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(axum::http::header::LOCATION, value);
            }
            response
        }
        Some(Reply::Status { status, body, retry_after }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut response = (status, body).into_response();
            if let Some(value) = retry_after.and_then(|v| HeaderValue::from_str(&v).ok()) {
                response.headers_mut().insert(axum::http::header::RETRY_AFTER, value);
            }
            response
        }
        Some(Reply::Drop) => match kill {
            Some(Extension(kill)) => {
                kill.kill();
                pending::<Response>().await
            }
            None => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_and_follows_the_script() {
        let fake = FakeReceiver::start().await;
        fake.set_replies([Reply::rate_limited("7"), Reply::with_body(500, "boom"), Reply::Drop]);
        let client = reqwest::Client::new();
        let send = || client.post(fake.url()).header("x-test", "1").body("{\"a\":1}").send();

        let r = send().await.expect("an answer");
        assert_eq!((r.status().as_u16(), r.headers().get("retry-after").cloned()), (429, Some(HeaderValue::from(7))));
        let r = send().await.expect("an answer");
        assert_eq!(r.status().as_u16(), 500);
        assert_eq!(r.text().await.ok().as_deref(), Some("boom"));
        assert!(send().await.is_err(), "the third connection is dropped");
        assert_eq!(send().await.expect("an answer").status().as_u16(), 200);

        assert!(fake.wait_for(4, Duration::from_secs(1)).await);
        let requests = fake.requests();
        assert_eq!(requests.len(), 4);
        assert_eq!(requests[0].path, "/hook");
        assert_eq!(requests[0].header("x-test"), Some("1"));
        assert_eq!(requests[0].json(), Some(serde_json::json!({"a": 1})));
    }
}
