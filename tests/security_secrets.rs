//! Secrets from files (the Docker / Kubernetes secrets convention): the
//! default app's secret given as `SOCKUDO_DEFAULT_APP_SECRET_FILE` signs real
//! HTTP API requests, never appears in the process environment or the logs,
//! and the mistakes (both forms set, a missing file) stop start-up.

mod common;

use common::security::TempDir;
use common::*;

const FILE_SECRET: &str = "file-secret-7f3a9c0e5b1d4a8f2c6e0b9d3a7f1c5e";

fn app_vars(secret_file: &str) -> Vec<(&'static str, String)> {
    vec![
        ("SOCKUDO_DEFAULT_APP_ID", APP_ID.into()),
        ("SOCKUDO_DEFAULT_APP_KEY", APP_KEY.into()),
        ("SOCKUDO_DEFAULT_APP_ENABLED", "true".into()),
        ("SOCKUDO_DEFAULT_APP_SECRET_FILE", secret_file.into()),
    ]
}

fn borrowed<'a>(vars: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    vars.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[tokio::test]
async fn the_default_app_secret_can_come_from_a_file() {
    let dir = TempDir::new();
    // as `openssl rand -hex 32 > secrets/app_secret` writes it: one newline
    let path = dir.write("app_secret", &format!("{FILE_SECRET}\n"));
    let server = Server::start(&borrowed(&app_vars(&path))).await;

    let mut ws = server.connect().await;
    ws.subscribe("from-file").await;
    let api = server.api_for(APP_ID, APP_KEY, FILE_SECRET);
    api.publish("from-file", "signed", "1").await;
    ws.expect_channel_event("signed", "from-file").await;
    api.get("/channels", &[]).await.assert_ok();

    // the newline is not part of the secret; the file's path is not a secret
    for wrong in [format!("{FILE_SECRET}\n"), path.clone()] {
        server
            .api_for(APP_ID, APP_KEY, &wrong)
            .get("/channels", &[])
            .await
            .assert_error(401, "auth_failed");
    }

    // the secret is neither in the process environment nor in the logs
    let pid = server.pid().expect("running");
    let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("read environ");
    let environ = String::from_utf8_lossy(&environ);
    assert!(environ.contains("SOCKUDO_DEFAULT_APP_SECRET_FILE="));
    assert!(!environ.contains(FILE_SECRET), "{environ}");
    assert!(!server.logs().contains(FILE_SECRET), "{}", server.logs());
}

#[tokio::test]
async fn a_secret_set_both_ways_or_a_missing_file_stops_start_up() {
    let dir = TempDir::new();
    let path = dir.write("app_secret", FILE_SECRET);

    let mut both = app_vars(&path);
    both.push(("SOCKUDO_DEFAULT_APP_SECRET", APP_SECRET.into()));
    let f = Server::start_expect_failure(&borrowed(&both), None, &[]).await;
    assert!(!f.status.success(), "{:?}\n{}", f.status, f.output);
    assert!(
        f.output.contains(
            "SOCKUDO_DEFAULT_APP_SECRET and SOCKUDO_DEFAULT_APP_SECRET_FILE are both set"
        ),
        "{}",
        f.output
    );
    assert!(!f.output.contains(FILE_SECRET) && !f.output.contains(APP_SECRET));

    let missing = dir.file("no-such-secret");
    let f = Server::start_expect_failure(&borrowed(&app_vars(&missing)), None, &[]).await;
    assert!(!f.status.success(), "{:?}\n{}", f.status, f.output);
    assert!(
        f.output.contains(&format!(
            "SOCKUDO_DEFAULT_APP_SECRET_FILE={missing}: cannot read the file"
        )),
        "{}",
        f.output
    );

    // --check-config reports it the same way
    let f = Server::start_expect_failure(&borrowed(&both), None, &["--check-config"]).await;
    assert!(!f.status.success(), "{:?}\n{}", f.status, f.output);
    assert!(
        f.output.contains("SOCKUDO_DEFAULT_APP_SECRET_FILE"),
        "{}",
        f.output
    );
}
