//! Tag-level BACnet encoding (ASHRAE 135 clause 20.2).
//!
//! [`Reader`] walks untrusted bytes: every tag header is checked for class,
//! extended number and length against what is left, so a malformed frame is
//! an `Err`, never a panic or an out-of-bounds slice, and nothing is allocated
//! beyond the bytes actually present. Context-tagged and constructed data that
//! this layer does not interpret is kept as [`Value::Opaque`] instead of
//! failing the whole decode.
//!
//! The writer functions append application- or context-tagged primitives to a
//! `Vec<u8>`; they are used where bacnet-rs's encoders are missing or wrong
//! (WriteProperty with property ids above 255, the simulator's acknowledgements).

use super::types::{BitString, Date, ObjectId, Time};

/// Nesting depth of constructed data that the reader follows before giving up.
const MAX_DEPTH: usize = 32;

/// Why bytes could not be decoded. Small and `Copy`: decode errors are counted,
/// not carried around.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("frame ends before the {0} it announces")]
    Truncated(&'static str),
    #[error("unexpected tag: {0}")]
    UnexpectedTag(&'static str),
    #[error("invalid length for {0}")]
    BadLength(&'static str),
    #[error("invalid value: {0}")]
    Invalid(&'static str),
    #[error("constructed data nested too deep")]
    TooDeep,
}

pub type DecodeResult<T> = Result<T, DecodeError>;

/// Application tag numbers (clause 20.2.1.4).
pub mod app_tag {
    pub const NULL: u8 = 0;
    pub const BOOLEAN: u8 = 1;
    pub const UNSIGNED: u8 = 2;
    pub const SIGNED: u8 = 3;
    pub const REAL: u8 = 4;
    pub const DOUBLE: u8 = 5;
    pub const OCTET_STRING: u8 = 6;
    pub const CHARACTER_STRING: u8 = 7;
    pub const BIT_STRING: u8 = 8;
    pub const ENUMERATED: u8 = 9;
    pub const DATE: u8 = 10;
    pub const TIME: u8 = 11;
    pub const OBJECT_ID: u8 = 12;
}

/// Character sets of a CharacterString (clause 20.2.9).
pub mod charset {
    pub const UTF8: u8 = 0;
    pub const DBCS: u8 = 1;
    pub const JIS_X0208: u8 = 2;
    pub const UCS4: u8 = 3;
    pub const UCS2: u8 = 4;
    pub const ISO_8859_1: u8 = 5;
}

/// What follows a tag header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagKind {
    /// A primitive: the length/value/type field (for application booleans it
    /// is the value itself and no content follows).
    Primitive(u32),
    Opening,
    Closing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tag {
    pub number: u8,
    pub context: bool,
    pub kind: TagKind,
}

impl Tag {
    fn content_len(&self) -> usize {
        match self.kind {
            TagKind::Primitive(_) if !self.context && self.number == app_tag::BOOLEAN => 0,
            TagKind::Primitive(lvt) => lvt as usize,
            TagKind::Opening | TagKind::Closing => 0,
        }
    }
}

/// A decoded property value. Serialized in human-readable formats (JSON:
/// golden files, older snapshots) as `{"type": "real", "value": 21.5}`; in
/// binary ones (the store's snapshots) externally tagged, see [`Compact`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(remote = "Self")]
#[serde(tag = "type", content = "value", rename_all = "kebab-case")]
pub enum Value {
    Null,
    Boolean(bool),
    Unsigned(u64),
    Signed(i64),
    Real(f32),
    Double(f64),
    OctetString(Vec<u8>),
    CharacterString(String),
    BitString(BitString),
    Enumerated(u32),
    Date(Date),
    Time(Time),
    ObjectId(ObjectId),
    /// Several elements (arrays and lists, e.g. Object_List, Priority_Array).
    List(Vec<Value>),
    /// Context-tagged or constructed data this decoder does not interpret
    /// (BACnetDateTime, time stamps, schedules...): the raw tagged bytes.
    Opaque(Vec<u8>),
}

/// [`Value`] in binary formats: externally tagged, because the adjacently
/// tagged form cannot be read back from positional formats (a `Null` has no
/// content field). Variant order is part of the stored form: add at the end.
#[derive(serde::Serialize, serde::Deserialize)]
enum Compact {
    Null,
    Boolean(bool),
    Unsigned(u64),
    Signed(i64),
    Real(f32),
    Double(f64),
    OctetString(Vec<u8>),
    CharacterString(String),
    BitString(BitString),
    Enumerated(u32),
    Date(Date),
    Time(Time),
    ObjectId(ObjectId),
    List(Vec<Value>),
    Opaque(Vec<u8>),
}

impl serde::Serialize for Value {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            return Value::serialize(self, s);
        }
        let c = match self.clone() {
            Value::Null => Compact::Null,
            Value::Boolean(v) => Compact::Boolean(v),
            Value::Unsigned(v) => Compact::Unsigned(v),
            Value::Signed(v) => Compact::Signed(v),
            Value::Real(v) => Compact::Real(v),
            Value::Double(v) => Compact::Double(v),
            Value::OctetString(v) => Compact::OctetString(v),
            Value::CharacterString(v) => Compact::CharacterString(v),
            Value::BitString(v) => Compact::BitString(v),
            Value::Enumerated(v) => Compact::Enumerated(v),
            Value::Date(v) => Compact::Date(v),
            Value::Time(v) => Compact::Time(v),
            Value::ObjectId(v) => Compact::ObjectId(v),
            Value::List(v) => Compact::List(v),
            Value::Opaque(v) => Compact::Opaque(v),
        };
        c.serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for Value {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            return Value::deserialize(d);
        }
        Ok(match Compact::deserialize(d)? {
            Compact::Null => Value::Null,
            Compact::Boolean(v) => Value::Boolean(v),
            Compact::Unsigned(v) => Value::Unsigned(v),
            Compact::Signed(v) => Value::Signed(v),
            Compact::Real(v) => Value::Real(v),
            Compact::Double(v) => Value::Double(v),
            Compact::OctetString(v) => Value::OctetString(v),
            Compact::CharacterString(v) => Value::CharacterString(v),
            Compact::BitString(v) => Value::BitString(v),
            Compact::Enumerated(v) => Value::Enumerated(v),
            Compact::Date(v) => Value::Date(v),
            Compact::Time(v) => Value::Time(v),
            Compact::ObjectId(v) => Value::ObjectId(v),
            Compact::List(v) => Value::List(v),
            Compact::Opaque(v) => Value::Opaque(v),
        })
    }
}

impl Value {
    /// The value as a number, where that makes sense.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::Real(v) => Some(f64::from(v)),
            Value::Double(v) => Some(v),
            Value::Unsigned(v) => Some(v as f64),
            Value::Signed(v) => Some(v as f64),
            Value::Enumerated(v) => Some(f64::from(v)),
            Value::Boolean(v) => Some(if v { 1.0 } else { 0.0 }),
            _ => None,
        }
    }

    pub fn as_unsigned(&self) -> Option<u64> {
        match *self {
            Value::Unsigned(v) => Some(v),
            Value::Enumerated(v) => Some(u64::from(v)),
            _ => None,
        }
    }

    /// The elements of an array or list; a single value is a one-element list.
    pub fn elements(&self) -> &[Value] {
        match self {
            Value::List(items) => items,
            other => std::slice::from_ref(other),
        }
    }
}

