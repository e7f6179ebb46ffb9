//! The identity provider's signing keys: a JWKS from `auth.jwt.jwks_url` or
//! `auth.jwt.jwks_file`, cached in memory.
//!
//! The set is loaded at start, re-loaded in the background once it is older than
//! `jwks_refresh`, and re-loaded on a token whose `kid` it does not hold — at most once
//! per `jwks_min_refresh`, so a flood of made-up `kid`s cannot hammer the provider.
//! When the provider is down the keys already held keep working; every failed load is
//! counted in `watchpost_auth_jwks_refreshes_total{result="failure"}`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use prometheus::{IntCounterVec, IntGauge, Opts};

use crate::config::JwtConfig;
use crate::metrics::Metrics;

/// A signing key of the set.
pub struct SigningKey {
    /// Its `kid`, when it has one.
    pub kid: Option<String>,
    /// The one algorithm it verifies: its JWK `alg`, else the only one its type allows
    /// among the accepted ones.
    pub alg: Option<Algorithm>,
    /// Its family (RSA, EC, OKP).
    pub family: AlgorithmFamily,
    /// The key itself.
    pub key: DecodingKey,
}

impl SigningKey {
    /// Whether this key may verify a token signed with `alg`.
    pub fn allows(&self, alg: Algorithm) -> bool {
        self.family == alg.family() && self.alg.is_none_or(|a| a == alg)
    }
}

/// Why a JWKS could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    /// The HTTP request failed or answered an error status.
    #[error("fetching {url}: {source}")]
    Fetch {
        /// The endpoint.
        url: String,
        /// The cause.
        source: reqwest::Error,
    },
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The load took longer than `jwks_timeout`.
    #[error("no answer within {0:?} (auth.jwt.jwks_timeout)")]
    Timeout(Duration),
    /// The document is not a JWKS.
    #[error("not a JWKS (a JSON object with a \"keys\" list): {0}")]
    Parse(serde_json::Error),
}

enum Source {
    Url {
        url: String,
        client: reqwest::Client,
    },
    File(PathBuf),
}

impl Source {
    async fn load(&self) -> Result<serde_json::Value, JwksError> {
        match self {
            Source::Url { url, client } => {
                let fetch = |source| JwksError::Fetch {
                    url: url.clone(),
                    source,
                };
                client
                    .get(url)
                    .send()
                    .await
                    .and_then(reqwest::Response::error_for_status)
                    .map_err(fetch)?
                    .json()
                    .await
                    .map_err(fetch)
            }
            Source::File(path) => {
                let text = tokio::fs::read(path)
                    .await
                    .map_err(|source| JwksError::Read {
                        path: path.clone(),
                        source,
                    })?;
                serde_json::from_slice(&text).map_err(JwksError::Parse)
            }
        }
    }
}

#[derive(Default)]
struct Keys {
    by_kid: HashMap<String, Vec<Arc<SigningKey>>>,
    all: Vec<Arc<SigningKey>>,
    loaded: Option<Instant>,
}

#[derive(Clone)]
struct JwksMetrics {
    refreshes: IntCounterVec,
    keys: IntGauge,
}

impl JwksMetrics {
    fn register(metrics: &Metrics) -> Self {
        let refreshes = IntCounterVec::new(
            Opts::new(
                "watchpost_auth_jwks_refreshes_total",
                "Loads of the identity provider's JWKS, by result (success, failure).",
            ),
            &["result"],
        )
        .expect("valid metric");
        let keys = IntGauge::new(
            "watchpost_auth_jwks_keys",
            "Signing keys held from the identity provider's JWKS.",
        )
        .expect("valid metric");
        metrics.register_all(
            "JWKS",
            vec![Box::new(refreshes.clone()), Box::new(keys.clone())],
        );
        for result in ["success", "failure"] {
            refreshes.with_label_values(&[result]);
        }
        Self { refreshes, keys }
    }
}

