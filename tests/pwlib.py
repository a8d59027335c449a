"""What the soak, bench, container and fleet scripts share: finding the
binary, free loopback ports, the HTTP API and /metrics, a `plantwatch serve`
process with its log, and /proc figures of a process. Standard library only.

A script under tests/<dir>/ imports it with

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import pwlib
"""

import collections
import json
import os
import random
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICK = os.sysconf("SC_CLK_TCK")
ANSI = re.compile(r"\x1b\[[0-9;]*m")

# ---------------------------------------------------------------- the binary and ports


def find_binary(given=None, kinds=("release", "debug")):
    """The binary given, else target/release/plantwatch, else target/debug/plantwatch."""
    if given:
        return given
    for kind in kinds:
        path = os.path.join(ROOT, "target", kind, "plantwatch")
        if os.access(path, os.X_OK):
            return path
    raise SystemExit("no " + " nor ".join(f"target/{k}/plantwatch" for k in kinds)
                     + ": build it first, or pass --bin")


def free_port(kind=socket.SOCK_STREAM):
    """A port the kernel just had free on 127.0.0.1 (TCP by default)."""
    s = socket.socket(socket.AF_INET, kind)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def free_udp_ports(n):
    """A base port with n consecutive free UDP ports on 127.0.0.1."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 60000 - n)
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise SystemExit("no free range of UDP ports on 127.0.0.1")


# ---------------------------------------------------------------- the API and /metrics


def call(method, url, key=None, body=None, timeout=20, headers=None):
    """(status, raw body) of one request; HTTP errors are answers, network errors raise OSError."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def get_json(url, key=None, timeout=30):
    status, raw = call("GET", url, key, timeout=timeout)
    if status != 200:
        raise OSError(f"GET {url}: {status} {raw[:300]!r}")
    return json.loads(raw)


def paged(url, key=None, latencies=None):
    """Every item of a paged list (`items`, `next_cursor`); each page's time in ms to latencies."""
    out, cursor = [], None
    sep = "&" if "?" in url else "?"
    while True:
        t = time.perf_counter()
        page = get_json(url + (f"{sep}cursor={cursor}" if cursor else ""), key)
        if latencies is not None:
            latencies.append((time.perf_counter() - t) * 1000)
        out += page["items"]
        cursor = page.get("next_cursor")
        if not cursor:
            return out


def parse_metrics(text):
    """Prometheus text to {'name{labels}': value}."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        try:
            out[series] = float(value)
        except ValueError:
            pass
    return out


def scrape(base):
    status, raw = call("GET", f"{base}/metrics")
    if status != 200:
        raise OSError(f"GET {base}/metrics: {status}")
    return parse_metrics(raw.decode())


def msum(series, name, **labels):
    """Sum of the series of a family whose labels include these."""
    total = 0.0
    for k, v in series.items():
        if k == name or k.startswith(name + "{"):
            if all(f'{a}="{b}"' in k for a, b in labels.items()):
                total += v
    return total


def wait_until(what, fn, seconds, every=0.2):
    """Call fn until it returns a true value (network errors count as false); that value, or SystemExit."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            got = fn()
            if got:
                return got
        except (OSError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"{what}: not within {seconds} s")
        time.sleep(every)


def pct(values, q):
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, int(round(q * (len(v) - 1))))]


# ---------------------------------------------------------------- processes


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def threads(pid):
    return len(os.listdir(f"/proc/{pid}/task"))


def dir_bytes(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.stat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


def stop(proc, timeout=30):
    """SIGTERM, then SIGKILL after timeout; the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


class Serve:
    """One `plantwatch serve` (or any subcommand that logs "API listening addr=...").

    Its stdout and stderr go to log_path (None: kept only as a tail in memory);
    `on_line(stream, line)` sees every line, under the lock. `addr` is set
    once the API listens; `log` keeps every line when keep_log is set."""

    def __init__(self, binary, config, env=None, log_path=None, args=None, on_line=None, keep_log=False):
        cmd = [binary] + (args if args is not None else ["serve", "--config", config])
        self.log_path = log_path
        self.log_file = open(log_path, "w") if log_path else None
        self.started = time.time()
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     errors="replace")
        self.pid = self.proc.pid
        self.on_line = on_line
        self.log = [] if keep_log else None
        self.stdout_tail = collections.deque(maxlen=60)
        self.stderr_tail = collections.deque(maxlen=60)
        self.addr = None
        self.listening = threading.Event()
        self.lock = threading.Lock()
        self.readers = [threading.Thread(target=self._drain, args=(self.proc.stdout, self.stdout_tail, "out"),
                                         daemon=True),
                        threading.Thread(target=self._drain, args=(self.proc.stderr, self.stderr_tail, "err"),
                                         daemon=True)]
        for t in self.readers:
            t.start()

    def _drain(self, stream, tail, name):
        for line in stream:
            line = ANSI.sub("", line.rstrip("\n"))
            with self.lock:
                tail.append(line)
                if self.log is not None:
                    self.log.append(line)
                if self.log_file:
                    self.log_file.write(f"{name}: {line}\n")
                if self.addr is None and "API listening" in line and "addr=" in line:
                    self.addr = line.split("addr=")[1].split()[0]
                    self.listening.set()
                if self.on_line:
                    self.on_line(name, line)

    @property
    def base(self):
        return f"http://{self.addr}"

    def wait_listening(self, timeout=60):
        """The API's address, or None when the process exits or the timeout passes first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.listening.wait(0.05):
                return self.addr
            if self.proc.poll() is not None:
                break
        return None

    def require_listening(self, timeout=60):
        if self.wait_listening(timeout) is None:
            raise SystemExit(f"plantwatch did not start (exit {self.proc.poll()}); last lines:\n  "
                             + "\n  ".join(list(self.stderr_tail)[-15:] + list(self.stdout_tail)[-15:]))
        return self.base

    def kill(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.finish()

    def terminate(self, timeout=30):
        code = stop(self.proc, timeout)
        self.finish()
        return code

    def finish(self):
        for t in self.readers:
            t.join(timeout=5)
        with self.lock:
            if self.log_file:
                self.log_file.close()
                self.log_file = None

    def evidence(self):
        with self.lock:
            return {"returncode": self.proc.poll(), "log": self.log_path, "stderr_tail": list(self.stderr_tail),
                    "stdout_tail": list(self.stdout_tail)}
