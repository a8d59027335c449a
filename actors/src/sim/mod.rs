//! A BACnet/IP device simulator: N devices on loopback in one tokio process,
//! for demos, tests and benchmarks (`plantwatch simulate`).
//!
//! # Layout
//!
//! ```text
//! start(config) ── binds every socket, then spawns one task per socket:
//!
//!   layout ip      device task 127.0.0.2:P   ──┐ owns its Device
//!                  device task 127.0.0.3:P   ──┤
//!                  broadcast task 127.255.255.255:P (SO_REUSEADDR)
//!                      └─ forwards unconfirmed requests (Who-Is) to every
//!                         device task's channel; each answers from its socket
//!   layout port    device task IP:P+k         (one per device)
//!   layout router  router task IP:P+r         router r (of `routers`) owns
//!                                             the Devices behind it on
//!                                             network router_network+r
//! ```
//!
//! A socket task owns its state, so nothing on the request path takes a lock:
//! it waits for the socket to be readable, then drains every ready datagram
//! (`try_recv_from` until `WouldBlock`), handing each to the sans-IO model and
//! sending its answers at once from recycled buffers. Its other inputs are a
//! channel ([`Simulator::set_present_value`], forwarded broadcasts), one timer
//! for the model's deadlines and the `slow` fault's delay queue, and the
//! shutdown signal.
//!
//! Answers go to the requester (I-Am included: on loopback a broadcast would
//! not reach a client bound to its own address), to the original source of
//! a Forwarded-NPDU, and through DNET/DADR to a requester behind a router.
//!
//! # Performance
//!
//! Measured with `examples/sim_load.rs` (simulator in its own process, a
//! blocking client keeping 64 ReadProperty requests in flight, 2 cores):
//! 180,000–210,000 reads/s from one device, the same behind the router with
//! 1,000 devices; the simulator then uses one core, 90% of it in the kernel's
//! `sendto`/`recvfrom` and under 10% in user space. Batching with
//! `recvmmsg`/`sendmmsg` could only save the syscall entry cost (about 3% in
//! that profile), so the tasks use plain `try_recv_from`/`try_send_to`.
//! Reading Present_Value allocates nothing once a task is warm (tested).
//!
//! - [`device`]: one device, sans-IO: services, COV, faults.
//! - [`fault`]: fault schedules: periodic outages, jitter, garbled answers.
//! - [`object`]: the objects of a device and their read/write rules.
//! - [`segment`]: server-side segmentation of a ComplexAck.
//! - [`router`]: a router with devices behind it on a remote network.
//! - [`outbox`]: the frames a model wants sent.

pub mod device;
pub mod fault;
pub mod object;
pub mod outbox;
pub mod router;
pub mod segment;

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::bacnet::codec::Value;
use crate::bacnet::frame::{self, Apdu, Body};
use crate::bacnet::services::{ErrorClassCode, PropertyRef};
use crate::bacnet::types::{property, ObjectId, Route, MAX_INSTANCE};
use device::Device;
pub use fault::{Churn, OnReturn, Outage};
use object::Counts;
use outbox::{OutFrame, Outbox};
use router::Router;

/// Where the simulated devices live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Layout {
    /// Device k at IP+k:PORT, plus a broadcast listener on 127.255.255.255:PORT.
    #[default]
    Ip,
    /// Device k at IP:PORT+k (port 0: each gets a port from the OS).
    Port,
    /// `routers` routers at IP:PORT+r, each with its share of the devices
    /// behind it on network `router_network + r`.
    Router,
}

