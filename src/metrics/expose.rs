//! Exposition: Prometheus text format 0.0.4 and OpenMetrics 1.0.

use std::fmt::Write;

use prometheus::proto::{LabelPair, MetricFamily, MetricType};
use prometheus::{Encoder, TextEncoder};

/// Content type of the Prometheus text format.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Content type of OpenMetrics 1.0.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Encodes families in the Prometheus text format 0.0.4. The crate's encoder cannot
/// write untyped families (postgres_exporter's counters without `_total`): those are
/// written here.
pub fn encode_text(families: &[MetricFamily]) -> String {
    let untyped = |f: &MetricFamily| f.get_field_type() == MetricType::UNTYPED;
    let mut buf = Vec::with_capacity(16 * 1024);
    let encoded = if families.iter().any(untyped) {
        let typed: Vec<MetricFamily> = families.iter().filter(|f| !untyped(f)).cloned().collect();
        TextEncoder::new().encode(&typed, &mut buf)
    } else {
        TextEncoder::new().encode(families, &mut buf)
    };
    if let Err(e) = encoded {
        tracing::error!(error = %e, "encoding metrics failed");
    }
    let mut out = String::from_utf8(buf).unwrap_or_default();
    for family in families
        .iter()
        .filter(|f| untyped(f) && !f.get_metric().is_empty())
    {
        let name = family.name();
        let help = family.help().replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} untyped");
        for m in family.get_metric() {
            #[allow(deprecated)] // untyped is how the crate models it
            let v = m.get_untyped().get_value();
            sample(&mut out, name, m.get_label(), None, v);
        }
    }
    out
}

/// Encodes families in OpenMetrics 1.0 text, ending with `# EOF`.
pub fn encode_openmetrics(families: &[MetricFamily]) -> String {
    let mut out = String::with_capacity(16 * 1024);
    for family in families {
        if family.get_metric().is_empty() {
            continue;
        }
        let name = family.name();
        let (kind, base) = match family.get_field_type() {
            MetricType::COUNTER => ("counter", name.strip_suffix("_total").unwrap_or(name)),
            MetricType::GAUGE => ("gauge", name),
            MetricType::HISTOGRAM => ("histogram", name),
            MetricType::SUMMARY => ("summary", name),
            MetricType::UNTYPED => ("unknown", name),
        };
        let _ = writeln!(out, "# TYPE {base} {kind}");
        if !family.help().is_empty() {
            let _ = writeln!(out, "# HELP {base} {}", escape_help(family.help()));
        }
        for m in family.get_metric() {
            let labels = m.get_label();
            match family.get_field_type() {
                MetricType::COUNTER => sample(
                    &mut out,
                    &format!("{base}_total"),
                    labels,
                    None,
                    m.get_counter().get_value(),
                ),
                MetricType::GAUGE => {
                    sample(&mut out, base, labels, None, m.get_gauge().get_value())
                }
                #[allow(deprecated)] // untyped is how the crate models OpenMetrics' `unknown`
                MetricType::UNTYPED => {
                    sample(&mut out, base, labels, None, m.get_untyped().get_value())
                }
                MetricType::HISTOGRAM => {
                    let h = m.get_histogram();
                    let bucket = format!("{base}_bucket");
                    let mut saw_inf = false;
                    for b in h.get_bucket() {
                        saw_inf |= b.upper_bound().is_infinite();
                        let le = float(b.upper_bound());
                        sample(
                            &mut out,
                            &bucket,
                            labels,
                            Some(("le", &le)),
                            b.cumulative_count() as f64,
                        );
                    }
                    if !saw_inf {
                        sample(
                            &mut out,
                            &bucket,
                            labels,
                            Some(("le", "+Inf")),
                            h.get_sample_count() as f64,
                        );
                    }
                    sample(
                        &mut out,
                        &format!("{base}_count"),
                        labels,
                        None,
                        h.get_sample_count() as f64,
                    );
                    sample(
                        &mut out,
                        &format!("{base}_sum"),
                        labels,
                        None,
                        h.get_sample_sum(),
                    );
                }
                MetricType::SUMMARY => {
                    let s = m.get_summary();
                    for q in s.get_quantile() {
                        let quantile = float(q.quantile());
                        sample(
                            &mut out,
                            base,
                            labels,
                            Some(("quantile", &quantile)),
                            q.value(),
                        );
                    }
                    sample(
                        &mut out,
                        &format!("{base}_count"),
                        labels,
                        None,
                        s.sample_count() as f64,
                    );
                    sample(
                        &mut out,
                        &format!("{base}_sum"),
                        labels,
                        None,
                        s.sample_sum(),
                    );
                }
            }
        }
    }
    out.push_str("# EOF\n");
    out
}

