//! The dashboard's static files, embedded at build time from `dashboard/dist`
//! (`cargo xtask dashboard` writes it; `build.rs` embeds whatever is there).
//!
//! - `/assets/<name>-<hash>.<ext>`: content-hashed, `Cache-Control: public,
//!   max-age=31536000, immutable`.
//! - `/` and the client-side routes (`/alerts`, `/alerts/{id}`, `/history`, `/rules`,
//!   `/silences`, `/cluster`, `/postgres`, `/heartbeats`, `/agents`): `index.html` with `Cache-Control: no-cache` and an ETag, so deep
//!   links survive a reload and a new build is picked up at once.
//! - Brotli or gzip variants precompressed at build time are chosen by
//!   `Accept-Encoding` (with `Vary: Accept-Encoding`); no CPU is spent compressing at
//!   request time.
//!
//! Without a built dashboard, `/` answers with one line saying how to build it.

use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::api::{ApiError, AppState};

/// One embedded file.
#[derive(Debug)]
pub struct Asset {
    /// URL path, e.g. `/assets/dashboard-0123abcd.wasm` or `/index.html`.
    pub path: &'static str,
    /// Uncompressed bytes.
    pub body: &'static [u8],
    /// gzip variant, if built.
    pub gzip: Option<&'static [u8]>,
    /// Brotli variant, if built.
    pub br: Option<&'static [u8]>,
    /// Strong ETag (quoted content hash).
    pub etag: &'static str,
}

include!(concat!(env!("OUT_DIR"), "/dashboard_assets.rs"));

/// The line served at `/` when the binary was built without the dashboard.
pub const NOT_BUILT: &str = "<!doctype html><meta charset=utf-8><title>watchpost</title><p>The dashboard is not built into this binary: build with <code>cargo run --release</code> (it builds the dashboard; it needs the wasm32 target: <code>rustup target add wasm32-unknown-unknown</code>), or run <code>cargo xtask dashboard</code> and rebuild. The API and <a href=\"/metrics\">/metrics</a> work without it.</p>\n";

/// The page served at `/` without a built dashboard: [`NOT_BUILT`], plus the build's
/// reason when it tried and failed.
pub fn not_built_page() -> String {
    let mut page = NOT_BUILT.to_string();
    if !BUILD_NOTE.is_empty() {
        let escaped = BUILD_NOTE
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;");
        page.push_str(&format!("<p>The build said:</p><pre>{escaped}</pre>\n"));
    }
    page
}

/// Client-side routes that serve `index.html`.
pub const CLIENT_ROUTES: &[&str] = &[
    "/",
    "/index.html",
    "/overview",
    "/alerts",
    "/alerts/{id}",
    "/history",
    "/rules",
    "/silences",
    "/cluster",
    "/postgres",
    "/heartbeats",
    "/agents",
];

/// Content security policy of the page: only our own scripts (and WASM compilation),
/// styles and connections.
const CSP: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// True when the binary carries a built dashboard.
pub fn is_built() -> bool {
    find(ASSETS, "/index.html").is_some()
}

fn find(assets: &'static [Asset], path: &str) -> Option<&'static Asset> {
    assets.iter().find(|a| a.path == path)
}

/// Routes for the page and its assets.
pub fn router() -> Router<AppState> {
    router_with(ASSETS)
}

/// Routes serving `assets` (a table like [`ASSETS`]).
pub fn router_with<S: Clone + Send + Sync + 'static>(assets: &'static [Asset]) -> Router<S> {
    let mut r = Router::new().route(
        "/assets/{file}",
        get(
            move |Path(file): Path<String>, headers: HeaderMap| async move {
                asset(assets, &file, &headers)
            },
        ),
    );
    for route in CLIENT_ROUTES {
        r = r.route(
            route,
            get(move |headers: HeaderMap| async move { index(assets, &headers) }),
        );
    }
    r
}

