#!/usr/bin/env python3
"""A bacpypes3 BACnet/IP client used by plantwatch's interop tests to talk to ANOTHER device.

    bp3_client.py --local 127.0.0.1 --target 127.0.0.2:PORT [--broadcast 127.255.255.255:PORT]
                  [--port N] [--timeout 5] [--wait 2] ACTION [ACTION ...]

Actions (several may follow each other; one JSON line is printed per action, in order):
    whois [LOW HIGH]                    {"iams": [{"instance": N, "address": "ip:port", ...}]}
        directed to --target, or a global broadcast when --broadcast is given
    read OBJ PROP [INDEX]               {"value": ...}
    rpm OBJ PROP[,PROP...] [OBJ PROP[,PROP...] ...]
        {"results": [{"object", "property", "value"} or {"object", "property", "error"}]}
    write OBJ PROP VALUE [PRIORITY]     {"ok": true}
        VALUE "null" relinquishes; "real:1.5", "unsigned:7", "signed:-1", "double:1.5",
        "boolean:true", "enumerated:3", "string:text" force a datatype (needed for
        properties bacpypes3 does not know, e.g. 1000)
    subscribe OBJ LIFETIME SECONDS [confirmed|unconfirmed]
        SubscribeCOV, collect notifications for SECONDS, cancel:
        {"notifications": [{"object", "device", "process_id", "time_remaining",
                            "confirmed", "values": {"present-value": ..., ...}}]}
Any failed action prints {"error": "class:code"}, {"error": "reject:reason"},
{"error": "abort:reason"} or {"error": "timeout"} (after --timeout seconds) instead.

OBJ is "type:instance" (e.g. analog-input:1; "character-string-value" is accepted for
bacpypes3's "characterstring-value"), PROP a bacpypes3 property name or number, with an
optional [index] (e.g. priority-array[8]).  Values: numbers, enumerations and bit names
as bacpypes3 strings ("active"), bit strings as lists of booleans, object identifiers
as "type:instance", NULL as null.  Properties are reported by bacpypes3 name (a
number as a string when unknown).

Exit status 0 when every action ran (even if the device answered with an error),
2 on a harness failure (bad arguments, socket trouble, an unexpected exception).

The client's own UDP port is picked free on --local and is never the target's or the
broadcast port: bacpypes3 loops any datagram for 127.x.x.x on its own port back
in-process (see bp3_device.py), so a shared port would never reach the wire.
"""

import argparse
import asyncio
import json
import re
import socket
import sys

from bacpypes3.apdu import (
    AbortPDU,
    ErrorPDU,
    ErrorRejectAbortNack,
    ReadPropertyMultipleRequest,
    ReadPropertyRequest,
    RejectPDU,
    SimpleAckPDU,
    SubscribeCOVRequest,
    WhoIsRequest,
    WritePropertyRequest,
)
from bacpypes3.app import Application
from bacpypes3.basetypes import PropertyIdentifier, PropertyReference, ReadAccessSpecification
from bacpypes3.constructeddata import Any, Array, Choice, ExtendedList, Sequence
from bacpypes3.local.device import DeviceObject
from bacpypes3.local.networkport import NetworkPortObject
from bacpypes3.pdu import Address, GlobalBroadcast
from bacpypes3.primitivedata import (
    Atomic,
    BitString,
    Boolean,
    CharacterString,
    Date,
    Double,
    Enumerated,
    Integer,
    Null,
    ObjectIdentifier,
    OctetString,
    Real,
    TagClass,
    Time,
    Unsigned,
    attr_to_asn1,
)
from bacpypes3.vendor import get_vendor_info

ACTIONS = ("whois", "read", "rpm", "write", "subscribe")
FORCED_TYPES = {
    "real": Real,
    "double": Double,
    "unsigned": Unsigned,
    "signed": Integer,
    "boolean": Boolean,
    "enumerated": Enumerated,
    "string": CharacterString,
}
VENDOR = get_vendor_info(0)  # ASHRAE standard objects and properties


class HarnessError(Exception):
    """Bad input or a local failure: exit non-zero."""


