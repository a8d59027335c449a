//! The transport against a scripted peer: a bare UDP socket in the test that
//! answers exactly what each test needs (late answers, junk, errors,
//! segments), so the transport's protocol behaviour is pinned down frame by
//! frame.

use std::net::SocketAddr;
use std::time::Duration;

use plantwatch_actors::bacnet::codec::Value;
use plantwatch_actors::bacnet::frame::{self, Apdu, Body, NpduOut, Segment};
use plantwatch_actors::bacnet::services::{
    CovNotification, ErrorClassCode, PropertyRef, ReadPropertyAck, ReadPropertyRequest,
};
use plantwatch_actors::bacnet::types::{property, service, Mac, Route};
use plantwatch_actors::bacnet::{Address, ObjectId};
use plantwatch_actors::transport::{BacnetError, Transport, TransportConfig, Unsolicited};
use tokio::net::UdpSocket;

const WAIT: Duration = Duration::from_secs(5);
const AI1: ObjectId = ObjectId::new(0, 1);
const PV: PropertyRef = PropertyRef::new(property::PRESENT_VALUE);

/// A confirmed request as the peer saw it.
#[derive(Debug)]
struct Seen {
    from: SocketAddr,
    invoke_id: u8,
    service: u8,
    data: Vec<u8>,
    destination: Option<Route>,
}

struct Peer {
    socket: UdpSocket,
    addr: SocketAddr,
}

impl Peer {
    async fn bind() -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind peer");
        let addr = socket.local_addr().expect("peer address");
        Self { socket, addr }
    }

    async fn recv_raw(&self) -> (Vec<u8>, SocketAddr) {
        let mut buf = vec![0u8; 2048];
        let (n, from) = tokio::time::timeout(WAIT, self.socket.recv_from(&mut buf))
            .await
            .expect("peer waited too long")
            .expect("recv");
        buf.truncate(n);
        (buf, from)
    }

    async fn recv_request(&self) -> Seen {
        let (buf, from) = self.recv_raw().await;
        let f = frame::parse(&buf).expect("transport sent a valid frame");
        match f.body {
            Body::Apdu(Apdu::ConfirmedRequest { invoke_id, service, data, .. }) => {
                Seen { from, invoke_id, service, data: data.to_vec(), destination: f.destination }
            }
            other => panic!("expected a confirmed request, got {other:?}"),
        }
    }

    /// Nothing arrives within `d`.
    async fn silent_for(&self, d: Duration) -> bool {
        let mut buf = [0u8; 2048];
        tokio::time::timeout(d, self.socket.recv_from(&mut buf)).await.is_err()
    }

    async fn send(&self, to: SocketAddr, source: Option<Route>, apdu: impl FnOnce(&mut Vec<u8>)) {
        let mut f = Vec::new();
        frame::begin(&mut f, false, &NpduOut { destination: None, source, expecting_reply: false });
        apdu(&mut f);
        frame::finish(&mut f).expect("frame fits");
        self.socket.send_to(&f, to).await.expect("send");
    }

    async fn answer_real(&self, req: &Seen, value: f32) {
        let rp = ReadPropertyRequest::decode(&req.data).expect("a ReadProperty");
        let ack = ReadPropertyAck { object: rp.object, property: rp.property, value: Value::Real(value) };
        self.send(req.from, None, |f| {
            frame::write_complex_ack(f, req.invoke_id, service::READ_PROPERTY, None);
            ack.encode(f);
        })
        .await;
    }
}

async fn transport(timeout_ms: u64, retries: u32) -> (Transport, tokio::sync::mpsc::Receiver<Unsolicited>) {
    Transport::bind(TransportConfig {
        bind: "127.0.0.1:0".parse().expect("addr"),
        apdu_timeout: Duration::from_millis(timeout_ms),
        apdu_retries: retries,
        ..TransportConfig::default()
    })
    .await
    .expect("bind transport")
}

#[tokio::test]
async fn read_property_round_trip() {
    let peer = Peer::bind().await;
    let (t, _u) = transport(2000, 0).await;
    let read = tokio::spawn({
        let t = t.clone();
        let to = Address::direct(peer.addr);
        async move { t.read_property(to, AI1, PV).await }
    });
    let req = peer.recv_request().await;
    assert_eq!(req.service, service::READ_PROPERTY);
    peer.answer_real(&req, 21.5).await;
    assert_eq!(read.await.expect("task"), Ok(Value::Real(21.5)));
    assert_eq!(t.stats().answers, 1);
}

