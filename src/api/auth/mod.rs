//! Authentication with roles: static bearer tokens and identity-provider JWTs.
//!
//! With `auth.tokens` or `[auth.jwt]` configured, writes need `Authorization: Bearer
//! TOKEN` of a sufficient role (401 without, unknown or refused, 403 too weak). Static
//! tokens are compared in constant time and never logged; JWTs are verified by
//! [`jwt::JwtVerifier`]. Without either the service only listens on loopback (enforced
//! by config validation) and every caller acts as `anonymous` admin.

pub mod jwks;
pub mod jwt;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use crate::config::{AuthConfig, Role};
use crate::metrics::Metrics;
pub use jwt::Identity;

/// Who is calling: for permission checks and the audit log.
#[derive(Debug, Clone)]
pub struct Principal {
    /// Token name (or role), a JWT's `sub`, or `anonymous`.
    pub name: String,
    /// The caller's role.
    pub role: Role,
    /// The peer address, when known.
    pub remote_addr: Option<SocketAddr>,
    /// The JWT's identity claims, for a caller signed in with a JWT.
    pub identity: Option<Arc<Identity>>,
}

impl Principal {
    /// A name for people: a JWT's `preferred_username` (or `email`, or `sub`), else the
    /// token's name. Defaults the `by` of acks and the creator of silences.
    pub fn display_name(&self) -> &str {
        self.identity
            .as_deref()
            .map_or(self.name.as_str(), Identity::display)
    }
}

/// The credentials of an `Authorization: Bearer TOKEN` header: the scheme is
/// case-insensitive and any spaces around the token are ignored (RFC 9110 §11.1).
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once([' ', '\t'])?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Problems of `[auth.jwt]`, each naming its key (static tokens are checked by
/// [`crate::config::Config::validate`]).
pub fn validate(config: &crate::config::Config) -> Vec<String> {
    config
        .auth
        .jwt
        .as_ref()
        .map(jwt::validate)
        .unwrap_or_default()
}

/// Static tokens plus, when configured, the JWT verifier.
#[derive(Clone)]
pub struct Authenticator {
    config: AuthConfig,
    jwt: Option<Arc<jwt::JwtVerifier>>,
}

impl Authenticator {
    /// An authenticator for `config` (validated); JWKS keys load with [`Self::start`].
    pub fn new(config: &AuthConfig, metrics: &Metrics) -> Self {
        Self {
            config: config.clone(),
            jwt: config
                .jwt
                .as_ref()
                .map(|j| Arc::new(jwt::JwtVerifier::new(j, metrics))),
        }
    }

    /// Starts loading the identity provider's keys; a provider that is down is logged
    /// and retried when tokens arrive.
    pub fn start(&self) {
        if let Some(j) = &self.jwt {
            j.keys().spawn_load();
        }
    }

    /// Whether callers must authenticate.
    pub fn enabled(&self) -> bool {
        self.config.enabled()
    }

    /// Resolves the caller from the `Authorization` header.
    pub async fn authenticate(&self, parts: &Parts) -> Result<Principal, ApiError> {
        let remote_addr = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        if !self.enabled() {
            return Ok(Principal {
                name: "anonymous".into(),
                role: Role::Admin,
                remote_addr,
                identity: None,
            });
        }
        let presented = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token)
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "missing Authorization: Bearer token",
                )
            })?;
        self.principal(presented, remote_addr).await
    }

    /// The principal a bearer credential names.
    pub async fn principal(
        &self,
        presented: &str,
        remote_addr: Option<SocketAddr>,
    ) -> Result<Principal, ApiError> {
        if let Some(t) = static_token(&self.config, presented) {
            return Ok(Principal {
                name: t
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("{:?}", t.role).to_lowercase()),
                role: t.role,
                remote_addr,
                identity: None,
            });
        }
        let Some(verifier) = self.jwt.as_ref().filter(|_| jwt::looks_like_jwt(presented)) else {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unknown bearer token",
            ));
        };
        match verifier.verify(presented).await {
            Ok(v) => Ok(Principal {
                name: v.identity.sub.clone(),
                role: v.role,
                remote_addr,
                identity: Some(Arc::new(v.identity)),
            }),
            Err(e) => {
                tracing::debug!(reason = e.reason(), error = %e, "JWT refused");
                let status = match e {
                    jwt::JwtError::NoRole(_) => StatusCode::FORBIDDEN,
                    _ => StatusCode::UNAUTHORIZED,
                };
                Err(ApiError::new(status, format!("JWT refused: {e}")).with_reason(e.reason()))
            }
        }
    }
}

/// The static token equal to `presented`; every token is compared, so timing does not
/// reveal which one matched.
fn static_token<'a>(
    auth: &'a AuthConfig,
    presented: &str,
) -> Option<&'a crate::config::TokenConfig> {
    let mut found = None;
    for t in &auth.tokens {
        if bool::from(t.token.expose().as_bytes().ct_eq(presented.as_bytes())) && found.is_none() {
            found = Some(t);
        }
    }
    found
}

