//! Bearer-token authentication with roles.
//!
//! With `auth.tokens` configured, writes need `Authorization: Bearer TOKEN` of a
//! sufficient role (401 without or unknown, 403 too weak). Without tokens the service
//! only listens on loopback (enforced by config validation) and every caller acts as
//! `anonymous` admin. Tokens are compared in constant time and never logged.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use crate::config::{AuthConfig, Role};

/// Who is calling: for permission checks and the audit log.
#[derive(Debug, Clone)]
pub struct Principal {
    /// Token name (or role), or `anonymous`.
    pub name: String,
    /// The caller's role.
    pub role: Role,
    /// The peer address, when known.
    pub remote_addr: Option<SocketAddr>,
}

/// The credentials of an `Authorization: Bearer TOKEN` header: the scheme is
/// case-insensitive and any spaces around the token are ignored (RFC 9110 §11.1).
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once([' ', '\t'])?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Resolves the caller from the `Authorization` header.
pub fn authenticate(auth: &AuthConfig, parts: &Parts) -> Result<Principal, ApiError> {
    let remote_addr = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    if auth.tokens.is_empty() {
        return Ok(Principal {
            name: "anonymous".into(),
            role: Role::Admin,
            remote_addr,
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
    // Check every token so timing does not reveal which one matched.
    let mut found = None;
    for t in &auth.tokens {
        if bool::from(t.token.expose().as_bytes().ct_eq(presented.as_bytes())) && found.is_none() {
            found = Some(t);
        }
    }
    let t = found.ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "unknown bearer token"))?;
    Ok(Principal {
        name: t
            .name
            .clone()
            .unwrap_or_else(|| format!("{:?}", t.role).to_lowercase()),
        role: t.role,
        remote_addr,
    })
}

/// Fails with 403 unless `principal` has at least `needed`.
pub fn require(principal: &Principal, needed: Role) -> Result<(), ApiError> {
    if principal.role >= needed {
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
                let p = authenticate(&state.config.auth, parts)?;
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
        }
    }

    #[test]
    fn roles_and_statuses() {
        let c = config();
        assert_eq!(
            authenticate(&c, &parts(None)).unwrap_err().status,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            authenticate(&c, &parts(Some("Bearer nope")))
                .unwrap_err()
                .status,
            StatusCode::UNAUTHORIZED
        );
        let v = authenticate(&c, &parts(Some("Bearer viewer-token"))).unwrap();
        assert_eq!(
            require(&v, Role::Operator).unwrap_err().status,
            StatusCode::FORBIDDEN
        );
        let a = authenticate(&c, &parts(Some("Bearer admin-token"))).unwrap();
        assert_eq!(a.name, "ops");
        require(&a, Role::Admin).unwrap();
    }

    #[test]
    fn no_tokens_means_anonymous_admin() {
        let p = authenticate(&AuthConfig::default(), &parts(None)).unwrap();
        assert_eq!(p.role, Role::Admin);
    }
}
