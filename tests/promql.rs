//! PromQL results on fixed synthetic data, checked against values computed by hand
//! (following Prometheus' definitions, e.g. `extrapolatedRate`).

use std::time::Duration;

use watchpost::promql::{self, Engine, EvalError, Sample, Value};
use watchpost::tsdb::{Labels, METRIC_NAME, STALE_NAN, Tsdb};

const S: i64 = 1000;

fn labels(name: &str, pairs: &[(&str, &str)]) -> Labels {
    let mut all = vec![(METRIC_NAME, name)];
    all.extend_from_slice(pairs);
    Labels::new(all)
}

/// The shared fixture:
/// * `http_requests_total{job="api",instance="a"}`: every 15 s from 15 s to 300 s,
///   3, 6, …, 30 (at 150 s), then a reset: 2, 5, …, 29 (at 300 s).
/// * `late_counter_total`: every 10 s from 100 s to 300 s, 1, 11, …, 201.
/// * `req_duration_seconds_bucket{job,le}` for jobs a and b: every 15 s from 15 s to
///   300 s, bucket counts i × (1, 6, 9, 10) for le = 0.1, 0.5, 1, +Inf.
/// * `cpu{instance,mode}` (a/idle 10, a/user 20, b/idle 30) and `node_info{instance,version}`
///   (a → 1.2, b → 2.0), every 10 s from 0 to 300 s.
/// * `temp`: every 10 s from 0 s to 600 s, value = t in seconds.
fn fixture() -> Engine {
    let db = Tsdb::new(Duration::from_secs(3600));
    let c = labels("http_requests_total", &[("job", "api"), ("instance", "a")]);
    for i in 1..=20 {
        let v = if i <= 10 { 3 * i } else { 2 + 3 * (i - 11) };
        db.append(&c, i * 15 * S, v as f64);
    }
    let late = labels("late_counter_total", &[]);
    for (n, t) in (100..=300).step_by(10).enumerate() {
        db.append(&late, t * S, 1.0 + 10.0 * n as f64);
    }
    for job in ["a", "b"] {
        for (le, c) in [("0.1", 1.0), ("0.5", 6.0), ("1", 9.0), ("+Inf", 10.0)] {
            let l = labels("req_duration_seconds_bucket", &[("job", job), ("le", le)]);
            for i in 1..=20 {
                db.append(&l, i * 15 * S, i as f64 * c);
            }
        }
    }
    for t in (0..=300).step_by(10) {
        for (inst, mode, v) in [
            ("a", "idle", 10.0),
            ("a", "user", 20.0),
            ("b", "idle", 30.0),
        ] {
            db.append(
                &labels("cpu", &[("instance", inst), ("mode", mode)]),
                t * S,
                v,
            );
        }
        for (inst, version) in [("a", "1.2"), ("b", "2.0")] {
            db.append(
                &labels("node_info", &[("instance", inst), ("version", version)]),
                t * S,
                1.0,
            );
        }
    }
    for t in (0..=600).step_by(10) {
        db.append(&labels("temp", &[]), t * S, t as f64);
    }
    Engine::new(db)
}

fn instant(engine: &Engine, q: &str, t: i64) -> Value {
    let expr = promql::parse(q).unwrap_or_else(|e| panic!("{q}: {e}"));
    engine
        .instant(&expr, t)
        .unwrap_or_else(|e| panic!("{q}: {e}"))
}

fn vector(engine: &Engine, q: &str, t: i64) -> Vec<Sample> {
    match instant(engine, q, t) {
        Value::Vector(v) => v,
        other => panic!("{q}: expected a vector, got {other:?}"),
    }
}

fn scalar(engine: &Engine, q: &str, t: i64) -> f64 {
    match instant(engine, q, t) {
        Value::Scalar(v) => v,
        other => panic!("{q}: expected a scalar, got {other:?}"),
    }
}

/// The value of the only sample.
fn one(engine: &Engine, q: &str, t: i64) -> f64 {
    let v = vector(engine, q, t);
    assert_eq!(v.len(), 1, "{q}: {v:?}");
    v[0].value
}

