//! A fake Telegram Bot API for tests: a local axum server speaking the real wire format.
//!
//! - `POST|GET /bot<TOKEN>/<method>`, method names case-insensitive (teloxide sends
//!   `SendMessage`), JSON, form or multipart bodies (and query strings);
//! - `sendPhoto` (multipart, as teloxide uploads a file): the caption, chat, reply
//!   parameters and the photo's bytes are recorded ([`Call::file`]);
//! - answers `{"ok":true,"result":…}` or Telegram's errors, e.g.
//!   `{"ok":false,"error_code":429,"description":"Too Many Requests: retry after N",
//!   "parameters":{"retry_after":N}}`;
//! - `getUpdates` serves queued updates by offset, long-polling up to its `timeout`;
//! - records every call with its arrival time.
//!
//! Faults for the fault-injection suite (`tests/faults_*.rs`):
//! - [`FakeTelegram::go_down`] / [`FakeTelegram::come_up`]: connections are refused
//!   (listener closed, idle keep-alive connections closed), then it listens again on the
//!   same port with the same state;
//! - [`FakeTelegram::fail_all`]: every request is answered with one error (e.g. 502);
//! - [`FakeTelegram::hold_next_sends`]: the next N successful sendMessage calls are
//!   recorded as delivered at once (Telegram has the message) but answered only after a
//!   delay, so a client with a shorter timeout cannot know it was delivered.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde_json::{Map, Value, json};
use tokio::sync::Notify;

/// One request received.
#[derive(Debug, Clone)]
pub struct Call {
    /// Method, lowercased (`sendmessage`).
    pub method: String,
    /// Parameters (JSON body, form fields or query), as JSON.
    pub params: Value,
    /// When it arrived.
    pub at: Instant,
    /// HTTP status answered.
    pub status: u16,
    /// The answer was held back (see [`FakeTelegram::hold_next_sends`]).
    pub held: bool,
    /// Uploaded files (multipart parts with a file name), by field name.
    pub files: HashMap<String, Vec<u8>>,
    /// The message id answered (sendMessage, sendPhoto).
    pub message_id: Option<i64>,
}

impl Call {
    /// `chat_id` as a number.
    pub fn chat_id(&self) -> Option<i64> {
        match &self.params["chat_id"] {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        }
    }
    /// `text`.
    pub fn text(&self) -> String {
        self.params["text"].as_str().unwrap_or_default().to_string()
    }
    /// `caption` (sendPhoto).
    pub fn caption(&self) -> String {
        self.params["caption"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
    /// An uploaded file's bytes (`photo` for sendPhoto).
    pub fn file(&self, field: &str) -> Option<&[u8]> {
        self.files.get(field).map(Vec::as_slice)
    }
    /// `reply_parameters.message_id`.
    pub fn reply_to(&self) -> Option<i64> {
        self.params["reply_parameters"]["message_id"].as_i64()
    }
}

/// An error the fake answers with.
#[derive(Debug, Clone)]
pub enum Fault {
    /// 429 with `parameters.retry_after`.
    RetryAfter(u64),
    /// Any status and description, e.g. `(403, "Forbidden: bot was blocked by the user")`.
    Error(u16, String),
}

#[derive(Default)]
struct Inner {
    calls: Vec<Call>,
    /// Faults for the next calls of a method.
    next: VecDeque<(String, Fault)>,
    /// Faults for every sendMessage to a chat.
    chats: HashMap<i64, Fault>,
    updates: Vec<Value>,
    next_update_id: i64,
    next_message_id: i64,
    /// Every request (any method, any token) is answered with this, until cleared.
    all: Option<Fault>,
    /// How many more successful sendMessage answers are held, and for how long.
    hold: Option<(usize, Duration)>,
    /// `getUpdates` requests in flight.
    polling: usize,
    /// `getUpdates` requests refused with 409 because another one was in flight.
    conflicts: usize,
}

/// Counts a `getUpdates` in flight until dropped (answered, or its client went away).
struct Polling<'a>(&'a Shared);

impl Drop for Polling<'_> {
    fn drop(&mut self) {
        let mut inner = self.0.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.polling = inner.polling.saturating_sub(1);
    }
}

