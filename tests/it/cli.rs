//! Errors on the terminal: one line on stderr with the fix, and the exit
//! code (64 for a bad command line or configuration, 1 for the rest).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

fn plantwatch() -> tokio::process::Command {
    let mut c = tokio::process::Command::from(crate::support::bare_plantwatch());
    c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    c
}

async fn run(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let out = plantwatch().args(args).envs(env.iter().copied()).output().await.expect("run plantwatch");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn one_line(stderr: &str) {
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
    assert!(stderr.starts_with("plantwatch: ") && stderr.ends_with('\n'), "{stderr:?}");
}

fn site(dir: &Path, store: &Path) -> String {
    let path = dir.join(format!("{}.toml", store.file_name().and_then(|n| n.to_str()).unwrap_or("site")));
    std::fs::write(&path, format!("[store]\npath = {:?}\n", store.display().to_string())).expect("config");
    path.display().to_string()
}

#[tokio::test]
async fn a_busy_listen_address_and_a_locked_store_are_one_line_with_the_fix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = site(dir.path(), &dir.path().join("store"));
    let mut running = plantwatch()
        .args(["serve", "--config", &cfg])
        .env("PLANTWATCH__SERVER__LISTEN", "127.0.0.1:0")
        .spawn()
        .expect("start plantwatch serve");
    let mut log = BufReader::new(running.stdout.take().expect("stdout")).lines();
    let addr = loop {
        let line = tokio::time::timeout(Duration::from_secs(20), log.next_line())
            .await
            .expect("serve started in time")
            .expect("read")
            .expect("serve exited early");
        if let Some(rest) = line.split("addr=").nth(1) {
            break rest.split_whitespace().next().unwrap_or_default().to_string();
        }
    };

    // serve on the same address (another store): the address is busy
    let other = site(dir.path(), &dir.path().join("other"));
    let (code, err) = run(&["serve", "--config", &other], &[("PLANTWATCH__SERVER__LISTEN", &addr)]).await;
    assert_eq!(code, Some(1), "{err}");
    one_line(&err);
    assert!(err.starts_with(&format!("plantwatch: cannot listen on {addr}: address in use")), "{err}");
    assert!(err.contains("stop it, or set server.listen, e.g. PLANTWATCH__SERVER__LISTEN=127.0.0.1:"), "{err}");

    // demo on it: the fix is its flag
    let (code, err) = run(
        &["demo", "--listen", &addr],
        &[("PLANTWATCH__STORE__PATH", &dir.path().join("demo").display().to_string())],
    )
    .await;
    assert_eq!(code, Some(1), "{err}");
    one_line(&err);
    assert!(err.contains("address in use") && err.contains("--listen 127.0.0.1:"), "{err}");

    // serve with the running one's store (on a free port): the store is locked
    let (code, err) = run(&["serve", "--config", &cfg], &[("PLANTWATCH__SERVER__LISTEN", "127.0.0.1:0")]).await;
    assert_eq!(code, Some(1), "{err}");
    one_line(&err);
    assert!(err.contains("is locked: another process holds it") && err.contains("stop that process"), "{err}");
    let (code, err) = run(&["backup", "--config", &cfg, "--out", "/dev/null"], &[]).await;
    assert_eq!(code, Some(1), "{err}");
    one_line(&err);

    running.start_kill().expect("kill");
    let _ = running.wait().await;
}

#[tokio::test]
async fn a_store_directory_that_cannot_be_made_names_the_fix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("a-file");
    std::fs::write(&file, "not a directory").expect("file");
    let cfg = site(dir.path(), &file.join("store"));
    let (code, err) = run(&["keys", "list", "--config", &cfg], &[]).await;
    assert_eq!(code, Some(1), "{err}");
    one_line(&err);
    assert!(err.starts_with("plantwatch: cannot create the store directory"), "{err}");
    assert!(err.contains("set store.path (or PLANTWATCH__STORE__PATH) to a directory this user can write"), "{err}");
}

#[tokio::test]
async fn a_bad_command_line_is_one_line_and_exit_code_64() {
    let (code, err) = run(&["serve", "--cofig", "site.toml"], &[]).await;
    assert_eq!(code, Some(64), "{err}");
    one_line(&err);
    assert_eq!(
        err,
        "plantwatch: unexpected argument '--cofig' found; a similar argument exists: '--config'; usage: plantwatch \
         serve --config <FILE>\n"
    );
    let (code, err) = run(&["frobnicate"], &[]).await;
    assert_eq!(code, Some(64), "{err}");
    one_line(&err);
    // help and version are not errors
    let out = plantwatch().arg("--help").output().await.expect("run");
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Examples:"));
    let out = plantwatch().args(["discover", "--help"]).output().await.expect("run");
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("plantwatch discover --config site.toml --toml"));
}