fn err(engine: &Engine, q: &str, t: i64) -> EvalError {
    let expr = promql::parse(q).unwrap_or_else(|e| panic!("{q}: {e}"));
    engine.instant(&expr, t).expect_err(q)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

#[track_caller]
fn assert_close(got: f64, want: f64) {
    assert!(close(got, want), "got {got}, want {want}");
}

fn l(pairs: &[(&str, &str)]) -> Labels {
    Labels::new(pairs.iter().copied())
}

#[test]
fn rate_and_increase_handle_the_counter_reset_and_extrapolate() {
    let e = fixture();
    // Window (0 s, 300 s] holds all 20 samples: 3 … 30, reset, 2 … 29.
    // Raw increase 29 − 3 = 26, plus 30 for the reset = 56, over 285 s sampled.
    // Start gap 15 s < 1.1 × 15 s → extrapolate 15 s (zero point 285 × 3/56 ≈ 15.27 s is
    // further away); end gap 0. Increase = 56 × 300/285; rate = that / 300.
    let inc = one(&e, "increase(http_requests_total[5m])", 300 * S);
    assert_close(inc, 56.0 * 300.0 / 285.0);
    let rate = one(&e, "rate(http_requests_total[5m])", 300 * S);
    assert_close(rate, 56.0 / 285.0);
    // The metric name is dropped, other labels kept.
    let v = vector(&e, "rate(http_requests_total[5m])", 300 * S);
    assert_eq!(v[0].labels, l(&[("instance", "a"), ("job", "api")]));
    // delta does not correct resets: (29 − 3) × 300/285.
    assert_close(
        one(&e, "delta(http_requests_total[5m])", 300 * S),
        26.0 * 300.0 / 285.0,
    );
    // irate: the last two samples 26 → 29 over 15 s.
    assert_close(one(&e, "irate(http_requests_total[5m])", 300 * S), 0.2);
    // irate across the reset (samples at 150 s = 30 and 165 s = 2): 2 / 15.
    assert_close(
        one(&e, "irate(http_requests_total[1m])", 165 * S),
        2.0 / 15.0,
    );
    // resets() counts the one reset.
    assert_eq!(one(&e, "resets(http_requests_total[5m])", 300 * S), 1.0);
}

#[test]
fn rate_does_not_extrapolate_below_zero_and_caps_gaps() {
    let e = fixture();
    // late_counter_total: 21 samples 1 … 201 from 100 s to 300 s; window (0, 300 s].
    // Start gap 100 s ≥ 1.1 × 10 s → extrapolate only 5 s, but the zero point is
    // 200 × 1/200 = 1 s before the first sample → 1 s. Increase = 200 × 201/200.
    assert_close(one(&e, "increase(late_counter_total[5m])", 300 * S), 201.0);
    // A window ending 30 s after the last sample: end gap 30 s ≥ 11 s → 5 s.
    // Window (30 s, 330 s]: start gap 70 s → min(5 s, zero point 1 s) = 1 s.
    assert_close(
        one(&e, "increase(late_counter_total[5m])", 330 * S),
        200.0 * (200.0 + 1.0 + 5.0) / 200.0,
    );
    // Fewer than two samples: no result.
    assert!(vector(&e, "rate(late_counter_total[5s])", 300 * S).is_empty());
}

#[test]
fn histogram_quantile_over_rates() {
    let e = fixture();
    // Every bucket's rate has the same factor, so the quantiles are those of counts
    // (1, 6, 9, 10): q=0.5 → rank 5 in (0.1, 0.5] → 0.1 + 0.4 × 4/5 = 0.42.
    let v = vector(
        &e,
        "histogram_quantile(0.5, rate(req_duration_seconds_bucket[5m]))",
        300 * S,
    );
    assert_eq!(v.len(), 2);
    let mut jobs: Vec<_> = v
        .iter()
        .map(|s| (s.labels.get("job").unwrap().to_string(), s.value))
        .collect();
    jobs.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(jobs[0].0, "a");
    assert_close(jobs[0].1, 0.42);
    assert_close(jobs[1].1, 0.42);
    assert!(
        v.iter()
            .all(|s| s.labels.get("le").is_none() && s.labels.metric_name().is_none())
    );
    // Summed over jobs, by le: same shape. q=0.75 → rank 7.5 in (0.5, 1] → 0.75.
    assert_close(
        one(
            &e,
            "histogram_quantile(0.75, sum by (le) (rate(req_duration_seconds_bucket[5m])))",
            300 * S,
        ),
        0.75,
    );
    // q=0.99 → rank 9.9 lands in +Inf → the highest finite bound.
    assert_close(
        one(
            &e,
            "histogram_quantile(0.99, sum by (le) (req_duration_seconds_bucket))",
            300 * S,
        ),
        1.0,
    );
}

#[test]
fn group_left_and_group_right_copy_labels_from_the_one_side() {
    let e = fixture();
    let mut v = vector(
        &e,
        "cpu * on(instance) group_left(version) node_info",
        300 * S,
    );
    v.sort_by(|a, b| a.labels.cmp(&b.labels));
    let got: Vec<_> = v.iter().map(|s| (s.labels.clone(), s.value)).collect();
    assert_eq!(
        got,
        vec![
            (
                l(&[("instance", "a"), ("mode", "idle"), ("version", "1.2")]),
                10.0
            ),
            (
                l(&[("instance", "a"), ("mode", "user"), ("version", "1.2")]),
                20.0
            ),
            (
                l(&[("instance", "b"), ("mode", "idle"), ("version", "2.0")]),
                30.0
            ),
        ]
    );
    let mut v = vector(
        &e,
        "node_info * on(instance) group_right(version) cpu",
        300 * S,
    );
    v.sort_by(|a, b| a.labels.cmp(&b.labels));
    assert_eq!(v.len(), 3);
    assert_eq!(
        v[2].labels,
        l(&[("instance", "b"), ("mode", "idle"), ("version", "2.0")])
    );
    assert_eq!(v[2].value, 30.0);
    // Without group_left the many side is an error, as in Prometheus.
    let e2 = err(&e, "cpu * on(instance) node_info", 300 * S);
    assert!(
        e2.to_string()
            .contains("many-to-one matching must be explicit"),
        "{e2}"
    );
    let e3 = err(&e, "node_info * on(instance) cpu", 300 * S);
    assert!(
        e3.to_string().contains("many-to-many matching not allowed"),
        "{e3}"
    );
    // ignoring: one-to-one once mode is ignored on an aggregated side.
    let v = vector(
        &e,
        "cpu / ignoring(mode) group_left sum by (instance) (cpu)",
        300 * S,
    );
    let a_idle = v
        .iter()
        .find(|s| s.labels.get("instance") == Some("a") && s.labels.get("mode") == Some("idle"))
        .unwrap();
    assert_close(a_idle.value, 10.0 / 30.0);
}

#[test]
fn topk_bottomk_keep_labels_and_order() {
    let e = fixture();
    let v = vector(&e, "topk(2, cpu)", 300 * S);
    let got: Vec<_> = v.iter().map(|s| s.value).collect();
    assert_eq!(got, vec![30.0, 20.0]);
    assert_eq!(
        v[0].labels,
        labels("cpu", &[("instance", "b"), ("mode", "idle")])
    );
    let mut v = vector(&e, "bottomk by (instance) (1, cpu)", 300 * S);
    v.sort_by(|a, b| a.labels.cmp(&b.labels));
    let got: Vec<_> = v.iter().map(|s| s.value).collect();
    assert_eq!(got, vec![10.0, 30.0]);
    assert!(vector(&e, "topk(0, cpu)", 300 * S).is_empty());
}

#[test]
fn absent_builds_labels_from_equality_matchers() {
    let e = fixture();
    let v = vector(
        &e,
        r#"absent(nonexistent{job="x", instance=~"a.*"})"#,
        300 * S,
    );
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].labels, l(&[("job", "x")]));
    assert_eq!(v[0].value, 1.0);
    assert!(vector(&e, "absent(cpu)", 300 * S).is_empty());
    assert_eq!(one(&e, "absent_over_time(nonexistent[5m])", 300 * S), 1.0);
    assert!(vector(&e, "absent_over_time(temp[5m])", 300 * S).is_empty());
}

