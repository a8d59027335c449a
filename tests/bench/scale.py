#!/usr/bin/env python3
"""Scale: `plantwatch serve` supervising 10,000 simulated devices x 50 points,
every point polled every 60 s, measured from outside both processes.

    python3 tests/bench/scale.py [--devices 10000] [--points 50] [--routers 4]
                                 [--poll 60] [--seconds 600] [--json out.json]

The simulator (`plantwatch simulate --layout router --routers R`) runs in its
own process: R BACnet routers on 127.0.0.1:PORT+r, each with its share of the
devices behind it on network 100+r. plantwatch has one network (one UDP
socket) with every device configured by route, COV off, auth off.

Measured, after every device is online (enrolled, every point read):
  - CPU of plantwatch and of the simulator, as a share of one core, sampled
    every 5 s; their ratio in the same run;
  - RSS of plantwatch: first and last minute of the window, and the peak;
  - plantwatch_poll_overruns_total over the window (and since start);
  - the time from starting the process to every device online;
  - API latency while polling runs: a client paging GET /api/v1/devices?limit=1000
    through every device every 30 s, and GET /metrics every 15 s (a
    Prometheus scrape, with metrics.max_points as configured): p50 and p99;
  - restart at scale: SIGKILL during polling, start again on the same store,
    time until the API lists every device with its last values (checked on a
    sample during the timing, then on every device);
  - after a clean stop: the store on disk against the data it holds (keys and
    values summed, from `plantwatch backup`).

Budget (issue #11): < 50 % of one core, RSS < 1 GiB and flat, 0 overruns,
restart < 2 s (1,000 devices: < 1 s). Everything runs on loopback.
"""

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import pwlib  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = pwlib.find_binary(os.environ.get("PLANTWATCH_BIN"), kinds=("release",))


def page_devices(base, latencies=None):
    return pwlib.paged(f"{base}/api/v1/devices?limit=1000", latencies=latencies)


def metric(text, name):
    """Sum of every series of a metric family in Prometheus text."""
    return pwlib.msum(pwlib.parse_metrics(text), name)


def start_serve(config, env):
    serve = pwlib.Serve(BIN, config, env, keep_log=True)
    return serve, serve.require_listening()


