#!/usr/bin/env python3
"""A bac-py BACnet/IP client for plantwatch's interop tests.

    bacpy_client.py --local 127.0.0.1 --target 127.0.0.2:PORT [--broadcast 127.255.255.255:PORT]
                    [--timeout 5] [--wait 2] [--expect N] [--port N] ACTION...

Actions, each printing one JSON line, in order:
    whois [LOW HIGH]              {"iams": [{"instance", "address", "max_apdu", "segmentation", "vendor_id"}]}
                                  directed to --target; with --broadcast a global broadcast
                                  (Original-Broadcast-NPDU) to that address, I-Ams collected for
                                  --wait s (or until --expect of them came)
    read OBJ PROP [INDEX]         {"value": ...}
    rpm OBJ PROP[,PROP...] ...    {"results": [{"object", "property", "value"} or {..., "error": "class:code"}]}
    write OBJ PROP VALUE [PRIO]   {"ok": true}; VALUE null relinquishes, active/inactive are
                                  enumerated, a number is encoded as bac-py chooses for the
                                  property (REAL for analog present-value), string:TEXT a string
A failed action prints {"error": "class:code" | "reject:reason" | "abort:reason" | "timeout"}.
Exit 0 when every action ran, 2 on a harness failure (bad arguments, local socket).

JSON values: REAL/Double and integers as numbers, enumerations as their
numbers (bac-py decodes them as plain integers), bit strings as lists of
booleans, object identifiers as "type:instance", NULL as null, several values
(arrays, lists) as a list. Object and property names are the standard's,
lower case with hyphens (bac-py's enum names).

Ports: bac-py sends a broadcast to the broadcast address on its OWN port, so
with --broadcast the client binds --local on the broadcast's port (BACnet/IP
peers share one port); otherwise it binds an ephemeral port (--port 0). bac-py
has no loopback quirk (see bacpy_device.py), so any port works for unicast.
"""

import argparse
import asyncio
import json
import sys

from bac_py import Client, DeviceConfig
from bac_py.network.address import parse_address
from bac_py.services.errors import BACnetAbortError, BACnetError, BACnetRejectError, BACnetTimeoutError
from bac_py.services.read_property_multiple import PropertyReference, ReadAccessSpecification
from bac_py.encoding.primitives import decode_and_unwrap
from bac_py.types.enums import BinaryPV, ObjectType, PropertyIdentifier
from bac_py.types.primitives import BitString, ObjectIdentifier


def name(enum_member) -> str:
    return enum_member.name.lower().replace("_", "-")


def parse_object(text: str) -> ObjectIdentifier:
    kind, _, instance = text.partition(":")
    return ObjectIdentifier(ObjectType[kind.strip().upper().replace("-", "_")], int(instance))


def parse_property(text: str) -> PropertyIdentifier:
    if text.isdigit():
        return PropertyIdentifier(int(text))
    return PropertyIdentifier[text.strip().upper().replace("-", "_")]


def jsonable(value):
    if isinstance(value, BitString):
        return [value[i] for i in range(len(value))]
    if isinstance(value, ObjectIdentifier):
        return f"{name(value.object_type)}:{value.instance_number}"
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"hex": bytes(value).hex()}
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return repr(value)


def parse_value(text: str):
    if text == "null":
        return None
    if text in ("active", "inactive"):
        return BinaryPV[text.upper()]
    if text.startswith("string:"):
        return text[len("string:") :]
    return float(text)


def error_text(err: BaseException) -> str:
    if isinstance(err, BACnetError):
        return f"{name(err.error_class)}:{name(err.error_code)}"
    if isinstance(err, BACnetRejectError):
        return f"reject:{name(err.reason)}"
    if isinstance(err, BACnetAbortError):
        return f"abort:{name(err.reason)}"
    if isinstance(err, (BACnetTimeoutError, asyncio.TimeoutError, TimeoutError)):
        return "timeout"
    return f"{type(err).__name__}: {err}"


