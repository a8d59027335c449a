//! The HTTP API (warp), served from plantwatch's own accept loop (hyper-util)
//! so that sockets get TCP_NODELAY and every request gets an id, a span and
//! one log line.
//!
//! Handlers read cached state from the plant's directory and reach device
//! actors only through [`PlantHandle`] messages with a timeout.

pub mod auth;
pub mod error;
pub mod handlers;
pub mod headers;
pub mod limits;
pub mod openapi;
pub mod params;
pub mod proxy;
pub mod tls;
pub mod view;

pub use headers::HttpSettings;
pub use proxy::{client_ip, ClientIp};

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use plantwatch_actors::plant::PlantHandle;
use plantwatch_actors::store::Store;
use tokio::net::TcpListener;
use tracing::{info, warn, Instrument};
use warp::http::HeaderValue;
use warp::{Filter, Reply};

use error::ApiError;

tokio::task_local! {
    static REQUEST_ID: String;
    static IDENTITY: auth::Identity;
}

/// Who is making the request being handled (anonymous outside a request or
/// when authentication is off).
pub fn identity() -> auth::Identity {
    IDENTITY.try_with(Clone::clone).unwrap_or_else(|_| auth::Identity::anonymous())
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

/// A network as the API shows it.
#[derive(Debug, Clone)]
pub struct NetworkInfo {
    pub name: String,
    pub bind: SocketAddr,
    pub discover: bool,
}

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub plant: PlantHandle,
    pub store: Store,
    pub networks: Arc<Vec<NetworkInfo>>,
    /// Budget of a request that waits for a device (live reads, writes).
    pub request_timeout: Duration,
    /// Set once the store is open and the supervisors are up.
    pub ready: Arc<AtomicBool>,
    /// TLS, CORS and trusted proxies; `HttpSettings::default()`: plain HTTP, no CORS.
    pub http: HttpSettings,
    pub security: Security,
    /// Point values exported at `/metrics` at most (`metrics.max_points`).
    pub max_points: usize,
    /// `server.site`: the `site` label of every metric at `/metrics`.
    pub site: Option<String>,
    /// Leased writes, and their task.
    pub leases: crate::lease::Leases,
    /// `server.max_lease`: the longest lease a write may take.
    pub max_lease: Duration,
}

/// Authentication and rate limits.
#[derive(Clone)]
pub struct Security {
    /// API keys are required (else every caller is an anonymous admin).
    pub auth_enabled: bool,
    /// `/metrics` needs no key.
    pub metrics_public: bool,
    pub keys: auth::KeyRing,
    pub limits: Arc<limits::Limits>,
    pub stats: Arc<SecurityStats>,
}

/// Refusals, counted (exported as metrics).
#[derive(Debug, Default)]
pub struct SecurityStats {
    pub unauthenticated: AtomicU64,
    pub forbidden: AtomicU64,
    pub rate_limited: AtomicU64,
}

impl Security {
    /// No authentication and limits too high to matter: for tests and
    /// closed benches.
    pub fn open() -> Self {
        Self {
            auth_enabled: false,
            metrics_public: true,
            keys: auth::KeyRing::default(),
            limits: Arc::new(limits::Limits::new(1e9, 1e9, 1e9, 1.0)),
            stats: Arc::default(),
        }
    }

