//! The OpenAPI 3 document of the API, generated from the code with utoipa,
//! served at `GET /api/v1/openapi.json`, and its browsable page (Swagger UI)
//! at `GET /docs`.
//!
//! - Schemas come from the typed views in [`super::view`] (`ToSchema`).
//! - Each route of [`super::ROUTES`] has one entry in [`operations`]: its
//!   parameters, body, answer and example, and the [`ErrorCode`]s it can
//!   answer with. The error responses, grouped by HTTP status with one
//!   example per code, are generated from those codes
//!   ([`ErrorCode::status`], [`ErrorCode::as_str`]).
//! - Examples are made by the view code itself from example snapshots, so
//!   they have the shape of real answers.
//! - The routes that need a key carry security requirements (a key as
//!   `Authorization: Bearer` or as `X-API-Key`) and say which role, both from
//!   [`super::auth::required_role`]: Swagger UI's "Authorize" and generated
//!   clients send the key. A 429 answer names its `Retry-After` header.
//! - What the handlers check by hand (the sort keys, the enums of `status`
//!   and `quality`, and the answers they still build with `json!`) is held
//!   to the document by `tests/it/openapi.rs`, which checks every answer of
//!   the running API against it.
//!
//! `/docs` is the document's page, not one of the API's routes: it is not in
//! `ROUTES` nor in the document. Swagger UI's files come from
//! utoipa-swagger-ui's vendored copy (no download at build time) and are
//! served under `/docs/`; the page at `/docs` carries `<base href="/docs/">`
//! and the initializer inline, so it loads [`SPEC_PATH`] from either URL.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use plantwatch_actors::bacnet::codec::Value;
use plantwatch_actors::bacnet::types::{object_type, Address, ObjectId, Segmentation, StatusFlags};
use plantwatch_actors::plant::model::{DeviceCounters, DeviceIdentity, DeviceSnapshot, DeviceStatus, Point, Quality};
use serde::Serialize;
use serde_json::{json, Value as Json};
use utoipa::openapi::example::ExampleBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, Paths, Ref, RefOr, Required,
    ResponseBuilder, ResponsesBuilder,
};
use utoipa::ToSchema;
use warp::http::{header, StatusCode};
use warp::{Filter, Rejection, Reply};

use super::error::{ApiError, ErrorCode};
use super::params::{self, Cursor, SortValue};
use super::view::{self, *};

/// Where the document is served.
pub const SPEC_PATH: &str = "/api/v1/openapi.json";
/// Where its browsable page is served.
pub const DOCS_PATH: &str = "/docs";
/// The security scheme of a key sent as `Authorization: Bearer KEY`.
pub const BEARER_SCHEME: &str = "bearerKey";
/// The security scheme of a key sent as `X-API-Key: KEY`.
pub const HEADER_SCHEME: &str = "apiKeyHeader";

/// Sort keys of `GET /api/v1/devices` (`-` in front: descending), as the
/// handler takes them (`tests/it/openapi.rs` asks it).
pub const DEVICE_SORTS: [&str; 5] = ["instance", "name", "status", "network", "last_seen"];
/// Sort keys of `GET /api/v1/devices/{instance}/points`.
pub const POINT_SORTS: [&str; 4] = ["object", "name", "quality", "updated_at"];

const DESCRIPTION: &str = "plantwatch supervises BACnet/IP devices: it polls them (or follows their COV \
notifications), caches their points' values, records their history, and commands them.

Reads are served from the cache; `?live=true` on one point reads the device now. Writes go to the device \
at a BACnet priority (1..16, `null` relinquishes), are validated against the object type, and every \
attempt is recorded in the audit log.

Every route but `/health`, `/ready`, `/metrics` (unless `auth.metrics_public = false`) and this \
document needs an API key, sent as `Authorization: Bearer KEY` or `X-API-Key: KEY` (never in the query \
string). Roles: `read` (every GET), `operator` (also point writes and discovery), `admin` (also the audit \
log and key management); each operation says which it needs. Reads and writes have separate rate \
limits per key: every admitted answer carries `RateLimit-Limit`, `RateLimit-Remaining` and \
`RateLimit-Reset`, and a request over the limit gets 429 with `Retry-After`.

Lists are paginated: `limit` (1..1000, default 100) and the opaque `cursor` taken from the previous \
page's `next_cursor`; `sort` takes a key, with `-` in front for descending. Unknown query parameters \
are refused.

Every non-2xx answer, including 404 for unknown routes and 405 for a wrong method, is the error \
envelope `{\"error\": {\"code\", \"message\", \"status\", \"request_id\", \"details\"}}` with a stable \
`code`. Every answer carries `X-Request-Id` (a sane client-sent one is kept).";

// ---------------------------------------------------------------- the document

/// One route of the API as the document shows it.
struct Operation {
    method: HttpMethod,
    path: &'static str,
    tag: &'static str,
    id: &'static str,
    summary: &'static str,
    description: &'static str,
    params: Vec<Parameter>,
    body: Option<Body>,
    ok: Answer,
    /// Every error this route answers with.
    errors: &'static [ErrorCode],
}

struct Body {
    schema: String,
    description: &'static str,
    examples: Vec<(&'static str, &'static str, Json)>,
}

struct Answer {
    description: &'static str,
    content_type: &'static str,
    /// A component schema; `None`: a string (text) or any object.
    schema: Option<String>,
    examples: Vec<(&'static str, &'static str, Json)>,
}

impl Answer {
    fn json(description: &'static str, schema: String, example: Json) -> Self {
        Self {
            description,
            content_type: "application/json",
            schema: Some(schema),
            examples: vec![("ok", "", example)],
        }
    }
}

fn schema_name<T: ToSchema>() -> String {
    T::name().into_owned()
}

fn ref_of<T: ToSchema>() -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name(T::name()))
}

fn path_param(name: &str, description: &str, schema: impl Into<RefOr<Schema>>, example: Json) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Path)
        .required(Required::True)
        .description(Some(description))
        .schema(Some(schema))
        .example(Some(example))
        .build()
}

fn query_param(name: &str, description: &str, schema: impl Into<RefOr<Schema>>, example: Option<Json>) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .required(Required::False)
        .description(Some(description))
        .schema(Some(schema))
        .example(example)
        .build()
}

fn instance_param() -> Parameter {
    path_param(
        "instance",
        "The BACnet device instance.",
        ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(0)).maximum(Some(4_194_302)),
        json!(1001),
    )
}

fn object_param() -> Parameter {
    path_param(
        "object",
        "The object, `type:instance` (`analog-input:1`, `binary-output:2`, `multi-state-value:1`).",
        ObjectBuilder::new().schema_type(Type::String).pattern(Some("^[0-9a-z-]+:[0-9]+$")),
        json!("analog-input:1"),
    )
}

fn limit_param() -> Parameter {
    query_param(
        "limit",
        "Items per page.",
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(1))
            .maximum(Some(params::MAX_LIMIT as u64))
            .default(Some(json!(params::DEFAULT_LIMIT))),
        Some(json!(50)),
    )
}

fn cursor_param() -> Parameter {
    query_param(
        "cursor",
        "Where to go on: `next_cursor` of the previous page, as given (and with the same `sort`).",
        ObjectBuilder::new().schema_type(Type::String).max_length(Some(2048)),
        None,
    )
}

