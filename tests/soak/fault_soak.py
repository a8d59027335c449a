#!/usr/bin/env python3
"""Fault soak (issue 11 section 3): a compressed day of bad networks.

    python3 tests/soak/fault_soak.py [--minutes 30] [--bin target/debug/plantwatch] [--json FILE] [--keep]

Runs `plantwatch serve` against `plantwatch simulate` processes on loopback,
each a group of devices with its own faults, then a quiet phase without
faults, stops by itself after --minutes and prints PASS or FAIL (exit code 0
or 1). Python 3 standard library only; never builds (the release binary if
there is one, else the debug one; copied into the temp directory first so a
rebuild during the run does not swap it).

The groups (one simulator process each, every device with 14 objects: two of
every type):

  lossy     1001-1006  30% of requests dropped, answers 200 ms +- 100 ms late;
                       1004-1006 on COV instead of polling
  same      1101-1102  lossy, and vanish for minutes and come back as they were
  restart   1201-1202  lossy, vanish and come back restarted (priority arrays
                       and COV subscriptions cleared); on COV
  revision  1301-1302  lossy, vanish and come back reconfigured (a new
                       Database_Revision and a changed object list)
  garbage   1401       answers garbage to half of its requests (malformed
                       frames, or a right header over undecodable service data)
  router    1501-1504  behind a BACnet router (layout router, network 500),
                       lossy, and the router's network goes unreachable
                       (Reject-Message-To-Network) periodically and comes back

plus, through the API: an operator write of a normal value to a random
analog-output:2 every 5 s, and every 45 s a write of the poison value
(`[testing] poison_value`) to device 1002, which panics the device actor
that takes it (the supervisor restarts it from its snapshot).

Time compression: the run stands for 24 h of operation (x48 for 30 minutes):
poll 1 s (a site's 30-60 s), COV lifetime 6 s (300 s), history at least every
19 s (15 min), re-probe back-off at most 6 s (5 min), snapshots at most every
second. A 30-day retention cannot be compressed into a run, so history is kept
for half the warm-up (4.5 min of a 30-minute run) and pruned every quarter of
that: the store goes through its retention window many times and should level
off. Faults run for the first 90% of the run (at least 90 s of quiet at the
end); the warm-up is the first third of the fault phase.

Quiet phase: every simulator is stopped and started again without faults on
the same ports (so every device also restarts once more, and the reconfigured
ones go back to Database_Revision 1 and their first object list). From then on
the script checks convergence: every device online in the API, its points the
simulator's Object_List, every point good with the value the simulator answers
to a ReadProperty of Present_Value sent by this script (analog-inputs drift:
within 0.2), and writes of known values to analog-output:2 read back.

Sampled every 10 s: RSS of serve, store size on disk (files under the store
directory, and plantwatch_store_size_bytes), open fds (/proc/PID/fd), threads,
and from /metrics: plantwatch_actors{kind="device"}, plantwatch_runtime_alive_tasks,
plantwatch_bacnet_invoke_ids_in_use / _held and requests in flight, actor
restarts by reason, devices by status, history rows written and pruned.

Must hold (each reported, with its threshold):
  - RSS flat after the warm-up: the mean of the last three samples at most
    1.2x the mean of the three around the warm-up's end;
  - store flat: the same with 1.3x (sled writes in segments);
  - store on disk at most 5x its logical data (keys + values, from
    `plantwatch backup` after the clean stop, as tests/bench/scale.py does),
    once the store is past sled's floor of a few segments (SLED_FLOOR, 4 MB);
  - device actors == devices at the end; no give-ups;
  - every device converged (above) by the end;
  - no task leak: alive tasks at the end at most the level right after
    enrolment (faults and retries running) x1.1 + 10; no socket leak: open fds
    at the end at most that level + 4; no invoke-id leak: at the end, invoke
    ids in use == requests in flight (both 0 when idle) and held ids back to 0;
  - 0 panics escaping an actor: every "panicked at" line in serve's log is a
    poison-value panic, device restarts for panic == poison writes, no
    restarts for other reasons than panic, and serve stays up.
"""

import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import pwlib  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NETWORK = "soak"
POISON = 666.25
POISON_DEVICE = 1002
SAMPLE_EVERY = 10.0
WRITE_EVERY = 5.0
POISON_EVERY = 45.0
LOSS = ["--drop-rate", "0.3", "--slow-ms", "200", "--jitter-ms", "100"]


