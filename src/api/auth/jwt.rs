//! Bearer JWTs (`[auth.jwt]`): signature by a key of the identity provider's JWKS (RS256,
//! ES256, EdDSA) or by the shared `hs256_secret` (HS256), then `exp`/`nbf` with leeway,
//! `iss`, `aud`, and the role claim mapped through `role_map`.
//!
//! The algorithm comes from the token's header but must be accepted *and* allowed by
//! the key: `none` never is, an HS256 token is only checked against `hs256_secret` (never
//! a public key), and a JWK that names its `alg` verifies nothing else. Failures are a
//! [`JwtError`] whose [`JwtError::reason`] names the check; the token is never echoed.

use std::collections::HashSet;
use std::sync::Arc;

use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use prometheus::{IntCounterVec, Opts};
use serde_json::Value;

use super::jwks::KeySet;
use crate::config::{JwtConfig, Role};
use crate::metrics::Metrics;

/// Largest `auth.jwt.leeway`.
pub const MAX_LEEWAY: std::time::Duration = std::time::Duration::from_secs(300);

/// A JWKS URL must be https, except on the loopback interface (a local sidecar or test):
/// whoever can answer it can sign any token.
fn check_jwks_url(url: &str) -> Result<(), &'static str> {
    let u = reqwest::Url::parse(url).map_err(|_| "is not a URL")?;
    let host = u.host_str().unwrap_or_default();
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|a| a.is_loopback());
    match u.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        "http" => Err("must be https:// (plain http only on loopback)"),
        _ => Err("must be an https:// URL"),
    }
}

/// The algorithms `auth.jwt.algorithms` may name.
pub const SUPPORTED: [&str; 4] = ["RS256", "ES256", "EdDSA", "HS256"];

/// Who a verified token names.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Identity {
    /// `sub`.
    pub sub: String,
    /// `preferred_username`, when present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
    /// `email`, when present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// `iss`, when present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// `exp` (Unix seconds).
    #[serde(skip)]
    pub exp: i64,
}

impl Identity {
    /// A name for people: the username, else the e-mail, else the subject.
    pub fn display(&self) -> &str {
        self.preferred_username
            .as_deref()
            .or(self.email.as_deref())
            .unwrap_or(&self.sub)
    }
}

/// A verified token: who, and with which role.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The token's identity claims.
    pub identity: Identity,
    /// The highest role its role claim maps to.
    pub role: Role,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Not three base64url parts with a JSON header and payload.
    #[error("malformed JWT: {0}")]
    Malformed(String),
    /// `alg` is `none`, not accepted, or not allowed by the key.
    #[error("algorithm refused: {0}")]
    Algorithm(String),
    /// No key of the JWKS has the token's `kid` (or fits its algorithm).
    #[error("unknown signing key: {0}")]
    UnknownKey(String),
    /// The signature does not verify.
    #[error("bad signature")]
    Signature,
    /// `exp` is past (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("token not valid yet (nbf)")]
    NotYetValid,
    /// `iss` is not `auth.jwt.issuer`.
    #[error("wrong issuer (iss)")]
    Issuer,
    /// `aud` holds none of `auth.jwt.audience`.
    #[error("wrong audience (aud)")]
    Audience,
    /// A required claim is missing or has the wrong type.
    #[error("claim {0}: missing or of the wrong type")]
    Claim(String),
    /// The role claim maps to no role (403, not 401: the token itself is good).
    #[error("the {0} claim grants no watchpost role")]
    NoRole(String),
}

impl JwtError {
    /// A short, stable name of the failed check (the `reason` of the 401 body).
    pub fn reason(&self) -> &'static str {
        match self {
            JwtError::Malformed(_) => "malformed",
            JwtError::Algorithm(_) => "algorithm",
            JwtError::UnknownKey(_) => "unknown_key",
            JwtError::Signature => "signature",
            JwtError::Expired => "expired",
            JwtError::NotYetValid => "not_yet_valid",
            JwtError::Issuer => "issuer",
            JwtError::Audience => "audience",
            JwtError::Claim(_) => "claim",
            JwtError::NoRole(_) => "role",
        }
    }

    fn from_library(e: &jsonwebtoken::errors::Error) -> Self {
        use jsonwebtoken::errors::ErrorKind as K;
        match e.kind() {
            K::InvalidSignature
            | K::InvalidEcdsaKey
            | K::InvalidEddsaKey
            | K::InvalidRsaKey(_)
            | K::InvalidKeyFormat => JwtError::Signature,
            K::ExpiredSignature => JwtError::Expired,
            K::ImmatureSignature => JwtError::NotYetValid,
            K::InvalidIssuer => JwtError::Issuer,
            K::InvalidAudience => JwtError::Audience,
            K::MissingRequiredClaim(c) | K::InvalidClaimFormat(c) => JwtError::Claim(c.clone()),
            K::InvalidAlgorithm | K::InvalidAlgorithmName | K::UnsupportedAlgorithm => {
                JwtError::Algorithm("not allowed for this key".into())
            }
            other => JwtError::Malformed(format!("{other:?}")),
        }
    }
}

