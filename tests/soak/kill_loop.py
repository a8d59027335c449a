#!/usr/bin/env python3
"""Soak (issue #11 section 2): SIGKILL `plantwatch serve` again and again under
load, on one store, and check after every restart that nothing it
acknowledged was lost.

    python3 tests/soak/kill_loop.py [--cycles 100] [--seed S] [--devices 20] [--json FILE]
    python3 tests/soak/kill_loop.py --cycles 5          # the short mode for CI, well under a minute

Uses the built binary (target/release/plantwatch, else target/debug/plantwatch,
or --bin; copied into the temp directory first, so a rebuild during the run
does not swap it) and never builds. Python 3 standard library only.

Setup: one `plantwatch simulate --layout port` (--devices devices on
127.0.0.1 from --base-port) runs for the whole soak; every `plantwatch serve`
start uses the same configuration and the same store (a temp directory), with
auth on (the first start installs the bootstrap admin key from
PLANTWATCH_BOOTSTRAP_ADMIN_KEY; an operator key is then made through the API),
the API on 127.0.0.1:0 (the "API listening addr=..." line), polls every 1 s,
snapshots every 200 ms, history kept 2 s and pruned every second (so kills also
land in snapshot flushes and history pruning), and rate limits raised out of
the way.

Each cycle:
  1. start serve; at once (before the devices are polled again) list the
     devices and their points: every device must be there with its points and
     no null value (restored from its snapshot);
  2. wait for /ready and every device online, then verify (below);
  3. run concurrent clients for a random time (--min-run..--max-run s, from
     --seed, printed): --writers threads PUT unique values at random
     priorities to analog-output:1/2 and binary-output:1/2 of random devices
     and relinquish them (PUT null: the API's relinquish; there is no DELETE
     on points), one thread makes keys (POST /api/v1/keys) and revokes them
     (DELETE /api/v1/keys/{id}), one reads (devices, points, audit, keys,
     /metrics). Every request carries its own X-Request-Id; every 2xx answer
     is recorded with what it returned;
  4. SIGKILL serve while requests are in flight.

Verified after every restart (and by a last start after the last kill, which
then stops serve with SIGTERM):
  - the process starts and opens the store with no manual repair ("opens
    failed": the soak stops there, keeps the store and prints serve's stderr);
  - the whole audit log (paged through GET /api/v1/audit): every acknowledged
    write and relinquish has its record, found by the request id the answer
    carried, with the same device, object, priority, value and outcome
    ("lost", "mismatched"); no sequence and no request id twice
    ("duplicated"); a record seen after an earlier restart is still there,
    unchanged ("changed or vanished");
  - every key made with a 2xx answer authenticates (GET /api/v1/networks is
    200) unless its revocation was acknowledged; every key revoked with a 2xx
    answer is refused with 401; GET /api/v1/keys lists them accordingly ("key
    failures"; keys whose revocation got no answer may be either, and are
    counted apart). Keys are also checked right after they are made or
    revoked, while serve runs;
  - device snapshots restore (step 1: "snapshot-restore failures"), and, for
    information, how old the restored state is against the newest state the
    API showed at least 2 x snapshot_interval + 0.3 s before the kill
    (docs/architecture.md: "A kill -9 loses at most one interval of changes");
  - for information: requests that got no answer are split into those cut by
    the kill (expected) and those that failed while serve still ran (not).

The report ends with the figures; the exit code is 1 if any of lost,
duplicated, mismatched, changed or vanished, key failures, opens failed or
snapshot-restore failures is not zero. --json FILE writes the figures (with
evidence for any failure). Every process is stopped at the end (also on
Ctrl-C) and the temp directory deleted (--keep keeps it).
"""

import argparse
import collections
import http.client
import itertools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import pwlib  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ADMIN_SECRET = "soak-bootstrap-admin-" + "5a" * 16
SNAPSHOT_INTERVAL_S = 0.2
POINTS = ["analog-output:1", "analog-output:2", "binary-output:1", "binary-output:2"]
NETWORK_ERRORS = (OSError, http.client.HTTPException, ValueError)