/// A bounds-checked cursor over untrusted bytes.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos.min(self.buf.len())..]
    }

    fn byte(&mut self, what: &'static str) -> DecodeResult<u8> {
        let b = *self.buf.get(self.pos).ok_or(DecodeError::Truncated(what))?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize, what: &'static str) -> DecodeResult<&'a [u8]> {
        let end = self.pos.checked_add(n).ok_or(DecodeError::Truncated(what))?;
        let s = self.buf.get(self.pos..end).ok_or(DecodeError::Truncated(what))?;
        self.pos = end;
        Ok(s)
    }

    /// Reads a tag header and checks that its content is present.
    pub fn tag(&mut self) -> DecodeResult<Tag> {
        let first = self.byte("tag")?;
        let context = first & 0x08 != 0;
        let mut number = first >> 4;
        if number == 0x0F {
            number = self.byte("extended tag number")?;
            if number == 0xFF {
                return Err(DecodeError::Invalid("reserved tag number 255"));
            }
        }
        let lvt = first & 0x07;
        let kind = match lvt {
            6 if context => TagKind::Opening,
            7 if context => TagKind::Closing,
            5 => {
                let ext = self.byte("extended length")?;
                let len = match ext {
                    254 => {
                        let b = self.take(2, "extended length")?;
                        u32::from(u16::from_be_bytes([b[0], b[1]]))
                    }
                    255 => {
                        let b = self.take(4, "extended length")?;
                        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
                    }
                    n => u32::from(n),
                };
                TagKind::Primitive(len)
            }
            6 | 7 => return Err(DecodeError::UnexpectedTag("opening/closing tag of class application")),
            n => TagKind::Primitive(u32::from(n)),
        };
        let tag = Tag { number, context, kind };
        if tag.content_len() > self.buf.len().saturating_sub(self.pos) {
            return Err(DecodeError::Truncated("tag content"));
        }
        Ok(tag)
    }

    /// The next tag, without consuming it.
    pub fn peek(&self) -> DecodeResult<Tag> {
        self.clone().tag()
    }

    /// True when the next tag is the context tag `n` (primitive).
    pub fn at_context(&self, n: u8) -> bool {
        matches!(self.peek(), Ok(Tag { number, context: true, kind: TagKind::Primitive(_) }) if number == n)
    }

    pub fn at_opening(&self, n: u8) -> bool {
        matches!(self.peek(), Ok(Tag { number, context: true, kind: TagKind::Opening }) if number == n)
    }

    pub fn at_closing(&self, n: u8) -> bool {
        matches!(self.peek(), Ok(Tag { number, context: true, kind: TagKind::Closing }) if number == n)
    }

    pub fn expect_opening(&mut self, n: u8) -> DecodeResult<()> {
        match self.tag()? {
            Tag { number, context: true, kind: TagKind::Opening } if number == n => Ok(()),
            _ => Err(DecodeError::UnexpectedTag("expected an opening tag")),
        }
    }

    pub fn expect_closing(&mut self, n: u8) -> DecodeResult<()> {
        match self.tag()? {
            Tag { number, context: true, kind: TagKind::Closing } if number == n => Ok(()),
            _ => Err(DecodeError::UnexpectedTag("expected a closing tag")),
        }
    }

    /// Content bytes of the context-tagged primitive `n`.
    fn context_content(&mut self, n: u8, what: &'static str) -> DecodeResult<&'a [u8]> {
        match self.tag()? {
            t @ Tag { context: true, kind: TagKind::Primitive(_), .. } if t.number == n => {
                self.take(t.content_len(), what)
            }
            _ => Err(DecodeError::UnexpectedTag(what)),
        }
    }

    pub fn context_unsigned(&mut self, n: u8) -> DecodeResult<u64> {
        decode_unsigned(self.context_content(n, "context unsigned")?)
    }

    pub fn context_u32(&mut self, n: u8) -> DecodeResult<u32> {
        u32::try_from(self.context_unsigned(n)?).map_err(|_| DecodeError::Invalid("value above 2^32"))
    }

    pub fn context_enumerated(&mut self, n: u8) -> DecodeResult<u32> {
        decode_enumerated(self.context_content(n, "context enumerated")?)
    }

    pub fn context_bool(&mut self, n: u8) -> DecodeResult<bool> {
        match self.context_content(n, "context boolean")? {
            [b] => Ok(*b != 0),
            _ => Err(DecodeError::BadLength("context boolean")),
        }
    }

    pub fn context_object_id(&mut self, n: u8) -> DecodeResult<ObjectId> {
        decode_object_id(self.context_content(n, "context object identifier")?)
    }

    pub fn context_real(&mut self, n: u8) -> DecodeResult<f32> {
        decode_real(self.context_content(n, "context real")?)
    }

    pub fn optional_context_u32(&mut self, n: u8) -> DecodeResult<Option<u32>> {
        if self.at_context(n) {
            self.context_u32(n).map(Some)
        } else {
            Ok(None)
        }
    }

    /// One application-tagged primitive value.
    pub fn application(&mut self) -> DecodeResult<Value> {
        let tag = self.tag()?;
        if tag.context {
            return Err(DecodeError::UnexpectedTag("expected an application tag"));
        }
        let TagKind::Primitive(lvt) = tag.kind else {
            return Err(DecodeError::UnexpectedTag("expected a primitive"));
        };
        let content = self.take(tag.content_len(), "application value")?;
        decode_application(tag.number, lvt, content)
    }

    pub fn application_unsigned(&mut self) -> DecodeResult<u64> {
        match self.application()? {
            Value::Unsigned(v) => Ok(v),
            _ => Err(DecodeError::UnexpectedTag("expected an unsigned")),
        }
    }

    pub fn application_enumerated(&mut self) -> DecodeResult<u32> {
        match self.application()? {
            Value::Enumerated(v) => Ok(v),
            _ => Err(DecodeError::UnexpectedTag("expected an enumerated")),
        }
    }

    pub fn application_object_id(&mut self) -> DecodeResult<ObjectId> {
        match self.application()? {
            Value::ObjectId(v) => Ok(v),
            _ => Err(DecodeError::UnexpectedTag("expected an object identifier")),
        }
    }

    /// Skips one element (a primitive, or a constructed value up to its
    /// matching closing tag) and returns its raw bytes, tags included.
    pub fn skip_element(&mut self) -> DecodeResult<&'a [u8]> {
        let start = self.pos;
        let mut depth = 0usize;
        loop {
            let tag = self.tag()?;
            match tag.kind {
                TagKind::Opening => {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Err(DecodeError::TooDeep);
                    }
                }
                TagKind::Closing => {
                    depth = depth.checked_sub(1).ok_or(DecodeError::UnexpectedTag("unbalanced closing tag"))?;
                }
                TagKind::Primitive(_) => {
                    self.take(tag.content_len(), "element")?;
                }
            }
            if depth == 0 {
                return Ok(&self.buf[start..self.pos]);
            }
        }
    }

    /// The elements between opening tag `n` and its closing tag: application
    /// primitives are decoded, anything else is kept opaque. Zero or several
    /// elements give a [`Value::List`], one element gives that element.
    pub fn enclosed_value(&mut self, n: u8) -> DecodeResult<Value> {
        self.expect_opening(n)?;
        let mut items = Vec::new();
        while !self.at_closing(n) {
            let tag = self.peek()?;
            if tag.context || !matches!(tag.kind, TagKind::Primitive(_)) {
                items.push(Value::Opaque(self.skip_element()?.to_vec()));
            } else {
                items.push(self.application()?);
            }
        }
        self.expect_closing(n)?;
        Ok(match <[Value; 1]>::try_from(items) {
            Ok([single]) => single,
            Err(items) => Value::List(items),
        })
    }
}

