#!/usr/bin/env python3
"""Host one bac-py BACnet/IP device on loopback for plantwatch's interop tests.

    bacpy_device.py --address 127.0.0.2 --port P --instance 4001 [--ramp-ms 200] [--no-broadcast]

Prints one line when the device is bound and answering:
    {"instance": 4001, "address": "127.0.0.2:PORT", "broadcast": "127.255.255.255:PORT"}
then serves until stdin reaches EOF or SIGTERM/SIGINT, and exits 0. Exits 2
without the ready line when the address is taken.

Objects (names and values are what the tests assert):
    analog-input:1   present-value 21.0, degrees-celsius, cov-increment 0.5, "AI-1"
    analog-input:2   a ramp: +0.25 every --ramp-ms (0: steady at 0.0), cov-increment 0.1, "AI-2"
    analog-value:1   commandable, relinquish-default 0.0, percent, cov-increment 0.5, "AV-1"
    binary-value:1   commandable, relinquish-default inactive, "BV-1"
Device: vendor-identifier 999, vendor-name "plantwatch-interop", model-name
"bacpy_device", object-name "bacpy-device-<instance>". bac-py itself answers
ReadProperty, ReadPropertyMultiple, WriteProperty (priorities, NULL
relinquishes), SubscribeCOV (confirmed or not; a notification on subscribe and
on every change past the cov-increment) and Who-Is.

Control lines on stdin, each answered with one JSON line ({"ok": true} or
{"ok": false, "error": "..."}):
    set OBJ VALUE    present-value from inside the device ("set analog-input:1 25.5",
                     "set binary-value:1 active"); on a commandable object this
                     writes priority 16. COV subscribers are notified.
    ping

bac-py and loopback. Unlike bacpypes3, bac-py sends every datagram to the
address it is given: its only "is this me" check drops datagrams whose source
is its own ip:port (transport/bip.py, _on_datagram_received). So a peer may
share the device's port on another loopback address, and it has to for
discovery: bac-py answers every Who-Is, directed or not, with an I-Am to the
global broadcast (app/server.py handle_who_is, "per Clause 16.10.2"), which
goes to --broadcast-address:PORT, the device's own port. A socket bound to
127.0.0.2 does not receive datagrams sent to 127.255.255.255, and bac-py has
no broadcast listener of its own, so unless --no-broadcast is given this
script adds one: 127.255.255.255:PORT with SO_REUSEADDR (shared with the other
devices and peers on the port), fed into bac-py's receive path.
"""

import argparse
import asyncio
import json
import os
import signal
import socket
import sys
import threading

from bac_py import BACnetApplication, DefaultServerHandlers, DeviceConfig, DeviceObject
from bac_py.objects.analog import AnalogInputObject, AnalogValueObject
from bac_py.objects.binary import BinaryValueObject
from bac_py.types.enums import BinaryPV, EngineeringUnits, ObjectType, PropertyIdentifier, Segmentation
from bac_py.types.primitives import ObjectIdentifier

PV = PropertyIdentifier.PRESENT_VALUE


def emit(doc) -> None:
    sys.stdout.write(json.dumps(doc) + "\n")
    sys.stdout.flush()