def values_served(base, instances):
    for i in instances:
        items = pwlib.get_json(f"{base}/api/v1/devices/{i}/points?limit=500")["items"]
        if not items or any(p["value"] is None for p in items):
            return False
    return True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=10000)
    ap.add_argument("--points", type=int, default=50)
    ap.add_argument("--routers", type=int, default=4)
    ap.add_argument("--poll", type=float, default=60, help="poll interval, seconds")
    ap.add_argument("--seconds", type=float, default=600, help="measurement window after all are online")
    ap.add_argument("--base-port", type=int, default=48600)
    ap.add_argument("--json", help="write the figures here too")
    ap.add_argument("--no-build", action="store_true")
    args = ap.parse_args()
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "plantwatch"], cwd=ROOT, check=True)
    tmp = tempfile.mkdtemp(prefix="plantwatch-scale-")
    procs = []
    r = {"devices": args.devices, "points": args.points, "routers": args.routers, "poll_s": args.poll}
    try:
        sim = subprocess.Popen([BIN, "simulate", "--devices", str(args.devices), "--points", str(args.points),
                                "--layout", "router", "--routers", str(args.routers),
                                "--bind", f"127.0.0.1:{args.base_port}"], stdout=subprocess.PIPE, text=True)
        procs.append(sim)
        found = [json.loads(sim.stdout.readline()) for _ in range(args.devices)]
        cfg = [f'[store]\npath = "{tmp}/store"\n[auth]\nenabled = false\n[rate_limit]\nread_per_s = 100000\n[log]\nlevel = "warn"\n',
               f'[[network]]\nname = "site"\nbind = "127.0.0.1:0"\npoll = "{args.poll}s"\ncov = false\n']
        for d in found:
            route = d["route"]
            cfg.append(f'[[network.device]]\ninstance = {d["instance"]}\naddress = "{d["address"]}"\n'
                       f'route = {{ network = {route["network"]}, mac = "{route["mac"]}" }}\n')
        config = os.path.join(tmp, "scale.toml")
        with open(config, "w") as f:
            f.write("\n".join(cfg))
        env = dict(os.environ, PLANTWATCH__SERVER__LISTEN="127.0.0.1:0", RUST_LOG="warn,plantwatch=info,plantwatch_actors::store=debug")

        t0 = time.monotonic()
        s0 = pwlib.cpu_seconds(sim.pid)
        serve, base = start_serve(config, env)
        procs.append(serve.proc)
        while True:
            ds = page_devices(base)
            online = sum(1 for d in ds if d["status"] == "online" and d["points"] == args.points)
            if online == args.devices:
                break
            if time.monotonic() - t0 > 900:
                raise SystemExit(f"only {online} of {args.devices} devices online after 900 s")
            time.sleep(1)
        r["start_to_online_s"] = time.monotonic() - t0
        r["cpu_during_start_s"] = pwlib.cpu_seconds(serve.pid)
        r["sim_cpu_during_start_s"] = pwlib.cpu_seconds(sim.pid) - s0
        print(f"all {args.devices} devices online after {r['start_to_online_s']:.1f} s", flush=True)
        # one whole poll interval past enrolment, so the window sees steady state
        time.sleep(args.poll + 5)

        text = pwlib.call("GET", f"{base}/metrics", timeout=60)[1].decode()
        over0 = metric(text, "plantwatch_poll_overruns_total")
        samples = []  # (t, serve_cpu_s, sim_cpu_s, rss_mb)
        page_ms, metrics_ms, series = [], [], 0
        w0 = time.monotonic()
        next_sample = next_scrape = next_page = w0
        while True:
            now = time.monotonic()
            if now - w0 >= args.seconds:
                break
            if now >= next_sample:
                samples.append((now, pwlib.cpu_seconds(serve.pid), pwlib.cpu_seconds(sim.pid), pwlib.rss_mb(serve.pid)))
                next_sample += 5
            if now >= next_scrape:
                t = time.perf_counter()
                text = pwlib.call("GET", f"{base}/metrics", timeout=60)[1].decode()
                metrics_ms.append((time.perf_counter() - t) * 1000)
                series = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
                next_scrape += 15
            if now >= next_page:
                page_devices(base, page_ms)
                next_page += 30
            time.sleep(max(0.0, min(next_sample, next_scrape, next_page) - time.monotonic()))
        samples.append((time.monotonic(), pwlib.cpu_seconds(serve.pid), pwlib.cpu_seconds(sim.pid), pwlib.rss_mb(serve.pid)))
        text = pwlib.call("GET", f"{base}/metrics", timeout=60)[1].decode()
        over1 = metric(text, "plantwatch_poll_overruns_total")
        (ta, ca, sa, _), (tb, cb, sb, _) = samples[0], samples[-1]
        r["window_s"] = tb - ta
        r["serve_cpu_pct"] = 100 * (cb - ca) / (tb - ta)
        r["sim_cpu_pct"] = 100 * (sb - sa) / (tb - ta)
        first = [s[3] for s in samples if s[0] - ta <= 60]
        last = [s[3] for s in samples if tb - s[0] <= 60]
        r["rss_first_min_mb"] = sum(first) / len(first)
        r["rss_last_min_mb"] = sum(last) / len(last)
        r["rss_peak_mb"] = max(s[3] for s in samples)
        r["overruns_window"] = over1 - over0
        r["overruns_total"] = over1
        r["threads"] = pwlib.threads(serve.pid)
        r["bacnet_timeouts"] = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                                   if line.startswith("plantwatch_bacnet_requests_total{") and 'outcome="timeout"' in line)
        r["devices_page_ms_p50"], r["devices_page_ms_p99"], r["devices_page_n"] = pwlib.pct(page_ms, .5), pwlib.pct(page_ms, .99), len(page_ms)
        r["metrics_ms_p50"], r["metrics_ms_p99"], r["metrics_n"] = pwlib.pct(metrics_ms, .5), pwlib.pct(metrics_ms, .99), len(metrics_ms)
        r["metrics_series"] = series
        r["metrics_bytes"] = len(text)

        # SIGKILL mid-polling, then the time until every device's last values are served.
        serve.kill()
        sample = random.Random(1).sample([d["instance"] for d in found], min(20, len(found)))
        t0 = time.monotonic()
        serve, base = start_serve(config, env)
        procs.append(serve.proc)
        while True:
            try:
                ds = page_devices(base)
                if len(ds) == args.devices and all(d["points"] == args.points for d in ds) \
                        and values_served(base, sample):
                    break
            except OSError:
                pass
            if time.monotonic() - t0 > 120:
                raise SystemExit("the last values were not served within 120 s of a restart")
            time.sleep(0.01)
        r["restart_to_served_s"] = time.monotonic() - t0
        r["restart_all_values_checked"] = values_served(base, [d["instance"] for d in found])
        # where the restart's time went, from serve's own log
        for field in ("open_ms", "read_ms", "decode_ms", "load_ms"):
            m = re.search(field + r"=(\d+)", "\n".join(serve.log))
            r[f"restart_store_{field}"] = int(m.group(1)) if m else None

        # A clean stop, then the store against its data.
        serve.terminate()
        out = subprocess.run([BIN, "backup", "--config", config, "--out", os.path.join(tmp, "backup.jsonl")],
                             env=env, capture_output=True, text=True, check=True).stdout
        m = re.search(r"data (\d+) bytes .*store on disk (\d+) bytes", out)
        r["store_data_bytes"], r["store_disk_bytes"] = int(m.group(1)), int(m.group(2))
        r["store_ratio"] = r["store_disk_bytes"] / max(1, r["store_data_bytes"])
        r["backup_trees"] = {line.split()[0]: int(line.split()[1]) for line in out.splitlines()
                             if line.startswith("  ")}

        print(json.dumps(r, indent=1))
        print(f"devices={args.devices} points={args.points} routers={args.routers} poll={args.poll:g}s "
              f"window={r['window_s']:.0f}s")
        print(f"start to all online: {r['start_to_online_s']:.1f} s")
        print(f"serve cpu {r['serve_cpu_pct']:.1f}% of one core; simulator {r['sim_cpu_pct']:.1f}%; "
              f"ratio {r['serve_cpu_pct'] / max(r['sim_cpu_pct'], 0.01):.2f}")
        print(f"serve rss first minute {r['rss_first_min_mb']:.0f} MB, last minute {r['rss_last_min_mb']:.0f} MB, "
              f"peak {r['rss_peak_mb']:.0f} MB")
        print(f"poll overruns in the window: {r['overruns_window']:.0f} (since start {r['overruns_total']:.0f}); "
              f"BACnet timeouts {r['bacnet_timeouts']:.0f}")
        print(f"GET /api/v1/devices?limit=1000: p50 {r['devices_page_ms_p50']:.1f} ms, p99 "
              f"{r['devices_page_ms_p99']:.1f} ms (n={r['devices_page_n']})")
        print(f"GET /metrics ({r['metrics_series']} series, {r['metrics_bytes'] / 1e6:.1f} MB): p50 "
              f"{r['metrics_ms_p50']:.1f} ms, p99 {r['metrics_ms_p99']:.1f} ms (n={r['metrics_n']})")
        print(f"restart: store opened in {r['restart_store_open_ms']} ms, snapshots read in "
              f"{r['restart_store_read_ms']} ms and decoded in {r['restart_store_decode_ms']} ms "
              f"({r['restart_store_load_ms']} ms to the directory)")
        print(f"restart after SIGKILL: last values served {r['restart_to_served_s'] * 1000:.0f} ms after start "
              f"(every device checked: {r['restart_all_values_checked']})")
        print(f"store {r['store_disk_bytes'] / 1e6:.1f} MB on disk for {r['store_data_bytes'] / 1e6:.1f} MB of data: "
              f"{r['store_ratio']:.1f}x")
        if args.json:
            with open(args.json, "w") as f:
                json.dump(r, f, indent=1)
        budget = 2.0 if args.devices > 1000 else 1.0
        ok = (r["serve_cpu_pct"] < 50 and r["rss_peak_mb"] < 1024 and r["overruns_window"] == 0
              and r["restart_to_served_s"] < budget and r["restart_all_values_checked"])
        print(f"budget (<50% core, <1 GiB, 0 overruns, restart < {budget:g} s):", "met" if ok else "NOT met")
        return 0 if ok else 1
    finally:
        for p in procs:
            pwlib.stop(p, 20)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
