//! The API's manners towards browsers and the network, on a real listener:
//! security headers on every kind of answer, CORS, HTTPS with a generated
//! certificate, and oversized request heads.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use plantwatch::api::headers::Cors;
use plantwatch::api::{self, ApiState, HttpSettings};
use plantwatch_actors::plant::{Directory, PlantHandle, SupervisionStats};
use plantwatch_actors::store::{Store, StoreConfig};
use reqwest::header::HeaderMap;
use serde_json::Value as Json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Served {
    addr: std::net::SocketAddr,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// The API over an empty plant, with `http` settings.
async fn serve(http: HttpSettings) -> Served {
    let dir = tempfile::tempdir().expect("tempdir");
    let sc = StoreConfig::new(dir.path().join("store"));
    let store = tokio::task::spawn_blocking(move || Store::open(&sc)).await.expect("join").expect("store");
    let plant = PlantHandle { directory: Directory::default(), stats: Arc::new(SupervisionStats::default()) };
    let leases =
        plantwatch::lease::Leases::load(store.clone(), plant.clone(), Duration::from_secs(3)).await.expect("leases");
    let state = ApiState {
        plant,
        store,
        networks: Arc::new(Vec::new()),
        request_timeout: Duration::from_secs(3),
        ready: Arc::new(AtomicBool::new(true)),
        http,
        security: api::Security::open(),
        max_points: 25_000,
        site: None,
        leases,
        max_lease: Duration::from_secs(86_400),
    };
    let listener = api::bind("127.0.0.1:0".parse().expect("addr")).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(api::serve(listener, state, async move {
        let _ = stopped.await;
    }));
    Served { addr, _dir: dir, _stop: stop }
}

fn assert_security_headers(h: &HeaderMap, what: &str) {
    assert_eq!(h["x-content-type-options"], "nosniff", "{what}");
    assert_eq!(h["x-frame-options"], "DENY", "{what}");
    assert_eq!(h["referrer-policy"], "no-referrer", "{what}");
    assert!(h.contains_key("content-security-policy"), "{what}");
    assert!(h.contains_key("x-request-id"), "{what}");
}

#[tokio::test]
async fn every_kind_of_answer_carries_the_security_headers() {
    let app = serve(HttpSettings::default()).await;
    let base = format!("http://{}", app.addr);
    let client = crate::support::http_client();
    let strict = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";
    for (method, path, status) in [
        ("GET", "/health", 200),
        ("GET", "/api/v1/devices/1001", 404),
        ("GET", "/no/such/route", 404),
        ("DELETE", "/api/v1/devices", 405),
        ("OPTIONS", "/api/v1/devices", 405),
    ] {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let r = client.request(m, format!("{base}{path}")).send().await.expect("request");
        assert_eq!(r.status().as_u16(), status, "{method} {path}");
        let h = r.headers().clone();
        assert_security_headers(&h, path);
        assert_eq!(h["content-security-policy"], strict, "{method} {path}");
        assert!(!h.contains_key("strict-transport-security"), "no HSTS over plain HTTP");
        assert!(!h.contains_key("access-control-allow-origin"), "no CORS unless configured");
        if status >= 400 {
            let body: Json = r.json().await.expect("json");
            assert_eq!(body["error"]["status"], status, "the envelope");
        }
    }
    // the docs page: its own scripts and styles, its inline initializer by hash, inline styles
    let r = client.get(format!("{base}/docs")).send().await.expect("request");
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert_security_headers(&h, "/docs");
    let csp = h["content-security-policy"].to_str().expect("ascii").to_string();
    assert!(csp.starts_with("default-src 'none'; script-src 'self' 'sha256-"), "{csp}");
    assert!(csp.contains("style-src 'self' 'unsafe-inline'") && csp.contains("connect-src 'self'"), "{csp}");
    let page = r.text().await.expect("page");
    for asset in ["swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js"] {
        assert!(page.contains(asset), "the page loads {asset}");
        let r = client.get(format!("{base}/docs/{asset}")).send().await.expect("request");
        assert_eq!(r.status(), 200, "{asset}");
        assert_security_headers(r.headers(), asset);
    }
}

fn cors_settings() -> HttpSettings {
    HttpSettings {
        cors: Cors { allowed_origins: vec!["https://ops.example.com".into()], ..Cors::default() },
        ..HttpSettings::default()
    }
}

#[tokio::test]
async fn a_preflight_from_an_allowed_origin_is_answered() {
    let app = serve(cors_settings()).await;
    let r = crate::support::http_client()
        .request(reqwest::Method::OPTIONS, format!("http://{}/api/v1/devices/1001/points/analog-output:1", app.addr))
        .header("origin", "https://ops.example.com")
        .header("access-control-request-method", "PUT")
        .header("access-control-request-headers", "content-type, x-api-key")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 204);
    let h = r.headers();
    assert_eq!(h["access-control-allow-origin"], "https://ops.example.com");
    assert_eq!(h["access-control-allow-methods"], "GET, PUT, POST, DELETE");
    assert_eq!(h["access-control-allow-headers"], "authorization, x-api-key, content-type, x-request-id");
    assert_eq!(h["access-control-max-age"], "600");
    assert_eq!(h["vary"], "origin");
    assert_security_headers(h, "preflight");
}

