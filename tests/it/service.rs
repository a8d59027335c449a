//! The `plantwatch` binary as a user runs it: `demo` brings its plant online
//! and drains on SIGTERM; `serve` killed with SIGKILL mid-polling serves every
//! device's last values at once from its store when started again.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use plantwatch_actors::sim::{self, Layout, SimConfig};
use serde_json::Value as Json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

fn plantwatch() -> Command {
    let mut c = Command::from(crate::support::bare_plantwatch());
    c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    c
}

/// Reads a child's output line by line until one contains `needle`; the
/// rest of the stream keeps draining so the child never blocks on a full pipe.
async fn wait_line(lines: &mut tokio::io::Lines<BufReader<impl tokio::io::AsyncRead + Unpin>>, needle: &str) -> String {
    loop {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("no line with {needle:?} in time"))
            .expect("read")
            .unwrap_or_else(|| panic!("the process ended before printing {needle:?}"));
        if line.contains(needle) {
            return line;
        }
    }
}

fn drain(lines: tokio::io::Lines<BufReader<impl tokio::io::AsyncRead + Unpin + Send + 'static>>) {
    tokio::spawn(async move {
        let mut lines = lines;
        while let Ok(Some(_)) = lines.next_line().await {}
    });
}

async fn get(client: &reqwest::Client, url: &str) -> Json {
    client.get(url).send().await.expect("request").json().await.expect("json")
}

