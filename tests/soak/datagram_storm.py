#!/usr/bin/env python3
"""Datagram storm (issue 11 section 4, the live check of the fuzzing): hostile
BACnet/IP traffic at a running plantwatch and a running simulator.

    python3 tests/soak/datagram_storm.py [--count 1000000] [--devices 20] [--bin target/release/plantwatch]

Starts `plantwatch simulate` (--devices, layout port, on 127.0.0.1) and
`plantwatch serve` polling every device each second (auth off, API on
127.0.0.1:0, the network bound to a fixed free loopback port), then sends
--count mutated datagrams at plantwatch's network socket and --count at the
first simulated device, from loopback: mutations of valid frames (the golden
frames of tests/golden plus frames assembled here) by bit flips, truncation,
BVLC length lies, insertions and deletions, random bytes, oversize datagrams,
valid headers with garbage service data, segments and Segment-ACKs with wild
sequence numbers and windows, Forwarded-NPDUs claiming a device's address.

Checked during the storm (every second) and after it:
  - both processes stay up;
  - GET /health answers 200, and GET /api/v1/devices/<first>/points lists the
    device's points;
  - polling goes on: every device is online and its polls_ok rises;
  - plantwatch_bacnet_malformed_frames_total{network="storm"} counts the
    malformed frames: at least those whose BVLC/NPDU/APDU header cannot
    parse (a Python copy of frame::parse's rules below), less what the
    kernel dropped on the socket (/proc/net/udp), and at most all sent;
  - the simulator (it has no metrics) answers ReadProperty correctly:
    Object_Name of the stormed device is "SIM-<instance>", probed every
    20,000 datagrams during the storm and 20 times after it.

Prints the datagrams sent, the send rate, the malformed count against the
datagrams sent, and PASS or FAIL (exit code 0 or 1). Python stdlib only.
The binary is not built here: the release binary if there is one, else the
debug one (--bin to choose).
"""

import argparse
import json
import os
import random
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import pwlib  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NETWORK = "storm"

# ---------------------------------------------------------------- frames


def bvlc(npdu_apdu, function=0x0A):
    return bytes([0x81, function]) + struct.pack(">H", 4 + len(npdu_apdu)) + npdu_apdu


def fix_length(b):
    b = bytearray(b)
    if len(b) >= 4 and len(b) <= 0xFFFF:
        b[2:4] = struct.pack(">H", len(b))
    return bytes(b)


def rp_request(invoke, obj_type, instance, prop, npdu=b"\x01\x04"):
    oid = struct.pack(">I", (obj_type << 22) | instance)
    return bvlc(npdu + bytes([0x02, 0x75, invoke, 0x0C, 0x0C]) + oid + bytes([0x19, prop]))