struct Shared {
    token: String,
    inner: Mutex<Inner>,
    updates: Notify,
    calls: Notify,
}

/// The HTTP server tasks: the one listening now (with the sender that stops it), and
/// stopped ones still finishing held requests.
#[derive(Default)]
struct Listening {
    current: Option<(
        tokio::task::JoinHandle<()>,
        tokio::sync::oneshot::Sender<()>,
    )>,
    stopped: Vec<tokio::task::JoinHandle<()>>,
}

/// The running fake.
pub struct FakeTelegram {
    /// `http://127.0.0.1:PORT` — give it as `telegram.api_url`.
    pub url: String,
    /// The bot token it accepts.
    pub token: String,
    addr: SocketAddr,
    shared: Arc<Shared>,
    listening: Mutex<Listening>,
}

impl Drop for FakeTelegram {
    fn drop(&mut self) {
        let l = self.listening.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some((task, _)) = l.current.take() {
            task.abort();
        }
        for task in l.stopped.drain(..) {
            task.abort();
        }
    }
}

/// Serves `shared` on `listener` until the returned sender fires (or is dropped):
/// then the listener is closed at once, idle connections are closed, and requests in
/// flight are finished.
fn spawn_server(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
) -> (
    tokio::task::JoinHandle<()>,
    tokio::sync::oneshot::Sender<()>,
) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let app = Router::new()
        .route("/{bot}/{method}", any(handle))
        .with_state(shared);
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    (task, stop)
}

