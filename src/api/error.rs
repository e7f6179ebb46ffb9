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
}

impl ApiError {
    /// An error with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after: None,
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
        let body = serde_json::json!({ "error": self.message });
        let mut resp = (self.status, axum::Json(body)).into_response();
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
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| ApiError::bad_request(json_error_message(e)))
}

/// What is wrong with a JSON body, naming the path of the offending field when known
/// (`invalid JSON at `[3].labels`: …`); syntax errors give line and column instead.
pub fn json_error_message(e: serde_path_to_error::Error<serde_json::Error>) -> String {
    let path = e.path().to_string();
    let inner = e.into_inner();
    if inner.is_syntax() || inner.is_eof() || path.is_empty() || path == "." || path == "?" {
        format!("invalid JSON: {inner}")
    } else {
        format!("invalid JSON at `{path}`: {inner}")
    }
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
    }
}