#[tokio::test]
async fn a_preflight_from_another_origin_is_refused_in_the_envelope() {
    let app = serve(cors_settings()).await;
    let client = crate::support::http_client();
    for (origin, method) in [("https://evil.example.com", "GET"), ("https://ops.example.com", "PATCH")] {
        let r = client
            .request(reqwest::Method::OPTIONS, format!("http://{}/api/v1/devices", app.addr))
            .header("origin", origin)
            .header("access-control-request-method", method)
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 403);
        let h = r.headers().clone();
        assert!(!h.contains_key("access-control-allow-origin"));
        assert_security_headers(&h, "refused preflight");
        let body: Json = r.json().await.expect("json");
        assert_eq!(body["error"]["code"], "CORS_REJECTED", "{body}");
        assert_eq!(body["error"]["request_id"], h["x-request-id"].to_str().expect("ascii"));
    }
}

#[tokio::test]
async fn simple_requests_get_allow_origin_only_from_allowed_origins() {
    let app = serve(cors_settings()).await;
    let client = crate::support::http_client();
    let get = |origin: &'static str| {
        client.get(format!("http://{}/api/v1/networks", app.addr)).header("origin", origin).send()
    };
    let r = get("https://ops.example.com").await.expect("request");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["access-control-allow-origin"], "https://ops.example.com");
    assert_eq!(r.headers()["vary"], "origin");
    let r = get("https://evil.example.com").await.expect("request");
    assert_eq!(r.status(), 200, "the server answers; the browser withholds it");
    assert!(!r.headers().contains_key("access-control-allow-origin"));
    assert_eq!(r.headers()["vary"], "origin");
}

/// A CA, and a certificate it signed for localhost and 127.0.0.1: (CA PEM, cert PEM, key PEM).
fn generate_certificates() -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().expect("ca key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "plantwatch test CA");
    let ca = ca_params.self_signed(&ca_key).expect("ca");
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
    let key = rcgen::KeyPair::generate().expect("key");
    let params = rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).expect("params");
    let cert = params.signed_by(&key, &issuer).expect("cert");
    (ca.pem(), cert.pem(), key.serialize_pem())
}

#[tokio::test]
async fn https_round_trip_with_a_generated_certificate() {
    let (ca_pem, cert_pem, key_pem) = generate_certificates();
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert_pem).expect("write");
    std::fs::write(&key_path, key_pem).expect("write");
    let acceptor = api::tls::acceptor(&cert_path, &key_path).expect("the acceptor");
    let app = serve(HttpSettings { tls: Some(acceptor), ..HttpSettings::default() }).await;

    // trust exactly the generated CA; verification stays on
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject;
    let ca_der = rustls::pki_types::CertificateDer::from_pem_slice(ca_pem.as_bytes()).expect("ca der");
    roots.add(ca_der).expect("add the CA");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let client = {
        crate::support::install_crypto_provider();
        reqwest::Client::builder()
    }
    .tls_backend_preconfigured(tls)
    .build()
    .expect("client");

    let r = client.get(format!("https://127.0.0.1:{}/health", app.addr.port())).send().await.expect("HTTPS");
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_11);
    assert_eq!(r.headers()["strict-transport-security"], "max-age=31536000");
    assert_security_headers(r.headers(), "https");
    let body: Json = r.json().await.expect("json");
    assert_eq!(body["status"], "ok", "{body}");
    let r = client.get(format!("https://localhost:{}/no/such", app.addr.port())).send().await.expect("HTTPS");
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["strict-transport-security"], "max-age=31536000");

    // a client that does not trust the CA is refused (verification is real)
    let untrusting = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let other = {
        crate::support::install_crypto_provider();
        reqwest::Client::builder()
    }
    .tls_backend_preconfigured(untrusting)
    .build()
    .expect("client");
    assert!(other.get(format!("https://127.0.0.1:{}/health", app.addr.port())).send().await.is_err());

    // plain HTTP on the TLS port gets no answer
    let plain = crate::support::http_client().get(format!("http://{}/health", app.addr)).send().await;
    assert!(plain.is_err() || plain.is_ok_and(|r| r.status().as_u16() >= 400));
}

/// Sends `head` raw and returns what came back before the connection closed
/// or 3 s passed.
async fn raw(addr: std::net::SocketAddr, head: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let _ = s.write_all(head).await;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {
                out.extend_from_slice(&buf[..n]);
                if out.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            _ => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn an_oversized_request_head_gets_a_4xx_or_a_closed_connection() {
    let app = serve(HttpSettings::default()).await;
    let ok = format!("GET /health HTTP/1.1\r\nhost: x\r\nx-pad: {}\r\nconnection: close\r\n\r\n", "a".repeat(8 * 1024));
    let answer = raw(app.addr, ok.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "an 8 KiB header is fine: {answer:?}");
    for size in [20 * 1024, 200 * 1024] {
        let big = format!("GET /health HTTP/1.1\r\nhost: x\r\nx-pad: {}\r\n\r\n", "a".repeat(size));
        let answer = raw(app.addr, big.as_bytes()).await;
        let status_line = answer.lines().next().unwrap_or("");
        assert!(answer.is_empty() || status_line.starts_with("HTTP/1.1 4"), "a {size}-byte header: {status_line:?}");
        eprintln!("a {size}-byte header: {:?}", if answer.is_empty() { "connection closed" } else { status_line });
    }
    // many small headers add up the same way
    let many: String = (0..2000).map(|i| format!("x-h{i}: v\r\n")).collect();
    let answer = raw(app.addr, format!("GET /health HTTP/1.1\r\nhost: x\r\n{many}\r\n").as_bytes()).await;
    let status_line = answer.lines().next().unwrap_or("");
    assert!(answer.is_empty() || status_line.starts_with("HTTP/1.1 4"), "many headers: {status_line:?}");
    // and the server is still there
    let answer = raw(app.addr, b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
}
