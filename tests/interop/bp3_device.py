#!/usr/bin/env python3
"""Host one bacpypes3 BACnet/IP device on loopback for plantwatch's interop tests.

    bp3_device.py --address 127.0.0.2 --port P --instance 3001 [--objects K] [--no-broadcast]

Prints one line when the device is bound and answering:
    {"instance": 3001, "address": "127.0.0.2:PORT"}
then serves until stdin reaches EOF or SIGTERM/SIGINT, and exits 0.

Control lines on stdin, each answered with one JSON line ({"ok": true} or
{"ok": false, "error": "..."}):
    set OBJ VALUE            change present-value from inside the device
                             (e.g. "set analog-input:1 25.5", "set binary-input:1 active");
                             on commandable objects this writes priority 16
    setprop OBJ PROP VALUE   change another property (e.g. "setprop analog-input:1 out-of-service true")
    ping                     liveness check

Loopback quirk: bacpypes3 (ipv4/__init__.py, IPv4DatagramServer.indication) treats
any 127.x.x.x destination on its OWN UDP port as itself and loops the datagram back
in-process instead of sending it.  So a peer must use a different UDP port than this
device: verified that a bacpypes3 client on 127.0.0.1:<other port> gets Who-Is,
ReadProperty, ReadPropertyMultiple, WriteProperty and COV answers from a device on
127.0.0.2:<port>, while a peer on 127.0.0.1:<same port> never receives an answer.
bacpypes3 also binds with SO_REUSEPORT, so the address is probed with a plain bind
first: if anything already holds it we fail instead of silently splitting traffic.

Unless --no-broadcast is given the device also listens on 127.255.255.255:PORT
(SO_REUSEPORT, shared with other devices on the same port), so a broadcast Who-Is
to that address reaches it.
"""

import argparse
import asyncio
import json
import os
import signal
import socket
import sys
import threading

from bacpypes3.app import Application
from bacpypes3.basetypes import PriorityValue
from bacpypes3.local.analog import (
    AnalogInputObject,
    AnalogOutputObject,
    AnalogValueObjectCmd,
)
from bacpypes3.local.binary import BinaryInputObject, BinaryOutputObject
from bacpypes3.local.cov import GenericCriteria
from bacpypes3.local.device import DeviceObject
from bacpypes3.local.multistate import MultiStateValueObject as _MultiStateValueObject
from bacpypes3.local.networkport import NetworkPortObject
from bacpypes3.local.object import Object as LocalObject
from bacpypes3.object import CharacterStringValueObject as _CharacterStringValueObject
from bacpypes3.primitivedata import ObjectIdentifier, Real

READY_TIMEOUT = 3.0


class CharacterStringValueObject(LocalObject, _CharacterStringValueObject):
    """bacpypes3 ships no local character-string-value object; this is the plain one."""

    _cov_criteria = GenericCriteria


class MultiStateValueObject(_MultiStateValueObject):
    """bacpypes3's class uses COV-increment criteria, but a multi-state value has no
    cov-increment: SubscribeCOV fails with device:operational-problem and leaves the
    object broken.  Multi-state values report any change (generic criteria)."""

    _cov_criteria = GenericCriteria


def emit(obj) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def probe_port(address: str, port: int) -> int:
    """Check that address:port is free with a plain (no SO_REUSEPORT) bind; port 0
    picks a free one.  Returns the port."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.bind((address, port))
        return probe.getsockname()[1]
    finally:
        probe.close()


def make_objects(instance: int, address: str, port: int, count: int, broadcast: bool):
    mask = "/8" if broadcast else "/32"
    objects = [
        DeviceObject(
            objectIdentifier=("device", instance),
            objectName=f"bp3-device-{instance}",
            vendorIdentifier=999,
            vendorName="plantwatch-interop",
            modelName="bp3_device",
            maxApduLengthAccepted=1476,
            segmentationSupported="segmented-both",
        ),
        NetworkPortObject(
            f"{address}{mask}:{port}",
            objectIdentifier=("network-port", 1),
            objectName="NetworkPort-1",
        ),
    ]
    normal = dict(eventState="normal", outOfService=False, reliability="no-fault-detected")
    for n in range(1, count + 1):
        objects += [
            AnalogInputObject(
                objectIdentifier=("analog-input", n),
                objectName=f"AI-{n}",
                description=f"analog input {n}",
                presentValue=20.0 + n,
                units="degrees-celsius",
                covIncrement=0.5,
                **normal,
            ),
            # commandable: 50.0 sits at priority 16 above relinquish-default 0.0
            AnalogValueObjectCmd(
                objectIdentifier=("analog-value", n),
                objectName=f"AV-{n}",
                description=f"analog value {n}",
                priorityArray=[PriorityValue(null=()) for _ in range(15)]
                + [PriorityValue(real=Real(50.0))],
                relinquishDefault=0.0,
                units="percent",
                covIncrement=0.5,
                **normal,
            ),
            AnalogOutputObject(
                objectIdentifier=("analog-output", n),
                objectName=f"AO-{n}",
                description=f"analog output {n}",
                presentValue=0.0,
                relinquishDefault=0.0,
                units="percent",
                covIncrement=0.5,
                **normal,
            ),
            BinaryInputObject(
                objectIdentifier=("binary-input", n),
                objectName=f"BI-{n}",
                description=f"binary input {n}",
                presentValue="inactive",
                polarity="normal",
                **normal,
            ),
            BinaryOutputObject(
                objectIdentifier=("binary-output", n),
                objectName=f"BO-{n}",
                description=f"binary output {n}",
                presentValue="inactive",
                relinquishDefault="inactive",
                polarity="normal",
                **normal,
            ),
            MultiStateValueObject(
                objectIdentifier=("multi-state-value", n),
                objectName=f"MSV-{n}",
                description=f"multi-state value {n}",
                presentValue=1,
                numberOfStates=3,
                stateText=["Off", "Low", "High"],
                **normal,
            ),
            CharacterStringValueObject(
                objectIdentifier=("characterstring-value", n),
                objectName=f"CSV-{n}",
                description=f"character string value {n}",
                presentValue="Grüße",
                **normal,
            ),
        ]
    for obj in objects:
        if isinstance(obj, AnalogValueObjectCmd):
            obj.recalculating()  # present-value from the priority array given above
    return objects


def attr_name(obj, prop: str) -> str:
    """'present-value' -> 'presentValue', checked against the object's properties."""
    attr = obj._property_identifier_class(prop).attr
    if attr not in obj._elements:
        raise ValueError(f"{prop} is not a property of {obj.objectIdentifier}")
    return attr


