//! The receive path against hostile input. Each reproducer of a bacnet-rs
//! defect in DEPENDENCIES.md is a regression test here; a property test feeds
//! random and mutated frames through every decoder.

use plantwatch_actors::bacnet::codec::{Reader, Value};
use plantwatch_actors::bacnet::frame::{self, Apdu, Body};
use plantwatch_actors::bacnet::services::{
    decode_error, decode_rpm_ack, CovNotification, IAm, ReadPropertyAck, ReadPropertyMultipleRequest,
    ReadPropertyRequest, SubscribeCovRequest, WhoIs, WritePropertyRequest,
};
use plantwatch_actors::bacnet::types::{BitString, ObjectId};
use proptest::prelude::*;

use crate::support::hex;

/// Runs every decoder plantwatch has over `bytes`, as a service body and as a
/// datagram. None may panic; the results are ignored.
fn decode_everything(bytes: &[u8]) {
    let _ = frame::parse(bytes);
    let _ = frame::parse_apdu(bytes);
    let _ = ReadPropertyRequest::decode(bytes);
    let _ = ReadPropertyAck::decode(bytes);
    let _ = ReadPropertyMultipleRequest::decode(bytes);
    let _ = decode_rpm_ack(bytes);
    let _ = WritePropertyRequest::decode(bytes);
    let _ = SubscribeCovRequest::decode(bytes);
    let _ = CovNotification::decode(bytes);
    let _ = WhoIs::decode(bytes);
    let _ = IAm::decode(bytes);
    let _ = decode_error(bytes);
    let mut r = Reader::new(bytes);
    while r.skip_element().is_ok() && !r.is_empty() {}
    let mut r = Reader::new(bytes);
    while r.application().is_ok() && !r.is_empty() {}
    if let Ok(f) = frame::parse(bytes) {
        if let Body::Apdu(
            Apdu::ComplexAck { data, .. }
            | Apdu::ConfirmedRequest { data, .. }
            | Apdu::UnconfirmedRequest { data, .. }
            | Apdu::Error { data, .. },
        ) = f.body
        {
            decode_everything_body(data);
        }
    }
}

fn decode_everything_body(data: &[u8]) {
    let _ = ReadPropertyAck::decode(data);
    let _ = decode_rpm_ack(data);
    let _ = CovNotification::decode(data);
    let _ = WritePropertyRequest::decode(data);
    let _ = IAm::decode(data);
    let _ = decode_error(data);
}

#[test]
fn context_tag_read_as_a_long_unsigned_is_an_error() {
    // bacnet-rs: decode_unsigned64 has no length check and decode_application_tag ignores the class bit.
    let bytes = hex("29 00 00 00 00 00 00 00 00 00");
    assert!(Reader::new(&bytes).application().is_err());
    assert!(ReadPropertyAck::decode(&bytes).is_err());
    decode_everything(&bytes);
}

#[test]
fn cov_notification_with_a_constructed_value_decodes() {
    // bacnet-rs panics in CovNotificationRequest::decode on this well-formed notification.
    let bytes = hex("09 11 1C 02 03 F7 A1 2C 00 00 00 01 3A 01 2C 4E 09 55 2E 3E A4 7E 0B 1A 04 B4 0C 1E 00 00 3F 2F 09 6F 2E 82 04 00 2F 4F");
    let n = CovNotification::decode(&bytes).expect("a valid notification");
    assert_eq!(n.process_id, 17);
    assert_eq!(n.device, ObjectId::device(0x3F7A1));
    assert_eq!(n.object, ObjectId::new(0, 1));
    assert_eq!(n.time_remaining, 300);
    assert_eq!(n.values.len(), 2);
    assert_eq!(n.values[0].0.property, 85);
    assert_eq!(n.values[0].1, Value::Opaque(hex("3E A4 7E 0B 1A 04 B4 0C 1E 00 00 3F")));
    assert_eq!(n.values[1].0.property, 111);
    assert_eq!(n.values[1].1, Value::BitString(BitString::with_len(4)));
}

#[test]
fn bvlc_length_below_four_is_an_error() {
    // bacnet-rs: transport::BvllMessage::decode panics.
    assert!(frame::parse(&hex("81 00 00 00")).is_err());
    assert!(frame::parse(&hex("81 0A 00 02")).is_err());
}

#[test]
fn write_property_cut_short_is_an_error() {
    // bacnet-rs: WritePropertyRequest::decode reads past the end.
    assert!(WritePropertyRequest::decode(&hex("0C 00 00 00 00 19 00 29")).is_err());
}

