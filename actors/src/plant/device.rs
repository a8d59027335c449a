//! The device actor: one per BACnet device. It owns the device's identity,
//! point list, value cache, polling schedule, retry and back-off state, COV
//! subscriptions and write queue.
//!
//! Network I/O never runs inside a message handler: enrolment, polls, probes,
//! COV subscriptions, live reads and writes run as tasks that report back
//! with a message, so a write or a live read is taken at once even while a
//! poll of a slow device is outstanding ("writes and live reads go ahead of
//! polls"). At most one poll, one probe and one write are in flight at a time;
//! writes wait in an ordered queue of bounded length.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use rand::SeedableRng;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn, Instrument};

use super::model::{now_ms, DeviceIdentity, DeviceSnapshot, DeviceStatus, Point, Quality};
use super::schedule::{self, Schedule};
use super::{Directory, HistoryRecord};
use crate::bacnet::codec::Value;
use crate::bacnet::services::{
    CovNotification, CovSubscription, ErrorClassCode, PropertyRef, PropertyResult, ReadAccessSpec, SubscribeCovRequest,
    WritePropertyRequest,
};
use crate::bacnet::types::{
    error, object_type, property, services_supported, Address, ObjectId, Segmentation, StatusFlags,
};
use crate::transport::{BacnetError, Transport};

/// Writes waiting for a device before new ones are refused as busy.
const WRITE_QUEUE: usize = 32;
/// A device actor wakes at least this often (its heartbeat).
const MAX_SLEEP: Duration = Duration::from_secs(5);
/// The COV subscriber process identifier plantwatch uses.
pub const COV_PROCESS_ID: u32 = 1;

/// How one device is to be watched: configuration, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceSettings {
    pub instance: u32,
    pub network: String,
    pub address: Address,
    pub label: Option<String>,
    pub poll: Duration,
    /// `None`: every object in the Object_List.
    pub points: Option<Vec<PointSettings>>,
    pub cov: bool,
    pub cov_lifetime: Duration,
    /// COV watchdog: after this long without a notification from a
    /// subscribed device, one subscribed value is read to check that the
    /// subscriptions still live.
    pub cov_quiet: Duration,
    /// Consecutive timeouts before the device is offline.
    pub offline_after: u32,
    /// Cap of the re-probe back-off of an offline device.
    pub reprobe_max: Duration,
    pub history_max_interval: Duration,
    /// Testing aid (`[testing] poison_value`): a write of exactly this number
    /// panics the actor. `None` on a site.
    pub poison_value: Option<f64>,
}

/// A configured point, with optional overrides of the device's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct PointSettings {
    pub object: ObjectId,
    pub poll: Option<Duration>,
    pub cov: Option<bool>,
}

/// Why a device request failed, as the API sees it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DeviceError {
    #[error(transparent)]
    Bacnet(#[from] BacnetError),
    #[error("device {instance} has no point {object}")]
    UnknownPoint { instance: u32, object: ObjectId },
    #[error("device {instance} has {WRITE_QUEUE} writes waiting")]
    Busy { instance: u32 },
    #[error("device {instance} is offline")]
    Offline { instance: u32 },
}

/// The result of a write, after reading back what is now in control.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteOutcome {
    pub present_value: Option<Value>,
    /// The priority slot now in control (`None`: the relinquish default).
    pub active_priority: Option<u8>,
}

/// A write request.
#[derive(Debug, Clone, PartialEq)]
pub struct Write {
    pub object: ObjectId,
    pub property: u32,
    /// `Value::Null` relinquishes.
    pub value: Value,
    pub priority: Option<u8>,
}

/// An error a device actor's handler returns (a broken invariant, an
/// injected fault). Whatever else fails an actor is a panic, which ractor
/// hands to the supervisor as an error holding the panic's message: the
/// supervisor tells the two apart by this type, never by the text.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HandlerError(pub String);

/// Failures a test or a chaos drill can inject into a device actor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InjectedFault {
    Panic,
    Error,
    /// The handler never returns: only the heartbeat check gets it out.
    Freeze,
}

/// Everything a device actor is told. Calls carry their own reply port.
#[derive(Debug)]
pub enum DeviceMessage {
    /// Something may be due: polls, probes, COV renewals.
    Tick,
    /// Read a property: from the cache, or (`live`) from the device now.
    Read {
        object: ObjectId,
        property: u32,
        live: bool,
        reply: RpcReplyPort<Result<Value, DeviceError>>,
    },
    /// WriteProperty, then read back Present_Value and Priority_Array.
    Write {
        write: Write,
        reply: RpcReplyPort<Result<WriteOutcome, DeviceError>>,
    },
    Snapshot {
        reply: RpcReplyPort<DeviceSnapshot>,
    },
    Status {
        reply: RpcReplyPort<DeviceStatus>,
    },
    /// A COV notification for this device.
    Cov(CovNotification),
    InjectFault(InjectedFault),
    // Results of the actor's own network tasks.
    #[doc(hidden)]
    Enrolled(Box<Result<Enrollment, BacnetError>>),
    #[doc(hidden)]
    Polled(Vec<Outcome>),
    #[doc(hidden)]
    Probed(Result<(), BacnetError>),
    #[doc(hidden)]
    Revision(Result<Value, BacnetError>),
    #[doc(hidden)]
    Subscribed {
        object: ObjectId,
        result: Result<(), BacnetError>,
    },
    /// The COV watchdog's read of a quiet subscription's point; `heard` is
    /// [`DeviceState`]'s count of signs of life when it was sent.
    #[doc(hidden)]
    CovChecked {
        object: ObjectId,
        heard: u64,
        result: Result<Value, BacnetError>,
    },
    #[doc(hidden)]
    WriteDone {
        object: ObjectId,
        value: Option<Value>,
    },
    /// A live read or a write failed: counted in the snapshot's errors.
    #[doc(hidden)]
    Failed(&'static str),
}

/// The outcome of one request of a poll.
#[derive(Debug)]
pub enum Outcome {
    Rpm { objects: Vec<ObjectId>, result: Result<Vec<PropertyResult>, BacnetError> },
    Rp { object: ObjectId, result: Result<Value, BacnetError> },
}

/// What enrolment found.
#[derive(Debug, Clone)]
pub struct Enrollment {
    pub identity: DeviceIdentity,
    pub points: Vec<Point>,
    pub use_rpm: bool,
    pub rpm_fallback_reason: Option<String>,
}

/// The time of a device actor's last sign of life, for the frozen check.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    base: Instant,
    last: Arc<AtomicU64>,
}