fn search_param(what: &str) -> Parameter {
    query_param(
        "q",
        &format!("Only {what} whose name contains this text (case-insensitive)."),
        ObjectBuilder::new().schema_type(Type::String).max_length(Some(100)),
        Some(json!("ahu")),
    )
}

fn sort_param(keys: &[&str], example: &str) -> Parameter {
    let values: Vec<String> = keys.iter().flat_map(|k| [k.to_string(), format!("-{k}")]).collect();
    query_param(
        "sort",
        &format!("Sort key, `-` in front for descending; default `{}`.", keys[0]),
        ObjectBuilder::new().schema_type(Type::String).enum_values(Some(values)).default(Some(json!(keys[0]))),
        Some(json!(example)),
    )
}

fn time_param(name: &str, description: &str, example: &str) -> Parameter {
    query_param(
        name,
        description,
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::DateTime))),
        Some(json!(example)),
    )
}

/// Every route of [`super::ROUTES`], documented.
fn operations() -> Vec<Operation> {
    use ErrorCode::*;
    let ex = Examples::new();
    vec![
        Operation {
            method: HttpMethod::Get,
            path: "/health",
            tag: "service",
            id: "health",
            summary: "Liveness",
            description: "Answers as long as the process serves HTTP.",
            params: vec![],
            body: None,
            ok: Answer::json("Alive.", schema_name::<HealthView>(), json!({"status": "ok"})),
            errors: &[],
        },
        Operation {
            method: HttpMethod::Get,
            path: "/ready",
            tag: "service",
            id: "ready",
            summary: "Readiness",
            description: "Ready once the store is open and the supervisors are up; device counts by status.",
            params: vec![],
            body: None,
            ok: Answer::json(
                "Ready.",
                schema_name::<ReadyView>(),
                to_json(&ReadyView {
                    status: "ready".into(),
                    devices: 3,
                    by_status: ReadyCounts { online: 2, degraded: 0, offline: 1, failed: 0 },
                }),
            ),
            errors: &[NotReady],
        },
        Operation {
            method: HttpMethod::Get,
            path: "/metrics",
            tag: "service",
            id: "metrics",
            summary: "Prometheus metrics",
            description: "The Prometheus text exposition format (version 0.0.4). Every metric is listed in docs/metrics.md. Needs no key unless `auth.metrics_public = false`.",
            params: vec![],
            body: None,
            ok: Answer {
                description: "Metrics as Prometheus text.",
                content_type: "text/plain; version=0.0.4",
                schema: None,
                examples: vec![("ok", "", json!("# HELP plantwatch_devices Devices by network and status.\n# TYPE plantwatch_devices gauge\nplantwatch_devices{network=\"bldg-a\",status=\"online\"} 20\n"))],
            },
            errors: &[],
        },
        Operation {
            method: HttpMethod::Get,
            path: SPEC_PATH,
            tag: "service",
            id: "openapi",
            summary: "This OpenAPI document",
            description: "The OpenAPI 3 document of the API; browse it at `/docs`.",
            params: vec![],
            body: None,
            ok: Answer {
                description: "The document.",
                content_type: "application/json",
                schema: None,
                examples: vec![],
            },
            errors: &[],
        },
        Operation {
            method: HttpMethod::Get,
            path: "/api/v1/networks",
            tag: "networks",
            id: "listNetworks",
            summary: "Networks",
            description: "The configured BACnet/IP networks with device counts by status (one page).",
            params: vec![],
            body: None,
            ok: Answer::json("The networks.", schema_name::<NetworkList>(), ex.networks.clone()),
            errors: &[],
        },
        Operation {
            method: HttpMethod::Get,
            path: "/api/v1/devices",
            tag: "devices",
            id: "listDevices",
            summary: "Devices",
            description: "Devices from the cache, filtered, sorted and paginated.",
            params: vec![
                query_param(
                    "network",
                    "Only devices on this configured network.",
                    ObjectBuilder::new().schema_type(Type::String),
                    Some(json!("bldg-a")),
                ),
                query_param(
                    "status",
                    "Only devices in this status.",
                    ref_of::<DeviceStatusView>(),
                    Some(json!("online")),
                ),
                search_param("devices"),
                sort_param(&DEVICE_SORTS, "-last_seen"),
                limit_param(),
                cursor_param(),
            ],
            body: None,
            ok: Answer::json("One page of devices.", schema_name::<DeviceList>(), ex.devices.clone()),
            errors: &[InvalidParameter, NetworkNotFound],
        },
        Operation {
            method: HttpMethod::Get,
            path: "/api/v1/devices/{instance}",
            tag: "devices",
            id: "getDevice",
            summary: "One device",
            description: "Identity, status, capabilities, counters and last error of one device.",
            params: vec![instance_param()],
            body: None,
            ok: Answer::json("The device.", schema_name::<DeviceView>(), ex.device.clone()),
            errors: &[InvalidParameter, DeviceNotFound],
        },
        Operation {
            method: HttpMethod::Get,
            path: "/api/v1/devices/{instance}/points",
            tag: "points",
            id: "listPoints",
            summary: "Points of a device",
            description: "Cached values of a device's points, filtered, sorted and paginated.",
            params: vec![
                instance_param(),
                query_param(
                    "type",
                    "Only objects of this type, by name.",
                    ObjectBuilder::new().schema_type(Type::String),
                    Some(json!("analog-input")),
                ),
                search_param("points"),
                query_param(
                    "quality",
                    "Only points of this quality now.",
                    ref_of::<QualityView>(),
                    Some(json!("good")),
                ),
                sort_param(&POINT_SORTS, "name"),
                limit_param(),
                cursor_param(),
            ],
            body: None,
            ok: Answer::json("One page of points.", schema_name::<PointList>(), ex.points.clone()),
            errors: &[InvalidParameter, DeviceNotFound],
        },
        Operation {
            method: HttpMethod::Get,
            path: "/api/v1/devices/{instance}/points/{object}",
            tag: "points",
            id: "getPoint",
            summary: "One point",
            description: "The cached value of one point; with `live=true`, its Present_Value read from the device \
                          now (within the request timeout).",
            params: vec![
                instance_param(),
                object_param(),
                query_param(
                    "live",
                    "Read the device now instead of answering from the cache.",
                    ObjectBuilder::new().schema_type(Type::Boolean).default(Some(json!(false))),
                    Some(json!(true)),
                ),
            ],
            body: None,
            ok: Answer {
                description: "The point.",
                content_type: "application/json",
                schema: Some(schema_name::<PointView>()),
                examples: vec![
                    ("analog", "An analog input from the cache", ex.point.clone()),
                    ("binary", "A commandable binary output", ex.binary.clone()),
                    ("multi-state", "A multi-state value with its state text", ex.multi_state.clone()),
                    ("live", "Read from the device now (`?live=true`)", ex.live.clone()),
                ],
            },
            errors: &[InvalidParameter, DeviceNotFound, PointNotFound, DeviceRefused, DeviceUnavailable, DeviceTimeout],
        },
        Operation {
            method: HttpMethod::Put,
            path: "/api/v1/devices/{instance}/points/{object}",
            tag: "points",
            id: "writePoint",
            summary: "Write a point",
            description: "Writes a value (default: Present_Value) at a priority, then reads back the point's \
                          Priority_Array and Present_Value. `\"value\": null` relinquishes the command at that \
                          priority. The value is validated against the object type: analog objects take a number, \
                          binary objects `\"active\"`/`\"inactive\"` (or `true`/`false`, `1`/`0`), multi-state \
                          objects a state number 1..N, characterstring-value a string. Every attempt, accepted, \
                          refused, failed or invalid, is recorded in the audit log before the answer.",
            params: vec![instance_param(), object_param()],
            body: Some(Body {
                schema: schema_name::<WriteBody>(),
                description: "The value and the priority.",
                examples: vec![
                    ("analog", "Command an analog output at priority 8", json!({"value": 42.0, "priority": 8})),
                    ("binary", "Switch a binary output on", json!({"value": "active", "priority": 8})),
                    ("multi-state", "Set a multi-state value to state 2", json!({"value": 2, "priority": 10})),
                    ("relinquish", "Give up the command at priority 8", json!({"value": null, "priority": 8})),
                    (
                        "lease",
                        "Command for 15 minutes, then relinquish",
                        json!({"value": 42.0, "priority": 8, "lease": "15m"}),
                    ),
                    (
                        "property",
                        "Write another property",
                        json!({"value": "Zone 2 temperature", "property": "description"}),
                    ),
                ],
            }),
            ok: Answer {
                description: "The device accepted the write; the read-back follows.",
                content_type: "application/json",
                schema: Some(schema_name::<WriteAnswer>()),
                examples: vec![
                    ("accepted", "Commanded at priority 8", ex.write.clone()),
                    ("relinquished", "Relinquished: the relinquish default applies again", ex.relinquish.clone()),
                ],
            },
            errors: &[
                InvalidParameter,
                MalformedBody,
                DeviceNotFound,
                PointNotFound,
                DeviceNotEnrolled,
                PayloadTooLarge,
                UnsupportedMediaType,
                ValidationFailed,
                DeviceRefused,
                DeviceUnavailable,
                DeviceBusy,
                StoreUnavailable,
                DeviceTimeout,
            ],
        },
        Operation {
            method: HttpMethod::Get,
            path: "/api/v1/devices/{instance}/points/{object}/history",
            tag: "points",
            id: "pointHistory",
            summary: "History of a point",
            description: "Recorded values between `from` and `to`, oldest first, paginated.",
            params: vec![
                instance_param(),
                object_param(),
                time_param(
                    "from",
                    "Start (RFC 3339), inclusive; default 24 hours before `to`.",
                    "2026-11-26T00:00:00Z",
                ),
                time_param(
                    "to",
                    "End (RFC 3339), exclusive; default now. Must be after `from`.",
                    "2026-11-26T03:00:00Z",
                ),
                limit_param(),
                cursor_param(),
            ],
            body: None,
            ok: Answer::json("One page of the history.", schema_name::<HistoryPage>(), ex.history.clone()),
            errors: &[InvalidParameter, DeviceNotFound, PointNotFound, StoreUnavailable],
        },
        Operation {
            method: HttpMethod::Post,
            path: "/api/v1/discovery",
            tag: "discovery",
            id: "discover",
            summary: "Discover devices",
            description: "Sends Who-Is on a network and answers the devices whose I-Am arrived within `wait_ms`.",
            params: vec![],
            body: Some(Body {
                schema: schema_name::<DiscoveryBody>(),
                description: "Where and how long to look; `{}` on a single network.",
                examples: vec![
                    ("network", "Every device on bldg-a", json!({"network": "bldg-a"})),
                    (
                        "range",
                        "Instances 1000..1999, 3 s",
                        json!({"network": "bldg-a", "low": 1000, "high": 1999, "wait_ms": 3000}),
                    ),
                ],
            }),
            ok: Answer::json("The devices that answered.", schema_name::<DiscoveryAnswer>(), ex.discovery.clone()),
            errors: &[
                MalformedBody,
                NetworkNotFound,
                PayloadTooLarge,
                UnsupportedMediaType,
                ValidationFailed,
                Internal,
            ],
        },
        Operation {
            method: HttpMethod::Get,
            path: "/api/v1/keys",
            tag: "keys",
            id: "listKeys",
            summary: "API keys",
            description: "Every API key with its role, creation, last use and revocation; never the key itself.",
            params: vec![],
            body: None,
            ok: Answer::json("The keys.", schema_name::<KeyList>(), ex.keys.clone()),
            errors: &[],
        },
        Operation {
            method: HttpMethod::Post,
            path: "/api/v1/keys",
            tag: "keys",
            id: "createKey",
            summary: "Make an API key",
            description: "Makes a key with a role (`read`, `operator`, `admin`). The answer shows the key this once: \
                          only its hash is stored.",
            params: vec![],
            body: Some(Body {
                schema: schema_name::<KeyCreateBody>(),
                description: "A name for who uses the key, and its role.",
                examples: vec![(
                    "operator",
                    "A key for a building management system",
                    json!({"name": "bms", "role": "operator"}),
                )],
            }),
            ok: Answer::json("The new key, shown once.", schema_name::<KeyCreated>(), ex.key_created.clone()),
            errors: &[MalformedBody, PayloadTooLarge, UnsupportedMediaType, ValidationFailed, StoreUnavailable],
        },
        Operation {
            method: HttpMethod::Delete,
            path: "/api/v1/keys/{id}",
            tag: "keys",
            id: "revokeKey",
            summary: "Revoke an API key",
            description: "Revokes the key at once: its next request is refused. The record stays for the audit trail.",
            params: vec![path_param(
                "id",
                "The key's id (from GET /api/v1/keys).",
                ObjectBuilder::new().schema_type(Type::String),
                json!("3f2a9c01d4e5"),
            )],
            body: None,
            ok: Answer::json("The revoked key.", schema_name::<KeyView>(), ex.key_revoked.clone()),
            errors: &[KeyNotFound, StoreUnavailable],
        },
        Operation {
            method: HttpMethod::Get,
            path: "/api/v1/audit",
            tag: "audit",
            id: "listAudit",
            summary: "Write audit log",
            description: "Every write attempt, oldest first, paginated.",
            params: vec![limit_param(), cursor_param()],
            body: None,
            ok: Answer::json("One page of the audit log.", schema_name::<AuditList>(), ex.audit.clone()),
            errors: &[InvalidParameter, StoreUnavailable],
        },
        Operation {
            method: HttpMethod::Get,
            path: "/api/v1/leases",
            tag: "points",
            id: "listLeases",
            summary: "Leased writes",
            description: "Every lease that runs (a write with `lease`), by device, object and priority, paginated. \
                          When a lease runs out, plantwatch relinquishes its priority slot and audits it with actor \
                          `lease`; an expired lease stays listed until its device answers.",
            params: vec![
                query_param(
                    "device",
                    "Only the leases of this device instance.",
                    ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(0)).maximum(Some(4_194_302)),
                    Some(json!(1001)),
                ),
                limit_param(),
                cursor_param(),
            ],
            body: None,
            ok: Answer::json("One page of leases.", schema_name::<LeaseList>(), ex.leases.clone()),
            errors: &[InvalidParameter],
        },
    ]
}