/// Polls the device list until `done` holds for it.
async fn until(client: &reqwest::Client, base: &str, done: impl Fn(&[Json]) -> bool) -> Vec<Json> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let items = get(client, &format!("{base}/api/v1/devices?limit=1000")).await["items"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if done(&items) || tokio::time::Instant::now() > deadline {
            return items;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls until every point of every listed device has a good value.
async fn until_good(client: &reqwest::Client, base: &str, instances: impl Iterator<Item = u32> + Clone) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut all = true;
        for i in instances.clone() {
            let points = get(client, &format!("{base}/api/v1/devices/{i}/points")).await;
            let good =
                points["items"].as_array().is_some_and(|p| !p.is_empty() && p.iter().all(|p| p["quality"] == "good"));
            all &= good;
        }
        if all {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads the demo's keys from its output: (admin, operator, read).
async fn demo_keys(out: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>) -> (String, String, String) {
    let key = |line: String| line.split_once("key: ").map(|(_, k)| k.trim().to_string()).expect("a key");
    let admin = key(wait_line(out, "admin key: ").await);
    let operator = key(wait_line(out, "operator key: ").await);
    let read = key(wait_line(out, "read key: ").await);
    (admin, operator, read)
}

/// A client that sends `key` with every request.
fn client_with(key: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("authorization", format!("Bearer {key}").parse().expect("header"));
    crate::support::install_crypto_provider();
    reqwest::Client::builder().default_headers(headers).build().expect("client")
}

fn sigterm(child: &Child) {
    if let Some(pid) = child.id() {
        // SAFETY: kill(2) on our own child's pid with a valid signal number.
        unsafe {
            libc::kill(pid as i32, libc::SIGTERM);
        }
    }
}

#[tokio::test]
async fn the_demo_brings_20_devices_online_and_drains_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let mut child = plantwatch()
        .args(["demo", "--listen", "127.0.0.1:0"])
        .env("PLANTWATCH__STORE__PATH", &store)
        .spawn()
        .expect("start plantwatch demo");
    let mut out = BufReader::new(child.stdout.take().expect("stdout")).lines();
    drain(BufReader::new(child.stderr.take().expect("stderr")).lines());
    let api = wait_line(&mut out, "api: ").await;
    let url = api.trim_start_matches("api: ").to_string();
    let base = url.trim_end_matches("/api/v1/devices").to_string();
    let (_, _, read) = demo_keys(&mut out).await;
    drain(out);
    // without a key: refused
    let anonymous = crate::support::http_client().get(format!("{base}/api/v1/devices")).send().await.expect("request");
    assert_eq!(anonymous.status().as_u16(), 401);
    let client = client_with(&read);
    let started = tokio::time::Instant::now();
    let items = until(&client, &base, |items| items.len() == 20 && items.iter().all(|d| d["status"] == "online")).await;
    assert_eq!(items.len(), 20, "{items:?}");
    assert!(items.iter().all(|d| d["status"] == "online"), "{items:?}");
    assert!(items.iter().any(|d| d["route"]["network"] == 100), "a routed device");
    assert!(items.iter().any(|d| d["capabilities"]["rpm"] == false), "a device without RPM");
    assert!(until_good(&client, &base, 1001..=1020).await, "every point of every device good");
    eprintln!("demo: 20 devices online with good values {:?} after the API answered", started.elapsed());
    let points = get(&client, &format!("{base}/api/v1/devices/1005/points")).await;
    assert_eq!(points["items"].as_array().map(Vec::len), Some(14));

    sigterm(&child);
    let status =
        tokio::time::timeout(Duration::from_secs(20), child.wait()).await.expect("drained in time").expect("wait");
    assert_eq!(status.code(), Some(0), "SIGTERM drains and exits 0");
    assert!(
        store.join("db").exists() || std::fs::read_dir(&store).is_ok_and(|mut d| d.next().is_some()),
        "the store was written"
    );
}

fn config(dir: &Path, sim: &sim::Simulator) -> std::path::PathBuf {
    let mut toml = format!(
        "[store]\npath = {:?}\nsnapshot_interval = \"100ms\"\n[auth]\nenabled = false\n\n[[network]]\nname = \"site\"\nbind = \"127.0.0.1:0\"\npoll = \"500ms\"\napdu_timeout = \"300ms\"\napdu_retries = 0\n",
        dir.join("store").display().to_string()
    );
    for d in sim.devices() {
        toml.push_str(&format!("\n[[network.device]]\ninstance = {}\naddress = \"{}\"\n", d.instance, d.address));
    }
    let path = dir.join("site.toml");
    std::fs::write(&path, toml).expect("write config");
    path
}

/// Starts `plantwatch serve`; its log (stdout) is returned to read on.
async fn serve(config: &Path) -> (Child, String, tokio::io::Lines<BufReader<tokio::process::ChildStdout>>) {
    let mut child = plantwatch()
        .args(["serve", "--config"])
        .arg(config)
        .env("PLANTWATCH__SERVER__LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "info,plantwatch_actors::plant::persist=debug")
        .spawn()
        .expect("start plantwatch serve");
    drain(BufReader::new(child.stderr.take().expect("stderr")).lines());
    let mut err = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let line = wait_line(&mut err, "API listening").await;
    let addr =
        line.split("addr=").nth(1).and_then(|s| s.split_whitespace().next()).expect("addr in the log line").to_string();
    (child, format!("http://{addr}"), err)
}

#[tokio::test]
async fn after_sigkill_the_last_values_are_served_at_once_from_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = sim::start(SimConfig {
        devices: 5,
        objects: 1,
        bind: "127.0.0.1:0".parse().expect("addr"),
        layout: Layout::Port,
        first_instance: 5001,
        ..SimConfig::default()
    })
    .await
    .expect("sim");
    let cfg = config(dir.path(), &sim);
    let (mut child, base, log) = serve(&cfg).await;
    // Count the snapshot rounds as they happen.
    let rounds = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    tokio::spawn({
        let rounds = rounds.clone();
        let mut log = log;
        async move {
            while let Ok(Some(line)) = log.next_line().await {
                if line.contains("snapshots saved") {
                    rounds.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            }
        }
    });
    let client = crate::support::http_client();
    let online = until(&client, &base, |items| items.len() == 5 && items.iter().all(|d| d["status"] == "online")).await;
    assert_eq!(online.len(), 5);
    assert!(until_good(&client, &base, 5001..=5005).await);
    let mut before = std::collections::BTreeMap::new();
    for i in 5001..=5005 {
        before.insert(i, get(&client, &format!("{base}/api/v1/devices/{i}/points")).await);
    }
    // Two snapshot rounds after every value was good: every device is in a
    // flushed snapshot. Then the process dies mid-polling.
    let seen = rounds.load(std::sync::atomic::Ordering::SeqCst);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while rounds.load(std::sync::atomic::Ordering::SeqCst) < seen + 2 {
        assert!(tokio::time::Instant::now() < deadline, "no snapshot rounds");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.start_kill().expect("SIGKILL");
    let _ = child.wait().await;

    // No device answers any more: whatever is served comes from the store.
    sim.shutdown().await;
    let started = tokio::time::Instant::now();
    let (mut child, base, log) = serve(&cfg).await;
    drain(log);
    let items = get(&client, &format!("{base}/api/v1/devices")).await;
    let served_after = started.elapsed();
    let items = items["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 5, "every device is served after the restart: {items:?}");
    for i in 5001..=5005 {
        let points = get(&client, &format!("{base}/api/v1/devices/{i}/points")).await;
        let points = points["items"].as_array().cloned().unwrap_or_default();
        assert_eq!(points.len(), 7, "device {i}: {}", get(&client, &format!("{base}/api/v1/devices/{i}")).await);
        for p in &points {
            assert!(!p["value"].is_null(), "device {i} {}: no last value", p["object"]);
            assert!(p["updated_at"].is_string());
        }
        let old = before[&i]["items"].as_array().map(Vec::len);
        assert_eq!(old, Some(points.len()));
    }
    eprintln!("restart after SIGKILL: last values served {served_after:?} after the process started");
    sigterm(&child);
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait()).await.expect("drained").expect("wait");
    assert_eq!(status.code(), Some(0));
}

async fn run_cli(args: &[&str], config: &Path) -> (Option<i32>, String, String) {
    let out = plantwatch().args(args).arg("--config").arg(config).output().await.expect("run plantwatch");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn backup_and_restore_carry_a_store_to_a_new_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = sim::start(SimConfig {
        devices: 2,
        objects: 1,
        bind: "127.0.0.1:0".parse().expect("addr"),
        layout: Layout::Port,
        first_instance: 5101,
        ..SimConfig::default()
    })
    .await
    .expect("sim");
    let cfg = config(dir.path(), &sim);
    let (child, base, log) = serve(&cfg).await;
    drain(log);
    let client = crate::support::http_client();
    assert!(until_good(&client, &base, 5101..=5102).await);
    let backup = dir.path().join("backup.jsonl");
    let backup_arg = backup.to_string_lossy().into_owned();

    // the running service holds the store: a clear refusal, not a corrupted copy
    let (code, _, err) = run_cli(&["backup", "--out", &backup_arg], &cfg).await;
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("another process holds it"), "{err}");

    sigterm(&child);
    let mut child = child;
    assert_eq!(child.wait().await.expect("wait").code(), Some(0));
    let (code, out, err) = run_cli(&["backup", "--out", &backup_arg], &cfg).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("backed up"), "{out}");
    assert!(out.contains("x the data"), "the space amplification is reported: {out}");

    // restore into a new store path, and serve from it with no device reachable
    sim.shutdown().await;
    let restored = dir.path().join("restored.toml");
    let text = std::fs::read_to_string(&cfg).expect("config");
    let moved =
        text.replace(&dir.path().join("store").display().to_string(), &dir.path().join("store2").display().to_string());
    std::fs::write(&restored, moved).expect("write config");
    let (code, out, err) = run_cli(&["restore", "--from", &backup_arg], &restored).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("restored"), "{out}");
    // a second restore over it is refused unless --replace
    let (code, _, err) = run_cli(&["restore", "--from", &backup_arg], &restored).await;
    assert_eq!(code, Some(1), "{err}");
    let (mut child, base, log) = serve(&restored).await;
    drain(log);
    let points = get(&client, &format!("{base}/api/v1/devices/5102/points")).await;
    let points = points["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(points.len(), 7);
    assert!(points.iter().all(|p| !p["value"].is_null()));
    sigterm(&child);
    assert_eq!(child.wait().await.expect("wait").code(), Some(0));
}

#[tokio::test]
async fn a_client_request_id_is_in_the_answer_and_in_every_log_line_of_that_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = plantwatch()
        .args(["demo", "--listen", "127.0.0.1:0", "--devices", "3"])
        .env("PLANTWATCH__STORE__PATH", dir.path().join("store"))
        .env("PLANTWATCH__LOG__FORMAT", "json")
        .spawn()
        .expect("start plantwatch demo");
    drain(BufReader::new(child.stderr.take().expect("stderr")).lines());
    let mut out = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let api = wait_line(&mut out, "api: ").await;
    let base = api.trim_start_matches("api: ").trim_end_matches("/api/v1/devices").to_string();
    let (_, operator, _) = demo_keys(&mut out).await;
    // collect the log from here on
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        while let Ok(Some(line)) = out.next_line().await {
            let _ = tx.send(line);
        }
    });
    let client = client_with(&operator);
    assert!(until_good(&client, &base, 1001..=1003).await);
    let r = client
        .put(format!("{base}/api/v1/devices/1001/points/analog-output:1"))
        .header("x-request-id", "trace-me-42")
        .json(&serde_json::json!({"value": 12.5, "priority": 9}))
        .send()
        .await
        .expect("write");
    assert_eq!(r.headers().get("x-request-id").and_then(|v| v.to_str().ok()), Some("trace-me-42"));
    let body: Json = r.json().await.expect("json");
    assert_eq!(body["request_id"], "trace-me-42", "{body}");

    // the request's log lines: the handler, the device actor's queue and write, the access line
    let mut mine: Vec<Json> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !mine.iter().any(|l| l["message"] == "request") {
        let Ok(Some(line)) = tokio::time::timeout_at(deadline, rx.recv()).await else { break };
        if line.contains("trace-me-42") {
            mine.push(serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}")));
        }
    }
    let messages: Vec<&str> = mine.iter().filter_map(|l| l["message"].as_str()).collect();
    for expected in ["write queued", "write done", "write", "request"] {
        assert!(messages.contains(&expected), "no {expected:?} line carries the request id: {messages:?}");
    }
    let access = mine.iter().find(|l| l["message"] == "request").expect("access line");
    assert_eq!(access["status"], 200);
    let key_id = access["key_id"].as_str().expect("key id");
    assert!(key_id.len() == 12 && key_id.bytes().all(|b| b.is_ascii_hexdigit()), "the operator key's id: {access}");
    assert!(access["duration_ms"].is_u64());
    assert!(access.to_string().contains("/api/v1/devices/{instance}/points/{object}"), "route template: {access}");
    sigterm(&child);
    assert_eq!(child.wait().await.expect("wait").code(), Some(0));
}