impl Heartbeat {
    pub fn new() -> Self {
        Self { base: Instant::now(), last: Arc::new(AtomicU64::new(0)) }
    }

    pub fn beat(&self) {
        self.last.store(self.base.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Time since the last beat.
    pub fn silence(&self) -> Duration {
        let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
        self.base.elapsed().saturating_sub(last)
    }
}

impl Default for Heartbeat {
    fn default() -> Self {
        Self::new()
    }
}

pub struct DeviceArgs {
    pub settings: Arc<DeviceSettings>,
    pub transport: Transport,
    pub directory: Directory,
    pub history: mpsc::Sender<HistoryRecord>,
    pub heartbeat: Heartbeat,
}

pub struct DeviceState {
    settings: Arc<DeviceSettings>,
    transport: Transport,
    directory: Directory,
    history: mpsc::Sender<HistoryRecord>,
    heartbeat: Heartbeat,
    snap: DeviceSnapshot,
    schedule: Schedule,
    cov_active: Vec<bool>,
    /// A SubscribeCOV for this point is on the wire: a renewal round does not send another.
    cov_pending: Vec<bool>,
    /// The COV watchdog: when the subscriptions last showed life (a
    /// notification, or a subscription confirmed), how many times they have,
    /// whether a check is on the wire, and the point to check next.
    cov_heard_at: Instant,
    cov_heard: u64,
    cov_checking: bool,
    cov_check_next: usize,
    last_recorded: Vec<Option<(f64, u64)>>,
    batch: usize,
    rng: rand::rngs::StdRng,
    enrolling: bool,
    polling: bool,
    probing: bool,
    probe_attempt: u32,
    probe_at: Instant,
    poll_started: Instant,
    revision_at: Instant,
    cov_renew_at: Option<Instant>,
    writes: VecDeque<QueuedWrite>,
    writing: bool,
    timer: Option<JoinHandle<()>>,
    timer_at: Option<Instant>,
}

/// A write waiting its turn, with its caller's reply port and span.
type QueuedWrite = (Write, RpcReplyPort<Result<WriteOutcome, DeviceError>>, tracing::Span);

/// The device actor. Stateless itself: all state is in [`DeviceState`].
pub struct DeviceActor;

impl Actor for DeviceActor {
    type Msg = DeviceMessage;
    type State = DeviceState;
    type Arguments = DeviceArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<DeviceMessage>,
        args: DeviceArgs,
    ) -> Result<DeviceState, ActorProcessingErr> {
        let s = &args.settings;
        // Start from the last snapshot: values are served at once after a restart.
        let snap = match args.directory.get(s.instance) {
            Some(prev) if prev.network == s.network => {
                let mut snap = (*prev).clone();
                snap.address = s.address.ip;
                snap.route = s.address.route;
                snap.label.clone_from(&s.label);
                if snap.status == DeviceStatus::Failed {
                    snap.status =
                        if snap.identity.is_some() { DeviceStatus::Degraded } else { DeviceStatus::Enrolling };
                }
                snap
            }
            _ => DeviceSnapshot::new(s.instance, &s.network, s.address, s.label.clone()),
        };
        let now = Instant::now();
        let mut rng = rand::rngs::StdRng::from_os_rng();
        let schedule = Schedule::new(&snap.points, now, &mut rng);
        let batch = snap.identity.as_ref().map_or(1476, |i| i.max_apdu);
        let revision_every = s.poll.max(Duration::from_secs(60));
        let state = DeviceState {
            settings: args.settings.clone(),
            transport: args.transport,
            directory: args.directory,
            history: args.history,
            heartbeat: args.heartbeat,
            cov_active: vec![false; snap.points.len()],
            cov_pending: vec![false; snap.points.len()],
            cov_heard_at: now,
            cov_heard: 0,
            cov_checking: false,
            cov_check_next: 0,
            last_recorded: vec![None; snap.points.len()],
            schedule,
            batch: schedule::batch_size(batch),
            rng,
            enrolling: false,
            polling: false,
            probing: false,
            probe_attempt: 0,
            probe_at: now,
            poll_started: now,
            revision_at: now + revision_every,
            cov_renew_at: None,
            writes: VecDeque::new(),
            writing: false,
            timer: None,
            timer_at: None,
            snap,
        };
        let mut state = state;
        if state.snap.identity.is_some() && state.snap.status != DeviceStatus::Enrolling {
            // Back from a restart: subscribe to COV again on the first tick.
            state.cov_renew_at = Some(now);
        }
        state.heartbeat.beat();
        state.directory.publish(state.snap.clone());
        let _ = myself.send_message(DeviceMessage::Tick);
        Ok(state)
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<DeviceMessage>,
        state: &mut DeviceState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(t) = state.timer.take() {
            t.abort();
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<DeviceMessage>,
        msg: DeviceMessage,
        state: &mut DeviceState,
    ) -> Result<(), ActorProcessingErr> {
        state.heartbeat.beat();
        match msg {
            DeviceMessage::Tick => {
                state.timer_at = None;
                state.on_tick(&myself);
            }
            DeviceMessage::Read { object, property, live, reply } => {
                state.on_read(&myself, object, property, live, reply)
            }
            DeviceMessage::Write { write, reply } => state.on_write(&myself, write, reply),
            DeviceMessage::Snapshot { reply } => {
                let _ = reply.send(state.snap.clone());
            }
            DeviceMessage::Status { reply } => {
                let _ = reply.send(state.snap.status);
            }
            DeviceMessage::Cov(n) => state.on_cov(n),
            DeviceMessage::InjectFault(f) => match f {
                InjectedFault::Panic => panic!("injected panic in device {}", state.snap.instance),
                InjectedFault::Error => {
                    return Err(Box::new(HandlerError(format!("injected error in device {}", state.snap.instance))));
                }
                InjectedFault::Freeze => std::future::pending::<()>().await,
            },
            DeviceMessage::Enrolled(result) => state.on_enrolled(&myself, *result),
            DeviceMessage::Polled(outcomes) => state.on_polled(outcomes),
            DeviceMessage::Probed(result) => state.on_probed(result),
            DeviceMessage::Revision(result) => state.on_revision(result),
            DeviceMessage::Subscribed { object, result } => state.on_subscribed(object, result),
            DeviceMessage::CovChecked { object, heard, result } => state.on_cov_checked(&myself, object, heard, result),
            DeviceMessage::Failed(label) => {
                state.snap.count_error(label);
                state.publish();
            }
            DeviceMessage::WriteDone { object, value } => {
                state.writing = false;
                if let (Some(v), Some(p)) = (value, state.snap.point_mut(object)) {
                    schedule::set_value(p, v, now_ms());
                }
                state.publish();
                state.next_write(&myself);
            }
        }
        state.arm_timer(&myself);
        Ok(())
    }
}

impl DeviceState {
    fn instance(&self) -> u32 {
        self.snap.instance
    }

    fn address(&self) -> Address {
        self.settings.address
    }

    fn publish(&self) {
        self.directory.publish(self.snap.clone());
    }

    /// Schedules the next Tick at the earliest deadline (at most MAX_SLEEP away).
    fn arm_timer(&mut self, myself: &ActorRef<DeviceMessage>) {
        let now = Instant::now();
        let mut at = now + MAX_SLEEP;
        if !self.polling && matches!(self.snap.status, DeviceStatus::Online | DeviceStatus::Degraded) {
            if let Some(due) = self.schedule.next_wake() {
                at = at.min(due);
            }
            if let Some(renew) = self.cov_renew_at {
                at = at.min(renew);
            }
            if let Some(check) = self.cov_check_at() {
                at = at.min(check);
            }
        }
        if self.snap.status == DeviceStatus::Offline && !self.probing {
            at = at.min(self.probe_at);
        }
        let at = at.max(now);
        if self.timer_at.is_some_and(|t| t <= at) {
            return;
        }
        if let Some(t) = self.timer.take() {
            t.abort();
        }
        self.timer_at = Some(at);
        let me = myself.clone();
        self.timer = Some(tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            let _ = me.send_message(DeviceMessage::Tick);
        }));
    }