/// Every schema the document names, with the ones they refer to.
fn schemas() -> Vec<(String, RefOr<Schema>)> {
    fn add<T: ToSchema>(out: &mut Vec<(String, RefOr<Schema>)>) {
        out.push((T::name().into_owned(), T::schema()));
        T::schemas(out);
    }
    let mut out = Vec::new();
    add::<HealthView>(&mut out);
    add::<ReadyView>(&mut out);
    add::<NetworkList>(&mut out);
    add::<DeviceList>(&mut out);
    add::<DeviceView>(&mut out);
    add::<PointList>(&mut out);
    add::<PointView>(&mut out);
    add::<PointValue>(&mut out);
    add::<HistoryPage>(&mut out);
    add::<WriteBody>(&mut out);
    add::<WriteAnswer>(&mut out);
    add::<DiscoveryBody>(&mut out);
    add::<DiscoveryAnswer>(&mut out);
    add::<AuditList>(&mut out);
    add::<LeaseList>(&mut out);
    add::<LeaseView>(&mut out);
    add::<KeyList>(&mut out);
    add::<KeyView>(&mut out);
    add::<KeyCreateBody>(&mut out);
    add::<KeyCreated>(&mut out);
    add::<ErrorEnvelope>(&mut out);
    add::<DeviceStatusView>(&mut out);
    add::<QualityView>(&mut out);
    out
}

