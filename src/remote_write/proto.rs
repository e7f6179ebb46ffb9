//! Prometheus' remote-write 1.0 messages (`prompb`: `remote.proto`, `types.proto`),
//! only the fields watchpost reads or writes; unknown fields are skipped on decode.

/// `prometheus.WriteRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    /// Series with their samples.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
    /// Metric metadata (type, help): accepted and ignored.
    #[prost(message, repeated, tag = "3")]
    pub metadata: Vec<Opaque>,
}

/// `prometheus.TimeSeries`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    /// The series' labels, `__name__` included.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// Float samples, oldest first.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
    /// Exemplars: accepted and ignored.
    #[prost(message, repeated, tag = "3")]
    pub exemplars: Vec<Opaque>,
    /// Native histograms: not supported (refused and counted).
    #[prost(message, repeated, tag = "4")]
    pub histograms: Vec<Opaque>,
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Label {
    /// Label name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Label value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `prometheus.Sample`.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct Sample {
    /// The value (the stale marker is a NaN with bits `0x7ff0000000000002`).
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Unix milliseconds.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// A message whose fields watchpost does not read.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct Opaque {}