/// Misbehaviour to simulate.
#[derive(Debug, Clone, PartialEq)]
pub struct Faults {
    /// Fraction of received requests dropped (seeded per device, so a run
    /// drops the same requests each time).
    pub drop_rate: f64,
    /// Delay of every answer...
    pub slow: Duration,
    /// ...plus or minus up to this much, uniformly (answers then overtake
    /// each other, as on a real network).
    pub jitter: Duration,
    /// ReadPropertyMultiple is rejected as unrecognized.
    pub no_rpm: bool,
    /// Max_APDU_Length_Accepted; longer answers are segmented.
    pub max_apdu: u16,
    /// Segmentation_Supported is no-segmentation.
    pub no_segmentation: bool,
    /// The device stops answering this long after start...
    pub offline_after: Option<Duration>,
    /// ...and answers again this long after going offline.
    pub online_after: Option<Duration>,
    /// The device vanishes periodically and comes back as [`Churn::on_return`] says.
    pub churn: Option<Churn>,
    /// Fraction of answers to confirmed requests sent garbled (malformed, or
    /// well-formed around service data that does not decode).
    pub garbage_rate: f64,
    /// Layout router: every router's remote network is periodically
    /// unreachable; the router then answers requests for it with
    /// Reject-Message-To-Network and forwards nothing.
    pub router_outage: Option<Outage>,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            drop_rate: 0.0,
            slow: Duration::ZERO,
            no_rpm: false,
            max_apdu: 1476,
            no_segmentation: false,
            offline_after: None,
            online_after: None,
            jitter: Duration::ZERO,
            churn: None,
            garbage_rate: 0.0,
            router_outage: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Number of devices.
    pub devices: usize,
    /// Objects of each type per device...
    pub objects: usize,
    /// ...or exactly this many per device, spread over the types.
    pub points: Option<usize>,
    /// Base address: the first device, or the router.
    pub bind: SocketAddr,
    pub layout: Layout,
    pub first_instance: u32,
    /// Network number behind the first router (layout router).
    pub router_network: u16,
    /// Routers (layout router); devices are shared out in turn, in blocks.
    pub routers: usize,
    pub faults: Faults,
    /// Faults apply only to these device instances; `None`: to all.
    pub fault_devices: Option<Vec<u32>>,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            devices: 1,
            objects: 10,
            points: None,
            bind: SocketAddr::from(([127, 0, 0, 2], 47808)),
            layout: Layout::Ip,
            first_instance: 1001,
            router_network: 100,
            routers: 1,
            faults: Faults::default(),
            fault_devices: None,
        }
    }
}

/// A simulated device as `plantwatch simulate` prints it:
/// `{"instance":1001,"address":"127.0.0.2:47808","route":null}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SimDevice {
    pub instance: u32,
    /// The device's address, or its router's.
    pub address: SocketAddr,
    /// Network and MAC behind the router: `{"network":100,"mac":"01"}`.
    #[serde(serialize_with = "route_json")]
    pub route: Option<Route>,
}

fn route_json<S: serde::Serializer>(route: &Option<Route>, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeStruct;
    match route {
        None => s.serialize_none(),
        Some(r) => {
            let mut st = s.serialize_struct("Route", 2)?;
            st.serialize_field("network", &r.network)?;
            st.serialize_field("mac", &r.mac.to_string())?;
            st.end()
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("invalid simulator configuration: {0}")]
    Config(String),
    #[error("cannot bind {address}: {source}")]
    Bind { address: SocketAddr, source: io::Error },
    #[error("no simulated device {0}")]
    UnknownDevice(u32),
    #[error("device {instance} refused: {error}")]
    Refused { instance: u32, error: ErrorClassCode },
    #[error("the simulator has stopped")]
    Stopped,
}

/// What a socket task is asked from outside its socket.
enum Command {
    /// A datagram the broadcast listener received.
    Forward {
        datagram: Arc<[u8]>,
        from: SocketAddr,
    },
    Set {
        instance: u32,
        object: ObjectId,
        value: Value,
        reply: oneshot::Sender<Result<(), SimError>>,
    },
    Read {
        instance: u32,
        object: ObjectId,
        property: PropertyRef,
        reply: oneshot::Sender<Result<Value, SimError>>,
    },
    Forget {
        instance: u32,
        reply: oneshot::Sender<Result<usize, SimError>>,
    },
}

/// Depth of a socket task's command channel.
const COMMANDS: usize = 1024;

/// A running simulator. Dropping it stops the tasks too; [`Simulator::shutdown`]
/// also waits for them.
#[derive(Debug)]
pub struct Simulator {
    devices: Vec<SimDevice>,
    /// Per device (same order): its task's command channel.
    controls: Vec<mpsc::Sender<Command>>,
    broadcast: Option<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
    shutdown: watch::Sender<()>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Command::Forward { .. } => "Forward",
            Command::Set { .. } => "Set",
            Command::Read { .. } => "Read",
            Command::Forget { .. } => "Forget",
        })
    }
}