class ActionFailed(Exception):
    """The peer answered with an error/reject/abort, or did not answer."""


# ----- names and values ------------------------------------------------------


def name(enum) -> str:
    return enum.asn1


def objid_text(objid: ObjectIdentifier) -> str:
    return f"{name(objid[0])}:{objid[1]}"


def parse_objid(text: str) -> ObjectIdentifier:
    text = text.replace("character-string-value", "characterstring-value")
    try:
        kind, _, instance = text.partition(":")
        return ObjectIdentifier((int(kind) if kind.isdigit() else kind, int(instance)))
    except Exception as err:
        raise HarnessError(f"bad object identifier {text!r}: {err}")


def parse_prop(text: str):
    """'present-value' / '85' / 'priority-array[8]' -> (PropertyIdentifier, index or None)."""
    match = re.fullmatch(r"([A-Za-z0-9-]+)(?:\[(\d+)\])?", text)
    if not match:
        raise HarnessError(f"bad property {text!r}")
    prop, index = match.groups()
    try:
        prop = PropertyIdentifier(int(prop) if prop.isdigit() else prop)
    except Exception as err:
        raise HarnessError(f"bad property {text!r}: {err}")
    return prop, (int(index) if index is not None else None)


def property_type(objid, prop, index):
    """The datatype bacpypes3 knows for this property (array index applied), or None."""
    object_class = VENDOR.get_object_class(objid[0])
    datatype = object_class.get_property_type(prop) if object_class else None
    if datatype is not None and issubclass(datatype, Array) and index is not None:
        datatype = Unsigned if index == 0 else datatype._subtype
    return datatype


def to_json(value):
    if value is None or isinstance(value, Null):
        return None
    if isinstance(value, Boolean):
        return bool(value)
    if isinstance(value, Enumerated):
        return name(value)
    if isinstance(value, (Unsigned, Integer)):
        return int(value)
    if isinstance(value, Real):  # Double is a Real
        return float(value)
    if isinstance(value, CharacterString):
        return str(value)
    if isinstance(value, OctetString):
        return bytes(value).hex()
    if isinstance(value, BitString):
        return [bool(bit) for bit in value]
    if isinstance(value, ObjectIdentifier):
        return objid_text(value)
    if isinstance(value, (Date, Time)):
        return str(value)
    if isinstance(value, Any):
        return tags_to_json(value.tagList)
    if isinstance(value, ExtendedList):
        return [to_json(item) for item in value]
    if isinstance(value, Choice):
        chosen = getattr(value, value._choice)
        return to_json(chosen) if isinstance(chosen, (Atomic, Any)) else {value._choice: to_json(chosen)}
    if isinstance(value, Sequence):
        return {
            attr_to_asn1(attr): to_json(getattr(value, attr))
            for attr in value._elements
            if getattr(value, attr) is not None
        }
    return str(value)


def tags_to_json(tag_list):
    """Datatype-free fallback: application tags as values, context tags as
    {"context": n, "hex": ...}, constructed parts as {"context": n, "value": [...]}."""
    top: list = []
    stack = [top]
    for tag in tag_list:
        if tag.tag_class == TagClass.opening:
            inner: list = []
            stack[-1].append({"context": tag.tag_number, "value": inner})
            stack.append(inner)
        elif tag.tag_class == TagClass.closing:
            stack.pop()
        elif tag.tag_class == TagClass.application:
            stack[-1].append(to_json(tag.app_to_object()))
        else:
            stack[-1].append({"context": tag.tag_number, "hex": bytes(tag.tag_data).hex()})
    return top[0] if len(top) == 1 else top


def decode_value(objid, prop, index, any_value):
    datatype = property_type(objid, prop, index)
    if datatype is not None:
        try:
            return to_json(any_value.cast_out(datatype, null=issubclass(datatype, Atomic)))
        except Exception:
            pass  # the peer sent something else: fall back to the raw tags
    return tags_to_json(any_value.tagList)


