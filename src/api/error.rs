//! API errors as `{"error": "..."}` and a JSON body extractor whose failures are 400/413
//! naming the problem (never axum's plain-text rejections, never a 500 for bad input).

use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::de::DeserializeOwned;

/// An error response: status plus a message naming what is wrong.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Human-readable message, naming the field or limit.
    pub message: String,
    /// Seconds for a `Retry-After` header (429, 503).
    pub retry_after: Option<u64>,
    /// A short, stable name of the failed check (401/403 of JWTs), as `reason`.
    pub reason: Option<&'static str>,
}

impl ApiError {
    /// An error with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after: None,
            reason: None,
        }
    }
    /// The same error with a `reason` field.
    pub fn with_reason(self, reason: &'static str) -> Self {
        Self {
            reason: Some(reason),
            ..self
        }
    }
    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    /// 503 with `Retry-After`.
    pub fn unavailable(message: impl Into<String>, retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
        }
    }
    /// 500 for failures that are ours, not the client's; logs the cause.
    pub fn internal(context: &str, err: impl std::fmt::Display) -> Self {
        tracing::error!(error = %err, "{context}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{context}: internal error"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({ "error": self.message });
        if let Some(r) = self.reason {
            body["reason"] = r.into();
        }
        let mut resp = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            // RFC 6750 §3: say which scheme, and that a presented token was refused.
            let challenge = match self.reason {
                Some(r) => format!("Bearer error=\"invalid_token\", error_description=\"{r}\""),
                None => "Bearer".into(),
            };
            if let Ok(v) = HeaderValue::from_str(&challenge) {
                resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
            }
        }
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        if e.is_transient() {
            tracing::warn!(error = %e, "database unavailable");
            ApiError::unavailable("database unavailable", 5)
        } else {
            ApiError::internal("database error", e)
        }
    }
}

/// Whether `path` belongs to Prometheus' HTTP API, whose errors have Prometheus' shape.
pub fn is_prometheus_path(path: &str) -> bool {
    [
        "/api/v1/query",
        "/api/v1/series",
        "/api/v1/label",
        "/api/v1/status",
        "/api/v1/metadata",
    ]
    .iter()
    .any(|p| path.starts_with(p))
}

/// `err` as the answer to a request for `path`: Prometheus' error shape
/// (`{"status":"error","errorType":…,"error":…}`) on its API, ours elsewhere.
pub fn error_for(path: &str, err: ApiError) -> Response {
    if !is_prometheus_path(path) {
        return err.into_response();
    }
    let kind = match err.status.as_u16() {
        408 | 503 => "timeout",
        404 => "not_found",
        422 => "execution",
        500..=599 => "internal",
        _ => "bad_data",
    };
    let body = serde_json::json!({"status": "error", "errorType": kind, "error": err.message});
    (err.status, axum::Json(body)).into_response()
}

/// Middleware: gives every error answer without a JSON body (axum's extractor
/// rejections, the WebSocket upgrade's, layers') a `{"error": …}` body carrying the
/// original text, or the status' reason when there was none.
pub async fn json_errors(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let path = req.uri().path().to_owned();
    let resp = next.run(req).await;
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if resp.status().as_u16() < 400 || is_json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = if text.is_empty() {
        parts
            .status
            .canonical_reason()
            .unwrap_or("error")
            .to_string()
    } else {
        text
    };
    let mut out = error_for(&path, ApiError::new(parts.status, message));
    for name in [header::RETRY_AFTER, header::ALLOW, header::WWW_AUTHENTICATE] {
        if let Some(v) = parts.headers.get(&name) {
            out.headers_mut().insert(name, v.clone());
        }
    }
    out
}

/// JSON body extractor: any content type, 413 over the body limit, 400 with serde's
/// message (which names the field and position) otherwise.
pub struct Json<T>(pub T);

impl<S, T> FromRequest<S> for Json<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            let status = rejection.status();
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    status,
                    "request body exceeds the size limit (alerts.max_body_bytes)",
                )
            } else {
                ApiError::new(status, rejection.body_text())
            }
        })?;
        parse_json(&bytes).map(Json)
    }
}

/// Parses JSON with an error that says where and what.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.is_empty() {
        return Err(ApiError::bad_request(
            "request body is empty; expected JSON",
        ));
    }
    crate::json::from_json(bytes).map_err(ApiError::bad_request)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Body {
        message: String,
        labels: std::collections::BTreeMap<String, String>,
    }

    #[test]
    fn parse_errors_name_the_field() {
        let e = parse_json::<Body>(br#"{"labels":{}}"#).unwrap_err();
        assert!(e.message.contains("message"), "{}", e.message);
        let e = parse_json::<Body>(br#"{"message":"x","labels":{"a":1}}"#).unwrap_err();
        assert!(e.message.contains("labels.a"), "{}", e.message);
        let e = parse_json::<Body>(b"{not json").unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        let e = parse_json::<Body>(br#"{"message":"x","labels":{}} trailing"#).unwrap_err();
        assert!(e.message.contains("trailing characters"), "{}", e.message);
        assert!(parse_json::<Body>(b"{\"message\":\"x\",\"labels\":{}}\n ").is_ok());
    }
}