    fn on_tick(&mut self, myself: &ActorRef<DeviceMessage>) {
        let now = Instant::now();
        match self.snap.status {
            DeviceStatus::Enrolling => {
                if !self.enrolling {
                    self.start_enrolment(myself);
                }
            }
            DeviceStatus::Offline => {
                if !self.probing && now >= self.probe_at {
                    self.start_probe(myself);
                }
            }
            DeviceStatus::Failed => {}
            DeviceStatus::Online | DeviceStatus::Degraded => {
                if self.cov_renew_at.is_some_and(|t| now >= t) {
                    self.cov_renew_at = None;
                    self.subscribe_all(myself);
                }
                if self.cov_check_at().is_some_and(|t| now >= t) {
                    self.start_cov_check(myself);
                }
                if now >= self.revision_at && !self.polling {
                    self.revision_at = now + self.settings.poll.max(Duration::from_secs(60));
                    let (t, to, dev) = (self.transport.clone(), self.address(), ObjectId::device(self.instance()));
                    let me = myself.clone();
                    tokio::spawn(async move {
                        let r = t.read_property(to, dev, PropertyRef::new(property::DATABASE_REVISION)).await;
                        let _ = me.send_message(DeviceMessage::Revision(r));
                    });
                }
                if !self.polling {
                    let due = self.schedule.take_due(&self.snap.points, &self.cov_active, now, self.batch);
                    if due.late {
                        self.snap.counters.overruns += 1;
                    }
                    if !due.batches.is_empty() {
                        self.start_poll(myself, due.batches);
                    }
                }
            }
        }
    }

    fn start_enrolment(&mut self, myself: &ActorRef<DeviceMessage>) {
        self.enrolling = true;
        let (t, settings, me) = (self.transport.clone(), self.settings.clone(), myself.clone());
        tokio::spawn(async move {
            let r = enroll(&t, &settings).await;
            let _ = me.send_message(DeviceMessage::Enrolled(Box::new(r)));
        });
    }

    fn on_enrolled(&mut self, myself: &ActorRef<DeviceMessage>, result: Result<Enrollment, BacnetError>) {
        self.enrolling = false;
        let now = now_ms();
        match result {
            Ok(e) => {
                info!(device = self.instance(), points = e.points.len(), rpm = e.use_rpm, "device enrolled");
                // Keep the values of points that stay.
                let old = std::mem::take(&mut self.snap.points);
                self.snap.points = e
                    .points
                    .into_iter()
                    .map(|mut p| {
                        if let Ok(i) = old.binary_search_by_key(&p.object, |o| o.object) {
                            let o = &old[i];
                            (p.value, p.status_flags, p.quality, p.error, p.updated_at) =
                                (o.value.clone(), o.status_flags, o.quality, o.error, o.updated_at);
                        }
                        p
                    })
                    .collect();
                self.batch = schedule::batch_size(e.identity.max_apdu);
                self.snap.identity = Some(e.identity);
                self.snap.use_rpm = e.use_rpm;
                self.snap.rpm_fallback_reason = e.rpm_fallback_reason;
                self.snap.counters.enrolments += 1;
                self.snap.status = DeviceStatus::Online;
                schedule::answered(&mut self.snap, now);
                self.reset_points();
                self.subscribe_all(myself);
            }
            Err(e) => {
                // Whatever the cause, enrolment is tried again after the probe back-off.
                warn!(device = self.instance(), error = %e, "enrolment failed");
                self.snap.count_error(error_label(&e));
                schedule::failed(&mut self.snap, &[], &e, self.settings.offline_after, now);
                self.snap.status = DeviceStatus::Offline;
                self.schedule_probe();
            }
        }
        self.publish();
    }