def own_frames():
    """Valid frames of every kind either side accepts, assembled by hand."""
    f = []
    f.append(rp_request(1, 0, 1, 85))
    f.append(rp_request(2, 8, 4194303, 77))  # Object_Name of "this device"
    f.append(rp_request(3, 8, 4194303, 76, npdu=b"\x01\x24\x00\x64\x01\x05\xff"))  # routed
    f.append(bvlc(b"\x01\x04\x02\x75\x04\x0e\x0c\x00\x00\x00\x01\x1e\x09\x55\x09\x6f\x1f"))  # RPM
    f.append(bvlc(b"\x01\x04\x02\x75\x05\x0f\x0c\x00\x40\x00\x01\x19\x55\x3e\x44\x42\x28\x00\x00\x3f\x49\x08"))  # WP
    f.append(bvlc(b"\x01\x04\x02\x75\x06\x05\x09\x07\x1c\x00\x00\x00\x01\x29\x00\x39\x3c"))  # SubscribeCOV
    f.append(bvlc(b"\x01\x00\x10\x08"))  # Who-Is
    f.append(bvlc(b"\x01\x20\xff\xff\x00\xff\x10\x08\x0a\x03\xe8\x1a\x07\xd0", 0x0B))  # global ranged Who-Is
    f.append(bvlc(b"\x01\x00\x10\x00\xc4\x02\x00\x03\xe9\x22\x05\xc4\x91\x00\x21\xe7"))  # I-Am
    cov = b"\x09\x07\x1c\x02\x00\x03\xe9\x2c\x00\x00\x00\x01\x39\x3c\x4e\x09\x55\x2e\x44\x41\xcc\x00\x00\x2f\x09\x6f\x2e\x82\x04\x00\x2f\x4f"
    f.append(bvlc(b"\x01\x00\x10\x02" + cov))  # unconfirmed COV notification
    f.append(bvlc(b"\x01\x04\x00\x05\x07\x01" + cov))  # confirmed COV notification
    f.append(bvlc(b"\x01\x00\x30\x01\x0c\x0c\x00\x00\x00\x01\x19\x55\x3e\x44\x41\xac\x00\x00\x3f"))  # RP-ACK
    f.append(bvlc(b"\x01\x00\x30\x02\x0e\x0c\x00\x00\x00\x01\x1e\x29\x55\x4e\x44\x41\xac\x00\x00\x4f"
                  b"\x29\x6f\x5e\x91\x02\x91\x20\x5f\x1f"))  # RPM-ACK with an error
    f.append(bvlc(b"\x01\x00\x50\x01\x0c\x91\x02\x91\x20"))  # Error
    f.append(bvlc(b"\x01\x00\x60\x01\x09"))  # Reject
    f.append(bvlc(b"\x01\x00\x71\x01\x04"))  # Abort
    f.append(bvlc(b"\x01\x00\x20\x05\x0f"))  # SimpleAck
    f.append(bvlc(b"\x01\x00\x40\x01\x00\x10"))  # Segment-ACK
    f.append(bvlc(b"\x01\x00\x3c\x01\x00\x10\x0c\x0c\x02\x00\x03\xe9\x19\x4c\x3e\xc4\x02\x00\x03\xe9"))  # segment 0
    f.append(bvlc(b"\x01\x08\x00\x07\x01\x09\x00\x30\x01\x0c\x0c\x00\x00\x00\x01\x19\x55\x3e\x44\x41\xac\x00\x00\x3f"))
    f.append(bvlc(b"\x01\x80\x00"))  # Who-Is-Router-To-Network
    f.append(bytes([0x81, 0x04, 0, 0, 127, 0, 0, 9, 0xBA, 0xC0]) + b"\x01\x00\x10\x08")
    return [fix_length(x) for x in f]


def golden_frames():
    with open(os.path.join(ROOT, "tests", "golden", "bacpypes3_frames.json")) as fh:
        return [bytes.fromhex(f["hex"]) for f in json.load(fh)]


