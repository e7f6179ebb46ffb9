//! From an alert of watchpost's rules to its chart: the rule's expression (from the
//! alert's `generatorURL`, `…/graph?g0.expr=…`, which the rule wrote when the alert
//! fired, so a later edit or reload of the rule does not change what the alert meant),
//! a top-level comparison split into the plotted side and the threshold, and a range
//! query of the plotted side through the PromQL engine.
//!
//! The whole plotted expression is queried: the alert's own series (the one whose
//! labels agree with the alert's) is drawn bold, the others of the same expression
//! faint, as context (one host above the line, or all of them?).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::{ChartError, ChartSeries, ChartSize, ChartSpec, POINTS, render_png};
use crate::promql::{Engine, Split, Value, split};

/// Longest a chart's query may run.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// What a chart is of: stored in an outbox row (not the PNG), drawn at send time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChartRef {
    /// The alert.
    pub alert_id: i64,
    /// Its `alertname` (the title).
    #[serde(default)]
    pub alertname: String,
    /// The rule's expression.
    pub expr: String,
    /// The alert's labels (pick its series among the expression's).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// When it started firing (unix ms).
    pub starts_at_ms: i64,
    /// When it resolved (unix ms); `None` while firing.
    #[serde(default)]
    pub resolved_at_ms: Option<i64>,
    /// The chart's end (unix ms): the notification's time, or the resolve.
    pub end_ms: i64,
}

impl ChartRef {
    /// The chart of an alert, when it comes from one of watchpost's rules (source
    /// `watchpost` with a `generatorURL` holding `g0.expr`); `resolved_at_ms` is set for
    /// a resolved alert, `now_ms` ends a firing one's chart.
    pub fn for_alert(
        alert_id: i64,
        source: &str,
        generator_url: Option<&str>,
        labels: &BTreeMap<String, String>,
        starts_at_ms: i64,
        resolved_at_ms: Option<i64>,
        now_ms: i64,
    ) -> Option<ChartRef> {
        if source != crate::alerts::rules::SOURCE {
            return None;
        }
        let expr = rule_expr(generator_url?)?;
        Some(ChartRef {
            alert_id,
            alertname: labels.get("alertname").cloned().unwrap_or_default(),
            expr,
            labels: labels.clone(),
            starts_at_ms,
            resolved_at_ms,
            end_ms: resolved_at_ms.unwrap_or(now_ms),
        })
    }
}

/// The `g0.expr` of a Prometheus graph link (`…/graph?g0.expr=…&g0.tab=1`).
pub fn rule_expr(generator_url: &str) -> Option<String> {
    let (path, query) = generator_url.split_once('?')?;
    if !path.ends_with("/graph") {
        return None;
    }
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "g0.expr")
        .map(|(_, v)| v.into_owned())
        .filter(|e| !e.trim().is_empty())
}

/// Why a chart's data could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SourceError {
    /// The stored expression does not parse (never expected: the rule's did).
    #[error("expression {expr:?}: {error}")]
    Parse {
        /// The expression.
        expr: String,
        /// The parser's message.
        error: String,
    },
    /// The query failed.
    #[error("query: {0}")]
    Query(String),
    /// Drawing failed.
    #[error(transparent)]
    Chart(#[from] ChartError),
}

/// Draws charts of rule alerts from the store through the PromQL engine.
#[derive(Clone)]
pub struct RuleCharts {
    engine: Engine,
    tz: Tz,
    window: Duration,
    size: ChartSize,
}

impl RuleCharts {
    /// Charts over `engine`, of `window` (default), `size` (default), times in `tz`.
    pub fn new(engine: Engine, tz: Tz, window: Duration, size: ChartSize) -> Self {
        RuleCharts {
            engine,
            tz,
            window,
            size,
        }
    }

    /// Charts as the config says: `telegram.chart_window`, `telegram.chart_size` and
    /// `notify.timezone` (each already validated; a bad value falls back to the default).
    pub fn from_config(config: &crate::config::Config, engine: Engine) -> Self {
        let tz = config.notify.timezone.parse::<Tz>().unwrap_or(Tz::UTC);
        let size = config.telegram.chart_size.parse().unwrap_or_default();
        RuleCharts::new(engine, tz, config.telegram.chart_window, size)
    }

    /// The default window.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// The default size.
    pub fn size(&self) -> ChartSize {
        self.size
    }