def parse_objid(text: str) -> ObjectIdentifier:
    """'analog-input:1' -> ObjectIdentifier; 'character-string-value' is accepted as an
    alias of bacpypes3's (and the standard's) 'characterstring-value'."""
    text = text.replace("character-string-value", "characterstring-value")
    return ObjectIdentifier(text.replace(":", ","))


def set_property(app, objid: str, prop: str, text: str) -> None:
    obj = app.get_object_id(parse_objid(objid))
    if obj is None:
        raise ValueError(f"no object {objid}")
    attr = attr_name(obj, prop)
    datatype = obj.get_property_type(attr)
    value = text
    if text.lower() in ("true", "false"):
        value = text.lower() == "true"
    else:
        for conv in (int, float):
            try:
                value = conv(text)
                break
            except ValueError:
                pass
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            datatype(value)
        except Exception:
            value = text  # e.g. a numeric-looking character string
    flags_before = obj.statusFlags
    setattr(obj, attr, datatype(value))
    # status-flags is computed from event-state/reliability/out-of-service, so bacpypes3's
    # COV detection never sees it change: tell its property monitors ourselves
    flags_after = obj.statusFlags
    if flags_after != flags_before:
        for monitor in obj._property_monitors["statusFlags"]:
            monitor(flags_before, flags_after)


def handle_control(app, line: str) -> dict:
    words = line.split()
    if not words:
        return {"ok": False, "error": "empty command"}
    try:
        if words[0] == "ping" and len(words) == 1:
            pass
        elif words[0] == "set" and len(words) >= 3:
            set_property(app, words[1], "present-value", line.split(None, 2)[2])
        elif words[0] == "setprop" and len(words) >= 4:
            set_property(app, words[1], words[2], line.split(None, 3)[3])
        else:
            return {"ok": False, "error": f"unknown command: {line}"}
    except Exception as err:  # report, keep serving
        return {"ok": False, "error": f"{type(err).__name__}: {err}"}
    return {"ok": True}


def stdin_reader(loop, lines: asyncio.Queue) -> None:
    """Blocking reads in a thread (works for pipes, files and ttys); None marks EOF.
    Raw os.read, not sys.stdin: a thread blocked in a buffered read would make the
    interpreter abort at exit after SIGTERM."""
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
    parser.add_argument("--instance", type=int, default=3001)
    parser.add_argument("--objects", type=int, default=1)
    parser.add_argument("--no-broadcast", action="store_true")
    args = parser.parse_args()

    if not args.address.startswith("127."):
        parser.error("loopback addresses (127.0.0.0/8) only")
    try:
        port = probe_port(args.address, args.port)
    except OSError as err:
        print(f"bp3_device: {args.address}:{args.port} is not free: {err}", file=sys.stderr)
        return 2

    objects = make_objects(args.instance, args.address, port, args.objects, not args.no_broadcast)
    app = Application.from_object_list(objects)

    # bacpypes3 binds asynchronously and retries a failing bind forever: wait for it
    for link_layer in app.link_layers.values():
        tasks = link_layer.server._transport_tasks
        try:
            await asyncio.wait_for(asyncio.gather(*tasks), READY_TIMEOUT)
        except asyncio.TimeoutError:
            print(f"bp3_device: could not bind {args.address}:{port}", file=sys.stderr)
            return 2

    loop = asyncio.get_running_loop()
    lines: asyncio.Queue = asyncio.Queue()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lines.put_nowait, None)
    threading.Thread(target=stdin_reader, args=(loop, lines), daemon=True).start()

    emit({"instance": args.instance, "address": f"{args.address}:{port}"})

    while (line := await lines.get()) is not None:
        if line:
            emit(handle_control(app, line))

    app.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