/// The error responses of a route, by status, one example per code.
/// `instance_route`: the route has an `{instance}` (its bad-parameter example
/// is about that rather than `limit`).
fn error_responses(errors: &[ErrorCode], instance_route: bool) -> BTreeMap<u16, utoipa::openapi::Response> {
    let mut by_status: BTreeMap<u16, Vec<ErrorCode>> = BTreeMap::new();
    for c in errors {
        by_status.entry(c.status().as_u16()).or_default().push(*c);
    }
    by_status
        .into_iter()
        .map(|(status, codes)| {
            let names: Vec<&str> = codes.iter().map(|c| c.as_str()).collect();
            let content = ContentBuilder::new()
                .schema(Some(ref_of::<ErrorEnvelope>()))
                .examples_from_iter(codes.iter().map(|c| {
                    let (message, _) = error_example(*c, instance_route);
                    let value = error_envelope_example(*c, instance_route);
                    (c.as_str(), ExampleBuilder::new().summary(message).value(Some(value)).build())
                }))
                .build();
            let reason = StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("Error");
            let mut response = ResponseBuilder::new()
                .description(format!("{reason}: {}.", names.join(", ")))
                .content("application/json", content)
                .header("X-Request-Id", request_id_header());
            if status == StatusCode::TOO_MANY_REQUESTS.as_u16() {
                response = response.header("Retry-After", retry_after_header());
            }
            (status, response.build())
        })
        .collect()
}

fn request_id_header() -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
        .description(Some("The request's id: the client's `X-Request-Id` if it is a sane token, else a new one."))
        .build()
}

fn retry_after_header() -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(Some(ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1))))
        .description(Some("Seconds to wait before the next request is allowed."))
        .build()
}

/// The two ways of sending a key, as security schemes.
fn security_schemes() -> [(&'static str, SecurityScheme); 2] {
    let bearer = HttpBuilder::new()
        .scheme(HttpAuthScheme::Bearer)
        .bearer_format("pw_ and 64 hex digits")
        .description(Some("An API key: `Authorization: Bearer pw_...`."))
        .build();
    let header = ApiKeyValue::with_description("X-API-Key", "An API key: `X-API-Key: pw_...`.");
    [(BEARER_SCHEME, SecurityScheme::Http(bearer)), (HEADER_SCHEME, SecurityScheme::ApiKey(ApiKey::Header(header)))]
}

/// The security requirements of a route: either way of sending a key (each
/// scheme is a requirement of its own: one of them is enough), none for a
/// public route, and "none or a key" for one that needs a key only in some
/// configurations (`/metrics`).
fn security_of(method: &warp::http::Method, path: &str) -> Option<(Vec<SecurityRequirement>, super::auth::Role)> {
    let by_default = super::auth::required_role(method, path, true);
    let at_most = super::auth::required_role(method, path, false)?;
    let either = [BEARER_SCHEME, HEADER_SCHEME].map(|s| SecurityRequirement::new(s, Vec::<String>::new()));
    let mut requirements = Vec::new();
    if by_default.is_none() {
        requirements.push(SecurityRequirement::default());
    }
    requirements.extend(either);
    Some((requirements, at_most))
}

/// The OpenAPI document.
pub fn document() -> OpenApi {
    let mut paths = Paths::new();
    for op in operations() {
        let mut ok = ResponseBuilder::new().description(op.ok.description).header("X-Request-Id", request_id_header());
        let mut content = ContentBuilder::new();
        content = match op.ok.schema {
            Some(name) => content.schema(Some(Ref::from_schema_name(name))),
            None if op.ok.content_type.starts_with("text/") => {
                content.schema(Some(ObjectBuilder::new().schema_type(Type::String)))
            }
            None => content.schema(Some(ObjectBuilder::new().schema_type(Type::Object))),
        };
        content = content.examples_from_iter(op.ok.examples.iter().map(|(name, summary, value)| {
            (*name, ExampleBuilder::new().summary(*summary).value(Some(value.clone())).build())
        }));
        ok = ok.content(op.ok.content_type, content.build());
        let mut responses = ResponsesBuilder::new().response("200", ok.build());
        let instance_route = op.path.contains("{instance}");
        // Every route can be rate-limited; one that needs a key can be refused without one.
        let mut errors = op.errors.to_vec();
        let method = match op.method {
            HttpMethod::Put => warp::http::Method::PUT,
            HttpMethod::Post => warp::http::Method::POST,
            HttpMethod::Delete => warp::http::Method::DELETE,
            _ => warp::http::Method::GET,
        };
        let security = security_of(&method, op.path);
        let mut description = op.description.to_string();
        if let Some((requirements, role)) = &security {
            errors.extend([ErrorCode::Unauthenticated, ErrorCode::Forbidden]);
            let when = if requirements.iter().any(|r| *r == SecurityRequirement::default()) {
                " when `auth.metrics_public = false`"
            } else {
                ""
            };
            description.push_str(&format!("\n\nNeeds a key with the `{}` role{when}.", role.as_str()));
        }
        errors.push(ErrorCode::RateLimited);
        for (status, r) in error_responses(&errors, instance_route) {
            responses = responses.response(status.to_string(), r);
        }
        let mut operation = OperationBuilder::new()
            .tag(op.tag)
            .operation_id(Some(op.id))
            .summary(Some(op.summary))
            .description(Some(description))
            .parameters(Some(op.params))
            .securities(security.map(|(requirements, _)| requirements))
            .responses(responses.build());
        if let Some(body) = op.body {
            let content = ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(body.schema)))
                .examples_from_iter(body.examples.into_iter().map(|(name, summary, value)| {
                    (name, ExampleBuilder::new().summary(summary).value(Some(value)).build())
                }))
                .build();
            operation = operation.request_body(Some(
                RequestBodyBuilder::new()
                    .description(Some(body.description))
                    .required(Some(Required::True))
                    .content("application/json", content)
                    .build(),
            ));
        }
        paths.add_path_operation(op.path, vec![op.method], operation.build());
    }
    let tag = |name: &str, description: &str| TagBuilder::new().name(name).description(Some(description)).build();
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("plantwatch")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(DESCRIPTION))
                .license(Some(utoipa::openapi::info::LicenseBuilder::new().name("MIT OR Apache-2.0").build())),
        )
        .paths(paths)
        .components(Some(
            security_schemes()
                .into_iter()
                .fold(ComponentsBuilder::new().schemas_from_iter(schemas()), |c, (name, scheme)| {
                    c.security_scheme(name, scheme)
                })
                .build(),
        ))
        .tags(Some([
            tag("service", "Health, readiness, metrics and this document."),
            tag("networks", "The configured BACnet/IP networks."),
            tag("devices", "Devices and their state, from the cache."),
            tag("points", "Points: cached values, live reads, writes and history."),
            tag("discovery", "Who-Is on demand."),
            tag("audit", "The log of write attempts."),
            tag("keys", "API keys and their roles (admin)."),
        ]))
        .build()
}