def parse_value(objid, prop, index, text: str):
    if text == "null":
        return Null(())
    forced, sep, rest = text.partition(":")
    if sep and forced in FORCED_TYPES:
        datatype, text = FORCED_TYPES[forced], rest
    else:
        datatype = property_type(objid, prop, index)
        if datatype is None:  # unknown property: guess from the literal
            datatype = guess_type(text)
    try:
        if issubclass(datatype, Boolean):
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError(text)
            return datatype(text.lower() in ("true", "1"))
        if issubclass(datatype, Real):
            return datatype(float(text))
        if issubclass(datatype, (Unsigned, Integer)):
            return datatype(int(text, 0))
        if issubclass(datatype, Enumerated):
            return datatype(int(text) if text.isdigit() else text)
        if issubclass(datatype, ObjectIdentifier):
            return parse_objid(text)
        if issubclass(datatype, BitString):
            return datatype([int(bit) for bit in text.split(",")])
        if issubclass(datatype, (CharacterString, Date, Time)):
            return datatype(text)
    except HarnessError:
        raise
    except Exception as err:
        raise HarnessError(f"cannot make a {datatype.__name__} from {text!r}: {err}")
    raise HarnessError(f"writing a {datatype.__name__} is not supported; force a type")


def guess_type(text: str):
    if text.lower() in ("true", "false"):
        return Boolean
    try:
        return Unsigned if int(text, 0) >= 0 else Integer
    except ValueError:
        pass
    try:
        float(text)
        return Real
    except ValueError:
        return CharacterString


def error_text(err) -> str:
    if isinstance(err, RejectPDU):
        return f"reject:{name(err.apduAbortRejectReason)}"
    if isinstance(err, AbortPDU):
        return f"abort:{name(err.apduAbortRejectReason)}"
    if isinstance(err, ErrorPDU):
        source = getattr(err, "errorType", None) or err
        return f"{name(source.errorClass)}:{name(source.errorCode)}"
    return f"error:{err}"


# ----- the application -------------------------------------------------------


class Client(Application):
    """Records I-Ams and COV notifications instead of only feeding bacpypes3's caches."""

    iams: list
    notifications: list

    async def do_IAmRequest(self, apdu) -> None:
        self.iams.append(apdu)
        self.iam_arrived.set()

    async def do_UnconfirmedCOVNotificationRequest(self, apdu) -> None:
        self.notifications.append((False, apdu))

    async def do_ConfirmedCOVNotificationRequest(self, apdu) -> None:
        self.notifications.append((True, apdu))
        await self.response(SimpleAckPDU(context=apdu))


async def request(app, apdu, timeout: float):
    try:
        response = await asyncio.wait_for(app.request(apdu), timeout)
    except asyncio.TimeoutError:
        raise ActionFailed("timeout")
    except ErrorRejectAbortNack as err:
        raise ActionFailed(error_text(err))
    if isinstance(response, ErrorRejectAbortNack):
        raise ActionFailed(error_text(response))
    return response


# ----- actions -----------------------------------------------------------------


async def do_whois(app, opts, args):
    if len(args) not in (0, 2):
        raise HarnessError("whois [LOW HIGH]")
    destination = GlobalBroadcast() if opts.broadcast else opts.target
    who_is = WhoIsRequest(destination=destination)
    if args:
        who_is.deviceInstanceRangeLowLimit = int(args[0])
        who_is.deviceInstanceRangeHighLimit = int(args[1])
    app.iams.clear()
    app.iam_arrived.clear()
    await app.request(who_is)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + (opts.wait if opts.broadcast else opts.timeout)
    while (remaining := deadline - loop.time()) > 0:
        if not opts.broadcast and any(i.pduSource == opts.target for i in app.iams):
            break
        try:
            await asyncio.wait_for(app.iam_arrived.wait(), remaining)
        except asyncio.TimeoutError:
            break
        app.iam_arrived.clear()
    seen, iams = set(), []
    for iam in app.iams:
        key = (iam.iAmDeviceIdentifier[1], str(iam.pduSource))
        if key in seen:
            continue
        seen.add(key)
        iams.append(
            {
                "instance": key[0],
                "address": key[1],
                "max_apdu": int(iam.maxAPDULengthAccepted),
                "segmentation": name(iam.segmentationSupported),
                "vendor_id": int(iam.vendorID),
            }
        )
    return {"iams": iams}