    /// Authenticates and rate-limits one request before it is routed.
    /// Returns who it is, the rate-limit verdict for the headers, and the
    /// refusal if there is one.
    fn admit(
        &self,
        method: &warp::http::Method,
        route: &str,
        headers: &warp::http::HeaderMap,
        ip: std::net::IpAddr,
    ) -> (auth::Identity, Option<limits::Verdict>, Option<ApiError>) {
        use error::ErrorCode;
        let now = Instant::now();
        let count = |c: &AtomicU64| {
            c.fetch_add(1, Ordering::Relaxed);
        };
        let required = auth::required_role(method, route, self.metrics_public);
        let mut who = auth::Identity::anonymous();
        if let (Some(role), true) = (required, self.auth_enabled) {
            if let Some(v) = self.limits.auth_blocked(ip, now) {
                count(&self.stats.rate_limited);
                let e = ApiError::new(
                    ErrorCode::RateLimited,
                    format!("too many failed authentications from this address; retry after {} s", v.retry_after),
                );
                return (who, Some(v), Some(e));
            }
            match self.keys.check(auth::presented(headers).as_deref()) {
                Ok(id) => who = id,
                Err(refusal) => {
                    self.limits.auth_failed(ip, now);
                    count(&self.stats.unauthenticated);
                    let why = match refusal {
                        auth::Refusal::Missing => "no API key: send Authorization: Bearer KEY or X-API-Key: KEY",
                        auth::Refusal::TooLong => "the API key is too long to be one",
                        auth::Refusal::Unknown => "unknown API key",
                        auth::Refusal::Revoked => "the API key is revoked",
                    };
                    return (who, None, Some(ApiError::new(ErrorCode::Unauthenticated, why)));
                }
            }
            if who.role < role {
                count(&self.stats.forbidden);
                let e = ApiError::new(
                    ErrorCode::Forbidden,
                    format!("this route needs the {} role; the key has {}", role.as_str(), who.role.as_str()),
                );
                return (who, None, Some(e));
            }
        }
        let class =
            if matches!(*method, warp::http::Method::GET | warp::http::Method::HEAD | warp::http::Method::OPTIONS) {
                limits::Class::Read
            } else {
                limits::Class::Write
            };
        let key = (who.key_id != "anonymous").then_some(who.key_id.as_str());
        let v = self.limits.spend(class, key, ip, now);
        if !v.allowed {
            count(&self.stats.rate_limited);
            let e =
                ApiError::new(ErrorCode::RateLimited, format!("over the rate limit; retry after {} s", v.retry_after));
            return (who, Some(v), Some(e));
        }
        (who, Some(v), None)
    }
}

fn rate_headers(resp: &mut warp::reply::Response, v: &limits::Verdict) {
    let h = resp.headers_mut();
    for (name, value) in
        [("ratelimit-limit", v.limit), ("ratelimit-remaining", v.remaining), ("ratelimit-reset", v.reset)]
    {
        if let Ok(val) = HeaderValue::from_str(&value.to_string()) {
            h.insert(name, val);
        }
    }
    if !v.allowed {
        if let Ok(val) = HeaderValue::from_str(&v.retry_after.to_string()) {
            h.insert("retry-after", val);
        }
    }
}

/// Request bodies larger than this are refused (413).
pub const MAX_BODY: u64 = 16 * 1024;

/// The request line and headers of a request may take this many bytes
/// (HTTP/1 read buffer; HTTP/2 header list); a larger head is answered 431
/// or the connection is closed.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// A TLS handshake that takes longer than this is dropped.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

type Resp = warp::reply::Response;