/// The document as JSON, made once.
static SPEC_JSON: LazyLock<Result<String, String>> =
    LazyLock::new(|| document().to_pretty_json().map_err(|e| format!("the OpenAPI document: {e}")));

// ---------------------------------------------------------------- examples

fn to_json<T: Serialize>(t: &T) -> Json {
    serde_json::to_value(t).unwrap_or(Json::Null)
}

/// 2026-11-26T02:10:03.120Z
const EXAMPLE_NOW: u64 = 1_795_659_003_120;
const EXAMPLE_REQUEST_ID: &str = "0f6c2d8e4b1a4f7e9c3d5a6b7c8d9e0f";

/// Example answers, made by the view code from example snapshots.
struct Examples {
    device: Json,
    devices: Json,
    networks: Json,
    point: Json,
    binary: Json,
    multi_state: Json,
    live: Json,
    points: Json,
    history: Json,
    write: Json,
    relinquish: Json,
    discovery: Json,
    audit: Json,
    leases: Json,
    keys: Json,
    key_created: Json,
    key_revoked: Json,
}

fn example_point(object: ObjectId, name: &str, value: Value) -> Point {
    let mut p = Point::new(object, Duration::from_secs(10), false);
    p.name = name.into();
    p.value = Some(value);
    p.quality = Quality::Good;
    p.status_flags = Some(StatusFlags::default());
    p.updated_at = EXAMPLE_NOW;
    p
}

fn example_device() -> DeviceSnapshot {
    let address = Address::direct(std::net::SocketAddr::from(([192, 168, 1, 20], 47808)));
    let mut s = DeviceSnapshot::new(1001, "bldg-a", address, None);
    s.status = DeviceStatus::Online;
    s.identity = Some(DeviceIdentity {
        name: "AHU-1".into(),
        vendor_name: "Acme Controls".into(),
        vendor_id: 260,
        model_name: "AC-2000".into(),
        firmware_revision: "4.2.1".into(),
        database_revision: Some(17),
        max_apdu: 1476,
        segmentation: Some(Segmentation::Both),
        rpm_listed: true,
        cov_listed: true,
    });
    let mut ai = example_point(ObjectId::new(object_type::ANALOG_INPUT, 1), "Zone Temp", Value::Real(21.4));
    ai.units = Some(62);
    ai.description = "Zone temperature".into();
    let mut ao = example_point(ObjectId::new(object_type::ANALOG_OUTPUT, 1), "Supply Fan Speed", Value::Real(42.0));
    ao.units = Some(98);
    ao.commandable = true;
    let mut bo = example_point(ObjectId::new(object_type::BINARY_OUTPUT, 1), "Supply Fan", Value::Enumerated(1));
    bo.commandable = true;
    let mut msv = example_point(ObjectId::new(object_type::MULTI_STATE_VALUE, 1), "Mode", Value::Unsigned(2));
    msv.state_text = vec!["off".into(), "heat".into(), "cool".into()];
    msv.commandable = true;
    s.points = vec![ai, ao, bo, msv];
    s.points.sort_by_key(|p| p.object);
    s.last_seen = Some(EXAMPLE_NOW);
    s.counters = DeviceCounters {
        polls_ok: 8640,
        polls_failed: 3,
        timeouts: 3,
        restarts: 0,
        enrolments: 1,
        overruns: 0,
        cov_checks: 12,
        cov_silent: 0,
    };
    s.cov_subscriptions = 1;
    s
}

impl Examples {
    fn new() -> Self {
        let s = example_device();
        let now = EXAMPLE_NOW + 1_500;
        let find = |o: ObjectId| s.point(o).map(|p| view::point(p, now)).unwrap_or(Json::Null);
        let ai1 = ObjectId::new(object_type::ANALOG_INPUT, 1);
        let ao1 = ObjectId::new(object_type::ANALOG_OUTPUT, 1);
        let device = view::device(&s);
        let cursor =
            |sort: &str, value: SortValue, id: String| params::encode_cursor(&Cursor { sort: sort.into(), value, id });
        let mut live = find(ai1);
        live["live"] = json!(true);
        let history_items: Vec<HistorySample> = [(0u64, 21.2), (60_000, 21.3), (120_000, 21.4)]
            .iter()
            .map(|(dt, v)| HistorySample {
                time: view::time(EXAMPLE_NOW - 120_000 + dt).as_str().unwrap_or_default().to_string(),
                value: PointValue(json!(v)),
                quality: QualityView::Good,
            })
            .collect();
        Examples {
            devices: json!({
                "items": [device],
                "next_cursor": cursor("instance", SortValue::Num(1001), format!("{:08}", 1001)),
            }),
            device,
            networks: to_json(&NetworkList {
                items: vec![NetworkView {
                    name: "bldg-a".into(),
                    bind: "192.168.1.10:47808".into(),
                    discover: true,
                    devices: 3,
                    by_status: StatusCounts { enrolling: 0, online: 2, degraded: 0, offline: 1, failed: 0 },
                }],
                next_cursor: None,
            }),
            point: find(ai1),
            binary: find(ObjectId::new(object_type::BINARY_OUTPUT, 1)),
            multi_state: find(ObjectId::new(object_type::MULTI_STATE_VALUE, 1)),
            live,
            points: json!({
                "items": s.points.iter().take(2).map(|p| view::point(p, now)).collect::<Vec<_>>(),
                "next_cursor": cursor("object", SortValue::Num(u64::from(ao1.raw())), format!("{:010}", ao1.raw())),
            }),
            history: to_json(&HistoryPage {
                object: "analog-input:1".into(),
                units: Some("degrees-celsius".into()),
                items: history_items,
                next_cursor: None,
            }),
            write: to_json(&WriteAnswer {
                object: "analog-output:1".into(),
                property: "present-value".into(),
                priority: Some(8),
                value: PointValue(json!(42.0)),
                outcome: "accepted".into(),
                active_priority: Some(8),
                present_value: PointValue(view::value(ao1, &Value::Real(42.0))),
                request_id: EXAMPLE_REQUEST_ID.into(),
                lease: None,
            }),
            relinquish: to_json(&WriteAnswer {
                object: "analog-output:1".into(),
                property: "present-value".into(),
                priority: Some(8),
                value: PointValue(Json::Null),
                outcome: "accepted".into(),
                active_priority: None,
                present_value: PointValue(view::value(ao1, &Value::Real(0.0))),
                request_id: EXAMPLE_REQUEST_ID.into(),
                lease: None,
            }),
            discovery: to_json(&DiscoveryAnswer {
                network: "bldg-a".into(),
                items: vec![
                    FoundDevice {
                        instance: 1001,
                        address: "192.168.1.20:47808".into(),
                        route: None,
                        max_apdu: 1476,
                        vendor_id: 260,
                        known: true,
                    },
                    FoundDevice {
                        instance: 1002,
                        address: "192.168.1.21:47808".into(),
                        route: None,
                        max_apdu: 480,
                        vendor_id: 260,
                        known: false,
                    },
                ],
            }),
            audit: to_json(&AuditList {
                items: vec![AuditRecordView {
                    sequence: 41,
                    time: "2026-11-26T02:11:40.512Z".into(),
                    key_id: "anonymous".into(),
                    request_id: EXAMPLE_REQUEST_ID.into(),
                    device: 1001,
                    object: "analog-output:1".into(),
                    property: "present-value".into(),
                    priority: Some(8),
                    old_value: PointValue(json!(35.0)),
                    new_value: PointValue(json!(42.0)),
                    outcome: AuditOutcome::Accepted,
                    error: None,
                    actor: Some("api".into()),
                    action: None,
                    lease: None,
                    lease_until: None,
                    active_priority: None,
                    present_value: None,
                }],
                next_cursor: None,
            }),
            leases: to_json(&LeaseList {
                items: vec![LeaseView {
                    device: 1001,
                    network: "bldg-a".into(),
                    object: "analog-output:1".into(),
                    priority: 8,
                    value: PointValue(json!(42.0)),
                    since: "2026-11-26T02:10:00.000Z".into(),
                    until: "2026-11-26T02:25:00.000Z".into(),
                    key_id: "anonymous".into(),
                    reasserts: 0,
                }],
                next_cursor: None,
            }),
            keys: to_json(&KeyList { items: vec![example_key(None)], next_cursor: None }),
            key_created: to_json(&KeyCreated::new(
                example_key(None),
                "pw_9d4c0b8e3a1f27c65b0e4d8a9f3c2b1a0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b".into(),
            )),
            key_revoked: to_json(&example_key(Some("2026-11-26T03:00:00.000Z"))),
        }
    }
}

