//! Added cost of the HTTP timing middleware per request: the same axum router with and
//! without `HttpMetricsLayer`, driven in-process (no sockets) so only the layer differs.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use criterion::{Criterion, criterion_group, criterion_main};
use tower::{Service, ServiceExt};
use watchpost::metrics::Metrics;
use watchpost::metrics::http::HttpMetricsLayer;

fn router() -> Router {
    Router::new()
        .route("/api/v1/alerts/{id}", get(|| async { "ok" }))
        .route("/health", get(|| async { "ok" }))
}

/// Polls a future that completes without waiting (axum handlers here do).
fn ready<F: Future>(f: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    let mut f = pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

fn call(svc: &mut Router) {
    let req = Request::get("/api/v1/alerts/123")
        .body(Body::empty())
        .unwrap();
    let resp = ready(async {
        let svc = <Router as ServiceExt<Request<Body>>>::ready(svc)
            .await
            .unwrap();
        svc.call(req).await.unwrap()
    });
    assert!(resp.status().is_success());
}

fn bench(c: &mut Criterion) {
    let metrics = Metrics::new().unwrap();
    let mut bare = router();
    // Any layer added with Router::layer costs axum a boxed service per route; the
    // pass-through layer isolates that from the timing middleware's own cost.
    let mut noop = router().layer(tower::util::MapRequestLayer::new(|r: Request<Body>| r));
    let mut timed = router().layer(HttpMetricsLayer::new(metrics.http.clone()));
    let mut g = c.benchmark_group("http_layer");
    g.bench_function("router_without_layer", |b| b.iter(|| call(&mut bare)));
    g.bench_function("router_with_passthrough_layer", |b| {
        b.iter(|| call(&mut noop))
    });
    g.bench_function("router_with_layer", |b| b.iter(|| call(&mut timed)));
    g.finish();
    let text = watchpost::metrics::encode_text(&metrics.gather());
    assert!(
        text.contains(r#"route="/api/v1/alerts/{id}""#),
        "layer did not record the template"
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