    /// A fresh schedule and per-point state after the point list changed.
    fn reset_points(&mut self) {
        let n = self.snap.points.len();
        self.schedule = Schedule::new(&self.snap.points, Instant::now(), &mut self.rng);
        self.cov_active = vec![false; n];
        self.cov_pending = vec![false; n];
        self.snap.points.iter_mut().for_each(|p| p.cov_until = 0);
        self.last_recorded = vec![None; n];
        self.snap.cov_subscriptions = 0;
    }

    fn start_poll(&mut self, myself: &ActorRef<DeviceMessage>, batches: Vec<Vec<ObjectId>>) {
        self.polling = true;
        self.poll_started = Instant::now();
        let (t, to, rpm, me) = (self.transport.clone(), self.address(), self.snap.use_rpm, myself.clone());
        tokio::spawn(async move {
            let outcomes = poll(&t, to, batches, rpm).await;
            let _ = me.send_message(DeviceMessage::Polled(outcomes));
        });
    }

    fn on_polled(&mut self, outcomes: Vec<Outcome>) {
        self.polling = false;
        let now = now_ms();
        let mut ok = true;
        for o in outcomes {
            match o {
                Outcome::Rpm { result: Ok(results), .. } => {
                    for r in &results {
                        if let (property::PRESENT_VALUE, Err(e)) = (r.property.property, &r.value) {
                            self.snap.count_error(error_class_label(e.class));
                        }
                    }
                    schedule::apply_results(&mut self.snap, &results, now);
                    self.record(
                        results.iter().filter(|r| r.property.property == property::PRESENT_VALUE).map(|r| r.object),
                        now,
                    );
                }
                Outcome::Rpm { objects, result: Err(e) } => {
                    ok = false;
                    self.snap.count_error(error_label(&e));
                    if refuses_rpm(&e) {
                        warn!(device = self.instance(), error = %e, "ReadPropertyMultiple refused; falling back to ReadProperty");
                        self.snap.use_rpm = false;
                        self.snap.rpm_fallback_reason = Some(format!("device answered ReadPropertyMultiple with: {e}"));
                        schedule::answered(&mut self.snap, now);
                    } else if matches!(
                        e,
                        BacnetError::Abort {
                            reason: error::ABORT_SEGMENTATION_NOT_SUPPORTED | error::ABORT_BUFFER_OVERFLOW,
                            ..
                        }
                    ) && self.batch > 1
                    {
                        self.batch = (self.batch / 2).max(1);
                        schedule::answered(&mut self.snap, now);
                    } else if self.poll_failed(&objects, &e, now) {
                        break;
                    }
                }
                Outcome::Rp { object, result: Ok(v) } => {
                    if let Some(p) = self.snap.point_mut(object) {
                        schedule::set_value(p, v, now);
                    }
                    schedule::answered(&mut self.snap, now);
                    self.record(std::iter::once(object), now);
                }
                Outcome::Rp { object, result: Err(BacnetError::Error(e)) } => {
                    self.snap.count_error(error_class_label(e.class));
                    if let Some(p) = self.snap.point_mut(object) {
                        schedule::set_error(p, e, now);
                    }
                    schedule::answered(&mut self.snap, now);
                }
                Outcome::Rp { object, result: Err(e) } => {
                    ok = false;
                    self.snap.count_error(error_label(&e));
                    if self.poll_failed(&[object], &e, now) {
                        break;
                    }
                }
            }
        }
        self.snap.last_poll_us = Some(u64::try_from(self.poll_started.elapsed().as_micros()).unwrap_or(u64::MAX));
        if ok {
            self.snap.counters.polls_ok += 1;
            self.snap.last_success_at = Some(now);
        } else {
            self.snap.counters.polls_failed += 1;
        }
        self.publish();
    }

    /// Returns true when the device went offline.
    fn poll_failed(&mut self, objects: &[ObjectId], e: &BacnetError, now: u64) -> bool {
        debug!(device = self.instance(), error = %e, "poll failed");
        let offline = schedule::failed(&mut self.snap, objects, e, self.settings.offline_after, now);
        if offline {
            warn!(device = self.instance(), "device offline");
            for p in &mut self.snap.points {
                p.quality = Quality::CommFailure;
                p.cov_until = 0;
            }
            self.cov_active.iter_mut().for_each(|c| *c = false);
            self.snap.cov_subscriptions = 0;
            self.probe_attempt = 0;
            self.schedule_probe();
        }
        offline || self.snap.status == DeviceStatus::Offline
    }

    fn schedule_probe(&mut self) {
        let base = self.settings.poll.min(Duration::from_secs(5)).max(Duration::from_millis(100));
        let delay = schedule::probe_delay(self.probe_attempt, base, self.settings.reprobe_max, &mut self.rng);
        self.probe_at = Instant::now() + delay;
        self.probe_attempt = self.probe_attempt.saturating_add(1);
    }

    fn start_probe(&mut self, myself: &ActorRef<DeviceMessage>) {
        self.probing = true;
        let (t, to, dev, me) =
            (self.transport.clone(), self.address(), ObjectId::device(self.instance()), myself.clone());
        tokio::spawn(async move {
            let r = t.read_property(to, dev, PropertyRef::new(property::OBJECT_IDENTIFIER)).await.map(|_| ());
            let _ = me.send_message(DeviceMessage::Probed(r));
        });
    }