fn example_key(revoked: Option<&str>) -> KeyView {
    KeyView {
        id: "3f2a9c01d4e5".into(),
        name: "bms".into(),
        role: "operator".into(),
        created: "2026-11-20T08:00:00.000Z".into(),
        last_used: None,
        revoked: revoked.map(str::to_string),
    }
}

/// A realistic message and details for each code (exhaustive: a new code
/// needs its example).
fn error_example(code: ErrorCode, instance_route: bool) -> (&'static str, Json) {
    let fields = |field: &str, reason: &str| json!({"fields": [{"field": field, "reason": reason}]});
    match code {
        ErrorCode::InvalidParameter if instance_route => (
            "instance: must be a device instance 0..4194302",
            fields("instance", "must be a device instance 0..4194302"),
        ),
        ErrorCode::InvalidParameter => ("limit: must be 1..1000", fields("limit", "must be 1..1000")),
        ErrorCode::MalformedBody => {
            ("the body is not the expected JSON: expected value at line 1 column 10", json!({}))
        }
        ErrorCode::ValidationFailed => {
            ("the write is not valid: analog-output takes a number", fields("value", "analog-output takes a number"))
        }
        ErrorCode::NotFound => ("no such route; GET /api/v1/openapi.json lists them", json!({})),
        ErrorCode::NetworkNotFound => ("no network bldg-z", json!({})),
        ErrorCode::DeviceNotFound => ("no device 1099", json!({})),
        ErrorCode::PointNotFound => ("device 1001 has no point analog-input:9", json!({})),
        ErrorCode::MethodNotAllowed => ("this route does not take that method", json!({})),
        ErrorCode::CorsRejected => (
            "cross-origin request refused: the origin is not in cors.allowed_origins",
            json!({"origin": "https://elsewhere.example.com"}),
        ),
        ErrorCode::DeviceNotEnrolled => ("device 1001 is not enrolled yet; try again shortly", json!({})),
        ErrorCode::PayloadTooLarge => ("the body is larger than 16384 bytes", json!({})),
        ErrorCode::UnsupportedMediaType => ("send the body as Content-Type: application/json", json!({})),
        ErrorCode::DeviceRefused => (
            "device answered with error property:write-access-denied",
            json!({"bacnet": {"kind": "error", "class": 2, "code": 40, "text": "property:write-access-denied"}}),
        ),
        ErrorCode::Internal => ("the request could not be handled", json!({})),
        ErrorCode::NotReady => ("starting or stopping: the store or the supervisors are not up", json!({})),
        ErrorCode::DeviceUnavailable => ("device 1001 is offline", json!({})),
        ErrorCode::DeviceBusy => ("device 1001 has too many writes waiting; retry shortly", json!({})),
        ErrorCode::StoreUnavailable => ("the store failed; see the service log", json!({})),
        ErrorCode::DeviceTimeout => ("device 1001 did not answer within 10000 ms", json!({})),
        ErrorCode::RequestTimeout => ("the request did not finish within 10000 ms", json!({})),
        ErrorCode::Unauthenticated => ("no valid API key: send Authorization: Bearer KEY or X-API-Key", json!({})),
        ErrorCode::Forbidden => ("this route needs the operator role; the key has read", json!({})),
        ErrorCode::RateLimited => ("over the rate limit; retry after 1 s", json!({})),
        ErrorCode::KeyNotFound => ("no API key 3f2a9c01d4e5", json!({})),
    }
}

fn error_envelope_example(code: ErrorCode, instance_route: bool) -> Json {
    let (message, details) = error_example(code, instance_route);
    json!({"error": {
        "code": code.as_str(),
        "message": message,
        "status": code.status().as_u16(),
        "request_id": EXAMPLE_REQUEST_ID,
        "details": details,
    }})
}

// ---------------------------------------------------------------- serving

type Resp = warp::reply::Response;

/// `GET /api/v1/openapi.json`.
pub fn spec() -> impl Filter<Extract = (Resp,), Error = Rejection> + Clone {
    warp::path!("api" / "v1" / "openapi.json").and(warp::get()).map(|| match SPEC_JSON.as_ref() {
        Ok(body) => warp::reply::with_header(body.clone(), header::CONTENT_TYPE, "application/json").into_response(),
        Err(e) => ApiError::new(ErrorCode::Internal, e.clone()).into_response(),
    })
}

static SWAGGER: LazyLock<Arc<utoipa_swagger_ui::Config<'static>>> =
    LazyLock::new(|| Arc::new(utoipa_swagger_ui::Config::from(SPEC_PATH).deep_linking(true)));

fn swagger_file(path: &str) -> Result<Option<utoipa_swagger_ui::SwaggerFile<'static>>, String> {
    utoipa_swagger_ui::serve(path, SWAGGER.clone()).map_err(|e| format!("swagger ui: {e}"))
}

