//! Property tests of every parser that input reaches: the three webhook formats and
//! `/api/v2/alerts`, rule files, PromQL (parsed and evaluated), templates (parsed and
//! expanded), silence matchers, the bot's commands, and the HTTP API as a whole.
//! Arbitrary input — random bytes, and grammar-shaped input that reaches deep into
//! each parser — never panics, and over HTTP never yields a 5xx.
//!
//! `cargo test` runs proptest's default number of cases per property (256, or
//! `PROPTEST_CASES`); `scripts/fuzz.sh` runs 10⁶ per parser.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use serde_json::{Value, json};
use watchpost::alerts::ingest::{alertmanager, generic, ntopng};
use watchpost::promql::{Engine, EngineOptions};
use watchpost::rules::template::{Context, Template, TemplateData};
use watchpost::silence::matcher::Matchers;
use watchpost::tsdb::{Labels, Tsdb};

const NOW: i64 = 1_700_000_000_000;

/// Numbers where arithmetic breaks: limits, zero, floats far outside i64.
fn edge_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!(i64::MAX)),
        Just(json!(i64::MIN)),
        Just(json!(u64::MAX)),
        Just(json!(0)),
        Just(json!(-1)),
        Just(json!(1e300)),
        Just(json!(-1e300)),
        Just(json!(1.5)),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("JSON has no NaN", |f| f.is_finite())
            .prop_map(|f| json!(f)),
    ]
}

/// Strings that matter to the formats: times, severities, NUL, very long, Unicode.
fn edge_string() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("2023-11-14T22:00:00Z".to_string()),
        Just("0001-01-01T00:00:00Z".to_string()),
        Just("9999-12-31T23:59:59Z".to_string()),
        Just("-9999-01-01T00:00:00Z".to_string()),
        Just("firing".to_string()),
        Just("resolved".to_string()),
        Just("critical".to_string()),
        Just("engage".to_string()),
        Just("release".to_string()),
        Just("\u{0}".to_string()),
        Just("x".repeat(20_000)),
        "\\PC{0,20}",
        ".{0,12}",
    ]
}

/// JSON values built from the formats' own field names, nested a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let keys = prop_oneof![
        Just("message"),
        Just("severity"),
        Just("source"),
        Just("labels"),
        Just("annotations"),
        Just("starts_at"),
        Just("ends_at"),
        Just("startsAt"),
        Just("endsAt"),
        Just("status"),
        Just("alerts"),
        Just("version"),
        Just("alertname"),
        Just("generatorURL"),
        Just("action"),
        Just("tstamp"),
        Just("tstamp_end"),
        Just("alert_tstamp"),
        Just("score"),
        Just("alert_id"),
        Just("entity_val"),
        Just("ip"),
        Just("name"),
        Just("json"),
        Just("ifid"),
        Just("bad-name"),
        Just(""),
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        edge_number(),
        edge_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((keys.clone(), inner), 0..8).prop_map(|kv| {
                Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            }),
        ]
    })
}

/// A body: JSON built from the formats' vocabulary, or raw bytes.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        1 => prop::collection::vec(any::<u8>(), 0..256),
        1 => (json_value(), "\\PC{0,8}").prop_map(|(v, tail)| {
            let mut b = serde_json::to_vec(&v).unwrap();
            b.extend_from_slice(tail.as_bytes());
            b
        }),
    ]
}

/// PromQL built from its own tokens, so most inputs parse and get evaluated.
fn promql() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("up"),
        Just("x"),
        Just("{"),
        Just("}"),
        Just("("),
        Just(")"),
        Just("["),
        Just("]"),
        Just("5m"),
        Just("1ms"),
        Just(":"),
        Just(","),
        Just("job=\"a\""),
        Just("__name__=~\".+\""),
        Just("+"),
        Just("/"),
        Just("^"),
        Just("%"),
        Just(" and "),
        Just(" or "),
        Just(" unless "),
        Just(" on(job) "),
        Just(" group_left "),
        Just(" by (job) "),
        Just(" offset -1h "),
        Just(" @ 1e300 "),
        Just(" @ end() "),
        Just("sum"),
        Just("rate"),
        Just("histogram_quantile"),
        Just("label_replace"),
        Just("topk"),
        Just("count_values"),
        Just("quantile_over_time"),
        Just("predict_linear"),
        Just("absent"),
        Just("vector"),
        Just("scalar"),
        Just("time()"),
        Just("1"),
        Just("-1e308"),
        Just("NaN"),
        Just("Inf"),
        Just("\"s\""),
        Just("0x7fffffffffffffff"),
    ];
    prop_oneof![
        4 => prop::collection::vec(token, 1..24).prop_map(|t| t.concat()),
        1 => "\\PC{0,64}",
    ]
}