# ---------------------------------------------------------------- BACnet/IP, as much as a ReadProperty needs

OBJECT_TYPES = {"analog-input": 0, "analog-output": 1, "analog-value": 2, "binary-input": 3, "binary-output": 4,
                "multi-state-value": 19, "characterstring-value": 40, "device": 8}
SLED_FLOOR = 4_000_000  # bytes: the ratio check applies above this size
TYPE_NAMES = {v: k for k, v in OBJECT_TYPES.items()}
PRESENT_VALUE, OBJECT_LIST = 85, 76


def rp_request(invoke, obj_type, instance, prop, route=None):
    oid = struct.pack(">I", (obj_type << 22) | instance)
    if route is None:
        npdu = b"\x01\x04"
    else:
        mac = bytes.fromhex(route["mac"])
        npdu = b"\x01\x24" + struct.pack(">HB", route["network"], len(mac)) + mac + b"\xff"
    apdu = bytes([0x02, 0x75, invoke, 0x0C, 0x0C]) + oid + bytes([0x19, prop])
    body = npdu + apdu
    return bytes([0x81, 0x0A]) + struct.pack(">H", 4 + len(body)) + body


def apdu_of(d):
    """The APDU of a BACnet/IP datagram, or None."""
    if len(d) < 6 or d[0] != 0x81 or d[1] not in (0x0A, 0x0B):
        return None
    n = d[4:]
    if n[0] != 1:
        return None
    control, pos = n[1], 2
    if control & 0x20:
        pos += 3 + n[pos + 2]
    if control & 0x08:
        pos += 3 + n[pos + 2]
    if control & 0x20:
        pos += 1
    return n[pos:]


def app_values(b):
    """Decodes the application-tagged values in b (between opening and closing tag 3)."""
    out, i = [], 0
    while i < len(b):
        t = b[i]
        if t == 0x3F:
            break
        tag, cls, lvt = t >> 4, t & 0x08, t & 0x07
        i += 1
        if cls:
            raise ValueError(f"context tag {t:#x} in a value")
        if lvt == 5:
            lvt = b[i]
            i += 1
            if lvt == 254:
                lvt = struct.unpack(">H", b[i:i + 2])[0]
                i += 2
        if tag == 1:  # boolean: the value is in the length
            out.append(bool(lvt))
            continue
        data = b[i:i + lvt]
        i += lvt
        if tag == 2 or tag == 9:
            out.append(int.from_bytes(data, "big"))
        elif tag == 3:
            out.append(int.from_bytes(data, "big", signed=True))
        elif tag == 4:
            out.append(struct.unpack(">f", data)[0])
        elif tag == 5:
            out.append(struct.unpack(">d", data)[0])
        elif tag == 7:
            out.append(data[1:].decode("utf-8", errors="replace"))
        elif tag == 12:
            v = int.from_bytes(data, "big")
            out.append((v >> 22, v & 0x3FFFFF))
        else:
            out.append(("tag", tag, data.hex()))
    return out