#[tokio::test]
async fn log_file_gets_the_log_with_daily_rotation_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("empty.toml");
    std::fs::write(&cfg, format!("[store]\npath = {:?}\n", dir.path().join("store").display().to_string()))
        .expect("config");
    let logs = dir.path().join("logs");
    let mut child = plantwatch()
        .args(["serve", "--config"])
        .arg(&cfg)
        .env("PLANTWATCH__SERVER__LISTEN", "127.0.0.1:0")
        .env("PLANTWATCH__LOG__FILE", logs.join("plantwatch.log"))
        .env("PLANTWATCH__LOG__FORMAT", "json")
        .spawn()
        .expect("start plantwatch serve");
    drain(BufReader::new(child.stderr.take().expect("stderr")).lines());
    let mut out = BufReader::new(child.stdout.take().expect("stdout")).lines();
    wait_line(&mut out, "API listening").await;
    drain(out);
    sigterm(&child);
    assert_eq!(child.wait().await.expect("wait").code(), Some(0));
    let files: Vec<std::path::PathBuf> =
        std::fs::read_dir(&logs).expect("log dir").filter_map(|e| e.ok().map(|e| e.path())).collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
    // plantwatch.YYYY-MM-DD.log: one file per day
    assert!(
        name.starts_with("plantwatch.") && name.ends_with(".log") && name.len() == "plantwatch.2026-11-26.log".len(),
        "{name}"
    );
    let text = std::fs::read_to_string(&files[0]).expect("log file");
    let line = text.lines().find(|l| l.contains("API listening")).expect("the start line");
    let json: Json = serde_json::from_str(line).expect("a JSON line");
    assert_eq!(json["level"], "INFO");
}