/// Swagger UI's index.html, made to work at `/docs` as well as `/docs/`
/// (a `<base>`), with the initializer (that names [`SPEC_PATH`]) inline.
fn docs_page() -> Result<String, String> {
    let text = |path: &str| -> Result<String, String> {
        let file = swagger_file(path)?.ok_or_else(|| format!("swagger ui has no {path}"))?;
        String::from_utf8(file.bytes.into_owned()).map_err(|e| format!("swagger ui {path}: {e}"))
    };
    let index = text("index.html")?;
    let init = text("swagger-initializer.js")?;
    let script = r#"<script src="./swagger-initializer.js" charset="UTF-8"> </script>"#;
    let charset = r#"<meta charset="UTF-8">"#;
    if !index.contains(script) || !index.contains(charset) || !init.contains(SPEC_PATH) {
        return Err("the vendored Swagger UI is not the expected one (index.html or its initializer)".into());
    }
    Ok(index
        .replacen(charset, &format!("{charset}\n    <base href=\"{DOCS_PATH}/\">"), 1)
        .replacen("<title>Swagger UI</title>", "<title>plantwatch API</title>", 1)
        .replacen(script, &format!("<script charset=\"UTF-8\">\n{init}\n    </script>"), 1))
}

static DOCS_PAGE: LazyLock<Result<String, String>> = LazyLock::new(docs_page);

/// The `/docs` page as served (its Content-Security-Policy hashes its inline script).
pub fn docs_page_text() -> Option<&'static str> {
    DOCS_PAGE.as_ref().ok().map(String::as_str)
}

fn docs_reply(tail: &str) -> Result<Resp, Rejection> {
    if tail.is_empty() || tail == "index.html" {
        return Ok(match DOCS_PAGE.as_ref() {
            Ok(page) => warp::reply::html(page.clone()).into_response(),
            Err(e) => ApiError::new(ErrorCode::Internal, e.clone()).into_response(),
        });
    }
    match swagger_file(tail) {
        Ok(Some(file)) => {
            let mut r = warp::reply::Response::new(file.bytes.into_owned().into());
            if let Ok(v) = header::HeaderValue::from_str(&file.content_type) {
                r.headers_mut().insert(header::CONTENT_TYPE, v);
            }
            if file.gzpipped {
                r.headers_mut().insert(header::CONTENT_ENCODING, header::HeaderValue::from_static("gzip"));
            }
            Ok(r)
        }
        Ok(None) => Err(warp::reject::not_found()),
        Err(e) => Ok(ApiError::new(ErrorCode::Internal, e).into_response()),
    }
}

