//! REST calls with the session's bearer token, JSON in and out.

use serde_json::Value;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{Request, RequestInit, Response};

use super::session;

/// A failed call: HTTP status (0 when the network failed) and the server's message.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiErr {
    /// HTTP status, 0 for network errors.
    pub status: u16,
    /// `{"error": …}` of the answer, or what went wrong.
    pub message: String,
}

impl std::fmt::Display for ApiErr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            0 => write!(f, "network error: {}", self.message),
            401 => write!(
                f,
                "{} — set an access token (key icon, top right)",
                self.message
            ),
            403 => write!(
                f,
                "{} — your token's role is not allowed to do this",
                self.message
            ),
            s => write!(f, "{} (HTTP {s})", self.message),
        }
    }
}

fn js_err(e: wasm_bindgen::JsValue) -> ApiErr {
    ApiErr {
        status: 0,
        message: e
            .as_string()
            .or_else(|| {
                js_sys::Reflect::get(&e, &"message".into())
                    .ok()
                    .and_then(|m| m.as_string())
            })
            .unwrap_or_else(|| "request failed".into()),
    }
}

/// Sends a request with the session's token and parses the JSON answer (an empty body
/// is `null`).
pub async fn request(method: &str, url: &str, body: Option<&Value>) -> Result<Value, ApiErr> {
    request_as(method, url, body, session::token().as_deref()).await
}

/// [`request`] with `token` instead of the session's.
pub async fn request_as(
    method: &str,
    url: &str,
    body: Option<&Value>,
    token: Option<&str>,
) -> Result<Value, ApiErr> {
    let init = RequestInit::new();
    init.set_method(method);
    let headers = web_sys::Headers::new().map_err(js_err)?;
    headers.set("Accept", "application/json").map_err(js_err)?;
    if let Some(token) = token {
        headers
            .set("Authorization", &format!("Bearer {token}"))
            .map_err(js_err)?;
    }
    if let Some(b) = body {
        headers
            .set("Content-Type", "application/json")
            .map_err(js_err)?;
        init.set_body(&wasm_bindgen::JsValue::from_str(&b.to_string()));
    }
    init.set_headers(&headers);
    let req = Request::new_with_str_and_init(url, &init).map_err(js_err)?;
    let window = web_sys::window().ok_or_else(|| js_err("no window".into()))?;
    let resp: Response = JsFuture::from(window.fetch_with_request(&req))
        .await
        .map_err(js_err)?
        .dyn_into()
        .map_err(js_err)?;
    let status = resp.status();
    let text = JsFuture::from(resp.text().map_err(js_err)?)
        .await
        .map_err(js_err)?
        .as_string()
        .unwrap_or_default();
    let value: Value = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    if (200..300).contains(&status) {
        Ok(value)
    } else {
        let message = value
            .get("error")
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| value.as_str().map(|s| s.chars().take(200).collect()))
            .unwrap_or_else(|| resp.status_text());
        Err(ApiErr { status, message })
    }
}

/// GET.
pub async fn get(url: &str) -> Result<Value, ApiErr> {
    request("GET", url, None).await
}

/// GET returning the body as text (for Markdown reports).
pub async fn get_text(url: &str) -> Result<String, ApiErr> {
    match request("GET", url, None).await? {
        Value::String(s) => Ok(s),
        Value::Null => Ok(String::new()),
        other => Ok(other.to_string()),
    }
}

/// POST with a JSON body.
pub async fn post(url: &str, body: &Value) -> Result<Value, ApiErr> {
    request("POST", url, Some(body)).await
}

/// DELETE.
pub async fn delete(url: &str) -> Result<Value, ApiErr> {
    request("DELETE", url, None).await
}