/// Whether `token` has a JWT's shape (three dot-separated parts).
pub fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3 && token.starts_with("eyJ")
}

/// Verifies bearer JWTs.
pub struct JwtVerifier {
    cfg: JwtConfig,
    accepted: Vec<Algorithm>,
    secret: Option<DecodingKey>,
    keys: Arc<KeySet>,
    rejected: IntCounterVec,
}

impl JwtVerifier {
    /// A verifier for `cfg` (already validated); its JWKS is not loaded yet.
    pub fn new(cfg: &JwtConfig, metrics: &Metrics) -> Self {
        let accepted: Vec<Algorithm> = cfg
            .algorithms
            .iter()
            .filter_map(|a| a.parse().ok())
            .collect();
        let secret = cfg
            .hs256_secret
            .as_ref()
            .filter(|_| accepted.contains(&Algorithm::HS256))
            .and_then(|s| DecodingKey::from_secret(s.expose().as_bytes()).ok());
        let rejected = IntCounterVec::new(
            Opts::new(
                "watchpost_auth_jwt_rejected_total",
                "Bearer JWTs refused, by the check that failed.",
            ),
            &["reason"],
        )
        .expect("valid metric");
        metrics.register_all("JWT", vec![Box::new(rejected.clone())]);
        Self {
            keys: KeySet::new(cfg, accepted.clone(), metrics),
            cfg: cfg.clone(),
            accepted,
            secret,
            rejected,
        }
    }

    /// The identity provider's keys.
    pub fn keys(&self) -> &Arc<KeySet> {
        &self.keys
    }

    /// Verifies `token`; failures are counted by reason.
    pub async fn verify(&self, token: &str) -> Result<Verified, JwtError> {
        let out = self.check(token).await;
        if let Err(e) = &out {
            self.rejected.with_label_values(&[e.reason()]).inc();
        }
        out
    }

    async fn check(&self, token: &str) -> Result<Verified, JwtError> {
        let (alg, kid) = header(token)?;
        if !self.accepted.contains(&alg) {
            return Err(JwtError::Algorithm(format!(
                "{alg:?} is not among auth.jwt.algorithms"
            )));
        }
        let validation = self.validation(alg);
        let claims = if alg == Algorithm::HS256 {
            let key = self
                .secret
                .as_ref()
                .ok_or_else(|| JwtError::Algorithm("HS256 needs auth.jwt.hs256_secret".into()))?;
            decode(token, key, &validation)?
        } else {
            let keys = self.keys.find(kid.as_deref(), alg).await;
            let mut last = JwtError::UnknownKey(match &kid {
                Some(k) => format!("no {alg:?} key with kid {k:?} in the JWKS"),
                None => format!("no {alg:?} key in the JWKS"),
            });
            let mut verified = None;
            for k in keys {
                match decode(token, &k.key, &validation) {
                    Ok(c) => {
                        verified = Some(c);
                        break;
                    }
                    Err(e) => last = e,
                }
            }
            verified.ok_or(last)?
        };
        self.verified(&claims)
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.leeway = self.cfg.leeway.as_secs();
        v.validate_nbf = true;
        let mut required: HashSet<String> = ["exp", "sub"].map(String::from).into();
        match &self.cfg.audience {
            Some(aud) => {
                v.set_audience(&aud.values());
                required.insert("aud".into());
            }
            None => v.validate_aud = false,
        }
        if let Some(iss) = &self.cfg.issuer {
            v.set_issuer(&[iss]);
            required.insert("iss".into());
        }
        v.required_spec_claims = required;
        v
    }

