#!/usr/bin/env python3
"""HTTP checks of .ci/container against plantwatch running in a container
(issue 13 section 1). Python 3 standard library only.

    check_container.py demo --api http://127.0.0.1:PORT --keys LOG
        the demo: /health, /ready, a point read, a write with priority 8 and
        its audit record, /metrics with the write counted;
    check_container.py write --api URL --key KEY --device I --object O --value V --out FILE
        a site (`serve`): every device online, write V at priority 8, its audit
        record, the site label on /metrics; the request id goes to FILE;
    check_container.py restored --api URL --key KEY --device I --object O --value V --request-id R
        right after a restart with the devices gone: the point still serves V
        (from the store's snapshot, nothing can be polled) and the audit log
        still has the write.
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import pwlib  # noqa: E402


def ok(msg):
    print(f"ok: {msg}")


def write(api, key, device, obj, value):
    status, raw = pwlib.call("PUT", f"{api}/api/v1/devices/{device}/points/{obj}", key, {"value": value, "priority": 8})
    answer = json.loads(raw)
    if status != 200 or answer.get("outcome") != "accepted" or answer.get("priority") != 8:
        sys.exit(f"PUT {device} {obj} = {value} @8: {status} {answer}")
    ok(f"write {device} {obj} = {value} at priority 8: accepted, active priority {answer.get('active_priority')}, "
       f"request id {answer['request_id']}")
    return answer["request_id"]


def audit_record(api, key, request_id):
    cursor = None
    while True:
        q = "/api/v1/audit?limit=1000" + (f"&cursor={cursor}" if cursor else "")
        page = pwlib.get_json(api + q, key)
        for item in page["items"]:
            if item.get("request_id") == request_id:
                return item
        cursor = page.get("next_cursor")
        if not cursor:
            return None


def check_audit(api, key, request_id, device, obj, value):
    rec = audit_record(api, key, request_id)
    if rec is None:
        sys.exit(f"no audit record with request id {request_id}")
    if rec.get("device") != device or rec.get("object") != obj or rec.get("new_value") != value \
            or rec.get("priority") != 8 or rec.get("outcome") != "accepted":
        sys.exit(f"audit record of {request_id} does not match the write: {rec}")
    ok(f"audit record {rec.get('sequence')}: device {device} {obj} = {value} @8 accepted")


def metrics(api, must):
    status, raw = pwlib.call("GET", f"{api}/metrics")
    text = raw.decode()
    if status != 200:
        sys.exit(f"/metrics: {status}")
    for needle in must:
        if needle not in text:
            sys.exit(f"/metrics has no {needle!r}")
    series = sum(1 for l in text.splitlines() if l and not l.startswith("#"))
    ok(f"/metrics: {series} series, with {', '.join(must)}")
    return text


def demo(args):
    keys = {}
    for line in open(args.keys, encoding="utf-8", errors="replace"):
        for role in ("admin", "operator", "read"):
            if line.startswith(f"{role} key: "):
                keys[role] = line.split(": ", 1)[1].strip()
    if len(keys) != 3:
        sys.exit(f"the demo's log has keys for {sorted(keys)}, expected admin, operator, read")
    api = args.api
    if pwlib.call("GET", f"{api}/health")[0] != 200:
        sys.exit("/health is not 200")
    ok("/health 200")
    pwlib.wait_until("/ready", lambda: pwlib.call("GET", f"{api}/ready")[0] == 200, 30)
    ok("/ready 200")
    # A commandable analog point of a device that answers.
    target = None

    def find():
        nonlocal target
        for d in pwlib.get_json(f"{api}/api/v1/devices?limit=100", keys["read"])["items"]:
            if d["status"] != "online":
                continue
            points = pwlib.get_json(f"{api}/api/v1/devices/{d['instance']}/points?limit=500", keys["read"])["items"]
            for p in points:
                if p.get("commandable") and p["object"].startswith("analog-") and p.get("quality") == "good":
                    target = (d["instance"], p["object"])
                    return True
        return False
    pwlib.wait_until("a device online with a commandable analog point", find, 30)
    device, obj = target
    p = pwlib.get_json(f"{api}/api/v1/devices/{device}/points/{obj}", keys["read"])
    ok(f"read {device} {obj}: {p['value']} {p.get('units')} ({p['quality']})")
    rid = write(api, keys["operator"], device, obj, 42.5)
    p = pwlib.get_json(f"{api}/api/v1/devices/{device}/points/{obj}?live=true", keys["read"])
    if p["value"] != 42.5:
        sys.exit(f"live read after the write: {p['value']}, expected 42.5")
    ok(f"live read {device} {obj}: 42.5")
    check_audit(api, keys["admin"], rid, device, obj, 42.5)
    text = metrics(api, ["plantwatch_build_info{", "plantwatch_device_up{"])
    accepted = [l for l in text.splitlines() if l.startswith("plantwatch_writes_total{") and 'outcome="accepted"' in l]
    if not any(float(l.rsplit(" ", 1)[1]) >= 1 for l in accepted):
        sys.exit(f"/metrics does not count the accepted write: {accepted}")
    ok("/metrics counts the accepted write")


def site_write(args):
    api, key = args.api, args.key
    pwlib.wait_until("/ready", lambda: pwlib.call("GET", f"{api}/ready")[0] == 200, 30)

    def all_online():
        items = pwlib.get_json(f"{api}/api/v1/devices?limit=100", key)["items"]
        return items and all(d["status"] == "online" for d in items)
    pwlib.wait_until("every device online", all_online, 30)
    ok("/ready 200, every device online")
    p = pwlib.get_json(f"{api}/api/v1/devices/{args.device}/points/{args.object}", key)
    ok(f"read {args.device} {args.object}: {p['value']} ({p['quality']})")
    rid = write(api, key, args.device, args.object, args.value)

    def cached():
        return pwlib.get_json(f"{api}/api/v1/devices/{args.device}/points/{args.object}", key)["value"] == args.value
    pwlib.wait_until("the cached value after the write", cached, 10)
    ok(f"cached value {args.value}")
    check_audit(api, key, rid, args.device, args.object, args.value)
    metrics(api, [f'plantwatch_device_up{{site="{args.site}",', f'plantwatch_build_info{{site="{args.site}",'])
    with open(args.out, "w") as f:
        f.write(rid)


def restored(args):
    api, key = args.api, args.key
    # The first answer the restarted service gives, no waiting for /ready.
    pwlib.wait_until("/health", lambda: pwlib.call("GET", f"{api}/health", timeout=2)[0] == 200, 30)
    started = time.monotonic()
    p = pwlib.get_json(f"{api}/api/v1/devices/{args.device}/points/{args.object}", key)
    if p["value"] != args.value:
        sys.exit(f"after the restart {args.device} {args.object} = {p['value']}, expected {args.value} (from the store)")
    ok(f"{time.monotonic() - started:.2f} s after /health: {args.device} {args.object} = {p['value']} "
       f"({p['quality']}, updated {p.get('updated_at')}), restored from the volume with the devices gone")
    check_audit(api, key, args.request_id, args.device, args.object, args.value)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("demo")
    d.add_argument("--api", required=True)
    d.add_argument("--keys", required=True)
    for name in ("write", "restored"):
        s = sub.add_parser(name)
        s.add_argument("--api", required=True)
        s.add_argument("--key", required=True)
        s.add_argument("--device", type=int, required=True)
        s.add_argument("--object", required=True)
        s.add_argument("--value", type=float, required=True)
        if name == "write":
            s.add_argument("--site", required=True)
            s.add_argument("--out", required=True)
        else:
            s.add_argument("--request-id", required=True)
    args = ap.parse_args()
    try:
        {"demo": demo, "write": site_write, "restored": restored}[args.cmd](args)
    except OSError as e:
        sys.exit(f"{args.cmd}: {e}")


if __name__ == "__main__":
    main()