pub fn decode_unsigned(b: &[u8]) -> DecodeResult<u64> {
    if b.is_empty() || b.len() > 8 {
        return Err(DecodeError::BadLength("unsigned"));
    }
    Ok(b.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
}

fn decode_signed(b: &[u8]) -> DecodeResult<i64> {
    if b.is_empty() || b.len() > 8 {
        return Err(DecodeError::BadLength("signed"));
    }
    let init: i64 = if b[0] & 0x80 != 0 { -1 } else { 0 };
    Ok(b.iter().fold(init, |acc, &x| (acc << 8) | i64::from(x)))
}

fn decode_enumerated(b: &[u8]) -> DecodeResult<u32> {
    if b.is_empty() || b.len() > 4 {
        return Err(DecodeError::BadLength("enumerated"));
    }
    Ok(b.iter().fold(0u32, |acc, &x| (acc << 8) | u32::from(x)))
}

fn decode_real(b: &[u8]) -> DecodeResult<f32> {
    let arr: [u8; 4] = b.try_into().map_err(|_| DecodeError::BadLength("real"))?;
    Ok(f32::from_be_bytes(arr))
}

fn decode_object_id(b: &[u8]) -> DecodeResult<ObjectId> {
    let arr: [u8; 4] = b.try_into().map_err(|_| DecodeError::BadLength("object identifier"))?;
    Ok(ObjectId::from_raw(u32::from_be_bytes(arr)))
}

/// Decodes a CharacterString's content (charset byte, then the text).
pub fn decode_character_string(b: &[u8]) -> DecodeResult<String> {
    let (&set, text) = b.split_first().ok_or(DecodeError::BadLength("character string"))?;
    match set {
        charset::UTF8 => Ok(String::from_utf8_lossy(text).into_owned()),
        charset::ISO_8859_1 => Ok(text.iter().map(|&c| char::from(c)).collect()),
        charset::UCS2 => {
            if !text.len().is_multiple_of(2) {
                return Err(DecodeError::BadLength("UCS-2 string"));
            }
            let units = text.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]]));
            Ok(char::decode_utf16(units).map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER)).collect())
        }
        charset::UCS4 => {
            if !text.len().is_multiple_of(4) {
                return Err(DecodeError::BadLength("UCS-4 string"));
            }
            Ok(text
                .chunks_exact(4)
                .map(|c| {
                    char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])).unwrap_or(char::REPLACEMENT_CHARACTER)
                })
                .collect())
        }
        // DBCS and JIS X 0208 need a code page we do not know: keep what is ASCII.
        charset::DBCS | charset::JIS_X0208 => Ok(String::from_utf8_lossy(text).into_owned()),
        _ => Err(DecodeError::Invalid("unknown character set")),
    }
}