    /// What the chart of `r` shows, over `window` ending at `r.end_ms`.
    pub fn spec(
        &self,
        r: &ChartRef,
        window: Duration,
        size: ChartSize,
    ) -> Result<ChartSpec, SourceError> {
        let expr = crate::promql::parse(&r.expr).map_err(|error| SourceError::Parse {
            expr: r.expr.clone(),
            error,
        })?;
        let parts = split(&expr);
        let window_ms = i64::try_from(window.as_millis())
            .unwrap_or(i64::MAX)
            .clamp(60_000, 366 * 86_400_000);
        let (start, end) = (r.end_ms - window_ms, r.end_ms);
        let step = (window_ms / POINTS).max(1);
        let engine = self.engine.until(Instant::now() + QUERY_TIMEOUT);
        let matrix = match engine.range(&parts.plotted, start, end, step) {
            Ok(Value::Matrix(m)) => m,
            Ok(other) => {
                return Err(SourceError::Query(format!(
                    "a range query gave a {}",
                    other.type_name()
                )));
            }
            Err(e) => return Err(SourceError::Query(e.to_string())),
        };
        let threshold = parts
            .threshold
            .as_ref()
            .and_then(|t| match engine.instant(t, end) {
                Ok(Value::Scalar(v)) if v.is_finite() => Some(v),
                _ => None,
            });
        let own = own_series(matrix.iter().map(|s| &s.labels), &r.labels);
        let series = matrix
            .iter()
            .enumerate()
            .map(|(i, s)| ChartSeries {
                label: series_name(&s.labels),
                points: s.points.clone(),
                highlight: own == Some(i),
            })
            .collect();
        let title = title(r, &parts, threshold);
        Ok(ChartSpec {
            title,
            series,
            threshold,
            firing: vec![(r.starts_at_ms, r.resolved_at_ms.unwrap_or(end))],
            start_ms: start,
            end_ms: end,
            size,
            tz: self.tz,
        })
    }

    /// The PNG of `r` over `window` at `size`.
    pub fn png(
        &self,
        r: &ChartRef,
        window: Duration,
        size: ChartSize,
    ) -> Result<Vec<u8>, SourceError> {
        let spec = self.spec(r, window, size)?;
        Ok(render_png(&spec)?)
    }
}

/// `name{a="b", …}` as Prometheus shows a series (`{}` for no labels).
fn series_name(labels: &crate::tsdb::Labels) -> String {
    let rest: Vec<String> = labels
        .iter()
        .filter(|(k, _)| *k != "__name__")
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect();
    format!(
        "{}{{{}}}",
        labels.metric_name().unwrap_or_default(),
        rest.join(", ")
    )
}

/// `HighLoad: node_load1 > 4`.
fn title(r: &ChartRef, parts: &Split, threshold: Option<f64>) -> String {
    let plotted = crate::promql::to_query(&parts.plotted);
    let mut t = if r.alertname.is_empty() {
        plotted
    } else {
        format!("{}: {plotted}", r.alertname)
    };
    if let (Some(op), Some(v)) = (&parts.op, threshold) {
        t.push_str(&format!(" {op} {}", crate::promql::format_float(v)));
    }
    t
}

/// The index of the alert's own series: the one none of whose labels (but the metric
/// name) disagree with the alert's, agreeing on the most; `None` when every series
/// disagrees somewhere.
fn own_series<'a>(
    series: impl Iterator<Item = &'a crate::tsdb::Labels>,
    alert: &BTreeMap<String, String>,
) -> Option<usize> {
    let mut best: Option<(usize, usize)> = None;
    for (i, labels) in series.enumerate() {
        let mut agree = 0;
        let mut disagree = false;
        for (k, v) in labels.iter().filter(|(k, _)| *k != "__name__") {
            match alert.get(k) {
                Some(a) if a == v => agree += 1,
                _ => disagree = true,
            }
        }
        if !disagree && best.is_none_or(|(_, n)| agree > n) {
            best = Some((i, agree));
        }
    }
    best.map(|(i, _)| i)
}

/// Renders the chart of a [`ChartRef`]; what the Telegram transport holds, so notify's
/// senders need not know where the data comes from.
#[async_trait::async_trait]
pub trait ChartRenderer: Send + Sync {
    /// The PNG of `r` at the configured window and size.
    async fn render(&self, r: &ChartRef) -> Result<Vec<u8>, SourceError>;
}

/// The renderer the Telegram transport is given (`NotifyOptions::charts`).
#[derive(Clone)]
pub struct Charts(pub std::sync::Arc<dyn ChartRenderer>);

impl std::fmt::Debug for Charts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Charts(..)")
    }
}