/// The cached key set.
pub struct KeySet {
    source: Option<Source>,
    accepted: Vec<Algorithm>,
    keys: RwLock<Arc<Keys>>,
    /// When the last refresh for an unknown `kid` started (serializes those refreshes).
    kid_refresh: Arc<tokio::sync::Mutex<Option<Instant>>>,
    background: std::sync::atomic::AtomicBool,
    min_refresh: Duration,
    max_age: Duration,
    timeout: Duration,
    metrics: JwksMetrics,
}

impl KeySet {
    /// An empty set reading from the configured source; call [`KeySet::refresh`] to load.
    pub fn new(cfg: &JwtConfig, accepted: Vec<Algorithm>, metrics: &Metrics) -> Arc<Self> {
        let source = match (&cfg.jwks_url, &cfg.jwks_file) {
            (Some(url), _) => Some(Source::Url {
                url: url.clone(),
                client: reqwest::Client::builder()
                    .timeout(cfg.jwks_timeout)
                    .user_agent(concat!("watchpost/", env!("CARGO_PKG_VERSION")))
                    .build()
                    .unwrap_or_default(),
            }),
            (None, Some(path)) => Some(Source::File(path.clone())),
            (None, None) => None,
        };
        Arc::new(Self {
            source,
            accepted,
            keys: RwLock::new(Arc::new(Keys::default())),
            kid_refresh: Arc::new(tokio::sync::Mutex::new(None)),
            background: std::sync::atomic::AtomicBool::new(false),
            min_refresh: cfg.jwks_min_refresh,
            max_age: cfg.jwks_refresh,
            timeout: cfg.jwks_timeout,
            metrics: JwksMetrics::register(metrics),
        })
    }

    fn current(&self) -> Arc<Keys> {
        self.keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Starts the first load in the background. Requests whose key is not held yet wait
    /// for it instead of fetching again (it holds the unknown-`kid` lock from now on).
    pub fn spawn_load(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let serial = self.kid_refresh.clone().try_lock_owned();
        let me = self.clone();
        tokio::spawn(async move {
            let _serial = serial;
            if let Ok(n) = me.refresh().await {
                tracing::info!(keys = n, "JWKS loaded");
            }
        })
    }

    /// Loads the set from its source; on failure keeps the keys it holds.
    pub async fn refresh(&self) -> Result<usize, JwksError> {
        let Some(source) = &self.source else {
            return Ok(0);
        };
        let loaded = match tokio::time::timeout(self.timeout, source.load()).await {
            Ok(doc) => doc.and_then(|doc| self.parse(&doc)),
            Err(_) => Err(JwksError::Timeout(self.timeout)),
        };
        match loaded {
            Ok(keys) => {
                let n = keys.all.len();
                self.metrics.refreshes.with_label_values(&["success"]).inc();
                self.metrics.keys.set(n as i64);
                *self
                    .keys
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(keys);
                tracing::debug!(keys = n, "JWKS loaded");
                Ok(n)
            }
            Err(e) => {
                self.metrics.refreshes.with_label_values(&["failure"]).inc();
                tracing::warn!(error = %e, "cannot load the JWKS; keeping the keys already held");
                Err(e)
            }
        }
    }

    /// Keys that may verify a token with header `kid` and `alg`. An unknown `kid` (or,
    /// without a `kid`, no key of the algorithm) re-loads the set first, at most once
    /// per `jwks_min_refresh`.
    pub async fn find(self: &Arc<Self>, kid: Option<&str>, alg: Algorithm) -> Vec<Arc<SigningKey>> {
        self.refresh_in_background_if_old();
        let found = Self::matching(&self.current(), kid, alg);
        if !found.is_empty() || self.source.is_none() {
            return found;
        }
        self.refresh_for_unknown_kid(kid, alg).await;
        Self::matching(&self.current(), kid, alg)
    }

    fn matching(keys: &Keys, kid: Option<&str>, alg: Algorithm) -> Vec<Arc<SigningKey>> {
        match kid {
            Some(kid) => keys
                .by_kid
                .get(kid)
                .into_iter()
                .flatten()
                .filter(|k| k.allows(alg))
                .cloned()
                .collect(),
            None => keys.all.iter().filter(|k| k.allows(alg)).cloned().collect(),
        }
    }

    /// Every load after the first runs under `kid_refresh`, one at a time, so an older
    /// answer never replaces a newer one. The fetch is its own task: a caller that gives
    /// up does not cancel it.
    async fn refresh_for_unknown_kid(self: &Arc<Self>, kid: Option<&str>, alg: Algorithm) {
        let mut last = self.kid_refresh.clone().lock_owned().await;
        // Another request (or the first load) may have fetched it while this one waited.
        if !Self::matching(&self.current(), kid, alg).is_empty()
            || last.is_some_and(|t| t.elapsed() < self.min_refresh)
        {
            return;
        }
        *last = Some(Instant::now());
        let me = self.clone();
        // Errors are logged and counted by refresh; the caller answers 401.
        let _ = tokio::spawn(async move {
            let _serial = last;
            me.refresh().await
        })
        .await;
    }

    fn refresh_in_background_if_old(self: &Arc<Self>) {
        use std::sync::atomic::Ordering;
        let old = self
            .current()
            .loaded
            .is_none_or(|t| t.elapsed() >= self.max_age);
        if !old || self.source.is_none() || self.background.swap(true, Ordering::AcqRel) {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            {
                let _serial = me.kid_refresh.lock().await;
                if me
                    .current()
                    .loaded
                    .is_none_or(|t| t.elapsed() >= me.max_age)
                {
                    let _ = me.refresh().await;
                }
            }
            // A failed load is retried no sooner than `jwks_min_refresh`.
            tokio::time::sleep(me.min_refresh).await;
            me.background.store(false, Ordering::Release);
        });
    }