fn decode_application(number: u8, lvt: u32, content: &[u8]) -> DecodeResult<Value> {
    Ok(match number {
        app_tag::NULL => {
            if lvt != 0 {
                return Err(DecodeError::BadLength("null"));
            }
            Value::Null
        }
        app_tag::BOOLEAN => match lvt {
            0 => Value::Boolean(false),
            1 => Value::Boolean(true),
            _ => return Err(DecodeError::Invalid("boolean")),
        },
        app_tag::UNSIGNED => Value::Unsigned(decode_unsigned(content)?),
        app_tag::SIGNED => Value::Signed(decode_signed(content)?),
        app_tag::REAL => Value::Real(decode_real(content)?),
        app_tag::DOUBLE => {
            let arr: [u8; 8] = content.try_into().map_err(|_| DecodeError::BadLength("double"))?;
            Value::Double(f64::from_be_bytes(arr))
        }
        app_tag::OCTET_STRING => Value::OctetString(content.to_vec()),
        app_tag::CHARACTER_STRING => Value::CharacterString(decode_character_string(content)?),
        app_tag::BIT_STRING => {
            let (&unused, bits) = content.split_first().ok_or(DecodeError::BadLength("bit string"))?;
            if unused > 7 || (bits.is_empty() && unused != 0) {
                return Err(DecodeError::Invalid("bit string"));
            }
            Value::BitString(BitString::from_wire(unused, bits))
        }
        app_tag::ENUMERATED => Value::Enumerated(decode_enumerated(content)?),
        app_tag::DATE => {
            let arr: [u8; 4] = content.try_into().map_err(|_| DecodeError::BadLength("date"))?;
            Value::Date(Date(arr))
        }
        app_tag::TIME => {
            let arr: [u8; 4] = content.try_into().map_err(|_| DecodeError::BadLength("time"))?;
            Value::Time(Time(arr))
        }
        app_tag::OBJECT_ID => Value::ObjectId(decode_object_id(content)?),
        _ => return Err(DecodeError::Invalid("reserved application tag")),
    })
}

