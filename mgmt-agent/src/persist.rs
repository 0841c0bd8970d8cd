//! Keeping the tree across device restarts, in the management VM's persistent area
//! (`HV_MGMT_STORE_READ` / `HV_MGMT_STORE_WRITE`).
//!
//! Owns: the byte encoding of the tree and the crash-safe layout of the area. Never: decides
//! what a loaded tree means (the agent reconciles it with the hypervisor) or when to save.
//!
//! Layout: the area holds two slots of equal size (at most [`MAX_SLOT`] each). A save writes the
//! whole copy, header first, into the slot that does *not* hold the newest valid copy, with a
//! sequence number one higher. The header's CRC-32 covers the header fields and the payload, so
//! a write torn anywhere (or a flipped bit) makes that slot invalid and the other slot, the
//! previous copy, is loaded. The newest valid slot wins at load.
//!
//! Header (little-endian): magic `VMO1`, version u32, sequence u64, payload length u32,
//! CRC-32 (IEEE) u32. Payload: the [`Counters`], then every node: path, format, type, ACL,
//! title, value (strings as u32 length + UTF-8).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use abi::Status;

use crate::hv::Hypervisor;
use crate::tree::schema::Format;
use crate::tree::{Node, Tree};

pub const MAGIC: [u8; 4] = *b"VMO1";
pub const VERSION: u32 = 1;
pub const HEADER_LEN: usize = 24;
/// The largest slot used, whatever the size of the area.
pub const MAX_SLOT: u64 = 256 << 10;

/// Counters that make identifiers unique forever (never reused, even after a rollback).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counters {
    /// The next `VirMO/<x>/VMID`.
    pub next_vmid: u64,
    /// The next `new-<n>` `VMImgMO/<x>/ImgID` of an image added by a server.
    pub next_img: u64,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            next_vmid: 1,
            next_img: 1,
        }
    }
}

/// A decoded copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Saved {
    pub counters: Counters,
    pub nodes: Vec<(String, Node)>,
}

/// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320), bit by bit: the tree is small, and a
/// table would cost 1 KiB for nothing.
pub fn crc32(chunks: &[&[u8]]) -> u32 {
    let mut crc = !0u32;
    for chunk in chunks {
        for &b in *chunk {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
    }
    !crc
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// The payload for `tree`.
pub fn encode(tree: &Tree, counters: &Counters) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&counters.next_vmid.to_le_bytes());
    out.extend_from_slice(&counters.next_img.to_le_bytes());
    out.extend_from_slice(&(tree.len() as u32).to_le_bytes());
    for (path, node) in tree.iter() {
        put_str(&mut out, path);
        out.push(node.format.code());
        put_str(&mut out, &node.mime);
        put_str(&mut out, &node.acl);
        put_str(&mut out, &node.title);
        put_str(&mut out, &node.value);
    }
    out
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        if self.b.len() < n {
            return Err("truncated payload");
        }
        let (head, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, &'static str> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, &'static str> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }

    fn str(&mut self) -> Result<String, &'static str> {
        let n = self.u32()? as usize;
        let b = self.take(n)?;
        core::str::from_utf8(b)
            .map(String::from)
            .map_err(|_| "string is not UTF-8")
    }
}

/// Decodes a payload. Total: bad bytes give an error, never a panic.
pub fn decode(payload: &[u8]) -> Result<Saved, &'static str> {
    let mut r = Reader { b: payload };
    let counters = Counters {
        next_vmid: r.u64()?,
        next_img: r.u64()?,
    };
    let count = r.u32()? as usize;
    let mut nodes = Vec::new();
    for _ in 0..count {
        let path = r.str()?;
        let format = Format::from_code(r.take(1)?[0]).ok_or("unknown format code")?;
        let node = Node {
            format,
            mime: r.str()?,
            acl: r.str()?,
            title: r.str()?,
            value: r.str()?,
        };
        nodes.push((path, node));
    }
    if !r.b.is_empty() {
        return Err("bytes after the last node");
    }
    Ok(Saved { counters, nodes })
}

/// Why nothing was loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoadError {
    /// The area is absent or too small for two slots.
    NoArea,
    /// Both slots are blank: first boot.
    Empty,
    /// No slot holds a valid copy.
    Corrupt(String),
    /// The area could not be read; saving is disabled so that a good copy is not overwritten.
    ReadFailed(Status),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::NoArea => f.write_str("no persistent area: the tree lives in RAM only"),
            LoadError::Empty => f.write_str("persistent area is empty"),
            LoadError::Corrupt(why) => write!(f, "no valid copy in the persistent area ({why})"),
            LoadError::ReadFailed(s) => write!(
                f,
                "persistent area unreadable ({}): not saving this session",
                s.name()
            ),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SaveError {
    TooLarge { need: usize, slot: u64 },
    Io(Status),
}

impl fmt::Display for SaveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SaveError::TooLarge { need, slot } => write!(
                f,
                "the tree needs {need} bytes, more than a slot of the persistent area ({slot})"
            ),
            SaveError::Io(s) => write!(f, "persistent area write failed: {}", s.name()),
        }
    }
}