    fn verified(&self, claims: &Value) -> Result<Verified, JwtError> {
        // Names end up in the audit log and in messages: no control characters.
        let text = |k: &str| -> Result<Option<String>, JwtError> {
            match claims.get(k).and_then(Value::as_str) {
                Some(v) if v.chars().any(char::is_control) || v.len() > 1024 => {
                    Err(JwtError::Claim(k.into()))
                }
                v => Ok(v.map(str::to_string)),
            }
        };
        let identity = Identity {
            sub: text("sub")?
                .filter(|s| !s.is_empty())
                .ok_or_else(|| JwtError::Claim("sub".into()))?,
            preferred_username: text("preferred_username")?,
            email: text("email")?,
            iss: text("iss")?,
            exp: claims.get("exp").and_then(Value::as_i64).unwrap_or(0),
        };
        let role = role_of(claims, &self.cfg)
            .ok_or_else(|| JwtError::NoRole(self.cfg.role_claim.clone()))?;
        Ok(Verified { identity, role })
    }
}

fn decode(token: &str, key: &DecodingKey, v: &Validation) -> Result<Value, JwtError> {
    jsonwebtoken::decode::<Value>(token, key, v)
        .map(|d| d.claims)
        .map_err(|e| JwtError::from_library(&e))
}

/// The header's `alg` and `kid`, read before any key is chosen (`none` is named as such).
fn header(token: &str) -> Result<(Algorithm, Option<String>), JwtError> {
    let first = token.split('.').next().unwrap_or_default();
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(first.trim_end_matches('='))
        .map_err(|_| JwtError::Malformed("header is not base64url".into()))?;
    let h: Value = serde_json::from_slice(&raw)
        .map_err(|_| JwtError::Malformed("header is not JSON".into()))?;
    let alg = h
        .get("alg")
        .and_then(Value::as_str)
        .ok_or_else(|| JwtError::Malformed("header has no alg".into()))?;
    if alg.eq_ignore_ascii_case("none") {
        return Err(JwtError::Algorithm("alg none is never accepted".into()));
    }
    let alg: Algorithm = alg
        .parse()
        .map_err(|_| JwtError::Algorithm(format!("{alg:?} is not supported")))?;
    let kid = h.get("kid").and_then(Value::as_str).map(str::to_string);
    Ok((alg, kid))
}

/// The highest role the role claim grants (admin > operator > viewer > agent).
fn role_of(claims: &Value, cfg: &JwtConfig) -> Option<Role> {
    let mut at = claims;
    for part in cfg.role_claim.split('.') {
        at = at.get(part)?;
    }
    let values: Vec<&str> = match at {
        Value::String(s) => vec![s.as_str()],
        Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
        _ => return None,
    };
    values
        .into_iter()
        .filter_map(|v| {
            if cfg.role_map.is_empty() {
                serde_json::from_value(Value::String(v.to_string())).ok()
            } else {
                cfg.role_map.get(v).copied()
            }
        })
        .max_by_key(|r| match r {
            Role::Agent => 0,
            Role::Viewer => 1,
            Role::Operator => 2,
            Role::Admin => 3,
        })
}