fn index(assets: &'static [Asset], headers: &HeaderMap) -> Response {
    match find(assets, "/index.html") {
        Some(a) => {
            let mut resp = serve(a, headers, "no-cache");
            let h = resp.headers_mut();
            h.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            );
            h.insert(
                header::REFERRER_POLICY,
                HeaderValue::from_static("same-origin"),
            );
            h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
            resp
        }
        None => (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            not_built_page(),
        )
            .into_response(),
    }
}

fn asset(assets: &'static [Asset], file: &str, headers: &HeaderMap) -> Response {
    let path = format!("/assets/{file}");
    match find(assets, &path) {
        Some(a) => serve(a, headers, "public, max-age=31536000, immutable"),
        None => ApiError::not_found(format!("no asset {path}")).into_response(),
    }
}

/// Content encodings we can serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Brotli.
    Br,
    /// gzip.
    Gzip,
    /// Uncompressed.
    Identity,
}

/// Picks the best encoding the client accepts among those available, honouring
/// q-values (`q=0` refuses) and `*`. Brotli wins ties (smaller).
pub fn pick_encoding(accept: Option<&str>, has_br: bool, has_gzip: bool) -> Encoding {
    let Some(accept) = accept else {
        return Encoding::Identity;
    };
    let mut q_br = None;
    let mut q_gzip = None;
    let mut q_star = None;
    for part in accept.split(',') {
        let mut it = part.split(';');
        let coding = it.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = it
            .filter_map(|p| p.trim().strip_prefix("q="))
            .filter_map(|v| v.trim().parse::<f32>().ok())
            .next()
            .unwrap_or(1.0);
        match coding.as_str() {
            "br" => q_br = Some(q),
            "gzip" | "x-gzip" => q_gzip = Some(q),
            "*" => q_star = Some(q),
            _ => {}
        }
    }
    let br = if has_br {
        q_br.or(q_star).unwrap_or(0.0)
    } else {
        0.0
    };
    let gz = if has_gzip {
        q_gzip.or(q_star).unwrap_or(0.0)
    } else {
        0.0
    };
    if br > 0.0 && br >= gz {
        Encoding::Br
    } else if gz > 0.0 {
        Encoding::Gzip
    } else {
        Encoding::Identity
    }
}

