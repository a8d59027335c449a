#!/usr/bin/env python3
"""Write tests/golden/bacpypes3_frames.json: BACnet/IP frames ENCODED BY bacpypes3.

    capture_golden.py [--output PATH] [--check]

Every "hex" is produced by bacpypes3's own classes, layered the way its stack does
it: an APDU class (ReadPropertyRequest, ReadPropertyACK, ...) encodes the APDU, a
bacpypes3 NPDU (with DADR/SADR for the routed frames) wraps it, and an
OriginalUnicastNPDU / OriginalBroadcastNPDU adds the BVLC header.  "fields" is what
a correct decoder must find, written out here from the inputs (not decoded back).

A second part starts a real bacpypes3 device application in this process on
loopback and exchanges datagrams with it from a plain UDP socket:
  * the segmented complex-ack segments it sends for a long object-list (recorded),
  * the abort it sends when segmentation is not accepted (recorded),
  * its answers to the request frames above, which must be byte-identical to the
    statically encoded answer frames (a check that the layering here is bacpypes3's).
Frames get no addresses, ports or timestamps, so regenerating is deterministic;
--check compares against the existing file instead of writing it.
"""

import argparse
import asyncio
import json
import socket
import sys
from pathlib import Path

from bacpypes3.apdu import (
    APCISequence,
    APDU,
    AbortPDU,
    ConfirmedCOVNotificationRequest,
    Error,
    IAmRequest,
    ReadPropertyACK,
    ReadPropertyMultipleACK,
    ReadPropertyMultipleRequest,
    ReadPropertyRequest,
    RejectPDU,
    ReinitializeDeviceRequest,
    SegmentAckPDU,
    SimpleAckPDU,
    SubscribeCOVRequest,
    UnconfirmedCOVNotificationRequest,
    WhoIsRequest,
    WritePropertyRequest,
)
from bacpypes3.app import Application
from bacpypes3.basetypes import (
    DateTime,
    ErrorType,
    PriorityArray,
    PriorityValue,
    PropertyReference,
    PropertyValue,
    ReadAccessResult,
    ReadAccessResultElement,
    ReadAccessResultElementChoice,
    ReadAccessSpecification,
    StatusFlags,
    TimeStamp,
)
from bacpypes3.constructeddata import Any, ArrayOf
from bacpypes3.ipv4.bvll import OriginalBroadcastNPDU, OriginalUnicastNPDU
from bacpypes3.npdu import NPDU
from bacpypes3.pdu import PCI, PDU, GlobalBroadcast, RemoteStation
from bacpypes3.primitivedata import (
    CharacterString,
    Date,
    Null,
    ObjectIdentifier,
    Real,
    Time,
    Unsigned,
)

HERE = Path(__file__).resolve().parent
DEFAULT_OUTPUT = HERE.parent / "golden" / "bacpypes3_frames.json"
sys.path.insert(0, str(HERE))
import bp3_device  # noqa: E402  (the same device the interop tests run)

# header values used for every confirmed request below: segmented-response-accepted,
# max-segments 16 (code 4), max-apdu 1476 (code 5) -> APDU octets 02 45
MAX_SEGS, MAX_SEGS_CODE, MAX_APDU, MAX_APDU_CODE = 16, 4, 1476, 5

APDU_TYPE_NAMES = [
    "confirmed-request", "unconfirmed-request", "simple-ack", "complex-ack",
    "segment-ack", "error", "reject", "abort",
]


class Iso8859String(CharacterString):
    _encoding = 5  # ISO 8859-1


class Ucs2String(CharacterString):
    _encoding = 4  # ISO 10646 UCS-2 (bacpypes3 encodes it as UTF-16BE)


# ----- encoding through bacpypes3's layers -----------------------------------------


def apdu_pdu(apdu) -> PDU:
    """APDU class -> generic APDU -> PDU, as ApplicationServiceAccessPoint does."""
    pdu = apdu.encode()
    return pdu if type(pdu) is PDU else pdu.encode()


def npdu_bytes(pdu: PDU, dadr=None, sadr=None) -> bytes:
    """NPDU around an encoded APDU, as NetworkServiceAccessPoint does."""
    npdu = NPDU(pdu.pduData)
    PCI.update(npdu, pdu)
    if dadr is not None:
        npdu.npduDADR = dadr
        npdu.npduHopCount = 255
    if sadr is not None:
        npdu.npduSADR = sadr
    return bytes(npdu.encode().pduData)


