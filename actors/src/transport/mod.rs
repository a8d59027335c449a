//! The BACnet/IP client transport: one UDP socket per network, owned by one
//! task that multiplexes every device of that network.
//!
//! ```text
//!  callers (device actors, bench tasks)         transport task (owns the socket)
//!  ─────────────────────────────────           ──────────────────────────────────
//!  Transport::read_property ── Command ──────▶ queue ─▶ invoke id ─▶ send_to
//!          ▲                                      pending (peer, invoke id)
//!          └──────────── oneshot ◀──────────── recv_from ─▶ frame::parse ─▶ match
//!                                                 │  segments ─▶ Reassembly, Segment-ACK
//!  Unsolicited receiver ◀── I-Am, COV ───────────┘  timers ─▶ retry / Timeout
//! ```
//!
//! The protocol state lives in sans-IO pieces ([`invoke::InvokeIds`],
//! [`segment::Reassembly`]); this module only moves bytes and messages. The
//! task owns all of its state, so nothing on the request path takes a lock.
//! Every received datagram is decoded fallibly: a malformed, truncated or
//! unexpected frame is counted in [`Stats`] and dropped.

pub mod invoke;
pub mod meter;
pub mod segment;

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, trace, warn};

use crate::bacnet::codec::{DecodeError, Value};
use crate::bacnet::frame::{self, Apdu, Body, NpduOut, Segment};
use crate::bacnet::services::{
    self, CovNotification, EncodeError, ErrorClassCode, IAm, PropertyRef, PropertyResult, ReadAccessSpec,
    ReadPropertyAck, ReadPropertyMultipleRequest, ReadPropertyRequest, SubscribeCovRequest, WhoIs,
    WritePropertyRequest,
};
use crate::bacnet::types::{
    abort_reason_name, error, property, reject_reason_name, service, Address, Mac, ObjectId, Route,
};
use invoke::InvokeIds;
use meter::{Meter, Outcome};
use segment::{Reassembly, Step};

/// Settings of one network's transport.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    pub bind: SocketAddr,
    /// Where a global Who-Is goes (e.g. `192.168.1.255:47808`).
    pub broadcast: Option<SocketAddr>,
    pub apdu_timeout: Duration,
    pub apdu_retries: u32,
    /// Confirmed requests in flight on this network; more wait in a queue.
    pub max_in_flight: usize,
    /// Largest APDU we accept (advertised in every request).
    pub max_apdu: u16,
    /// Largest number of segments we accept in an answer.
    pub max_segments: u16,
    /// Largest segmentation window we accept.
    pub window: u8,
    /// Unsolicited frames (I-Am, COV) buffered for the receiver before new
    /// ones are dropped and counted.
    pub unsolicited_capacity: usize,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([0, 0, 0, 0], 47808)),
            broadcast: None,
            apdu_timeout: Duration::from_secs(3),
            apdu_retries: 3,
            max_in_flight: 32,
            max_apdu: 1476,
            max_segments: 64,
            window: 16,
            unsolicited_capacity: 4096,
        }
    }
}

/// Why a request failed. The first four are "the device said no" or "the
/// device did not answer"; the rest are local.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BacnetError {
    #[error("no answer after {attempts} attempts")]
    Timeout { attempts: u32 },
    #[error("device answered with error {0}")]
    Error(ErrorClassCode),
    #[error("device rejected the request: {}", reject_reason_name(*reason))]
    Reject { reason: u8 },
    #[error("transaction aborted by the {}: {}", if *by_server { "device" } else { "transport" }, abort_reason_name(*reason))]
    Abort { reason: u8, by_server: bool },
    #[error("answer could not be decoded: {0}")]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Encode(#[from] EncodeError),
    #[error("socket error: {0}")]
    Io(String),
    #[error("transport is shut down")]
    Closed,
}

/// What a confirmed request got back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Simple,
    /// The service data of the (reassembled) ComplexAck.
    Complex(Vec<u8>),
}

/// Frames nobody asked for: discovery answers and COV notifications.
#[derive(Debug, Clone, PartialEq)]
pub enum Unsolicited {
    IAm { from: Address, iam: IAm },
    Cov { from: Address, confirmed: bool, notification: CovNotification },
}

/// Binds a receive socket on a broadcast address with SO_REUSEADDR, so that
/// other BACnet software on the host (another plantwatch, a simulator,
/// bacpypes3) bound to it receives the broadcasts too.
pub fn bind_broadcast_listener(address: SocketAddr) -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(address), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    UdpSocket::from_std(socket.into())
}