def take_actions(words: list[str]) -> list[tuple[str, list[str]]]:
    """Splits the action words: each action takes its fixed arguments, rpm takes pairs."""
    actions, i = [], 0
    while i < len(words):
        verb = words[i]
        i += 1
        if verb == "whois":
            args = []
            if i + 1 < len(words) and words[i].isdigit() and words[i + 1].isdigit():
                args, i = words[i : i + 2], i + 2
        elif verb == "read":
            args, i = words[i : i + 2], i + 2
            if i < len(words) and words[i].isdigit():
                args.append(words[i])
                i += 1
        elif verb == "write":
            args, i = words[i : i + 3], i + 3
            if i < len(words) and words[i].isdigit():
                args.append(words[i])
                i += 1
        elif verb == "rpm":
            args = []
            while i + 1 < len(words) and ":" in words[i] and words[i] not in ("whois", "read", "write", "rpm"):
                args += words[i : i + 2]
                i += 2
        else:
            raise ValueError(f"unknown action: {verb}")
        actions.append((verb, args))
    return actions


async def run_action(client: Client, args, verb: str, words: list[str]) -> dict:
    target = parse_address(args.target)
    if verb == "whois":
        low, high = (int(words[0]), int(words[1])) if words else (None, None)
        destination = None if args.broadcast else target
        found = await client.discover(
            low_limit=low,
            high_limit=high,
            destination=destination,
            timeout=args.wait,
            expected_count=args.expect,
        )
        return {
            "iams": [
                {
                    "instance": d.instance,
                    "address": d.address_str,
                    "max_apdu": d.max_apdu_length,
                    "segmentation": name(d.segmentation_supported),
                    "vendor_id": d.vendor_id,
                }
                for d in found
            ]
        }
    if verb == "read":
        index = int(words[2]) if len(words) > 2 else None
        ack = await client.read_property(
            target, parse_object(words[0]), parse_property(words[1]), index, timeout=args.timeout
        )
        return {"value": jsonable(decode_and_unwrap(ack.property_value) if ack.property_value else None)}
    if verb == "rpm":
        specs = []
        for obj, props in zip(words[0::2], words[1::2]):
            refs = [PropertyReference(parse_property(p)) for p in props.split(",")]
            specs.append(ReadAccessSpecification(object_identifier=parse_object(obj), list_of_property_references=refs))
        ack = await client.read_property_multiple(target, specs, timeout=args.timeout)
        results = []
        for access in ack.list_of_read_access_results:
            obj = jsonable(access.object_identifier)
            for elem in access.list_of_results:
                entry = {"object": obj, "property": name(elem.property_identifier)}
                if elem.property_access_error is not None:
                    cls, code = elem.property_access_error
                    entry["error"] = f"{name(cls)}:{name(code)}"
                else:
                    entry["value"] = jsonable(decode_and_unwrap(elem.property_value) if elem.property_value else None)
                results.append(entry)
        return {"results": results}
    if verb == "write":
        priority = int(words[3]) if len(words) > 3 else None
        await client.write(target, parse_object(words[0]), parse_property(words[1]), parse_value(words[2]), priority)
        return {"ok": True}
    raise ValueError(f"unknown action: {verb}")


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--local", default="127.0.0.1")
    parser.add_argument("--target", required=True)
    parser.add_argument("--broadcast")
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--wait", type=float, default=2.0)
    parser.add_argument("--expect", type=int)
    parser.add_argument("--port", type=int)
    parser.add_argument("--instance", type=int, default=4190001)
    parser.add_argument("actions", nargs="*")
    args = parser.parse_args()
    try:
        actions = take_actions(args.actions)
    except ValueError as err:
        print(f"bacpy_client: {err}", file=sys.stderr)
        return 2

    broadcast_ip, port = "255.255.255.255", 0
    if args.broadcast:
        broadcast_ip, _, bport = args.broadcast.rpartition(":")
        port = int(bport)
    if args.port is not None:
        port = args.port
    config = DeviceConfig(
        instance_number=args.instance,
        interface=args.local,
        port=port,
        broadcast_address=broadcast_ip,
        apdu_timeout=int(args.timeout * 1000),
        apdu_retries=0,
    )
    try:
        client = Client(config)
        await client.__aenter__()
    except OSError as err:
        print(f"bacpy_client: cannot bind {args.local}:{port}: {err}", file=sys.stderr)
        return 2
    try:
        for verb, words in actions:
            try:
                doc = await asyncio.wait_for(run_action(client, args, verb, words), args.timeout + args.wait + 1)
            except Exception as err:  # one action failed: report it, go on
                doc = {"error": error_text(err)}
            print(json.dumps(doc), flush=True)
    finally:
        await client.__aexit__(None, None, None)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
