//! `plantwatch discover` run as a person runs it, against simulated devices
//! on loopback (a broadcast listener, a router with devices behind it), a
//! device that answers Who-Is and nothing else, and a bacpypes3 device.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use plantwatch_actors::bacnet::frame::{self, Apdu, Body, NpduOut};
use plantwatch_actors::bacnet::services::IAm;
use plantwatch_actors::bacnet::types::service;
use plantwatch_actors::bacnet::{ObjectId, Segmentation};
use plantwatch_actors::sim::{self, Layout, SimConfig, Simulator};
use serde_json::Value as Json;

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

async fn discover(config: &Path, args: &[&str]) -> Run {
    let out = tokio::process::Command::from(crate::support::bare_plantwatch())
        .arg("discover")
        .arg("--config")
        .arg(config)
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .expect("run plantwatch discover");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("site.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// Four devices behind a broadcast listener, two behind a router, and a
/// configuration that lists two of the first four, one routed device and one
/// device that does not exist.
struct Site {
    _dir: tempfile::TempDir,
    config: PathBuf,
    text: String,
    plain: Simulator,
    routed: Simulator,
}

async fn site(net: u8) -> Site {
    let plain = sim::start(SimConfig {
        devices: 4,
        objects: 1,
        bind: SocketAddr::from(([127, 0, net, 2], 0)),
        layout: Layout::Ip,
        first_instance: 7101,
        ..SimConfig::default()
    })
    .await
    .expect("simulator");
    let routed = sim::start(SimConfig {
        devices: 2,
        objects: 1,
        bind: SocketAddr::from(([127, 0, net, 20], 0)),
        layout: Layout::Router,
        first_instance: 7201,
        router_network: 100,
        ..SimConfig::default()
    })
    .await
    .expect("router simulator");
    let broadcast = plain.broadcast_address().expect("a broadcast listener");
    let d = plain.devices();
    let r = &routed.devices()[0];
    let route = r.route.expect("routed");
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!(
        "[store]\npath = {:?}\n\n[[network]]\nname = \"site\"\nbind = \"127.0.{net}.1:0\"\nbroadcast = \"{broadcast}\"\napdu_timeout = \"500ms\"\n\n\
         [[network.device]]\ninstance = {}\naddress = \"{}\"\n\n\
         [[network.device]]\ninstance = {}\naddress = \"{}\"\n\n\
         [[network.device]]\ninstance = {}\naddress = \"{}\"\nroute = {{ network = {}, mac = \"{}\" }}\n\n\
         [[network.device]]\ninstance = 7999\naddress = \"127.0.{net}.99:47808\"\n",
        dir.path().join("store").display().to_string(),
        d[0].instance,
        d[0].address,
        d[1].instance,
        d[1].address,
        r.instance,
        r.address,
        route.network,
        route.mac,
    );
    let config = write_config(dir.path(), &text);
    Site { _dir: dir, config, text, plain, routed }
}

#[tokio::test]
async fn the_table_lists_every_device_with_its_name_and_whether_it_is_configured() {
    let site = site(7).await;
    let run = discover(&site.config, &["--timeout", "1"]).await;
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    let head = lines.first().copied().unwrap_or_default();
    for column in
        ["NETWORK", "INSTANCE", "ADDRESS", "ROUTE", "NAME", "VENDOR", "MODEL", "MAX-APDU", "SEGMENTATION", "CONFIG"]
    {
        assert!(head.contains(column), "{head}");
    }
    assert_eq!(lines.len(), 1 + 6, "a header and six devices:\n{}{}", run.stdout, run.stderr);
    let rows = &lines[1..];
    // sorted by instance, each with its name, vendor and model read from the device
    let instances: Vec<u32> =
        rows.iter().map(|l| l.split_whitespace().nth(1).and_then(|i| i.parse().ok()).unwrap_or(0)).collect();
    assert_eq!(instances, vec![7101, 7102, 7103, 7104, 7201, 7202]);
    for (row, instance) in rows.iter().zip(&instances) {
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells[0], "site", "{row}");
        assert_eq!(cells[4], format!("SIM-{instance}"), "{row}");
        assert_eq!(&cells[5..9], &["plantwatch", "plantwatch-sim", "1476", "transmit"], "{row}");
        let configured = matches!(instance, 7101 | 7102 | 7201);
        assert_eq!(cells[9], if configured { "configured" } else { "new" }, "{row}");
    }
    let cells = |row: &str| row.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    let direct = site.plain.devices()[0].address.to_string();
    assert_eq!(cells(rows[0])[2..4], [direct, "-".to_string()], "{}", rows[0]);
    let router = site.routed.devices()[1].address.to_string();
    let mac = site.routed.devices()[1].route.expect("route").mac;
    assert_eq!(cells(rows[5])[2..4], [router, format!("100:{mac}")], "the routed device: {}", rows[5]);

    // stderr: the summary and the configured device that stayed silent
    assert!(run.stderr.contains("6 device(s) answered on site in 1.0s: 3 configured, 3 new"), "{}", run.stderr);
    assert!(run.stderr.contains("configured but silent: 7999 (site, 127.0.7.99:47808)"), "{}", run.stderr);
    assert!(!run.stderr.contains('\u{1b}'), "no progress bar when stderr is not a terminal: {:?}", run.stderr);
    site.plain.shutdown().await;
    site.routed.shutdown().await;
}

#[tokio::test]
async fn json_for_scripts_and_toml_for_the_new_devices() {
    let site = site(8).await;
    let run = discover(&site.config, &["--timeout", "1", "--json"]).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stderr.is_empty(), "--json prints nothing else: {}", run.stderr);
    let doc: Json = serde_json::from_str(&run.stdout).expect("one JSON document");
    let devices = doc["devices"].as_array().expect("devices");
    assert_eq!(devices.len(), 6, "{doc:#}");
    let d = &devices[0];
    assert_eq!(d["instance"], 7101);
    assert_eq!(d["name"], "SIM-7101");
    assert_eq!(d["vendor"], "plantwatch");
    assert_eq!(d["model"], "plantwatch-sim");
    assert_eq!(d["max_apdu"], 1476);
    assert_eq!(d["segmentation"], "transmit");
    assert_eq!(d["configured"], true);
    assert_eq!(d["route"], Json::Null);
    assert_eq!(d["read_error"], Json::Null);
    assert_eq!(d["address"], site.plain.devices()[0].address.to_string());
    let routed = &devices[5];
    assert_eq!((routed["instance"].as_u64(), routed["configured"].as_bool()), (Some(7202), Some(false)));
    assert_eq!(routed["route"]["network"], 100);
    assert_eq!(routed["route"]["mac"], site.routed.devices()[1].route.expect("route").mac.to_string());
    assert_eq!(doc["silent"][0]["instance"], 7999, "{doc:#}");
    assert_eq!(doc["networks"], serde_json::json!(["site"]));

    // --toml: entries for the three new devices, which load when pasted
    let run = discover(&site.config, &["--timeout", "1", "--toml"]).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.stdout.matches("[[network.device]]").count(), 3, "{}", run.stdout);
    let merged = format!("{}\n{}", site.text, run.stdout);
    let config = plantwatch::config::load_texts(&[(PathBuf::from("site.toml"), merged)], &Default::default())
        .unwrap_or_else(|e| panic!("{e}\n{}", run.stdout));
    let mut instances: Vec<u32> = config.networks[0].devices.iter().map(|d| d.instance).collect();
    instances.sort_unstable();
    assert_eq!(instances, vec![7101, 7102, 7103, 7104, 7201, 7202, 7999]);
    let pasted = config.networks[0].devices.iter().find(|d| d.instance == 7202).expect("7202");
    assert_eq!(pasted.name.as_deref(), Some("SIM-7202"));
    assert_eq!(pasted.route.map(|r| r.network), Some(100));
    site.plain.shutdown().await;
    site.routed.shutdown().await;
}

