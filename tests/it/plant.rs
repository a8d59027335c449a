//! The supervision tree against the simulator on loopback: enrolment,
//! polling, fallbacks, offline and back, and every supervision failure mode.
//!
//! Actor names are global in a process, so every test uses its own device
//! instances and network name.

use std::sync::Arc;
use std::time::Duration;

use plantwatch_actors::bacnet::codec::Value;
use plantwatch_actors::bacnet::types::property;
use plantwatch_actors::bacnet::{Address, ObjectId};
use plantwatch_actors::plant::device::{DeviceMessage, DeviceSettings, InjectedFault, PointSettings};
use plantwatch_actors::plant::model::{DeviceStatus, Quality};
use plantwatch_actors::plant::network::{DeviceDefaults, NetworkSettings};
use plantwatch_actors::plant::restart::RestartPolicy;
use plantwatch_actors::plant::supervisor::{Plant, PlantArgs};
use plantwatch_actors::plant::{device_name, Directory, HistoryRecord, SupervisionStats};
use plantwatch_actors::sim::{self, Faults, Layout, SimConfig, Simulator};
use plantwatch_actors::transport::TransportConfig;
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(10);

fn obj(s: &str) -> ObjectId {
    s.parse().expect("object reference")
}

pub struct Setup {
    pub poll: Duration,
    pub timeout: Duration,
    pub retries: u32,
    pub offline_after: u32,
    pub restart: RestartPolicy,
    pub heartbeat_timeout: Duration,
    pub points: Option<Vec<PointSettings>>,
    pub cov: bool,
    pub cov_lifetime: Duration,
    pub cov_quiet: Duration,
    pub discover: bool,
    pub broadcast: Option<std::net::SocketAddr>,
    pub poison_value: Option<f64>,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            poll: Duration::from_millis(200),
            timeout: Duration::from_millis(300),
            retries: 1,
            offline_after: 3,
            restart: RestartPolicy {
                intensity: 5,
                window: Duration::from_secs(60),
                backoff_initial: Duration::from_millis(20),
                backoff_max: Duration::from_millis(200),
            },
            heartbeat_timeout: Duration::from_secs(30),
            points: None,
            cov: false,
            cov_lifetime: Duration::from_secs(300),
            cov_quiet: Duration::from_secs(300),
            discover: false,
            broadcast: None,
            poison_value: None,
        }
    }
}

async fn simulator(first_instance: u32, devices: usize, objects: usize, layout: Layout, faults: Faults) -> Simulator {
    sim::start(SimConfig {
        devices,
        objects,
        bind: "127.0.0.1:0".parse().expect("addr"),
        layout,
        first_instance,
        faults,
        ..SimConfig::default()
    })
    .await
    .expect("simulator")
}

async fn plant(name: &str, sim: &Simulator, setup: Setup) -> (Plant, mpsc::Receiver<HistoryRecord>) {
    let devices = sim.devices().iter().map(|d| (d.instance, Address { ip: d.address, route: d.route })).collect();
    plant_for(name, devices, setup).await
}

/// A plant of one network watching the given devices.
pub async fn plant_for(
    name: &str,
    devices: Vec<(u32, Address)>,
    setup: Setup,
) -> (Plant, mpsc::Receiver<HistoryRecord>) {
    let devices = devices
        .into_iter()
        .map(|(instance, address)| {
            Arc::new(DeviceSettings {
                instance,
                network: name.to_string(),
                address,
                label: None,
                poll: setup.poll,
                points: setup.points.clone(),
                cov: setup.cov,
                cov_lifetime: setup.cov_lifetime,
                cov_quiet: setup.cov_quiet,
                offline_after: setup.offline_after,
                reprobe_max: Duration::from_millis(500),
                history_max_interval: Duration::from_secs(900),
                poison_value: setup.poison_value,
            })
        })
        .collect();
    let network = NetworkSettings {
        name: name.to_string(),
        transport: TransportConfig {
            bind: "127.0.0.1:0".parse().expect("addr"),
            apdu_timeout: setup.timeout,
            apdu_retries: setup.retries,
            broadcast: setup.broadcast,
            ..TransportConfig::default()
        },
        discover: setup.discover,
        devices,
        defaults: DeviceDefaults {
            poll: setup.poll,
            cov: false,
            cov_lifetime: Duration::from_secs(300),
            cov_quiet: Duration::from_secs(300),
            offline_after: setup.offline_after,
            reprobe_max: Duration::from_secs(1),
            history_max_interval: Duration::from_secs(900),
            poison_value: setup.poison_value,
        },
        restart: setup.restart,
        heartbeat_timeout: setup.heartbeat_timeout,
    };
    let (history, rx) = mpsc::channel(10_000);
    let plant = Plant::start(PlantArgs {
        networks: vec![Arc::new(network)],
        directory: Directory::default(),
        history,
        stats: Arc::new(SupervisionStats::default()),
        restart: setup.restart,
    })
    .await
    .expect("plant starts");
    (plant, rx)
}

