//! `watchpost_tsdb_*`: the store's size and what its series limit refused, read at
//! scrape time.

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Counter, Gauge, Metric, MetricFamily, MetricType};

use super::Tsdb;

/// A registry collector over one store.
pub struct TsdbCollector {
    tsdb: Tsdb,
    descs: Vec<Desc>,
}

const SERIES: (&str, &str) = (
    "watchpost_tsdb_series",
    "Series held by the in-memory store.",
);
const LIMIT: (&str, &str) = (
    "watchpost_tsdb_max_series",
    "The store's series limit (tsdb.max_series).",
);
const REFUSED: (&str, &str) = (
    "watchpost_tsdb_series_limit_refused_samples_total",
    "Samples refused because their series would have passed tsdb.max_series (self \
     metrics, rule results and remote write alike).",
);

impl TsdbCollector {
    /// A collector of `tsdb`'s figures.
    pub fn new(tsdb: Tsdb) -> Result<Self, prometheus::Error> {
        let descs = [SERIES, LIMIT, REFUSED]
            .iter()
            .map(|(name, help)| {
                Desc::new(
                    name.to_string(),
                    help.to_string(),
                    vec![],
                    Default::default(),
                )
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { tsdb, descs })
    }
}

fn family((name, help): (&str, &str), kind: MetricType, value: f64) -> MetricFamily {
    let mut m = Metric::default();
    if kind == MetricType::COUNTER {
        let mut c = Counter::default();
        c.set_value(value);
        m.set_counter(c);
    } else {
        let mut g = Gauge::default();
        g.set_value(value);
        m.set_gauge(g);
    }
    let mut f = MetricFamily::default();
    f.set_name(name.into());
    f.set_help(help.into());
    f.set_field_type(kind);
    f.set_metric(vec![m]);
    f
}

impl Collector for TsdbCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        vec![
            family(SERIES, MetricType::GAUGE, self.tsdb.series_count() as f64),
            family(LIMIT, MetricType::GAUGE, self.tsdb.max_series() as f64),
            family(
                REFUSED,
                MetricType::COUNTER,
                self.tsdb.series_limit_refused() as f64,
            ),
        ]
    }
}