    fn on_probed(&mut self, result: Result<(), BacnetError>) {
        self.probing = false;
        match result {
            Ok(()) | Err(BacnetError::Error(_) | BacnetError::Reject { .. } | BacnetError::Abort { .. }) => {
                info!(device = self.instance(), "device answers again");
                self.probe_attempt = 0;
                if self.snap.identity.is_none() {
                    self.snap.status = DeviceStatus::Enrolling;
                } else {
                    self.snap.status = DeviceStatus::Online;
                    schedule::answered(&mut self.snap, now_ms());
                    // Poll everything now, and subscribe again.
                    self.schedule = Schedule::new(&self.snap.points, Instant::now(), &mut self.rng);
                    self.cov_renew_at = Some(Instant::now());
                }
            }
            Err(e) => {
                debug!(device = self.instance(), error = %e, attempt = self.probe_attempt, "still offline");
                self.snap.last_error = Some(e.to_string());
                self.schedule_probe();
            }
        }
        self.publish();
    }

    fn on_revision(&mut self, result: Result<Value, BacnetError>) {
        let Ok(v) = result else { return };
        let rev = v.as_unsigned();
        let known = self.snap.identity.as_ref().and_then(|i| i.database_revision);
        if rev.is_some() && known.is_some() && rev != known {
            info!(device = self.instance(), ?known, ?rev, "Database_Revision changed; enrolling again");
            self.snap.status = DeviceStatus::Enrolling;
            self.publish();
        }
    }

    fn subscribe_all(&mut self, myself: &ActorRef<DeviceMessage>) {
        let cov_listed = self.snap.identity.as_ref().is_some_and(|i| i.cov_listed);
        let lifetime = self.settings.cov_lifetime.as_secs().clamp(1, u64::from(u32::MAX)) as u32;
        for (i, p) in self.snap.points.iter_mut().enumerate() {
            if !p.cov_wanted {
                continue;
            }
            if !cov_listed {
                p.cov_refused = Some("the device does not list SubscribeCOV in Protocol_Services_Supported".into());
                continue;
            }
            // A renewal keeps a live subscription live (the point is not
            // polled meanwhile), and never doubles a request still in flight.
            if self.cov_pending[i] {
                continue;
            }
            self.cov_pending[i] = true;
            let (t, to, me, object) = (self.transport.clone(), self.settings.address, myself.clone(), p.object);
            tokio::spawn(async move {
                let req = SubscribeCovRequest {
                    process_id: COV_PROCESS_ID,
                    object,
                    subscription: Some(CovSubscription { confirmed: false, lifetime: Some(lifetime) }),
                };
                let result = t.subscribe_cov(to, &req).await;
                let _ = me.send_message(DeviceMessage::Subscribed { object, result });
            });
        }
        // Renew at two thirds of the lifetime.
        self.cov_renew_at = Some(Instant::now() + self.settings.cov_lifetime * 2 / 3);
    }

    fn on_subscribed(&mut self, object: ObjectId, result: Result<(), BacnetError>) {
        let Ok(i) = self.snap.points.binary_search_by_key(&object, |p| p.object) else { return };
        self.cov_pending[i] = false;
        match result {
            Ok(()) => {
                self.cov_heard();
                self.cov_active[i] = true;
                let p = &mut self.snap.points[i];
                p.cov_refused = None;
                p.cov_until = now_ms().saturating_add(self.settings.cov_lifetime.as_millis() as u64);
            }
            Err(e) => {
                self.cov_active[i] = false;
                self.snap.points[i].cov_until = 0;
                if !matches!(e, BacnetError::Timeout { .. }) {
                    info!(device = self.instance(), %object, error = %e, "COV refused; polling instead");
                    self.snap.points[i].cov_refused = Some(e.to_string());
                }
            }
        }
        self.snap.cov_subscriptions = self.cov_active.iter().filter(|a| **a).count() as u32;
        if !self.cov_pending.contains(&true) {
            // The round that followed a silence is over.
            self.snap.cov_silent = false;
        }
        self.publish();
    }

    /// The subscriptions showed life: the watchdog's quiet time starts again.
    fn cov_heard(&mut self) {
        self.cov_heard_at = Instant::now();
        self.cov_heard = self.cov_heard.wrapping_add(1);
    }

    /// When the COV watchdog checks the subscriptions next: a quiet time
    /// after they last showed life, while some are active and no check is
    /// on the wire.
    fn cov_check_at(&self) -> Option<Instant> {
        (!self.cov_checking && self.cov_active.contains(&true)).then(|| self.cov_heard_at + self.settings.cov_quiet)
    }

    /// Reads one subscribed point's Present_Value, round-robin.
    fn start_cov_check(&mut self, myself: &ActorRef<DeviceMessage>) {
        let n = self.cov_active.len();
        let Some(i) = (0..n).map(|k| (self.cov_check_next + k) % n).find(|&i| self.cov_active[i]) else { return };
        self.cov_check_next = i + 1;
        self.cov_checking = true;
        // A check that gets no answer is tried again after another quiet time.
        self.cov_heard_at = Instant::now();
        self.snap.counters.cov_checks += 1;
        self.publish();
        let (t, to, me, object, heard) =
            (self.transport.clone(), self.address(), myself.clone(), self.snap.points[i].object, self.cov_heard);
        debug!(device = self.instance(), %object, "COV quiet: checking a subscribed value");
        tokio::spawn(async move {
            let result = t.read_property(to, object, PropertyRef::new(property::PRESENT_VALUE)).await;
            let _ = me.send_message(DeviceMessage::CovChecked { object, heard, result });
        });
    }

