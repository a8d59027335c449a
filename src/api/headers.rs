//! Browser-facing manners of every answer: security headers and CORS.
//!
//! [`finish`] runs on every response just before it leaves `serve()`
//! (success, error envelope, 404, 405, timeouts, `/docs`), and [`preflight`]
//! answers CORS preflights (`OPTIONS` with `Access-Control-Request-Method`)
//! before any route, key or rate limit is looked at: a browser sends no
//! credentials on a preflight.
//!
//! JSON answers get `Content-Security-Policy: default-src 'none'`; the `/docs`
//! page gets a policy that allows exactly what the vendored Swagger UI loads:
//! its scripts and styles from `'self'`, the one inline initializer script by
//! its SHA-256 hash, inline styles (Swagger UI sets `style` attributes), images
//! from `'self'` and `data:`, and `fetch` of the OpenAPI document from `'self'`.

use std::net::IpAddr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use warp::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use warp::http::{Method, StatusCode};
use warp::reply::Response;
use warp::Reply;

use super::error::{ApiError, ErrorCode};

/// What `serve()` needs beyond the routes: TLS, CORS, trusted proxies.
#[derive(Clone, Default)]
pub struct HttpSettings {
    /// Serve HTTPS with this acceptor (and send HSTS); `None`: plain HTTP.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    pub cors: Cors,
    /// Peers whose `X-Forwarded-For` is believed (see [`super::proxy::client_ip`]).
    pub trusted_proxies: Arc<Vec<IpAddr>>,
}

impl std::fmt::Debug for HttpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSettings")
            .field("tls", &self.tls.is_some())
            .field("cors", &self.cors)
            .field("trusted_proxies", &self.trusted_proxies)
            .finish()
    }
}

/// CORS as configured in `[cors]`. No origins (the default): no CORS headers
/// at all, and every preflight is refused.
#[derive(Debug, Clone)]
pub struct Cors {
    /// Exact origins, lower case (`https://ops.example.com`).
    pub allowed_origins: Vec<String>,
    pub allowed_methods: Vec<Method>,
    /// Lower case header names.
    pub allowed_headers: Vec<String>,
    pub max_age: Duration,
}

impl Default for Cors {
    fn default() -> Self {
        Self {
            allowed_origins: Vec::new(),
            allowed_methods: vec![Method::GET, Method::PUT, Method::POST, Method::DELETE],
            allowed_headers: ["authorization", "x-api-key", "content-type", "x-request-id"]
                .map(str::to_string)
                .to_vec(),
            max_age: Duration::from_secs(600),
        }
    }
}

impl Cors {
    pub fn from_config(c: &crate::config::CorsConfig) -> Self {
        Self {
            allowed_origins: c.allowed_origins.iter().map(|o| o.to_ascii_lowercase()).collect(),
            allowed_methods: c.allowed_methods.iter().filter_map(|m| Method::from_bytes(m.as_bytes()).ok()).collect(),
            allowed_headers: c.allowed_headers.iter().map(|h| h.to_ascii_lowercase()).collect(),
            max_age: c.max_age,
        }
    }

    fn enabled(&self) -> bool {
        !self.allowed_origins.is_empty()
    }

    /// The origin as given if it is allowed.
    fn allows<'a>(&self, origin: Option<&'a HeaderValue>) -> Option<&'a HeaderValue> {
        let o = origin?;
        let text = o.to_str().ok()?.to_ascii_lowercase();
        self.allowed_origins.contains(&text).then_some(o)
    }
}

/// Marks a refused preflight: [`finish`] adds no `Access-Control-Allow-Origin` to it.
#[derive(Debug, Clone, Copy)]
struct PreflightRefused;

/// Answers a CORS preflight: 204 with the `Access-Control-*` headers when the
/// origin, method and headers asked for are all allowed, else 403
/// `CORS_REJECTED`. `None`: not a preflight (let the routes answer).
pub fn preflight(http: &HttpSettings, method: &Method, headers: &HeaderMap) -> Option<Response> {
    if method != Method::OPTIONS {
        return None;
    }
    let origin = headers.get(header::ORIGIN)?;
    let asked = headers.get(header::ACCESS_CONTROL_REQUEST_METHOD)?;
    let cors = &http.cors;
    let refuse = |reason: &str| {
        let shown = String::from_utf8_lossy(origin.as_bytes()).chars().take(200).collect::<String>();
        let mut r = ApiError::new(ErrorCode::CorsRejected, format!("cross-origin request refused: {reason}"))
            .with_details(serde_json::json!({"origin": shown}))
            .into_response();
        r.extensions_mut().insert(PreflightRefused);
        Some(r)
    };
    let Some(origin) = cors.allows(Some(origin)) else {
        return refuse("the origin is not in cors.allowed_origins");
    };
    let method_ok = Method::from_bytes(asked.as_bytes()).is_ok_and(|m| cors.allowed_methods.contains(&m));
    if !method_ok {
        return refuse("the method is not in cors.allowed_methods");
    }
    let asked_headers = headers
        .get_all(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("\u{0}").split(','))
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .collect::<Vec<_>>();
    if let Some(h) = asked_headers.iter().find(|h| !cors.allowed_headers.contains(h)) {
        let h: String = h.chars().take(100).collect();
        return refuse(&format!("the header {h:?} is not in cors.allowed_headers"));
    }
    let mut resp = warp::reply::with_status(warp::reply(), StatusCode::NO_CONTENT).into_response();
    let h = resp.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    let methods = cors.allowed_methods.iter().map(Method::as_str).collect::<Vec<_>>().join(", ");
    let allow_headers = cors.allowed_headers.join(", ");
    for (name, value) in [
        (header::ACCESS_CONTROL_ALLOW_METHODS, methods),
        (header::ACCESS_CONTROL_ALLOW_HEADERS, allow_headers),
        (header::ACCESS_CONTROL_MAX_AGE, cors.max_age.as_secs().to_string()),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
    Some(resp)
}

/// The policy of JSON (and every other non-page) answer.
pub const CSP_API: &str = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// The policy of the `/docs` page (see the module documentation).
pub fn csp_docs() -> &'static str {
    static CSP: LazyLock<String> = LazyLock::new(|| {
        let hashes: String = super::openapi::docs_page_text()
            .map(inline_scripts)
            .unwrap_or_default()
            .iter()
            .map(|s| {
                format!(" 'sha256-{}'", base64(ring::digest::digest(&ring::digest::SHA256, s.as_bytes()).as_ref()))
            })
            .collect();
        format!(
            "default-src 'none'; script-src 'self'{hashes}; style-src 'self' 'unsafe-inline'; \
             img-src 'self' data:; font-src 'self' data:; connect-src 'self'; \
             frame-ancestors 'none'; base-uri 'self'; form-action 'none'"
        )
    });
    &CSP
}

