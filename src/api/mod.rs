//! The HTTP API (warp), served from plantwatch's own accept loop (hyper-util)
//! so that sockets get TCP_NODELAY and every request gets an id, a span and
//! one log line.
//!
//! Handlers read cached state from the plant's directory and reach device
//! actors only through [`PlantHandle`] messages with a timeout.

pub mod error;
pub mod view;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use plantwatch_actors::plant::model::{now_ms, DeviceStatus};
use plantwatch_actors::plant::PlantHandle;
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpListener;
use tracing::{info, warn, Instrument};
use warp::http::HeaderValue;
use warp::{Filter, Reply};

use error::{ApiError, ErrorCode};

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being handled (empty outside a request).
pub fn request_id() -> String {
    REQUEST_ID.try_with(Clone::clone).unwrap_or_default()
}

/// A client's `X-Request-Id` if it is a sane token, else a new one.
fn pick_request_id(header: Option<&HeaderValue>) -> String {
    header
        .and_then(|h| h.to_str().ok())
        .filter(|s| {
            !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        })
        .map_or_else(|| uuid::Uuid::new_v4().simple().to_string(), str::to_string)
}

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub plant: PlantHandle,
    /// Set once the store is open and the supervisors are up.
    pub ready: Arc<AtomicBool>,
}