/// A device that answers Who-Is with an I-Am and nothing else.
async fn mute_device(ip: [u8; 4], instance: u32) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let socket = tokio::net::UdpSocket::bind(SocketAddr::from((ip, 0))).await.expect("bind");
    let address = socket.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 1500];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let who_is = matches!(
                frame::parse(&buf[..n]).map(|f| f.body),
                Ok(Body::Apdu(Apdu::UnconfirmedRequest { service: service::WHO_IS, .. }))
            );
            if who_is {
                let mut out = Vec::new();
                frame::begin(&mut out, false, &NpduOut { destination: None, source: None, expecting_reply: false });
                frame::write_unconfirmed_request(&mut out, service::I_AM);
                IAm {
                    device: ObjectId::device(instance),
                    max_apdu: 480,
                    segmentation: Segmentation::None,
                    vendor_id: 42,
                }
                .encode(&mut out);
                frame::finish(&mut out).expect("frame");
                let _ = socket.send_to(&out, from).await;
            }
        }
    });
    (address, task)
}

#[tokio::test]
async fn a_device_that_does_not_answer_the_name_read_is_still_listed() {
    let (address, task) = mute_device([127, 0, 9, 2], 7301).await;
    let dir = tempfile::tempdir().expect("tempdir");
    // no broadcast address: the configured device is asked directly
    let config = write_config(
        dir.path(),
        &format!(
            "[[network]]\nname = \"mute\"\nbind = \"127.0.9.1:0\"\napdu_timeout = \"200ms\"\n\n\
             [[network.device]]\ninstance = 7301\naddress = \"{address}\"\n"
        ),
    );
    let run = discover(&config, &["--timeout", "0.5"]).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let row = run.stdout.lines().nth(1).unwrap_or_default().to_string();
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cells,
        ["mute", "7301", &address.to_string(), "-", "-", "vendor", "42", "-", "480", "none", "configured"]
    );
    assert!(run.stderr.contains("1 did not answer the name read"), "{}", run.stderr);
    assert!(
        run.stderr.contains("note: network mute: no broadcast address: only the configured devices were asked"),
        "{}",
        run.stderr
    );
    task.abort();
}