#[test]
fn offset_and_at_shift_the_evaluation_time() {
    let e = fixture();
    assert_eq!(one(&e, "temp", 300 * S), 300.0);
    assert_eq!(one(&e, "temp offset 1m", 300 * S), 240.0);
    assert_eq!(one(&e, "temp offset -1m", 300 * S), 360.0);
    // Between samples the latest one before counts.
    assert_eq!(one(&e, "temp offset 1m", 305 * S), 240.0);
    assert_eq!(one(&e, "temp @ 100", 300 * S), 100.0);
    assert_close(one(&e, "deriv(temp[1m] offset 2m)", 300 * S), 1.0);
    // max over the window [120 s, 180 s] (closed on the left, as Prometheus 2.x).
    assert_eq!(one(&e, "max_over_time(temp[1m] offset 2m)", 300 * S), 180.0);
    assert_eq!(one(&e, "min_over_time(temp[1m] offset 2m)", 300 * S), 120.0);
}

#[test]
fn staleness_and_lookback() {
    let db = Tsdb::new(Duration::from_secs(3600));
    let kept = labels("up", &[("instance", "kept")]);
    let dropped = labels("up", &[("instance", "dropped")]);
    let vanished = labels("up", &[("instance", "vanished")]);
    for t in (0..=60).step_by(10) {
        db.append(&kept, t * S, 1.0);
        db.append(&dropped, t * S, 1.0);
        db.append(&vanished, t * S, 1.0);
    }
    // `dropped` left the scrape at 70 s: a stale marker; `vanished` just stops.
    db.append(&dropped, 70 * S, STALE_NAN);
    for t in (70..=400).step_by(10) {
        db.append(&kept, t * S, 1.0);
    }
    let e = Engine::new(db);
    let names = |t: i64| {
        let mut v: Vec<String> = vector(&e, "up", t)
            .iter()
            .map(|s| s.labels.get("instance").unwrap().to_string())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(65 * S), vec!["dropped", "kept", "vanished"]);
    // Right after the stale marker the dropped series is gone…
    assert_eq!(names(70 * S), vec!["kept", "vanished"]);
    // …while the one without a marker lingers for the 5 m lookback (last sample 60 s),
    // whose start is included (Prometheus 2.x).
    assert_eq!(names(360 * S), vec!["kept", "vanished"]);
    assert_eq!(names(361 * S), vec!["kept"]);
    // Range functions skip stale markers: count_over_time sees 7 real samples.
    assert_eq!(
        one(
            &e,
            r#"count_over_time(up{instance="dropped"}[5m])"#,
            100 * S
        ),
        7.0
    );
}

