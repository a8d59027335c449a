//! What the service is running, counted for leak checks: device and network
//! actors alive (from ractor's registry, so an actor that died without being
//! respawned, or one spawned twice, shows), and tokio tasks alive. A sampler
//! task sets them as gauges through the `metrics` facade every second
//! (docs/metrics.md); without a recorder it costs a registry walk and nothing
//! else.

use std::time::Duration;

use tokio::task::JoinHandle;

/// `plantwatch_actors{kind="device"|"network"}`.
pub const ACTORS: &str = "plantwatch_actors";
/// `plantwatch_runtime_alive_tasks`.
pub const ALIVE_TASKS: &str = "plantwatch_runtime_alive_tasks";

/// One count of what runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Census {
    /// Registered device actors (`device/<instance>`).
    pub device_actors: usize,
    /// Registered network supervisors (`network/<name>`).
    pub network_actors: usize,
    /// Tasks alive in the current tokio runtime (actors, timers, requests in
    /// flight, the transport and store tasks, HTTP connections); `None`
    /// outside a runtime.
    pub tasks: Option<usize>,
}

/// Counts now.
pub fn take() -> Census {
    let mut c = Census::default();
    for name in ractor::registry::registered() {
        if name.starts_with("device/") {
            c.device_actors += 1;
        } else if name.starts_with("network/") {
            c.network_actors += 1;
        }
    }
    c.tasks = tokio::runtime::Handle::try_current().ok().map(|h| h.metrics().num_alive_tasks());
    c
}

/// The sampler task; it stops when this is dropped.
#[derive(Debug)]
pub struct Sampler(JoinHandle<()>);

impl Drop for Sampler {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Sets the gauges from a [`take`] every `every` (the first at once) until
/// the [`Sampler`] is dropped. [`super::supervisor::Plant`] runs one.
pub fn spawn_sampler(every: Duration) -> Sampler {
    metrics::describe_gauge!(ACTORS, "Actors alive, by kind (device actors, network supervisors).");
    metrics::describe_gauge!(ALIVE_TASKS, "Tasks alive in the tokio runtime.");
    let devices = metrics::gauge!(ACTORS, "kind" => "device");
    let networks = metrics::gauge!(ACTORS, "kind" => "network");
    let tasks = metrics::gauge!(ALIVE_TASKS);
    Sampler(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let c = take();
            devices.set(c.device_actors as f64);
            networks.set(c.network_actors as f64);
            if let Some(n) = c.tasks {
                tasks.set(n as f64);
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn actors_are_counted_by_their_registered_names() {
        struct Idle;
        impl ractor::Actor for Idle {
            type Msg = ();
            type State = ();
            type Arguments = ();
            async fn pre_start(&self, _: ractor::ActorRef<()>, _: ()) -> Result<(), ractor::ActorProcessingErr> {
                Ok(())
            }
        }
        let (a, ha) = ractor::Actor::spawn(Some("device/census-test-1".into()), Idle, ()).await.expect("spawn");
        let (b, hb) = ractor::Actor::spawn(Some("network/census-test".into()), Idle, ()).await.expect("spawn");
        let (c, hc) = ractor::Actor::spawn(Some("something/else".into()), Idle, ()).await.expect("spawn");
        let now = take();
        // other tests in this process may run actors too: ours are among them
        assert!(ractor::registry::registered().iter().any(|n| n == "device/census-test-1"));
        assert!(now.network_actors >= 1 && now.device_actors >= 1);
        assert!(now.tasks.is_some_and(|t| t >= 3), "{now:?}");
        for (actor, handle) in [(a, ha), (b, hb), (c, hc)] {
            actor.stop(None);
            let _ = handle.await;
        }
        assert!(!ractor::registry::registered().iter().any(|n| n == "device/census-test-1"));
    }
}
