//! The backup file format: JSON lines, written and read as a stream.
//!
//! ```text
//! {"format":"plantwatch-store-backup","format_version":1,"schema_version":1,"created_at_ms":1764123000000,"producer":"plantwatch-actors 0.1.0","trees":["meta","snapshots","history","audit","api_keys","leases"]}
//! {"tree":"meta","k":"schema_version","v":"1"}
//! {"tree":"snapshots","kx":"626c64672d61000003e9","v":"{\"status\":\"online\", ...}"}
//! {"tree":"history","kx":"...","vx":"4035800000000000000"}
//! ...
//! {"end":true,"entries":1234,"counts":{"meta":1,"snapshots":20,...},"fnv1a64":"c0ffee0123456789"}
//! ```
//!
//! - Line 1 is the header: the format name and version (a reader refuses any
//!   other), the store schema version the data was written with, when and by
//!   what, and the trees that follow.
//! - Then one line per key/value pair, tree by tree, keys in order. Each of
//!   key and value is written as a JSON string (`k`, `v`) when its bytes are
//!   valid UTF-8 (snapshots are JSON, so they stay readable) and as lowercase
//!   hex (`kx`, `vx`) otherwise.
//! - The last line is the footer: the number of entries, per tree and in all,
//!   and the 64-bit FNV-1a hash of every byte before the footer line (header
//!   and entries, newlines included). A file without its footer is truncated;
//!   a hash mismatch means it was damaged. The hash catches accidents, it is
//!   not a signature.
//!
//! Lines are read with a length limit, so a foreign or damaged file cannot
//! make a restore allocate without bound.

use std::collections::BTreeMap;
use std::io::{self, BufRead, Read, Write};

use serde::{Deserialize, Serialize};

/// Name in the header; anything else is not a plantwatch backup.
pub const FORMAT: &str = "plantwatch-store-backup";
/// Version of this file format (not of the store schema).
pub const FORMAT_VERSION: u32 = 1;
/// Longest line a reader accepts.
pub const MAX_LINE: usize = 64 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub format: String,
    pub format_version: u32,
    pub schema_version: u32,
    pub created_at_ms: u64,
    pub producer: String,
    pub trees: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    tree: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    k: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kx: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    v: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    vx: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Footer {
    end: bool,
    entries: u64,
    counts: BTreeMap<String, u64>,
    fnv1a64: String,
}

/// One line after the header: an entry or the footer.
#[derive(Deserialize)]
#[serde(untagged)]
enum Line {
    Footer(Footer),
    Entry(Entry),
}

/// 64-bit FNV-1a, fed incrementally.
#[derive(Debug, Clone, Copy)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    pub fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    pub fn hex(&self) -> String {
        format!("{:016x}", self.0)
    }
}

fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    out
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes.chunks_exact(2).map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?)).collect()
}

/// Text if the bytes are UTF-8, hex otherwise.
fn encode(bytes: &[u8]) -> (Option<String>, Option<String>) {
    match std::str::from_utf8(bytes) {
        Ok(text) => (Some(text.to_owned()), None),
        Err(_) => (None, Some(to_hex(bytes))),
    }
}

fn decode(text: Option<String>, hex: Option<String>, what: &str) -> Result<Vec<u8>, String> {
    match (text, hex) {
        (Some(text), None) => Ok(text.into_bytes()),
        (None, Some(hex)) => from_hex(&hex).ok_or_else(|| format!("{what} is not valid hex")),
        _ => Err(format!("entry needs exactly one of `{what}` as text or as hex")),
    }
}

/// Writes a backup as a stream: [`Writer::start`], [`Writer::entry`] for every
/// pair, [`Writer::finish`].
pub struct Writer<W: Write> {
    out: W,
    hash: Fnv,
    entries: u64,
    counts: BTreeMap<String, u64>,
    bytes: u64,
}

impl<W: Write> Writer<W> {
    pub fn start(out: W, header: &Header) -> io::Result<Self> {
        let mut writer = Writer { out, hash: Fnv::default(), entries: 0, counts: BTreeMap::new(), bytes: 0 };
        for tree in &header.trees {
            writer.counts.insert(tree.clone(), 0);
        }
        writer.line(&serde_json::to_vec(header)?, true)?;
        Ok(writer)
    }

    fn line(&mut self, json: &[u8], hashed: bool) -> io::Result<()> {
        self.out.write_all(json)?;
        self.out.write_all(b"\n")?;
        if hashed {
            self.hash.update(json);
            self.hash.update(b"\n");
        }
        self.bytes += json.len() as u64 + 1;
        Ok(())
    }