async def do_read(app, opts, args):
    if len(args) not in (2, 3):
        raise HarnessError("read OBJ PROP [INDEX]")
    objid = parse_objid(args[0])
    prop, index = parse_prop(args[1])
    if len(args) == 3:
        index = int(args[2])
    req = ReadPropertyRequest(objectIdentifier=objid, propertyIdentifier=prop, destination=opts.target)
    if index is not None:
        req.propertyArrayIndex = index
    ack = await request(app, req, opts.timeout)
    return {"value": decode_value(objid, prop, index, ack.propertyValue)}


async def do_rpm(app, opts, args):
    if not args or len(args) % 2:
        raise HarnessError("rpm OBJ PROP[,PROP...] [OBJ PROP[,PROP...] ...]")
    specs = []
    for obj_text, props_text in zip(args[0::2], args[1::2]):
        refs = []
        for prop_text in props_text.split(","):
            prop, index = parse_prop(prop_text)
            ref = PropertyReference(propertyIdentifier=prop)
            if index is not None:
                ref.propertyArrayIndex = index
            refs.append(ref)
        specs.append(
            ReadAccessSpecification(objectIdentifier=parse_objid(obj_text), listOfPropertyReferences=refs)
        )
    req = ReadPropertyMultipleRequest(listOfReadAccessSpecs=specs, destination=opts.target)
    ack = await request(app, req, opts.timeout)
    results = []
    for result in ack.listOfReadAccessResults:
        objid = result.objectIdentifier
        for element in result.listOfResults:
            prop, index = element.propertyIdentifier, element.propertyArrayIndex
            entry = {"object": objid_text(objid), "property": name(prop)}
            if index is not None:
                entry["index"] = int(index)
            error = element.readResult.propertyAccessError
            if error is not None:
                entry["error"] = f"{name(error.errorClass)}:{name(error.errorCode)}"
            else:
                entry["value"] = decode_value(objid, prop, index, element.readResult.propertyValue)
            results.append(entry)
    return {"results": results}


async def do_write(app, opts, args):
    if len(args) not in (3, 4):
        raise HarnessError("write OBJ PROP VALUE [PRIORITY]")
    objid = parse_objid(args[0])
    prop, index = parse_prop(args[1])
    value = parse_value(objid, prop, index, args[2])
    req = WritePropertyRequest(
        objectIdentifier=objid, propertyIdentifier=prop, propertyValue=value, destination=opts.target
    )
    if index is not None:
        req.propertyArrayIndex = index
    if len(args) == 4:
        req.priority = int(args[3])
    await request(app, req, opts.timeout)
    return {"ok": True}


async def do_subscribe(app, opts, args):
    if len(args) not in (3, 4) or (len(args) == 4 and args[3] not in ("confirmed", "unconfirmed")):
        raise HarnessError("subscribe OBJ LIFETIME SECONDS [confirmed|unconfirmed]")
    objid = parse_objid(args[0])
    lifetime, seconds = int(args[1]), float(args[2])
    confirmed = len(args) == 4 and args[3] == "confirmed"
    process_id = opts.process_id
    app.notifications.clear()
    await request(
        app,
        SubscribeCOVRequest(
            subscriberProcessIdentifier=process_id,
            monitoredObjectIdentifier=objid,
            issueConfirmedNotifications=confirmed,
            lifetime=lifetime,
            destination=opts.target,
        ),
        opts.timeout,
    )
    await asyncio.sleep(seconds)
    await request(
        app,
        SubscribeCOVRequest(
            subscriberProcessIdentifier=process_id, monitoredObjectIdentifier=objid, destination=opts.target
        ),
        opts.timeout,
    )
    notifications = []
    for was_confirmed, apdu in app.notifications:
        monitored = apdu.monitoredObjectIdentifier
        values = {}
        for pv in apdu.listOfValues:
            values[name(pv.propertyIdentifier)] = decode_value(
                monitored, pv.propertyIdentifier, pv.propertyArrayIndex, pv.value
            )
        notifications.append(
            {
                "object": objid_text(monitored),
                "device": objid_text(apdu.initiatingDeviceIdentifier),
                "process_id": int(apdu.subscriberProcessIdentifier),
                "time_remaining": int(apdu.timeRemaining),
                "confirmed": was_confirmed,
                "values": values,
            }
        )
    return {"notifications": notifications}


