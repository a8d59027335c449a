//! Measures the simulator's throughput from another process.
//!
//! ```text
//! cargo run --release --example sim_load -- serve [--devices N] [--objects K] [--bind ADDR]
//!                                                 [--layout ip|port|router] [--threads T]
//! cargo run --release --example sim_load -- load --target ADDR[,ADDR...] [--in-flight K]
//!                                                [--seconds S] [--objects K] [--route NET:MAC]
//! ```
//!
//! `load` is a plain blocking client on one thread: it keeps K ReadProperty
//! (Present_Value of analog-inputs 1..=K objects) requests in flight, spread
//! over the targets, and prints `reads_per_s=… p50_us=… p99_us=…` like
//! `plantwatch bench`.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use plantwatch_actors::bacnet::frame::{self, Apdu, Body, NpduOut};
use plantwatch_actors::bacnet::services::{PropertyRef, ReadPropertyRequest};
use plantwatch_actors::bacnet::types::{object_type, property, service, Mac, ObjectId, Route};
use plantwatch_actors::sim::{self, Layout, SimConfig};

fn args() -> HashMap<String, String> {
    let mut map = HashMap::new();
    let mut it = std::env::args().skip(2);
    while let Some(k) = it.next() {
        if let Some(name) = k.strip_prefix("--") {
            map.insert(name.to_string(), it.next().unwrap_or_default());
        }
    }
    map
}

fn get<T: std::str::FromStr>(a: &HashMap<String, String>, key: &str, default: T) -> T {
    a.get(key).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    match std::env::args().nth(1).as_deref() {
        Some("serve") => serve(args()),
        Some("load") => load(args()),
        _ => eprintln!("usage: sim_load serve|load [--options]"),
    }
}

fn serve(a: HashMap<String, String>) {
    let layout = match a.get("layout").map(String::as_str) {
        Some("port") => Layout::Port,
        Some("router") => Layout::Router,
        _ => Layout::Ip,
    };
    let config = SimConfig {
        devices: get(&a, "devices", 1),
        objects: get(&a, "objects", 10),
        bind: get(&a, "bind", "127.0.0.2:47808".parse().expect("address")),
        layout,
        ..SimConfig::default()
    };
    let threads = get(&a, "threads", 2usize);
    let rt = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()
    }
    .expect("runtime");
    rt.block_on(async {
        let sim = sim::start(config).await.expect("simulator starts");
        for d in sim.devices() {
            println!("{}", serde_json::to_string(d).expect("json"));
        }
        let _ = tokio::signal::ctrl_c().await;
        sim.shutdown().await;
    });
}

fn request(invoke_id: u8, instance: u32, route: Option<Route>, buf: &mut Vec<u8>) {
    frame::begin(buf, false, &NpduOut { destination: route, source: None, expecting_reply: true });
    frame::write_confirmed_request(buf, invoke_id, service::READ_PROPERTY, 1476, 64);
    let object = ObjectId::new(object_type::ANALOG_INPUT, instance);
    ReadPropertyRequest { object, property: PropertyRef::new(property::PRESENT_VALUE) }.encode(buf).expect("encodes");
    frame::finish(buf).expect("fits");
}

fn load(a: HashMap<String, String>) {
    let targets: Vec<SocketAddr> = a
        .get("target")
        .map(|t| t.split(',').map(|s| s.parse().expect("target address")).collect())
        .unwrap_or_else(|| vec!["127.0.0.2:47808".parse().expect("address")]);
    let in_flight = get(&a, "in-flight", 64usize).clamp(1, 256);
    let seconds = get(&a, "seconds", 5u64);
    let objects = get(&a, "objects", 10u32).max(1);
    let route = a.get("route").map(|r| {
        let (net, mac) = r.split_once(':').expect("NET:MAC");
        Route { network: net.parse().expect("network"), mac: mac.parse::<Mac>().expect("mac") }
    });
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.set_read_timeout(Some(Duration::from_millis(500))).expect("timeout");
    let mut buf = Vec::with_capacity(64);
    let mut rx = vec![0u8; 2048];
    let mut sent_at = vec![Instant::now(); in_flight];
    let mut next_instance = 1u32;
    let mut send = |slot: usize, sent_at: &mut [Instant], buf: &mut Vec<u8>| {
        request(slot as u8, next_instance, route, buf);
        next_instance = next_instance % objects + 1;
        sent_at[slot] = Instant::now();
        let _ = socket.send_to(buf, targets[slot % targets.len()]);
    };
    for slot in 0..in_flight {
        send(slot, &mut sent_at, &mut buf);
    }
    let start = Instant::now();
    let mut latencies: Vec<u32> = Vec::with_capacity(1 << 20);
    let mut errors = 0u64;
    while start.elapsed() < Duration::from_secs(seconds) {
        let len = match socket.recv(&mut rx) {
            Ok(len) => len,
            Err(_) => {
                // lost requests: send them all again
                errors += 1;
                for slot in 0..in_flight {
                    send(slot, &mut sent_at, &mut buf);
                }
                continue;
            }
        };
        let invoke_id = match frame::parse(&rx[..len]) {
            Ok(f) => match f.body {
                Body::Apdu(Apdu::ComplexAck { invoke_id, .. }) => invoke_id,
                Body::Apdu(Apdu::Error { invoke_id, .. } | Apdu::Reject { invoke_id, .. }) => {
                    errors += 1;
                    invoke_id
                }
                _ => continue,
            },
            Err(_) => continue,
        };
        let slot = usize::from(invoke_id);
        if slot >= in_flight {
            continue;
        }
        latencies.push(sent_at[slot].elapsed().as_micros() as u32);
        send(slot, &mut sent_at, &mut buf);
    }
    let elapsed = start.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let pct = |q: f64| latencies.get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)));
    println!(
        "reads={} errors={errors} reads_per_s={:.0} p50_us={} p99_us={}",
        latencies.len(),
        latencies.len() as f64 / elapsed,
        pct(0.5).copied().unwrap_or(0),
        pct(0.99).copied().unwrap_or(0)
    );
}