#[tokio::test]
async fn keys_on_the_command_line_and_the_bootstrap_admin_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("site.toml");
    std::fs::write(&cfg, format!("[store]\npath = {:?}\n", dir.path().join("store").display().to_string()))
        .expect("config");
    // the first start installs the bootstrap admin key from the environment
    let secret = "bootstrap-secret-of-at-least-32-characters!";
    let mut child = plantwatch()
        .args(["serve", "--config"])
        .arg(&cfg)
        .env("PLANTWATCH__SERVER__LISTEN", "127.0.0.1:0")
        .env("PLANTWATCH_BOOTSTRAP_ADMIN_KEY", secret)
        .spawn()
        .expect("start plantwatch serve");
    drain(BufReader::new(child.stderr.take().expect("stderr")).lines());
    let mut out = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let line = wait_line(&mut out, "API listening").await;
    let base =
        format!("http://{}", line.split("addr=").nth(1).and_then(|s| s.split_whitespace().next()).expect("addr"));
    drain(out);
    let admin = client_with(secret);
    let keys: Json = admin.get(format!("{base}/api/v1/keys")).send().await.expect("keys").json().await.expect("json");
    assert_eq!(keys["items"][0]["id"], "bootstrap", "{keys}");
    // while the service holds the store, the command line is refused clearly
    let (code, _, err) = run_cli(&["keys", "list"], &cfg).await;
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("another process holds it"), "{err}");
    sigterm(&child);
    assert_eq!(child.wait().await.expect("wait").code(), Some(0));

    // stopped: create, list, revoke
    let (code, out, err) = run_cli(&["keys", "create", "--name", "bms", "--role", "operator"], &cfg).await;
    assert_eq!(code, Some(0), "{err}");
    let id = out.lines().find_map(|l| l.strip_prefix("id: ")).expect("id").to_string();
    let key = out.lines().find_map(|l| l.strip_prefix("key: ")).expect("key").to_string();
    assert!(key.starts_with("pw_") && key.len() == 67);
    let (code, out, _) = run_cli(&["keys", "list"], &cfg).await;
    assert_eq!(code, Some(0));
    assert!(out.contains(&id) && out.contains("operator") && !out.contains(&key[3..]), "{out}");
    let (code, _, err) = run_cli(&["keys", "create", "--name", "x", "--role", "root"], &cfg).await;
    assert_eq!(code, Some(64), "{err}");
    let (code, out, _) = run_cli(&["keys", "revoke", &id], &cfg).await;
    assert_eq!(code, Some(0));
    assert!(out.contains("revoked"));
    let (_, out, _) = run_cli(&["keys", "list"], &cfg).await;
    assert!(out.lines().any(|l| l.contains(&id) && l.contains("revoked")), "{out}");
}