#[tokio::test]
async fn a_busy_bind_address_is_one_line_with_the_fix() {
    let busy = std::net::UdpSocket::bind("127.0.9.11:0").expect("bind");
    let addr = busy.local_addr().expect("addr");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(
        dir.path(),
        &format!("[[network]]\nname = \"bldg-a\"\nbind = \"{addr}\"\nbroadcast = \"127.255.255.255:47808\"\n"),
    );
    let run = discover(&config, &["--timeout", "0.2"]).await;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(
        run.stderr.starts_with(&format!("plantwatch: network bldg-a: cannot bind {addr}: address in use")),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("stop it, or bind discover elsewhere with PLANTWATCH__NETWORK__0__BIND=127.0.9.11:0"));

    // and the fix works: the override binds elsewhere
    let out = tokio::process::Command::from(crate::support::bare_plantwatch())
        .env("PLANTWATCH__NETWORK__0__BIND", "127.0.9.11:0")
        .args(["discover", "--timeout", "0.2", "--config"])
        .arg(&config)
        .output()
        .await
        .expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    drop(busy);
}

#[tokio::test]
async fn bad_arguments_exit_64_with_one_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), "[[network]]\nname = \"bldg-a\"\nbind = \"127.0.9.12:0\"\n");
    let run = discover(&config, &["--network", "bldg-b"]).await;
    assert_eq!(run.code, Some(64), "{}", run.stderr);
    assert_eq!(run.stderr, "plantwatch: --network bldg-b: no such network; the configuration has: bldg-a\n");
    let run = discover(&config, &["--timeout", "0"]).await;
    assert_eq!(run.code, Some(64), "{}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    let run = discover(&config, &["--json", "--toml"]).await;
    assert_eq!(run.code, Some(64), "{}", run.stderr);
    assert!(run.stderr.starts_with("plantwatch: the argument '--json' cannot be used with '--toml'"), "{}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
}

#[tokio::test]
async fn a_bacpypes3_device_is_found_with_its_names() {
    let dev = crate::support::Bp3Device::start("127.0.0.24", 3004, 1).await;
    let dir = tempfile::tempdir().expect("tempdir");
    // directed Who-Is to the configured device (bacpypes3 answers the requester)
    let config = write_config(
        dir.path(),
        &format!(
            "[[network]]\nname = \"bp3\"\nbind = \"127.0.0.1:0\"\n\n[[network.device]]\ninstance = 3004\naddress = \"{}\"\n",
            dev.address
        ),
    );
    let run = discover(&config, &["--timeout", "1.5", "--json"]).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let doc: Json = serde_json::from_str(&run.stdout).expect("JSON");
    let d = &doc["devices"][0];
    assert_eq!(d["instance"], 3004, "{doc:#}");
    assert_eq!(d["name"], "bp3-device-3004");
    assert_eq!(d["vendor"], "plantwatch-interop");
    assert_eq!(d["model"], "bp3_device");
    assert_eq!(d["vendor_id"], 999);
    assert_eq!(d["configured"], true);
}