#[tokio::test]
async fn silence_is_retried_with_the_same_invoke_id_then_times_out() {
    let peer = Peer::bind().await;
    let (t, _u) = transport(100, 3).await;
    let read = tokio::spawn({
        let t = t.clone();
        let to = Address::direct(peer.addr);
        async move { t.read_property(to, AI1, PV).await }
    });
    let first = peer.recv_request().await;
    for _ in 0..3 {
        let again = peer.recv_request().await;
        assert_eq!(again.invoke_id, first.invoke_id);
        assert_eq!(again.data, first.data);
    }
    assert_eq!(read.await.expect("task"), Err(BacnetError::Timeout { attempts: 4 }));
    let s = t.stats();
    assert_eq!((s.retries, s.timeouts, s.in_flight, s.invoke_ids_in_use), (3, 1, 0, 0));
}

#[tokio::test]
async fn a_timed_out_invoke_id_is_counted_as_held_until_its_quarantine_is_over() {
    let peer = Peer::bind().await;
    // quarantine: apdu_timeout x (retries + 1) = 600 ms; the sweep runs every second
    let (t, _u) = transport(300, 1).await;
    let to = Address::direct(peer.addr);
    assert_eq!(t.read_property(to, AI1, PV).await, Err(BacnetError::Timeout { attempts: 2 }));
    let held = |n: u64| {
        let t = t.clone();
        async move {
            while t.stats().invoke_ids_held != n {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    tokio::time::timeout(Duration::from_millis(1500), held(1)).await.expect("the timed-out id is held");
    assert_eq!(t.stats().invoke_ids_in_use, 0);
    tokio::time::timeout(Duration::from_millis(2500), held(0)).await.expect("then freed");
}

#[tokio::test]
async fn a_late_answer_is_never_matched_to_a_new_request() {
    let peer = Peer::bind().await;
    let (t, _u) = transport(100, 0).await;
    let to = Address::direct(peer.addr);
    let first = tokio::spawn({
        let t = t.clone();
        async move { t.read_property(to, AI1, PV).await }
    });
    let old = peer.recv_request().await;
    assert_eq!(first.await.expect("task"), Err(BacnetError::Timeout { attempts: 1 }));

    let second = tokio::spawn({
        let t = t.clone();
        async move { t.read_property(to, AI1, PV).await }
    });
    let new = peer.recv_request().await;
    assert_ne!(new.invoke_id, old.invoke_id, "the timed-out id is held back");
    // the answer to the first request arrives now, then the real one
    peer.answer_real(&old, 1.0).await;
    peer.answer_real(&new, 2.0).await;
    assert_eq!(second.await.expect("task"), Ok(Value::Real(2.0)));
    assert_eq!(t.stats().unexpected, 1);
}

#[tokio::test]
async fn ids_are_unique_per_peer_and_the_in_flight_cap_holds() {
    let peer = Peer::bind().await;
    let (t, _u) = Transport::bind(TransportConfig {
        bind: "127.0.0.1:0".parse().expect("addr"),
        max_in_flight: 4,
        ..TransportConfig::default()
    })
    .await
    .expect("bind");
    let to = Address::direct(peer.addr);
    let reads: Vec<_> = (0..10)
        .map(|_| {
            let t = t.clone();
            tokio::spawn(async move { t.read_property(to, AI1, PV).await })
        })
        .collect();
    let mut answered = 0;
    while answered < 10 {
        // at most four outstanding: take them, check they differ, answer all
        let mut batch = vec![peer.recv_request().await];
        while batch.len() < 4 && answered + batch.len() < 10 {
            batch.push(peer.recv_request().await);
        }
        assert!(peer.silent_for(Duration::from_millis(30)).await, "more than 4 requests in flight");
        let s = t.stats();
        assert_eq!((s.in_flight, s.invoke_ids_in_use), (batch.len() as u64, batch.len() as u64));
        let mut ids: Vec<u8> = batch.iter().map(|r| r.invoke_id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), batch.len(), "two outstanding requests share an invoke id");
        for r in &batch {
            peer.answer_real(r, 3.0).await;
        }
        answered += batch.len();
    }
    for r in reads {
        assert_eq!(r.await.expect("task"), Ok(Value::Real(3.0)));
    }
    let s = t.stats();
    assert_eq!((s.in_flight, s.invoke_ids_in_use, s.invoke_ids_held), (0, 0, 0), "no invoke id leaked");
}

#[tokio::test]
async fn error_reject_and_abort_become_typed_errors() {
    let peer = Peer::bind().await;
    let (t, _u) = transport(2000, 0).await;
    let to = Address::direct(peer.addr);
    type WriteAnswer = fn(&mut Vec<u8>, u8);
    let cases: [(WriteAnswer, BacnetError); 3] = [
        (
            |f, id| frame::write_error(f, id, service::READ_PROPERTY, 2, 32),
            BacnetError::Error(ErrorClassCode { class: 2, code: 32 }),
        ),
        (|f, id| frame::write_reject(f, id, 9), BacnetError::Reject { reason: 9 }),
        (|f, id| frame::write_abort(f, true, id, 4), BacnetError::Abort { reason: 4, by_server: true }),
    ];
    for (write, expected) in cases {
        let read = tokio::spawn({
            let t = t.clone();
            async move { t.read_property(to, AI1, PV).await }
        });
        let req = peer.recv_request().await;
        peer.send(req.from, None, |f| write(f, req.invoke_id)).await;
        assert_eq!(read.await.expect("task"), Err(expected));
    }
    let s = t.stats();
    assert_eq!((s.errors, s.rejects, s.aborts), (1, 1, 1));
}

#[tokio::test]
async fn an_answer_for_another_service_is_dropped() {
    let peer = Peer::bind().await;
    let (t, _u) = transport(300, 0).await;
    let to = Address::direct(peer.addr);
    let read = tokio::spawn({
        let t = t.clone();
        async move { t.read_property(to, AI1, PV).await }
    });
    let req = peer.recv_request().await;
    peer.send(req.from, None, |f| frame::write_simple_ack(f, req.invoke_id, service::WRITE_PROPERTY)).await;
    assert_eq!(read.await.expect("task"), Err(BacnetError::Timeout { attempts: 1 }));
    assert_eq!(t.stats().unexpected, 1);
}

#[tokio::test]
async fn routed_requests_carry_dnet_and_match_snet_answers() {
    let peer = Peer::bind().await;
    let (t, _u) = transport(300, 0).await;
    let route = Route { network: 100, mac: Mac::new(&[5]).expect("mac") };
    let to = Address { ip: peer.addr, route: Some(route) };
    let read = tokio::spawn({
        let t = t.clone();
        async move { t.read_property(to, AI1, PV).await }
    });
    let req = peer.recv_request().await;
    assert_eq!(req.destination, Some(route));
    // An answer without SNET/SADR comes from the router itself, not the device: not matched.
    peer.send(req.from, None, |f| {
        frame::write_complex_ack(f, req.invoke_id, service::READ_PROPERTY, None);
        ReadPropertyAck { object: AI1, property: PV, value: Value::Real(9.0) }.encode(f);
    })
    .await;
    peer.send(req.from, Some(route), |f| {
        frame::write_complex_ack(f, req.invoke_id, service::READ_PROPERTY, None);
        ReadPropertyAck { object: AI1, property: PV, value: Value::Real(4.0) }.encode(f);
    })
    .await;
    assert_eq!(read.await.expect("task"), Ok(Value::Real(4.0)));
    assert_eq!(t.stats().unexpected, 1);
}

#[tokio::test]
async fn segmented_answers_are_reassembled_with_segment_acks() {
    let peer = Peer::bind().await;
    let (t, _u) = transport(2000, 0).await;
    let to = Address::direct(peer.addr);
    let list: Vec<Value> = (1..=300).map(|i| Value::ObjectId(ObjectId::new(0, i))).collect();
    let device = ObjectId::device(77);
    let read = tokio::spawn({
        let t = t.clone();
        async move { t.read_object_list(to, device).await }
    });
    let req = peer.recv_request().await;
    let mut body = Vec::new();
    ReadPropertyAck { object: device, property: PropertyRef::new(property::OBJECT_LIST), value: Value::List(list) }
        .encode(&mut body);
    let chunks: Vec<&[u8]> = body.chunks(400).collect();
    let window = 2u8;
    let mut next = 0usize;
    let mut acks = Vec::new();
    while next < chunks.len() {
        // send one window, then expect the ACK that closes it
        let end = (next + usize::from(window)).min(chunks.len());
        for (seq, chunk) in chunks.iter().enumerate().take(end).skip(next) {
            let seg = Segment { sequence: seq as u8, window, more_follows: seq + 1 < chunks.len() };
            peer.send(req.from, None, |f| {
                frame::write_complex_ack(f, req.invoke_id, service::READ_PROPERTY, Some(seg));
                f.extend_from_slice(chunk);
            })
            .await;
        }
        let (ack, _) = peer.recv_raw().await;
        let f = frame::parse(&ack).expect("valid");
        let Body::Apdu(Apdu::SegmentAck { negative: false, sequence, window: w, .. }) = f.body else {
            panic!("expected a segment ack, got {f:?}");
        };
        acks.push(sequence);
        assert_eq!(w, window);
        next = usize::from(sequence) + 1;
    }
    let ids = read.await.expect("task").expect("object list");
    assert_eq!(ids.len(), 300);
    assert_eq!(ids[299], ObjectId::new(0, 300));
    assert_eq!(*acks.last().expect("acks"), (chunks.len() - 1) as u8);
    assert_eq!(t.stats().segmented_answers, 1);
}

#[tokio::test]
async fn confirmed_cov_notifications_are_acknowledged_and_delivered() {
    let peer = Peer::bind().await;
    let (t, mut unsolicited) = transport(2000, 0).await;
    let n = CovNotification {
        process_id: 7,
        device: ObjectId::device(3001),
        object: AI1,
        time_remaining: 60,
        values: vec![(PV, Value::Real(25.5))],
    };
    peer.send(t.local_addr(), None, |f| {
        frame::write_confirmed_request(f, 42, service::CONFIRMED_COV_NOTIFICATION, 1476, 0);
        n.encode(f);
    })
    .await;
    let (ack, _) = peer.recv_raw().await;
    let f = frame::parse(&ack).expect("valid");
    assert_eq!(f.body, Body::Apdu(Apdu::SimpleAck { invoke_id: 42, service: service::CONFIRMED_COV_NOTIFICATION }));
    let got = tokio::time::timeout(WAIT, unsolicited.recv()).await.expect("delivered").expect("open");
    assert_eq!(got, Unsolicited::Cov { from: Address::direct(peer.addr), confirmed: true, notification: n });
}

#[tokio::test]
async fn junk_is_counted_and_dropped_and_the_transport_keeps_working() {
    let peer = Peer::bind().await;
    let (t, _u) = transport(2000, 0).await;
    let junk: [&[u8]; 6] = [
        &[],
        &[0x81],
        &[0x81, 0x00, 0x00, 0x00],
        &[0x81, 0x0A, 0x00, 0x08, 0x02, 0x00, 0x30, 0x01],
        &[0x81, 0x0A, 0x00, 0x0A, 0x01, 0x00, 0x10, 0x00, 0x29, 0x00],
        b"GET / HTTP/1.1\r\n\r\n",
    ];
    for j in junk {
        peer.socket.send_to(j, t.local_addr()).await.expect("send");
    }
    let read = tokio::spawn({
        let t = t.clone();
        let to = Address::direct(peer.addr);
        async move { t.read_property(to, AI1, PV).await }
    });
    let req = peer.recv_request().await;
    peer.answer_real(&req, 5.0).await;
    assert_eq!(read.await.expect("task"), Ok(Value::Real(5.0)));
    // the empty datagram, 4 malformed frames and the HTTP text; the I-Am with a
    // bad body is malformed too
    assert!(t.stats().malformed >= 5, "{:?}", t.stats());
}

#[tokio::test]
async fn a_transport_on_a_unicast_address_hears_broadcast_i_ams() {
    // On Linux a socket bound to 127.0.0.1 does not receive datagrams sent to
    // 127.255.255.255; many devices broadcast their I-Am there. The transport
    // listens on its broadcast address as well.
    let port = {
        let probe = std::net::UdpSocket::bind("127.0.0.1:0").expect("probe");
        probe.local_addr().expect("addr").port()
    };
    let broadcast: SocketAddr = format!("127.255.255.255:{port}").parse().expect("addr");
    let (_t, mut rx) = Transport::bind(TransportConfig {
        bind: "127.0.0.1:0".parse().expect("addr"),
        broadcast: Some(broadcast),
        ..TransportConfig::default()
    })
    .await
    .expect("transport");

    let device = std::net::UdpSocket::bind("127.0.0.9:0").expect("device socket");
    device.set_broadcast(true).expect("SO_BROADCAST");
    let mut f = Vec::new();
    frame::begin(&mut f, true, &NpduOut { destination: None, source: None, expecting_reply: false });
    frame::write_unconfirmed_request(&mut f, service::I_AM);
    plantwatch_actors::bacnet::services::IAm {
        device: ObjectId::device(4242),
        max_apdu: 1476,
        segmentation: plantwatch_actors::bacnet::Segmentation::Both,
        vendor_id: 15,
    }
    .encode(&mut f);
    frame::finish(&mut f).expect("frame");
    device.send_to(&f, broadcast).expect("broadcast I-Am");

    match tokio::time::timeout(Duration::from_secs(2), rx.recv()).await {
        Ok(Some(Unsolicited::IAm { from, iam })) => {
            assert_eq!(iam.device, ObjectId::device(4242));
            assert_eq!(from.ip, device.local_addr().expect("addr"));
        }
        other => panic!("no I-Am from the broadcast: {other:?}"),
    }
}