#[tokio::test]
async fn a_device_actor_panic_is_one_error_event_in_the_json_log_and_the_service_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = sim::start(SimConfig {
        devices: 1,
        objects: 1,
        bind: "127.0.0.1:0".parse().expect("addr"),
        layout: Layout::Port,
        first_instance: 5101,
        ..SimConfig::default()
    })
    .await
    .expect("sim");
    let cfg = config(dir.path(), &sim);
    let mut toml = std::fs::read_to_string(&cfg).expect("config");
    toml.push_str("\n[testing]\npoison_value = 666.25\n");
    std::fs::write(&cfg, toml).expect("config");
    let mut child = plantwatch()
        .args(["serve", "--config"])
        .arg(&cfg)
        .env("PLANTWATCH__SERVER__LISTEN", "127.0.0.1:0")
        .env("PLANTWATCH__LOG__FORMAT", "json")
        .env("RUST_BACKTRACE", "0")
        .spawn()
        .expect("start plantwatch serve");
    let stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let stderr = tokio::spawn(async move {
        let mut lines = stderr.lines();
        let mut all = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            all.push(line);
        }
        all
    });
    let mut out = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let line = wait_line(&mut out, "API listening").await;
    let listening: Json = serde_json::from_str(&line).expect("a JSON line");
    let base = format!("http://{}", listening["addr"].as_str().expect("addr"));
    let client = crate::support::http_client();
    assert!(until_good(&client, &base, 5101..=5101).await);

    let url = format!("{base}/api/v1/devices/5101/points/analog-value:1");
    let answer = client.put(&url).json(&serde_json::json!({"value": 666.25})).send().await.expect("put");
    assert!(answer.status().is_server_error(), "the poison write fails: {}", answer.status());
    let line = wait_line(&mut out, "poison value").await;
    let event: Json = serde_json::from_str(&line).unwrap_or_else(|e| panic!("the panic is a JSON line ({e}): {line}"));
    assert_eq!(event["level"], "ERROR", "{event}");
    assert_eq!(event["target"], "plantwatch::panic", "{event}");
    let message = event["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("panicked at ") && message.contains("device 5101"), "{event}");
    assert!(event["location"].as_str().is_some_and(|l| l.contains("device.rs")), "{event}");
    assert!(event.get("backtrace").is_none(), "no backtrace unless RUST_BACKTRACE asks: {event}");
    drain(out);

    // the actor restarts: an ordinary write goes through again
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let answer = client.put(&url).json(&serde_json::json!({"value": 12.5})).send().await.expect("put");
        if answer.status().is_success() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no write after the restart: {}", answer.status());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sigterm(&child);
    assert_eq!(child.wait().await.expect("wait").code(), Some(0));
    let stderr = stderr.await.expect("stderr");
    assert!(!stderr.iter().any(|l| l.contains("panicked")), "nothing on stderr: {stderr:?}");
    sim.shutdown().await;
}