    /// The watchdog's answer: a value that moved past its COV increment
    /// without a notification means the device no longer knows the
    /// subscriptions. They are marked silent, the points polled, and the
    /// device subscribed again.
    fn on_cov_checked(
        &mut self,
        myself: &ActorRef<DeviceMessage>,
        object: ObjectId,
        heard: u64,
        result: Result<Value, BacnetError>,
    ) {
        self.cov_checking = false;
        let now = now_ms();
        let v = match result {
            Ok(v) => v,
            Err(e) => {
                // A request like a poll's: timeouts count towards offline
                // (the only way to notice a device whose points are all on COV).
                debug!(device = self.instance(), %object, error = %e, "COV check failed");
                self.snap.count_error(error_label(&e));
                self.poll_failed(&[object], &e, now);
                self.publish();
                return;
            }
        };
        schedule::answered(&mut self.snap, now);
        // A notification that came meanwhile is newer than this answer, and
        // proves the subscriptions live.
        let i = self.snap.points.binary_search_by_key(&object, |p| p.object).ok();
        if let Some(i) = i.filter(|&i| heard == self.cov_heard && self.cov_active[i]) {
            let missed = schedule::cov_missed(&self.snap.points[i], &v);
            schedule::set_value(&mut self.snap.points[i], v, now);
            self.record(std::iter::once(object), now);
            if missed {
                warn!(device = self.instance(), %object, "COV subscriptions silent: a value moved without a notification; subscribing again");
                self.snap.counters.cov_silent += 1;
                self.snap.cov_silent = true;
                for (active, p) in self.cov_active.iter_mut().zip(&mut self.snap.points) {
                    if *active {
                        *active = false;
                        p.cov_until = 0;
                    }
                }
                self.snap.cov_subscriptions = 0;
                // Polled from now on (take_due kept their due times moving),
                // until the new subscriptions are confirmed.
                self.subscribe_all(myself);
            }
        }
        self.publish();
    }

    fn on_cov(&mut self, n: CovNotification) {
        let now = now_ms();
        self.cov_heard();
        let Some(p) = self.snap.point_mut(n.object) else { return };
        for (prop, v) in n.values {
            match (prop.property, v) {
                (property::PRESENT_VALUE, v) => schedule::set_value(p, v, now),
                (property::STATUS_FLAGS, Value::BitString(b)) => p.status_flags = Some(StatusFlags::from_bits(&b)),
                _ => {}
            }
        }
        schedule::answered(&mut self.snap, now);
        self.snap.last_success_at = Some(now);
        self.record(std::iter::once(n.object), now);
        self.publish();
    }

    fn on_read(
        &mut self,
        myself: &ActorRef<DeviceMessage>,
        object: ObjectId,
        property: u32,
        live: bool,
        reply: RpcReplyPort<Result<Value, DeviceError>>,
    ) {
        let instance = self.instance();
        if !live {
            let v = match self.snap.point(object) {
                Some(p) if property == property::PRESENT_VALUE => {
                    p.value.clone().ok_or(DeviceError::Offline { instance })
                }
                Some(_) => Err(DeviceError::UnknownPoint { instance, object }),
                None => Err(DeviceError::UnknownPoint { instance, object }),
            };
            let _ = reply.send(v);
            return;
        }
        let (t, to, me) = (self.transport.clone(), self.address(), myself.clone());
        debug!(device = instance, %object, property, "live read");
        // The request's span follows the read, so its log lines carry the request id.
        tokio::spawn(
            async move {
                let r = t.read_property(to, object, PropertyRef::new(property)).await;
                match (&r, property) {
                    (Ok(v), property::PRESENT_VALUE) => {
                        let _ = me.send_message(DeviceMessage::WriteDone { object, value: Some(v.clone()) });
                    }
                    (Ok(_), _) => {}
                    (Err(e), _) => {
                        let _ = me.send_message(DeviceMessage::Failed(error_label(e)));
                    }
                }
                let _ = reply.send(r.map_err(DeviceError::from));
            }
            .in_current_span(),
        );
    }

    fn on_write(
        &mut self,
        myself: &ActorRef<DeviceMessage>,
        write: Write,
        reply: RpcReplyPort<Result<WriteOutcome, DeviceError>>,
    ) {
        if self.writes.len() >= WRITE_QUEUE {
            let _ = reply.send(Err(DeviceError::Busy { instance: self.instance() }));
            return;
        }
        if let (Some(poison), Some(v)) = (self.settings.poison_value, write.value.as_f64()) {
            // A testing aid, off unless configured: a panic in a handler,
            // for the supervisor to catch.
            if v == poison {
                panic!("poison value {v} written to device {} {}", self.instance(), write.object);
            }
        }
        info!(device = self.instance(), object = %write.object, priority = ?write.priority, queued = self.writes.len(), "write queued");
        self.writes.push_back((write, reply, tracing::Span::current()));
        if !self.writing {
            self.next_write(myself);
        }
    }

    fn next_write(&mut self, myself: &ActorRef<DeviceMessage>) {
        let Some((write, reply, span)) = self.writes.pop_front() else { return };
        self.writing = true;
        let commandable = self.snap.point(write.object).is_some_and(|p| p.commandable);
        let (t, to, me, instance) = (self.transport.clone(), self.address(), myself.clone(), self.instance());
        // The write runs in its request's span: its log lines carry the request id.
        tokio::spawn(
            async move {
                let object = write.object;
                let r = write_and_read_back(&t, to, write, commandable).await;
                match &r {
                    Ok(o) => info!(device = instance, %object, active_priority = ?o.active_priority, "write done"),
                    Err(e) => info!(device = instance, %object, error = %e, "write failed"),
                }
                if let Err(e) = &r {
                    let _ = me.send_message(DeviceMessage::Failed(error_label(e)));
                }
                let value = r.as_ref().ok().and_then(|o| o.present_value.clone());
                let _ = reply.send(r.map_err(DeviceError::from));
                // WriteDone also frees the queue when the write failed.
                let _ = me.send_message(DeviceMessage::WriteDone { object, value });
            }
            .instrument(span),
        );
    }

