//! `watchpost migrate --from sqlite://PATH`: a single node's SQLite history (alerts,
//! events, acknowledgements, silences, audit log, notification log) imported into
//! PostgreSQL by the real binary, twice, with the same contents; then served from there.

mod common;

use std::time::Duration;

use common::{TestApp, command, postgres_db, sqlite_db, test_config};
use serde_json::{Value, json};

/// Each table's rows as one JSON text, in key order.
async fn dump(url: &str) -> Vec<(String, String)> {
    sqlx::any::install_default_drivers();
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(url)
        .await
        .expect("connect");
    let mut out = Vec::new();
    for (table, key) in [
        ("alerts", "id"),
        ("alert_events", "id"),
        ("silences", "id"),
        ("audit_log", "id"),
        ("notification_log", "group_key, receiver"),
    ] {
        let sql =
            format!("SELECT COALESCE(json_agg(t ORDER BY {key})::text, '[]') AS j FROM {table} t");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_one(&mut conn)
            .await
            .expect("dump");
        out.push((table.to_string(), sqlx::Row::get::<String, _>(&row, "j")));
    }
    out
}

async fn count(url: &str, table: &str) -> i64 {
    sqlx::any::install_default_drivers();
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(url)
        .await
        .expect("connect");
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) AS n FROM {table}"
    )))
    .fetch_one(&mut conn)
    .await
    .expect("count");
    sqlx::Row::get::<i64, _>(&row, "n")
}

/// `watchpost migrate --from FROM` on the PostgreSQL `to`: exit code, stdout, stderr.
async fn migrate(dir: &std::path::Path, to: &str, from: &str) -> (Option<i32>, String, String) {
    let mut cmd = command(dir);
    cmd.args(["migrate", "--from", from])
        .env("WATCHPOST_DATABASE_URL", to);
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("run watchpost"))
        .await
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_history_is_imported_into_postgresql_idempotently() {
    let Some(pg) = postgres_db().await else {
        return;
    };
    let lite = sqlite_db();

    // A history on SQLite: firing, resolved, acknowledged, silenced alerts.
    let app = TestApp::start(test_config(&lite.url)).await;
    let mut ids = Vec::new();
    for i in 0..30 {
        let (status, body) = app
            .post_json(
                "/api/v1/alerts",
                &json!({"message": format!("disk {i} full"), "severity": "warning",
                        "labels": {"alertname": "DiskFull", "instance": format!("h{i}")}}),
            )
            .await;
        assert_eq!(status, 202, "{body}");
        ids.push(body["ids"][0].as_i64().expect("id"));
    }
    let (status, body) = app
        .post_json(
            "/api/v1/alerts",
            &json!({"message": "disk 0 full", "severity": "warning",
                    "ends_at": (chrono::Utc::now() - chrono::Duration::seconds(60)).to_rfc3339(),
                    "labels": {"alertname": "DiskFull", "instance": "h0"}}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let (status, body) = app
        .post_json(
            &format!("/api/v1/alerts/{}/ack", ids[1]),
            &json!({"by": "otto", "comment": "replacing the disk"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app
        .post_json(
            "/api/v1/silences",
            &json!({"matchers": [{"name": "instance", "value": "h2", "isRegex": false, "isEqual": true}],
                    "startsAt": chrono::Utc::now().to_rfc3339(),
                    "endsAt": (chrono::Utc::now() + chrono::Duration::hours(2)).to_rfc3339(),
                    "createdBy": "otto", "comment": "maintenance"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, acked) = app.get_json(&format!("/api/v1/alerts/{}", ids[1])).await;
    app.stop().await;

    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = migrate(dir.path(), &pg.url, &lite.url).await;
    assert_eq!(code, Some(0), "first import: {out}\n{err}");
    eprintln!("first import: {out}");
    assert!(
        err.contains("migrate: alerts: 30/30 rows read, 30 new"),
        "{err}"
    );
    assert!(out.contains("alerts 30/30 new"), "{out}");
    let first = dump(&pg.url).await;
    for (table, rows) in &first {
        let source = count(&lite.url, table).await;
        let n = serde_json::from_str::<Vec<Value>>(rows).unwrap().len() as i64;
        assert_eq!(n, source, "{table}: every row imported");
    }
    assert!(
        count(&pg.url, "alert_events").await > 30,
        "events came along"
    );

    // Twice: nothing new, the same contents.
    let (code, out, err) = migrate(dir.path(), &pg.url, &lite.url).await;
    assert_eq!(code, Some(0), "second import: {out}\n{err}");
    assert!(out.contains("alerts 0/30 new"), "{out}");
    assert_eq!(
        dump(&pg.url).await,
        first,
        "a second import changes nothing"
    );

    // Served from PostgreSQL: the history is there, new alerts get new ids.
    let app = TestApp::start(test_config(&pg.url)).await;
    let (status, a) = app.get_json(&format!("/api/v1/alerts/{}", ids[1])).await;
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["acknowledged"], acked["acknowledged"], "{a}");
    assert_eq!(a["acknowledged"]["by"], "otto");
    let (_, silences) = app.get_json("/api/v1/silences").await;
    assert!(silences.to_string().contains("maintenance"), "{silences}");
    let (status, body) = app
        .post_json(
            "/api/v1/alerts",
            &json!({"message": "new", "labels": {"alertname": "AfterImport"}}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let new_id = body["ids"][0].as_i64().expect("id");
    assert!(
        new_id > *ids.iter().max().unwrap(),
        "ids continue after the imported ones"
    );
    app.stop().await;

    // Usage errors name what is wrong.
    let (code, _, err) = migrate(dir.path(), &lite.url, &lite.url).await;
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("postgres://"), "{err}");
    let (code, _, err) = migrate(dir.path(), &pg.url, "sqlite:///nonexistent/x.db").await;
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("does not exist"), "{err}");
    tokio::time::sleep(Duration::from_millis(10)).await;
}

#[tokio::test]
async fn a_file_from_before_the_newest_columns_is_imported_with_their_defaults() {
    let Some(pg) = postgres_db().await else {
        return;
    };
    let lite = sqlite_db();
    let app = TestApp::start(test_config(&lite.url)).await;
    let (status, body) = app
        .post_json(
            "/api/v1/alerts",
            &json!({"message": "old file", "labels": {"alertname": "OldFile"}}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    app.stop().await;
    // As written before migration 0015 (audit_log.identity).
    {
        use sqlx::Connection as _;
        let mut c = sqlx::SqliteConnection::connect(&lite.url).await.unwrap();
        sqlx::query("ALTER TABLE audit_log DROP COLUMN identity")
            .execute(&mut c)
            .await
            .unwrap();
        c.close().await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = migrate(dir.path(), &pg.url, &lite.url).await;
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert_eq!(
        count(&pg.url, "audit_log").await,
        count(&lite.url, "audit_log").await,
        "every audit record imported"
    );
    assert!(count(&pg.url, "audit_log").await >= 1);
}
