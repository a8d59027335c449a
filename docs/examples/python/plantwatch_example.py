#!/usr/bin/env python3
"""plantwatch from Python, with requests: list the devices, read a point (from
the cache and live), write a point and relinquish it, and page through a
point's history with the cursor.

    pip install -r requirements.txt
    PLANTWATCH_URL=http://127.0.0.1:8080 PLANTWATCH_KEY=pw_... python3 plantwatch_example.py

PLANTWATCH_KEY is an operator key: it may read and write points. The example
writes a commandable point of the first online device at priority 8, then
relinquishes it: run it against the demo or a test system, not a plant. It
exits with status 1 at the first unexpected answer.
"""

import os
import sys
import time
from datetime import datetime, timedelta, timezone

import requests


class PlantwatchError(Exception):
    """An answer that is not what the example expects."""


class Plantwatch:
    """A small client: one session, the key in every request, errors raised."""

    def __init__(self, url: str, key: str):
        self.url = url.rstrip("/")
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {key}"

    def call(self, method: str, path: str, **kwargs) -> dict:
        for _ in range(3):
            r = self.session.request(method, self.url + path, timeout=30, **kwargs)
            if r.status_code != 429:
                break
            # Over the rate limit: wait as long as the answer says, then try again.
            time.sleep(int(r.headers.get("Retry-After", "1")))
        if not r.ok:
            # Every error answer is {"error": {"code", "message", "status", "request_id", "details"}}.
            try:
                e = r.json()["error"]
            except (ValueError, KeyError):
                raise PlantwatchError(f"{method} {path}: {r.status_code} {r.text[:200]}") from None
            raise PlantwatchError(
                f"{method} {path}: {r.status_code} {e['code']}: {e['message']} "
                f"(request {e['request_id']}, details {e['details']})"
            )
        return r.json()

    def get(self, path: str, **params) -> dict:
        return self.call("GET", path, params=params)

    def put(self, path: str, body: dict) -> dict:
        return self.call("PUT", path, json=body)


def expect(condition: bool, what: str, answer) -> None:
    if not condition:
        raise PlantwatchError(f"unexpected answer (wanted {what}): {answer}")


def main() -> int:
    url = os.environ.get("PLANTWATCH_URL", "http://127.0.0.1:8080")
    key = os.environ.get("PLANTWATCH_KEY")
    if not key:
        print("set PLANTWATCH_KEY to an operator key (plantwatch demo prints one)", file=sys.stderr)
        return 2
    pw = Plantwatch(url, key)

    print("== online devices")
    devices = pw.get("/api/v1/devices", status="online", limit=10)["items"]
    for d in devices:
        print(f"{d['instance']}\t{d['status']}\t{d['name']}")
    expect(len(devices) > 0, "an online device", devices)
    device = devices[0]["instance"]

    # The points of that device: an analog input to read, a commandable analog point to write.
    points = pw.get(f"/api/v1/devices/{device}/points", limit=1000)["items"]
    inputs = [p["object"] for p in points if p["object"].startswith("analog-input:")]
    outputs = [p["object"] for p in points if p["commandable"] and p["object"].startswith("analog-")]
    expect(bool(inputs and outputs), "an analog input and a commandable analog point", points)
    point_path = f"/api/v1/devices/{device}/points/{inputs[0]}"
    write_path = f"/api/v1/devices/{device}/points/{outputs[0]}"

    print(f"== {inputs[0]} of device {device}, from the cache")
    p = pw.get(point_path)
    print(f"{p['name']}: {p['value']} {p['units']} ({p['quality']}, {p['updated_at']})")

    print(f"== {inputs[0]}, read from the device now (?live=true)")
    p = pw.get(point_path, live="true")
    expect(p.get("live") is True and p["quality"] == "good", "a good live value", p)
    print(f"{p['name']}: {p['value']} {p['units']} ({p['quality']}, {p['updated_at']})")

    print(f"== write 42.5 to {outputs[0]} at priority 8")
    w = pw.put(write_path, {"value": 42.5, "priority": 8})
    expect(w["outcome"] == "accepted", "accepted", w)
    # The answer has the read-back: a higher priority (1..7) may be in control.
    print(f"active priority {w['active_priority']}, present value {w['present_value']} (request {w['request_id']})")

    print(f"== relinquish priority 8 of {outputs[0]}")
    w = pw.put(write_path, {"value": None, "priority": 8})
    expect(w["outcome"] == "accepted" and w["active_priority"] != 8, "priority 8 relinquished", w)
    print(f"active priority {w['active_priority']}, present value {w['present_value']}")

    page_size = 2  # small pages, to show the cursor at work (a page takes up to 1000)
    print(f"== history of {inputs[0]} over the last 10 minutes, {page_size} samples a page")
    since = (datetime.now(timezone.utc) - timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    params = {"from": since, "limit": page_size}
    pages, last = 0, ""
    while True:
        page = pw.get(point_path + "/history", **params)
        pages += 1
        times = [s["time"] for s in page["items"]]
        # Oldest first, and each page after the previous one (RFC 3339 UTC times sort as strings).
        expect(all(a < b for a, b in zip([last] + times, times)), "samples in order", page)
        last = times[-1] if times else last
        print(f"page {pages}: " + " ".join(str(s["value"]) for s in page["items"]))
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]  # as given: the cursor is opaque
    print(f"ok: {pages} pages of history")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (PlantwatchError, requests.RequestException) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