def bvlc_bytes(npdu: bytes, broadcast=False) -> bytes:
    lpdu = OriginalBroadcastNPDU(npdu) if broadcast else OriginalUnicastNPDU(npdu)
    return bytes(lpdu.encode().pduData)


def confirmed(req, invoke_id, segmented_response_accepted=True):
    req.apduInvokeID = invoke_id
    req.apduSA = segmented_response_accepted
    req.apduMaxSegs = MAX_SEGS_CODE
    req.apduMaxResp = MAX_APDU_CODE
    req.apduSeg = req.apduMor = False
    return req


def acked(ack, invoke_id):
    ack.apduInvokeID = invoke_id
    ack.apduSeg = ack.apduMor = False
    return ack


def tags_hex(element) -> str:
    """Encoded tags of a value (the bytes between a property's opening/closing tag)."""
    tag_list = element.tagList if isinstance(element, Any) else element.encode()
    return bytes(tag_list.encode().pduData).hex()


# ----- expected fields ----------------------------------------------------------------


def header_fields(frame: bytes, **extra) -> dict:
    """Fields every frame carries; routing fields are passed in explicitly."""
    fields = {"bvlc_function": frame[1], "bvlc_length": len(frame), "npdu_control": frame[5]}
    fields["expecting_reply"] = bool(frame[5] & 0x04)
    fields.update(extra)
    return fields


def real(v):
    return {"type": "real", "value": v}


def unsigned(v):
    return {"type": "unsigned", "value": v}


def enumerated(v):
    return {"type": "enumerated", "value": v}


def objid(v):
    return {"type": "object-identifier", "value": v}


def string(v, charset=0):
    return {"type": "character-string", "charset": charset, "value": v}


def bits(*v):
    return {"type": "bit-string", "bits": list(v)}


NULL = {"type": "null"}
FLAGS_NORMAL = bits(False, False, False, False)


def with_hex(value_field: dict, element) -> dict:
    return dict(value_field, value_hex=tags_hex(element))


# ----- the static frames --------------------------------------------------------------