/// Who the caller is: `GET /api/v1/whoami` (the dashboard shows it after sign-in).
async fn whoami(
    axum::extract::State(state): axum::extract::State<super::AppState>,
    parts: Parts,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let p = state.auth.authenticate(&parts).await?;
    let kind = match (&p.identity, state.auth.enabled()) {
        (Some(_), _) => "jwt",
        (None, true) => "token",
        (None, false) => "anonymous",
    };
    let mut body = serde_json::json!({
        "name": p.name,
        "role": p.role,
        "kind": kind,
        "expires_at": null,
    });
    if let Some(id) = &p.identity {
        body["display_name"] = id.display().into();
        body["expires_at"] = crate::alerts::model::rfc3339(id.exp.saturating_mul(1000)).into();
        if let (Some(o), Ok(serde_json::Value::Object(claims))) =
            (body.as_object_mut(), serde_json::to_value(id.as_ref()))
        {
            o.extend(claims);
        }
    } else {
        body["display_name"] = p.name.clone().into();
    }
    Ok(axum::Json(body))
}

/// The authentication routes.
pub fn routes() -> axum::Router<super::AppState> {
    axum::Router::new().route("/api/v1/whoami", axum::routing::get(whoami))
}

/// Fails with 403 unless `principal` has at least `needed`.
pub fn require(principal: &Principal, needed: Role) -> Result<(), ApiError> {
    if allows(principal.role, needed) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "role {:?} may not do this; {:?} needed",
                principal.role, needed
            )
            .to_lowercase(),
        ))
    }
}

/// Whether `role` may do what needs `needed`: viewer, operator and admin include the
/// ones before them; agents may only do agent work, which admins may also do.
pub fn allows(role: Role, needed: Role) -> bool {
    match needed {
        Role::Agent => matches!(role, Role::Agent | Role::Admin),
        _ => role != Role::Agent && role >= needed,
    }
}

macro_rules! role_extractor {
    ($name:ident, $role:expr, $doc:literal) => {
        #[doc = $doc]
        pub struct $name(pub Principal);

        impl FromRequestParts<super::AppState> for $name {
            type Rejection = ApiError;

            async fn from_request_parts(
                parts: &mut Parts,
                state: &super::AppState,
            ) -> Result<Self, ApiError> {
                let p = state.auth.authenticate(parts).await?;
                require(&p, $role)?;
                Ok($name(p))
            }
        }
    };
}

role_extractor!(
    Viewer,
    Role::Viewer,
    "A caller with at least the viewer role."
);
role_extractor!(
    Operator,
    Role::Operator,
    "A caller with at least the operator role (ack, silence, ingest)."
);
role_extractor!(
    Admin,
    Role::Admin,
    "A caller with the admin role (reload, delete)."
);

#[cfg(test)]
mod bearer_tests {
    use super::bearer_token;

    #[test]
    fn scheme_is_case_insensitive_and_spaces_are_ignored() {
        for v in [
            "Bearer abc",
            "bearer abc",
            "BEARER abc",
            "BeArEr   abc  ",
            " Bearer\tabc",
        ] {
            assert_eq!(bearer_token(v), Some("abc"), "{v:?}");
        }
        for v in ["Basic abc", "Bearer", "Bearer   ", "Bearerabc", ""] {
            assert_eq!(bearer_token(v), None, "{v:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Secret, TokenConfig};

    fn parts(auth: Option<&str>) -> Parts {
        let mut b = axum::http::Request::builder();
        if let Some(a) = auth {
            b = b.header(header::AUTHORIZATION, a);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn config() -> AuthConfig {
        AuthConfig {
            tokens: vec![
                TokenConfig {
                    token: Secret("viewer-token".into()),
                    role: Role::Viewer,
                    name: None,
                },
                TokenConfig {
                    token: Secret("admin-token".into()),
                    role: Role::Admin,
                    name: Some("ops".into()),
                },
            ],
            jwt: None,
        }
    }

    fn auth(c: &AuthConfig) -> Authenticator {
        Authenticator::new(c, &Metrics::new().unwrap())
    }

    #[tokio::test]
    async fn roles_and_statuses() {
        let a = auth(&config());
        assert_eq!(
            a.authenticate(&parts(None)).await.unwrap_err().status,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            a.authenticate(&parts(Some("Bearer nope")))
                .await
                .unwrap_err()
                .status,
            StatusCode::UNAUTHORIZED
        );
        let v = a
            .authenticate(&parts(Some("Bearer viewer-token")))
            .await
            .unwrap();
        assert_eq!(
            require(&v, Role::Operator).unwrap_err().status,
            StatusCode::FORBIDDEN
        );
        let p = a
            .authenticate(&parts(Some("Bearer admin-token")))
            .await
            .unwrap();
        assert_eq!(p.name, "ops");
        require(&p, Role::Admin).unwrap();
    }

    #[tokio::test]
    async fn no_tokens_means_anonymous_admin() {
        let p = auth(&AuthConfig::default())
            .authenticate(&parts(None))
            .await
            .unwrap();
        assert_eq!(p.role, Role::Admin);
    }

    #[test]
    fn agents_only_push_and_admins_may_too() {
        assert!(allows(Role::Agent, Role::Agent));
        assert!(allows(Role::Admin, Role::Agent));
        assert!(!allows(Role::Operator, Role::Agent));
        assert!(!allows(Role::Agent, Role::Viewer));
        assert!(allows(Role::Operator, Role::Viewer));
    }
}
