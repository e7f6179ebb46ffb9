//! The alert pipeline: everything that fires — watchpost's own rules, Prometheus,
//! Alertmanager, ntopng, scripts — ends up here, classified, deduplicated, durable,
//! searchable and ready to notify.
//!
//! * [`ingest`]: the ingest formats, parsed into one shape and classified.
//! * [`classify`] and [`fingerprint`]: severity, type, risk score; identity.
//! * [`pipeline`]: bounded queue and group-committing writer; [`lifecycle`] is what a
//!   receipt does to an alert; [`journal`] makes repeats durable without a row
//!   update per receipt.
//! * [`repo`], [`stats`], [`report`]: storage and queries.
//! * [`change`]: the typed channel to the notifier ([`AlertChange`]).
//! * [`service`]: what the API calls.

pub mod change;
pub mod classify;
pub mod fingerprint;
pub mod ingest;
pub mod journal;
pub mod lifecycle;
pub mod model;
pub mod pipeline;
pub mod raise;
pub mod ratelimit;
pub mod repo;
pub mod report;
pub mod rules;
pub mod service;
pub mod stats;
pub mod vocabulary;

pub use change::{AlertChange, ChangeKind, ChangeReceiver, ChangeSender};
pub use model::{Alert, AlertState, Severity};
pub use pipeline::{Pipeline, PipelineError, PipelineTask};
pub use service::AlertService;