fn reply(r: Result<serde_json::Value, ApiError>) -> Resp {
    match r {
        Ok(body) => warp::reply::json(&body).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Every route, as (method, template). The OpenAPI document lists exactly these.
pub const ROUTES: [(&str, &str); 17] = [
    ("GET", "/health"),
    ("GET", "/ready"),
    ("GET", "/metrics"),
    ("GET", "/api/v1/networks"),
    ("GET", "/api/v1/devices"),
    ("GET", "/api/v1/devices/{instance}"),
    ("GET", "/api/v1/devices/{instance}/points"),
    ("GET", "/api/v1/devices/{instance}/points/{object}"),
    ("PUT", "/api/v1/devices/{instance}/points/{object}"),
    ("GET", "/api/v1/devices/{instance}/points/{object}/history"),
    ("POST", "/api/v1/discovery"),
    ("GET", "/api/v1/audit"),
    ("GET", "/api/v1/leases"),
    ("GET", "/api/v1/keys"),
    ("POST", "/api/v1/keys"),
    ("DELETE", "/api/v1/keys/{id}"),
    ("GET", "/api/v1/openapi.json"),
];

/// The route template of a path, for logs and metrics (bounded labels).
pub fn route_template(path: &str) -> &'static str {
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    match segs.as_slice() {
        ["health"] => "/health",
        ["ready"] => "/ready",
        ["metrics"] => "/metrics",
        ["docs", ..] => "/docs",
        ["api", "v1", "networks"] => "/api/v1/networks",
        ["api", "v1", "devices"] => "/api/v1/devices",
        ["api", "v1", "devices", _] => "/api/v1/devices/{instance}",
        ["api", "v1", "devices", _, "points"] => "/api/v1/devices/{instance}/points",
        ["api", "v1", "devices", _, "points", _] => "/api/v1/devices/{instance}/points/{object}",
        ["api", "v1", "devices", _, "points", _, "history"] => "/api/v1/devices/{instance}/points/{object}/history",
        ["api", "v1", "discovery"] => "/api/v1/discovery",
        ["api", "v1", "audit"] => "/api/v1/audit",
        ["api", "v1", "leases"] => "/api/v1/leases",
        ["api", "v1", "keys"] => "/api/v1/keys",
        ["api", "v1", "keys", _] => "/api/v1/keys/{id}",
        ["api", "v1", "openapi.json"] => "/api/v1/openapi.json",
        _ => "unknown",
    }
}

/// Every route.
pub fn routes(state: ApiState) -> impl Filter<Extract = (Resp,), Error = Infallible> + Clone {
    let st = {
        let state = state.clone();
        warp::any().map(move || state.clone())
    };
    let json_body = warp::body::content_length_limit(MAX_BODY).and(warp::body::json::<serde_json::Value>());
    let health = warp::path!("health").and(warp::get()).map(|| reply(Ok(handlers::health())));
    let ready = warp::path!("ready").and(warp::get()).and(st.clone()).map(|s: ApiState| reply(handlers::ready(&s)));
    let metrics = warp::path!("metrics").and(warp::get()).and(st.clone()).then(|s: ApiState| async move {
        // Reading the store's stats and formatting thousands of series is
        // blocking work: keep it off the async workers.
        match tokio::task::spawn_blocking(move || crate::metrics::render(&s)).await {
            Ok(text) => warp::reply::with_header(text, "content-type", "text/plain; version=0.0.4").into_response(),
            Err(e) => {
                ApiError::new(error::ErrorCode::Internal, format!("rendering metrics failed: {e}")).into_response()
            }
        }
    });
    let networks = warp::path!("api" / "v1" / "networks")
        .and(warp::get())
        .and(st.clone())
        .then(|s| async move { reply(handlers::networks(s).await) });
    let devices = warp::path!("api" / "v1" / "devices")
        .and(warp::get())
        .and(st.clone())
        .and(params::query())
        .then(|s, q| async move { reply(handlers::list_devices(s, q).await) });
    let device = warp::path!("api" / "v1" / "devices" / String)
        .and(warp::get())
        .and(st.clone())
        .then(|i, s| async move { reply(handlers::get_device(i, s).await) });
    let points = warp::path!("api" / "v1" / "devices" / String / "points")
        .and(warp::get())
        .and(st.clone())
        .and(params::query())
        .then(|i, s, q| async move { reply(handlers::list_points(i, s, q).await) });
    let point = warp::path!("api" / "v1" / "devices" / String / "points" / String)
        .and(warp::get())
        .and(st.clone())
        .and(params::query())
        .then(|i, o, s, q| async move { reply(handlers::get_point(i, o, s, q).await) });
    let write = warp::path!("api" / "v1" / "devices" / String / "points" / String)
        .and(warp::put())
        .and(st.clone())
        .and(json_body)
        .then(|i, o, s, b| async move { reply(handlers::write(i, o, s, b).await) });
    let history = warp::path!("api" / "v1" / "devices" / String / "points" / String / "history")
        .and(warp::get())
        .and(st.clone())
        .and(params::query())
        .then(|i, o, s, q| async move { reply(handlers::history(i, o, s, q).await) });
    let discovery = warp::path!("api" / "v1" / "discovery")
        .and(warp::post())
        .and(st.clone())
        .and(warp::body::content_length_limit(MAX_BODY))
        .and(warp::body::json())
        .then(|s, b| async move { reply(handlers::discovery(s, b).await) });
    let list_keys = warp::path!("api" / "v1" / "keys")
        .and(warp::get())
        .and(st.clone())
        .then(|s| async move { reply(handlers::list_keys(s).await) });
    let create_key = warp::path!("api" / "v1" / "keys")
        .and(warp::post())
        .and(st.clone())
        .and(warp::body::content_length_limit(MAX_BODY))
        .and(warp::body::json())
        .then(|s, b| async move { reply(handlers::create_key(s, b).await) });
    let revoke_key = warp::path!("api" / "v1" / "keys" / String)
        .and(warp::delete())
        .and(st.clone())
        .then(|id, s| async move { reply(handlers::revoke_key(id, s).await) });
    let keys = list_keys.or(create_key).unify().or(revoke_key).unify();
    let audit = warp::path!("api" / "v1" / "audit")
        .and(warp::get())
        .and(st.clone())
        .and(params::query())
        .then(|s, q| async move { reply(handlers::audit(s, q).await) });
    let leases = warp::path!("api" / "v1" / "leases")
        .and(warp::get())
        .and(st.clone())
        .and(params::query())
        .then(|s, q| async move { reply(handlers::leases(s, q).await) });
    health
        .or(ready)
        .unify()
        .or(metrics)
        .unify()
        .or(networks)
        .unify()
        .or(devices)
        .unify()
        .or(device)
        .unify()
        .or(points)
        .unify()
        .or(point)
        .unify()
        .or(write)
        .unify()
        .or(history)
        .unify()
        .or(discovery)
        .unify()
        .or(audit)
        .unify()
        .or(leases)
        .unify()
        .or(keys)
        .unify()
        .or(openapi::spec())
        .unify()
        .or(openapi::docs())
        .unify()
        .recover(error::recover)
        .unify()
}

/// Serves `routes` on `listener` until `shutdown` resolves, then lets open
/// requests finish.
pub async fn serve(listener: TcpListener, state: ApiState, shutdown: impl Future<Output = ()> + Send) {
    // Device calls are bounded by request_timeout already; this is the backstop.
    let budget = state.request_timeout + Duration::from_secs(1);
    let security = state.security.clone();
    let http = state.http.clone();
    let service = warp::service(routes(state));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().max_buf_size(MAX_HEADER_BYTES);
    builder.http2().max_header_list_size(MAX_HEADER_BYTES as u32);
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
        let security = security.clone();
        let conn_http = http.clone();
        let svc = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            let id = pick_request_id(req.headers().get("x-request-id"));
            let route = route_template(req.uri().path());
            let http = conn_http.clone();
            let client = client_ip(peer, req.headers(), &http.trusted_proxies);
            let span = tracing::info_span!("request", request_id = %id, method = %req.method(), route, %peer, %client);
            let started = Instant::now();
            let method = req.method().clone();
            // A CORS preflight carries no credentials: it is answered before
            // authentication (inside the request's scope, for its request id).
            let is_preflight = headers::preflight(&http, req.method(), req.headers()).is_some();
            let (who, verdict, refusal) = match is_preflight {
                true => (auth::Identity::anonymous(), None, None),
                false => security.admit(req.method(), route, req.headers(), client),
            };
            req.extensions_mut().insert(peer);
            req.extensions_mut().insert(ClientIp(client));
            let origin = req.headers().get(warp::http::header::ORIGIN).cloned();
            let mut service = service.clone();
            let key_id = who.key_id.clone();
            REQUEST_ID.scope(
                id.clone(),
                IDENTITY.scope(
                    who,
                    async move {
                        let preflight =
                            if is_preflight { headers::preflight(&http, req.method(), req.headers()) } else { None };
                        let mut resp = match (preflight, refusal) {
                            (Some(r), _) => r,
                            (None, Some(e)) => e.into_response(),
                            (None, None) => match tokio::time::timeout(budget, tower_call(&mut service, req)).await {
                                Ok(r) => r,
                                Err(_) => ApiError::new(
                                    error::ErrorCode::RequestTimeout,
                                    format!("the request did not finish within {} ms", budget.as_millis()),
                                )
                                .into_response(),
                            },
                        };
                        headers::finish(&mut resp, &http, origin.as_ref(), route == "/docs");
                        if let Ok(v) = HeaderValue::from_str(&id) {
                            resp.headers_mut().insert("x-request-id", v);
                        }
                        if let Some(v) = &verdict {
                            rate_headers(&mut resp, v);
                        }
                        let elapsed = started.elapsed();
                        crate::metrics::http_request(route, &method, resp.status().as_u16(), elapsed);
                        if let Some(code) = resp.extensions().get::<error::ErrorCode>() {
                            crate::metrics::http_error(code.as_str());
                        }
                        info!(
                            status = resp.status().as_u16(),
                            duration_ms = elapsed.as_millis() as u64,
                            key_id,
                            "request"
                        );
                        Ok::<_, Infallible>(resp)
                    }
                    .instrument(span),
                ),
            )
        });
        match &http.tls {
            None => {
                let conn = builder.clone().serve_connection_with_upgrades(TokioIo::new(stream), svc).into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
            Some(acceptor) => {
                let (acceptor, builder, watcher) = (acceptor.clone(), builder.clone(), graceful.watcher());
                tokio::spawn(async move {
                    let stream = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc).into_owned();
                    let _ = watcher.watch(conn).await;
                });
            }
        }
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