class Mutator:
    """Mutated BACnet/IP datagrams, reproducible from a seed."""

    def __init__(self, seed, frames, spoof=None):
        self.rng = random.Random(seed)
        self.frames = frames
        self.spoof = spoof  # (ip, port) a Forwarded-NPDU may claim to come from
        self.kinds = [self.flip, self.truncate, self.length_lie, self.splice, self.random_bytes, self.oversize,
                      self.garbage_service, self.wild_segment, self.wild_segment_ack, self.forwarded]

    def rand(self, n):
        return self.rng.randbytes(n)

    def pick(self):
        return self.rng.choice(self.frames)

    def next(self):
        return self.rng.choice(self.kinds)()

    def flip(self):
        b = bytearray(self.pick())
        for _ in range(self.rng.randint(1, 8)):
            i = self.rng.randrange(len(b))
            b[i] ^= 1 << self.rng.randrange(8)
        if self.rng.random() < 0.5:
            b = fix_length(b)  # so that flips reach past the BVLC
        return bytes(b)

    def truncate(self):
        d = self.pick()
        d = d[:self.rng.randrange(len(d))]
        return fix_length(d) if self.rng.random() < 0.5 else d

    def length_lie(self):
        b = bytearray(self.pick())
        b[2:4] = struct.pack(">H", self.rng.choice([0, 1, 2, 3, 4, len(b) - 1, len(b) + 1, self.rng.randrange(65536)]))
        return bytes(b)

    def splice(self):
        b = bytearray(self.pick())
        for _ in range(self.rng.randint(1, 4)):
            at = self.rng.randrange(len(b) + 1)
            if self.rng.random() < 0.5:
                b[at:at] = self.rand(self.rng.randint(1, 8))
            else:
                del b[at:at + self.rng.randint(1, 8)]
        return fix_length(b) if self.rng.random() < 0.7 else bytes(b)

    def random_bytes(self):
        n = self.rng.randrange(0, 600)
        b = self.rand(n)
        if n >= 2 and self.rng.random() < 0.5:
            b = b"\x81" + bytes([self.rng.choice([0x04, 0x09, 0x0A, 0x0B, self.rng.randrange(256)])]) + b[2:]
            b = fix_length(b) if self.rng.random() < 0.5 else b
        return b

    def oversize(self):
        n = self.rng.randrange(1500, 9000)
        b = self.pick()
        b = b + self.rand(n - len(b))
        return fix_length(b) if self.rng.random() < 0.7 else b

    def garbage_service(self):
        npdu = self.rng.choice([b"\x01\x00", b"\x01\x04", b"\x01\x24\x00\x64\x01\x05\xff", b"\x01\x08\x00\x07\x01\x09"])
        kind = self.rng.randrange(8) << 4 | self.rng.randrange(16)
        header = bytes([kind, 0x05, self.rng.randrange(256), self.rng.choice([0, 1, 2, 5, 8, 12, 14, 15, 255])])
        return bvlc(npdu + header + self.rand(self.rng.randrange(0, 200)))

    def wild_segment(self):
        # a segmented ComplexAck or confirmed request, any sequence and window
        seq, win, invoke = self.rng.randrange(256), self.rng.randrange(256), self.rng.randrange(256)
        more = self.rng.choice([0, 4])
        if self.rng.random() < 0.5:
            apdu = bytes([0x38 | more, invoke, seq, win, self.rng.choice([12, 14])])
        else:
            apdu = bytes([0x08 | more | 0x02, 0x75, invoke, seq, win, 12])
        return bvlc(b"\x01\x00" + apdu + self.rand(self.rng.randrange(0, 400)))

    def wild_segment_ack(self):
        flags = self.rng.randrange(4)
        apdu = bytes([0x40 | flags, self.rng.randrange(256), self.rng.randrange(256), self.rng.randrange(256)])
        return bvlc(b"\x01\x00" + apdu)

    def forwarded(self):
        # a Forwarded-NPDU claiming to come from a polled device
        ip, port = self.spoof or ("127.0.0.1", 47808)
        inner = self.pick()
        npdu = inner[10:] if len(inner) > 1 and inner[1] == 0x04 else inner[4:]
        if self.rng.random() < 0.5:
            npdu = bytes(b ^ (1 << self.rng.randrange(8)) if self.rng.random() < 0.05 else b for b in npdu)
        return fix_length(bytes([0x81, 0x04, 0, 0]) + socket.inet_aton(ip) + struct.pack(">H", port) + npdu)