/// Problems of `auth.jwt`, each naming its key.
pub fn validate(cfg: &JwtConfig) -> Vec<String> {
    let mut problems = Vec::new();
    for a in &cfg.algorithms {
        if !SUPPORTED.contains(&a.as_str()) {
            problems.push(format!(
                "auth.jwt.algorithms: {a:?} is not supported; use some of {}",
                SUPPORTED.join(", ")
            ));
        }
    }
    if cfg.algorithms.is_empty() {
        problems.push("auth.jwt.algorithms: must name at least one algorithm".into());
    }
    if cfg.jwks_url.is_some() && cfg.jwks_file.is_some() {
        problems.push("auth.jwt: set jwks_url or jwks_file, not both".into());
    }
    if let Some(url) = &cfg.jwks_url
        && let Err(why) = check_jwks_url(url)
    {
        problems.push(format!("auth.jwt.jwks_url: {url:?} {why}"));
    }
    if cfg.issuer.as_deref().is_none_or(str::is_empty) {
        problems.push(
            "auth.jwt.issuer: required (the token's iss, e.g. https://sso.example.com/realms/ops)"
                .into(),
        );
    }
    if cfg
        .audience
        .as_ref()
        .is_none_or(|a| a.values().iter().all(String::is_empty))
    {
        problems.push(
            "auth.jwt.audience: required (one of the token's aud): without it every token the provider issues to any client would be accepted"
                .into(),
        );
    }
    if cfg.leeway > MAX_LEEWAY {
        problems.push(format!(
            "auth.jwt.leeway: at most {}s (clock skew, not a grace period)",
            MAX_LEEWAY.as_secs()
        ));
    }
    if cfg.jwks_min_refresh < std::time::Duration::from_secs(1) {
        problems.push("auth.jwt.jwks_min_refresh: at least 1s".into());
    }
    if cfg.jwks_refresh < cfg.jwks_min_refresh {
        problems.push("auth.jwt.jwks_refresh: at least jwks_min_refresh".into());
    }
    if !(std::time::Duration::from_millis(100)..=std::time::Duration::from_secs(60))
        .contains(&cfg.jwks_timeout)
    {
        problems.push("auth.jwt.jwks_timeout: between 100ms and 60s".into());
    }
    let public = cfg.algorithms.iter().any(|a| a != "HS256");
    let hs = cfg.algorithms.iter().any(|a| a == "HS256");
    let has_jwks = cfg.jwks_url.is_some() || cfg.jwks_file.is_some();
    match &cfg.hs256_secret {
        Some(s) if s.expose().len() < 32 => problems.push(
            "auth.jwt.hs256_secret: must be at least 32 bytes (RFC 7518 §3.2: at least the hash size)"
                .into(),
        ),
        _ => {}
    }
    let has_secret = hs && cfg.hs256_secret.is_some();
    if !(has_jwks || has_secret) {
        problems.push(
            "auth.jwt: needs a key source: jwks_url, jwks_file, or hs256_secret (with HS256 among algorithms)"
                .into(),
        );
    }
    if has_jwks && !public {
        problems.push(
            "auth.jwt.algorithms: a JWKS is set but only HS256 is accepted; add RS256, ES256 or EdDSA"
                .into(),
        );
    }
    if cfg.role_claim.is_empty() || cfg.role_claim.split('.').any(str::is_empty) {
        problems.push(format!(
            "auth.jwt.role_claim: {:?} is not a claim name or dotted path",
            cfg.role_claim
        ));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn roles_come_from_a_string_a_list_or_a_dotted_path() {
        let mut cfg = JwtConfig::default();
        assert_eq!(
            role_of(&json!({"watchpost_role": "operator"}), &cfg),
            Some(Role::Operator)
        );
        assert_eq!(
            role_of(&json!({"watchpost_role": ["viewer", "admin", "x"]}), &cfg),
            Some(Role::Admin)
        );
        assert_eq!(role_of(&json!({"watchpost_role": "root"}), &cfg), None);
        cfg.role_claim = "realm_access.roles".into();
        cfg.role_map = [
            ("wp-ops".to_string(), Role::Operator),
            ("wp-agents".to_string(), Role::Agent),
        ]
        .into();
        let claims = json!({"realm_access": {"roles": ["offline_access", "wp-agents", "wp-ops"]}});
        assert_eq!(role_of(&claims, &cfg), Some(Role::Operator));
        // With a role_map, only mapped values count.
        assert_eq!(
            role_of(&json!({"realm_access": {"roles": ["admin"]}}), &cfg),
            None
        );
    }

    #[test]
    fn the_header_names_alg_none_and_unknown_algorithms() {
        let enc = |h: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(h);
        let none = format!("{}.{}.", enc(r#"{"alg":"none"}"#), enc("{}"));
        assert_eq!(header(&none).unwrap_err().reason(), "algorithm");
        let odd = format!("{}.e30.x", enc(r#"{"alg":"XS999"}"#));
        assert_eq!(header(&odd).unwrap_err().reason(), "algorithm");
        assert_eq!(header("nope.e30.x").unwrap_err().reason(), "malformed");
        let ok = format!("{}.e30.x", enc(r#"{"alg":"RS256","kid":"k1"}"#));
        assert_eq!(header(&ok).unwrap(), (Algorithm::RS256, Some("k1".into())));
    }

    #[test]
    fn validation_names_each_problem() {
        let cfg = JwtConfig {
            algorithms: vec!["RS256".into(), "none".into()],
            hs256_secret: Some(crate::config::Secret("short".into())),
            jwks_url: Some("ftp://idp".into()),
            role_claim: "a..b".into(),
            ..JwtConfig::default()
        };
        let p = validate(&cfg).join("\n");
        for needle in [
            "\"none\" is not supported",
            "hs256_secret: must be at least 32",
            "jwks_url",
            "role_claim",
        ] {
            assert!(p.contains(needle), "{needle} in {p}");
        }
        assert!(
            validate(&JwtConfig::default())
                .join("")
                .contains("key source")
        );
    }
}
