//! The API's one error type: `{"error": {"code", "message", "field"}}` with a stable code.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::event::FieldError;
use crate::store::StoreError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    /// Every problem when several were found (a batch with several bad events).
    pub details: Vec<FieldError>,
    pub retry_after: Option<u64>,
    /// The body was not read: the connection cannot be reused, so say so.
    pub close: bool,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    details: Vec<Detail<'a>>,
}

#[derive(Serialize)]
struct Detail<'a> {
    field: &'a str,
    message: &'a str,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
            details: Vec::new(),
            retry_after: None,
            close: false,
        }
    }

    pub fn bad_request(code: &'static str, field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError { field: Some(field.into()), ..ApiError::new(StatusCode::BAD_REQUEST, code, message) }
    }

    pub fn invalid_events(errors: Vec<FieldError>) -> Self {
        let first = errors.first().cloned().unwrap_or(FieldError { field: "body".into(), message: "invalid".into() });
        let message = if errors.len() == 1 {
            format!("{}: {}", first.field, first.message)
        } else {
            format!("{} problems; first: {}: {}", errors.len(), first.field, first.message)
        };
        ApiError {
            field: Some(first.field),
            details: if errors.len() > 1 { errors } else { Vec::new() },
            ..ApiError::new(StatusCode::BAD_REQUEST, "invalid_event", message)
        }
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// Bodies are read as they come: a compressed one would be reported as bad JSON, so it is
    /// refused for what it is.
    pub fn refuse_encoded(headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
        match headers.get(axum::http::header::CONTENT_ENCODING).map(|v| v.to_str().unwrap_or("?").trim()) {
            None => Ok(()),
            Some(e) if e.is_empty() || e.eq_ignore_ascii_case("identity") => Ok(()),
            Some(e) => {
                let mut err = ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_encoding",
                    format!("Content-Encoding {e:?} is not supported; send the body uncompressed"),
                );
                err.field = Some("Content-Encoding".into());
                Err(err)
            }
        }
    }

    pub fn too_large(limit: usize) -> Self {
        let mut err = ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the body is larger than {limit} bytes"),
        );
        err.close = true;
        err
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::InvalidCursor => {
                ApiError::bad_request("invalid_cursor", "cursor", "not a cursor from a previous page")
            }
            StoreError::NotFound => ApiError::not_found("no such item"),
            other => {
                // The cause is for the operator's log, not for the client.
                tracing::error!(error = %other, "store failure while serving a request");
                let mut err = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "the store cannot take this now; retry",
                );
                err.retry_after = Some(1);
                err
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: Inner {
                code: self.code,
                message: &self.message,
                field: self.field.as_deref(),
                details: self.details.iter().map(|d| Detail { field: &d.field, message: &d.message }).collect(),
            },
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.close {
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            // RFC 9110: a 401 names the scheme it wants.
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"tocsin\""));
        }
        response
    }
}
