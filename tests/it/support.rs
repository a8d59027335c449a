//! Helpers shared by the integration tests.

/// Bytes from a hex string with optional spaces.
pub fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).expect("ascii"), 16).expect("hex digits"))
        .collect()
}

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// The plantwatch binary with an empty environment (no PLANTWATCH__ or
/// RUST_LOG of the caller's leaks in): only PATH and, under `cargo llvm-cov`,
/// LLVM_PROFILE_FILE, so that what the child runs counts in the coverage
/// (without it every child wrote ./default_*.profraw and src/service.rs
/// showed 0%).
pub fn bare_plantwatch() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_plantwatch"));
    c.env_clear();
    for name in ["PATH", "LLVM_PROFILE_FILE"] {
        if let Some(value) = std::env::var_os(name) {
            c.env(name, value);
        }
    }
    c
}

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The Python that has the pinned interop peers (bacpypes3). `PLANTWATCH_PYTHON`
/// names one; otherwise a venv under target/ is made on first use, so that
/// `cargo test` works on a fresh machine (`.ci/run` makes it beforehand).
pub fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        if let Some(p) = std::env::var_os("PLANTWATCH_PYTHON") {
            return PathBuf::from(p);
        }
        let venv = repo().join("target/interop-venv");
        let python = venv.join("bin/python");
        let requirements = repo().join("tests/interop/requirements.txt");
        let ready = venv.join(".requirements-installed");
        let wanted = std::fs::read(&requirements).expect("tests/interop/requirements.txt");
        if std::fs::read(&ready).ok().as_deref() != Some(&wanted[..]) {
            let ok = std::process::Command::new("python3")
                .args(["-m", "venv"])
                .arg(&venv)
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "python3 -m venv {} failed", venv.display());
            let ok = std::process::Command::new(&python)
                .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r"])
                .arg(&requirements)
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "pip install -r {} failed", requirements.display());
            std::fs::write(&ready, &wanted).expect("mark the venv ready");
        }
        python
    })
}

/// A bacpypes3 device in its own process (tests/interop/bp3_device.py).
/// Dropping it closes its stdin and kills it.
pub struct Bp3Device {
    pub address: std::net::SocketAddr,
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Bp3Device {
    /// Starts a device on `ip` with an OS-chosen port.
    pub async fn start(ip: &str, instance: u32, objects: usize) -> Self {
        let mut child = Command::new(python())
            .arg(repo().join("tests/interop/bp3_device.py"))
            .args(["--address", ip, "--port", "0", "--instance", &instance.to_string()])
            .args(["--objects", &objects.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start bp3_device.py");
        let stdin = child.stdin.take().expect("stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), stdout.next_line())
            .await
            .expect("bp3_device.py did not get ready")
            .expect("read")
            .expect("bp3_device.py exited before it was ready");
        let ready: serde_json::Value = serde_json::from_str(&line).expect("ready line is JSON");
        let address = ready["address"].as_str().expect("address").parse().expect("socket address");
        Self { address, child, stdin, stdout }
    }

    /// Sends a control line (`set analog-input:1 25.5`) and checks the answer.
    pub async fn control(&mut self, line: &str) {
        self.stdin.write_all(format!("{line}\n").as_bytes()).await.expect("write control line");
        self.stdin.flush().await.expect("flush");
        let answer = tokio::time::timeout(Duration::from_secs(10), self.stdout.next_line())
            .await
            .expect("control answer")
            .expect("read")
            .expect("device exited");
        let v: serde_json::Value = serde_json::from_str(&answer).expect("JSON answer");
        assert_eq!(v["ok"], true, "{line}: {answer}");
    }
}

impl Drop for Bp3Device {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// An HTTP client for the tests. reqwest is built with rustls but without a
/// crypto provider of its own (`rustls-no-provider`: ring, like the server,
/// instead of aws-lc-rs), so the process's default provider is set first.
pub fn http_client() -> reqwest::Client {
    install_crypto_provider();
    reqwest::Client::new()
}

/// Makes ring the process's rustls provider (once; later calls do nothing).
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err: another provider is already installed, which serves as well.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