impl FakeTelegram {
    /// Starts a fake accepting `token` on a free port.
    pub async fn start(token: &str) -> FakeTelegram {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener, token)
    }

    /// Starts a fake on a given port (for restarts of the service under test).
    pub fn serve(listener: tokio::net::TcpListener, token: &str) -> FakeTelegram {
        let addr = listener.local_addr().unwrap();
        let url = format!("http://{addr}");
        let shared = Arc::new(Shared {
            token: token.to_string(),
            inner: Mutex::new(Inner {
                next_update_id: 1000,
                next_message_id: 1,
                ..Default::default()
            }),
            updates: Notify::new(),
            calls: Notify::new(),
        });
        let current = spawn_server(listener, shared.clone());
        FakeTelegram {
            url,
            token: token.to_string(),
            addr,
            shared,
            listening: Mutex::new(Listening {
                current: Some(current),
                stopped: Vec::new(),
            }),
        }
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops listening: from its return on, connections to the port are refused and
    /// idle keep-alive connections are closed (held answers are still given). Recorded
    /// calls and queued faults are kept. No-op when already down.
    pub async fn go_down(&self) {
        let current = self.listening.lock().unwrap().current.take();
        let Some((task, stop)) = current else {
            return;
        };
        let _ = stop.send(());
        self.listening.lock().unwrap().stopped.push(task);
        let deadline = Instant::now() + Duration::from_secs(5);
        while tokio::net::TcpStream::connect(self.addr).await.is_ok() {
            assert!(
                Instant::now() < deadline,
                "fake Telegram: {} still accepts connections",
                self.addr
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Listens again on the same port, with the same state. No-op when already up.
    pub async fn come_up(&self) {
        if self.listening.lock().unwrap().current.is_some() {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) => {
                    assert!(
                        Instant::now() < deadline,
                        "fake Telegram: cannot listen on {} again: {e}",
                        self.addr
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        let current = spawn_server(listener, self.shared.clone());
        self.listening.lock().unwrap().current = Some(current);
    }

    /// Whether it listens.
    pub fn is_up(&self) -> bool {
        self.listening.lock().unwrap().current.is_some()
    }

    /// Answers every request (any method) with `fault` until [`Self::clear_fail_all`],
    /// e.g. `Fault::Error(502, "Bad Gateway".into())`. Such calls are recorded with that
    /// status and deliver nothing.
    pub fn fail_all(&self, fault: Fault) {
        self.lock().all = Some(fault);
    }

    /// Ends [`Self::fail_all`].
    pub fn clear_fail_all(&self) {
        self.lock().all = None;
    }

    /// The next `n` sendMessage calls that succeed are recorded (status 200, `held`)
    /// as soon as they arrive — Telegram has the message — but answered only after
    /// `delay`.
    pub fn hold_next_sends(&self, n: usize, delay: Duration) {
        self.lock().hold = (n > 0).then_some((n, delay));
    }

    /// How many held answers are still to come.
    pub fn holds_left(&self) -> usize {
        self.lock().hold.map(|(n, _)| n).unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.shared.inner.lock().unwrap()
    }

    /// Answers the next call of `method` with `fault`.
    pub fn fail_next(&self, method: &str, fault: Fault) {
        self.lock()
            .next
            .push_back((method.to_ascii_lowercase(), fault));
    }

    /// Answers every sendMessage to `chat` with `fault` (until cleared).
    pub fn fail_chat(&self, chat: i64, fault: Fault) {
        self.lock().chats.insert(chat, fault);
    }

    /// Clears the per-chat faults.
    pub fn clear_chat_faults(&self) {
        self.lock().chats.clear();
    }

    /// How many `getUpdates` were refused with 409 because another one was in flight.
    pub fn conflicts(&self) -> usize {
        self.lock().conflicts
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// Calls of one method (case-insensitive).
    pub fn calls_of(&self, method: &str) -> Vec<Call> {
        let m = method.to_ascii_lowercase();
        self.calls().into_iter().filter(|c| c.method == m).collect()
    }

    /// sendPhoto calls that succeeded.
    pub fn photos(&self) -> Vec<Call> {
        self.calls_of("sendPhoto")
            .into_iter()
            .filter(|c| c.status == 200)
            .collect()
    }

    /// sendMessage calls that succeeded.
    pub fn delivered(&self) -> Vec<Call> {
        self.calls_of("sendMessage")
            .into_iter()
            .filter(|c| c.status == 200)
            .collect()
    }

    /// Waits until `pred(calls)` holds, at most `timeout`; returns the calls.
    pub async fn wait_until(&self, timeout: Duration, pred: impl Fn(&[Call]) -> bool) -> Vec<Call> {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.shared.calls.notified();
            let calls = self.calls();
            if pred(&calls) {
                return calls;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!(
                    "fake Telegram: condition not met within {timeout:?}; calls:\n{:#?}",
                    calls
                        .iter()
                        .map(|c| (c.method.clone(), c.status, c.params.clone()))
                        .collect::<Vec<_>>()
                );
            }
            let _ = tokio::time::timeout(left.min(Duration::from_millis(200)), notified).await;
        }
    }

    /// Waits for `n` successful sendMessage calls.
    pub async fn wait_delivered(&self, n: usize, timeout: Duration) -> Vec<Call> {
        self.wait_until(timeout, |calls| {
            calls
                .iter()
                .filter(|c| c.method == "sendmessage" && c.status == 200)
                .count()
                >= n
        })
        .await;
        self.delivered()
    }

    fn user(user_id: i64) -> Value {
        json!({"id": user_id, "is_bot": false, "first_name": format!("User{user_id}"), "username": format!("user{user_id}")})
    }

    fn chat(chat_id: i64) -> Value {
        if chat_id < 0 {
            json!({"id": chat_id, "type": "supergroup", "title": "Ops"})
        } else {
            json!({"id": chat_id, "type": "private", "first_name": "Ops"})
        }
    }

    /// Queues a text message (e.g. a command) from `user` in `chat`; returns the update id.
    pub fn push_message(&self, chat: i64, user: i64, text: &str) -> i64 {
        let mut inner = self.lock();
        let id = inner.next_update_id;
        inner.next_update_id += 1;
        let message_id = inner.next_message_id;
        inner.next_message_id += 1;
        let mut message = json!({
            "message_id": message_id,
            "date": chrono::Utc::now().timestamp(),
            "chat": Self::chat(chat),
            "from": Self::user(user),
            "text": text,
        });
        if text.starts_with('/') {
            let len = text
                .split_whitespace()
                .next()
                .unwrap_or("")
                .encode_utf16()
                .count();
            message["entities"] = json!([{"type": "bot_command", "offset": 0, "length": len}]);
        }
        inner
            .updates
            .push(json!({"update_id": id, "message": message}));
        drop(inner);
        self.shared.updates.notify_waiters();
        id
    }

    /// Queues a button press (`callback_data`) by `user` on a bot message in `chat`;
    /// returns the callback query id.
    pub fn push_callback(&self, chat: i64, user: i64, data: &str) -> String {
        let mut inner = self.lock();
        let id = inner.next_update_id;
        inner.next_update_id += 1;
        let query_id = format!("cbq{id}");
        let message = json!({
            "message_id": 1,
            "date": chrono::Utc::now().timestamp(),
            "chat": Self::chat(chat),
            "from": {"id": 999, "is_bot": true, "first_name": "watchpost", "username": "watchpost_bot"},
            "text": "alert",
        });
        inner.updates.push(json!({
            "update_id": id,
            "callback_query": {
                "id": query_id,
                "from": Self::user(user),
                "chat_instance": "42",
                "message": message,
                "data": data,
            }
        }));
        drop(inner);
        self.shared.updates.notify_waiters();
        query_id
    }
}

/// A form value: Telegram accepts JSON-serialized values in form fields.
fn form_value(v: String) -> Value {
    serde_json::from_str::<Value>(&v)
        .ok()
        .filter(|j| j.is_object() || j.is_array() || j.is_number() || j.is_boolean())
        .unwrap_or(Value::String(v))
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// The parts of a `multipart/form-data` body: `(name, file name, bytes)`.
fn multipart(ctype: &str, body: &[u8]) -> Vec<(String, Option<String>, Vec<u8>)> {
    let Some(boundary) = ctype
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))
        .map(|b| b.trim_matches('"'))
    else {
        return vec![];
    };
    let delim = format!("--{boundary}");
    let mut out = Vec::new();
    let mut at = match find(body, delim.as_bytes(), 0) {
        Some(i) => i + delim.len(),
        None => return out,
    };
    while body.get(at..at + 2) == Some(b"\r\n") {
        let head_start = at + 2;
        let Some(head_end) = find(body, b"\r\n\r\n", head_start) else {
            break;
        };
        let head = String::from_utf8_lossy(&body[head_start..head_end]).to_string();
        let data_start = head_end + 4;
        let next_delim = format!("\r\n{delim}");
        let Some(data_end) = find(body, next_delim.as_bytes(), data_start) else {
            break;
        };
        let attr = |key: &str| {
            let pat = format!("{key}=\"");
            head.find(&pat).map(|i| {
                let rest = &head[i + pat.len()..];
                rest[..rest.find('"').unwrap_or(rest.len())].to_string()
            })
        };
        // `name=` also matches inside `filename=`: look for the field's own name first.
        let name = head
            .split(';')
            .find_map(|p| p.trim().strip_prefix("name=\""))
            .map(|n| n[..n.find('"').unwrap_or(n.len())].to_string())
            .unwrap_or_default();
        out.push((name, attr("filename"), body[data_start..data_end].to_vec()));
        at = data_end + next_delim.len();
    }
    out
}

fn params_and_files(
    headers: &HeaderMap,
    query: Option<String>,
    body: &Bytes,
) -> (Value, HashMap<String, Vec<u8>>) {
    let mut files = HashMap::new();
    let mut map = Map::new();
    if let Some(q) = query {
        for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
            map.insert(k.into_owned(), Value::String(v.into_owned()));
        }
    }
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ctype.starts_with("application/json") {
        if let Ok(Value::Object(o)) = serde_json::from_slice::<Value>(body) {
            map.extend(o);
        }
    } else if ctype.starts_with("application/x-www-form-urlencoded") {
        for (k, v) in url::form_urlencoded::parse(body) {
            map.insert(k.into_owned(), form_value(v.into_owned()));
        }
    } else if ctype.starts_with("multipart/form-data") {
        for (name, file, data) in multipart(ctype, body) {
            match file {
                Some(_) => {
                    files.insert(name, data);
                }
                None => {
                    let v = String::from_utf8_lossy(&data).into_owned();
                    map.insert(name, form_value(v));
                }
            }
        }
    }
    // teloxide names an uploaded part at random and refers to it as `attach://NAME`.
    for (field, v) in &map {
        if let Some(part) = v.as_str().and_then(|s| s.strip_prefix("attach://"))
            && let Some(data) = files.get(part).cloned()
        {
            files.insert(field.clone(), data);
        }
    }
    (Value::Object(map), files)
}

fn error(status: u16, description: &str, retry_after: Option<u64>) -> (u16, Value) {
    let mut body = json!({"ok": false, "error_code": status, "description": description});
    if let Some(n) = retry_after {
        body["parameters"] = json!({"retry_after": n});
    }
    (status, body)
}

fn fault_response(f: &Fault) -> (u16, Value) {
    match f {
        Fault::RetryAfter(n) => error(
            429,
            &format!("Too Many Requests: retry after {n}"),
            Some(*n),
        ),
        Fault::Error(status, desc) => error(*status, desc, None),
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    Path((bot, method)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let at = Instant::now();
    let method = method.to_ascii_lowercase();
    let (params, files) = params_and_files(&headers, query, &body);
    let all = shared.inner.lock().unwrap().all.clone();
    let (status, answer) = if let Some(f) = all {
        fault_response(&f)
    } else if bot.strip_prefix("bot") != Some(shared.token.as_str()) {
        error(401, "Unauthorized", None)
    } else if method == "getupdates" {
        get_updates(&shared, &params).await
    } else if method == "sendphoto" {
        send_photo(&shared, &params, &files)
    } else {
        respond(&shared, &method, &params)
    };
    let message_id = answer["result"]["message_id"].as_i64();
    let hold = {
        let mut inner = shared.inner.lock().unwrap();
        let hold = match inner.hold {
            Some((n, delay)) if status == 200 && method == "sendmessage" => {
                inner.hold = (n > 1).then_some((n - 1, delay));
                Some(delay)
            }
            _ => None,
        };
        inner.calls.push(Call {
            method,
            params,
            at,
            status,
            held: hold.is_some(),
            files,
            message_id,
        });
        hold
    };
    shared.calls.notify_waiters();
    if let Some(delay) = hold {
        tokio::time::sleep(delay).await;
    }
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
        axum::Json(answer),
    )
        .into_response()
}

fn respond(shared: &Shared, method: &str, params: &Value) -> (u16, Value) {
    let mut inner = shared.inner.lock().unwrap();
    if let Some(pos) = inner.next.iter().position(|(m, _)| m == method) {
        let (_, f) = inner.next.remove(pos).unwrap();
        return fault_response(&f);
    }
    match method {
        "getme" => (
            200,
            json!({"ok": true, "result": {
                "id": 999, "is_bot": true, "first_name": "watchpost", "username": "watchpost_bot",
                "can_join_groups": true, "can_read_all_group_messages": false,
                "supports_inline_queries": false, "can_connect_to_business": false,
                "has_main_web_app": false
            }}),
        ),
        "sendmessage" => {
            let chat = match &params["chat_id"] {
                Value::Number(n) => n.as_i64(),
                Value::String(s) => s.parse().ok(),
                _ => None,
            };
            let Some(chat) = chat else {
                return error(400, "Bad Request: chat_id is empty", None);
            };
            if let Some(f) = inner.chats.get(&chat) {
                return fault_response(f);
            }
            let text = params["text"].as_str().unwrap_or_default();
            if text.is_empty() {
                return error(400, "Bad Request: message text is empty", None);
            }
            if text.encode_utf16().count() > 4096 {
                return error(400, "Bad Request: message is too long", None);
            }
            let id = inner.next_message_id;
            inner.next_message_id += 1;
            (
                200,
                json!({"ok": true, "result": {
                    "message_id": id,
                    "date": chrono::Utc::now().timestamp(),
                    "chat": FakeTelegram::chat(chat),
                    "text": text,
                }}),
            )
        }
        "answercallbackquery" | "setmycommands" | "deletewebhook" => {
            (200, json!({"ok": true, "result": true}))
        }
        _ => error(404, "Not Found: method not found", None),
    }
}

/// `sendPhoto`: a photo upload (any bytes: the tests decode them) with a caption of at
/// most 1,024 characters.
fn send_photo(shared: &Shared, params: &Value, files: &HashMap<String, Vec<u8>>) -> (u16, Value) {
    let mut inner = shared.inner.lock().unwrap();
    if let Some(pos) = inner.next.iter().position(|(m, _)| m == "sendphoto") {
        let (_, f) = inner.next.remove(pos).unwrap();
        return fault_response(&f);
    }
    let chat = match &params["chat_id"] {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    };
    let Some(chat) = chat else {
        return error(400, "Bad Request: chat_id is empty", None);
    };
    if let Some(f) = inner.chats.get(&chat) {
        return fault_response(f);
    }
    let Some(photo) = files.get("photo").filter(|p| !p.is_empty()) else {
        return error(400, "Bad Request: there is no photo in the request", None);
    };
    let caption = params["caption"].as_str().unwrap_or_default();
    if caption.encode_utf16().count() > 1024 {
        return error(400, "Bad Request: message caption is too long", None);
    }
    let id = inner.next_message_id;
    inner.next_message_id += 1;
    (
        200,
        json!({"ok": true, "result": {
            "message_id": id,
            "date": chrono::Utc::now().timestamp(),
            "chat": FakeTelegram::chat(chat),
            "photo": [{"file_id": format!("photo{id}"), "file_unique_id": format!("u{id}"),
                       "width": 800, "height": 450, "file_size": photo.len()}],
            "caption": caption,
        }}),
    )
}

async fn get_updates(shared: &Shared, params: &Value) -> (u16, Value) {
    let num = |v: &Value| match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    };
    // Telegram allows one long poll per bot: a second one in flight is a conflict.
    let _polling = {
        let mut inner = shared.inner.lock().unwrap();
        if inner.polling > 0 {
            inner.conflicts += 1;
            return error(
                409,
                "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running",
                None,
            );
        }
        inner.polling += 1;
        Polling(shared)
    };
    let offset = num(&params["offset"]).unwrap_or(0);
    let timeout = num(&params["timeout"]).unwrap_or(0).clamp(0, 10) as u64;
    let limit = num(&params["limit"]).unwrap_or(100).clamp(1, 100) as usize;
    {
        let mut inner = shared.inner.lock().unwrap();
        if let Some((_, f)) = inner
            .next
            .iter()
            .position(|(m, _)| m == "getupdates")
            .and_then(|p| inner.next.remove(p))
        {
            return fault_response(&f);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(timeout);
    loop {
        let notified = shared.updates.notified();
        {
            let mut inner = shared.inner.lock().unwrap();
            // Updates below the offset are confirmed: forget them.
            inner
                .updates
                .retain(|u| u["update_id"].as_i64().unwrap_or(0) >= offset);
            if !inner.updates.is_empty() {
                let batch: Vec<Value> = inner.updates.iter().take(limit).cloned().collect();
                return (200, json!({"ok": true, "result": batch}));
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (200, json!({"ok": true, "result": []}));
        }
        let _ = tokio::time::timeout(left, notified).await;
    }
}