/// A socket bound to one unicast address does not receive datagrams sent to
/// the subnet's broadcast address (Linux), which is where many devices send
/// their I-Am. For such a bind, a second socket listens on the broadcast
/// address; a failure to bind it is logged and the transport goes on without.
fn broadcast_listener(config: &TransportConfig, local: SocketAddr) -> Option<UdpSocket> {
    let broadcast = config.broadcast?;
    if local.ip().is_unspecified() || broadcast.ip() == local.ip() {
        return None; // a wildcard bind receives broadcasts already
    }
    match bind_broadcast_listener(broadcast) {
        Ok(s) => Some(s),
        Err(e) => {
            warn!(%broadcast, error = %e, "cannot listen on the broadcast address; broadcast I-Ams will be missed");
            None
        }
    }
}

/// The destination of a global broadcast: every network (DNET 0xFFFF), no DADR.
const GLOBAL_BROADCAST: Route = Route { network: 0xFFFF, mac: Mac::EMPTY };

/// Counters of one transport; read with [`Stats::snapshot`].
#[derive(Debug, Default)]
pub struct Stats {
    pub requests: AtomicU64,
    pub retries: AtomicU64,
    pub timeouts: AtomicU64,
    pub answers: AtomicU64,
    pub errors: AtomicU64,
    pub rejects: AtomicU64,
    pub aborts: AtomicU64,
    pub malformed: AtomicU64,
    pub unexpected: AtomicU64,
    pub segmented_answers: AtomicU64,
    pub unsolicited: AtomicU64,
    pub unsolicited_dropped: AtomicU64,
    pub in_flight: AtomicU64,
    pub queued: AtomicU64,
    /// Invoke ids outstanding (equal to `in_flight` unless one leaked).
    pub invoke_ids_in_use: AtomicU64,
    /// Invoke ids held back after a timeout or a retransmission.
    pub invoke_ids_held: AtomicU64,
}

/// A point-in-time copy of [`Stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct StatsSnapshot {
    pub requests: u64,
    pub retries: u64,
    pub timeouts: u64,
    pub answers: u64,
    pub errors: u64,
    pub rejects: u64,
    pub aborts: u64,
    pub malformed: u64,
    pub unexpected: u64,
    pub segmented_answers: u64,
    pub unsolicited: u64,
    pub unsolicited_dropped: u64,
    pub in_flight: u64,
    pub queued: u64,
    pub invoke_ids_in_use: u64,
    pub invoke_ids_held: u64,
}

impl Stats {
    fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            requests: g(&self.requests),
            retries: g(&self.retries),
            timeouts: g(&self.timeouts),
            answers: g(&self.answers),
            errors: g(&self.errors),
            rejects: g(&self.rejects),
            aborts: g(&self.aborts),
            malformed: g(&self.malformed),
            unexpected: g(&self.unexpected),
            segmented_answers: g(&self.segmented_answers),
            unsolicited: g(&self.unsolicited),
            unsolicited_dropped: g(&self.unsolicited_dropped),
            in_flight: g(&self.in_flight),
            queued: g(&self.queued),
            invoke_ids_in_use: g(&self.invoke_ids_in_use),
            invoke_ids_held: g(&self.invoke_ids_held),
        }
    }
}

enum Command {
    Confirmed { to: Address, service: u8, payload: Vec<u8>, reply: oneshot::Sender<Result<Answer, BacnetError>> },
    Unconfirmed { to: Option<Address>, service: u8, payload: Vec<u8>, reply: oneshot::Sender<Result<(), BacnetError>> },
}

/// A cloneable handle to one network's transport task. The task ends when
/// every handle is dropped.
#[derive(Clone)]
pub struct Transport {
    commands: mpsc::UnboundedSender<Command>,
    stats: Arc<Stats>,
    local: SocketAddr,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport").field("local", &self.local).finish_non_exhaustive()
    }
}

impl Transport {
    /// Binds the socket and starts the transport task. Unsolicited frames
    /// arrive on the returned receiver.
    pub async fn bind(config: TransportConfig) -> io::Result<(Self, mpsc::Receiver<Unsolicited>)> {
        Self::bind_metered(config, Arc::default(), "").await
    }

