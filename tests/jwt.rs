//! Sign-in with an identity provider's JWTs (`[auth.jwt]`): tokens signed with RSA, EC,
//! Ed25519 and HMAC keys generated here by `openssl`, keys served as a JWKS by a local
//! HTTP server that can rotate keys and go down.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use common::{TestApp, databases, test_config};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use watchpost::config::{JwtConfig, OneOrMany, Role, Secret, TokenConfig};

const ISSUER: &str = "https://idp.example/realms/ops";
const AUDIENCE: &str = "watchpost";
const HMAC_SECRET: &str = "an-hs256-secret-of-at-least-32-bytes!";

/// Runs `openssl` with `args` in `dir` and returns the file it wrote.
fn openssl(dir: &Path, out: &str, args: &[&str]) -> Vec<u8> {
    let status = Command::new("openssl")
        .arg(args[0])
        .args(["-out", out])
        .args(&args[1..])
        .current_dir(dir)
        .status()
        .expect("openssl runs");
    assert!(status.success(), "openssl {args:?}");
    std::fs::read(dir.join(out)).expect("openssl output")
}

/// A signing key of the fake identity provider.
struct Key {
    kid: String,
    alg: Algorithm,
    enc: EncodingKey,
}

impl Key {
    fn jwk(&self) -> Value {
        let mut jwk = Jwk::from_encoding_key(&self.enc, self.alg).expect("jwk");
        jwk.common.key_id = Some(self.kid.clone());
        serde_json::to_value(jwk).expect("jwk json")
    }

    fn sign(&self, claims: &Value) -> String {
        let mut h = Header::new(self.alg);
        h.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&h, claims, &self.enc).expect("sign")
    }
}

/// Generated keys (PEM files in a temporary directory).
struct Keys {
    rsa: Key,
    rsa_next: Key,
    rsa_other: Key,
    ec: Key,
    ed: Key,
    hs: Key,
    rsa_public_pem: Vec<u8>,
    _dir: tempfile::TempDir,
}

fn generate() -> Keys {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let rsa = |name: &str| {
        let pem = openssl(d, name, &["genrsa", "-traditional", "2048"]);
        EncodingKey::from_rsa_pem(&pem).expect("rsa pem")
    };
    let ec = openssl(
        d,
        "ec.pem",
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ],
    );
    let ed = openssl(d, "ed.pem", &["genpkey", "-algorithm", "ed25519"]);
    let key = |kid: &str, alg, enc| Key {
        kid: kid.into(),
        alg,
        enc,
    };
    Keys {
        rsa: key("rsa-1", Algorithm::RS256, rsa("rsa1.pem")),
        rsa_next: key("rsa-2", Algorithm::RS256, rsa("rsa2.pem")),
        rsa_other: key("rsa-1", Algorithm::RS256, rsa("rsa3.pem")),
        ec: key(
            "ec-1",
            Algorithm::ES256,
            EncodingKey::from_ec_pem(&ec).expect("ec pem"),
        ),
        ed: key(
            "ed-1",
            Algorithm::EdDSA,
            EncodingKey::from_ed_pem(&ed).expect("ed pem"),
        ),
        hs: key(
            "hs-1",
            Algorithm::HS256,
            EncodingKey::from_secret(HMAC_SECRET.as_bytes()).expect("hmac key"),
        ),
        rsa_public_pem: openssl(d, "rsa1.pub", &["pkey", "-in", "rsa1.pem", "-pubout"]),
        _dir: dir,
    }
}

/// The identity provider's JWKS endpoint: serves `keys`, counts fetches, can fail.
#[derive(Clone, Default)]
struct Jwks {
    keys: Arc<Mutex<Vec<Value>>>,
    fetches: Arc<AtomicUsize>,
    down: Arc<AtomicBool>,
}

