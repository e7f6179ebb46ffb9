//! Timing middleware: counts and times every HTTP request by method, matched route
//! template and status.
//!
//! The `route` label is axum's [`MatchedPath`] (`/api/v1/alerts/{id}`), never the raw
//! path, so ids never become label values; requests no route matched share
//! [`UNMATCHED_ROUTE`]. Label children are resolved once per (method, route, status) and
//! cached, so the hot path is two read-locked map lookups, two atomic adds and a bucket
//! search.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::MatchedPath;
use axum::http::{Method, Request, Response, StatusCode};
use prometheus::{Histogram, IntCounter};
use rustc_hash::FxHashMap as HashMap;
use tower::{Layer, Service};

use super::HttpMetrics;

/// `route` label value of requests that matched no route.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Label children of one route, resolved once per (method, status).
struct RouteChildren {
    route: Box<str>,
    metrics: HttpMetrics,
    by_method_status: RwLock<HashMap<(Method, StatusCode), (Histogram, IntCounter)>>,
}

impl RouteChildren {
    fn record(&self, method: &Method, status: StatusCode, seconds: f64) {
        let key = (method.clone(), status);
        let cached = self
            .by_method_status
            .read()
            .ok()
            .and_then(|m| m.get(&key).cloned());
        let (histogram, counter) = match cached {
            Some(children) => children,
            None => {
                let children = (
                    self.metrics
                        .duration
                        .with_label_values(&[method.as_str(), &self.route]),
                    self.metrics.requests.with_label_values(&[
                        method.as_str(),
                        &self.route,
                        status.as_str(),
                    ]),
                );
                if let Ok(mut m) = self.by_method_status.write() {
                    m.insert(key, children.clone());
                }
                children
            }
        };
        histogram.observe(seconds);
        counter.inc();
    }
}

/// Per-route children, looked up by the matched route template.
struct Children {
    metrics: HttpMetrics,
    routes: RwLock<HashMap<Box<str>, Arc<RouteChildren>>>,
}

impl Children {
    fn route(&self, route: &str) -> Arc<RouteChildren> {
        if let Some(r) = self.routes.read().ok().and_then(|m| m.get(route).cloned()) {
            return r;
        }
        let entry = Arc::new(RouteChildren {
            route: route.into(),
            metrics: self.metrics.clone(),
            by_method_status: RwLock::new(HashMap::default()),
        });
        if let Ok(mut m) = self.routes.write() {
            return m.entry(route.into()).or_insert(entry).clone();
        }
        entry
    }
}

/// Tower layer recording `watchpost_http_*`. Add it with `Router::layer` so it wraps
/// every route (where [`MatchedPath`] is known) and the fallback.
#[derive(Clone)]
pub struct HttpMetricsLayer {
    children: Arc<Children>,
}

impl HttpMetricsLayer {
    /// A layer recording into `metrics`.
    pub fn new(metrics: HttpMetrics) -> Self {
        Self {
            children: Arc::new(Children {
                metrics,
                routes: RwLock::new(HashMap::default()),
            }),
        }
    }
}

impl<S> Layer<S> for HttpMetricsLayer {
    type Service = HttpMetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpMetricsService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service produced by [`HttpMetricsLayer`].
#[derive(Clone)]
pub struct HttpMetricsService<S> {
    inner: S,
    layer: HttpMetricsLayer,
}

impl<S, B, ResBody> Service<Request<B>> for HttpMetricsService<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let route = req
            .extensions()
            .get::<MatchedPath>()
            .map_or(UNMATCHED_ROUTE, MatchedPath::as_str);
        let route = self.layer.children.route(route);
        let method = req.method().clone();
        ResponseFuture {
            inner: self.inner.call(req),
            start: Instant::now(),
            method,
            route,
        }
    }
}

pin_project_lite::pin_project! {
    /// Records the request when the inner response future completes.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        start: Instant,
        method: Method,
        route: Arc<RouteChildren>,
    }
}

impl<F, ResBody, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        let status = match &result {
            Ok(resp) => resp.status(),
            Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let seconds = this.start.elapsed().as_secs_f64();
        this.route.record(this.method, status, seconds);
        Poll::Ready(result)
    }
}