HANDLERS = {"whois": do_whois, "read": do_read, "rpm": do_rpm, "write": do_write, "subscribe": do_subscribe}


# ----- main --------------------------------------------------------------------


def split_actions(words):
    if not words or words[0] not in ACTIONS:
        raise HarnessError(f"an action ({', '.join(ACTIONS)}) expected")
    actions = []
    for word in words:
        if word in ACTIONS:
            actions.append((word, []))
        else:
            actions[-1][1].append(word)
    return actions


def loopback(text: str, what: str):
    host, _, port = text.rpartition(":")
    if not host.startswith("127.") or not port.isdigit():
        raise HarnessError(f"{what} must be a 127.x.x.x:port address")
    return host, int(port)


def free_port(host: str, avoid) -> int:
    for _ in range(20):
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            probe.bind((host, 0))
            port = probe.getsockname()[1]
        finally:
            probe.close()
        if port not in avoid:
            return port
    raise HarnessError("no free port")


async def run(opts) -> int:
    actions = split_actions(opts.actions)
    target_host, target_port = loopback(opts.target, "--target")
    opts.target = Address(f"{target_host}:{target_port}")
    avoid = {target_port}
    if opts.broadcast:
        avoid.add(loopback(opts.broadcast, "--broadcast")[1])
    if not opts.local.startswith("127."):
        raise HarnessError("--local must be a 127.x.x.x address")
    port = opts.port or free_port(opts.local, avoid)
    if port in avoid:
        raise HarnessError(f"--port {port} would be looped back by bacpypes3")

    app = Client.from_object_list(
        [
            DeviceObject(
                objectIdentifier=("device", opts.instance),
                objectName=f"bp3-client-{opts.instance}",
                vendorIdentifier=999,
                maxApduLengthAccepted=1476,
                segmentationSupported="segmented-both",
            ),
            NetworkPortObject(f"{opts.local}/32:{port}", objectIdentifier=("network-port", 1), objectName="NP-1"),
        ]
    )
    app.iams, app.notifications, app.iam_arrived = [], [], asyncio.Event()
    try:
        for link_layer in app.link_layers.values():
            try:
                await asyncio.wait_for(asyncio.gather(*link_layer.server._transport_tasks), 3.0)
            except asyncio.TimeoutError:
                raise HarnessError(f"could not bind {opts.local}:{port}")
            if opts.broadcast:
                # a LocalBroadcast leaves as Original-Broadcast-NPDU to this address
                link_layer.server.broadcast_address = loopback(opts.broadcast, "--broadcast")
        for action, args in actions:
            try:
                result = await HANDLERS[action](app, opts, args)
            except ActionFailed as err:
                result = {"error": str(err)}
            print(json.dumps(result, ensure_ascii=False), flush=True)
    finally:
        app.close()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--local", default="127.0.0.1", help="own address (port picked free)")
    parser.add_argument("--port", type=int, default=0, help="own UDP port (default: a free one)")
    parser.add_argument("--target", required=True, help="peer as 127.x.x.x:port")
    parser.add_argument("--broadcast", help="send Who-Is as a global broadcast to 127.255.255.255:port")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per request")
    parser.add_argument("--wait", type=float, default=2.0, help="seconds to collect I-Ams after a broadcast")
    parser.add_argument("--instance", type=int, default=4194300, help="own device instance")
    parser.add_argument("--process-id", type=int, default=7, help="COV subscriber process id")
    parser.add_argument("actions", nargs=argparse.REMAINDER)
    opts = parser.parse_args()
    try:
        return asyncio.run(run(opts))
    except HarnessError as err:
        print(f"bp3_client: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