// ---------------------------------------------------------------- writer

/// Writes a tag header.
pub fn write_tag(buf: &mut Vec<u8>, number: u8, context: bool, lvt: u32) {
    let class = if context { 0x08 } else { 0x00 };
    let (num_nibble, ext_num) = if number <= 14 { (number << 4, None) } else { (0xF0, Some(number)) };
    if lvt <= 4 {
        buf.push(num_nibble | class | lvt as u8);
        buf.extend(ext_num);
    } else {
        buf.push(num_nibble | class | 5);
        buf.extend(ext_num);
        if lvt <= 253 {
            buf.push(lvt as u8);
        } else if lvt <= 0xFFFF {
            buf.push(254);
            buf.extend_from_slice(&(lvt as u16).to_be_bytes());
        } else {
            buf.push(255);
            buf.extend_from_slice(&lvt.to_be_bytes());
        }
    }
}

pub fn write_opening(buf: &mut Vec<u8>, n: u8) {
    if n <= 14 {
        buf.push((n << 4) | 0x0E);
    } else {
        buf.extend_from_slice(&[0xFE, n]);
    }
}

pub fn write_closing(buf: &mut Vec<u8>, n: u8) {
    if n <= 14 {
        buf.push((n << 4) | 0x0F);
    } else {
        buf.extend_from_slice(&[0xFF, n]);
    }
}