/// `GET /docs` (and `/docs/`): the page; `GET /docs/{file}`: its files.
pub fn docs() -> impl Filter<Extract = (Resp,), Error = Rejection> + Clone {
    warp::path("docs")
        .and(warp::path::tail())
        .and(warp::get())
        .and_then(|tail: warp::path::Tail| async move { docs_reply(tail.as_str()) })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn doc() -> Json {
        serde_json::to_value(document()).expect("the document serializes")
    }

    const METHODS: [&str; 8] = ["get", "put", "post", "delete", "patch", "head", "options", "trace"];

    fn operations_of(doc: &Json) -> Vec<(String, String, Json)> {
        let mut out = Vec::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("path item") {
                if METHODS.contains(&method.as_str()) {
                    out.push((method.to_uppercase(), path.clone(), op.clone()));
                }
            }
        }
        out
    }

    #[test]
    fn every_route_is_documented_and_only_those() {
        let doc = doc();
        let documented: BTreeSet<(String, String)> = operations_of(&doc).into_iter().map(|(m, p, _)| (m, p)).collect();
        let routes: BTreeSet<(String, String)> =
            super::super::ROUTES.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
        assert_eq!(routes.len(), super::super::ROUTES.len(), "ROUTES has no duplicates");
        assert_eq!(documented, routes, "ROUTES and the document's paths");
        // every documented path has a route template of its own (logs, metrics)
        for (_, p) in &routes {
            let concrete = p.replace("{instance}", "1001").replace("{object}", "analog-input:1");
            assert_eq!(super::super::route_template(&concrete), p.as_str());
        }
        // the page is served beside the API, not part of it
        assert!(doc["paths"].get(DOCS_PATH).is_none());
        assert_eq!(super::super::route_template("/docs"), "/docs");
        assert_eq!(super::super::route_template("/docs/swagger-ui.css"), "/docs");
    }

    #[test]
    fn every_error_answer_is_the_envelope() {
        let doc = doc();
        let enveloped = json!({"$ref": "#/components/schemas/ErrorEnvelope"});
        let mut codes_used = BTreeSet::new();
        for (method, path, op) in operations_of(&doc) {
            let responses = op["responses"].as_object().expect("responses");
            assert!(responses.contains_key("200"), "{method} {path}: 200");
            if path.starts_with("/api/v1/") && path != SPEC_PATH && path != "/api/v1/networks" {
                assert!(responses.keys().any(|s| s.starts_with('4')), "{method} {path} documents its 4xx answers");
            }
            for (status, r) in responses {
                assert!(r["description"].as_str().is_some_and(|d| !d.is_empty()), "{method} {path} {status}");
                if status == "200" {
                    continue;
                }
                let content = &r["content"]["application/json"];
                assert_eq!(content["schema"], enveloped, "{method} {path} {status}");
                let examples = content["examples"].as_object().expect("examples");
                assert!(!examples.is_empty(), "{method} {path} {status}");
                for (code, ex) in examples {
                    let e = &ex["value"]["error"];
                    assert_eq!(e["code"], code.as_str());
                    assert_eq!(e["status"].to_string(), *status, "{method} {path}: {code} under {status}");
                    assert!(e["message"].is_string() && e["request_id"].is_string() && e["details"].is_object());
                    codes_used.insert(code.clone());
                }
            }
        }
        // the code enum lists every stable code
        let listed: BTreeSet<String> = doc["components"]["schemas"]["ErrorBody"]["properties"]["code"]["enum"]
            .as_array()
            .expect("code enum")
            .iter()
            .filter_map(|c| c.as_str().map(str::to_string))
            .collect();
        let all: BTreeSet<String> = ErrorCode::ALL.iter().map(|c| c.as_str().to_string()).collect();
        assert_eq!(listed, all);
        assert!(codes_used.is_subset(&all));
    }

    fn refs(v: &Json, out: &mut Vec<String>) {
        match v {
            Json::Object(m) => {
                for (k, x) in m {
                    match (k.as_str(), x) {
                        ("$ref", Json::String(r)) => out.push(r.clone()),
                        // examples are data, not schema
                        ("example" | "examples", _) => {}
                        _ => refs(x, out),
                    }
                }
            }
            Json::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }

    #[test]
    fn the_document_is_openapi_3_and_every_ref_resolves() {
        let doc = doc();
        assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")), "{}", doc["openapi"]);
        assert_eq!(doc["info"]["title"], "plantwatch");
        assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
        assert!(doc["info"]["description"].as_str().is_some_and(|d| d.contains("error")));
        let mut all = Vec::new();
        refs(&doc, &mut all);
        assert!(all.len() > 20, "{} refs", all.len());
        for r in all {
            let name = r.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("a local schema ref: {r}"));
            assert!(doc["components"]["schemas"].get(name).is_some(), "{r} resolves");
        }
        let tags: BTreeSet<&str> =
            doc["tags"].as_array().expect("tags").iter().filter_map(|t| t["name"].as_str()).collect();
        let mut ids = BTreeSet::new();
        for (method, path, op) in operations_of(&doc) {
            assert!(ids.insert(op["operationId"].to_string()), "{method} {path}: unique operationId");
            for t in op["tags"].as_array().expect("tags") {
                assert!(tags.contains(t.as_str().unwrap_or("")), "{method} {path}: tag {t} declared");
            }
            // path parameters: exactly those of the template
            let in_template: BTreeSet<String> = path
                .split('/')
                .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
                .map(str::to_string)
                .collect();
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            let declared: BTreeSet<String> = params
                .iter()
                .filter(|p| p["in"] == "path")
                .filter_map(|p| p["name"].as_str().map(str::to_string))
                .collect();
            assert_eq!(in_template, declared, "{method} {path}");
            for p in &params {
                assert!(["path", "query"].contains(&p["in"].as_str().unwrap_or("")), "{p}");
                assert!(p["schema"].is_object(), "{method} {path}: {p}");
                if p["in"] == "path" {
                    assert_eq!(p["required"], true);
                }
            }
            if op.get("requestBody").is_some() {
                assert!(["PUT", "POST"].contains(&method.as_str()));
            }
        }
    }

    #[test]
    fn routes_that_need_a_key_say_how_to_send_it() {
        let doc = doc();
        let schemes = &doc["components"]["securitySchemes"];
        assert_eq!(
            (&schemes[BEARER_SCHEME]["type"], &schemes[BEARER_SCHEME]["scheme"]),
            (&json!("http"), &json!("bearer"))
        );
        assert_eq!(
            (&schemes[HEADER_SCHEME]["type"], &schemes[HEADER_SCHEME]["in"], &schemes[HEADER_SCHEME]["name"]),
            (&json!("apiKey"), &json!("header"), &json!("X-API-Key"))
        );
        let both: BTreeSet<String> = [BEARER_SCHEME, HEADER_SCHEME].iter().map(|s| s.to_string()).collect();
        for (method, path, op) in operations_of(&doc) {
            let m: warp::http::Method = method.parse().expect("a method");
            let by_default = super::super::auth::required_role(&m, &path, true);
            let at_most = super::super::auth::required_role(&m, &path, false);
            let security = op["security"].as_array().cloned().unwrap_or_default();
            let optional = security.contains(&json!({}));
            match (by_default, at_most) {
                (None, None) => assert!(security.is_empty(), "{method} {path} is public: {security:?}"),
                (None, Some(_)) => assert!(optional, "{method} {path}: a key is optional"),
                (Some(_), _) => assert!(!optional, "{method} {path} needs a key"),
            }
            if let Some(role) = at_most {
                let names: BTreeSet<String> =
                    security.iter().filter_map(|r| r.as_object()).flat_map(|r| r.keys().cloned()).collect();
                assert_eq!(names, both, "{method} {path}: either way of sending a key");
                let needs = format!("Needs a key with the `{}` role", role.as_str());
                assert!(op["description"].as_str().is_some_and(|d| d.contains(&needs)), "{method} {path}: {needs}");
                assert!(
                    op["responses"].get("401").is_some() && op["responses"].get("403").is_some(),
                    "{method} {path}"
                );
            }
            let retry_after = &op["responses"]["429"]["headers"]["Retry-After"];
            assert_eq!(retry_after["schema"]["type"], "integer", "{method} {path}: 429 has Retry-After");
        }
    }

    #[test]
    fn parameters_name_their_ranges_and_enums() {
        let doc = doc();
        let param = |path: &str, method: &str, name: &str| -> Json {
            doc["paths"][path][method]["parameters"]
                .as_array()
                .and_then(|ps| ps.iter().find(|p| p["name"] == name).cloned())
                .unwrap_or_else(|| panic!("{method} {path} ?{name}"))
        };
        let limit = param("/api/v1/devices", "get", "limit");
        assert_eq!((limit["schema"]["minimum"].as_u64(), limit["schema"]["maximum"].as_u64()), (Some(1), Some(1000)));
        let sort = param("/api/v1/devices", "get", "sort");
        let sorts: Vec<&str> =
            sort["schema"]["enum"].as_array().expect("enum").iter().filter_map(|v| v.as_str()).collect();
        assert!(sorts.contains(&"name") && sorts.contains(&"-last_seen"), "{sorts:?}");
        assert_eq!(
            param("/api/v1/devices", "get", "status")["schema"]["$ref"],
            "#/components/schemas/DeviceStatusView"
        );
        let quality = &doc["components"]["schemas"]["QualityView"]["enum"];
        assert_eq!(*quality, json!(["good", "stale", "comm-failure", "error"]));
        assert_eq!(
            param("/api/v1/devices/{instance}/points/{object}/history", "get", "from")["schema"]["format"],
            "date-time"
        );
        let body = &doc["components"]["schemas"]["WriteBody"]["properties"]["priority"];
        assert_eq!((body["minimum"].as_u64(), body["maximum"].as_u64()), (Some(1), Some(16)), "{body}");
    }

    /// docs/api.md, the guide for people, names every route and every code.
    #[test]
    fn the_api_guide_names_every_route_and_code() {
        let guide = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/api.md")).expect("docs/api.md");
        for (method, path) in super::super::ROUTES {
            assert!(guide.contains(&format!("### {method} {path}")), "docs/api.md has a section for {method} {path}");
        }
        for code in ErrorCode::ALL {
            assert!(guide.contains(&format!("| `{}` | {} |", code.as_str(), code.status().as_u16())), "{code:?}");
        }
    }

    #[tokio::test]
    async fn the_spec_is_served_as_json() {
        let r = warp::test::request().path(SPEC_PATH).reply(&spec()).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
        let served: Json = serde_json::from_slice(r.body()).expect("JSON");
        assert_eq!(served, doc());
    }

    #[tokio::test]
    async fn docs_serves_a_page_that_loads_the_spec() {
        for path in ["/docs", "/docs/", "/docs/index.html"] {
            let r = warp::test::request().path(path).reply(&docs()).await;
            assert_eq!(r.status(), 200, "{path}");
            assert!(r.headers()[header::CONTENT_TYPE].to_str().is_ok_and(|c| c.starts_with("text/html")));
            let html = String::from_utf8(r.body().to_vec()).expect("utf-8");
            assert!(html.contains(&format!("\"{SPEC_PATH}\"")), "{path} names the spec: {html}");
            assert!(html.contains("<base href=\"/docs/\">") && html.contains("swagger-ui-bundle.js"), "{html}");
        }
        // the page's own files, relative to the base
        for (file, kind) in [("swagger-ui-bundle.js", "javascript"), ("swagger-ui.css", "text/css")] {
            let r = warp::test::request().path(&format!("/docs/{file}")).reply(&docs()).await;
            assert_eq!(r.status(), 200, "{file}");
            assert!(r.headers()[header::CONTENT_TYPE].to_str().is_ok_and(|c| c.contains(kind)), "{file}");
            assert!(r.body().len() > 10_000, "{file}");
        }
        let r = warp::test::request().path("/docs/nope.js").reply(&docs().recover(super::super::error::recover)).await;
        assert_eq!(r.status(), 404);
        let r = warp::test::request()
            .method("POST")
            .path("/docs")
            .reply(&docs().recover(super::super::error::recover))
            .await;
        assert_eq!(r.status(), 405);
    }
}