    /// Like [`Transport::bind`], counting into `stats` (kept by the caller,
    /// so counts survive a new transport) and recording per-service metrics
    /// labelled `network`.
    pub async fn bind_metered(
        config: TransportConfig,
        stats: Arc<Stats>,
        network: &str,
    ) -> io::Result<(Self, mpsc::Receiver<Unsolicited>)> {
        let std_socket = std::net::UdpSocket::bind(config.bind)?;
        std_socket.set_nonblocking(true)?;
        if config.broadcast.is_some() {
            std_socket.set_broadcast(true)?;
        }
        let local = std_socket.local_addr()?;
        // Sends go straight to the kernel through a second handle of the same
        // socket: tokio's `try_send_to` refuses to send until the reactor has
        // seen the socket writable, and waiting for that buys nothing for UDP.
        let sender = std_socket.try_clone()?;
        let socket = UdpSocket::from_std(std_socket)?;
        let (commands, rx) = mpsc::unbounded_channel();
        let (unsolicited_tx, unsolicited_rx) = mpsc::channel(config.unsolicited_capacity.max(1));
        let listener = broadcast_listener(&config, local);
        let mut task = Task::new(socket, sender, config, stats.clone(), unsolicited_tx, Meter::new(network));
        task.broadcasts = listener;
        tokio::spawn(task.run(rx));
        Ok((Self { commands, stats, local }, unsolicited_rx))
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// Sends a confirmed request and waits for its answer (with retries).
    pub async fn confirmed(&self, to: Address, service: u8, payload: Vec<u8>) -> Result<Answer, BacnetError> {
        let (reply, rx) = oneshot::channel();
        self.commands.send(Command::Confirmed { to, service, payload, reply }).map_err(|_| BacnetError::Closed)?;
        rx.await.map_err(|_| BacnetError::Closed)?
    }

    /// Sends an unconfirmed request; `to: None` broadcasts it.
    pub async fn unconfirmed(&self, to: Option<Address>, service: u8, payload: Vec<u8>) -> Result<(), BacnetError> {
        let (reply, rx) = oneshot::channel();
        self.commands.send(Command::Unconfirmed { to, service, payload, reply }).map_err(|_| BacnetError::Closed)?;
        rx.await.map_err(|_| BacnetError::Closed)?
    }

    async fn complex(&self, to: Address, service: u8, payload: Vec<u8>) -> Result<Vec<u8>, BacnetError> {
        match self.confirmed(to, service, payload).await? {
            Answer::Complex(data) => Ok(data),
            Answer::Simple => Err(DecodeError::Invalid("simple ack where a complex ack was due").into()),
        }
    }

    /// ReadProperty.
    pub async fn read_property(
        &self,
        to: Address,
        object: ObjectId,
        property: PropertyRef,
    ) -> Result<Value, BacnetError> {
        let mut payload = Vec::with_capacity(16);
        ReadPropertyRequest { object, property }.encode(&mut payload)?;
        let data = self.complex(to, service::READ_PROPERTY, payload).await?;
        let ack = ReadPropertyAck::decode(&data)?;
        if ack.object != object || ack.property != property {
            return Err(DecodeError::Invalid("answer is for another object or property").into());
        }
        Ok(ack.value)
    }

    /// ReadPropertyMultiple; per-property errors come back inside the list.
    pub async fn read_property_multiple(
        &self,
        to: Address,
        specs: Vec<ReadAccessSpec>,
    ) -> Result<Vec<PropertyResult>, BacnetError> {
        let mut payload = Vec::with_capacity(64);
        ReadPropertyMultipleRequest { specs }.encode(&mut payload)?;
        let data = self.complex(to, service::READ_PROPERTY_MULTIPLE, payload).await?;
        Ok(services::decode_rpm_ack(&data)?)
    }

    /// WriteProperty; `Value::Null` relinquishes at the given priority.
    pub async fn write_property(&self, to: Address, request: &WritePropertyRequest) -> Result<(), BacnetError> {
        let mut payload = Vec::with_capacity(32);
        request.encode(&mut payload)?;
        match self.confirmed(to, service::WRITE_PROPERTY, payload).await? {
            Answer::Simple => Ok(()),
            Answer::Complex(_) => Err(DecodeError::Invalid("complex ack to WriteProperty").into()),
        }
    }

    /// SubscribeCOV (or its cancellation when `subscription` is `None`).
    pub async fn subscribe_cov(&self, to: Address, request: &SubscribeCovRequest) -> Result<(), BacnetError> {
        let mut payload = Vec::with_capacity(16);
        request.encode(&mut payload)?;
        match self.confirmed(to, service::SUBSCRIBE_COV, payload).await? {
            Answer::Simple => Ok(()),
            Answer::Complex(_) => Err(DecodeError::Invalid("complex ack to SubscribeCOV").into()),
        }
    }

    /// The Object_List of a device: read whole (segmented if it must be),
    /// or element by element when the device cannot send it in one answer.
    pub async fn read_object_list(&self, to: Address, device: ObjectId) -> Result<Vec<ObjectId>, BacnetError> {
        let whole = self.read_property(to, device, PropertyRef::new(property::OBJECT_LIST)).await;
        let too_big = |e: &BacnetError| {
            matches!(
                e,
                BacnetError::Abort {
                    reason: error::ABORT_SEGMENTATION_NOT_SUPPORTED | error::ABORT_BUFFER_OVERFLOW,
                    ..
                }
            ) || matches!(e, BacnetError::Error(ErrorClassCode { code: 73 | 76, .. }))
        };
        match whole {
            Ok(v) => object_ids(&v),
            Err(e) if too_big(&e) => {
                let len = self.read_property(to, device, PropertyRef::indexed(property::OBJECT_LIST, 0)).await?;
                let len = len.as_unsigned().ok_or(DecodeError::Invalid("Object_List length is not unsigned"))?;
                let mut ids = Vec::with_capacity(len.min(100_000) as usize);
                for i in 1..=len.min(u64::from(u32::MAX)) as u32 {
                    let v = self.read_property(to, device, PropertyRef::indexed(property::OBJECT_LIST, i)).await?;
                    ids.extend(object_ids(&v)?);
                }
                Ok(ids)
            }
            Err(e) => Err(e),
        }
    }

    /// Who-Is: `to: None` broadcasts it; a directed Who-Is goes to one address
    /// (with a route whose MAC is empty it is a remote broadcast). I-Am
    /// answers arrive as [`Unsolicited::IAm`].
    pub async fn who_is(&self, to: Option<Address>, range: Option<(u32, u32)>) -> Result<(), BacnetError> {
        let mut payload = Vec::with_capacity(8);
        WhoIs { range }.encode(&mut payload)?;
        self.unconfirmed(to, service::WHO_IS, payload).await
    }
}

// ---------------------------------------------------------------- the task

struct Pending {
    service: u8,
    /// When the first transmission went out (latency includes retries).
    started: Instant,
    /// The whole datagram, kept for retransmission.
    frame: Vec<u8>,
    attempts: u32,
    generation: u64,
    reassembly: Option<Reassembly>,
    reply: oneshot::Sender<Result<Answer, BacnetError>>,
}

struct Queued {
    to: Address,
    service: u8,
    payload: Vec<u8>,
    reply: oneshot::Sender<Result<Answer, BacnetError>>,
}

type Key = (Address, u8);

/// How often held-back invoke ids whose quarantine is over are freed (and
/// counted for the metrics).
const ID_SWEEP: Duration = Duration::from_secs(1);

struct Task {
    socket: UdpSocket,
    /// Receives datagrams sent to the broadcast address, when `socket` is
    /// bound to a unicast address (see [`broadcast_listener`]).
    broadcasts: Option<UdpSocket>,
    sender: std::net::UdpSocket,
    config: TransportConfig,
    stats: Arc<Stats>,
    meter: Meter,
    unsolicited: mpsc::Sender<Unsolicited>,
    ids: InvokeIds<Address>,
    pending: HashMap<Key, Pending>,
    /// Deadlines in the order they were set; with one timeout for all they
    /// are already sorted. Stale entries (answered, retried) are skipped.
    timers: VecDeque<(Instant, Key, u64)>,
    queue: VecDeque<Queued>,
    generation: u64,
    scratch: Vec<u8>,
}

impl Task {
    fn new(
        socket: UdpSocket,
        sender: std::net::UdpSocket,
        config: TransportConfig,
        stats: Arc<Stats>,
        unsolicited: mpsc::Sender<Unsolicited>,
        meter: Meter,
    ) -> Self {
        // An id that may see a late answer is held back for a whole
        // transaction's worth of time.
        let quarantine = config.apdu_timeout * (config.apdu_retries + 1);
        Self {
            socket,
            broadcasts: None,
            sender,
            config,
            stats,
            meter,
            unsolicited,
            ids: InvokeIds::new(quarantine),
            pending: HashMap::new(),
            timers: VecDeque::new(),
            queue: VecDeque::new(),
            generation: 0,
            scratch: Vec::with_capacity(64),
        }
    }

    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut buf = vec![0u8; 65_536];
        let mut open = true;
        let mut sweep = tokio::time::interval(ID_SWEEP);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let deadline = self.next_deadline();
            tokio::select! {
                biased;
                ready = self.socket.readable() => {
                    if let Err(e) = ready {
                        warn!(error = %e, "socket not readable");
                        continue;
                    }
                    self.drain_socket(false, &mut buf);
                }
                ready = readable_opt(self.broadcasts.as_ref()) => {
                    if let Err(e) = ready {
                        warn!(error = %e, "broadcast socket not readable; no longer listening on it");
                        self.broadcasts = None;
                        continue;
                    }
                    self.drain_socket(true, &mut buf);
                }
                cmd = commands.recv(), if open => match cmd {
                    Some(cmd) => {
                        self.on_command(cmd);
                        while let Ok(cmd) = commands.try_recv() {
                            self.on_command(cmd);
                        }
                    }
                    None => open = false,
                },
                () = sleep_until_opt(deadline) => self.on_timers(),
                _ = sweep.tick() => {
                    let held = self.ids.sweep(Instant::now().into_std());
                    self.stats.invoke_ids_held.store(held as u64, Ordering::Relaxed);
                    self.meter.ids_held(held);
                }
            }
            if !open && self.pending.is_empty() && self.queue.is_empty() {
                debug!(local = %self.config.bind, "transport stopped: no handles left");
                return;
            }
        }
    }

    fn drain_socket(&mut self, broadcasts: bool, buf: &mut [u8]) {
        // Bounded so that commands and timers are served under a flood.
        for _ in 0..256 {
            let socket = match (broadcasts, &self.broadcasts) {
                (true, Some(s)) => s,
                (true, None) => return,
                (false, _) => &self.socket,
            };
            match socket.try_recv_from(buf) {
                Ok((n, from)) => self.on_datagram(&buf[..n], from),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    // e.g. ICMP port unreachable reported on the socket
                    trace!(error = %e, "receive error");
                    return;
                }
            }
        }
    }

    fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(&(at, key, generation)) = self.timers.front() {
            match self.pending.get(&key) {
                Some(p) if p.generation == generation => return Some(at),
                _ => {
                    self.timers.pop_front();
                }
            }
        }
        None
    }

    fn send(&self, frame: &[u8], to: SocketAddr) -> Result<(), BacnetError> {
        match self.sender.send_to(frame, to) {
            Ok(_) => Ok(()),
            // A full send buffer is like a lost datagram: the retry covers it.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(BacnetError::Io(e.to_string())),
        }
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Confirmed { to, service, payload, reply } => {
                Stats::inc(&self.stats.requests);
                self.queue.push_back(Queued { to, service, payload, reply });
                self.start_queued();
            }
            Command::Unconfirmed { to, service, payload, reply } => {
                let result = self.send_unconfirmed(to, service, &payload);
                let _ = reply.send(result);
            }
        }
    }

    fn send_unconfirmed(&mut self, to: Option<Address>, service: u8, payload: &[u8]) -> Result<(), BacnetError> {
        let (ip, route, broadcast) = match to {
            Some(a) => (a.ip, a.route, false),
            // A global broadcast (DNET 0xFFFF): routers pass it on to the
            // networks behind them, so routed devices hear it too.
            None => (
                self.config.broadcast.ok_or(BacnetError::Io("no broadcast address configured".into()))?,
                Some(GLOBAL_BROADCAST),
                true,
            ),
        };
        let mut frame = std::mem::take(&mut self.scratch);
        frame::begin(&mut frame, broadcast, &NpduOut { destination: route, source: None, expecting_reply: false });
        frame::write_unconfirmed_request(&mut frame, service);
        frame.extend_from_slice(payload);
        let result = frame::finish(&mut frame).map_err(BacnetError::from).and_then(|()| self.send(&frame, ip));
        self.scratch = frame;
        result
    }

    /// Starts queued requests while the in-flight cap allows.
    fn start_queued(&mut self) {
        let now = Instant::now();
        let mut blocked = 0;
        while self.pending.len() < self.config.max_in_flight && blocked < self.queue.len() {
            let Some(q) = self.queue.pop_front() else { break };
            if q.reply.is_closed() {
                continue; // the caller gave up while queued
            }
            let Some(invoke_id) = self.ids.allocate(q.to, now.into_std()) else {
                // every id of this peer is busy: keep it queued
                self.queue.push_back(q);
                blocked += 1;
                continue;
            };
            let mut frame = Vec::with_capacity(q.payload.len() + 24);
            frame::begin(&mut frame, false, &NpduOut { destination: q.to.route, source: None, expecting_reply: true });
            frame::write_confirmed_request(
                &mut frame,
                invoke_id,
                q.service,
                self.config.max_apdu,
                self.config.max_segments,
            );
            frame.extend_from_slice(&q.payload);
            if let Err(e) = frame::finish(&mut frame) {
                self.ids.release(q.to, invoke_id, false, now.into_std());
                self.meter.record(q.service, Outcome::Failed, None);
                let _ = q.reply.send(Err(e.into()));
                continue;
            }
            if let Err(e) = self.send(&frame, q.to.ip) {
                self.ids.release(q.to, invoke_id, false, now.into_std());
                self.meter.record(q.service, Outcome::Failed, None);
                let _ = q.reply.send(Err(e));
                continue;
            }
            self.generation += 1;
            let key = (q.to, invoke_id);
            self.timers.push_back((now + self.config.apdu_timeout, key, self.generation));
            self.pending.insert(
                key,
                Pending {
                    service: q.service,
                    started: now,
                    frame,
                    attempts: 1,
                    generation: self.generation,
                    reassembly: None,
                    reply: q.reply,
                },
            );
        }
        self.stats.in_flight.store(self.pending.len() as u64, Ordering::Relaxed);
        self.stats.queued.store(self.queue.len() as u64, Ordering::Relaxed);
        self.stats.invoke_ids_in_use.store(self.ids.in_use() as u64, Ordering::Relaxed);
        self.meter.ids_in_use(self.ids.in_use());
    }

    /// Ends a transaction. Its id is held back when an answer to an earlier
    /// transmission may still arrive (`late`, or it was retransmitted).
    fn finish(&mut self, key: Key, result: Result<Answer, BacnetError>, late: bool) {
        if let Some(p) = self.pending.remove(&key) {
            let now = Instant::now();
            self.ids.release(key.0, key.1, late || p.attempts > 1, now.into_std());
            self.meter.record(p.service, Outcome::of(&result), Some(now - p.started));
            let _ = p.reply.send(result);
        }
        self.start_queued();
    }

    fn on_timers(&mut self) {
        let now = Instant::now();
        while let Some(&(at, key, generation)) = self.timers.front() {
            if at > now {
                break;
            }
            self.timers.pop_front();
            let Some(p) = self.pending.get_mut(&key) else { continue };
            if p.generation != generation {
                continue;
            }
            // A reassembly in progress is not retried: the server owns the
            // segment timers, and a stall ends the transaction.
            if p.attempts > self.config.apdu_retries || p.reassembly.is_some() {
                Stats::inc(&self.stats.timeouts);
                let attempts = p.attempts;
                if p.reassembly.is_some() {
                    self.send_abort(key, error::ABORT_OTHER);
                }
                debug!(peer = %key.0, invoke_id = key.1, attempts, "request timed out");
                self.finish(key, Err(BacnetError::Timeout { attempts }), true);
                continue;
            }
            p.attempts += 1;
            self.generation += 1;
            p.generation = self.generation;
            Stats::inc(&self.stats.retries);
            self.timers.push_back((now + self.config.apdu_timeout, key, self.generation));
            let frame = std::mem::take(&mut p.frame);
            let sent = self.send(&frame, key.0.ip);
            if let Some(p) = self.pending.get_mut(&key) {
                p.frame = frame;
            }
            if let Err(e) = sent {
                self.finish(key, Err(e), true);
            }
        }
    }

    fn send_abort(&mut self, key: Key, reason: u8) {
        let mut frame = std::mem::take(&mut self.scratch);
        frame::begin(&mut frame, false, &NpduOut { destination: key.0.route, source: None, expecting_reply: false });
        frame::write_abort(&mut frame, false, key.1, reason);
        if frame::finish(&mut frame).is_ok() {
            let _ = self.send(&frame, key.0.ip);
        }
        self.scratch = frame;
    }

    fn send_segment_ack(&mut self, key: Key, negative: bool, sequence: u8, window: u8) {
        let mut frame = std::mem::take(&mut self.scratch);
        frame::begin(&mut frame, false, &NpduOut { destination: key.0.route, source: None, expecting_reply: false });
        frame::write_segment_ack(&mut frame, negative, false, key.1, sequence, window);
        if frame::finish(&mut frame).is_ok() {
            let _ = self.send(&frame, key.0.ip);
        }
        self.scratch = frame;
    }

    fn on_datagram(&mut self, datagram: &[u8], from: SocketAddr) {
        // The decode path is plantwatch's own and fallible; the guard is a
        // last line of defence so that no input can end the receive loop.
        let parsed = std::panic::catch_unwind(|| frame::parse(datagram));
        let frame = match parsed {
            Ok(Ok(f)) => f,
            Ok(Err(e)) => {
                Stats::inc(&self.stats.malformed);
                debug!(%from, error = %e, len = datagram.len(), "malformed frame dropped");
                return;
            }
            Err(_) => {
                Stats::inc(&self.stats.malformed);
                warn!(%from, len = datagram.len(), "decoder panicked; frame dropped");
                return;
            }
        };
        let peer = Address { ip: frame.origin.unwrap_or(from), route: frame.source };
        let Body::Apdu(apdu) = frame.body else {
            trace!(%from, "network layer message ignored");
            return;
        };
        match apdu {
            Apdu::SimpleAck { invoke_id, service } => self.on_answer((peer, invoke_id), service, Ok(Answer::Simple)),
            Apdu::ComplexAck { invoke_id, service, segment: None, data } => {
                self.on_answer((peer, invoke_id), service, Ok(Answer::Complex(data.to_vec())))
            }
            Apdu::ComplexAck { invoke_id, service, segment: Some(seg), data } => {
                self.on_segment((peer, invoke_id), service, seg, data)
            }
            Apdu::Error { invoke_id, service, data } => {
                let result = match services::decode_error(data) {
                    Ok(e) => Err(BacnetError::Error(e)),
                    Err(e) => Err(BacnetError::Decode(e)),
                };
                self.on_answer((peer, invoke_id), service, result)
            }
            Apdu::Reject { invoke_id, reason } => {
                self.on_answer_any((peer, invoke_id), Err(BacnetError::Reject { reason }))
            }
            Apdu::Abort { server: true, invoke_id, reason } => {
                self.on_answer_any((peer, invoke_id), Err(BacnetError::Abort { reason, by_server: true }))
            }
            Apdu::UnconfirmedRequest { service, data } => self.on_unconfirmed(peer, service, data),
            Apdu::ConfirmedRequest { invoke_id, service, data, segment: None, .. } => {
                self.on_confirmed_request(peer, invoke_id, service, data)
            }
            Apdu::ConfirmedRequest { invoke_id, segment: Some(_), .. } => {
                // We accept no segmented requests.
                self.reply_to_request(peer, |f| {
                    frame::write_abort(f, true, invoke_id, error::ABORT_SEGMENTATION_NOT_SUPPORTED)
                });
            }
            Apdu::SegmentAck { .. } | Apdu::Abort { server: false, .. } => {
                // We never send segmented requests nor act as a server.
                Stats::inc(&self.stats.unexpected);
            }
        }
    }

    fn on_answer(&mut self, key: Key, service: u8, result: Result<Answer, BacnetError>) {
        match self.pending.get(&key) {
            Some(p) if p.service == service => self.on_answer_any(key, result),
            _ => {
                Stats::inc(&self.stats.unexpected);
                debug!(peer = %key.0, invoke_id = key.1, "answer matches no outstanding request; dropped");
            }
        }
    }

    fn on_answer_any(&mut self, key: Key, result: Result<Answer, BacnetError>) {
        if !self.pending.contains_key(&key) {
            Stats::inc(&self.stats.unexpected);
            debug!(peer = %key.0, invoke_id = key.1, "answer matches no outstanding request; dropped");
            return;
        }
        let counter = match &result {
            Ok(_) => &self.stats.answers,
            Err(BacnetError::Error(_)) => &self.stats.errors,
            Err(BacnetError::Reject { .. }) => &self.stats.rejects,
            Err(BacnetError::Abort { .. }) => &self.stats.aborts,
            Err(_) => &self.stats.malformed,
        };
        Stats::inc(counter);
        self.finish(key, result, false);
    }

    fn on_segment(&mut self, key: Key, service: u8, seg: Segment, data: &[u8]) {
        let config = (
            self.config.window,
            u32::from(self.config.max_segments),
            usize::from(self.config.max_apdu) * usize::from(self.config.max_segments),
        );
        let Some(p) = self.pending.get_mut(&key) else {
            Stats::inc(&self.stats.unexpected);
            return;
        };
        if p.service != service {
            Stats::inc(&self.stats.unexpected);
            return;
        }
        let step = match p.reassembly.as_mut() {
            Some(r) => r.on_segment(seg, service, data),
            None => {
                let (r, step) = Reassembly::start(seg, service, data, config.0, config.1, config.2);
                p.reassembly = r;
                step
            }
        };
        // Every segment restarts the stall timer.
        self.generation += 1;
        p.generation = self.generation;
        self.timers.push_back((Instant::now() + self.config.apdu_timeout, key, self.generation));
        match step {
            Step::Wait => {}
            Step::Ack { negative, sequence, window } => self.send_segment_ack(key, negative, sequence, window),
            Step::Done { sequence, window } => {
                self.send_segment_ack(key, false, sequence, window);
                Stats::inc(&self.stats.segmented_answers);
                let data = self.pending.get_mut(&key).and_then(|p| p.reassembly.take()).map(Reassembly::into_data);
                self.on_answer_any(key, Ok(Answer::Complex(data.unwrap_or_default())));
            }
            Step::Abort(reason) => {
                self.send_abort(key, reason);
                Stats::inc(&self.stats.aborts);
                self.finish(key, Err(BacnetError::Abort { reason, by_server: false }), true);
            }
        }
    }

    fn on_unconfirmed(&mut self, from: Address, service: u8, data: &[u8]) {
        let msg = match service {
            service::I_AM => IAm::decode(data).map(|iam| Unsolicited::IAm { from, iam }),
            service::UNCONFIRMED_COV_NOTIFICATION => CovNotification::decode(data)
                .map(|notification| Unsolicited::Cov { from, confirmed: false, notification }),
            _ => return, // Who-Is, time sync...: we are not a device
        };
        match msg {
            Ok(msg) => self.deliver(msg),
            Err(e) => {
                Stats::inc(&self.stats.malformed);
                debug!(%from, service, error = %e, "malformed unconfirmed request dropped");
            }
        }
    }

    fn on_confirmed_request(&mut self, from: Address, invoke_id: u8, service: u8, data: &[u8]) {
        if service != service::CONFIRMED_COV_NOTIFICATION {
            self.reply_to_request(from, |f| frame::write_reject(f, invoke_id, error::REJECT_UNRECOGNIZED_SERVICE));
            return;
        }
        match CovNotification::decode(data) {
            Ok(notification) => {
                self.reply_to_request(from, |f| frame::write_simple_ack(f, invoke_id, service));
                self.deliver(Unsolicited::Cov { from, confirmed: true, notification });
            }
            Err(e) => {
                Stats::inc(&self.stats.malformed);
                debug!(%from, error = %e, "malformed COV notification rejected");
                self.reply_to_request(from, |f| frame::write_reject(f, invoke_id, error::REJECT_INVALID_TAG));
            }
        }
    }

    fn reply_to_request(&mut self, to: Address, write: impl FnOnce(&mut Vec<u8>)) {
        let mut frame = std::mem::take(&mut self.scratch);
        frame::begin(&mut frame, false, &NpduOut { destination: to.route, source: None, expecting_reply: false });
        write(&mut frame);
        if frame::finish(&mut frame).is_ok() {
            let _ = self.send(&frame, to.ip);
        }
        self.scratch = frame;
    }

    fn deliver(&mut self, msg: Unsolicited) {
        Stats::inc(&self.stats.unsolicited);
        if self.unsolicited.try_send(msg).is_err() {
            Stats::inc(&self.stats.unsolicited_dropped);
        }
    }
}

async fn readable_opt(socket: Option<&UdpSocket>) -> io::Result<()> {
    match socket {
        Some(s) => s.readable().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn object_ids(v: &Value) -> Result<Vec<ObjectId>, BacnetError> {
    v.elements()
        .iter()
        .map(|e| match e {
            Value::ObjectId(id) => Ok(*id),
            _ => Err(DecodeError::Invalid("Object_List holds something other than object identifiers").into()),
        })
        .collect()
}