/// Minimal big-endian bytes of an unsigned (at least one byte).
fn unsigned_bytes(v: u64) -> ([u8; 8], usize) {
    let bytes = v.to_be_bytes();
    let skip = (v.leading_zeros() as usize / 8).min(7);
    (bytes, skip)
}

fn write_unsigned_tagged(buf: &mut Vec<u8>, number: u8, context: bool, v: u64) {
    let (bytes, skip) = unsigned_bytes(v);
    write_tag(buf, number, context, (8 - skip) as u32);
    buf.extend_from_slice(&bytes[skip..]);
}

pub fn write_context_unsigned(buf: &mut Vec<u8>, n: u8, v: u64) {
    write_unsigned_tagged(buf, n, true, v);
}

pub fn write_context_enumerated(buf: &mut Vec<u8>, n: u8, v: u32) {
    write_unsigned_tagged(buf, n, true, u64::from(v));
}

pub fn write_context_bool(buf: &mut Vec<u8>, n: u8, v: bool) {
    write_tag(buf, n, true, 1);
    buf.push(u8::from(v));
}

pub fn write_context_object_id(buf: &mut Vec<u8>, n: u8, id: ObjectId) {
    write_tag(buf, n, true, 4);
    buf.extend_from_slice(&id.raw().to_be_bytes());
}

pub fn write_context_real(buf: &mut Vec<u8>, n: u8, v: f32) {
    write_tag(buf, n, true, 4);
    buf.extend_from_slice(&v.to_be_bytes());
}