impl Simulator {
    pub fn devices(&self) -> &[SimDevice] {
        &self.devices
    }

    /// The broadcast listener's address (layout ip on loopback).
    pub fn broadcast_address(&self) -> Option<SocketAddr> {
        self.broadcast
    }

    fn control(&self, instance: u32) -> Result<&mpsc::Sender<Command>, SimError> {
        let i = self.devices.iter().position(|d| d.instance == instance).ok_or(SimError::UnknownDevice(instance))?;
        Ok(&self.controls[i])
    }

    /// Sets an object's present value from outside, as the simulated plant
    /// would: an input's reading (an analog-input then stops drifting), a
    /// value object's value, an output's Relinquish_Default. COV subscribers
    /// are notified.
    pub async fn set_present_value(&self, instance: u32, object: ObjectId, value: Value) -> Result<(), SimError> {
        let (reply, answer) = oneshot::channel();
        let control = self.control(instance)?;
        control.send(Command::Set { instance, object, value, reply }).await.map_err(|_| SimError::Stopped)?;
        answer.await.map_err(|_| SimError::Stopped)?
    }

    /// Reads a property as ReadProperty would answer it.
    pub async fn read_property(
        &self,
        instance: u32,
        object: ObjectId,
        property: PropertyRef,
    ) -> Result<Value, SimError> {
        let (reply, answer) = oneshot::channel();
        let control = self.control(instance)?;
        control.send(Command::Read { instance, object, property, reply }).await.map_err(|_| SimError::Stopped)?;
        answer.await.map_err(|_| SimError::Stopped)?
    }

    /// Makes a device forget its COV subscriptions without a word, as after
    /// a restart that nobody noticed: it keeps answering reads, and notifies
    /// nothing until it is subscribed again. Answers how many it forgot.
    pub async fn forget_subscriptions(&self, instance: u32) -> Result<usize, SimError> {
        let (reply, answer) = oneshot::channel();
        let control = self.control(instance)?;
        control.send(Command::Forget { instance, reply }).await.map_err(|_| SimError::Stopped)?;
        answer.await.map_err(|_| SimError::Stopped)?
    }

    /// Reads an object's Present_Value.
    pub async fn present_value(&self, instance: u32, object: ObjectId) -> Result<Value, SimError> {
        self.read_property(instance, object, PropertyRef::new(property::PRESENT_VALUE)).await
    }