def static_frames():
    frames = []

    def add(name, apdu, fields, broadcast=False, dadr=None, sadr=None, note=None):
        frame = bvlc_bytes(npdu_bytes(apdu_pdu(apdu), dadr=dadr, sadr=sadr), broadcast)
        entry = {"name": name, "layer": "bvlc", "hex": frame.hex()}
        if note:
            entry["note"] = note
        pdu_type = frame[6 + npdu_header_extra(dadr, sadr)] >> 4
        entry["fields"] = header_fields(
            frame, apdu_type=pdu_type, apdu_type_name=APDU_TYPE_NAMES[pdu_type], **fields
        )
        frames.append(entry)
        return entry

    request = dict(segmented_response_accepted=True, max_segments=MAX_SEGS, max_apdu=MAX_APDU)
    ai1 = dict(object="analog-input:1", object_type=0, instance=1)

    # --- read-property
    add(
        "read-property-request",
        confirmed(ReadPropertyRequest(objectIdentifier="analog-input,1", propertyIdentifier="present-value"), 1),
        dict(invoke_id=1, service_choice=12, service="read-property", **request, **ai1,
             property=85, property_name="present-value"),
    )
    add(
        "read-property-request-array-index",
        confirmed(
            ReadPropertyRequest(
                objectIdentifier="device,1001", propertyIdentifier="object-list", propertyArrayIndex=0
            ),
            2,
        ),
        dict(invoke_id=2, service_choice=12, service="read-property", **request,
             object="device:1001", object_type=8, instance=1001,
             property=76, property_name="object-list", array_index=0),
    )

    # --- read-property-multiple
    add(
        "read-property-multiple-request",
        confirmed(
            ReadPropertyMultipleRequest(
                listOfReadAccessSpecs=[
                    ReadAccessSpecification(
                        objectIdentifier="analog-input,1",
                        listOfPropertyReferences=[
                            PropertyReference(propertyIdentifier="present-value"),
                            PropertyReference(propertyIdentifier="status-flags"),
                        ],
                    ),
                    ReadAccessSpecification(
                        objectIdentifier="analog-output,2",
                        listOfPropertyReferences=[
                            PropertyReference(propertyIdentifier="present-value"),
                            PropertyReference(propertyIdentifier="priority-array"),
                        ],
                    ),
                ]
            ),
            3,
        ),
        dict(invoke_id=3, service_choice=14, service="read-property-multiple", **request,
             specs=[
                 {"object": "analog-input:1", "properties": [85, 111]},
                 {"object": "analog-output:2", "properties": [85, 87]},
             ]),
    )

    # --- write-property
    value = Real(42.5)
    add(
        "write-property-request-real-priority-8",
        confirmed(
            WritePropertyRequest(
                objectIdentifier="analog-output,1", propertyIdentifier="present-value",
                propertyValue=value, priority=8,
            ),
            4,
        ),
        dict(invoke_id=4, service_choice=15, service="write-property", **request,
             object="analog-output:1", object_type=1, instance=1, property=85,
             property_name="present-value", value=with_hex(real(42.5), value), priority=8),
    )
    value = Null(())
    add(
        "write-property-request-relinquish-priority-8",
        confirmed(
            WritePropertyRequest(
                objectIdentifier="analog-output,1", propertyIdentifier="present-value",
                propertyValue=value, priority=8,
            ),
            5,
        ),
        dict(invoke_id=5, service_choice=15, service="write-property", **request,
             object="analog-output:1", object_type=1, instance=1, property=85,
             property_name="present-value", value=with_hex(NULL, value), priority=8),
    )
    value = Unsigned(7)
    add(
        "write-property-request-property-1000",
        confirmed(
            WritePropertyRequest(
                objectIdentifier="analog-value,1", propertyIdentifier=1000,
                propertyValue=value, priority=16,
            ),
            6,
        ),
        dict(invoke_id=6, service_choice=15, service="write-property", **request,
             object="analog-value:1", object_type=2, instance=1, property=1000,
             value=with_hex(unsigned(7), value), priority=16),
        note="property identifier 1000 needs a two-octet context tag (1A 03 E8)",
    )
    add(
        "write-property-simple-ack",
        SimpleAckPDU(invoke_id=4, service_choice=15),
        dict(invoke_id=4, service_choice=15, service="write-property"),
    )

    # --- subscribe-cov
    add(
        "subscribe-cov-request",
        confirmed(
            SubscribeCOVRequest(
                subscriberProcessIdentifier=7, monitoredObjectIdentifier="analog-input,1",
                issueConfirmedNotifications=True, lifetime=300,
            ),
            7,
        ),
        dict(invoke_id=7, service_choice=5, service="subscribe-cov", **request,
             process_id=7, **ai1, issue_confirmed=True, lifetime=300),
    )
    add(
        "subscribe-cov-request-cancel",
        confirmed(
            SubscribeCOVRequest(subscriberProcessIdentifier=7, monitoredObjectIdentifier="analog-input,1"),
            8,
        ),
        dict(invoke_id=8, service_choice=5, service="subscribe-cov", **request,
             process_id=7, **ai1, cancel=True),
        note="no issue-confirmed-notifications and no lifetime: a cancellation",
    )
    add(
        "subscribe-cov-simple-ack",
        SimpleAckPDU(invoke_id=7, service_choice=5),
        dict(invoke_id=7, service_choice=5, service="subscribe-cov"),
    )

    # --- who-is / i-am
    global_dadr = dict(dnet=0xFFFF, dadr="", hop_count=255)
    add(
        "who-is-global",
        WhoIsRequest(destination=GlobalBroadcast()),
        dict(service_choice=8, service="who-is", **global_dadr),
        broadcast=True, dadr=GlobalBroadcast(),
        note="what bacpypes3's who_is() sends: Original-Broadcast-NPDU with DNET 0xFFFF",
    )
    add(
        "who-is-local-broadcast",
        WhoIsRequest(),
        dict(service_choice=8, service="who-is"),
        broadcast=True,
    )
    add(
        "who-is-ranged",
        WhoIsRequest(deviceInstanceRangeLowLimit=1000, deviceInstanceRangeHighLimit=2000),
        dict(service_choice=8, service="who-is", low_limit=1000, high_limit=2000, **global_dadr),
        broadcast=True, dadr=GlobalBroadcast(),
    )
    iam = dict(service_choice=0, service="i-am", device="device:3001", object_type=8, instance=3001,
               max_apdu=1476, segmentation=0, segmentation_name="segmented-both", vendor_id=999)

    def i_am():
        return IAmRequest(
            iAmDeviceIdentifier="device,3001", maxAPDULengthAccepted=1476,
            segmentationSupported="segmented-both", vendorID=999,
        )

    add("i-am-global", i_am(), dict(iam, **global_dadr), broadcast=True, dadr=GlobalBroadcast())
    add("i-am-unicast", i_am(), iam, note="the answer bacpypes3 sends to a directed Who-Is")

    # --- complex-ack read-property
    rp_ack = dict(invoke_id=1, service_choice=12, service="read-property")
    value = Real(21.5)
    add(
        "read-property-ack-real",
        acked(ReadPropertyACK(objectIdentifier="analog-input,1", propertyIdentifier="present-value",
                              propertyValue=value), 1),
        dict(rp_ack, **ai1, property=85, property_name="present-value", value=with_hex(real(21.5), value)),
    )
    for name, cls, charset, prop, text in (
        ("read-property-ack-string-utf8", CharacterString, 0, "description", "Grüße"),
        ("read-property-ack-string-iso8859-1", Iso8859String, 5, "object-name", "Grüße"),
        ("read-property-ack-string-ucs2", Ucs2String, 4, "description", "Grüße °C"),
    ):
        value = cls(text)
        prop_number = {"object-name": 77, "description": 28}[prop]
        add(
            name,
            acked(ReadPropertyACK(objectIdentifier="analog-input,1", propertyIdentifier=prop,
                                  propertyValue=value), 1),
            dict(rp_ack, **ai1, property=prop_number, property_name=prop,
                 value=with_hex(string(text, charset), value)),
        )
    value = ArrayOf(ObjectIdentifier)(["device,3001", "analog-input,1", "analog-value,1"])
    add(
        "read-property-ack-object-list",
        acked(ReadPropertyACK(objectIdentifier="device,3001", propertyIdentifier="object-list",
                              propertyValue=value), 1),
        dict(rp_ack, object="device:3001", object_type=8, instance=3001, property=76,
             property_name="object-list",
             value=with_hex({"type": "array", "items": [
                 objid("device:3001"), objid("analog-input:1"), objid("analog-value:1")]}, value)),
    )
    value = Unsigned(3)
    add(
        "read-property-ack-object-list-length",
        acked(ReadPropertyACK(objectIdentifier="device,3001", propertyIdentifier="object-list",
                              propertyArrayIndex=0, propertyValue=value), 2),
        dict(rp_ack, invoke_id=2, object="device:3001", object_type=8, instance=3001, property=76,
             property_name="object-list", array_index=0, value=with_hex(unsigned(3), value)),
    )

    # --- complex-ack read-property-multiple: good, error, constructed, good
    pv, unknown = Real(21.5), ErrorType(errorClass="property", errorCode="unknown-property")
    priorities = PriorityArray(
        [PriorityValue(null=()) for _ in range(7)] + [PriorityValue(real=Real(42.5))]
        + [PriorityValue(null=()) for _ in range(7)] + [PriorityValue(real=Real(0.0))]
    )
    relinquish = Real(0.0)

    def element(prop, value=None, error=None):
        choice = (ReadAccessResultElementChoice(propertyAccessError=error) if error is not None
                  else ReadAccessResultElementChoice(propertyValue=value))
        return ReadAccessResultElement(propertyIdentifier=prop, readResult=choice)

    add(
        "read-property-multiple-ack-mixed",
        acked(ReadPropertyMultipleACK(listOfReadAccessResults=[
            ReadAccessResult(objectIdentifier="analog-input,1", listOfResults=[
                element("present-value", pv), element(1000, error=unknown)]),
            ReadAccessResult(objectIdentifier="analog-output,1", listOfResults=[
                element("priority-array", priorities), element("relinquish-default", relinquish)]),
        ]), 3),
        dict(invoke_id=3, service_choice=14, service="read-property-multiple", results=[
            {"object": "analog-input:1", "property": 85, "value": with_hex(real(21.5), pv)},
            {"object": "analog-input:1", "property": 1000, "error_class": 2, "error_code": 32},
            {"object": "analog-output:1", "property": 87, "value": with_hex(
                {"type": "array", "items": [NULL] * 7 + [real(42.5)] + [NULL] * 7 + [real(0.0)]},
                priorities)},
            {"object": "analog-output:1", "property": 104, "value": with_hex(real(0.0), relinquish)},
        ]),
        note="a property error and a 16-element priority-array must not hide the good values around them",
    )
    stamps = ArrayOf(TimeStamp)([
        TimeStamp(dateTime=DateTime(date=Date((124, 3, 1, 5)), time=Time((12, 30, 0, 0)))),
        TimeStamp(sequenceNumber=5),
        TimeStamp(time=Time((8, 15, 0, 0))),
    ])
    when = DateTime(date=Date((124, 3, 1, 5)), time=Time((12, 30, 0, 0)))
    add(
        "read-property-multiple-ack-context-tagged",
        acked(ReadPropertyMultipleACK(listOfReadAccessResults=[
            ReadAccessResult(objectIdentifier="analog-input,1", listOfResults=[
                element("event-time-stamps", stamps), element("present-value", pv)]),
            ReadAccessResult(objectIdentifier="device,3001", listOfResults=[
                element("last-restore-time", Any(TimeStamp(dateTime=when))),
                element("object-name", Iso8859String("Grüße"))]),
        ]), 4),
        dict(invoke_id=4, service_choice=14, service="read-property-multiple", results=[
            {"object": "analog-input:1", "property": 130, "value": with_hex(
                {"type": "constructed", "items": [
                    {"choice": "date-time", "context": 2, "date": "2024-03-01", "day_of_week": 5,
                     "time": "12:30:00.00"},
                    {"choice": "sequence-number", "context": 1, "value": 5},
                    {"choice": "time", "context": 0, "value": "08:15:00.00"}]},
                stamps)},
            {"object": "analog-input:1", "property": 85, "value": with_hex(real(21.5), pv)},
            {"object": "device:3001", "property": 116, "value": with_hex(
                {"type": "constructed", "items": [
                    {"choice": "date-time", "context": 2, "date": "2024-03-01", "day_of_week": 5,
                     "time": "12:30:00.00"}]}, TimeStamp(dateTime=when))},
            {"object": "device:3001", "property": 77, "value": with_hex(string("Grüße", 5),
                                                                      Iso8859String("Grüße"))},
        ]),
        note="context-tagged/constructed values (BACnetTimeStamp, BACnetDateTime) followed by good values",
    )

    # --- error, reject, abort
    add(
        "read-property-error-unknown-property",
        Error(service_choice=12, errorClass="property", errorCode="unknown-property", invoke_id=1),
        dict(invoke_id=1, service_choice=12, service="read-property", error_class=2, error_code=32),
    )
    add(
        "reject-unrecognized-service",
        RejectPDU(invoke_id=9, reason="unrecognized-service"),
        dict(invoke_id=9, reason=9, reason_name="unrecognized-service"),
    )
    add(
        "abort-segmentation-not-supported",
        AbortPDU(srv=True, invoke_id=10, reason="segmentation-not-supported"),
        dict(invoke_id=10, sent_by_server=True, reason=4, reason_name="segmentation-not-supported"),
    )

    # --- COV notifications
    def cov_values():
        return [
            PropertyValue(propertyIdentifier="present-value", value=Real(25.5)),
            PropertyValue(propertyIdentifier="status-flags", value=StatusFlags([0, 0, 0, 0])),
        ]

    cov = dict(process_id=7, device="device:3001", **ai1, time_remaining=299, values=[
        {"property": 85, "value": with_hex(real(25.5), Real(25.5))},
        {"property": 111, "value": with_hex(FLAGS_NORMAL, StatusFlags([0, 0, 0, 0]))},
    ])
    add(
        "unconfirmed-cov-notification",
        UnconfirmedCOVNotificationRequest(
            subscriberProcessIdentifier=7, initiatingDeviceIdentifier="device,3001",
            monitoredObjectIdentifier="analog-input,1", timeRemaining=299, listOfValues=cov_values(),
        ),
        dict(service_choice=2, service="unconfirmed-cov-notification", **cov),
    )
    add(
        "confirmed-cov-notification",
        confirmed(ConfirmedCOVNotificationRequest(
            subscriberProcessIdentifier=7, initiatingDeviceIdentifier="device,3001",
            monitoredObjectIdentifier="analog-input,1", timeRemaining=299, listOfValues=cov_values(),
        ), 11),
        dict(invoke_id=11, service_choice=1, service="confirmed-cov-notification", **request, **cov),
    )

    # --- routed
    station = dict(net=100, addr="05")
    value = Real(21.5)
    add(
        "read-property-request-routed",
        confirmed(ReadPropertyRequest(objectIdentifier="analog-input,1", propertyIdentifier="present-value"), 12),
        dict(invoke_id=12, service_choice=12, service="read-property", **request, **ai1, property=85,
             property_name="present-value", dnet=station["net"], dadr=station["addr"], hop_count=255),
        dadr=RemoteStation(100, b"\x05"),
    )
    add(
        "read-property-ack-routed",
        acked(ReadPropertyACK(objectIdentifier="analog-input,1", propertyIdentifier="present-value",
                              propertyValue=value), 12),
        dict(invoke_id=12, service_choice=12, service="read-property", **ai1, property=85,
             property_name="present-value", value=with_hex(real(21.5), value),
             snet=station["net"], sadr=station["addr"]),
        sadr=RemoteStation(100, b"\x05"),
    )
    return frames