/// Writes an application-tagged value. `List` writes its elements in order;
/// `Opaque` writes its raw bytes back unchanged.
pub fn write_application(buf: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => write_tag(buf, app_tag::NULL, false, 0),
        Value::Boolean(b) => write_tag(buf, app_tag::BOOLEAN, false, u32::from(*b)),
        Value::Unsigned(v) => write_unsigned_tagged(buf, app_tag::UNSIGNED, false, *v),
        Value::Signed(v) => {
            let bytes = v.to_be_bytes();
            // Drop leading bytes that only repeat the sign.
            let mut skip = 0;
            while skip < 7 {
                let (b, next) = (bytes[skip], bytes[skip + 1]);
                if (b == 0x00 && next & 0x80 == 0) || (b == 0xFF && next & 0x80 != 0) {
                    skip += 1;
                } else {
                    break;
                }
            }
            write_tag(buf, app_tag::SIGNED, false, (8 - skip) as u32);
            buf.extend_from_slice(&bytes[skip..]);
        }
        Value::Real(v) => {
            write_tag(buf, app_tag::REAL, false, 4);
            buf.extend_from_slice(&v.to_be_bytes());
        }
        Value::Double(v) => {
            write_tag(buf, app_tag::DOUBLE, false, 8);
            buf.extend_from_slice(&v.to_be_bytes());
        }
        Value::OctetString(b) => {
            write_tag(buf, app_tag::OCTET_STRING, false, b.len() as u32);
            buf.extend_from_slice(b);
        }
        Value::CharacterString(s) => {
            write_tag(buf, app_tag::CHARACTER_STRING, false, s.len() as u32 + 1);
            buf.push(charset::UTF8);
            buf.extend_from_slice(s.as_bytes());
        }
        Value::BitString(bits) => {
            let (unused, bytes) = bits.to_wire();
            write_tag(buf, app_tag::BIT_STRING, false, bytes.len() as u32 + 1);
            buf.push(unused);
            buf.extend_from_slice(&bytes);
        }
        Value::Enumerated(v) => write_unsigned_tagged(buf, app_tag::ENUMERATED, false, u64::from(*v)),
        Value::Date(d) => {
            write_tag(buf, app_tag::DATE, false, 4);
            buf.extend_from_slice(&d.0);
        }
        Value::Time(t) => {
            write_tag(buf, app_tag::TIME, false, 4);
            buf.extend_from_slice(&t.0);
        }
        Value::ObjectId(id) => {
            write_tag(buf, app_tag::OBJECT_ID, false, 4);
            buf.extend_from_slice(&id.raw().to_be_bytes());
        }
        Value::List(items) => items.iter().for_each(|v| write_application(buf, v)),
        Value::Opaque(raw) => buf.extend_from_slice(raw),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(v: Value) {
        let mut buf = Vec::new();
        write_application(&mut buf, &v);
        let mut r = Reader::new(&buf);
        assert_eq!(r.application().unwrap(), v, "bytes {buf:02x?}");
        assert!(r.is_empty());
    }

    #[test]
    fn application_values_round_trip() {
        roundtrip(Value::Null);
        roundtrip(Value::Boolean(true));
        roundtrip(Value::Boolean(false));
        for v in [0u64, 1, 255, 256, 65535, 1 << 24, u64::from(u32::MAX), u64::MAX] {
            roundtrip(Value::Unsigned(v));
        }
        for v in [0i64, 1, -1, 127, 128, -128, -129, 32767, -32768, i64::MIN, i64::MAX] {
            roundtrip(Value::Signed(v));
        }
        roundtrip(Value::Real(21.5));
        roundtrip(Value::Double(-1.25e300));
        roundtrip(Value::CharacterString("Grüße aus Köln".into()));
        roundtrip(Value::CharacterString("x".repeat(300)));
        roundtrip(Value::Enumerated(4_194_303));
        roundtrip(Value::ObjectId(ObjectId::new(8, 4_194_302)));
        roundtrip(Value::OctetString(vec![1, 2, 3]));
    }

    #[test]
    fn well_known_encodings() {
        let mut buf = Vec::new();
        write_application(&mut buf, &Value::Real(21.5));
        assert_eq!(buf, [0x44, 0x41, 0xAC, 0x00, 0x00]);
        buf.clear();
        write_context_enumerated(&mut buf, 1, 1000);
        assert_eq!(buf, [0x1A, 0x03, 0xE8]);
        buf.clear();
        write_opening(&mut buf, 3);
        write_closing(&mut buf, 3);
        assert_eq!(buf, [0x3E, 0x3F]);
    }

    #[test]
    fn charsets_are_honoured() {
        // ISO-8859-1 "Grüße"
        let latin1 = [5u8, b'G', b'r', 0xFC, 0xDF, b'e'];
        assert_eq!(decode_character_string(&latin1).unwrap(), "Grüße");
        // UCS-2 "Aé"
        let ucs2 = [4u8, 0x00, 0x41, 0x00, 0xE9];
        assert_eq!(decode_character_string(&ucs2).unwrap(), "Aé");
        let ucs4 = [3u8, 0, 0, 0, 0x41];
        assert_eq!(decode_character_string(&ucs4).unwrap(), "A");
        assert!(decode_character_string(&[4u8, 0x00]).is_err());
        assert!(decode_character_string(&[]).is_err());
    }

    #[test]
    fn lengths_are_checked_against_the_buffer() {
        // context tag 2, length 0, read as an application integer by bacnet-rs
        let mut r = Reader::new(&[0x29, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00]);
        assert!(r.application().is_err());
        // unsigned longer than 8 bytes
        let mut r = Reader::new(&[0x25, 0x09, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
        assert_eq!(r.application(), Err(DecodeError::BadLength("unsigned")));
        // extended length beyond the end
        let mut r = Reader::new(&[0x65, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]);
        assert!(matches!(r.tag(), Err(DecodeError::Truncated(_))));
        // real with 3 bytes
        let mut r = Reader::new(&[0x43, 1, 2, 3]);
        assert_eq!(r.application(), Err(DecodeError::BadLength("real")));
    }

    #[test]
    fn constructed_values_are_kept_opaque() {
        // [3] { date, time } [/3] -> two application values; [3] { [0]{..} } -> opaque
        let buf = [0x3E, 0x0E, 0x21, 0x05, 0x0F, 0x44, 0x41, 0xAC, 0, 0, 0x3F];
        let v = Reader::new(&buf).enclosed_value(3).unwrap();
        assert_eq!(v, Value::List(vec![Value::Opaque(vec![0x0E, 0x21, 0x05, 0x0F]), Value::Real(21.5)]));
    }

    #[test]
    fn nesting_is_bounded() {
        let mut buf = vec![0x0E; 100];
        buf.extend(vec![0x0F; 100]);
        assert_eq!(Reader::new(&buf).skip_element(), Err(DecodeError::TooDeep));
        assert!(Reader::new(&[0x0F]).skip_element().is_err());
        assert!(Reader::new(&[0x0E, 0x0E, 0x0F]).skip_element().is_err());
    }
}