/// Charts drawn at once, API requests and notifications together: each holds a bitmap
/// (up to 12 MB at 2000×2000) and a range query.
static DRAWING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// Runs `draw` on a blocking thread once one of the [`DRAWING`] permits is free.
pub async fn on_drawing_thread<T: Send + 'static>(
    draw: impl FnOnce() -> T + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    // The semaphore is never closed; without a permit, draw anyway.
    let _permit = DRAWING.acquire().await.ok();
    tokio::task::spawn_blocking(draw).await
}

#[async_trait::async_trait]
impl ChartRenderer for RuleCharts {
    /// Queries and draws on a blocking thread (a chart is CPU work of some ms).
    async fn render(&self, r: &ChartRef) -> Result<Vec<u8>, SourceError> {
        let (this, r) = (self.clone(), r.clone());
        on_drawing_thread(move || this.png(&r, this.window, this.size))
            .await
            .map_err(|e| SourceError::Query(format!("chart task: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tsdb::{Labels, Tsdb};

    fn expr_of(url: &str) -> Option<String> {
        rule_expr(url)
    }

    #[test]
    fn reads_the_expression_of_a_graph_link() {
        let link = crate::rules::template::graph_link("node_load1{job=\"n\"} > 0.5 & x", 1);
        assert_eq!(
            expr_of(&format!("http://h:9/wp{link}")).as_deref(),
            Some("node_load1{job=\"n\"} > 0.5 & x")
        );
        assert_eq!(expr_of("http://h/other?g0.expr=up"), None);
        assert_eq!(expr_of("http://h/graph?g1.expr=up"), None);
    }

    fn parts(q: &str) -> (String, Option<String>, Option<String>) {
        let s = split(&crate::promql::parse(q).unwrap());
        (
            s.plotted.to_string(),
            s.threshold.map(|t| t.to_string()),
            s.op,
        )
    }

    #[test]
    fn splits_comparisons() {
        assert_eq!(
            parts("rate(x[5m]) > 90"),
            ("rate(x[5m])".into(), Some("90".into()), Some(">".into()))
        );
        assert_eq!(
            parts("90 < up"),
            ("up".into(), Some("90".into()), Some(">".into()))
        );
        assert_eq!(
            parts("(up >= bool 2) and on() vector(1)"),
            ("up".into(), Some("2".into()), Some(">=".into()))
        );
        assert_eq!(parts("absent(up)"), ("absent(up)".into(), None, None));
        assert_eq!(
            parts(r#"label_replace(alive == 0, "instance", "$1", "node", "(.+)")"#),
            ("alive".into(), Some("0".into()), Some("==".into()))
        );
    }

    #[test]
    fn picks_the_alerts_own_series() {
        let a = Labels::new([("__name__", "load"), ("instance", "a")]);
        let b = Labels::new([("__name__", "load"), ("instance", "b")]);
        let alert = BTreeMap::from([
            ("alertname".to_string(), "High".to_string()),
            ("instance".to_string(), "b".to_string()),
        ]);
        assert_eq!(own_series([&a, &b].into_iter(), &alert), Some(1));
        let none = BTreeMap::from([("instance".to_string(), "c".to_string())]);
        assert_eq!(own_series([&a, &b].into_iter(), &none), None);
    }

    #[test]
    fn charts_a_stored_series_with_its_threshold() {
        let tsdb = Tsdb::new(Duration::from_secs(7200));
        let now = crate::store::now_ms();
        for i in 0..120 {
            for (inst, base) in [("a", 1.0), ("b", 5.0)] {
                let l = Labels::new([("__name__", "load"), ("instance", inst)]);
                tsdb.append(&l, now - 3_600_000 + i * 30_000, base + i as f64 / 100.0);
            }
        }
        let charts = RuleCharts::new(
            Engine::new(tsdb),
            chrono_tz::UTC,
            Duration::from_secs(3600),
            ChartSize::default(),
        );
        let r = ChartRef {
            alert_id: 1,
            alertname: "High".into(),
            expr: "load > 4".into(),
            labels: BTreeMap::from([("instance".to_string(), "b".to_string())]),
            starts_at_ms: now - 600_000,
            resolved_at_ms: None,
            end_ms: now,
        };
        let spec = charts.spec(&r, charts.window(), charts.size()).unwrap();
        assert_eq!(spec.threshold, Some(4.0));
        assert_eq!(spec.series.len(), 2);
        assert!(spec.series[1].highlight && !spec.series[0].highlight);
        assert!(spec.series[1].points.len() > 200);
        assert_eq!(spec.series[1].label, "load{instance=\"b\"}");
        assert_eq!(spec.title, "High: load > 4");
        assert_eq!(spec.firing, vec![(now - 600_000, now)]);
        assert!(charts.png(&r, charts.window(), charts.size()).is_ok());
    }
}