def header_parses(d):
    """True when frame::parse would take the datagram (BVLC, NPDU and APDU
    header), False when it is malformed there: a copy of its rules."""
    if len(d) < 4 or d[0] != 0x81:
        return False
    function, length = d[1], struct.unpack(">H", d[2:4])[0]
    if length != len(d) or length < 4:
        return False
    if function in (0x0A, 0x0B, 0x09):
        n = d[4:]
    elif function == 0x04:
        if len(d) < 10:
            return False
        n = d[10:]
    else:
        return False
    if len(n) < 2 or n[0] != 1:
        return False
    control, pos = n[1], 2

    def route(pos):
        if pos + 3 > len(n):
            return None
        mac_len = n[pos + 2]
        if pos + 3 + mac_len > len(n) or mac_len > 8:
            return None
        return struct.unpack(">H", n[pos:pos + 2])[0], mac_len, pos + 3 + mac_len

    if control & 0x20:
        r = route(pos)
        if r is None:
            return False
        pos = r[2]
    if control & 0x08:
        r = route(pos)
        if r is None or r[0] == 0xFFFF or r[1] == 0:
            return False
        pos = r[2]
    if control & 0x20:
        if pos >= len(n):
            return False
        pos += 1
    rest = n[pos:]
    if control & 0x80:
        if not rest:
            return False
        return len(rest) >= (3 if rest[0] >= 0x80 else 1)
    if not rest:
        return False
    kind = rest[0] >> 4
    if kind == 0:
        if len(rest) < 2 or (rest[1] & 0x0F) > 5:
            return False
        return len(rest) >= (6 if rest[0] & 0x08 else 4)
    need = {1: 2, 2: 3, 3: 5 if rest[0] & 0x08 else 3, 4: 4, 5: 3, 6: 3, 7: 3}.get(kind)
    return need is not None and len(rest) >= need


# ---------------------------------------------------------------- processes and checks


def udp_drops(port):
    """Datagrams the kernel dropped on the loopback socket bound to port."""
    total = 0
    with open("/proc/net/udp") as f:
        next(f)
        for line in f:
            fields = line.split()
            local = fields[1]
            if int(local.split(":")[1], 16) == port:
                total += int(fields[-1])
    return total


class Probe:
    """ReadProperty Object_Name of a simulated device, from its own socket."""

    def __init__(self, addr, instance):
        self.addr, self.instance = addr, instance
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(1.0)
        self.invoke = 0
        self.ok = self.failed = 0

    def once(self):
        self.invoke = (self.invoke + 1) % 256
        self.sock.sendto(rp_request(self.invoke, 8, 4194303, 77), self.addr)
        want = f"SIM-{self.instance}".encode()
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            try:
                d, _ = self.sock.recvfrom(2048)
            except socket.timeout:
                break
            # BVLC, NPDU 01 00, ComplexAck 30 <invoke> 0C, [0] device, [1] 77, [3] { "SIM-n" }
            if len(d) > 8 and d[4:6] == b"\x01\x00" and d[6] == 0x30 and d[7] == self.invoke and d[8] == 0x0C:
                if want in d and d.endswith(b"\x3f"):
                    self.ok += 1
                    return True
        self.failed += 1
        return False


class Monitor(threading.Thread):
    """Every second: /health, the devices (online, polls_ok), the first device's points, processes alive."""

    def __init__(self, base, procs, first):
        super().__init__(daemon=True)
        self.base, self.procs, self.first = base, procs, first
        self.stop = threading.Event()
        self.samples = self.health_failures = self.points_failures = self.dead = 0
        self.min_online = None
        self.errors = []

    def devices(self):
        return pwlib.get_json(f"{self.base}/api/v1/devices?limit=1000")["items"]

    def run(self):
        while not self.stop.wait(1.0):
            self.samples += 1
            if any(p.poll() is not None for p in self.procs):
                self.dead += 1
                self.errors.append("a process exited")
                return
            try:
                with urllib.request.urlopen(f"{self.base}/health", timeout=5) as r:
                    if r.status != 200:
                        self.health_failures += 1
            except OSError as e:
                self.health_failures += 1
                self.errors.append(f"/health: {e}")
            try:
                pts = pwlib.get_json(f"{self.base}/api/v1/devices/{self.first}/points")["items"]
                if not pts:
                    self.points_failures += 1
            except OSError as e:
                self.points_failures += 1
                self.errors.append(f"points: {e}")
            try:
                online = sum(d["status"] == "online" for d in self.devices())
                self.min_online = online if self.min_online is None else min(self.min_online, online)
            except OSError as e:
                self.errors.append(f"devices: {e}")