def probe_port(address: str, port: int) -> int:
    """A plain bind: fails if anything holds the address; port 0 picks a free one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((address, port))
        return s.getsockname()[1]


def parse_object(text: str) -> ObjectIdentifier:
    kind, _, instance = text.partition(":")
    return ObjectIdentifier(ObjectType[kind.strip().upper().replace("-", "_")], int(instance))


def make_objects(args) -> list:
    device = DeviceObject(
        instance_number=args.instance,
        object_name=f"bacpy-device-{args.instance}",
        vendor_name="plantwatch-interop",
        vendor_identifier=999,
        model_name="bacpy_device",
        max_apdu_length_accepted=1476,
        segmentation_supported=Segmentation.BOTH,
    )
    ai1 = AnalogInputObject(
        1,
        object_name="AI-1",
        description="analog input 1",
        present_value=21.0,
        units=EngineeringUnits.DEGREES_CELSIUS,
        cov_increment=0.5,
    )
    ai2 = AnalogInputObject(
        2,
        object_name="AI-2",
        description="a ramp",
        present_value=0.0,
        units=EngineeringUnits.DEGREES_CELSIUS,
        cov_increment=0.1,
    )
    av1 = AnalogValueObject(
        1,
        commandable=True,
        object_name="AV-1",
        description="commandable analog value",
        units=EngineeringUnits.PERCENT,
        cov_increment=0.5,
    )
    bv1 = BinaryValueObject(1, commandable=True, object_name="BV-1", description="commandable binary value")
    return [device, ai1, ai2, av1, bv1]


def set_present_value(app: BACnetApplication, obj_text: str, value_text: str) -> None:
    obj = app.object_db.get(parse_object(obj_text))
    if obj is None:
        raise ValueError(f"no such object: {obj_text}")
    if obj.object_identifier.object_type in (ObjectType.BINARY_VALUE, ObjectType.BINARY_INPUT):
        value = BinaryPV[value_text.strip().upper()]
    else:
        value = float(value_text)
    if obj._priority_array is not None:
        obj.write_property(PV, value, 16)
    else:
        obj._properties[PV] = value  # read-only to the network, not to the device
    if app.cov_manager is not None:
        app.cov_manager.check_and_notify(obj, PV)


async def ramp(app: BACnetApplication, period_ms: int) -> None:
    ai2 = app.object_db.get(ObjectIdentifier(ObjectType.ANALOG_INPUT, 2))
    while True:
        await asyncio.sleep(period_ms / 1000)
        ai2._properties[PV] = round(float(ai2._properties[PV]) + 0.25, 2)
        if app.cov_manager is not None:
            app.cov_manager.check_and_notify(ai2, PV)


class BroadcastListener(asyncio.DatagramProtocol):
    def __init__(self, transport) -> None:
        self.bip = transport

    def datagram_received(self, data: bytes, addr) -> None:
        self.bip._on_datagram_received(data, addr)


def handle_control(app: BACnetApplication, line: str) -> dict:
    words = line.split()
    try:
        if words == ["ping"]:
            pass
        elif len(words) == 3 and words[0] == "set":
            set_present_value(app, words[1], words[2])
        else:
            return {"ok": False, "error": f"unknown command: {line}"}
    except Exception as err:  # report, keep serving
        return {"ok": False, "error": f"{type(err).__name__}: {err}"}
    return {"ok": True}


def stdin_reader(loop, lines: asyncio.Queue) -> None:
    """Blocking reads in a thread; None marks EOF (raw os.read, as bp3_device.py)."""
    pending = b""
    while chunk := os.read(0, 4096):
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for raw in complete:
            loop.call_soon_threadsafe(lines.put_nowait, raw.decode("utf-8", "replace").strip())
    if pending.strip():
        loop.call_soon_threadsafe(lines.put_nowait, pending.decode("utf-8", "replace").strip())
    loop.call_soon_threadsafe(lines.put_nowait, None)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", default="127.0.0.2")
    parser.add_argument("--port", type=int, default=47808)
    parser.add_argument("--instance", type=int, default=4001)
    parser.add_argument("--broadcast-address", default="127.255.255.255")
    parser.add_argument("--ramp-ms", type=int, default=200)
    parser.add_argument("--no-broadcast", action="store_true")
    args = parser.parse_args()

    if not args.address.startswith("127."):
        parser.error("loopback addresses (127.0.0.0/8) only")
    try:
        port = probe_port(args.address, args.port)
    except OSError as err:
        print(f"bacpy_device: {args.address}:{args.port} is not free: {err}", file=sys.stderr)
        return 2

    config = DeviceConfig(
        instance_number=args.instance,
        name=f"bacpy-device-{args.instance}",
        vendor_name="plantwatch-interop",
        vendor_id=999,
        model_name="bacpy_device",
        interface=args.address,
        port=port,
        broadcast_address=args.broadcast_address,
        apdu_timeout=2000,
        apdu_retries=1,
    )
    app = BACnetApplication(config)
    objects = make_objects(args)
    for obj in objects:
        app.object_db.add(obj)
    DefaultServerHandlers(app, app.object_db, objects[0]).register()
    try:
        await app.start()
    except OSError as err:
        print(f"bacpy_device: could not bind {args.address}:{port}: {err}", file=sys.stderr)
        return 2

    loop = asyncio.get_running_loop()
    listener = None
    if not args.no_broadcast:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((args.broadcast_address, port))
        listener, _ = await loop.create_datagram_endpoint(lambda: BroadcastListener(app._transport), sock=sock)

    tasks = []
    if args.ramp_ms > 0:
        tasks.append(asyncio.create_task(ramp(app, args.ramp_ms)))

    lines: asyncio.Queue = asyncio.Queue()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lines.put_nowait, None)
    threading.Thread(target=stdin_reader, args=(loop, lines), daemon=True).start()

    ready = {"instance": args.instance, "address": f"{args.address}:{port}"}
    if listener is not None:
        ready["broadcast"] = f"{args.broadcast_address}:{port}"
    emit(ready)

    while (line := await lines.get()) is not None:
        if line:
            emit(handle_control(app, line))

    for t in tasks:
        t.cancel()
    if listener is not None:
        listener.close()
    await app.stop()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