fn sample(
    out: &mut String,
    name: &str,
    labels: &[LabelPair],
    extra: Option<(&str, &str)>,
    value: f64,
) {
    out.push_str(name);
    if !labels.is_empty() || extra.is_some() {
        out.push('{');
        let mut first = true;
        for (n, v) in labels.iter().map(|l| (l.name(), l.value())).chain(extra) {
            if !first {
                out.push(',');
            }
            first = false;
            let _ = write!(out, "{n}=\"{}\"", escape_label(v));
        }
        out.push('}');
    }
    out.push(' ');
    out.push_str(&float(value));
    out.push('\n');
}

/// OpenMetrics number: `+Inf`, `-Inf`, `NaN`, integers with `.0`, else shortest float.
fn float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.1}")
    } else {
        format!("{v}")
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(deprecated)]
    fn untyped_families_keep_their_names_in_both_formats() {
        let mut u = prometheus::proto::Untyped::default();
        u.set_value(7.0);
        let mut label = LabelPair::default();
        label.set_name("datname".into());
        label.set_value("app".into());
        let mut m = prometheus::proto::Metric::from_label(vec![label]);
        m.set_untyped(u);
        let mut f = MetricFamily::default();
        f.set_name("pg_stat_database_xact_commit".into());
        f.set_help("Commits".into());
        f.set_field_type(MetricType::UNTYPED);
        f.set_metric(vec![m]);
        let text = encode_text(std::slice::from_ref(&f));
        assert!(
            text.contains("# TYPE pg_stat_database_xact_commit untyped\n"),
            "{text}"
        );
        assert!(
            text.contains("pg_stat_database_xact_commit{datname=\"app\"} 7.0\n"),
            "{text}"
        );
        let om = encode_openmetrics(&[f]);
        assert!(
            om.contains("pg_stat_database_xact_commit{datname=\"app\"} 7.0\n"),
            "{om}"
        );
    }
    use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

    #[test]
    fn openmetrics_counter_and_histogram() {
        let r = Registry::new();
        let c =
            IntCounterVec::new(Opts::new("x_requests_total", "Req \"q\"."), &["route"]).unwrap();
        let h = HistogramVec::new(
            HistogramOpts::new("x_seconds", "Lat.").buckets(vec![0.5, 1.0]),
            &["route"],
        )
        .unwrap();
        r.register(Box::new(c.clone())).unwrap();
        r.register(Box::new(h.clone())).unwrap();
        c.with_label_values(&["/a\"b"]).inc_by(3);
        h.with_label_values(&["/a"]).observe(0.7);
        let out = encode_openmetrics(&r.gather());
        assert!(out.contains("# TYPE x_requests counter\n"), "{out}");
        assert!(out.contains("# HELP x_requests Req \\\"q\\\".\n"), "{out}");
        assert!(
            out.contains("x_requests_total{route=\"/a\\\"b\"} 3.0\n"),
            "{out}"
        );
        assert!(
            out.contains("x_seconds_bucket{route=\"/a\",le=\"0.5\"} 0.0\n"),
            "{out}"
        );
        assert!(
            out.contains("x_seconds_bucket{route=\"/a\",le=\"1.0\"} 1.0\n"),
            "{out}"
        );
        assert!(
            out.contains("x_seconds_bucket{route=\"/a\",le=\"+Inf\"} 1.0\n"),
            "{out}"
        );
        assert!(out.contains("x_seconds_count{route=\"/a\"} 1.0\n"), "{out}");
        assert!(out.ends_with("# EOF\n"));
    }
}