    /// Queues history rows for the given points' current values.
    fn record(&mut self, objects: impl Iterator<Item = ObjectId>, now: u64) {
        for object in objects {
            let Ok(i) = self.snap.points.binary_search_by_key(&object, |p| p.object) else { continue };
            let p = &self.snap.points[i];
            let Some(value) = p.value.as_ref().and_then(schedule::history_number) else { continue };
            if !schedule::history_due(p, value, self.last_recorded[i], self.settings.history_max_interval, now) {
                continue;
            }
            self.last_recorded[i] = Some((value, now));
            let row = HistoryRecord {
                network: self.snap.network.clone(),
                instance: self.snap.instance,
                object,
                at: now,
                value,
                quality: p.quality,
            };
            // A full history queue drops the row rather than stall the device.
            let _ = self.history.try_send(row);
        }
    }
}

/// The label a failed request is counted under in [`DeviceSnapshot::errors`].
pub fn error_label(e: &BacnetError) -> &'static str {
    match e {
        BacnetError::Error(e) => error_class_label(e.class),
        BacnetError::Timeout { .. } => "timeout",
        BacnetError::Reject { .. } => "reject",
        BacnetError::Abort { .. } => "abort",
        BacnetError::Decode(_) => "malformed",
        BacnetError::Encode(_) | BacnetError::Io(_) | BacnetError::Closed => "local",
    }
}

/// A BACnet error class as a label; reserved and proprietary classes are `other`.
fn error_class_label(class: u32) -> &'static str {
    crate::bacnet::types::ERROR_CLASSES.get(class as usize).copied().unwrap_or("other")
}

fn refuses_rpm(e: &BacnetError) -> bool {
    match e {
        BacnetError::Reject { .. } => true,
        BacnetError::Abort { by_server: true, reason } => {
            !matches!(*reason, error::ABORT_SEGMENTATION_NOT_SUPPORTED | error::ABORT_BUFFER_OVERFLOW)
        }
        BacnetError::Error(ErrorClassCode { class, .. }) => *class == error::CLASS_SERVICES,
        _ => false,
    }
}

/// Reads the due points: ReadPropertyMultiple per batch, or ReadProperty per
/// point. Stops at the first timeout: the device is then likely gone.
async fn poll(t: &Transport, to: Address, batches: Vec<Vec<ObjectId>>, rpm: bool) -> Vec<Outcome> {
    let mut out = Vec::with_capacity(batches.len());
    for batch in batches {
        if rpm {
            let specs = batch
                .iter()
                .map(|&object| ReadAccessSpec {
                    object,
                    properties: vec![
                        PropertyRef::new(property::PRESENT_VALUE),
                        PropertyRef::new(property::STATUS_FLAGS),
                    ],
                })
                .collect();
            let result = t.read_property_multiple(to, specs).await;
            let stop = matches!(result, Err(BacnetError::Timeout { .. }));
            out.push(Outcome::Rpm { objects: batch, result });
            if stop {
                break;
            }
        } else {
            for object in batch {
                let result = t.read_property(to, object, PropertyRef::new(property::PRESENT_VALUE)).await;
                let stop = matches!(result, Err(BacnetError::Timeout { .. }));
                out.push(Outcome::Rp { object, result });
                if stop {
                    return out;
                }
            }
        }
    }
    out
}

const DEVICE_PROPERTIES: [u32; 9] = [
    property::OBJECT_NAME,
    property::VENDOR_NAME,
    property::VENDOR_IDENTIFIER,
    property::MODEL_NAME,
    property::FIRMWARE_REVISION,
    property::DATABASE_REVISION,
    property::MAX_APDU_LENGTH_ACCEPTED,
    property::SEGMENTATION_SUPPORTED,
    property::PROTOCOL_SERVICES_SUPPORTED,
];