/// Where the copies are, and which is newest.
#[derive(Clone, Debug)]
pub struct Store {
    slot_size: u64,
    enabled: bool,
    /// The slot holding the newest valid copy, and its sequence number.
    current: Option<(usize, u64)>,
    /// The payload of that copy: a save of the same bytes is skipped.
    last: Vec<u8>,
}

impl Store {
    /// Finds the newest valid copy in the area of `hv`.
    pub fn open<H: Hypervisor>(hv: &mut H) -> (Store, Result<Saved, LoadError>) {
        let slot_size = (hv.store_size() / 2).min(MAX_SLOT);
        let mut store = Store {
            slot_size,
            enabled: slot_size > HEADER_LEN as u64,
            current: None,
            last: Vec::new(),
        };
        if !store.enabled {
            return (store, Err(LoadError::NoArea));
        }
        let mut best: Option<(usize, u64, Vec<u8>)> = None;
        let mut why = Vec::new();
        let mut blank = 0;
        for slot in 0..2 {
            match store.read_slot(hv, slot) {
                Ok(Some((seq, payload))) => {
                    if best.as_ref().is_none_or(|(_, s, _)| seq > *s) {
                        best = Some((slot, seq, payload));
                    }
                }
                Ok(None) => blank += 1,
                Err(SlotError::Io(s)) => {
                    store.enabled = false;
                    return (store, Err(LoadError::ReadFailed(s)));
                }
                Err(SlotError::Invalid(reason)) => {
                    why.push(alloc::format!("slot {slot}: {reason}"))
                }
            }
        }
        let Some((slot, seq, payload)) = best else {
            let err = if blank == 2 {
                LoadError::Empty
            } else {
                LoadError::Corrupt(why.join("; "))
            };
            return (store, Err(err));
        };
        match decode(&payload) {
            Ok(saved) => {
                store.current = Some((slot, seq));
                store.last = payload;
                (store, Ok(saved))
            }
            Err(reason) => (
                store,
                Err(LoadError::Corrupt(alloc::format!("slot {slot}: {reason}"))),
            ),
        }
    }

    fn read_slot<H: Hypervisor>(
        &self,
        hv: &mut H,
        slot: usize,
    ) -> Result<Option<(u64, Vec<u8>)>, SlotError> {
        let base = slot as u64 * self.slot_size;
        let mut header = [0u8; HEADER_LEN];
        hv.store_read(base, &mut header).map_err(SlotError::Io)?;
        if header.iter().all(|&b| b == 0) || header.iter().all(|&b| b == 0xff) {
            return Ok(None);
        }
        if header[..4] != MAGIC {
            return Err(SlotError::Invalid("bad magic"));
        }
        let word = |at: usize| {
            u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
        };
        if word(4) != VERSION {
            return Err(SlotError::Invalid("unknown version"));
        }
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&header[8..16]);
        let seq = u64::from_le_bytes(seq);
        let len = word(16) as usize;
        if (HEADER_LEN + len) as u64 > self.slot_size {
            return Err(SlotError::Invalid("length past the slot"));
        }
        let mut payload = alloc::vec![0u8; len];
        hv.store_read(base + HEADER_LEN as u64, &mut payload)
            .map_err(SlotError::Io)?;
        if crc32(&[&header[..20], &payload]) != word(20) {
            return Err(SlotError::Invalid("checksum mismatch"));
        }
        Ok(Some((seq, payload)))
    }

    /// Whether saves happen at all.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Writes `payload` as the newest copy, unless it is the same as the newest copy. Ok(true)
    /// if something was written. On error the previous copy is still the newest valid one.
    pub fn save<H: Hypervisor>(&mut self, hv: &mut H, payload: Vec<u8>) -> Result<bool, SaveError> {
        if !self.enabled || (self.current.is_some() && payload == self.last) {
            return Ok(false);
        }
        let need = HEADER_LEN + payload.len();
        if need as u64 > self.slot_size {
            return Err(SaveError::TooLarge {
                need,
                slot: self.slot_size,
            });
        }
        let (slot, seq) = match self.current {
            Some((slot, seq)) => (1 - slot, seq + 1),
            None => (0, 1),
        };
        let mut buf = Vec::with_capacity(need);
        buf.extend_from_slice(&MAGIC);
        buf.extend_from_slice(&VERSION.to_le_bytes());
        buf.extend_from_slice(&seq.to_le_bytes());
        buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        let crc = crc32(&[&buf, &payload]);
        buf.extend_from_slice(&crc.to_le_bytes());
        buf.extend_from_slice(&payload);
        hv.store_write(slot as u64 * self.slot_size, &buf)
            .map_err(SaveError::Io)?;
        self.current = Some((slot, seq));
        self.last = payload;
        Ok(true)
    }
}