def npdu_header_extra(dadr, sadr) -> int:
    extra = 0
    if dadr is not None:
        extra += 3 + (dadr.addrLen or 0) + 1  # DNET, DLEN, DADR, hop count
    if sadr is not None:
        extra += 3 + sadr.addrLen
    return extra


# ----- live capture from a running bacpypes3 device -----------------------------------


class Peer:
    """A plain UDP socket on 127.0.0.1 talking to the device; never on the device's port."""

    def __init__(self, device_port: int):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        assert self.sock.getsockname()[1] != device_port, "would hit the loopback quirk"
        self.sock.setblocking(False)

    async def exchange(self, frame: bytes, to, expect: int = 1, timeout: float = 2.0):
        loop = asyncio.get_running_loop()
        await loop.sock_sendto(self.sock, frame, to)
        return [await asyncio.wait_for(loop.sock_recv(self.sock, 2048), timeout) for _ in range(expect)]


def live_frames_entry(name, frame: bytes, fields, note):
    return {"name": name, "layer": "bvlc", "hex": frame.hex(), "note": note,
            "fields": header_fields(frame, **fields)}


async def live(static):
    by_name = {f["name"]: bytes.fromhex(f["hex"]) for f in static}
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.2", 0))
    port = probe.getsockname()[1]
    probe.close()
    objects = bp3_device.make_objects(3001, "127.0.0.2", port, 12, broadcast=False)
    app = Application.from_object_list(objects)
    for link_layer in app.link_layers.values():
        await asyncio.wait_for(asyncio.gather(*link_layer.server._transport_tasks), 3.0)
    device = ("127.0.0.2", port)
    peer = Peer(port)
    frames = []
    try:
        ai1 = app.get_object_id(ObjectIdentifier("analog-input,1"))
        ai1.presentValue = Real(21.5)
        ai1.description = "Grüße"

        # the statically encoded answers must be what the running stack sends
        (answer,) = await peer.exchange(by_name["read-property-request"], device)
        assert answer == by_name["read-property-ack-real"], ("read-property-ack-real", answer.hex())
        description_req = confirmed(
            ReadPropertyRequest(objectIdentifier="analog-input,1", propertyIdentifier="description"), 1)
        (answer,) = await peer.exchange(bvlc_bytes(npdu_bytes(apdu_pdu(description_req))), device)
        assert answer == by_name["read-property-ack-string-utf8"], ("utf8", answer.hex())
        unknown_req = confirmed(ReadPropertyRequest(objectIdentifier="analog-input,1", propertyIdentifier=1000), 1)
        (answer,) = await peer.exchange(bvlc_bytes(npdu_bytes(apdu_pdu(unknown_req))), device)
        assert answer == by_name["read-property-error-unknown-property"], ("error", answer.hex())
        (answer,) = await peer.exchange(by_name["who-is-local-broadcast"], device)
        assert answer == by_name["i-am-unicast"], ("i-am", answer.hex())
        (answer,) = await peer.exchange(by_name["write-property-request-real-priority-8"], device)
        assert answer == by_name["write-property-simple-ack"], ("simple-ack", answer.hex())
        # bacpypes3 decodes reinitialize-device but implements no handler for it
        reject_req = confirmed(ReinitializeDeviceRequest(reinitializedStateOfDevice="warmstart"), 9)
        (answer,) = await peer.exchange(bvlc_bytes(npdu_bytes(apdu_pdu(reject_req))), device)
        assert answer == by_name["reject-unrecognized-service"], ("reject", answer.hex())
        unconfirmed_sub = confirmed(SubscribeCOVRequest(
            subscriberProcessIdentifier=7, monitoredObjectIdentifier="analog-input,1",
            issueConfirmedNotifications=False, lifetime=300), 7)
        ai1.presentValue = Real(25.5)
        ack, notification = await peer.exchange(bvlc_bytes(npdu_bytes(apdu_pdu(unconfirmed_sub))), device, 2)
        assert ack == by_name["subscribe-cov-simple-ack"], ("cov ack", ack.hex())
        assert notification == by_name["unconfirmed-cov-notification"], ("cov", notification.hex())

        # segmentation: an object-list of 86 entries needs 4 segments of 128 octets
        small = confirmed(ReadPropertyRequest(objectIdentifier="device,3001", propertyIdentifier="object-list"), 20)
        small.apduMaxResp = 1  # 128 octets
        loop = asyncio.get_running_loop()

        def segment_ack(seq):
            ack = SegmentAckPDU(nak=False, srv=False, invoke_id=20, sequenceNumber=seq, windowSize=window)
            return loop.sock_sendto(peer.sock, bvlc_bytes(npdu_bytes(apdu_pdu(ack))), device)

        (answer,) = await peer.exchange(bvlc_bytes(npdu_bytes(apdu_pdu(small))), device)
        segments = [answer]
        window = answer[9]  # the server's proposed window size; accepted as is
        while segments[-1][6] & 0x04:  # more-follows: ack the first segment, then each full window
            if segments[-1][8] % window == 0:
                await segment_ack(segments[-1][8])
            segments.append(await asyncio.wait_for(loop.sock_recv(peer.sock, 2048), 2.0))
        await segment_ack(segments[-1][8])
        object_list = [objid_text(o) for o in app.device_object.objectList]
        # reassemble with bacpypes3 (unsegmented header + every segment's service data)
        whole = APCISequence.decode(APDU.decode(PDU(bytes([0x30, 20, 12]) + b"".join(s[11:] for s in segments))))
        decoded = whole.propertyValue.cast_out(ArrayOf(ObjectIdentifier))
        assert [objid_text(o) for o in decoded] == object_list, "reassembly"
        for index, segment in enumerate(segments):
            more = index < len(segments) - 1
            assert segment[8] == index and bool(segment[6] & 0x04) == more, ("segment", index)
            fields = dict(apdu_type=3, apdu_type_name="complex-ack", invoke_id=20, segmented=True,
                          more_follows=more, sequence_number=index, proposed_window_size=window,
                          service_choice=12, service="read-property")
            if not more:
                fields.update(object="device:3001", property=76, property_name="object-list",
                              reassembled_value={"type": "array", "items": [objid(o) for o in object_list]})
            frames.append(live_frames_entry(
                f"read-property-ack-segment-{index}", segment, fields,
                "captured from a running bacpypes3 device answering a max-apdu-128 object-list read "
                "(invoke id 20); the service data after each 5-octet segment header, concatenated, is one "
                "ReadPropertyACK. bacpypes3 fills each segment with max-apdu octets of service data PLUS the "
                "header, so a full segment's APDU is 133 octets although 128 were accepted: be lenient",
            ))

        # without segmented-response-accepted the same read is aborted by the server
        refused = confirmed(ReadPropertyRequest(objectIdentifier="device,3001", propertyIdentifier="object-list"),
                            21, segmented_response_accepted=False)
        refused.apduMaxResp = 1
        (answer,) = await peer.exchange(bvlc_bytes(npdu_bytes(apdu_pdu(refused))), device)
        assert answer[6:] == bytes([0x71, 21, 4]), ("abort", answer.hex())
        frames.append(live_frames_entry(
            "abort-segmentation-not-supported-live", answer,
            dict(apdu_type=7, apdu_type_name="abort", invoke_id=21, sent_by_server=True,
                 reason=4, reason_name="segmentation-not-supported"),
            "captured: a running bacpypes3 device refusing a read whose answer needs segmentation",
        ))
    finally:
        peer.sock.close()
        app.close()
    return frames


def objid_text(value) -> str:
    return f"{value[0].asn1}:{value[1]}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--check", action="store_true", help="compare with the file, do not write")
    args = parser.parse_args()

    frames = static_frames()
    frames += asyncio.run(live(frames))
    text = json.dumps(frames, indent=2, ensure_ascii=False) + "\n"
    if args.check:
        same = args.output.exists() and args.output.read_text(encoding="utf-8") == text
        print(f"{args.output}: {'up to date' if same else 'DIFFERS'}")
        return 0 if same else 1
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {len(frames)} frames to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