#[test]
fn debug_formatter_inputs_are_harmless() {
    // bacnet-rs: util::debug formatters panic on these.
    for input in ["50 00 00 00", "75 00 00"] {
        decode_everything(&hex(input));
    }
}

#[test]
fn unknown_service_choices_still_parse() {
    // bacnet-rs's Apdu::decode refuses service choices it does not know.
    let bytes = hex("81 0A 00 09 01 00 30 05 63");
    let f = frame::parse(&bytes).expect("a complex ack");
    assert_eq!(f.body, Body::Apdu(Apdu::ComplexAck { invoke_id: 5, service: 0x63, segment: None, data: &[] }));
}

#[test]
fn latin1_names_and_constructed_values_do_not_fail_a_whole_rpm_answer() {
    // bacnet-rs fails the whole RPM answer on a charset it does not know or a constructed value.
    // analog-input:1 { object-name "Grüße" (ISO-8859-1), present-value 21.5, event-time-stamps [constructed] }
    let bytes = hex("0C 00 00 00 01 1E \
         29 4D 4E 75 06 05 47 72 FC DF 65 4F \
         29 55 4E 44 41 AC 00 00 4F \
         29 82 4E 0E A4 7E 0B 1A 04 B4 0C 1E 00 00 0F 4F \
         1F");
    let results = decode_rpm_ack(&bytes).expect("decodes");
    assert_eq!(results.len(), 3);
    assert_eq!(results[0].value, Ok(Value::CharacterString("Grüße".into())));
    assert_eq!(results[1].value, Ok(Value::Real(21.5)));
    assert!(matches!(results[2].value, Ok(Value::Opaque(_))));
}

fn valid_frames() -> Vec<Vec<u8>> {
    [
        // read-property request, routed request, complex ack, rpm ack, COV notification, I-Am, error, segmented ack
        "81 0A 00 11 01 04 02 75 01 0C 0C 00 00 00 01 19 55",
        "81 0A 00 16 01 24 00 64 01 05 FF 02 75 01 0C 0C 00 00 00 01 19 55",
        "81 0A 00 13 01 00 30 01 0C 0C 00 00 00 01 19 55 3E 44 41 AC 00 00 3F",
        "81 0A 00 1A 01 00 30 02 0E 0C 00 00 00 01 1E 29 55 4E 44 41 AC 00 00 4F 1F",
        "81 0A 00 2E 01 00 10 02 09 11 1C 02 03 F7 A1 2C 00 00 00 01 3A 01 2C 4E 09 55 2E 3E A4 7E 0B 1A 04 B4 0C 1E 00 00 3F 2F 09 6F 2E 82 04 00 2F 4F",
        "81 0B 00 14 01 00 10 00 C4 02 00 0B B9 22 05 C4 91 00 21 E7",
        "81 0A 00 0B 01 00 50 01 0C 91 02 91 20",
        "81 0A 00 14 01 00 3C 01 00 10 0C 0C 02 00 03 E9 19 4C 3E C4",
    ]
    .iter()
    .map(|h| {
        // the BVLC length is patched so the samples stay easy to edit
        let mut f = hex(h);
        let len = (f.len() as u16).to_be_bytes();
        f[2..4].copy_from_slice(&len);
        f
    })
    .collect()
}

#[test]
fn the_sample_frames_are_valid() {
    for f in valid_frames() {
        assert!(frame::parse(&f).is_ok(), "{f:02x?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        decode_everything(&bytes);
    }

    #[test]
    fn mutated_frames_never_panic(
        which in 0usize..8,
        edits in proptest::collection::vec((any::<u16>(), any::<u8>(), 0u8..3), 1..8),
    ) {
        let mut f = valid_frames().swap_remove(which);
        for (pos, byte, op) in edits {
            let at = usize::from(pos) % (f.len() + 1);
            match op {
                0 if at < f.len() => f[at] = byte,
                1 => f.insert(at, byte),
                _ if at < f.len() => { f.remove(at); }
                _ => {}
            }
        }
        // Keep the BVLC length right half of the time, so mutations reach the inner layers.
        if byte_parity(&f) && f.len() >= 4 {
            let len = (f.len() as u16).to_be_bytes();
            f[2] = len[0];
            f[3] = len[1];
        }
        decode_everything(&f);
    }
}

fn byte_parity(f: &[u8]) -> bool {
    f.iter().fold(0u8, |a, b| a ^ b) & 1 == 0
}