/// Reads some properties of one object: with one ReadPropertyMultiple, or
/// one ReadProperty each. Missing properties are simply absent.
async fn read_some(
    t: &Transport,
    to: Address,
    object: ObjectId,
    props: &[u32],
    rpm: bool,
) -> Result<Vec<(u32, Value)>, BacnetError> {
    if rpm {
        let spec = ReadAccessSpec { object, properties: props.iter().map(|&p| PropertyRef::new(p)).collect() };
        let results = t.read_property_multiple(to, vec![spec]).await?;
        return Ok(results.into_iter().filter_map(|r| Some((r.property.property, r.value.ok()?))).collect());
    }
    let mut out = Vec::new();
    for &p in props {
        match t.read_property(to, object, PropertyRef::new(p)).await {
            Ok(v) => out.push((p, v)),
            Err(BacnetError::Error(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

fn text(values: &[(u32, Value)], p: u32) -> String {
    match values.iter().find(|(q, _)| *q == p) {
        Some((_, Value::CharacterString(s))) => s.clone(),
        _ => String::new(),
    }
}

fn unsigned(values: &[(u32, Value)], p: u32) -> Option<u64> {
    values.iter().find(|(q, _)| *q == p).and_then(|(_, v)| v.as_unsigned())
}

/// Enrolment: the Device object, the Object_List, then each point's name,
/// description, units, COV increment, state texts and whether it is
/// commandable.
pub async fn enroll(t: &Transport, s: &DeviceSettings) -> Result<Enrollment, BacnetError> {
    let to = s.address;
    let dev = ObjectId::device(s.instance);
    let (values, mut use_rpm, mut reason) = match read_some(t, to, dev, &DEVICE_PROPERTIES, true).await {
        Ok(v) => (v, true, None),
        Err(e) if refuses_rpm(&e) => {
            let v = read_some(t, to, dev, &DEVICE_PROPERTIES, false).await?;
            (v, false, Some(format!("device answered ReadPropertyMultiple with: {e}")))
        }
        Err(e) => return Err(e),
    };
    let services = values
        .iter()
        .find(|(p, _)| *p == property::PROTOCOL_SERVICES_SUPPORTED)
        .map(|(_, v)| schedule::services(v))
        .unwrap_or_default();
    let listed = !services.is_empty();
    let rpm_listed = services.get(services_supported::READ_PROPERTY_MULTIPLE);
    if use_rpm && listed && !rpm_listed {
        use_rpm = false;
        reason = Some("ReadPropertyMultiple is not listed in Protocol_Services_Supported".into());
    }
    let identity = DeviceIdentity {
        name: text(&values, property::OBJECT_NAME),
        vendor_name: text(&values, property::VENDOR_NAME),
        vendor_id: unsigned(&values, property::VENDOR_IDENTIFIER).unwrap_or(0) as u32,
        model_name: text(&values, property::MODEL_NAME),
        firmware_revision: text(&values, property::FIRMWARE_REVISION),
        database_revision: unsigned(&values, property::DATABASE_REVISION),
        max_apdu: unsigned(&values, property::MAX_APDU_LENGTH_ACCEPTED).unwrap_or(480).clamp(50, 1476) as u32,
        segmentation: unsigned(&values, property::SEGMENTATION_SUPPORTED)
            .map(|v| Segmentation::from_enumerated(v as u32)),
        rpm_listed: !listed || rpm_listed,
        cov_listed: services.get(services_supported::SUBSCRIBE_COV),
    };

    // Which objects: the configured points, else every object with a Present_Value.
    let wanted: Vec<(ObjectId, Option<&PointSettings>)> = match &s.points {
        Some(points) => points.iter().map(|p| (p.object, Some(p))).collect(),
        None => t
            .read_object_list(to, dev)
            .await?
            .into_iter()
            .filter(|o| has_present_value(o.object_type))
            .map(|o| (o, None))
            .collect(),
    };
    let mut points = Vec::with_capacity(wanted.len());
    for (object, ps) in wanted {
        let poll = ps.and_then(|p| p.poll).unwrap_or(s.poll);
        let cov = ps.and_then(|p| p.cov).unwrap_or(s.cov);
        let mut point = Point::new(object, poll, cov);
        let props = metadata_properties(object.object_type);
        match read_some(t, to, object, &props, use_rpm).await {
            Ok(values) => {
                point.name = text(&values, property::OBJECT_NAME);
                point.description = text(&values, property::DESCRIPTION);
                point.units = unsigned(&values, property::UNITS).map(|u| u as u32);
                point.commandable = values.iter().any(|(p, _)| *p == property::RELINQUISH_DEFAULT);
                point.cov_increment = values
                    .iter()
                    .find(|(p, _)| *p == property::COV_INCREMENT)
                    .and_then(|(_, v)| v.as_f64())
                    .map(|v| v as f32);
                point.state_text = values
                    .iter()
                    .find(|(p, _)| *p == property::STATE_TEXT)
                    .map(|(_, v)| {
                        v.elements()
                            .iter()
                            .filter_map(|e| if let Value::CharacterString(s) = e { Some(s.clone()) } else { None })
                            .collect()
                    })
                    .unwrap_or_default();
            }
            // An object the device does not have stays listed, with an error on its first poll.
            Err(BacnetError::Error(_)) => {}
            Err(e) if use_rpm && refuses_rpm(&e) => {
                use_rpm = false;
                reason = Some(format!("device answered ReadPropertyMultiple with: {e}"));
            }
            Err(e) => return Err(e),
        }
        points.push(point);
    }
    points.sort_by_key(|p| p.object);
    points.dedup_by_key(|p| p.object);
    Ok(Enrollment { identity, points, use_rpm, rpm_fallback_reason: reason })
}

/// Object types that have a Present_Value, and so are points. Others (the
/// Device, Network Port, Notification Class, Trend Log, File... objects, and
/// proprietary types) are left out unless configured as points.
pub fn has_present_value(t: u16) -> bool {
    matches!(t, 0..=6 | 12..=14 | 17 | 19 | 21..=24 | 30 | 37 | 39..=50 | 54 | 55)
}

fn metadata_properties(t: u16) -> Vec<u32> {
    let mut props = vec![property::OBJECT_NAME, property::DESCRIPTION];
    match t {
        object_type::ANALOG_INPUT => props.extend([property::UNITS, property::COV_INCREMENT]),
        object_type::ANALOG_OUTPUT | object_type::ANALOG_VALUE => {
            props.extend([property::UNITS, property::COV_INCREMENT, property::RELINQUISH_DEFAULT])
        }
        object_type::BINARY_OUTPUT | object_type::BINARY_VALUE => props.push(property::RELINQUISH_DEFAULT),
        object_type::MULTI_STATE_INPUT => props.push(property::STATE_TEXT),
        object_type::MULTI_STATE_OUTPUT | object_type::MULTI_STATE_VALUE => {
            props.extend([property::STATE_TEXT, property::RELINQUISH_DEFAULT])
        }
        _ => {}
    }
    props
}

/// WriteProperty, then what is in control now: Present_Value and, for a
/// commandable object, the first non-NULL slot of Priority_Array.
async fn write_and_read_back(
    t: &Transport,
    to: Address,
    w: Write,
    commandable: bool,
) -> Result<WriteOutcome, BacnetError> {
    let req = WritePropertyRequest {
        object: w.object,
        property: PropertyRef::new(w.property),
        value: w.value,
        priority: w.priority,
    };
    t.write_property(to, &req).await?;
    let present_value = t.read_property(to, w.object, PropertyRef::new(property::PRESENT_VALUE)).await.ok();
    let active_priority = if commandable {
        t.read_property(to, w.object, PropertyRef::new(property::PRIORITY_ARRAY))
            .await
            .ok()
            .and_then(|slots| slots.elements().iter().position(|v| *v != Value::Null).map(|i| i as u8 + 1))
    } else {
        None
    };
    Ok(WriteOutcome { present_value, active_priority })
}