def polls(base):
    return {d["instance"]: (d["status"], d["counters"]["polls_ok"])
            for d in pwlib.get_json(f"{base}/api/v1/devices?limit=1000")["items"]}


def storm(name, target, count, mutator, probe=None, probe_every=20_000):
    """Sends count mutated datagrams at target; returns (sent, seconds, header-malformed)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    bad = sent = 0
    t0 = time.monotonic()
    for i in range(count):
        d = mutator.next()
        if not header_parses(d):
            bad += 1
        try:
            sock.sendto(d, target)
            sent += 1
        except OSError:
            pass  # e.g. ECONNREFUSED from an earlier ICMP error: the datagram is not sent
        if probe is not None and i % probe_every == probe_every - 1:
            probe.once()
        if i % 200_000 == 199_999:
            print(f"  {name}: {i + 1} sent, {(i + 1) / (time.monotonic() - t0):,.0f}/s", flush=True)
    sock.close()
    return sent, time.monotonic() - t0, bad


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=1_000_000, help="datagrams to each of plantwatch and the simulator")
    ap.add_argument("--devices", type=int, default=20)
    ap.add_argument("--bin", default=None, help="the plantwatch binary (default: target/release, else target/debug)")
    ap.add_argument("--seed", type=int, default=11)
    args = ap.parse_args()
    binary = args.bin
    if binary is None:
        for b in ("release", "debug"):
            binary = os.path.join(ROOT, "target", b, "plantwatch")
            if os.path.exists(binary):
                break
    if not os.path.exists(binary):
        raise SystemExit(f"no binary at {binary}: build it first (cargo build --release)")
    print(f"binary: {binary}")
    tmp = tempfile.mkdtemp(prefix="plantwatch-storm-")
    procs, failures = [], []
    try:
        sim = subprocess.Popen([binary, "simulate", "--devices", str(args.devices), "--objects", "2", "--layout",
                                "port", "--bind", "127.0.0.1:0"], stdout=subprocess.PIPE, text=True)
        procs.append(sim)
        found = [json.loads(sim.stdout.readline()) for _ in range(args.devices)]
        threading.Thread(target=lambda: [None for _ in sim.stdout], daemon=True).start()
        net_port = pwlib.free_port(socket.SOCK_DGRAM)
        cfg = [f'[store]\npath = "{tmp}/store"\n[auth]\nenabled = false\n[log]\nlevel = "warn"\n',
               f'[[network]]\nname = "{NETWORK}"\nbind = "127.0.0.1:{net_port}"\npoll = "1s"\n']
        for d in found:
            cfg.append(f'[[network.device]]\ninstance = {d["instance"]}\naddress = "{d["address"]}"\n')
        config = os.path.join(tmp, "storm.toml")
        with open(config, "w") as f:
            f.write("\n".join(cfg))
        env = dict(os.environ, PLANTWATCH__SERVER__LISTEN="127.0.0.1:0", RUST_LOG="warn,plantwatch=info")
        serve = pwlib.Serve(binary, config, env)
        base = serve.require_listening()
        procs.append(serve.proc)
        first = found[0]["instance"]
        t0 = time.monotonic()
        while True:
            p = polls(base)
            if len(p) == args.devices and all(s == "online" and n > 0 for s, n in p.values()):
                break
            if time.monotonic() - t0 > 60:
                raise SystemExit(f"devices not online after 60 s: {p}")
            time.sleep(0.5)
        print(f"{args.devices} devices online after {time.monotonic() - t0:.1f} s; plantwatch network socket "
              f"127.0.0.1:{net_port}, API {base}")

        sim_host, sim_port = found[0]["address"].rsplit(":", 1)
        sim_addr = (sim_host, int(sim_port))
        frames = golden_frames() + own_frames()
        monitor = Monitor(base, procs, first)
        monitor.start()

        # plantwatch's network socket
        before = polls(base)
        malformed0 = pwlib.msum(pwlib.scrape(base), "plantwatch_bacnet_malformed_frames_total", network=NETWORK)
        drops0 = udp_drops(net_port)
        sent_pw, secs_pw, bad_pw = storm("plantwatch", ("127.0.0.1", net_port), args.count,
                                         Mutator(args.seed, frames, spoof=sim_addr))
        time.sleep(3)
        malformed = pwlib.msum(pwlib.scrape(base), "plantwatch_bacnet_malformed_frames_total", network=NETWORK) - malformed0
        drops_pw = udp_drops(net_port) - drops0

        # the first simulated device's socket
        probe = Probe(sim_addr, first)
        sim_drops0 = udp_drops(int(sim_port))
        sent_sim, secs_sim, bad_sim = storm("simulator", sim_addr, args.count, Mutator(args.seed + 1, frames),
                                            probe=probe)
        during_ok, during_failed = probe.ok, probe.failed
        drops_sim = udp_drops(int(sim_port)) - sim_drops0

        # after: three poll intervals of quiet
        time.sleep(3)
        after = polls(base)
        monitor.stop.set()
        monitor.join()
        probe.ok = probe.failed = 0
        for _ in range(20):
            probe.once()
        alive = [p.poll() is None for p in procs]
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=5) as r:
                health = r.status
            points = len(pwlib.get_json(f"{base}/api/v1/devices/{first}/points")["items"])
        except OSError as e:
            health, points = f"error {e}", 0

        print()
        print(f"plantwatch: {sent_pw:,} datagrams in {secs_pw:.1f} s ({sent_pw / secs_pw:,.0f}/s); "
              f"{bad_pw:,} malformed in the BVLC/NPDU/APDU header; kernel dropped {drops_pw:,} on the socket")
        print(f"  plantwatch_bacnet_malformed_frames_total{{network=\"{NETWORK}\"}} +{malformed:,.0f} "
              f"({100 * malformed / max(sent_pw, 1):.1f}% of the datagrams sent)")
        print(f"simulator:  {sent_sim:,} datagrams in {secs_sim:.1f} s ({sent_sim / secs_sim:,.0f}/s); "
              f"{bad_sim:,} malformed in the header; kernel dropped {drops_sim:,} on the device socket")
        print(f"  ReadProperty probes of device {first}: {during_ok}/{during_ok + during_failed} answered correctly "
              f"during the storm, {probe.ok}/20 after it")
        print(f"monitor: {monitor.samples} samples, /health failures {monitor.health_failures}, points failures "
              f"{monitor.points_failures}, fewest devices online {monitor.min_online}/{args.devices}")
        rising = [i for i in after if after[i][1] > before.get(i, ("", 0))[1]]
        online = [i for i in after if after[i][0] == "online"]
        print(f"after: processes alive {alive}, /health {health}, {points} points of device {first}, "
              f"{len(online)}/{args.devices} online, polls_ok rose on {len(rising)}/{args.devices} devices "
              f"(sum {sum(v[1] for v in before.values())} -> {sum(v[1] for v in after.values())})")
        if monitor.errors:
            print("monitor errors:", "; ".join(monitor.errors[:5]))

        if not all(alive):
            failures.append("a process died")
        if health != 200 or points == 0:
            failures.append("the API does not answer after the storm")
        if monitor.health_failures or monitor.points_failures or monitor.dead:
            failures.append("the API failed during the storm")
        if len(rising) != args.devices or len(online) != args.devices:
            failures.append("polling did not go on for every device")
        if not (bad_pw - drops_pw <= malformed <= sent_pw):
            failures.append(f"malformed count {malformed:.0f} outside [{bad_pw - drops_pw}, {sent_pw}]")
        if probe.ok != 20 or during_ok == 0:
            failures.append("the simulator does not answer ReadProperty correctly")
        print("PASS" if not failures else "FAIL: " + "; ".join(failures))
        return 0 if not failures else 1
    finally:
        for p in procs:
            pwlib.stop(p, timeout=20)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