    pub fn entry(&mut self, tree: &str, key: &[u8], value: &[u8]) -> io::Result<()> {
        let (k, kx) = encode(key);
        let (v, vx) = encode(value);
        let json = serde_json::to_vec(&Entry { tree: tree.to_owned(), k, kx, v, vx })?;
        self.line(&json, true)?;
        self.entries += 1;
        *self.counts.entry(tree.to_owned()).or_insert(0) += 1;
        Ok(())
    }

    /// Writes the footer and returns the output, the counts per tree and the
    /// bytes written.
    pub fn finish(mut self) -> io::Result<(W, BTreeMap<String, u64>, u64)> {
        let footer = Footer { end: true, entries: self.entries, counts: self.counts.clone(), fnv1a64: self.hash.hex() };
        self.line(&serde_json::to_vec(&footer)?, false)?;
        self.out.flush()?;
        Ok((self.out, self.counts, self.bytes))
    }
}

/// What is wrong with a backup file, in words for the operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read it: {0}")]
    Io(String),
    #[error("it is not a plantwatch store backup ({0})")]
    Foreign(String),
    #[error("it has backup format version {found}, this plantwatch reads version {expected}")]
    FormatVersion { found: u32, expected: u32 },
    #[error("line {line} is damaged: {reason}")]
    Damaged { line: u64, reason: String },
    #[error("it is truncated: it ends after line {lines} without its closing line")]
    Truncated { lines: u64 },
    #[error(
        "its contents do not match its checksum (written {written}, read {read}): the file was changed or damaged"
    )]
    Checksum { written: String, read: String },
    #[error("its closing line counts {written} entries but the file holds {read}")]
    Count { written: u64, read: u64 },
}

/// One key/value pair of one tree: `(tree, key, value)`.
pub type Pair = (String, Vec<u8>, Vec<u8>);

/// Reads a backup as a stream. [`Reader::open`] reads and checks the header;
/// [`Reader::next_entry`] yields pairs until the footer, which it verifies.
pub struct Reader<R: BufRead> {
    input: R,
    header: Header,
    hash: Fnv,
    line_no: u64,
    entries: u64,
    counts: BTreeMap<String, u64>,
    done: bool,
    buf: Vec<u8>,
}

/// Reads one line of at most `MAX_LINE` bytes into `buf` (without the
/// newline). `Ok(false)` at the end of the input.
fn read_line<R: BufRead>(input: &mut R, buf: &mut Vec<u8>, line: u64) -> Result<bool, ReadError> {
    buf.clear();
    let n =
        input.by_ref().take(MAX_LINE as u64 + 1).read_until(b'\n', buf).map_err(|e| ReadError::Io(e.to_string()))?;
    if n == 0 {
        return Ok(false);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
    } else if buf.len() > MAX_LINE {
        return Err(ReadError::Damaged { line, reason: format!("longer than {MAX_LINE} bytes") });
    }
    Ok(true)
}