/// A store with a few series, for evaluation.
fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let tsdb = Tsdb::new(Duration::from_secs(3600));
        for (job, base) in [("a", 1.0), ("b", 5.0)] {
            for name in ["up", "x"] {
                let labels: BTreeMap<String, String> = [
                    ("__name__".to_string(), name.to_string()),
                    ("job".to_string(), job.to_string()),
                ]
                .into();
                let labels = Labels::from(labels);
                for i in 0..120 {
                    tsdb.append(&labels, NOW - 600_000 + i * 5_000, base + i as f64);
                }
            }
        }
        let opts = EngineOptions {
            timeout: Duration::from_secs(2),
            max_samples: 1_000_000,
            ..Default::default()
        };
        Engine::with_options(tsdb, opts)
    })
}

fn template_source() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("{{"),
        Just("}}"),
        Just("{{-"),
        Just("-}}"),
        Just(" $labels.job "),
        Just(" $value "),
        Just(" .Labels "),
        Just(" $externalURL "),
        Just(" | "),
        Just(" humanize "),
        Just(" humanizeDuration "),
        Just(" humanize1024 "),
        Just(" printf \"%d %s %v %x %q %-9.3f\" "),
        Just(" title "),
        Just(" toUpper "),
        Just(" if "),
        Just(" else "),
        Just(" end "),
        Just(" range "),
        Just(" with "),
        Just(" $x := "),
        Just(" $x "),
        Just(" index "),
        Just(" len "),
        Just(" 1e300 "),
        Just(" -9223372036854775808 "),
        Just(" \"s\" "),
        Just("text"),
        Just("("),
        Just(")"),
    ];
    prop_oneof![
        4 => prop::collection::vec(token, 0..20).prop_map(|t| t.concat()),
        1 => "\\PC{0,40}",
    ]
}

fn rule_file() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        Just("groups:"),
        Just("- name: g"),
        Just("  interval: 0s"),
        Just("  interval: 99999999999999999y"),
        Just("  rules:"),
        Just("  - alert: A"),
        Just("  - record: job:x:sum"),
        Just("    expr: up == 0"),
        Just("    expr: ((("),
        Just("    for: 5m"),
        Just("    for: -1s"),
        Just("    keep_firing_for: 1y"),
        Just("    labels: {severity: critical}"),
        Just("    annotations: {summary: '{{ $labels.job'}"),
        Just("    annotations: {summary: '{{ $value | humanize }}'}"),
        Just("  - {}"),
        Just("- &a [*a]"),
        Just("\t"),
        Just(": :"),
    ];
    prop_oneof![
        4 => prop::collection::vec(line, 0..14).prop_map(|l| l.join("\n")),
        1 => "\\PC{0,80}",
    ]
}

fn bot_message() -> impl Strategy<Value = String> {
    let word = prop_oneof![
        Just("/alerts"),
        Just("/alert"),
        Just("/ack"),
        Just("/silence"),
        Just("/unsilence"),
        Just("/report"),
        Just("/status"),
        Just("/help"),
        Just("@bot"),
        Just("critical"),
        Just("9223372036854775807"),
        Just("-1"),
        Just("alertname=\"x\""),
        Just("instance=~\"web-.*\""),
        Just("a!=b"),
        Just("300000y"),
        Just("2h"),
        Just("1ms"),
        Just("0s"),
        Just("99999999999999999999d"),
        Just("comment"),
        Just("{"),
    ];
    prop_oneof![
        4 => prop::collection::vec(word, 1..6).prop_map(|w| w.join(" ")),
        1 => "/\\PC{0,40}",
    ]
}

fn matcher_input() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("{"),
        Just("}"),
        Just("a"),
        Just("alertname"),
        Just("="),
        Just("!="),
        Just("=~"),
        Just("!~"),
        Just("\"x\""),
        Just("\"(\""),
        Just("\".*\""),
        Just(","),
        Just("\\"),
        Just("\""),
        Just(" "),
        Just("é"),
    ];
    prop_oneof![
        4 => prop::collection::vec(token, 0..16).prop_map(|t| t.concat()),
        1 => "\\PC{0,40}",
    ]
}