/// Every device of the simulator is online with every point good.
fn all_good(d: &Directory, sim: &Simulator) -> bool {
    sim.devices().iter().all(|dev| {
        d.get(dev.instance).is_some_and(|s| {
            s.status == DeviceStatus::Online
                && !s.points.is_empty()
                && s.points.iter().all(|p| p.quality == Quality::Good)
        })
    })
}

fn actor_id(instance: u32) -> Option<plantwatch_actors::ractor::ActorId> {
    plantwatch_actors::ractor::registry::where_is(device_name(instance)).map(|c| c.get_id())
}

#[tokio::test]
async fn devices_are_enrolled_and_polled_with_the_values_the_device_has() {
    let sim = simulator(2001, 3, 2, Layout::Port, Faults::default()).await;
    let (plant, mut history) = plant("enrol", &sim, Setup::default()).await;
    let dir = plant.handle.directory.clone();
    assert!(dir.wait_for(WAIT, |d| all_good(d, &sim)).await, "{:#?}", dir.list());
    let s = dir.get(2002).expect("device");
    let id = s.identity.as_ref().expect("identity");
    assert_eq!(s.points.len(), 14);
    assert!(id.max_apdu >= 480 && !id.name.is_empty() && !id.vendor_name.is_empty(), "{id:?}");
    assert!(s.use_rpm);
    let ai = s.point(obj("analog-input:1")).expect("ai");
    assert_eq!(ai.units, Some(62));
    assert!(!ai.name.is_empty());
    assert!(s.point(obj("analog-output:1")).expect("ao").commandable);
    assert!(!ai.commandable);
    assert_eq!(s.point(obj("multi-state-value:1")).expect("msv").state_text.len(), 3);
    // polled values are the device's (a value object does not drift)
    sim.set_present_value(2002, obj("analog-value:2"), Value::Real(33.0)).await.expect("set");
    assert!(
        dir.wait_for(WAIT, |d| d.get(2002).and_then(|s| s.point(obj("analog-value:2")).and_then(|p| p.value.clone()))
            == Some(Value::Real(33.0)))
            .await
    );
    assert!(history.try_recv().is_ok(), "values go to history");
    // a live read and a write go through the actor
    let live = plant.handle.read(2002, obj("analog-value:2"), property::PRESENT_VALUE, true, WAIT).await;
    assert_eq!(live, Ok(Value::Real(33.0)));
    let w = plantwatch_actors::plant::device::Write {
        object: obj("analog-output:1"),
        property: property::PRESENT_VALUE,
        value: Value::Real(55.0),
        priority: Some(8),
    };
    let outcome = plant.handle.write(2002, w, WAIT).await.expect("write");
    assert_eq!((outcome.present_value, outcome.active_priority), (Some(Value::Real(55.0)), Some(8)));
    plant.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn a_device_that_rejects_rpm_is_polled_with_read_property() {
    let sim = simulator(2101, 1, 1, Layout::Port, Faults { no_rpm: true, ..Faults::default() }).await;
    let (plant, _h) = plant("norpm", &sim, Setup::default()).await;
    let dir = plant.handle.directory.clone();
    assert!(dir.wait_for(WAIT, |d| all_good(d, &sim)).await, "{:#?}", dir.list());
    let s = dir.get(2101).expect("device");
    assert!(!s.use_rpm);
    assert!(s.rpm_fallback_reason.as_deref().is_some_and(|r| r.contains("ReadPropertyMultiple")), "{s:?}");
    plant.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn a_device_without_segmentation_and_a_large_object_list_is_enrolled_completely() {
    let faults = Faults { no_segmentation: true, max_apdu: 480, ..Faults::default() };
    let sim = simulator(2201, 1, 50, Layout::Port, faults).await;
    let (plant, _h) = plant("noseg", &sim, Setup { poll: Duration::from_secs(1), ..Setup::default() }).await;
    let dir = plant.handle.directory.clone();
    assert!(dir.wait_for(WAIT, |d| all_good(d, &sim)).await, "{:#?}", dir.get(2201));
    assert_eq!(dir.get(2201).expect("device").points.len(), 350);
    plant.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn a_routed_device_is_polled_through_its_router() {
    let sim = simulator(2301, 3, 1, Layout::Router, Faults::default()).await;
    let (plant, _h) = plant("routed", &sim, Setup::default()).await;
    let dir = plant.handle.directory.clone();
    assert!(dir.wait_for(WAIT, |d| all_good(d, &sim)).await, "{:#?}", dir.list());
    assert_eq!(dir.get(2302).expect("device").route.map(|r| r.network), Some(100));
    plant.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn lossy_devices_still_converge_to_the_right_values() {
    let sim = simulator(2401, 2, 1, Layout::Port, Faults { drop_rate: 0.3, ..Faults::default() }).await;
    let setup = Setup { timeout: Duration::from_millis(60), retries: 4, ..Setup::default() };
    let (plant, _h) = plant("lossy", &sim, setup).await;
    let dir = plant.handle.directory.clone();
    assert!(dir.wait_for(WAIT, |d| all_good(d, &sim)).await, "{:#?}", dir.list());
    for (instance, object) in [(2401, "analog-value:1"), (2402, "binary-output:1"), (2402, "characterstring-value:1")] {
        let expected = sim.present_value(instance, obj(object)).await.expect("sim value");
        let cached = dir.get(instance).and_then(|s| s.point(obj(object)).and_then(|p| p.value.clone()));
        assert_eq!(cached, Some(expected), "{instance} {object}");
    }
    plant.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn a_silent_device_goes_offline_and_comes_back_online() {
    // the device stops answering after 1.5 s and answers again 1.5 s later
    let faults = Faults {
        offline_after: Some(Duration::from_millis(1500)),
        online_after: Some(Duration::from_millis(1500)),
        ..Faults::default()
    };
    let sim = sim::start(SimConfig {
        devices: 2,
        objects: 1,
        bind: "127.0.0.1:0".parse().expect("addr"),
        layout: Layout::Port,
        first_instance: 2501,
        faults,
        fault_devices: Some(vec![2501]),
        ..SimConfig::default()
    })
    .await
    .expect("simulator");
    let setup = Setup { timeout: Duration::from_millis(100), retries: 0, offline_after: 2, ..Setup::default() };
    let (plant, _h) = plant("offline", &sim, setup).await;
    let dir = plant.handle.directory.clone();
    let status = |d: &Directory, i: u32| d.get(i).map(|s| s.status);
    assert!(dir.wait_for(WAIT, |d| status(d, 2501) == Some(DeviceStatus::Offline)).await, "{:#?}", dir.get(2501));
    let s = dir.get(2501).expect("device");
    assert!(s.points.iter().all(|p| p.quality == Quality::CommFailure));
    assert!(s.consecutive_timeouts >= 2);
    assert!(dir.wait_for(WAIT, |d| status(d, 2501) == Some(DeviceStatus::Online)).await, "{:#?}", dir.get(2501));
    assert!(dir.wait_for(WAIT, |d| all_good(d, &sim)).await);
    plant.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn failed_actors_restart_under_their_name_from_their_snapshot_and_neighbours_go_on() {
    let sim = simulator(2601, 3, 1, Layout::Port, Faults::default()).await;
    let setup = Setup { heartbeat_timeout: Duration::from_millis(400), ..Setup::default() };
    let (plant, _h) = plant("crash", &sim, setup).await;
    let dir = plant.handle.directory.clone();
    assert!(dir.wait_for(WAIT, |d| all_good(d, &sim)).await);
    let neighbour = actor_id(2603).expect("neighbour");
    let neighbour_polls = dir.get(2603).expect("neighbour").counters.polls_ok;

    for (i, fault) in [InjectedFault::Panic, InjectedFault::Error, InjectedFault::Freeze].into_iter().enumerate() {
        let before = actor_id(2601).expect("actor");
        let values = dir.get(2601).expect("device").points.clone();
        plant.handle.tell(2601, DeviceMessage::InjectFault(fault)).expect("sent");
        let restarted = dir
            .wait_for(WAIT, |d| {
                actor_id(2601).is_some_and(|id| id != before)
                    && d.get(2601).is_some_and(|s| s.counters.restarts == i as u64 + 1)
            })
            .await;
        assert!(restarted, "{fault:?}: not restarted");
        // the new actor starts from the snapshot: its values are there at once
        let after = dir.get(2601).expect("device");
        assert_eq!(after.points.len(), values.len());
        assert!(after.points.iter().all(|p| p.value.is_some()), "{fault:?}: values lost");
    }
    let stats = plant.handle.stats.snapshot();
    assert_eq!((stats.device_panics, stats.device_errors, stats.device_frozen), (1, 1, 1), "{stats:?}");
    assert_eq!(stats.device_restarts, 3);
    // the neighbours never noticed
    assert_eq!(actor_id(2603), Some(neighbour));
    assert!(dir.wait_for(WAIT, |d| d.get(2603).is_some_and(|s| s.counters.polls_ok > neighbour_polls + 2)).await);
    plant.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn supervision_gives_up_past_the_restart_intensity() {
    let sim = simulator(2701, 2, 1, Layout::Port, Faults::default()).await;
    let restart = RestartPolicy {
        intensity: 2,
        window: Duration::from_secs(60),
        backoff_initial: Duration::from_millis(10),
        backoff_max: Duration::from_millis(50),
    };
    let (plant, _h) = plant("giveup", &sim, Setup { restart, ..Setup::default() }).await;
    let dir = plant.handle.directory.clone();
    assert!(dir.wait_for(WAIT, |d| all_good(d, &sim)).await);
    for round in 0..3 {
        let before = actor_id(2701).expect("running");
        plant.handle.tell(2701, DeviceMessage::InjectFault(InjectedFault::Panic)).expect("sent");
        if round < 2 {
            assert!(dir.wait_for(WAIT, |_| actor_id(2701).is_some_and(|id| id != before)).await, "restart {round}");
        }
    }
    assert!(dir.wait_for(WAIT, |d| d.get(2701).map(|s| s.status) == Some(DeviceStatus::Failed)).await);
    assert_eq!(actor_id(2701), None, "a failed device has no actor");
    assert_eq!(plant.handle.stats.snapshot().device_give_ups, 1);
    // still visible, with its last values; the neighbour is fine
    assert!(dir.get(2701).expect("visible").points.iter().all(|p| p.value.is_some()));
    assert_eq!(dir.get(2702).map(|s| s.status), Some(DeviceStatus::Online));
    plant.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn discovery_enrols_the_devices_that_answer_who_is() {
    let sim = sim::start(SimConfig {
        devices: 3,
        objects: 1,
        bind: "127.0.3.2:0".parse().expect("addr"),
        layout: Layout::Ip,
        first_instance: 2801,
        ..SimConfig::default()
    })
    .await
    .expect("simulator");
    let setup = Setup { discover: true, broadcast: sim.broadcast_address(), ..Setup::default() };
    let (plant, _h) = plant_for("disc", Vec::new(), setup).await;
    let dir = plant.handle.directory.clone();
    assert!(dir.wait_for(WAIT, |d| all_good(d, &sim)).await, "{:#?}", dir.list());
    assert_eq!(dir.list().len(), 3);
    // and on demand
    let found = plant.discover("disc", Some((2802, 2803)), Duration::from_millis(500)).await.expect("discover");
    assert_eq!(found.iter().map(|f| f.instance).collect::<Vec<_>>(), vec![2802, 2803]);
    plant.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn cov_updates_values_between_polls_and_a_refusal_falls_back_to_polling() {
    let sim = simulator(2901, 1, 1, Layout::Port, Faults::default()).await;
    let av = obj("analog-value:1");
    let points = vec![
        PointSettings { object: av, poll: None, cov: None },
        // The simulator refuses COV on its Device object.
        PointSettings { object: obj("device:2901"), poll: None, cov: None },
    ];
    let setup = Setup { cov: true, poll: Duration::from_secs(60), points: Some(points), ..Setup::default() };
    let (plant, _h) = plant("cov", &sim, setup).await;
    let dir = plant.handle.directory.clone();
    let subscribed = dir
        .wait_for(WAIT, |d| {
            d.get(2901).is_some_and(|s| {
                s.cov_subscriptions == 1 && s.point(obj("device:2901")).is_some_and(|p| p.cov_refused.is_some())
            })
        })
        .await;
    assert!(subscribed, "{:#?}", dir.get(2901));
    // the poll interval is a minute: a new value within seconds came by COV
    sim.set_present_value(2901, av, Value::Real(66.5)).await.expect("set");
    let via_cov = dir
        .wait_for(Duration::from_secs(5), |d| {
            d.get(2901).and_then(|s| s.point(av).and_then(|p| p.value.clone())) == Some(Value::Real(66.5))
        })
        .await;
    assert!(via_cov, "{:#?}", dir.get(2901));
    let refused = dir.get(2901).and_then(|s| s.point(obj("device:2901")).and_then(|p| p.cov_refused.clone()));
    assert!(refused.is_some_and(|r| r.contains("optional-functionality-not-supported")));
    plant.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn a_steady_value_under_cov_stays_good_past_three_poll_intervals() {
    let sim = simulator(2951, 1, 1, Layout::Port, Faults::default()).await;
    let av = obj("analog-value:1");
    let points = vec![PointSettings { object: av, poll: None, cov: None }];
    // Polls every 200 ms would refresh it; under COV it is not polled, and
    // the simulator's value never moves: no notification after the first.
    let setup = Setup { cov: true, points: Some(points), ..Setup::default() };
    let (plant, _h) = plant("covsteady", &sim, setup).await;
    let dir = plant.handle.directory.clone();
    let subscribed = dir
        .wait_for(WAIT, |d| {
            d.get(2951).is_some_and(|s| s.cov_subscriptions == 1 && s.point(av).is_some_and(|p| p.value.is_some()))
        })
        .await;
    assert!(subscribed, "{:#?}", dir.get(2951));
    // The behaviour under test is time passing with nothing on the wire.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let s = dir.get(2951).expect("device");
    let p = s.point(av).expect("point");
    let now = plantwatch_actors::plant::model::now_ms();
    assert!(now - p.updated_at > 3 * p.poll_ms, "the value was refreshed meanwhile: {p:#?}");
    assert_eq!(p.quality_at(now), Quality::Good, "{p:#?}");
    plant.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn a_cov_renewal_keeps_the_subscription_live_and_polls_nothing() {
    // Answers take 400 ms, so a renewal is on the wire for longer than the
    // 200 ms poll interval.
    let slow = Faults { slow: Duration::from_millis(400), ..Faults::default() };
    let sim = simulator(2961, 1, 1, Layout::Port, slow).await;
    let av = obj("analog-value:1");
    let points = vec![PointSettings { object: av, poll: None, cov: None }];
    // Renewed every 2 s (two thirds of the lifetime); polled every 200 ms if
    // the subscription ever lapsed.
    let setup = Setup {
        cov: true,
        cov_lifetime: Duration::from_secs(3),
        timeout: Duration::from_secs(2),
        points: Some(points),
        ..Setup::default()
    };
    let (plant, _h) = plant("covrenew", &sim, setup).await;
    let dir = plant.handle.directory.clone();
    let live = |d: &Directory| d.get(2961).is_some_and(|s| s.cov_subscriptions == 1);
    assert!(dir.wait_for(WAIT, live).await, "{:#?}", dir.get(2961));
    let until = |d: &Directory| d.get(2961).and_then(|s| s.point(av).map(|p| p.cov_until)).unwrap_or(0);
    // The first poll round may still be on the wire: count from the first renewal.
    let mut first = None;
    let mut renewals = 0;
    let mut last = until(&dir);
    while renewals < 3 {
        let before = last;
        assert!(dir.wait_for(WAIT, |d| until(d) > before || !live(d)).await, "no renewal: {:#?}", dir.get(2961));
        assert!(live(&dir), "the renewal dropped the subscription: {:#?}", dir.get(2961));
        last = until(&dir);
        renewals += 1;
        first.get_or_insert_with(|| dir.get(2961).expect("device").counters.polls_ok);
    }
    let s = dir.get(2961).expect("device");
    // Before the fix, each renewal cleared the point's subscription first and
    // the point was polled until the device answered the renewal.
    assert_eq!(Some(s.counters.polls_ok), first, "a renewal polled the point: {s:#?}");
    plant.shutdown().await;
    sim.shutdown().await;
}

fn value_of(d: &Directory, instance: u32, object: ObjectId) -> Option<Value> {
    d.get(instance).and_then(|s| s.point(object).and_then(|p| p.value.clone()))
}

#[tokio::test]
async fn the_cov_watchdog_finds_subscriptions_the_device_forgot_and_subscribes_again() {
    let sim = simulator(2971, 1, 2, Layout::Port, Faults::default()).await;
    let (av1, av2) = (obj("analog-value:1"), obj("analog-value:2"));
    let points = vec![
        PointSettings { object: av1, poll: None, cov: None },
        PointSettings { object: av2, poll: None, cov: None },
    ];
    // Polled every 200 ms if not on COV; the lifetime (300 s) brings no
    // renewal within the test: only the watchdog can notice.
    let quiet = Duration::from_secs(1);
    let setup = Setup { cov: true, cov_quiet: quiet, points: Some(points), ..Setup::default() };
    let poll = setup.poll;
    let (plant, _h) = plant("covsilent", &sim, setup).await;
    let dir = plant.handle.directory.clone();
    let live = |d: &Directory| {
        d.get(2971).is_some_and(|s| s.cov_subscriptions == 2 && s.points.iter().all(|p| p.value.is_some()))
    };
    assert!(dir.wait_for(WAIT, live).await, "{:#?}", dir.get(2971));
    // The device restarts unnoticed: it answers reads, and notifies nothing.
    assert_eq!(sim.forget_subscriptions(2971).await.expect("forget"), 2);
    // Both move far past their COV increment (1.0).
    sim.set_present_value(2971, av1, Value::Real(71.5)).await.expect("set");
    sim.set_present_value(2971, av2, Value::Real(-12.0)).await.expect("set");
    let changed = tokio::time::Instant::now();
    let right = |d: &Directory| {
        value_of(d, 2971, av1) == Some(Value::Real(71.5)) && value_of(d, 2971, av2) == Some(Value::Real(-12.0))
    };
    assert!(dir.wait_for(WAIT, right).await, "the cache never came right: {:#?}", dir.get(2971));
    let took = changed.elapsed();
    assert!(took <= quiet + poll, "right again after {took:?}, more than quiet {quiet:?} + poll {poll:?}");
    let s = dir.get(2971).expect("device");
    assert_eq!(s.counters.cov_silent, 1, "{s:#?}");
    // Subscribed again: on COV, not silent any more.
    let again = |d: &Directory| d.get(2971).is_some_and(|s| s.cov_subscriptions == 2 && !s.cov_silent);
    assert!(dir.wait_for(WAIT, again).await, "{:#?}", dir.get(2971));
    // The new subscriptions live: the next checks find nothing amiss.
    let checks = s.counters.cov_checks;
    let checked = |d: &Directory| d.get(2971).is_some_and(|s| s.counters.cov_checks >= checks + 2);
    assert!(dir.wait_for(WAIT, checked).await, "{:#?}", dir.get(2971));
    let s = dir.get(2971).expect("device");
    assert_eq!((s.counters.cov_silent, s.cov_subscriptions), (1, 2), "{s:#?}");
    println!("cov watchdog: cache right {took:?} after the change (quiet {quiet:?}, poll {poll:?})");
    plant.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn a_quiet_but_live_cov_subscription_is_checked_and_left_alone() {
    let sim = simulator(2981, 1, 2, Layout::Port, Faults::default()).await;
    let (av1, av2) = (obj("analog-value:1"), obj("analog-value:2"));
    let points = vec![
        PointSettings { object: av1, poll: None, cov: None },
        PointSettings { object: av2, poll: None, cov: None },
    ];
    let setup = Setup { cov: true, cov_quiet: Duration::from_secs(1), points: Some(points), ..Setup::default() };
    let (plant, _h) = plant("covquiet", &sim, setup).await;
    let dir = plant.handle.directory.clone();
    let live = |d: &Directory| {
        d.get(2981).is_some_and(|s| s.cov_subscriptions == 2 && s.points.iter().all(|p| p.value.is_some()))
    };
    assert!(dir.wait_for(WAIT, live).await, "{:#?}", dir.get(2981));
    // A move below the COV increment (1.0): the live subscription rightly
    // says nothing; the watchdog reads it and must not call that silence.
    let Some(Value::Real(before)) = value_of(&dir, 2981, av1) else { panic!("{:#?}", dir.get(2981)) };
    sim.set_present_value(2981, av1, Value::Real(before + 0.5)).await.expect("set");
    let first = |d: &Directory| d.get(2981).is_some_and(|s| s.counters.cov_checks >= 1);
    assert!(dir.wait_for(WAIT, first).await, "the watchdog never checked: {:#?}", dir.get(2981));
    let polls = dir.get(2981).expect("device").counters.polls_ok;
    // Round-robin: within three checks both points were read.
    let checked = |d: &Directory| d.get(2981).is_some_and(|s| s.counters.cov_checks >= 3);
    assert!(dir.wait_for(WAIT, checked).await, "{:#?}", dir.get(2981));
    let s = dir.get(2981).expect("device");
    assert_eq!(s.counters.cov_silent, 0, "a live subscription was called silent: {s:#?}");
    assert!(!s.cov_silent && s.cov_subscriptions == 2, "{s:#?}");
    assert_eq!(s.counters.polls_ok, polls, "the points were polled: {s:#?}");
    // The value read is cached.
    assert_eq!(value_of(&dir, 2981, av1), Some(Value::Real(before + 0.5)));
    plant.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn a_device_on_cov_only_that_stops_answering_the_watchdog_goes_offline_and_is_subscribed_again() {
    // Silent from 2 s after start for 4 s: its one point is on COV, so no
    // poll would notice.
    let gone = Faults {
        offline_after: Some(Duration::from_secs(2)),
        online_after: Some(Duration::from_secs(4)),
        ..Faults::default()
    };
    let sim = simulator(2991, 1, 1, Layout::Port, gone).await;
    let av = obj("analog-value:1");
    let points = vec![PointSettings { object: av, poll: None, cov: None }];
    let setup = Setup { cov: true, cov_quiet: Duration::from_secs(1), points: Some(points), ..Setup::default() };
    let (plant, _h) = plant("covgone", &sim, setup).await;
    let dir = plant.handle.directory.clone();
    let live = |d: &Directory| d.get(2991).is_some_and(|s| s.cov_subscriptions == 1);
    assert!(dir.wait_for(WAIT, live).await, "{:#?}", dir.get(2991));
    let offline = |d: &Directory| d.get(2991).is_some_and(|s| s.status == DeviceStatus::Offline);
    assert!(dir.wait_for(WAIT, offline).await, "the watchdog's timeouts did not count: {:#?}", dir.get(2991));
    let back =
        |d: &Directory| d.get(2991).is_some_and(|s| s.status == DeviceStatus::Online && s.cov_subscriptions == 1);
    assert!(dir.wait_for(WAIT, back).await, "{:#?}", dir.get(2991));
    plant.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn a_poison_write_panics_only_its_actor_which_restarts_from_its_snapshot() {
    let sim = simulator(3101, 3, 1, Layout::Port, Faults::default()).await;
    let setup = Setup { poison_value: Some(666.25), ..Setup::default() };
    let (plant, _h) = plant("poison", &sim, setup).await;
    let dir = plant.handle.directory.clone();
    assert!(dir.wait_for(WAIT, |d| all_good(d, &sim)).await);
    let av = obj("analog-value:1");
    let write = |value: f64| plantwatch_actors::plant::device::Write {
        object: av,
        property: property::PRESENT_VALUE,
        value: Value::Real(value as f32),
        priority: None,
    };
    let neighbours = [actor_id(3102).expect("neighbour"), actor_id(3103).expect("neighbour")];
    let neighbour_polls = dir.get(3102).expect("neighbour").counters.polls_ok;
    for round in 1..=2u64 {
        let before = actor_id(3101).expect("actor");
        let values = dir.get(3101).expect("device").points.clone();
        let answer = plant.handle.write(3101, write(666.25), WAIT).await;
        assert!(answer.is_err(), "round {round}: the caller gets an error, not a hang: {answer:?}");
        let restarted = dir
            .wait_for(WAIT, |d| {
                actor_id(3101).is_some_and(|id| id != before)
                    && d.get(3101).is_some_and(|s| s.counters.restarts == round)
            })
            .await;
        assert!(restarted, "round {round}: not restarted");
        let after = dir.get(3101).expect("device");
        assert_eq!(after.points.len(), values.len());
        assert!(after.points.iter().all(|p| p.value.is_some()), "values lost");
    }
    let stats = plant.handle.stats.snapshot();
    assert_eq!((stats.device_panics, stats.device_restarts, stats.device_give_ups), (2, 2, 0), "{stats:?}");
    // nothing was sent: the device never saw the poison
    assert_eq!(sim.present_value(3101, av).await.expect("sim"), Value::Real(50.0));
    // any other value is written as usual, by the restarted actor
    let outcome = plant.handle.write(3101, write(12.5), WAIT).await.expect("an ordinary write");
    assert_eq!(outcome.present_value, Some(Value::Real(12.5)));
    // the neighbours never noticed
    assert_eq!([actor_id(3102), actor_id(3103)], neighbours.map(Some));
    assert!(dir.wait_for(WAIT, |d| d.get(3102).is_some_and(|s| s.counters.polls_ok > neighbour_polls + 2)).await);
    assert!(dir.wait_for(WAIT, |d| all_good(d, &sim)).await);
    plant.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn without_a_poison_value_configured_any_number_is_written() {
    let sim = simulator(3201, 1, 1, Layout::Port, Faults::default()).await;
    let (plant, _h) = plant("nopoison", &sim, Setup::default()).await;
    let dir = plant.handle.directory.clone();
    assert!(dir.wait_for(WAIT, |d| all_good(d, &sim)).await);
    let w = plantwatch_actors::plant::device::Write {
        object: obj("analog-value:1"),
        property: property::PRESENT_VALUE,
        value: Value::Real(666.25),
        priority: None,
    };
    let outcome = plant.handle.write(3201, w, WAIT).await.expect("written");
    assert_eq!(outcome.present_value, Some(Value::Real(666.25)));
    assert_eq!(plant.handle.stats.snapshot().device_panics, 0);
    plant.shutdown().await;
    sim.shutdown().await;
}