impl<R: BufRead> Reader<R> {
    pub fn open(mut input: R) -> Result<Self, ReadError> {
        let mut buf = Vec::new();
        if !read_line(&mut input, &mut buf, 1).map_err(|e| match e {
            ReadError::Damaged { .. } => ReadError::Foreign("its first line is not a backup header".into()),
            other => other,
        })? {
            return Err(ReadError::Foreign("the file is empty".into()));
        }
        let value: serde_json::Value = serde_json::from_slice(&buf)
            .map_err(|_| ReadError::Foreign("its first line is not a JSON backup header".into()))?;
        if value.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
            return Err(ReadError::Foreign(format!("its header does not name the format {FORMAT:?}")));
        }
        let header: Header = serde_json::from_value(value)
            .map_err(|e| ReadError::Damaged { line: 1, reason: format!("bad header: {e}") })?;
        if header.format_version != FORMAT_VERSION {
            return Err(ReadError::FormatVersion { found: header.format_version, expected: FORMAT_VERSION });
        }
        let mut hash = Fnv::default();
        hash.update(&buf);
        hash.update(b"\n");
        Ok(Reader { input, header, hash, line_no: 1, entries: 0, counts: BTreeMap::new(), done: false, buf })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The next `(tree, key, value)`, or `None` once the footer was read and
    /// verified. The tree is one the header announced.
    pub fn next_entry(&mut self) -> Result<Option<Pair>, ReadError> {
        if self.done {
            return Ok(None);
        }
        let line = self.line_no + 1;
        if !read_line(&mut self.input, &mut self.buf, line)? {
            return Err(ReadError::Truncated { lines: self.line_no });
        }
        self.line_no = line;
        let damaged = |reason: String| ReadError::Damaged { line, reason };
        let parsed: Line = serde_json::from_slice(&self.buf).map_err(|e| damaged(e.to_string()))?;
        match parsed {
            Line::Footer(footer) => {
                self.done = true;
                let read = self.hash.hex();
                if footer.fnv1a64 != read {
                    return Err(ReadError::Checksum { written: footer.fnv1a64, read });
                }
                if footer.entries != self.entries {
                    return Err(ReadError::Count { written: footer.entries, read: self.entries });
                }
                let mut extra = Vec::new();
                if read_line(&mut self.input, &mut extra, line + 1)? {
                    return Err(ReadError::Damaged { line: line + 1, reason: "data after the closing line".into() });
                }
                Ok(None)
            }
            Line::Entry(entry) => {
                if !self.header.trees.contains(&entry.tree) {
                    return Err(damaged(format!("tree {:?} is not announced in the header", entry.tree)));
                }
                let key = decode(entry.k, entry.kx, "k").map_err(damaged)?;
                let value = decode(entry.v, entry.vx, "v").map_err(damaged)?;
                self.hash.update(&self.buf);
                self.hash.update(b"\n");
                self.entries += 1;
                *self.counts.entry(entry.tree.clone()).or_insert(0) += 1;
                Ok(Some((entry.tree, key, value)))
            }
        }
    }

    /// Entries per tree read so far.
    pub fn counts(&self) -> &BTreeMap<String, u64> {
        &self.counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            schema_version: 1,
            created_at_ms: 5,
            producer: "test".into(),
            trees: vec!["a".into(), "b".into()],
        }
    }

    fn sample() -> Vec<u8> {
        let mut w = Writer::start(Vec::new(), &header()).unwrap();
        w.entry("a", b"text key", b"{\"json\": 1}").unwrap();
        w.entry("b", &[0, 0xff, 7], &[0x80]).unwrap();
        w.finish().unwrap().0
    }

    fn read_all(bytes: &[u8]) -> Result<Vec<Pair>, ReadError> {
        let mut r = Reader::open(bytes)?;
        let mut out = Vec::new();
        while let Some(e) = r.next_entry()? {
            out.push(e);
        }
        Ok(out)
    }

    #[test]
    fn round_trip_keeps_text_readable_and_binary_exact() {
        let bytes = sample();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.contains(r#""k":"text key","v":"{\"json\": 1}""#), "{text}");
        assert!(text.contains(r#""kx":"00ff07","vx":"80""#), "{text}");
        let entries = read_all(&bytes).unwrap();
        assert_eq!(entries[0], ("a".into(), b"text key".to_vec(), b"{\"json\": 1}".to_vec()));
        assert_eq!(entries[1], ("b".into(), vec![0, 0xff, 7], vec![0x80]));
    }

    #[test]
    fn damage_is_named() {
        let good = sample();
        // truncated: drop the footer line
        let cut = &good[..good.len() - 1];
        let footer_start = cut.iter().rposition(|&b| b == b'\n').unwrap() + 1;
        assert_eq!(read_all(&good[..footer_start]), Err(ReadError::Truncated { lines: 3 }));
        // a flipped digit inside an entry
        let text = String::from_utf8(good.clone()).unwrap().replace("00ff07", "00ff08");
        assert!(matches!(read_all(text.as_bytes()), Err(ReadError::Checksum { .. })));
        // a line that is not JSON
        let text = String::from_utf8(good.clone()).unwrap().replacen("{\"tree\"", "{tree", 1);
        assert!(matches!(read_all(text.as_bytes()), Err(ReadError::Damaged { line: 2, .. })));
        // foreign files
        assert!(matches!(read_all(b""), Err(ReadError::Foreign(_))));
        assert!(matches!(read_all(b"\x00\x01garbage"), Err(ReadError::Foreign(_))));
        assert!(matches!(read_all(b"{\"format\":\"other\"}\n"), Err(ReadError::Foreign(_))));
        let newer = String::from_utf8(good).unwrap().replacen("\"format_version\":1", "\"format_version\":9", 1);
        assert_eq!(read_all(newer.as_bytes()), Err(ReadError::FormatVersion { found: 9, expected: 1 }));
    }
}