proptest! {
    #[test]
    fn generic_api_never_panics(b in body()) {
        if let Ok(p) = generic::parse(&b, 100) {
            for a in p.alerts {
                let _ = a.prepare();
            }
        }
    }

    #[test]
    fn alertmanager_formats_never_panic(b in body()) {
        let both = [alertmanager::parse_webhook(&b, 100, NOW), alertmanager::parse_v2(&b, 100, NOW)];
        for p in both.into_iter().flatten() {
            for a in p.alerts {
                let _ = a.prepare();
            }
        }
    }

    #[test]
    fn ntopng_never_panics(b in body(), alerts in prop::collection::vec(json_value(), 0..4)) {
        let wrapped = serde_json::to_vec(&json!({"version": "0.2", "alerts": alerts})).unwrap();
        for b in [b, wrapped] {
            if let Ok(payload) = ntopng::parse_envelope(&b)
                && let Ok(list) = ntopng::convert(&payload, 100, NOW)
            {
                for a in list.alerts {
                    let _ = a.prepare();
                }
            }
        }
    }

    #[test]
    fn promql_parses_and_evaluates_without_panics(q in promql()) {
        if let Ok(expr) = watchpost::promql::parse(&q) {
            let e = engine();
            let _ = e.instant(&expr, NOW);
            let _ = e.range(&expr, NOW - 300_000, NOW, 15_000);
        }
    }

    #[test]
    fn rule_files_never_panic(src in rule_file()) {
        let _ = watchpost::rules::file::parse_rule_file("fuzz.yml", &src);
    }

    #[test]
    fn templates_parse_and_expand_without_panics(src in template_source(), value in any::<f64>()) {
        if let Ok(t) = Template::parse(&src) {
            let ctx = Context { external_url: "http://wp", query: None, escape: None, ..Context::default() };
            let data = TemplateData { value, ..Default::default() };
            let _ = t.execute(&ctx, Arc::new(data));
        }
    }

    #[test]
    fn matchers_never_panic(input in matcher_input()) {
        if let Ok(m) = Matchers::parse(&input) {
            let labels: BTreeMap<String, String> = [("alertname".to_string(), "x".to_string())].into();
            let _ = watchpost::silence::matcher::all_match(&m.0, &labels);
        }
    }

    #[test]
    fn bot_commands_never_panic(text in bot_message()) {
        if let Some((name, _, args)) = watchpost::bot::commands::split_command(&text) {
            let _ = watchpost::bot::commands::parse(&name, &args);
        }
    }
}

/// The whole service in this process, for the HTTP property.
fn app() -> &'static (tokio::runtime::Runtime, common::TestApp) {
    static APP: OnceLock<(tokio::runtime::Runtime, common::TestApp)> = OnceLock::new();
    APP.get_or_init(|| {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let dir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
        let url = format!("sqlite://{}/fuzz.db", dir.path().display());
        let mut config = common::test_config(&url);
        config.alerts.rate_limit_per_second = 1_000_000;
        config.alerts.rate_limit_burst = 1_000_000;
        let app = rt.block_on(common::TestApp::start(config));
        (rt, app)
    })
}

fn endpoint() -> impl Strategy<Value = (&'static str, &'static str)> {
    prop_oneof![
        Just(("POST", "/api/v1/alerts")),
        Just(("POST", "/api/v2/alerts")),
        Just(("POST", "/api/v1/webhooks/alertmanager")),
        Just(("POST", "/api/v1/webhooks/ntopng")),
        Just(("POST", "/api/v1/silences")),
        Just(("POST", "/api/v1/alerts/1/ack")),
        Just(("POST", "/api/v1/query")),
        Just(("GET", "/api/v1/alerts")),
        Just(("GET", "/api/v1/alerts/stats")),
        Just(("GET", "/api/v1/reports")),
        Just(("GET", "/api/v1/query_range")),
        Just(("GET", "/api/v1/series")),
        Just(("GET", "/api/v1/label/job/values")),
    ]
}

fn http_cases() -> u32 {
    std::env::var("WATCHPOST_FUZZ_HTTP_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(http_cases()))]

    /// Any body or query string on any endpoint: a 2xx or a 4xx, never a 5xx.
    #[test]
    fn the_api_never_answers_5xx(
        (method, path) in endpoint(),
        b in body(),
        query in prop::collection::vec((
            prop_oneof![Just("query"), Just("start"), Just("end"), Just("step"), Just("time"),
                        Just("window"), Just("since"), Just("limit"), Just("cursor"), Just("label"),
                        Just("state"), Just("match[]"), Just("timeout")],
            prop_oneof![edge_string(), promql(), Just("1e300".to_string()), Just("-9e18".to_string())],
        ), 0..4),
    ) {
        let (rt, app) = app();
        let started = Instant::now();
        let status = rt.block_on(async {
            let url = app.url(path);
            let req = match method {
                "GET" => app.client.get(url).query(&query),
                _ if path == "/api/v1/query" => app.client.post(url).form(&query),
                _ => app.client.post(url).query(&query).header("content-type", "application/json").body(b.clone()),
            };
            req.timeout(Duration::from_secs(30)).send().await.map(|r| r.status().as_u16())
        });
        let status = status.expect("the service answers");
        prop_assert!(status < 500, "{method} {path} answered {status} to {:?}", String::from_utf8_lossy(&b));
        prop_assert!(started.elapsed() < Duration::from_secs(30));
    }
}
