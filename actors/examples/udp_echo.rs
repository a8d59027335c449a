//! The ceiling any BACnet/IP poller on this machine can reach: raw UDP
//! request/response round trips between two processes, with K in flight.
//! `tests/bench/transport.sh` runs it beside `plantwatch bench` and reports
//! plantwatch's figures as ratios of this baseline, measured in the same run.
//!
//! ```text
//! cargo run --release -p plantwatch-actors --example udp_echo -- serve 127.0.0.1:47990
//! cargo run --release -p plantwatch-actors --example udp_echo -- load 127.0.0.1:47990 64 5
//! ```
//!
//! `load` prints `round_trips_per_s=… p50_us=… p99_us=…`.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// About the size of a ReadProperty request.
const PAYLOAD: usize = 17;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["serve", addr] => serve(addr.parse()?),
        ["load", addr, in_flight, seconds] => load(addr.parse()?, in_flight.parse()?, seconds.parse()?),
        _ => Err("usage: udp_echo serve ADDR | udp_echo load ADDR IN_FLIGHT SECONDS".into()),
    }
}

fn serve(addr: SocketAddr) -> Result<(), Box<dyn std::error::Error>> {
    let socket = UdpSocket::bind(addr)?;
    let mut buf = [0u8; 2048];
    loop {
        let (n, from) = socket.recv_from(&mut buf)?;
        socket.send_to(&buf[..n], from)?;
    }
}

fn load(target: SocketAddr, in_flight: usize, seconds: f64) -> Result<(), Box<dyn std::error::Error>> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut sent_at = vec![Instant::now(); in_flight];
    let mut buf = [0u8; 2048];
    let mut msg = [0u8; PAYLOAD];
    for (slot, at) in sent_at.iter_mut().enumerate() {
        msg[..8].copy_from_slice(&(slot as u64).to_be_bytes());
        *at = Instant::now();
        socket.send_to(&msg, target)?;
    }
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(seconds);
    let mut latencies: Vec<u32> = Vec::with_capacity(1 << 20);
    while Instant::now() < end {
        let n = match socket.recv(&mut buf) {
            Ok(n) => n,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return Err("the echo server does not answer".into());
            }
            Err(e) => return Err(e.into()),
        };
        let slot = match buf.get(..8) {
            Some(b) if n >= 8 => u64::from_be_bytes(b.try_into()?),
            _ => continue,
        };
        let Some(at) = sent_at.get_mut(slot as usize) else { continue };
        latencies.push(u32::try_from(at.elapsed().as_micros()).unwrap_or(u32::MAX));
        *at = Instant::now();
        socket.send_to(&buf[..n], target)?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    println!("round_trips_per_s={:.0} p50_us={} p99_us={}", latencies.len() as f64 / elapsed, pct(0.5), pct(0.99));
    Ok(())
}