/// The text of each inline `<script>` (one without `src`) of an HTML page.
pub fn inline_scripts(html: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find("<script") {
        let after = &rest[start..];
        let Some(tag_end) = after.find('>') else { break };
        let tag = &after[..tag_end];
        let body = &after[tag_end + 1..];
        let Some(close) = body.find("</script>") else { break };
        if !tag.contains("src=") {
            out.push(&body[..close]);
        }
        rest = &body[close..];
    }
    out
}

fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ABC[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Adds the security and CORS headers to an answer. `origin` is the
/// request's `Origin`; `docs` whether it was a `/docs` request.
pub fn finish(resp: &mut Response, http: &HttpSettings, origin: Option<&HeaderValue>, docs: bool) {
    let is_html = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/html"));
    let csp = if docs && is_html { csp_docs() } else { CSP_API };
    let h = resp.headers_mut();
    let fixed: [(HeaderName, &str); 3] = [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
    ];
    for (name, value) in fixed {
        h.insert(name, HeaderValue::from_static(value));
    }
    if let Ok(v) = HeaderValue::from_str(csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    if http.tls.is_some() {
        h.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=31536000"));
    }
    if http.cors.enabled() {
        h.append(header::VARY, HeaderValue::from_static("origin"));
        if !h.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN) && resp.extensions().get::<PreflightRefused>().is_none()
        {
            if let Some(o) = http.cors.allows(origin) {
                let h = resp.headers_mut();
                h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o.clone());
                h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("x-request-id"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors() -> HttpSettings {
        HttpSettings {
            cors: Cors { allowed_origins: vec!["https://ops.example.com".into()], ..Cors::default() },
            ..HttpSettings::default()
        }
    }

    fn preflight_headers(origin: &str, method: &str, headers: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ORIGIN, HeaderValue::from_str(origin).expect("value"));
        h.insert(header::ACCESS_CONTROL_REQUEST_METHOD, HeaderValue::from_str(method).expect("value"));
        if !headers.is_empty() {
            h.insert(header::ACCESS_CONTROL_REQUEST_HEADERS, HeaderValue::from_str(headers).expect("value"));
        }
        h
    }

    #[test]
    fn base64_matches_the_rfc_examples() {
        for (input, out) in [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foobar", "Zm9vYmFy")] {
            assert_eq!(base64(input.as_bytes()), out);
        }
    }

    #[test]
    fn inline_scripts_are_found_and_sourced_ones_skipped() {
        let html = "<script src=\"a.js\"> </script><script charset=\"UTF-8\">\nrun();\n</script>";
        assert_eq!(inline_scripts(html), vec!["\nrun();\n"]);
    }

    #[test]
    fn the_docs_policy_hashes_every_inline_script_of_the_page() {
        let page = super::super::openapi::docs_page_text().expect("the docs page builds");
        let scripts = inline_scripts(page);
        assert!(!scripts.is_empty(), "the initializer is inline");
        for s in scripts {
            let hash = base64(ring::digest::digest(&ring::digest::SHA256, s.as_bytes()).as_ref());
            assert!(csp_docs().contains(&format!("'sha256-{hash}'")));
        }
        assert!(csp_docs().starts_with("default-src 'none'"));
        assert!(!csp_docs().contains("script-src 'self' 'unsafe-inline'"));
    }

    #[test]
    fn preflight_from_an_allowed_origin_is_answered() {
        let h = preflight_headers("https://ops.example.com", "PUT", "Content-Type, X-API-Key");
        let r = preflight(&cors(), &Method::OPTIONS, &h).expect("a preflight");
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        assert_eq!(r.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "https://ops.example.com");
        assert_eq!(r.headers()[header::ACCESS_CONTROL_MAX_AGE], "600");
    }

    #[test]
    fn preflight_refusals() {
        for (origin, method, headers) in [
            ("https://evil.example.com", "GET", ""),
            ("https://ops.example.com", "PATCH", ""),
            ("https://ops.example.com", "GET", "x-secret"),
        ] {
            let h = preflight_headers(origin, method, headers);
            let r = preflight(&cors(), &Method::OPTIONS, &h).expect("a preflight");
            assert_eq!(r.status(), StatusCode::FORBIDDEN, "{origin} {method} {headers}");
            assert!(!r.headers().contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
        }
        // no CORS configured: every preflight is refused
        let h = preflight_headers("https://ops.example.com", "GET", "");
        let r = preflight(&HttpSettings::default(), &Method::OPTIONS, &h).expect("a preflight");
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        // not a preflight
        assert!(preflight(&cors(), &Method::GET, &h).is_none());
        assert!(preflight(&cors(), &Method::OPTIONS, &HeaderMap::new()).is_none());
    }
}