    /// Stops every task and waits for them.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(());
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

fn check(config: &SimConfig) -> Result<(), SimError> {
    let bad = |m: String| Err(SimError::Config(m));
    if config.devices == 0 {
        return bad("devices must be at least 1".into());
    }
    if config.objects > MAX_INSTANCE as usize {
        return bad(format!("objects must be at most {MAX_INSTANCE}"));
    }
    let last = u64::from(config.first_instance) + config.devices as u64 - 1;
    if last > u64::from(MAX_INSTANCE) {
        return bad(format!("device instances {}..={last} go above {MAX_INSTANCE}", config.first_instance));
    }
    let f = &config.faults;
    if !(0.0..=1.0).contains(&f.drop_rate) {
        return bad(format!("drop rate {} is not between 0 and 1", f.drop_rate));
    }
    if !(0.0..=1.0).contains(&f.garbage_rate) {
        return bad(format!("garbage rate {} is not between 0 and 1", f.garbage_rate));
    }
    if let Some(c) = &f.churn {
        c.outage.check("churn").map_err(SimError::Config)?;
    }
    if let Some(o) = &f.router_outage {
        o.check("router outage").map_err(SimError::Config)?;
        if config.layout != Layout::Router {
            return bad("a router outage needs layout router".into());
        }
    }
    if !(50..=1476).contains(&f.max_apdu) {
        return bad(format!("max APDU {} is not in 50..=1476", f.max_apdu));
    }
    if config.points.is_some_and(|n| n > MAX_INSTANCE as usize) {
        return bad(format!("points must be at most {MAX_INSTANCE}"));
    }
    if config.layout == Layout::Router {
        if config.routers == 0 || config.routers > config.devices {
            return bad(format!("routers must be between 1 and the number of devices ({})", config.devices));
        }
        if config.devices.div_ceil(config.routers) > usize::from(u16::MAX) - 1 {
            return bad("a router has at most 65534 devices behind it".into());
        }
        let last = usize::from(config.router_network) + config.routers - 1;
        if config.router_network == 0 || last >= 0xFFFF {
            return bad(format!("networks {}..={last} are not all in 1..=65534", config.router_network));
        }
        if config.bind.port() != 0 && usize::from(config.bind.port()) + config.routers - 1 > usize::from(u16::MAX) {
            return bad(format!("ports {}.. for {} routers go above 65535", config.bind.port(), config.routers));
        }
    }
    Ok(())
}

/// Device k's address in layout ip: IP+k.
fn ip_plus(ip: IpAddr, k: usize) -> Result<IpAddr, SimError> {
    let IpAddr::V4(v4) = ip else {
        return Err(SimError::Config("layout ip needs an IPv4 address".into()));
    };
    u32::from(v4)
        .checked_add(u32::try_from(k).unwrap_or(u32::MAX))
        .map(|a| IpAddr::V4(Ipv4Addr::from(a)))
        .filter(|a| !ip.is_loopback() || a.is_loopback())
        .ok_or_else(|| SimError::Config(format!("{ip} + {k} runs out of addresses")))
}

async fn bind(address: SocketAddr) -> Result<UdpSocket, SimError> {
    UdpSocket::bind(address).await.map_err(|source| SimError::Bind { address, source })
}

fn local_addr(socket: &UdpSocket, address: SocketAddr) -> Result<SocketAddr, SimError> {
    socket.local_addr().map_err(|source| SimError::Bind { address, source })
}

/// The broadcast listener, shared with other simulators (or bacpypes3) on the
/// same port.
fn bind_broadcast(address: SocketAddr) -> Result<UdpSocket, SimError> {
    crate::transport::bind_broadcast_listener(address).map_err(|source| SimError::Bind { address, source })
}

/// Starts the simulator. Every socket is bound before this returns.
pub async fn start(config: SimConfig) -> Result<Simulator, SimError> {
    check(&config)?;
    let epoch = Instant::now();
    let n = config.devices;
    let faults_for = |instance: u32| match &config.fault_devices {
        Some(list) if !list.contains(&instance) => Faults::default(),
        _ => config.faults.clone(),
    };
    let instance = |k: usize| config.first_instance + k as u32;
    let counts = config.points.map_or(Counts::per_kind(config.objects), Counts::spread);
    let (shutdown, stop) = watch::channel(());
    let mut devices = Vec::with_capacity(n);
    let mut controls = Vec::with_capacity(n);
    let mut tasks = Vec::new();
    let mut broadcast = None;

    match config.layout {
        Layout::Ip | Layout::Port => {
            let mut sockets = Vec::with_capacity(n);
            let mut port = config.bind.port();
            for k in 0..n {
                let address = match config.layout {
                    Layout::Ip => SocketAddr::new(ip_plus(config.bind.ip(), k)?, port),
                    _ if port == 0 => SocketAddr::new(config.bind.ip(), 0),
                    _ => {
                        let p = u16::try_from(usize::from(port) + k)
                            .map_err(|_| SimError::Config(format!("port {port} + {k} is above 65535")))?;
                        SocketAddr::new(config.bind.ip(), p)
                    }
                };
                let socket = bind(address).await?;
                let bound = local_addr(&socket, address)?;
                if config.layout == Layout::Ip && port == 0 {
                    // The OS chose the port of the first device: all share it.
                    port = bound.port();
                }
                devices.push(SimDevice { instance: instance(k), address: bound, route: None });
                sockets.push(socket);
            }
            let listener = match (config.layout, config.bind.ip()) {
                (Layout::Ip, IpAddr::V4(ip)) if ip.is_loopback() => {
                    let address = SocketAddr::from(([127, 255, 255, 255], port));
                    Some(bind_broadcast(address)?)
                }
                _ => None,
            };
            let mut forward = Vec::new();
            for (k, socket) in sockets.into_iter().enumerate() {
                let (tx, rx) = mpsc::channel(COMMANDS);
                forward.push(tx.clone());
                controls.push(tx);
                let dev = Device::new(instance(k), counts, None, faults_for(instance(k)), epoch);
                tasks.push(tokio::spawn(serve(socket, Node::Device(Box::new(dev)), rx, stop.clone())));
            }
            if let Some(listener) = listener {
                broadcast = Some(local_addr(&listener, config.bind)?);
                tasks.push(tokio::spawn(forward_broadcasts(listener, forward, stop.clone())));
            }
        }
        Layout::Router => {
            // Router r serves devices r*per..(r+1)*per (the last one fewer).
            let per = n.div_ceil(config.routers);
            for (r, first) in (0..n).step_by(per).enumerate() {
                let at = match config.bind.port() {
                    0 => config.bind,
                    p => SocketAddr::new(config.bind.ip(), p + r as u16),
                };
                let socket = bind(at).await?;
                let address = local_addr(&socket, at)?;
                let network = config.router_network + r as u16;
                let count = per.min(n - first);
                let mut behind = Vec::with_capacity(count);
                for j in 0..count {
                    let k = first + j;
                    let route = Route { network, mac: Router::mac(j, count) };
                    behind.push(Device::new(instance(k), counts, Some(route), faults_for(instance(k)), epoch));
                    devices.push(SimDevice { instance: instance(k), address, route: Some(route) });
                }
                let (tx, rx) = mpsc::channel(COMMANDS);
                controls.extend(std::iter::repeat_n(tx, count));
                let node = Node::Router(Router::new(network, behind).with_outage(config.faults.router_outage, epoch));
                tasks.push(tokio::spawn(serve(socket, node, rx, stop.clone())));
            }
        }
    }
    tracing::debug!(devices = n, layout = ?config.layout, "simulator started");
    Ok(Simulator { devices, controls, broadcast, tasks, shutdown })
}

/// What a socket task serves.
enum Node {
    Device(Box<Device>),
    Router(Router),
}

impl Node {
    fn handle(&mut self, datagram: &[u8], from: SocketAddr, now: Instant, out: &mut Outbox) {
        match self {
            Node::Device(d) => d.handle(datagram, from, now, out),
            Node::Router(r) => r.handle(datagram, from, now, out),
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        match self {
            Node::Device(d) => d.next_deadline(),
            Node::Router(r) => r.next_deadline(),
        }
    }

    fn on_timer(&mut self, now: Instant, out: &mut Outbox) {
        match self {
            Node::Device(d) => d.on_timer(now, out),
            Node::Router(r) => r.on_timer(now, out),
        }
    }

    fn device_mut(&mut self, instance: u32) -> Option<&mut Device> {
        match self {
            Node::Device(d) => (d.instance() == instance).then_some(&mut **d),
            Node::Router(r) => r.device_mut(instance),
        }
    }

    fn command(&mut self, command: Command, now: Instant, out: &mut Outbox) {
        match command {
            Command::Forward { datagram, from } => self.handle(&datagram, from, now, out),
            Command::Set { instance, object, value, reply } => {
                let result = match self.device_mut(instance) {
                    Some(d) => d.force(object, &value, now, out).map_err(|error| SimError::Refused { instance, error }),
                    None => Err(SimError::UnknownDevice(instance)),
                };
                let _ = reply.send(result);
            }
            Command::Read { instance, object, property, reply } => {
                let result = match self.device_mut(instance) {
                    Some(d) => {
                        d.catch_up(now);
                        d.read_from_outside(object, property, now)
                            .map_err(|error| SimError::Refused { instance, error })
                    }
                    None => Err(SimError::UnknownDevice(instance)),
                };
                let _ = reply.send(result);
            }
            Command::Forget { instance, reply } => {
                let result = match self.device_mut(instance) {
                    Some(d) => Ok(d.forget_subscriptions(now)),
                    None => Err(SimError::UnknownDevice(instance)),
                };
                let _ = reply.send(result);
            }
        }
    }
}

/// Receive buffer: larger than any BACnet/IP datagram, so that a longer one
/// arrives whole and fails the BVLC length check.
const RECEIVE_BUFFER: usize = 2048;
/// Datagrams handled per wake-up before the task checks its other inputs.
const BATCH: usize = 256;

/// One socket task: drains the socket, answers, runs the model's timers.
async fn serve(
    socket: UdpSocket,
    mut node: Node,
    mut commands: mpsc::Receiver<Command>,
    mut stop: watch::Receiver<()>,
) {
    let mut buf = vec![0u8; RECEIVE_BUFFER];
    let mut out = Outbox::default();
    let mut delayed: VecDeque<OutFrame> = VecDeque::new();
    let timer = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(timer);
    let mut commands_open = true;
    loop {
        let deadline = match (node.next_deadline(), delayed.front().and_then(|f| f.send_at)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(at) = deadline {
            if timer.deadline() != at {
                timer.as_mut().reset(at);
            }
        }
        tokio::select! {
            _ = stop.changed() => break,
            ready = socket.readable() => {
                if let Err(e) = ready {
                    tracing::warn!(error = %e, "socket failed; simulator task stops");
                    break;
                }
                for _ in 0..BATCH {
                    match socket.try_recv_from(&mut buf) {
                        Ok((len, from)) => {
                            let now = Instant::now();
                            node.handle(&buf[..len], from, now, &mut out);
                            send(&socket, &mut out, &mut delayed, now).await;
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => {
                            tracing::debug!(error = %e, "receive failed");
                            break;
                        }
                    }
                }
            }
            command = commands.recv(), if commands_open => match command {
                Some(c) => node.command(c, Instant::now(), &mut out),
                None => commands_open = false,
            },
            _ = &mut timer, if deadline.is_some() => {
                let now = Instant::now();
                node.on_timer(now, &mut out);
                while delayed.front().is_some_and(|f| f.send_at.is_none_or(|at| at <= now)) {
                    if let Some(f) = delayed.pop_front() {
                        transmit(&socket, &f).await;
                        out.recycle(f.bytes);
                    }
                }
            }
        }
        send(&socket, &mut out, &mut delayed, Instant::now()).await;
    }
}

/// Sends what the model queued, or keeps it for later (the `slow` fault).
async fn send(socket: &UdpSocket, out: &mut Outbox, delayed: &mut VecDeque<OutFrame>, now: Instant) {
    if out.is_empty() {
        return;
    }
    let mut frames = std::mem::take(&mut out.frames);
    for f in frames.drain(..) {
        if f.send_at.is_some_and(|at| at > now) {
            // With jitter, answers are not delayed in the order they were made.
            let i = delayed.partition_point(|d| d.send_at <= f.send_at);
            delayed.insert(i, f);
        } else {
            transmit(socket, &f).await;
            out.recycle(f.bytes);
        }
    }
    out.frames = frames;
}

async fn transmit(socket: &UdpSocket, f: &OutFrame) {
    let result = match socket.try_send_to(&f.bytes, f.to) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => socket.send_to(&f.bytes, f.to).await,
        other => other,
    };
    if let Err(e) = result {
        tracing::debug!(to = %f.to, error = %e, "send failed");
    }
}

/// The broadcast listener task (layout ip): hands every unconfirmed request
/// to every device task.
async fn forward_broadcasts(socket: UdpSocket, devices: Vec<mpsc::Sender<Command>>, mut stop: watch::Receiver<()>) {
    let mut buf = vec![0u8; RECEIVE_BUFFER];
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            received = socket.recv_from(&mut buf) => {
                let (len, from) = match received {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::debug!(error = %e, "broadcast receive failed");
                        continue;
                    }
                };
                let datagram = &buf[..len];
                match frame::parse(datagram) {
                    Ok(f) if matches!(f.body, Body::Apdu(Apdu::UnconfirmedRequest { .. })) => {}
                    _ => continue,
                }
                let datagram: Arc<[u8]> = Arc::from(datagram);
                for d in &devices {
                    // A full channel loses the datagram, as a busy device would.
                    let _ = d.try_send(Command::Forward { datagram: Arc::clone(&datagram), from });
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod testing;

#[cfg(test)]
mod tests;