#[test]
fn aggregations_by_and_without() {
    let e = fixture();
    let t = 300 * S;
    assert_eq!(one(&e, "sum(cpu)", t), 60.0);
    assert_eq!(one(&e, "avg(cpu)", t), 20.0);
    assert_eq!(one(&e, "count(cpu)", t), 3.0);
    assert_eq!(one(&e, "min(cpu)", t), 10.0);
    assert_eq!(one(&e, "max(cpu)", t), 30.0);
    assert_eq!(one(&e, "quantile(0.5, cpu)", t), 20.0);
    assert_eq!(one(&e, "quantile(0.25, cpu)", t), 15.0);
    assert_close(one(&e, "stddev(cpu)", t), (200.0f64 / 3.0).sqrt());
    assert_eq!(one(&e, "group(cpu)", t), 1.0);
    let mut v = vector(&e, "sum by (instance) (cpu)", t);
    v.sort_by(|a, b| a.labels.cmp(&b.labels));
    assert_eq!(v[0].labels, l(&[("instance", "a")]));
    assert_eq!(v[0].value, 30.0);
    assert_eq!(v[1].value, 30.0);
    let mut v = vector(&e, "sum without (instance) (cpu)", t);
    v.sort_by(|a, b| a.labels.cmp(&b.labels));
    assert_eq!(v[0].labels, l(&[("mode", "idle")]));
    assert_eq!(v[0].value, 40.0);
    assert_eq!(v[1].labels, l(&[("mode", "user")]));
    let v = vector(&e, r#"count_values("value", cpu)"#, t);
    assert_eq!(v.len(), 3);
    assert!(
        v.iter()
            .any(|s| s.labels == l(&[("value", "10")]) && s.value == 1.0)
    );
}

#[test]
fn comparisons_filter_or_return_bool() {
    let e = fixture();
    let t = 300 * S;
    let v = vector(&e, "cpu > 15", t);
    assert_eq!(v.len(), 2);
    assert!(
        v.iter().all(|s| s.labels.metric_name() == Some("cpu")),
        "filters keep the name"
    );
    let v = vector(&e, "cpu > bool 15", t);
    assert_eq!(v.len(), 3);
    assert!(v.iter().all(|s| s.labels.metric_name().is_none()));
    let mut vals: Vec<_> = v.iter().map(|s| s.value).collect();
    vals.sort_by(f64::total_cmp);
    assert_eq!(vals, vec![0.0, 1.0, 1.0]);
    // A scalar on the left keeps the vector's value.
    let v = vector(&e, "15 < cpu", t);
    assert!(v.iter().all(|s| s.value > 15.0));
    assert_eq!(scalar(&e, "1 < bool 2", t), 1.0);
    assert_eq!(scalar(&e, "2 * 3 + 2 ^ 3 % 5", t), 9.0);
    // Vector-vector comparison keeps the left sample where true.
    let v = vector(
        &e,
        r#"cpu > on(instance) group_left cpu{mode="idle"} * 0 + 15"#,
        t,
    );
    assert_eq!(v.len(), 2);
    assert_eq!(one(&e, "-temp", t), -300.0);
}

#[test]
fn set_operators() {
    let e = fixture();
    let t = 300 * S;
    assert_eq!(
        vector(&e, r#"cpu and on(instance) node_info{version="1.2"}"#, t).len(),
        2
    );
    assert_eq!(
        vector(&e, r#"cpu unless on(instance) node_info{version="1.2"}"#, t).len(),
        1
    );
    assert_eq!(vector(&e, r#"cpu{mode="idle"} or cpu"#, t).len(), 3);
    assert_eq!(
        vector(&e, r#"cpu{mode="idle"} or on(instance) cpu"#, t).len(),
        2
    );
    assert_eq!(vector(&e, r#"cpu{instance="a"} or node_info"#, t).len(), 4);
}

#[test]
fn over_time_functions_and_math() {
    let e = fixture();
    let t = 300 * S;
    // temp in [240 s, 300 s]: 240 … 300 (closed on the left, as Prometheus 2.x).
    assert_eq!(one(&e, "avg_over_time(temp[1m])", t), 270.0);
    assert_eq!(one(&e, "sum_over_time(temp[1m])", t), 1890.0);
    assert_eq!(one(&e, "count_over_time(temp[1m])", t), 7.0);
    assert_eq!(one(&e, "last_over_time(temp[1m])", t), 300.0);
    assert_eq!(one(&e, "quantile_over_time(0.5, temp[1m])", t), 270.0);
    assert_close(one(&e, "deriv(temp[5m])", t), 1.0);
    assert_close(one(&e, "predict_linear(temp[5m], 60)", t), 360.0);
    assert_eq!(one(&e, "changes(temp[1m])", t), 6.0);
    // last_over_time keeps the metric name; other range functions drop it.
    assert_eq!(
        vector(&e, "last_over_time(temp[1m])", t)[0]
            .labels
            .metric_name(),
        Some("temp")
    );
    assert_eq!(
        vector(&e, "avg_over_time(temp[1m])", t)[0]
            .labels
            .metric_name(),
        None
    );
    assert_eq!(one(&e, "abs(temp - 310)", t), 10.0);
    assert_eq!(one(&e, "ceil(temp / 7)", t), 43.0);
    assert_eq!(one(&e, "floor(temp / 7)", t), 42.0);
    assert_eq!(one(&e, "round(temp / 7)", t), 43.0);
    assert_eq!(one(&e, "round(temp, 7)", t), 301.0);
    assert_eq!(one(&e, "clamp_max(temp, 100)", t), 100.0);
    assert_eq!(one(&e, "clamp_min(temp, 1000)", t), 1000.0);
    assert_eq!(scalar(&e, "time()", t), 300.0);
    assert_eq!(scalar(&e, "scalar(temp)", t), 300.0);
    assert!(scalar(&e, "scalar(cpu)", t).is_nan());
    assert_eq!(one(&e, "vector(7)", t), 7.0);
    assert_eq!(one(&e, "timestamp(temp)", 305 * S), 300.0);
    assert_eq!(one(&e, "max_over_time(temp[1m:10s])", t), 300.0);
    assert_eq!(one(&e, "min_over_time(rate(temp[30s])[1m:15s])", t), 1.0);
    let v = vector(
        &e,
        r#"label_replace(cpu{mode="user"}, "host", "h-$1", "instance", "(.*)")"#,
        t,
    );
    assert_eq!(v[0].labels.get("host"), Some("h-a"));
    assert_eq!(v[0].labels.metric_name(), Some("cpu"));
    let v = vector(
        &e,
        r#"label_join(cpu{mode="user"}, "id", "/", "instance", "mode")"#,
        t,
    );
    assert_eq!(v[0].labels.get("id"), Some("a/user"));
}

#[test]
fn range_queries_match_instant_queries_at_every_step() {
    let e = fixture();
    let q = "sum by (job) (rate(req_duration_seconds_bucket[1m])) + on(job) group_left() (0 * max by (job) (req_duration_seconds_bucket))";
    let expr = promql::parse(q).unwrap();
    let Value::Matrix(m) = e.range(&expr, 60 * S, 300 * S, 15 * S).unwrap() else {
        panic!("range query returns a matrix");
    };
    assert_eq!(m.len(), 2);
    for series in &m {
        assert_eq!(series.points.len(), 17);
        for &(t, v) in &series.points {
            let want = vector(&e, q, t)
                .into_iter()
                .find(|s| s.labels == series.labels)
                .unwrap();
            assert_close(v, want.value);
        }
    }
    // A scalar becomes one series without labels; series are sorted by labels.
    let Value::Matrix(m) = e
        .range(&promql::parse("time()").unwrap(), 0, 20 * S, 10 * S)
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(m.len(), 1);
    assert!(m[0].labels.is_empty());
    assert_eq!(m[0].points, vec![(0, 0.0), (10_000, 10.0), (20_000, 20.0)]);
    // Gaps appear where the series has no sample within the lookback.
    let Value::Matrix(m) = e
        .range(
            &promql::parse("late_counter_total").unwrap(),
            0,
            300 * S,
            100 * S,
        )
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(
        m[0].points.iter().map(|p| p.0).collect::<Vec<_>>(),
        vec![100_000, 200_000, 300_000]
    );
}

#[test]
fn unsupported_constructs_fail_naming_them() {
    let e = fixture();
    for (q, name) in [
        ("histogram_count(cpu)", "histogram_count"),
        ("limitk(1, cpu)", "limitk"),
        (
            "double_exponential_smoothing(temp[5m], 0.5, 0.5)",
            "double_exponential_smoothing",
        ),
        ("sort_by_label(cpu, \"mode\")", "sort_by_label"),
        (r#"cpu{mode="idle" or mode="user"}"#, "`or`"),
        ("cpu + fill(0) node_info", "fill"),
    ] {
        let Ok(expr) = promql::parse(q) else { continue };
        let err = e.instant(&expr, 300 * S).expect_err(q);
        assert!(matches!(err, EvalError::Unsupported(_)), "{q}: {err:?}");
        assert!(err.to_string().contains(name), "{q}: {err}");
        assert!(promql::check_supported(&expr).is_err());
    }
}

#[test]
fn range_query_limits() {
    let e = fixture();
    let expr = promql::parse("temp").unwrap();
    let err = e.range(&expr, 0, 20_000 * S, S).unwrap_err();
    assert!(err.to_string().contains("11,000 points"), "{err}");
    assert!(matches!(
        e.range(&expr, 10, 0, S),
        Err(EvalError::BadQuery(_))
    ));
    assert!(matches!(
        e.range(&expr, 0, 10, 0),
        Err(EvalError::BadQuery(_))
    ));
    let m = promql::parse("temp[5m]").unwrap();
    assert!(
        e.range(&m, 0, 10 * S, S)
            .unwrap_err()
            .to_string()
            .contains("range vector")
    );
    let dup = promql::parse(r#"label_replace(cpu, "mode", "x", "", "")"#).unwrap();
    assert!(
        e.instant(&dup, 300 * S)
            .unwrap_err()
            .to_string()
            .contains("same labelset")
    );
}

#[test]
fn a_series_dropped_from_the_self_scrape_disappears_from_instant_queries() {
    use watchpost::metrics::Metrics;
    use watchpost::tsdb::scrape::SelfScraper;

    let metrics = Metrics::new().unwrap();
    let db = Tsdb::new(Duration::from_secs(3600));
    let engine = Engine::new(db.clone());
    let mut scraper = SelfScraper::new(db);
    let queue = |name: &str| metrics.batch.depth.with_label_values(&[name]);
    queue("alerts").set(3);
    queue("outbox").set(4);
    scraper.scrape(&metrics.gather(), 10 * S);
    let q = "watchpost_batch_queue_depth";
    assert_eq!(vector(&engine, q, 11 * S).len(), 2);
    metrics
        .batch
        .depth
        .remove_label_values(&["outbox"])
        .unwrap();
    scraper.scrape(&metrics.gather(), 20 * S);
    // The next scrape wrote a stale marker: the series is gone at once, not after 5 m.
    let v = vector(&engine, q, 21 * S);
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].labels.get("queue"), Some("alerts"));
    assert_eq!(v[0].value, 3.0);
    // Before the marker it still answers.
    assert_eq!(vector(&engine, q, 19 * S).len(), 2);
    // And it comes back when it reappears.
    queue("outbox").set(1);
    scraper.scrape(&metrics.gather(), 30 * S);
    assert_eq!(vector(&engine, q, 31 * S).len(), 2);
}