def iso_ms(text):
    """RFC 3339 with milliseconds in UTC ("2026-11-26T06:44:47.188Z") to epoch seconds."""
    if not text:
        return None
    import datetime
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def iso(t):
    """Epoch seconds to RFC 3339 with milliseconds, as the API writes times."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


class Client:
    """One keep-alive HTTP connection; raises on any network error (and drops the connection)."""

    def __init__(self, addr, timeout=20):
        self.host, port = addr.rsplit(":", 1)
        self.port = int(port)
        self.timeout = timeout
        self.conn = None

    def request(self, method, path, key=None, body=None, request_id=None):
        headers = {}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        if request_id:
            headers["X-Request-Id"] = request_id
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            self.conn.request(method, path, body=data, headers=headers)
            r = self.conn.getresponse()
            raw = r.read()
            if r.getheader("Connection", "").lower() == "close":
                self.close()
        except NETWORK_ERRORS:
            self.close()
            raise
        try:
            answer = json.loads(raw) if raw else None
        except ValueError:
            answer = raw.decode(errors="replace")
        return r.status, answer

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class Serve(pwlib.Serve):
    """One `plantwatch serve`; also keeps its "store opened" line and its WARN/ERROR lines and panics."""

    def __init__(self, binary, config, env, log_path):
        self.notable = []
        self.store_opened = None
        super().__init__(binary, config, env, log_path, on_line=self._note)

    def _note(self, stream, line):
        if "store opened" in line:
            self.store_opened = line
        if (" WARN " in line or " ERROR " in line or "panicked" in line or stream == "err") \
                and len(self.notable) < 50:
            self.notable.append(line)


class Soak:
    def __init__(self, args, tmp, binary):
        self.args = args
        self.tmp = tmp
        self.binary = binary
        self.rng = random.Random(args.seed)
        self.lock = threading.Lock()
        self.counter = itertools.count(1)
        self.devices = []          # [{"instance", "address"}] from the simulator
        self.points_per_device = {}
        self.writes = {}           # request id -> the write, its answer if any
        self.keys = {}             # key id -> {"key", "role", "cycle", "revoked": None|"acked"|"unknown"}
        self.operator_key = None
        self.seen_audit = {}       # sequence -> request id, from earlier verifications
        self.observations = []     # (wall time, {instance: last_seen epoch}) from GET /api/v1/devices while running
        self.in_flight = 0
        self.fig = collections.Counter()
        self.status_counts = collections.Counter()
        self.evidence = collections.defaultdict(list)
        self.lags = []             # seconds: kill time minus the restored last_seen, per device and restart
        self.metrics_seen = collections.Counter()
        self.recovered_opens = 0
        self.notable = []
        self.kill_wall = None      # set from just before a SIGKILL until the next load

    # ------------------------------------------------------------- bookkeeping

    def note(self, kind, item, limit=20):
        with self.lock:
            self.fig[kind] += 1
            if len(self.evidence[kind]) < limit:
                self.evidence[kind].append(item)

    def unanswered(self, out, what, sent, e):
        """A request that got no answer: cut by the kill (expected), or failed while serve still ran (not)."""
        kill = self.kill_wall
        if kill is None:
            out["unanswered_while_running"] += 1
            self.note("unanswered_while_running_evidence",
                      {"request": what, "sent": iso(sent), "failed": iso(time.time()),
                       "error": f"{type(e).__name__}: {e}"}, limit=10)
        elif sent < kill:
            out["unanswered_cut_by_kill"] += 1
        else:
            out["unanswered_after_kill"] += 1

    def rid(self, cycle, what):
        return f"soak-{self.args.seed}-c{cycle}-{what}-{next(self.counter)}"

    # ------------------------------------------------------------- setup

    def start_simulator(self):
        cmd = [self.binary, "simulate", "--devices", str(self.args.devices), "--layout", "port",
               "--bind", f"127.0.0.1:{self.args.base_port}"]
        self.sim_err = open(os.path.join(self.tmp, "simulate.log"), "w")
        self.sim = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.sim_err, text=True)
        lines = []

        def read():
            for _ in range(self.args.devices):
                line = self.sim.stdout.readline()
                if not line:
                    return
                lines.append(json.loads(line))

        t = threading.Thread(target=read, daemon=True)
        t.start()
        t.join(30)
        if len(lines) < self.args.devices:
            self.sim_err.flush()
            with open(self.sim_err.name) as f:
                err = f.read()[-2000:]
            raise SystemExit(f"plantwatch simulate did not start {self.args.devices} devices "
                             f"(base port {self.args.base_port} busy? use --base-port): {err}")
        threading.Thread(target=lambda: [None for _ in self.sim.stdout], daemon=True).start()
        self.devices = lines

    def write_config(self):
        store = os.path.join(self.tmp, "store")
        cfg = [
            f'[store]\npath = "{store}"\nsnapshot_interval = "{int(SNAPSHOT_INTERVAL_S * 1000)}ms"\n',
            '[log]\nlevel = "warn,plantwatch::service=info,plantwatch_actors::store=info,'
            'plantwatch_actors::plant::persist=info"\n',
            '[auth]\nenabled = true\n',
            '[rate_limit]\nread_per_s = 1000000\nwrite_per_s = 1000000\nauth_failures_per_min = 1000000\n',
            # recorded at least every second, kept 2 s, pruned every second: pruning runs all the time
            '[history]\nmax_interval = "1s"\nretention = "2s"\nprune_every = "1s"\n',
            '[[network]]\nname = "soak"\nbind = "127.0.0.1:0"\npoll = "1s"\napdu_timeout = "500ms"\n'
            'apdu_retries = 2\n',
        ]
        for d in self.devices:
            cfg.append(f'[[network.device]]\ninstance = {d["instance"]}\naddress = "{d["address"]}"\n')
        self.config = os.path.join(self.tmp, "soak.toml")
        with open(self.config, "w") as f:
            f.write("\n".join(cfg))
        self.env = dict(os.environ, PLANTWATCH__SERVER__LISTEN="127.0.0.1:0",
                        PLANTWATCH_BOOTSTRAP_ADMIN_KEY=ADMIN_SECRET)
        self.env.pop("RUST_LOG", None)
        check = subprocess.run([self.binary, "check-config", "--config", self.config], env=self.env,
                               capture_output=True, text=True)
        if check.returncode != 0:
            raise SystemExit(f"the soak configuration is refused: {check.stderr.strip()}")

    # ------------------------------------------------------------- one start

    def start(self, n):
        serve = Serve(self.binary, self.config, self.env, os.path.join(self.tmp, f"serve-{n:03d}.log"))
        addr = serve.wait_listening(30)
        return serve, addr

    def open_failed(self, label, serve, why):
        ev = {"start": label, "why": why, **serve.evidence()}
        kept = tempfile.mkdtemp(prefix="plantwatch-soak-evidence-")
        shutil.copytree(os.path.join(self.tmp, "store"), os.path.join(kept, "store"), dirs_exist_ok=True)
        shutil.copy(serve.log_path, kept)
        ev["store_copy"] = kept
        self.note("opens_failed", ev)

    def restored_check(self, label, addr, serve, kill_wall):
        """Right after the start: every device listed with its points and values (from its snapshot)."""
        c = Client(addr, timeout=30)
        try:
            status, page = c.request("GET", "/api/v1/devices?limit=1000", key=ADMIN_SECRET)
            if status != 200:
                self.note("restore_failures", {"start": label, "why": f"GET /api/v1/devices answered {status}",
                                               "answer": page})
                return
            listed = {d["instance"]: d for d in page["items"]}
            restored_points, fresh_points = 0, 0
            for dev in self.devices:
                i = dev["instance"]
                d = listed.get(i)
                if d is None or not d.get("points"):
                    self.note("restore_failures", {"start": label, "device": i, "why": "not listed or no points",
                                                   "listed": d})
                    continue
                status, pts = c.request("GET", f"/api/v1/devices/{i}/points?limit=1000", key=ADMIN_SECRET)
                items = pts.get("items", []) if isinstance(pts, dict) else []
                nulls = [p["object"] for p in items if p.get("value") is None]
                want = self.points_per_device.get(i)
                if status != 200 or nulls or (want and len(items) != want):
                    self.note("restore_failures", {"start": label, "device": i, "status": status,
                                                   "points": len(items), "expected_points": want,
                                                   "null_values": nulls, "device_entry": d})
                    continue
                for p in items:
                    at = iso_ms(p.get("updated_at"))
                    if at is not None and at < serve.started:
                        restored_points += 1
                    else:
                        fresh_points += 1
                seen = iso_ms(d.get("last_seen"))
                if kill_wall and seen is not None and seen < serve.started:
                    self.lags.append(kill_wall - seen)
                    # the newest state the API showed well before the kill must have reached the disk
                    bound = kill_wall - (2 * SNAPSHOT_INTERVAL_S + 0.3)
                    older = [o for t, o in self.observations if t <= bound and i in o]
                    if older and older[-1][i] is not None and seen + 0.0005 < older[-1][i]:
                        self.note("snapshot_older_than_bound",
                                  {"start": label, "device": i, "restored_last_seen": d.get("last_seen"),
                                   "api_showed_before_kill": iso(older[-1][i]), "kill_time": iso(kill_wall)})
            with self.lock:
                self.fig["restored_points_checked"] += restored_points
                self.fig["points_polled_before_first_read"] += fresh_points
        except NETWORK_ERRORS as e:
            if serve.proc.poll() is None:  # a start that died is counted as an open that failed
                self.note("restore_failures", {"start": label, "why": f"{type(e).__name__}: {e}"})
        finally:
            c.close()

    def wait_online(self, addr, timeout=30):
        c = Client(addr)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                try:
                    status, _ = c.request("GET", "/ready")
                    if status == 200:
                        status, page = c.request("GET", "/api/v1/devices?limit=1000", key=ADMIN_SECRET)
                        if status == 200 and len(page["items"]) == len(self.devices) and \
                                all(d["status"] == "online" and d["points"] for d in page["items"]):
                            for d in page["items"]:
                                self.points_per_device.setdefault(d["instance"], d["points"])
                            return True
                except NETWORK_ERRORS:
                    pass
                time.sleep(0.05)
            return False
        finally:
            c.close()

    # ------------------------------------------------------------- verification

    def verify(self, label, addr):
        c = Client(addr, timeout=60)
        try:
            self.verify_audit(label, c)
            self.verify_keys(label, addr, c)
        finally:
            c.close()

    def verify_audit(self, label, c):
        records, cursor, pages = [], None, 0
        while True:
            q = "/api/v1/audit?limit=1000" + (f"&cursor={urllib.parse.quote(cursor)}" if cursor else "")
            status, page = c.request("GET", q, key=ADMIN_SECRET)
            if status != 200:
                self.note("audit_read_failures", {"start": label, "status": status, "answer": page})
                return
            records += page["items"]
            pages += 1
            cursor = page.get("next_cursor")
            if not cursor:
                break
        by_seq, by_rid = {}, collections.defaultdict(list)
        last = 0
        for r in records:
            seq = r.get("sequence")
            if seq in by_seq:
                self.note("duplicated", {"start": label, "why": "sequence twice", "sequence": seq,
                                         "records": [by_seq[seq], r]})
            by_seq[seq] = r
            if seq is not None and seq <= last:
                self.note("audit_out_of_order", {"start": label, "sequence": seq, "after": last})
            last = max(last, seq or 0)
            by_rid[r.get("request_id")].append(r)
        for rid, rs in by_rid.items():
            if len(rs) > 1:
                w = self.writes.get(rid)
                self.note("duplicated", {"start": label, "why": "request id twice", "request_id": rid,
                                         "acknowledged": bool(w and w.get("acked")), "records": rs})
            if rid not in self.writes:
                self.note("foreign_records", {"start": label, "record": rs[0]})
        # a record read back after an earlier restart stays, unchanged
        for seq, rid in self.seen_audit.items():
            r = by_seq.get(seq)
            if r is None or r.get("request_id") != rid:
                self.note("changed_or_vanished", {"start": label, "sequence": seq, "was": rid, "now": r})
        for seq, r in by_seq.items():
            self.seen_audit.setdefault(seq, r.get("request_id"))
        acked = found = 0
        for rid, w in self.writes.items():
            if not w.get("acked"):
                continue
            acked += 1
            rs = by_rid.get(rid)
            if not rs:
                near = [r for r in records if r.get("device") == w["device"] and r.get("object") == w["object"]
                        and r.get("priority") == w["priority"] and r.get("new_value") == w["value"]]
                self.note("lost", {"start": label, "request_id": rid, "write": w, "similar_records": near[:5],
                                   "audit_records": len(records), "last_sequence": last})
                continue
            found += 1
            r = rs[0]
            want = {"device": w["device"], "object": w["object"], "priority": w["priority"],
                    "new_value": w["value"], "outcome": w["answer"].get("outcome"), "property": "present-value",
                    "key_id": self.operator_id}
            got = {k: r.get(k) for k in want}
            if got != want:
                self.note("mismatched", {"start": label, "request_id": rid, "expected": want, "record": r})
        unacked = sum(1 for rid in by_rid if rid in self.writes and not self.writes[rid].get("acked"))
        with self.lock:
            self.last_audit = {"records": len(records), "pages": pages, "acked": acked, "found": found,
                               "unacknowledged_with_record": unacked}
            self.fig["audit_pages_read"] += pages

    def verify_keys(self, label, addr, c):
        status, listing = c.request("GET", "/api/v1/keys", key=ADMIN_SECRET)
        listed = {k["id"]: k for k in listing.get("items", [])} if status == 200 else {}
        if status != 200:
            self.note("key_failures", {"start": label, "why": f"GET /api/v1/keys answered {status}",
                                       "answer": listing})
        todo = list(self.keys.items())
        results = []

        def check(part):
            kc = Client(addr)
            try:
                for kid, k in part:
                    try:
                        st, ans = kc.request("GET", "/api/v1/networks", key=k["key"],
                                             request_id=f"soak-keycheck-{kid}")
                    except NETWORK_ERRORS as e:
                        st, ans = None, f"{type(e).__name__}: {e}"
                    results.append((kid, k, st, ans))
            finally:
                kc.close()

        threads = [threading.Thread(target=check, args=(todo[i::4],)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for kid, k, st, ans in results:
            entry = listed.get(kid)
            if k["revoked"] == "acked":
                self.fig["revoked_keys_checked"] += 1
                ok = st == 401 and entry is not None and entry.get("revoked")
            elif k["revoked"] == "unknown":
                self.fig["keys_revocation_unanswered_checked"] += 1
                ok = st in (200, 401) and entry is not None and (st == 200) == (entry.get("revoked") is None)
            else:
                self.fig["created_keys_checked"] += 1
                ok = st == 200 and entry is not None and entry.get("revoked") is None
            if not ok:
                self.note("key_failures", {"start": label, "key_id": kid, "role": k["role"], "made_in": k["cycle"],
                                           "revoked": k["revoked"], "status": st, "answer": ans,
                                           "listed_as": entry})

    # ------------------------------------------------------------- load

    def writer(self, addr, cycle, n, stop, out):
        rng = random.Random(f"{self.args.seed}-{cycle}-w{n}")
        c = Client(addr)
        while not stop.is_set():
            dev = rng.choice(self.devices)["instance"]
            obj = rng.choice(POINTS)
            prio = rng.randint(3, 16)
            rid = self.rid(cycle, f"w{n}")
            if rng.random() < 0.3:
                value, kind = None, "relinquish"
            elif obj.startswith("analog"):
                value, kind = next(self.counter) / 1000, "write"  # unique: 0.001, 0.002, ...
            else:
                value, kind = rng.choice(["active", "inactive"]), "write"
            w = {"cycle": cycle, "kind": kind, "device": dev, "object": obj, "priority": prio, "value": value,
                 "sent": time.time()}
            with self.lock:
                self.writes[rid] = w
                self.in_flight += 1
            try:
                status, answer = c.request("PUT", f"/api/v1/devices/{dev}/points/{obj}", key=self.operator_key,
                                           body={"value": value, "priority": prio}, request_id=rid)
            except NETWORK_ERRORS as e:
                w["error"] = f"{type(e).__name__}: {e}"
                self.unanswered(out, f"PUT {dev} {obj} {rid}", w["sent"], e)
                time.sleep(0.01)
                continue
            finally:
                with self.lock:
                    self.in_flight -= 1
            w["status"], w["answer"] = status, answer
            with self.lock:
                self.status_counts[f"PUT {status}"] += 1
            if 200 <= status < 300:
                w["acked"] = True
                out[f"acked_{kind}s"] += 1
                if not isinstance(answer, dict) or answer.get("request_id") != rid:
                    self.note("mismatched", {"why": "the answer does not repeat the request id", "request_id": rid,
                                             "answer": answer})
        c.close()

    def key_worker(self, addr, cycle, stop, out):
        rng = random.Random(f"{self.args.seed}-{cycle}-keys")
        c = Client(addr)
        while not stop.is_set():
            sent = time.time()
            what = "key operation"
            with self.lock:
                revocable = [kid for kid, k in self.keys.items() if k["revoked"] != "acked" and not k.get("fixed")]
            try:
                if revocable and rng.random() < 0.4:
                    kid = rng.choice(revocable)
                    rid = self.rid(cycle, "revoke")
                    what = f"DELETE /api/v1/keys/{kid} {rid}"
                    with self.lock:
                        self.in_flight += 1
                        if self.keys[kid]["revoked"] is None:
                            self.keys[kid]["revoked"] = "unknown"
                    try:
                        status, answer = c.request("DELETE", f"/api/v1/keys/{kid}", key=ADMIN_SECRET,
                                                   request_id=rid)
                    finally:
                        with self.lock:
                            self.in_flight -= 1
                    with self.lock:
                        self.status_counts[f"DELETE key {status}"] += 1
                    if 200 <= status < 300:
                        self.keys[kid]["revoked"] = "acked"
                        self.keys[kid]["revoked_in"] = cycle
                        out["acked_revocations"] += 1
                        st, ans = c.request("GET", "/api/v1/networks", key=self.keys[kid]["key"])
                        self.fig["live_key_checks"] += 1
                        if st != 401:
                            self.note("key_failures", {"live": True, "key_id": kid, "why": "revoked, then",
                                                       "status": st, "answer": ans})
                else:
                    role = rng.choice(["read", "operator", "admin"])
                    rid = self.rid(cycle, "key")
                    what = f"POST /api/v1/keys {rid}"
                    with self.lock:
                        self.in_flight += 1
                    try:
                        status, answer = c.request("POST", "/api/v1/keys", key=ADMIN_SECRET, request_id=rid,
                                                   body={"name": rid, "role": role})
                    finally:
                        with self.lock:
                            self.in_flight -= 1
                    with self.lock:
                        self.status_counts[f"POST key {status}"] += 1
                    if 200 <= status < 300:
                        with self.lock:
                            self.keys[answer["id"]] = {"key": answer["key"], "role": role, "cycle": cycle,
                                                       "revoked": None}
                        out["acked_key_creations"] += 1
                        st, ans = c.request("GET", "/api/v1/networks", key=answer["key"])
                        self.fig["live_key_checks"] += 1
                        if st != 200:
                            self.note("key_failures", {"live": True, "key_id": answer["id"], "why": "made, then",
                                                       "status": st, "answer": ans})
            except NETWORK_ERRORS as e:
                self.unanswered(out, what, sent, e)
                time.sleep(0.01)
                continue
            time.sleep(0.05)
        c.close()

    def reader(self, addr, cycle, stop, out):
        rng = random.Random(f"{self.args.seed}-{cycle}-read")
        c = Client(addr)
        last_metrics = 0.0
        while not stop.is_set():
            t = time.time()
            try:
                status, page = c.request("GET", "/api/v1/devices?limit=1000", key=ADMIN_SECRET)
                if status == 200:
                    obs = {d["instance"]: iso_ms(d.get("last_seen")) for d in page["items"]}
                    with self.lock:
                        self.observations.append((t, obs))
                        del self.observations[:-100]
                dev = rng.choice(self.devices)["instance"]
                c.request("GET", f"/api/v1/devices/{dev}/points/{rng.choice(POINTS)}", key=self.operator_key)
                c.request("GET", "/api/v1/audit?limit=20", key=ADMIN_SECRET)
                c.request("GET", "/api/v1/keys", key=ADMIN_SECRET)
                out["reads"] += 4
                if time.monotonic() - last_metrics > 0.5:
                    last_metrics = time.monotonic()
                    status, text = c.request("GET", "/metrics")
                    if status == 200 and isinstance(text, str):
                        for line in text.splitlines():
                            for name in ("plantwatch_store_snapshot_writes_total",
                                         "plantwatch_store_history_rows_pruned_total"):
                                if line.startswith(name + " "):
                                    out[name] = float(line.split()[1])
            except NETWORK_ERRORS as e:
                self.unanswered(out, "GET (reader)", t, e)
                time.sleep(0.01)
            time.sleep(0.05)
        c.close()

    def load_and_kill(self, serve, addr, cycle):
        duration = self.rng.uniform(self.args.min_run, self.args.max_run)
        stop = threading.Event()
        outs = []
        threads = []
        for n in range(self.args.writers):
            outs.append(collections.Counter())
            threads.append(threading.Thread(target=self.writer, args=(addr, cycle, n, stop, outs[-1]), daemon=True))
        outs.append(collections.Counter())
        threads.append(threading.Thread(target=self.key_worker, args=(addr, cycle, stop, outs[-1]), daemon=True))
        outs.append(collections.Counter())
        threads.append(threading.Thread(target=self.reader, args=(addr, cycle, stop, outs[-1]), daemon=True))
        for t in threads:
            t.start()
        time.sleep(duration)
        with self.lock:
            in_flight = self.in_flight
        kill_wall = self.kill_wall = time.time()
        serve.proc.send_signal(signal.SIGKILL)
        stop.set()  # no new requests; those in flight are cut
        serve.kill()
        for t in threads:
            t.join(60)
        total = collections.Counter()
        for o in outs:
            total.update(o)
        for name in ("plantwatch_store_snapshot_writes_total", "plantwatch_store_history_rows_pruned_total"):
            self.metrics_seen[name] += total.pop(name, 0)
        self.fig.update(total)
        self.kill_wall = None
        self.fig["writes_in_flight_at_kill"] += in_flight
        self.fig["kills_with_requests_in_flight"] += 1 if in_flight else 0
        return duration, in_flight, kill_wall, total

    # ------------------------------------------------------------- the loop

    def setup_operator(self, addr):
        c = Client(addr)
        try:
            status, answer = c.request("POST", "/api/v1/keys", key=ADMIN_SECRET,
                                       body={"name": "soak operator", "role": "operator"})
        finally:
            c.close()
        if status != 200:
            raise SystemExit(f"cannot make the soak's operator key: {status} {answer} (is the bootstrap admin key "
                             f"installed?)")
        self.operator_key, self.operator_id = answer["key"], answer["id"]
        # checked after every restart like the others, but never revoked
        self.keys[answer["id"]] = {"key": answer["key"], "role": "operator", "cycle": 1, "revoked": None,
                                   "fixed": True}

    def run(self):
        a = self.args
        self.start_simulator()
        self.write_config()
        print(f"soak: {a.cycles} cycles, seed {a.seed}, {a.devices} simulated devices on 127.0.0.1:{a.base_port}+, "
              f"{a.writers} writers, run {a.min_run}-{a.max_run} s before each SIGKILL", flush=True)
        print(f"binary: {self.binary_origin} (copied to the temp dir), store: {self.tmp}/store", flush=True)
        kill_wall = None
        for cycle in range(1, a.cycles + 2):
            final = cycle == a.cycles + 1
            label = "final start" if final else f"cycle {cycle}"
            t0 = time.monotonic()
            serve, addr = self.start(cycle)
            self.serve = serve
            if addr is None:
                self.open_failed(label, serve, "no 'API listening' line within 30 s")
                serve.kill()
                return
            if cycle > 1:
                self.restored_check(label, addr, serve, kill_wall)
            online = self.wait_online(addr)
            if serve.proc.poll() is not None or not online:
                if serve.proc.poll() is not None or not self.ready_ok(addr):
                    self.open_failed(label, serve, f"exited ({serve.proc.poll()}) or /ready not 200 within 30 s")
                    serve.kill()
                    return
                self.note("not_online_after_start", {"start": label})
            if serve.store_opened and "recovered=true" in serve.store_opened:
                self.recovered_opens += 1
            started_in = time.monotonic() - t0
            if cycle == 1:
                self.setup_operator(addr)
                time.sleep(1.0)  # every device's first snapshot reaches the disk before the first kill
            else:
                self.verify(label, addr)
            if final:
                code = serve.terminate()
                self.fig["final_sigterm_exit_code"] = code
                self.notable += serve.notable
                print(f"{label}: started and verified in {started_in:.2f} s; audit {self.last_audit}; "
                      f"SIGTERM exit code {code}", flush=True)
                break
            duration, in_flight, kill_wall, total = self.load_and_kill(serve, addr, cycle)
            self.notable += serve.notable
            self.fig["cycles"] += 1
            audit = getattr(self, "last_audit", None) if cycle > 1 else None
            print(f"cycle {cycle:3d}: up in {started_in:.2f} s, load {duration:.2f} s, SIGKILL with {in_flight} "
                  f"in flight; acked {total['acked_writes']} writes, {total['acked_relinquishs']} relinquishes, "
                  f"{total['acked_key_creations']} keys made, {total['acked_revocations']} revoked, "
                  f"{total['unanswered_cut_by_kill']} cut by the kill"
                  + (f", {total['unanswered_while_running']} UNANSWERED WHILE SERVE RAN"
                     if total['unanswered_while_running'] else "")
                  + (f"; audit before the load: {audit['records']} records" if audit else ""), flush=True)

    def ready_ok(self, addr):
        try:
            c = Client(addr)
            status, _ = c.request("GET", "/ready")
            c.close()
            return status == 200
        except NETWORK_ERRORS:
            return False

    def stop_all(self):
        s = getattr(self, "serve", None)
        if s is not None and s.proc.poll() is None:
            s.kill()
        sim = getattr(self, "sim", None)
        if sim is not None and sim.poll() is None:
            sim.send_signal(signal.SIGTERM)
            try:
                sim.wait(timeout=10)
            except subprocess.TimeoutExpired:
                sim.kill()
                sim.wait()

    # ------------------------------------------------------------- report

    def report(self, elapsed):
        acked = [w for w in self.writes.values() if w.get("acked")]
        lags = sorted(self.lags)
        f = self.fig
        figures = {
            "seed": self.args.seed,
            "cycles": f["cycles"],
            "seconds": round(elapsed, 1),
            "binary": self.binary_origin,
            "writes_sent": len(self.writes),
            "acknowledged_writes": sum(1 for w in acked if w["kind"] == "write"),
            "acknowledged_relinquishes": sum(1 for w in acked if w["kind"] == "relinquish"),
            "audit_records_found_for_them": self.last_audit["found"] if hasattr(self, "last_audit") else 0,
            "audit_records_total": self.last_audit["records"] if hasattr(self, "last_audit") else 0,
            "unacknowledged_writes_with_record": self.last_audit["unacknowledged_with_record"]
            if hasattr(self, "last_audit") else 0,
            "lost": f["lost"],
            "duplicated": f["duplicated"],
            "mismatched": f["mismatched"],
            "changed_or_vanished": f["changed_or_vanished"],
            "keys_created": sum(1 for k in self.keys.values()),
            "keys_revoked_acknowledged": sum(1 for k in self.keys.values() if k["revoked"] == "acked"),
            "keys_revocation_unanswered": sum(1 for k in self.keys.values() if k["revoked"] == "unknown"),
            "created_key_checks": f["created_keys_checked"],
            "revoked_key_checks": f["revoked_keys_checked"],
            "live_key_checks": f["live_key_checks"],
            "key_failures": f["key_failures"],
            "opens_failed": f["opens_failed"],
            "opens_with_sled_recovery": self.recovered_opens,
            "snapshot_restore_failures": f["restore_failures"],
            "restored_points_checked": f["restored_points_checked"],
            "points_polled_before_first_read": f["points_polled_before_first_read"],
            "snapshot_age_at_restore_s": {"median": round(lags[len(lags) // 2], 3) if lags else None,
                                          "max": round(lags[-1], 3) if lags else None},
            "snapshot_older_than_bound": f["snapshot_older_than_bound"],
            "kills_with_requests_in_flight": f["kills_with_requests_in_flight"],
            "requests_in_flight_at_kills": f["writes_in_flight_at_kill"],
            "requests_cut_by_kills": f["unanswered_cut_by_kill"],
            "requests_unanswered_while_serve_ran": f["unanswered_while_running"],
            "requests_sent_after_kills": f["unanswered_after_kill"],
            "reads": f["reads"],
            "snapshot_writes_seen": int(self.metrics_seen["plantwatch_store_snapshot_writes_total"]),
            "history_rows_pruned_seen": int(self.metrics_seen["plantwatch_store_history_rows_pruned_total"]),
            "not_online_after_start": f["not_online_after_start"],
            "foreign_audit_records": f["foreign_records"],
            "audit_out_of_order": f["audit_out_of_order"],
            "audit_read_failures": f["audit_read_failures"],
            "final_sigterm_exit_code": f.get("final_sigterm_exit_code"),
            "answers": dict(sorted(self.status_counts.items())),
            "serve_warnings": self.notable[:20],
            "evidence": {k: v for k, v in self.evidence.items()},
        }
        must_be_zero = ["lost", "duplicated", "mismatched", "changed_or_vanished", "key_failures", "opens_failed",
                        "snapshot_restore_failures"]
        failed = [k for k in must_be_zero if figures[k]]
        print()
        print(f"plantwatch soak: {figures['cycles']} cycles of SIGKILL under load in {elapsed:.0f} s "
              f"(seed {figures['seed']})")
        print(f"  acknowledged writes        {figures['acknowledged_writes']} "
              f"(+ {figures['acknowledged_relinquishes']} relinquishes) of {figures['writes_sent']} sent")
        print(f"  audit records found        {figures['audit_records_found_for_them']} for them "
              f"({figures['audit_records_total']} records in the log; "
              f"{figures['unacknowledged_writes_with_record']} of writes that got no 2xx answer)")
        for k in ["lost", "duplicated", "mismatched", "changed_or_vanished"]:
            print(f"  {k.replace('_', ' '):26s} {figures[k]}   (must be 0)")
        print(f"  keys made / revoked        {figures['keys_created']} / {figures['keys_revoked_acknowledged']} "
              f"({figures['keys_revocation_unanswered']} revocations unanswered); checks after restarts: "
              f"{figures['created_key_checks']} valid, {figures['revoked_key_checks']} revoked; "
              f"{figures['live_key_checks']} live")
        print(f"  key failures               {figures['key_failures']}   (must be 0)")
        print(f"  opens failed               {figures['opens_failed']}   (must be 0; "
              f"{figures['opens_with_sled_recovery']} opens said recovered=true)")
        print(f"  snapshot-restore failures  {figures['snapshot_restore_failures']}   (must be 0; "
              f"{figures['restored_points_checked']} points restored, {figures['points_polled_before_first_read']} "
              f"already polled again when read)")
        print(f"  snapshot age at restore    median {figures['snapshot_age_at_restore_s']['median']} s, max "
              f"{figures['snapshot_age_at_restore_s']['max']} s; {figures['snapshot_older_than_bound']} device "
              f"restores older than a state shown {2 * SNAPSHOT_INTERVAL_S + 0.3:.1f} s before the kill")
        print(f"  kills with requests in flight {figures['kills_with_requests_in_flight']} "
              f"({figures['requests_in_flight_at_kills']} requests); {figures['requests_cut_by_kills']} requests "
              f"cut by the kills, {figures['requests_unanswered_while_serve_ran']} unanswered while serve ran")
        print(f"  store work seen            snapshots written >= {figures['snapshot_writes_seen']}, "
              f"history rows pruned >= {figures['history_rows_pruned_seen']} (last /metrics of each cycle)")
        print(f"  final start: SIGTERM exit code {figures['final_sigterm_exit_code']}")
        print(f"  answers: {figures['answers']}")
        if figures["serve_warnings"]:
            print("  serve warnings/errors (first 20):")
            for line in figures["serve_warnings"]:
                print(f"    {line}")
        for kind, items in figures["evidence"].items():
            print(f"  evidence: {kind} ({self.fig[kind]}), first {min(len(items), 3)}:")
            for item in items[:3]:
                print("    " + json.dumps(item, default=str)[:3000])
        print("result:", "FAILED: " + ", ".join(failed) if failed else "ok")
        if self.args.json:
            with open(self.args.json, "w") as fh:
                json.dump({**figures, "failed": failed}, fh, indent=2, default=str)
        return 1 if failed else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cycles", type=int, default=100, help="SIGKILLs (default 100)")
    ap.add_argument("--seed", type=int, default=None, help="random seed (default: random, printed)")
    ap.add_argument("--devices", type=int, default=20, help="simulated devices (default 20)")
    ap.add_argument("--base-port", type=int, default=29800,
                    help="UDP port of the first simulated device, then +1 each (default 29800, below the "
                         "ephemeral range)")
    ap.add_argument("--writers", type=int, default=4, help="threads writing points (default 4)")
    ap.add_argument("--min-run", type=float, default=0.2, help="shortest load before a kill, s (default 0.2)")
    ap.add_argument("--max-run", type=float, default=3.0, help="longest load before a kill, s (default 3.0)")
    ap.add_argument("--bin", help="plantwatch binary (default target/release/plantwatch, else target/debug)")
    ap.add_argument("--json", help="write the figures to this file")
    ap.add_argument("--keep", action="store_true", help="keep the temp directory (store, logs)")
    args = ap.parse_args()
    if args.seed is None:
        args.seed = random.randrange(1, 2**31)
    if args.cycles < 1 or args.min_run <= 0 or args.max_run < args.min_run:
        ap.error("--cycles must be at least 1 and 0 < --min-run <= --max-run")

    origin = pwlib.find_binary(args.bin)
    tmp = tempfile.mkdtemp(prefix="plantwatch-soak-")
    binary = os.path.join(tmp, "plantwatch")
    shutil.copy2(origin, binary)
    soak = Soak(args, tmp, binary)
    st = os.stat(origin)
    built = time.strftime("%Y-%m-%d %H:%M", time.localtime(st.st_mtime))
    soak.binary_origin = f"{os.path.relpath(origin, ROOT)} ({built})"

    def on_term(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started with SIGINT ignored (`cmd &`)
    t0 = time.monotonic()
    code = 1
    try:
        soak.run()
        soak.stop_all()
        code = soak.report(time.monotonic() - t0)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        code = 130
    finally:
        soak.stop_all()
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
