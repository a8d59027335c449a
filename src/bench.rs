//! `plantwatch bench`: how fast the transport reads Present_Value.
//!
//! Finds the devices at the targets with a directed Who-Is, reads their
//! Object_Lists, then keeps K requests in flight round-robin over every
//! object for the given time. The last line is the contract:
//! `reads_per_s=… p50_us=… p99_us=…`.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use plantwatch_actors::bacnet::services::{PropertyRef, ReadAccessSpec};
use plantwatch_actors::bacnet::types::{object_type, property};
use plantwatch_actors::bacnet::{Address, ObjectId};
use plantwatch_actors::transport::{Transport, TransportConfig, Unsolicited};

use crate::cli::{BenchArgs, BenchService};
use crate::CommandError;

/// Present_Values per ReadPropertyMultiple request.
const RPM_BATCH: usize = 20;

pub fn run(args: BenchArgs) -> Result<(), CommandError> {
    if args.in_flight == 0 || args.seconds <= 0.0 || !args.seconds.is_finite() {
        return Err(CommandError::Usage("--in-flight and --seconds must be positive".into()));
    }
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(args.threads).enable_all().build()
    }
    .map_err(|e| CommandError::Failed(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(bench(args))
}

async fn bench(args: BenchArgs) -> Result<(), CommandError> {
    let config = TransportConfig { bind: args.bind, max_in_flight: args.in_flight, ..TransportConfig::default() };
    let (transport, mut unsolicited) =
        Transport::bind(config).await.map_err(|e| CommandError::Failed(format!("cannot bind {}: {e}", args.bind)))?;

    // Who is there?
    for &target in &args.target {
        transport
            .who_is(Some(Address::direct(target)), None)
            .await
            .map_err(|e| CommandError::Failed(format!("Who-Is to {target}: {e}")))?;
    }
    let mut devices: Vec<(Address, ObjectId)> = Vec::new();
    let quiet = Duration::from_millis(300);
    let give_up = tokio::time::Instant::now() + Duration::from_secs(3);
    while let Ok(Some(msg)) = tokio::time::timeout(quiet, unsolicited.recv()).await {
        if let Unsolicited::IAm { from, iam } = msg {
            if !devices.iter().any(|(_, d)| *d == iam.device) {
                devices.push((from, iam.device));
            }
        }
        if tokio::time::Instant::now() > give_up {
            break;
        }
    }
    if devices.is_empty() {
        return Err(CommandError::Failed(format!(
            "no device answered Who-Is at {:?}; is `plantwatch simulate` running there?",
            args.target
        )));
    }

    // What do they hold?
    let mut work: Vec<(Address, ObjectId)> = Vec::new();
    for &(addr, device) in &devices {
        let objects = transport
            .read_object_list(addr, device)
            .await
            .map_err(|e| CommandError::Failed(format!("reading the Object_List of {device} at {addr}: {e}")))?;
        work.extend(objects.into_iter().filter(|o| o.object_type != object_type::DEVICE).map(|o| (addr, o)));
    }
    if work.is_empty() {
        return Err(CommandError::Failed("the devices hold no objects to read".into()));
    }
    // Interleave devices so that in-flight requests spread over all of them.
    work.sort_by_key(|(addr, o)| (o.instance, o.object_type, addr.ip, addr.route));
    let batches: Vec<Batch> = match args.service {
        BenchService::Rp => work.iter().map(|&(a, o)| Batch { to: a, objects: vec![o] }).collect(),
        BenchService::Rpm => {
            let mut by_device: Vec<Batch> = Vec::new();
            for &(a, o) in &work {
                match by_device.iter_mut().find(|b| b.to == a && b.objects.len() < RPM_BATCH) {
                    Some(b) => b.objects.push(o),
                    None => by_device.push(Batch { to: a, objects: vec![o] }),
                }
            }
            by_device
        }
    };
    eprintln!(
        "bench: {} devices, {} objects, {} in flight, {:?} for {}s",
        devices.len(),
        work.len(),
        args.in_flight,
        args.service,
        args.seconds
    );

    let batches = Arc::new(batches);
    let next = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(args.seconds);
    let mut workers = Vec::with_capacity(args.in_flight);
    for _ in 0..args.in_flight {
        let (transport, batches, next, failures) = (transport.clone(), batches.clone(), next.clone(), failures.clone());
        let service = args.service;
        workers.push(tokio::spawn(async move {
            let mut latencies: Vec<u32> = Vec::with_capacity(1 << 16);
            let mut reads = 0u64;
            while Instant::now() < end {
                let b = &batches[next.fetch_add(1, Ordering::Relaxed) % batches.len()];
                let t0 = Instant::now();
                let ok = match service {
                    BenchService::Rp => transport
                        .read_property(b.to, b.objects[0], PropertyRef::new(property::PRESENT_VALUE))
                        .await
                        .is_ok(),
                    BenchService::Rpm => {
                        let specs = b
                            .objects
                            .iter()
                            .map(|&object| ReadAccessSpec {
                                object,
                                properties: vec![PropertyRef::new(property::PRESENT_VALUE)],
                            })
                            .collect();
                        transport
                            .read_property_multiple(b.to, specs)
                            .await
                            .is_ok_and(|r| r.iter().all(|p| p.value.is_ok()))
                    }
                };
                if ok {
                    reads += b.objects.len() as u64;
                    latencies.push(u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX));
                } else {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
            }
            (reads, latencies)
        }));
    }
    let mut reads = 0u64;
    let mut latencies = Vec::new();
    for w in workers {
        let (r, l) = w.await.map_err(|e| CommandError::Failed(format!("a bench worker failed: {e}")))?;
        reads += r;
        latencies.extend(l);
    }
    let elapsed = start.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    let stats = transport.stats();
    eprintln!(
        "bench: {} requests ok, {} failed, {} retries, {} timeouts, {} malformed",
        latencies.len(),
        failures.load(Ordering::Relaxed),
        stats.retries,
        stats.timeouts,
        stats.malformed
    );
    println!("reads_per_s={:.0} p50_us={} p99_us={}", reads as f64 / elapsed, pct(0.50), pct(0.99));
    Ok(())
}

struct Batch {
    to: Address,
    objects: Vec<ObjectId>,
}
