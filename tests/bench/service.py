#!/usr/bin/env python3
"""Service budget: `plantwatch serve` polling N simulated devices x 20 points
every 10 s (defaults: 1,000 devices), measured from outside the process.

    python3 tests/bench/service.py [--devices 1000] [--seconds 60]

Prints, for plantwatch serve:
  - CPU while polling, as a share of one core (over --seconds, after every
    device is online), beside the simulator's own CPU in the same run;
  - RSS while polling;
  - the time from starting the process to the first API answer listing every
    device with its last values, after a SIGKILL (restart from the store);
  - GET /metrics: series and bytes, and its render time (median of 20
    scrapes) beside two baselines in the same run: GET /health (the HTTP
    round trip alone) and one page of 1,000 devices from the API.

Budget (issue #3): < 10 % of one core, < 200 MB RSS, restart < 1 s.
Everything runs on loopback; the processes are stopped at the end.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import pwlib  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, "target", "release", "plantwatch")


def devices(base):
    return pwlib.paged(f"{base}/api/v1/devices?limit=1000")


def timed(url, n=20):
    """Median and p90 wall time of n GETs of url (ms), and the last body."""
    times, body = [], b""
    for _ in range(n):
        t = time.perf_counter()
        with urllib.request.urlopen(url, timeout=30) as r:
            body = r.read()
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return times[len(times) // 2], times[int(len(times) * 0.9)], body


def measure_metrics(base):
    m, m90, text = timed(f"{base}/metrics")
    h, _, _ = timed(f"{base}/health")
    d, _, _ = timed(f"{base}/api/v1/devices?limit=1000")
    series = sum(1 for line in text.decode().splitlines() if line and not line.startswith("#"))
    return {"series": series, "bytes": len(text), "metrics_ms": m, "metrics_p90_ms": m90, "health_ms": h,
            "devices_ms": d}


def start_serve(config, env):
    serve = pwlib.Serve(BIN, config, env)
    return serve, serve.require_listening()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--base-port", type=int, default=48000)
    args = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "plantwatch"], cwd=ROOT, check=True)
    tmp = tempfile.mkdtemp(prefix="plantwatch-bench-")
    procs = []
    try:
        # 3 objects of each of 7 types = 21 objects; the config narrows each device to 20 points.
        sim = subprocess.Popen([BIN, "simulate", "--devices", str(args.devices), "--objects", "3", "--layout", "port",
                                "--bind", f"127.0.0.1:{args.base_port}"], stdout=subprocess.PIPE, text=True)
        procs.append(sim)
        found = [json.loads(sim.stdout.readline()) for _ in range(args.devices)]
        points = ", ".join(f'"{t}:{i}"' for t in ["analog-input", "analog-value", "analog-output", "binary-input",
                                                      "binary-output", "multi-state-value", "characterstring-value"]
                           for i in range(1, 4))
        points = "[" + ", ".join(points.split(", ")[:20]) + "]"
        cfg = [f'[store]\npath = "{tmp}/store"\n[auth]\nenabled = false\n[log]\nlevel = "warn"\n',
               '[[network]]\nname = "bench"\nbind = "127.0.0.1:0"\npoll = "10s"\n']
        for d in found:
            cfg.append(f'[[network.device]]\ninstance = {d["instance"]}\naddress = "{d["address"]}"\npoints = {points}\n')
        config = os.path.join(tmp, "bench.toml")
        with open(config, "w") as f:
            f.write("\n".join(cfg))
        env = dict(os.environ, PLANTWATCH__SERVER__LISTEN="127.0.0.1:0", RUST_LOG="warn,plantwatch=info")

        t0 = time.monotonic()
        serve, base = start_serve(config, env)
        procs.append(serve.proc)
        while True:
            ds = devices(base)
            if len(ds) == args.devices and all(d["status"] == "online" and d["points"] == 20 for d in ds):
                break
            if time.monotonic() - t0 > 300:
                raise SystemExit("devices did not come online within 300 s")
            time.sleep(0.5)
        online_after = time.monotonic() - t0
        time.sleep(12)  # one whole poll interval past enrolment before measuring
        c0, s0, w0 = pwlib.cpu_seconds(serve.pid), pwlib.cpu_seconds(sim.pid), time.monotonic()
        time.sleep(args.seconds)
        c1, s1, w1 = pwlib.cpu_seconds(serve.pid), pwlib.cpu_seconds(sim.pid), time.monotonic()
        rss = pwlib.rss_mb(serve.pid)
        serve_cpu = 100 * (c1 - c0) / (w1 - w0)
        sim_cpu = 100 * (s1 - s0) / (w1 - w0)
        scrape = measure_metrics(base)

        # SIGKILL mid-polling, then the time until every device's last values are served.
        serve.kill()
        t0 = time.monotonic()
        serve, base = start_serve(config, env)
        procs.append(serve.proc)
        while True:
            try:
                ds = devices(base)
                if len(ds) == args.devices and all(d["points"] == 20 for d in ds):
                    sample = pwlib.get_json(f"{base}/api/v1/devices/{found[0]['instance']}/points")["items"]
                    if all(p["value"] is not None for p in sample):
                        break
            except OSError:
                pass
            time.sleep(0.01)
        restart = time.monotonic() - t0

        print(f"devices={args.devices} points_per_device=20 poll=10s")
        print(f"all online (enrolled and polled) after {online_after:.1f} s")
        print(f"serve cpu={serve_cpu:.2f}% of one core  (simulator in the same run: {sim_cpu:.2f}%; "
              f"ratio serve/simulator = {serve_cpu / max(sim_cpu, 0.01):.2f})")
        print(f"serve rss={rss:.0f} MB")
        print(f"restart after SIGKILL: every device's last values served {restart * 1000:.0f} ms after start")
        print(f"/metrics: {scrape['series']} series, {scrape['bytes'] / 1e6:.1f} MB; render median "
              f"{scrape['metrics_ms']:.1f} ms (p90 {scrape['metrics_p90_ms']:.1f} ms); /health {scrape['health_ms']:.2f} ms; "
              f"1,000 devices from the API {scrape['devices_ms']:.1f} ms; "
              f"ratio /metrics : device page = {scrape['metrics_ms'] / scrape['devices_ms']:.1f}")
        ok = serve_cpu < 10 and rss < 200 and restart < 1
        print("budget (<10% core, <200 MB, <1 s):", "met" if ok else "NOT met")
        return 0 if ok else 1
    finally:
        for p in procs:
            pwlib.stop(p, timeout=20)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