impl Jwks {
    async fn serve(&self) -> String {
        let me = self.clone();
        let app = axum::Router::new().route(
            "/certs",
            axum::routing::get(move || {
                let me = me.clone();
                async move {
                    me.fetches.fetch_add(1, Ordering::SeqCst);
                    if me.down.load(Ordering::SeqCst) {
                        return (axum::http::StatusCode::SERVICE_UNAVAILABLE, "down")
                            .into_response();
                    }
                    let keys = me.keys.lock().unwrap().clone();
                    axum::Json(json!({ "keys": keys })).into_response()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/certs")
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

use axum::response::IntoResponse as _;

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Claims of a token valid for an hour, with `role`.
fn claims(sub: &str, role: &str) -> Value {
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": sub,
        "preferred_username": format!("{sub}-name"),
        "email": format!("{sub}@example.com"),
        "iat": now(),
        "exp": now() + 3600,
        "watchpost_role": role,
    })
}

fn jwt_config(jwks_url: &str) -> JwtConfig {
    JwtConfig {
        issuer: Some(ISSUER.into()),
        audience: Some(OneOrMany::One(AUDIENCE.into())),
        jwks_url: Some(jwks_url.into()),
        hs256_secret: Some(Secret(HMAC_SECRET.into())),
        jwks_min_refresh: Duration::from_secs(2),
        ..JwtConfig::default()
    }
}

struct Reply {
    status: u16,
    body: Value,
    text: String,
    challenge: String,
}

async fn call(app: &TestApp, method: &str, path: &str, token: &str) -> Reply {
    let req = match method {
        "POST" => app.client.post(app.url(path)).json(&json!({
            "message": "Disk full on db-1",
            "severity": "warning",
            "labels": {"alertname": "DiskFull", "instance": "db-1"}
        })),
        _ => app.client.get(app.url(path)),
    };
    let r = req.bearer_auth(token).send().await.expect("request");
    let status = r.status().as_u16();
    let challenge = r
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let text = r.text().await.unwrap_or_default();
    Reply {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
        challenge,
    }
}

/// Expects a 401 whose `reason` is `reason` and which does not echo the token.
async fn refused(app: &TestApp, token: &str, reason: &str) {
    let r = call(app, "GET", "/api/v1/whoami", token).await;
    assert_eq!(r.status, 401, "{reason}: {}", r.text);
    assert_eq!(r.body["reason"], reason, "{}", r.text);
    assert!(r.body["error"].as_str().is_some_and(|e| !e.is_empty()));
    assert!(
        !r.text.contains(token) && !r.challenge.contains(token),
        "the token is not echoed"
    );
    assert!(
        r.challenge.starts_with("Bearer error=\"invalid_token\""),
        "{}",
        r.challenge
    );
}

fn unsigned(claims: &Value) -> String {
    let b = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.",
        b(&json!({"alg": "none", "typ": "JWT"})),
        b(claims)
    )
}

#[tokio::test]
async fn identity_provider_tokens_sign_in_with_their_role() {
    let keys = generate();
    let jwks = Jwks::default();
    *jwks.keys.lock().unwrap() = vec![keys.rsa.jwk(), keys.ec.jwk(), keys.ed.jwk()];
    let url = jwks.serve().await;
    for db in databases().await {
        let k = db.kind;
        let mut cfg = test_config(&db.url);
        cfg.auth.jwt = Some(jwt_config(&url));
        cfg.auth.tokens = vec![TokenConfig {
            token: Secret("static-admin-token".into()),
            role: Role::Admin,
            name: Some("ops".into()),
        }];
        let app = TestApp::start(cfg).await;

        // Each algorithm, each role.
        let viewer = keys.rsa.sign(&claims("vera", "viewer"));
        let r = call(&app, "POST", "/api/v1/alerts", &viewer).await;
        assert_eq!(r.status, 403, "{k}: a viewer may not ingest: {}", r.text);
        let mut id = 0;
        for (key, who) in [(&keys.rsa, "otto"), (&keys.ec, "erin"), (&keys.ed, "edda")] {
            let token = key.sign(&claims(who, "operator"));
            let r = call(&app, "POST", "/api/v1/alerts", &token).await;
            assert_eq!(r.status, 202, "{k}: {:?}: {}", key.alg, r.text);
            id = r.body["ids"][0].as_i64().expect("id");
        }
        // An ack without `by` is by the person's name, not the opaque subject.
        let erin = keys.ec.sign(&claims("erin", "operator"));
        let r = app
            .client
            .post(app.url(&format!("/api/v1/alerts/{id}/ack")))
            .bearer_auth(&erin)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{k}: ack {}", r.status());
        let (_, alert) = app.get_json(&format!("/api/v1/alerts/{id}")).await;
        assert_eq!(alert["acknowledged"]["by"], "erin-name", "{k}: {alert}");
        let admin = keys.hs.sign(&claims("ada", "admin"));
        let me = call(&app, "GET", "/api/v1/whoami", &admin).await;
        assert_eq!(me.status, 200, "{k}: {}", me.text);
        assert_eq!(me.body["kind"], "jwt");
        assert_eq!(me.body["role"], "admin");
        assert_eq!(me.body["sub"], "ada");
        assert_eq!(me.body["display_name"], "ada-name");
        assert!(
            me.body["expires_at"]
                .as_str()
                .is_some_and(|t| t.starts_with("20"))
        );

        // The audit log names each caller's subject and claims.
        let audit = call(&app, "GET", "/api/v1/audit?action=alerts.ingest", &admin).await;
        assert_eq!(audit.status, 200, "{k}: {}", audit.text);
        let entries = audit.body["entries"].as_array().expect("entries").clone();
        let actors: Vec<&str> = entries.iter().filter_map(|e| e["actor"].as_str()).collect();
        for who in ["otto", "erin", "edda"] {
            assert!(actors.contains(&who), "{k}: {who} in {actors:?}");
        }
        let erin = entries.iter().find(|e| e["actor"] == "erin").unwrap();
        assert_eq!(erin["identity"]["preferred_username"], "erin-name", "{k}");
        assert_eq!(erin["identity"]["email"], "erin@example.com", "{k}");
        assert_eq!(erin["identity"]["iss"], ISSUER, "{k}");

        // Static tokens keep working beside JWTs, without an identity.
        let r = call(&app, "POST", "/api/v1/alerts", "static-admin-token").await;
        assert_eq!(r.status, 202, "{k}: {}", r.text);
        let audit = call(&app, "GET", "/api/v1/audit?actor=ops", "static-admin-token").await;
        assert_eq!(audit.body["entries"][0]["identity"], Value::Null, "{k}");
        app.stop().await;
    }
}

#[tokio::test]
async fn each_failed_check_is_a_401_naming_it() {
    let keys = generate();
    let jwks = Jwks::default();
    // A symmetric key published in the JWKS must never verify anything.
    const OCT: &[u8] = b"a-symmetric-key-nobody-should-trust";
    let oct = json!({"kty": "oct", "kid": "oct-1", "alg": "HS256",
        "k": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(OCT)});
    *jwks.keys.lock().unwrap() = vec![keys.rsa.jwk(), oct];
    let url = jwks.serve().await;
    let mut cfg = test_config(&common::sqlite_db().url);
    cfg.auth.jwt = Some(jwt_config(&url));
    let app = TestApp::start(cfg).await;
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = claims("mallory", "admin");
        f(&mut c);
        c
    };

    refused(
        &app,
        &keys.rsa.sign(&with(&|c| c["exp"] = json!(now() - 3600))),
        "expired",
    )
    .await;
    refused(
        &app,
        &keys.rsa.sign(&with(&|c| c["nbf"] = json!(now() + 3600))),
        "not_yet_valid",
    )
    .await;
    refused(
        &app,
        &keys.rsa.sign(&with(&|c| c["aud"] = json!("grafana"))),
        "audience",
    )
    .await;
    refused(
        &app,
        &keys
            .rsa
            .sign(&with(&|c| c["iss"] = json!("https://evil.example"))),
        "issuer",
    )
    .await;
    // Same kid, another key: the signature does not verify.
    refused(
        &app,
        &keys.rsa_other.sign(&claims("mallory", "admin")),
        "signature",
    )
    .await;
    // A kid the provider never published.
    let unknown = Key {
        kid: "made-up".into(),
        alg: Algorithm::RS256,
        enc: keys.rsa_other.enc.clone(),
    };
    refused(
        &app,
        &unknown.sign(&claims("mallory", "admin")),
        "unknown_key",
    )
    .await;
    refused(&app, &unsigned(&claims("mallory", "admin")), "algorithm").await;
    // HS256 signed with the RSA public key (algorithm confusion): only the configured
    // secret verifies HS256, never a public key.
    let confused = Key {
        kid: "rsa-1".into(),
        alg: Algorithm::HS256,
        enc: EncodingKey::from_secret(&keys.rsa_public_pem).expect("hmac key"),
    };
    refused(
        &app,
        &confused.sign(&claims("mallory", "admin")),
        "signature",
    )
    .await;
    let no_sub = with(&|c| {
        c.as_object_mut().unwrap().remove("sub");
    });
    refused(&app, &keys.rsa.sign(&no_sub), "claim").await;

    // Within the leeway (60 s by default) an expired token still passes.
    let late = keys.rsa.sign(&with(&|c| c["exp"] = json!(now() - 20)));
    assert_eq!(call(&app, "GET", "/api/v1/whoami", &late).await.status, 200);
    // A good token without a watchpost role is authenticated but forbidden.
    let r = call(
        &app,
        "GET",
        "/api/v1/whoami",
        &keys
            .rsa
            .sign(&with(&|c| c["watchpost_role"] = json!("superuser"))),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert_eq!(r.body["reason"], "role");

    let (_, metrics) = app.get_text("/metrics").await;
    for reason in [
        "expired",
        "audience",
        "signature",
        "unknown_key",
        "algorithm",
    ] {
        assert!(
            metrics.contains(&format!(
                "watchpost_auth_jwt_rejected_total{{reason=\"{reason}\"}} "
            )),
            "{reason} counted"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn rotated_keys_are_fetched_and_a_provider_outage_keeps_known_keys() {
    let keys = generate();
    let jwks = Jwks::default();
    *jwks.keys.lock().unwrap() = vec![keys.rsa.jwk()];
    let url = jwks.serve().await;
    let mut cfg = test_config(&common::sqlite_db().url);
    cfg.auth.jwt = Some(jwt_config(&url));
    let app = TestApp::start(cfg).await;
    let old = keys.rsa.sign(&claims("otto", "operator"));
    assert_eq!(call(&app, "GET", "/api/v1/whoami", &old).await.status, 200);
    let loaded = jwks.fetches();
    assert!(loaded >= 1, "the JWKS is loaded at start");

    // The provider rotates: a token with the new kid is accepted without a restart.
    jwks.keys.lock().unwrap().push(keys.rsa_next.jwk());
    let new = keys.rsa_next.sign(&claims("otto", "operator"));
    let r = call(&app, "GET", "/api/v1/whoami", &new).await;
    assert_eq!(r.status, 200, "rotated key: {}", r.text);
    assert_eq!(jwks.fetches(), loaded + 1, "one fetch for the new kid");

    // Made-up kids do not hammer the provider: at most one fetch per jwks_min_refresh.
    for i in 0..5 {
        let forged = Key {
            kid: format!("forged-{i}"),
            alg: Algorithm::RS256,
            enc: keys.rsa_other.enc.clone(),
        };
        refused(&app, &forged.sign(&claims("x", "admin")), "unknown_key").await;
    }
    assert!(
        jwks.fetches() <= loaded + 2,
        "rate-limited: {} fetches",
        jwks.fetches()
    );

    // The provider goes down: known keys keep working, unknown kids get 401, and the
    // failed refresh is counted.
    jwks.down.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let before = jwks.fetches();
    let ec = keys.ec.sign(&claims("erin", "operator"));
    refused(&app, &ec, "unknown_key").await;
    assert_eq!(jwks.fetches(), before + 1, "a refresh was tried");
    assert_eq!(call(&app, "GET", "/api/v1/whoami", &old).await.status, 200);
    assert_eq!(call(&app, "GET", "/api/v1/whoami", &new).await.status, 200);
    let (_, metrics) = app.get_text("/metrics").await;
    let failures = metrics
        .lines()
        .find(|l| l.starts_with("watchpost_auth_jwks_refreshes_total{result=\"failure\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .expect("failure counter");
    assert!(failures >= 1.0, "{failures}");
    assert!(
        metrics.contains("watchpost_auth_jwks_keys 2"),
        "two keys held"
    );

    // Back up with the EC key published: accepted after the next allowed refresh.
    jwks.keys.lock().unwrap().push(keys.ec.jwk());
    jwks.down.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(call(&app, "GET", "/api/v1/whoami", &ec).await.status, 200);
    app.stop().await;
}

#[tokio::test]
async fn a_jwks_file_and_keycloak_realm_roles_through_role_map() {
    let keys = generate();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    std::fs::write(
        &path,
        json!({"keys": [keys.ed.jwk(), {"kty": "weird"}, {"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB"}]})
            .to_string(),
    )
    .unwrap();
    let mut cfg = test_config(&common::sqlite_db().url);
    cfg.auth.jwt = Some(JwtConfig {
        jwks_file: Some(path),
        issuer: Some(ISSUER.into()),
        audience: Some(OneOrMany::Many(vec!["account".into(), AUDIENCE.into()])),
        role_claim: "realm_access.roles".into(),
        role_map: [
            ("watchpost-operators".to_string(), Role::Operator),
            ("watchpost-viewers".to_string(), Role::Viewer),
        ]
        .into(),
        ..JwtConfig::default()
    });
    let app = TestApp::start(cfg).await;
    let mut c = claims("kc-user", "ignored");
    c["aud"] = json!(["account", "watchpost"]);
    c["realm_access"] =
        json!({"roles": ["offline_access", "watchpost-viewers", "watchpost-operators"]});
    let r = call(&app, "POST", "/api/v1/alerts", &keys.ed.sign(&c)).await;
    assert_eq!(r.status, 202, "{}", r.text);
    // Role names that role_map does not list grant nothing.
    c["realm_access"] = json!({"roles": ["admin"]});
    let r = call(&app, "GET", "/api/v1/whoami", &keys.ed.sign(&c)).await;
    assert_eq!(r.status, 403, "{}", r.text);
    // HS256 is not configured here: refused as an algorithm, not tried with a key.
    refused(&app, &keys.hs.sign(&claims("x", "admin")), "algorithm").await;
    app.stop().await;
}