/// MIME type by file extension.
pub fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "wasm" => "application/wasm",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "json" | "map" => "application/json",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn serve(a: &'static Asset, headers: &HeaderMap, cache: &'static str) -> Response {
    let not_modified = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == a.etag || t.trim() == "*"));
    let accept = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok());
    let (body, encoding) = match pick_encoding(accept, a.br.is_some(), a.gzip.is_some()) {
        Encoding::Br => (a.br.unwrap_or(a.body), Some("br")),
        Encoding::Gzip => (a.gzip.unwrap_or(a.body), Some("gzip")),
        Encoding::Identity => (a.body, None),
    };
    let mut builder = Response::builder()
        .header(header::CACHE_CONTROL, cache)
        .header(header::ETAG, a.etag)
        .header(header::VARY, "Accept-Encoding")
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    if not_modified {
        return builder
            .status(StatusCode::NOT_MODIFIED)
            .body(Body::empty())
            .unwrap_or_else(|_| StatusCode::NOT_MODIFIED.into_response());
    }
    builder = builder.header(header::CONTENT_TYPE, content_type(a.path));
    if let Some(enc) = encoding {
        builder = builder.header(header::CONTENT_ENCODING, enc);
    }
    builder
        .body(Body::from(body))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;
    use tower::ServiceExt;

    static FAKE: &[Asset] = &[
        Asset {
            path: "/index.html",
            body: b"<!doctype html><p>app</p>",
            gzip: Some(b"gz-index"),
            br: None,
            etag: "\"i1\"",
        },
        Asset {
            path: "/assets/dashboard-0123.wasm",
            body: b"\0asm",
            gzip: Some(b"gz-wasm"),
            br: Some(b"br-wasm"),
            etag: "\"w1\"",
        },
    ];

    async fn get(
        app: &Router,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, HeaderMap, Vec<u8>) {
        let mut req = Request::get(path);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = app
            .clone()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, headers, body.to_vec())
    }

    #[tokio::test]
    async fn deep_links_serve_index_without_caching() {
        let app: Router = router_with(FAKE);
        for path in [
            "/",
            "/alerts",
            "/alerts/123",
            "/rules",
            "/silences",
            "/history",
            "/cluster",
            "/postgres",
            "/heartbeats",
            "/agents",
        ] {
            let (status, h, body) = get(&app, path, &[]).await;
            assert_eq!(status, 200, "{path}");
            assert_eq!(body, b"<!doctype html><p>app</p>", "{path}");
            assert_eq!(h[header::CACHE_CONTROL], "no-cache");
            assert_eq!(h[header::CONTENT_TYPE], "text/html; charset=utf-8");
            assert!(h.contains_key(header::CONTENT_SECURITY_POLICY));
        }
        let (status, _, body) = get(&app, "/", &[("accept-encoding", "gzip, br")]).await;
        assert_eq!(
            (status, body.as_slice()),
            (StatusCode::OK, &b"gz-index"[..])
        );
        let (status, _, body) = get(&app, "/alerts", &[("if-none-match", "\"i1\"")]).await;
        assert_eq!(status, StatusCode::NOT_MODIFIED);
        assert!(body.is_empty());
    }

    #[tokio::test]
    async fn hashed_assets_are_immutable_and_precompressed() {
        let app: Router = router_with(FAKE);
        let p = "/assets/dashboard-0123.wasm";
        let (status, h, body) = get(&app, p, &[("accept-encoding", "gzip, deflate, br")]).await;
        assert_eq!(status, 200);
        assert_eq!(body, b"br-wasm");
        assert_eq!(h[header::CONTENT_ENCODING], "br");
        assert_eq!(h[header::CONTENT_TYPE], "application/wasm");
        assert_eq!(h[header::VARY], "Accept-Encoding");
        assert_eq!(
            h[header::CACHE_CONTROL],
            "public, max-age=31536000, immutable"
        );
        let (_, h, body) = get(&app, p, &[("accept-encoding", "gzip")]).await;
        assert_eq!(body, b"gz-wasm");
        assert_eq!(h[header::CONTENT_ENCODING], "gzip");
        let (_, h, body) = get(&app, p, &[]).await;
        assert_eq!(body, b"\0asm");
        assert!(!h.contains_key(header::CONTENT_ENCODING));
        let (status, h, _) = get(&app, "/assets/missing.js", &[]).await;
        assert_eq!(status, 404);
        assert_eq!(h[header::CONTENT_TYPE], "application/json");
    }

    #[tokio::test]
    async fn without_a_build_the_page_says_how_to_build_it() {
        let app: Router = router_with(&[]);
        let (status, _, body) = get(&app, "/alerts/7", &[]).await;
        assert_eq!(status, 200);
        let text = String::from_utf8(body).unwrap();
        assert!(
            text.contains("cargo run --release") && text.contains("cargo xtask dashboard"),
            "{text}"
        );
        assert_eq!(text.lines().count(), 1);
    }

    #[test]
    fn encoding_negotiation() {
        use Encoding::*;
        assert_eq!(pick_encoding(None, true, true), Identity);
        assert_eq!(
            pick_encoding(Some("gzip, deflate, br, zstd"), true, true),
            Br
        );
        assert_eq!(pick_encoding(Some("gzip, deflate, br"), false, true), Gzip);
        assert_eq!(
            pick_encoding(Some("gzip;q=1.0, br;q=0.5"), true, true),
            Gzip
        );
        assert_eq!(
            pick_encoding(Some("br;q=0, gzip;q=0"), true, true),
            Identity
        );
        assert_eq!(pick_encoding(Some("*"), true, true), Br);
        assert_eq!(pick_encoding(Some("*;q=0, identity"), true, true), Identity);
        assert_eq!(pick_encoding(Some("identity"), true, true), Identity);
        assert_eq!(pick_encoding(Some("GZIP"), true, true), Gzip);
    }

    #[test]
    fn content_types() {
        assert_eq!(content_type("/assets/a-1.wasm"), "application/wasm");
        assert_eq!(
            content_type("/assets/a-1.js"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type("/index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("/x"), "application/octet-stream");
    }
}