enum SlotError {
    Io(Status),
    Invalid(&'static str),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hv::mock::{MockHypervisor, Op};

    fn tree(value: &str) -> Tree {
        let mut t = Tree::new();
        t.insert("VirMO", Node::interior("urn:oma:mo:oma-virmo:1.0"));
        let mut n = Node::leaf(Format::Chr, "text/plain", value);
        n.acl = "Get=*".into();
        n.title = "t".into();
        t.insert("VirMO/x", n);
        t
    }

    fn load(hv: &mut MockHypervisor) -> Result<Saved, LoadError> {
        Store::open(hv).1
    }

    #[test]
    fn crc_matches_the_standard_check_value() {
        assert_eq!(crc32(&[b"123456789"]), 0xCBF4_3926);
        assert_eq!(crc32(&[b"1234", b"56789"]), 0xCBF4_3926);
    }

    #[test]
    fn round_trip_through_the_store() {
        let mut hv = MockHypervisor::new();
        let (mut store, loaded) = Store::open(&mut hv);
        assert_eq!(loaded, Err(LoadError::Empty));
        let counters = Counters {
            next_vmid: 7,
            next_img: 3,
        };
        assert_eq!(store.save(&mut hv, encode(&tree("a"), &counters)), Ok(true));
        // The same bytes again: nothing written.
        assert_eq!(
            store.save(&mut hv, encode(&tree("a"), &counters)),
            Ok(false)
        );
        let saved = load(&mut hv).unwrap();
        assert_eq!(saved.counters, counters);
        let t = tree("a");
        let expected: Vec<_> = t.iter().map(|(p, n)| (p.clone(), n.clone())).collect();
        assert_eq!(saved.nodes, expected);
    }

    #[test]
    fn a_torn_write_leaves_the_previous_copy() {
        let mut hv = MockHypervisor::new();
        let (mut store, _) = Store::open(&mut hv);
        let c = Counters::default();
        store.save(&mut hv, encode(&tree("one"), &c)).unwrap();
        store.save(&mut hv, encode(&tree("two"), &c)).unwrap();
        for keep in [0, 3, HEADER_LEN, HEADER_LEN + 10] {
            hv.tear_next_store_write(keep);
            let err = store.save(&mut hv, encode(&tree("three"), &c));
            assert_eq!(err, Err(SaveError::Io(Status::IoError)));
            let saved = load(&mut hv).unwrap();
            assert_eq!(saved.nodes[2].1.value, "two", "torn after {keep} bytes");
        }
        // The store object still knows "two" is newest: the next save goes to the torn slot.
        store.save(&mut hv, encode(&tree("four"), &c)).unwrap();
        assert_eq!(load(&mut hv).unwrap().nodes[2].1.value, "four");
        store.save(&mut hv, encode(&tree("five"), &c)).unwrap();
        assert_eq!(load(&mut hv).unwrap().nodes[2].1.value, "five");
    }

    #[test]
    fn a_corrupt_checksum_falls_back_then_reports_corruption() {
        let mut hv = MockHypervisor::new();
        let (mut store, _) = Store::open(&mut hv);
        let c = Counters::default();
        store.save(&mut hv, encode(&tree("one"), &c)).unwrap(); // slot 0
        store.save(&mut hv, encode(&tree("two"), &c)).unwrap(); // slot 1
        let slot = (hv.store_size() / 2) as usize;
        hv.store_mut()[slot + HEADER_LEN + 5] ^= 0x40;
        assert_eq!(load(&mut hv).unwrap().nodes[2].1.value, "one");
        hv.store_mut()[HEADER_LEN + 5] ^= 0x40;
        match load(&mut hv) {
            Err(LoadError::Corrupt(why)) => assert!(why.contains("checksum"), "{why}"),
            other => panic!("{other:?}"),
        }
        hv.store_mut()[0] = b'X';
        match load(&mut hv) {
            Err(LoadError::Corrupt(why)) => assert!(why.contains("bad magic"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn decoding_garbage_never_panics() {
        let good = encode(&tree("v"), &Counters::default());
        for cut in 0..good.len() {
            assert!(decode(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut extra = good.clone();
        extra.push(0);
        assert!(decode(&extra).is_err());
        let mut seed = 0x1234_5678u32;
        for _ in 0..200 {
            let mut b = good.clone();
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let at = seed as usize % b.len();
            b[at] = (seed >> 16) as u8;
            let _ = decode(&b);
        }
    }

    #[test]
    fn small_or_missing_areas_and_read_errors() {
        let mut hv = MockHypervisor::new().with_store_size(0);
        let (mut store, loaded) = Store::open(&mut hv);
        assert_eq!(loaded, Err(LoadError::NoArea));
        assert_eq!(store.save(&mut hv, alloc::vec![1, 2, 3]), Ok(false));

        let mut hv = MockHypervisor::new().with_store_size(128);
        let (mut store, _) = Store::open(&mut hv);
        let err = store.save(&mut hv, encode(&tree("x"), &Counters::default()));
        assert!(matches!(err, Err(SaveError::TooLarge { slot: 64, .. })));

        let mut hv = MockHypervisor::new();
        hv.fail_next(Op::StoreRead, Status::IoError);
        let (mut store, loaded) = Store::open(&mut hv);
        assert_eq!(loaded, Err(LoadError::ReadFailed(Status::IoError)));
        assert!(!store.enabled());
        assert_eq!(store.save(&mut hv, alloc::vec![1]), Ok(false));
    }
}