const MAX_LIMIT: usize = 1000;
const DEFAULT_LIMIT: usize = 100;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceQuery {
    network: Option<String>,
    status: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PointQuery {
    limit: Option<usize>,
    cursor: Option<String>,
}

fn limit(l: Option<usize>) -> Result<usize, ApiError> {
    match l {
        None => Ok(DEFAULT_LIMIT),
        Some(n @ 1..=MAX_LIMIT) => Ok(n),
        Some(_) => Err(ApiError::invalid("limit", format!("must be 1..{MAX_LIMIT}"))),
    }
}

fn status_filter(s: &str) -> Result<DeviceStatus, ApiError> {
    serde_json::from_value(json!(s))
        .map_err(|_| ApiError::invalid("status", "must be one of enrolling, online, degraded, offline, failed"))
}

type Reply_ = warp::reply::Response;

fn reply(r: Result<serde_json::Value, ApiError>) -> Reply_ {
    match r {
        Ok(body) => warp::reply::json(&body).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn list_devices(state: ApiState, q: DeviceQuery) -> Result<Reply_, Infallible> {
    let run = || -> Result<serde_json::Value, ApiError> {
        let limit = limit(q.limit)?;
        let status = q.status.as_deref().map(status_filter).transpose()?;
        let after: Option<u32> = match &q.cursor {
            None => None,
            Some(c) => Some(
                u32::from_str_radix(c, 16).map_err(|_| ApiError::invalid("cursor", "not a cursor from this API"))?,
            ),
        };
        let mut items = Vec::new();
        let mut next = None;
        for s in state.plant.directory.list() {
            if after.is_some_and(|a| s.instance <= a)
                || q.network.as_ref().is_some_and(|n| *n != s.network)
                || status.is_some_and(|st| st != s.status)
            {
                continue;
            }
            if items.len() == limit {
                next =
                    items.last().and_then(|d: &serde_json::Value| d["instance"].as_u64()).map(|i| format!("{i:08x}"));
                break;
            }
            items.push(view::device(&s));
        }
        Ok(json!({"items": items, "next_cursor": next}))
    };
    Ok(reply(run()))
}

fn parse_instance(s: &str) -> Result<u32, ApiError> {
    s.parse::<u32>()
        .ok()
        .filter(|i| *i <= plantwatch_actors::bacnet::types::MAX_INSTANCE)
        .ok_or_else(|| ApiError::invalid("instance", "must be a device instance 0..4194302"))
}

async fn get_device(instance: String, state: ApiState) -> Result<Reply_, Infallible> {
    let run = || -> Result<serde_json::Value, ApiError> {
        let i = parse_instance(&instance)?;
        let s = state
            .plant
            .directory
            .get(i)
            .ok_or_else(|| ApiError::new(ErrorCode::DeviceNotFound, format!("no device {i}")))?;
        Ok(view::device(&s))
    };
    Ok(reply(run()))
}

async fn list_points(instance: String, state: ApiState, q: PointQuery) -> Result<Reply_, Infallible> {
    let run = || -> Result<serde_json::Value, ApiError> {
        let i = parse_instance(&instance)?;
        let limit = limit(q.limit)?;
        let after = match &q.cursor {
            None => None,
            Some(c) => Some(
                c.parse::<plantwatch_actors::bacnet::ObjectId>()
                    .map_err(|_| ApiError::invalid("cursor", "not a cursor from this API"))?,
            ),
        };
        let s = state
            .plant
            .directory
            .get(i)
            .ok_or_else(|| ApiError::new(ErrorCode::DeviceNotFound, format!("no device {i}")))?;
        let now = now_ms();
        let mut points = s.points.iter().filter(|p| after.is_none_or(|a| p.object > a));
        let items: Vec<_> = points.by_ref().take(limit).map(|p| view::point(p, now)).collect();
        let next = if points.next().is_some() {
            items.last().and_then(|p| p["object"].as_str().map(str::to_string))
        } else {
            None
        };
        Ok(json!({"items": items, "next_cursor": next}))
    };
    Ok(reply(run()))
}

/// Every route.
pub fn routes(state: ApiState) -> impl Filter<Extract = (Reply_,), Error = Infallible> + Clone {
    let with_state = {
        let state = state.clone();
        warp::any().map(move || state.clone())
    };
    let health =
        warp::path!("health").and(warp::get()).map(|| warp::reply::json(&json!({"status": "ok"})).into_response());
    let ready = warp::path!("ready").and(warp::get()).and(with_state.clone()).map(|s: ApiState| {
        if s.ready.load(Ordering::Relaxed) {
            warp::reply::json(&json!({"status": "ready"})).into_response()
        } else {
            ApiError::new(ErrorCode::NotReady, "starting: the store or the supervisors are not up yet").into_response()
        }
    });
    let devices = warp::path!("api" / "v1" / "devices")
        .and(warp::get())
        .and(with_state.clone())
        .and(warp::query::<DeviceQuery>())
        .and_then(list_devices);
    let device =
        warp::path!("api" / "v1" / "devices" / String).and(warp::get()).and(with_state.clone()).and_then(get_device);
    let points = warp::path!("api" / "v1" / "devices" / String / "points")
        .and(warp::get())
        .and(with_state)
        .and(warp::query::<PointQuery>())
        .and_then(list_points);
    health.or(ready).unify().or(devices).unify().or(device).unify().or(points).unify().recover(error::recover).unify()
}

/// Serves `routes` on `listener` until `shutdown` resolves, then lets open
/// requests finish.
pub async fn serve(listener: TcpListener, state: ApiState, shutdown: impl Future<Output = ()> + Send) {
    let service = warp::service(routes(state));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // e.g. too many open files: keep serving the others
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let service = service.clone();
        let svc = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            let id = pick_request_id(req.headers().get("x-request-id"));
            let span = tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path(), %peer);
            let started = Instant::now();
            req.extensions_mut().insert(peer);
            let mut service = service.clone();
            REQUEST_ID.scope(
                id.clone(),
                async move {
                    let mut resp = tower_call(&mut service, req).await;
                    if let Ok(v) = HeaderValue::from_str(&id) {
                        resp.headers_mut().insert("x-request-id", v);
                    }
                    info!(
                        status = resp.status().as_u16(),
                        duration_ms = started.elapsed().as_millis() as u64,
                        "request"
                    );
                    Ok::<_, Infallible>(resp)
                }
                .instrument(span),
            )
        });
        let conn = auto::Builder::new(TokioExecutor::new())
            .serve_connection_with_upgrades(TokioIo::new(stream), svc)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
    // Let requests in progress finish, but not forever.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), graceful.shutdown()).await;
}

async fn tower_call<S>(service: &mut S, req: hyper::Request<hyper::body::Incoming>) -> warp::reply::Response
where
    S: tower_service::Service<
        hyper::Request<hyper::body::Incoming>,
        Response = warp::reply::Response,
        Error = Infallible,
    >,
{
    match service.call(req).await {
        Ok(r) => r,
        Err(never) => match never {},
    }
}

/// Binds the API's listener (before anything else starts, so a busy port is
/// a clear error at once).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