class Reader:
    """ReadProperty straight to a simulated device, from this script's own socket."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.invoke = 0

    def read(self, dev, obj_type, instance, prop, attempts=4, timeout=1.0):
        host, port = dev["address"].rsplit(":", 1)
        for _ in range(attempts):
            self.invoke = (self.invoke + 1) % 256
            self.sock.sendto(rp_request(self.invoke, obj_type, instance, prop, dev.get("route")), (host, int(port)))
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                self.sock.settimeout(max(0.01, deadline - time.monotonic()))
                try:
                    d, _ = self.sock.recvfrom(4096)
                except socket.timeout:
                    break
                a = apdu_of(d)
                if not a or len(a) < 3 or a[1] != self.invoke:
                    continue
                if a[0] >> 4 == 3 and a[2] == 0x0C:
                    body = a[3:]
                    start = body.find(b"\x3e")
                    if start < 0:
                        return None
                    return app_values(body[start + 1:])
                return None  # Error, Reject or Abort
        return None

    def close(self):
        self.sock.close()


# ---------------------------------------------------------------- processes


class Group:
    """One `plantwatch simulate` process: a group of devices with its faults."""

    def __init__(self, name, first, count, faults, layout="port", cov=False, extra=()):
        self.name, self.first, self.count = name, first, count
        self.faults, self.layout, self.cov, self.extra = list(faults), layout, cov, list(extra)
        self.port = None
        self.proc = None
        self.devices = []

    def start(self, binary, tmp, with_faults):
        if self.port is None:
            self.port = pwlib.free_udp_ports(1 if self.layout == "router" else self.count)
        cmd = [binary, "simulate", "--devices", str(self.count), "--objects", "2", "--layout", self.layout,
               "--bind", f"127.0.0.1:{self.port}", "--first-instance", str(self.first)] + self.extra
        if with_faults:
            cmd += self.faults
        log = open(os.path.join(tmp, f"sim-{self.name}.log"), "a")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True)
        log.close()
        devices = []
        for _ in range(self.count):
            line = self.proc.stdout.readline()
            if not line:
                raise SystemExit(f"simulator {self.name} did not start: {' '.join(cmd)} (see sim-{self.name}.log)")
            devices.append(json.loads(line))
        threading.Thread(target=lambda p=self.proc: [None for _ in p.stdout], daemon=True).start()
        self.devices = devices
        return cmd

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Serve(pwlib.Serve):
    """`plantwatch serve`; also keeps the panics it logs, and those not caused by the poison."""

    def __init__(self, binary, config, env, log_path):
        self.panics, self.escaped = [], []
        self.pending_panic = False
        super().__init__(binary, config, env, log_path, on_line=self._panic)

    def _panic(self, _stream, line):
        if "panicked at" in line:
            self.panics.append(line.strip())
            self.pending_panic = True
        elif self.pending_panic:
            # the panic message is on the line after "panicked at ...:"
            self.pending_panic = False
            if "poison value" not in line and "poison value" not in self.panics[-1]:
                self.escaped.append(self.panics[-1] + " | " + line.strip())


# ---------------------------------------------------------------- the soak


class Soak:
    def __init__(self, args, tmp, binary):
        self.args, self.tmp, self.binary = args, tmp, binary
        self.total_s = args.minutes * 60
        self.quiet_s = max(90.0, 0.1 * self.total_s)
        self.fault_s = self.total_s - self.quiet_s
        self.warm_s = self.fault_s / 3
        self.retention_s = max(20, int(self.warm_s / 2))
        self.prune_s = max(2, self.retention_s // 4)
        self.max_interval_s = min(19, self.retention_s // 2)
        churn_every = max(30.0, self.fault_s / 7)
        churn = ["--churn-every", f"{churn_every:.0f}", "--churn-for", f"{churn_every / 3:.0f}"]
        outage = ["--router-outage-every", f"{churn_every * 0.8:.0f}", "--router-outage-for", f"{churn_every / 4:.0f}"]
        self.groups = [
            Group("lossy", 1001, 6, LOSS),
            Group("same", 1101, 2, LOSS + churn + ["--churn-return", "same"]),
            Group("restart", 1201, 2, LOSS + churn + ["--churn-return", "restart"], cov=True),
            Group("revision", 1301, 2, LOSS + churn + ["--churn-return", "new-revision"]),
            Group("garbage", 1401, 1, ["--garbage-rate", "0.2"]),
            Group("router", 1501, 4, LOSS + outage, layout="router", extra=["--router-network", "500"]),
        ]
        self.cov_devices = {1004, 1005, 1006} | set(range(1201, 1203))
        self.samples = []
        self.writes = {"normal_sent": 0, "normal_ok": 0, "poison_sent": 0}
        self.write_status = {}
        self.failures = []
        self.figures = {}

    def devices(self):
        return [d for g in self.groups for d in g.devices]

    def write_config(self):
        store = os.path.join(self.tmp, "store")
        cfg = [
            f'[store]\npath = "{store}"\nsnapshot_interval = "1s"\n',
            '[log]\nlevel = "warn,plantwatch::service=info"\n',
            '[auth]\nenabled = false\n',
            '[rate_limit]\nread_per_s = 100000\nwrite_per_s = 100000\nauth_failures_per_min = 100000\n',
            f'[history]\nmax_interval = "{self.max_interval_s}s"\nretention = "{self.retention_s}s"\n'
            f'prune_every = "{self.prune_s}s"\n',
            # a device actor restarted at most every 45 s by the poison: well inside the intensity
            '[supervision]\nrestart_intensity = 5\nrestart_window = "60s"\n',
            f'[testing]\npoison_value = {POISON}\n',
            f'[[network]]\nname = "{NETWORK}"\nbind = "127.0.0.1:0"\npoll = "1s"\napdu_timeout = "1s"\n'
            'apdu_retries = 3\nreprobe_max = "6s"\ncov_lifetime = "6s"\n',
        ]
        for d in self.devices():
            line = f'[[network.device]]\ninstance = {d["instance"]}\naddress = "{d["address"]}"\n'
            if d.get("route"):
                line += f'route = {{ network = {d["route"]["network"]}, mac = "{d["route"]["mac"]}" }}\n'
            if d["instance"] in self.cov_devices:
                line += "cov = true\n"
            cfg.append(line)
        self.config = os.path.join(self.tmp, "soak.toml")
        with open(self.config, "w") as f:
            f.write("\n".join(cfg))
        self.env = dict(os.environ, PLANTWATCH__SERVER__LISTEN="127.0.0.1:0")
        self.env.pop("RUST_LOG", None)
        check = subprocess.run([self.binary, "check-config", "--config", self.config], env=self.env,
                               capture_output=True, text=True)
        if check.returncode != 0:
            raise SystemExit(f"the soak configuration is refused: {check.stderr.strip()}")

    # ------------------------------------------------------------- sampling

    def sample(self, phase):
        pid = self.serve.proc.pid
        m = pwlib.scrape(self.base)
        s = {
            "t": round(time.monotonic() - self.t0, 1), "phase": phase,
            "rss_mb": round(pwlib.rss_mb(pid), 1), "fds": pwlib.fds(pid), "threads": pwlib.threads(pid),
            "store_dir_bytes": pwlib.dir_bytes(os.path.join(self.tmp, "store")),
            "store_metric_bytes": pwlib.msum(m, "plantwatch_store_size_bytes"),
            "device_actors": pwlib.msum(m, "plantwatch_actors", kind="device"),
            "network_actors": pwlib.msum(m, "plantwatch_actors", kind="network"),
            "tasks": pwlib.msum(m, "plantwatch_runtime_alive_tasks"),
            "invoke_in_use": pwlib.msum(m, "plantwatch_bacnet_invoke_ids_in_use"),
            "invoke_held": pwlib.msum(m, "plantwatch_bacnet_invoke_ids_held"),
            "in_flight": pwlib.msum(m, "plantwatch_bacnet_requests_in_flight"),
            "queued": pwlib.msum(m, "plantwatch_bacnet_requests_queued"),
            "process_open_fds": pwlib.msum(m, "process_open_fds"),
            "restarts_panic": pwlib.msum(m, "plantwatch_actor_restarts_total", kind="device", reason="panic"),
            "restarts_other": pwlib.msum(m, "plantwatch_actor_restarts_total")
                              - pwlib.msum(m, "plantwatch_actor_restarts_total", kind="device", reason="panic"),
            "give_ups": pwlib.msum(m, "plantwatch_actor_give_ups_total"),
            "history_written": pwlib.msum(m, "plantwatch_store_history_rows_written_total"),
            "history_pruned": pwlib.msum(m, "plantwatch_store_history_rows_pruned_total"),
            "timeouts": pwlib.msum(m, "plantwatch_bacnet_requests_total", outcome="timeout"),
            "malformed": pwlib.msum(m, "plantwatch_bacnet_malformed_frames_total"),
            "status": {st: int(pwlib.msum(m, "plantwatch_devices", status=st))
                       for st in ("enrolling", "online", "degraded", "offline", "failed")},
        }
        self.samples.append(s)
        st = s["status"]
        print(f"[{s['t']:7.1f}s {phase:7}] rss {s['rss_mb']:6.1f} MB  store {s['store_dir_bytes'] / 1e6:6.2f} MB  "
              f"fds {s['fds']:3d}  tasks {s['tasks']:4.0f}  actors {s['device_actors']:2.0f}  invoke {s['invoke_in_use']:3.0f}"
              f"/{s['in_flight']:3.0f} held {s['invoke_held']:3.0f}  online {st['online']:2d} degraded {st['degraded']:2d} "
              f"offline {st['offline']:2d} enrolling {st['enrolling']:2d}  panics {s['restarts_panic']:.0f}", flush=True)
        return s

    # ------------------------------------------------------------- load

    def write(self, instance, obj, value, priority=8):
        status, raw = pwlib.call("PUT", f"{self.base}/api/v1/devices/{instance}/points/{obj}",
                                 body={"value": value, "priority": priority}, timeout=30)
        self.write_status[status] = self.write_status.get(status, 0) + 1
        return status, raw

    def load(self, stop):
        """Normal writes every WRITE_EVERY s, the poison every POISON_EVERY s, until stop."""
        rng = random.Random(self.args.seed)
        next_write, next_poison = time.monotonic() + WRITE_EVERY, time.monotonic() + POISON_EVERY / 2
        while not stop.is_set():
            now = time.monotonic()
            try:
                if now >= next_poison:
                    next_poison += POISON_EVERY
                    self.writes["poison_sent"] += 1
                    self.write(POISON_DEVICE, "analog-output:1", POISON)
                if now >= next_write:
                    next_write += WRITE_EVERY
                    d = rng.choice(self.devices())["instance"]
                    self.writes["normal_sent"] += 1
                    status, _ = self.write(d, "analog-output:2", round(rng.uniform(0, 100), 2))
                    if status == 200:
                        self.writes["normal_ok"] += 1
            except OSError as e:
                self.write_status[f"error {type(e).__name__}"] = self.write_status.get(f"error {type(e).__name__}", 0) + 1
            stop.wait(0.2)

    # ------------------------------------------------------------- convergence

    def converged(self, reader, written):
        """Every device online, its points the simulator's objects, every point good and equal to the simulator."""
        problems = []
        listed = {d["instance"]: d for d in pwlib.get_json(self.base + "/api/v1/devices?limit=1000")["items"]}
        for dev in self.devices():
            i = dev["instance"]
            d = listed.get(i)
            if d is None or d["status"] != "online":
                problems.append(f"{i}: status {d and d['status']}")
                continue
            objects = reader.read(dev, 8, i, OBJECT_LIST)
            if objects is None:
                problems.append(f"{i}: the simulator did not answer Object_List")
                continue
            want = sorted(f"{TYPE_NAMES.get(t, t)}:{n}" for t, n in objects if t != 8)
            pts = {p["object"]: p for p in pwlib.get_json(self.base + f"/api/v1/devices/{i}/points?limit=1000")["items"]}
            if sorted(pts) != want:
                problems.append(f"{i}: points {sorted(set(pts) ^ set(want))} differ from the Object_List")
                continue
            for name, p in pts.items():
                kind, inst = name.rsplit(":", 1)
                got = reader.read(dev, OBJECT_TYPES[kind], int(inst), PRESENT_VALUE)
                if not got:
                    problems.append(f"{i} {name}: no answer from the simulator")
                    continue
                sim = got[0]
                api = p["value"]
                if kind.startswith("binary"):
                    sim = "active" if sim else "inactive"
                ok = p["quality"] == "good"
                if isinstance(sim, float):
                    ok = ok and isinstance(api, (int, float)) and abs(api - sim) <= (0.2 if kind == "analog-input" else 1e-3)
                else:
                    ok = ok and api == sim
                want_w = written.get((i, name))
                if want_w is not None and (not isinstance(sim, float) or abs(sim - want_w) > 1e-3):
                    ok = False
                if not ok:
                    problems.append(f"{i} {name}: api {api!r} ({p['quality']}) simulator {sim!r}"
                                    + (f" written {want_w}" if want_w is not None else ""))
        return problems

    # ------------------------------------------------------------- run

    def run(self):
        a = self.args
        print(f"fault soak: {a.minutes:g} min ({self.fault_s:.0f} s of faults, then {self.quiet_s:.0f} s quiet), "
              f"warm-up {self.warm_s:.0f} s; compression x{86400 / self.total_s:.0f} (the run stands for 24 h); "
              f"history every {self.max_interval_s} s at least, kept {self.retention_s} s, pruned every {self.prune_s} s")
        self.figures["simulators"] = []
        for g in self.groups:
            cmd = g.start(self.binary, self.tmp, with_faults=True)
            self.figures["simulators"].append(" ".join(os.path.basename(c) if i == 0 else c for i, c in enumerate(cmd)))
            print(f"  {g.name:8} {g.first}-{g.first + g.count - 1} at 127.0.0.1:{g.port}: {' '.join(g.faults)}")
        n_dev = len(self.devices())
        self.write_config()
        self.t0 = time.monotonic()
        self.serve = Serve(self.binary, self.config, self.env, os.path.join(self.tmp, "serve.log"))
        if not self.serve.listening.wait(60):
            raise SystemExit(f"plantwatch serve did not start; see {self.serve.log_path}")
        self.base = f"http://{self.serve.addr}"
        print(f"serve pid {self.serve.proc.pid}, API {self.base}, {n_dev} devices", flush=True)

        # every device enrolled once (faults and all), then the baseline
        deadline = time.monotonic() + 60
        while True:
            ds = pwlib.get_json(self.base + "/api/v1/devices?limit=1000")["items"]
            # the garbage device may take long to enrol: an enrolment fails at its first undecodable answer
            enrolled = [d for d in ds if d["points"] and d["status"] in ("online", "degraded") or d["instance"] == 1401]
            if len(enrolled) == n_dev:
                break
            if time.monotonic() > deadline:
                self.failures.append(f"only {len(enrolled)}/{n_dev} devices enrolled after 60 s")
                break
            time.sleep(0.5)
        self.figures["enrolled_after_s"] = round(time.monotonic() - self.t0, 1)
        print(f"{n_dev} devices enrolled after {self.figures['enrolled_after_s']} s", flush=True)
        time.sleep(5)
        baseline = self.sample("start")

        stop_load = threading.Event()
        loader = threading.Thread(target=self.load, args=(stop_load,), daemon=True)
        loader.start()
        next_sample = time.monotonic() + SAMPLE_EVERY
        warm_sample = None
        while time.monotonic() - self.t0 < self.fault_s:
            if self.serve.proc.poll() is not None:
                self.failures.append(f"serve exited with {self.serve.proc.returncode}")
                break
            if time.monotonic() >= next_sample:
                next_sample += SAMPLE_EVERY
                try:
                    self.sample("faults" if time.monotonic() - self.t0 >= self.warm_s else "warm-up")
                    if warm_sample is None and time.monotonic() - self.t0 >= self.warm_s:
                        warm_sample = len(self.samples) - 1
                except OSError as e:
                    print(f"sample failed: {e}", flush=True)
            time.sleep(0.2)
        stop_load.set()
        loader.join(timeout=60)

        # quiet: the simulators again, without faults
        quiet_t = time.monotonic()
        print(f"[{quiet_t - self.t0:7.1f}s] faults end: simulators restarted without faults", flush=True)
        for g in self.groups:
            g.stop()
        for g in self.groups:
            g.start(self.binary, self.tmp, with_faults=False)
        reader = Reader()
        written, converged_at, problems = {}, None, ["not checked"]
        next_sample = time.monotonic() + SAMPLE_EVERY
        next_check = time.monotonic() + 15
        while time.monotonic() - self.t0 < self.total_s and self.serve.proc.poll() is None:
            if time.monotonic() >= next_sample:
                next_sample += SAMPLE_EVERY
                try:
                    self.sample("quiet")
                except OSError as e:
                    print(f"sample failed: {e}", flush=True)
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + 10
                try:
                    # a known value on every device's analog-output:2 once it answers again
                    for dev in self.devices():
                        key = (dev["instance"], "analog-output:2")
                        if key not in written:
                            v = round(10 + dev["instance"] % 97 + 0.25, 2)
                            status, _ = self.write(dev["instance"], "analog-output:2", v)
                            if status == 200:
                                written[key] = v
                    problems = self.converged(reader, written)
                except OSError as e:
                    problems = [f"check failed: {e}"]
                if not problems and converged_at is None:
                    converged_at = time.monotonic() - quiet_t
                    print(f"every device converged {converged_at:.1f} s after the faults ended", flush=True)
                elif problems:
                    converged_at = None
                    print(f"not converged yet ({len(problems)}): {'; '.join(problems[:4])}", flush=True)
            time.sleep(0.2)
        # the last word: a final check at the end
        if self.serve.proc.poll() is None:
            try:
                problems = self.converged(reader, written)
            except OSError as e:
                problems = [f"check failed: {e}"]
            final = self.sample("end")
        else:
            final = self.samples[-1]
        reader.close()
        alive = self.serve.proc.poll() is None
        code = self.serve.terminate()
        for g in self.groups:
            g.stop()
        self.verdict(baseline, warm_sample, final, alive, code, problems, converged_at)

    def logical_size(self):
        out = subprocess.run([self.binary, "backup", "--config", self.config, "--out",
                              os.path.join(self.tmp, "backup.jsonl")], env=self.env, capture_output=True, text=True)
        m = re.search(r"data (\d+) bytes .*store on disk (\d+) bytes", out.stdout)
        if out.returncode != 0 or not m:
            return None, None
        return int(m.group(1)), int(m.group(2))

    def verdict(self, baseline, warm_i, final, alive, code, problems, converged_at):
        f, fail = self.figures, self.failures
        n_dev = len(self.devices())
        if warm_i is None:
            warm_i = len(self.samples) // 3
        around = self.samples[max(0, warm_i - 1):warm_i + 2]
        last3 = self.samples[-3:]
        mean = lambda xs, k: statistics.mean(s[k] for s in xs)  # noqa: E731
        f["rss_mb"] = {"start": baseline["rss_mb"], "warm_up_end": round(mean(around, "rss_mb"), 1),
                       "last": round(mean(last3, "rss_mb"), 1), "peak": max(s["rss_mb"] for s in self.samples)}
        f["store_bytes"] = {"warm_up_end": int(mean(around, "store_dir_bytes")),
                            "last": int(mean(last3, "store_dir_bytes")),
                            "peak": max(s["store_dir_bytes"] for s in self.samples)}
        rss_ratio = f["rss_mb"]["last"] / max(f["rss_mb"]["warm_up_end"], 0.1)
        store_ratio = f["store_bytes"]["last"] / max(f["store_bytes"]["warm_up_end"], 1)
        data, disk = self.logical_size()
        f["store_logical_bytes"], f["store_on_disk_bytes"] = data, disk
        logical_ratio = disk / data if data else float("inf")
        f["history_rows"] = {"written": final["history_written"], "pruned": final["history_pruned"]}
        f["counts_end"] = {k: final[k] for k in ("device_actors", "network_actors", "tasks", "fds", "threads",
                                                 "invoke_in_use", "invoke_held", "in_flight", "queued")}
        f["counts_start"] = {k: baseline[k] for k in ("device_actors", "tasks", "fds", "threads", "invoke_in_use",
                                                      "invoke_held", "in_flight")}
        f["max_during"] = {k: max(s[k] for s in self.samples) for k in ("tasks", "fds", "invoke_in_use",
                                                                          "invoke_held", "in_flight")}
        f["writes"] = dict(self.writes, statuses={str(k): v for k, v in sorted(self.write_status.items(), key=str)})
        f["panics"] = {"log_lines": len(self.serve.panics), "escaped": self.serve.escaped[:5],
                       "device_restarts_panic": final["restarts_panic"],
                       "restarts_other": final["restarts_other"], "give_ups": final["give_ups"]}
        f["timeouts"], f["malformed_frames"] = final["timeouts"], final["malformed"]
        f["converged_after_quiet_s"] = None if converged_at is None else round(converged_at, 1)
        f["convergence_problems"] = problems[:20]
        f["devices"] = n_dev

        print()
        print(f"RSS: start {baseline['rss_mb']:.1f} MB, warm-up end {f['rss_mb']['warm_up_end']:.1f} MB, "
              f"last {f['rss_mb']['last']:.1f} MB ({rss_ratio:.2f}x; threshold 1.2x), peak {f['rss_mb']['peak']:.1f} MB")
        print(f"store on disk: warm-up end {f['store_bytes']['warm_up_end'] / 1e6:.2f} MB, last "
              f"{f['store_bytes']['last'] / 1e6:.2f} MB ({store_ratio:.2f}x; threshold 1.3x); history rows written "
              f"{final['history_written']:.0f}, pruned {final['history_pruned']:.0f}")
        if data:
            print(f"store after the stop: {disk / 1e6:.2f} MB on disk for {data / 1e6:.2f} MB of data "
                  f"({logical_ratio:.1f}x; threshold 5x)")
        print(f"actors: {final['device_actors']:.0f} device actors for {n_dev} devices, "
              f"{final['network_actors']:.0f} network; give-ups {final['give_ups']:.0f}")
        print(f"tasks: {baseline['tasks']:.0f} after enrolment, {final['tasks']:.0f} at the end, max "
              f"{f['max_during']['tasks']:.0f}; fds {baseline['fds']} -> {final['fds']} (max {f['max_during']['fds']}); "
              f"threads {baseline['threads']} -> {final['threads']}")
        print(f"invoke ids at the end: in use {final['invoke_in_use']:.0f}, in flight {final['in_flight']:.0f}, "
              f"held {final['invoke_held']:.0f} (max during: in use {f['max_during']['invoke_in_use']:.0f}, held "
              f"{f['max_during']['invoke_held']:.0f})")
        print(f"panics: {len(self.serve.panics)} in the log, {len(self.serve.escaped)} not the poison; "
              f"device restarts for panic {final['restarts_panic']:.0f} for {self.writes['poison_sent']} poison writes; "
              f"other restarts {final['restarts_other']:.0f}")
        print(f"writes: {self.writes['normal_ok']}/{self.writes['normal_sent']} normal writes accepted under faults; "
              f"statuses {f['writes']['statuses']}")
        print(f"BACnet timeouts {final['timeouts']:.0f}, malformed frames {final['malformed']:.0f}")
        if not problems:
            when = f"{converged_at:.1f} s after the faults" if converged_at is not None else "by the final check"
            print(f"converged: every device online with the simulator's values {when}")
        else:
            print(f"NOT converged at the end ({len(problems)} problems): {'; '.join(problems[:8])}")

        if not alive:
            fail.append(f"serve died (exit {code})")
        if rss_ratio > 1.2:
            fail.append(f"RSS grew {rss_ratio:.2f}x after the warm-up")
        if store_ratio > 1.3:
            fail.append(f"store grew {store_ratio:.2f}x after the warm-up")
        # A sled store never takes less than its first segments (about 2.5 MB
        # here for any handful of devices): below SLED_FLOOR the ratio says
        # nothing about growth, and the flat-store check above is what counts.
        if not data or (logical_ratio > 5 and disk > SLED_FLOOR):
            fail.append(f"store {logical_ratio:.1f}x its logical data" if data else "no logical size (backup failed)")
        if final["device_actors"] != n_dev:
            fail.append(f"{final['device_actors']:.0f} device actors for {n_dev} devices")
        if final["give_ups"]:
            fail.append(f"{final['give_ups']:.0f} give-ups")
        if problems:
            fail.append(f"{len(problems)} convergence problems")
        if final["tasks"] > baseline["tasks"] * 1.1 + 10:
            fail.append(f"tasks {baseline['tasks']:.0f} -> {final['tasks']:.0f}")
        if final["fds"] > baseline["fds"] + 4:
            fail.append(f"fds {baseline['fds']} -> {final['fds']}")
        if final["invoke_in_use"] != final["in_flight"] or final["invoke_held"] > 0:
            fail.append(f"invoke ids in use {final['invoke_in_use']:.0f}, in flight {final['in_flight']:.0f}, "
                        f"held {final['invoke_held']:.0f} at the end")
        if self.serve.escaped or final["restarts_other"] or final["restarts_panic"] != self.writes["poison_sent"]:
            fail.append(f"panics: {len(self.serve.escaped)} escaped, {final['restarts_panic']:.0f} panic restarts "
                        f"for {self.writes['poison_sent']} poison writes, {final['restarts_other']:.0f} other restarts")
        f["failures"] = fail
        print("PASS" if not fail else "FAIL: " + "; ".join(fail))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--bin", default=None, help="the plantwatch binary (default: target/release, else target/debug)")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--json", help="write the figures and samples here")
    ap.add_argument("--keep", action="store_true", help="keep the temp directory (store, logs)")
    args = ap.parse_args()
    if args.minutes < 3:
        raise SystemExit("--minutes must be at least 3")
    src = pwlib.find_binary(args.bin)
    tmp = tempfile.mkdtemp(prefix="plantwatch-fault-soak-")
    binary = os.path.join(tmp, "plantwatch")
    shutil.copy2(src, binary)
    print(f"binary: {src}")
    soak = Soak(args, tmp, binary)
    try:
        soak.run()
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        soak.failures.append("interrupted")
    finally:
        if getattr(soak, "serve", None) is not None and soak.serve.proc.poll() is None:
            soak.serve.terminate()
        for g in soak.groups:
            g.stop()
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"figures": soak.figures, "samples": soak.samples}, f, indent=1)
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0 if not soak.failures else 1


if __name__ == "__main__":
    sys.exit(main())