    /// The usable signing keys of a JWKS document; keys that are malformed, for
    /// encryption, symmetric, or of an algorithm not accepted are skipped.
    fn parse(&self, doc: &serde_json::Value) -> Result<Keys, JwksError> {
        let list = doc
            .get("keys")
            .and_then(serde_json::Value::as_array)
            .ok_or_else(|| {
                JwksError::Parse(serde::de::Error::custom("missing the \"keys\" list"))
            })?;
        let mut keys = Keys {
            loaded: Some(Instant::now()),
            ..Keys::default()
        };
        for (i, raw) in list.iter().enumerate() {
            match self.signing_key(raw) {
                Ok(key) => {
                    let key = Arc::new(key);
                    if let Some(kid) = &key.kid {
                        keys.by_kid
                            .entry(kid.clone())
                            .or_default()
                            .push(key.clone());
                    }
                    keys.all.push(key);
                }
                Err(why) => tracing::debug!(index = i, why, "JWKS key skipped"),
            }
        }
        Ok(keys)
    }

    fn signing_key(&self, raw: &serde_json::Value) -> Result<SigningKey, String> {
        let jwk: Jwk = serde_json::from_value(raw.clone()).map_err(|e| e.to_string())?;
        if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
            return Err("not a signing key (use)".into());
        }
        let family = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => AlgorithmFamily::Rsa,
            AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
                AlgorithmFamily::Ec
            }
            AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
                AlgorithmFamily::Ed
            }
            _ => return Err("unsupported key type or curve".into()),
        };
        let alg = match jwk.common.key_algorithm {
            Some(a) => {
                let a: Algorithm = a.to_string().parse().map_err(|_| "unsupported alg")?;
                if a.family() != family || !self.accepted.contains(&a) {
                    return Err(format!("alg {a:?} not accepted for this key"));
                }
                Some(a)
            }
            None => None,
        };
        let key = DecodingKey::from_jwk(&jwk).map_err(|e| e.to_string())?;
        Ok(SigningKey {
            kid: jwk.common.key_id,
            alg,
            family,
            key,
        })
    }
}
