//! Saving a vGIC's state to bytes and back, for a suspended VM that must survive a restart
//! of the device (docs/virmo.md, "Suspend").
//!
//! Owns: the architectural state only, in an explicit little-endian encoding: per interrupt
//! its enable, group, priority, trigger, pending latch, input line, active state and hardware
//! link; the routing (IROUTER / ITARGETSR); the group enables; each redistributor's sleep
//! state. Nothing may be in a list register when saving (`unlist_all` first): what the guest
//! had in flight is then pending or active in the model, and the first fill after the restore
//! gives it back to a list register. Candidate bitmaps are rebuilt, never stored.

use super::irq::{Irq, PRIVATE_COUNT, SGI_COUNT};
use super::lr::lr_decode;
use super::{Vgic, VgicConfig, VgicVersion};
use alloc::vec::Vec;

/// Why a snapshot was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotError {
    /// Shorter than its contents.
    Short,
    /// Another vGIC shape (version, vCPUs, SPIs) or a bad field.
    Mismatch,
}

const MAGIC: u32 = 0x4349_4756; // "VGIC"

/// Appends little-endian values.
pub struct Writer<'a>(pub &'a mut Vec<u8>);

impl Writer<'_> {
    pub fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    pub fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    /// Many words at once, 8-byte aligned in the output (zero padding first; `Reader::words`
    /// skips it): on a little-endian CPU their memory is their encoding, copied in one go,
    /// word by word since both sides are aligned.
    pub fn words(&mut self, words: &[u64]) {
        while !self.0.len().is_multiple_of(8) {
            self.0.push(0);
        }
        #[cfg(target_endian = "little")]
        {
            // SAFETY: any u64 is 8 initialised bytes; the slice covers exactly `words`.
            let bytes = unsafe {
                core::slice::from_raw_parts(words.as_ptr() as *const u8, words.len() * 8)
            };
            self.0.extend_from_slice(bytes);
        }
        #[cfg(not(target_endian = "little"))]
        for w in words {
            self.u64(*w);
        }
    }
}

/// Reads little-endian values, refusing to run past the end.
pub struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Reader { data, at: 0 }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], SnapshotError> {
        let end = self.at.checked_add(n).ok_or(SnapshotError::Short)?;
        let s = self.data.get(self.at..end).ok_or(SnapshotError::Short)?;
        self.at = end;
        Ok(s)
    }
    pub fn u8(&mut self) -> Result<u8, SnapshotError> {
        Ok(self.take(1)?[0])
    }
    pub fn u32(&mut self) -> Result<u32, SnapshotError> {
        let mut b = [0; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(b))
    }
    pub fn u64(&mut self) -> Result<u64, SnapshotError> {
        let mut b = [0; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }
    /// Fills `out` with the next `out.len()` words (after the padding `Writer::words` put).
    pub fn words(&mut self, out: &mut [u64]) -> Result<(), SnapshotError> {
        let pad = self.at.next_multiple_of(8) - self.at;
        self.take(pad)?;
        let bytes = self.take(out.len() * 8)?;
        for (w, b) in out.iter_mut().zip(bytes.chunks_exact(8)) {
            let mut a = [0; 8];
            a.copy_from_slice(b);
            *w = u64::from_le_bytes(a);
        }
        Ok(())
    }
    /// Bytes read so far.
    pub fn position(&self) -> usize {
        self.at
    }
}

/// FNV-1a over the little-endian 64-bit words of `data` (the last one zero padded), then its
/// length: a check of the header's integrity at a few instructions per word.
pub fn check_word(data: &[u8]) -> u64 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    // SAFETY: every bit pattern is a valid u64; `align_to` only hands out the aligned middle.
    let (head, words, rest) = unsafe { data.align_to::<u64>() };
    let tail = if head.is_empty() {
        // The buffer is 8-byte aligned (as the suspend buffer is): its words are loaded whole.
        // The target requires aligned accesses, so a byte slice's words would be assembled
        // byte by byte, some 20 instructions each (docs/benchmarks.md).
        for &w in words {
            h = (h ^ u64::from_le(w)).wrapping_mul(PRIME);
        }
        rest
    } else {
        let (chunks, tail) = data.as_chunks::<8>();
        for w in chunks {
            h = (h ^ u64::from_le_bytes(*w)).wrapping_mul(PRIME);
        }
        tail
    };
    let mut w = [0u8; 8];
    w[..tail.len()].copy_from_slice(tail);
    h = (h ^ u64::from_le_bytes(w)).wrapping_mul(PRIME);
    (h ^ data.len() as u64).wrapping_mul(PRIME)
}

const NO_HW: u32 = u32::MAX;
const NO_TARGET: u8 = u8::MAX;

fn save_irq(w: &mut Writer, irq: &Irq) {
    debug_assert!(irq.lr.is_none(), "save after unlist_all");
    let flags = irq.enabled as u8
        | (irq.group1 as u8) << 1
        | (irq.edge as u8) << 2
        | (irq.latch as u8) << 3
        | (irq.line as u8) << 4
        | (irq.active as u8) << 5;
    w.u8(flags);
    w.u8(irq.priority);
    w.u32(irq.hw.unwrap_or(NO_HW));
}

fn restore_irq(r: &mut Reader) -> Result<Irq, SnapshotError> {
    let flags = r.u8()?;
    if flags & !0x3f != 0 {
        return Err(SnapshotError::Mismatch);
    }
    let priority = r.u8()?;
    let hw = match r.u32()? {
        NO_HW => None,
        v => Some(v),
    };
    Ok(Irq {
        enabled: flags & 1 != 0,
        group1: flags & 2 != 0,
        edge: flags & 4 != 0,
        latch: flags & 8 != 0,
        line: flags & 16 != 0,
        active: flags & 32 != 0,
        priority,
        hw,
        lr: None,
    })
}

impl Vgic {
    /// Gives every interrupt `vcpu`'s list registers hold back to the model, in the state the
    /// saved list registers `lrs` (raw, `live` the ones that hold something) say. The vCPU must
    /// be unloaded; afterwards its list registers must be considered empty.
    pub fn unlist_all(&mut self, vcpu: usize, lrs: &[u64], live: u16) {
        let version = self.version;
        self.mark_all_stale();
        // `None`: the list register is empty.
        let _ = self.sync_list_registers(vcpu, |n| {
            (live & (1 << n) != 0)
                .then(|| lrs.get(n).map(|&raw| lr_decode(version, raw)))
                .flatten()
        });
    }

    /// Appends the state to `out`. Every vCPU's list registers must be empty (`unlist_all`).
    pub fn save(&self, out: &mut Vec<u8>) {
        let mut w = Writer(out);
        w.u32(MAGIC);
        w.u8(match self.version {
            VgicVersion::V2 => 2,
            VgicVersion::V3 => 3,
        });
        w.u32(self.vcpus as u32);
        w.u32(self.spis);
        w.u32(self.ctlr);
        for irq in &self.spi {
            save_irq(&mut w, irq);
        }
        for &r in &self.irouter {
            w.u64(r);
        }
        for &t in &self.itargets {
            w.u8(t);
        }
        for t in &self.target {
            w.u8(t.map_or(NO_TARGET, |v| v as u8));
        }
        for cpu in &self.cpus {
            w.u8(cpu.asleep as u8);
            for irq in &cpu.private {
                save_irq(&mut w, irq);
            }
            for irq in &cpu.sgi {
                save_irq(&mut w, irq);
            }
        }
    }

    /// A vGIC of shape `cfg` in the state `save` wrote; `r` is left after it.
    pub fn restore(cfg: VgicConfig, r: &mut Reader) -> Result<Vgic, SnapshotError> {
        let mut v = Vgic::new(cfg);
        if r.u32()? != MAGIC {
            return Err(SnapshotError::Mismatch);
        }
        let version = match r.u8()? {
            2 => VgicVersion::V2,
            3 => VgicVersion::V3,
            _ => return Err(SnapshotError::Mismatch),
        };
        if version != v.version || r.u32()? as usize != v.vcpus || r.u32()? != v.spis {
            return Err(SnapshotError::Mismatch);
        }
        v.ctlr = r.u32()?;
        for irq in v.spi.iter_mut() {
            *irq = restore_irq(r)?;
        }
        for x in v.irouter.iter_mut() {
            *x = r.u64()?;
        }
        for x in v.itargets.iter_mut() {
            *x = r.u8()?;
        }
        let vcpus = v.vcpus;
        for t in v.target.iter_mut() {
            *t = match r.u8()? {
                NO_TARGET => None,
                x if (x as usize) < vcpus => Some(x as usize),
                _ => return Err(SnapshotError::Mismatch),
            };
        }
        for cpu in v.cpus.iter_mut() {
            cpu.asleep = r.u8()? != 0;
            for irq in cpu.private.iter_mut() {
                *irq = restore_irq(r)?;
            }
            for irq in cpu.sgi.iter_mut() {
                *irq = restore_irq(r)?;
            }
        }
        debug_assert_eq!(v.cpus[0].private.len(), PRIVATE_COUNT as usize);
        let _ = SGI_COUNT;
        v.rebuild_candidates();
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(version: VgicVersion) -> VgicConfig {
        VgicConfig {
            vcpus: 2,
            spis: 64,
            version,
        }
    }

    #[test]
    fn words_are_written_little_endian_and_read_back() {
        let words = [0x0102_0304_0506_0708u64, u64::MAX, 0];
        let mut out = Vec::new();
        let mut w = Writer(&mut out);
        w.u8(9);
        w.words(&words);
        // Padded to a word boundary first.
        assert_eq!(out.len(), 8 + 24);
        assert_eq!(&out[1..8], &[0; 7]);
        assert_eq!(&out[8..16], &[8, 7, 6, 5, 4, 3, 2, 1]);
        let mut r = Reader::new(&out);
        assert_eq!(r.u8(), Ok(9));
        let mut back = [1u64; 3];
        r.words(&mut back).unwrap();
        assert_eq!(back, words);
        assert_eq!(r.words(&mut back), Err(SnapshotError::Short));
    }

    #[test]
    fn a_restored_vgic_delivers_what_the_saved_one_would() {
        for version in [VgicVersion::V3, VgicVersion::V2] {
            let mut v = Vgic::new(cfg(version));
            // Enable groups and an SPI, route it, make it pending; a PPI pending too.
            v.ctlr = 0b11;
            v.spi[3].enabled = true;
            v.spi[3].group1 = true;
            v.spi[3].priority = 0x40;
            v.spi[3].latch = true;
            v.target[3] = Some(1);
            v.cpus[0].private[27].enabled = true;
            v.cpus[0].private[27].group1 = true;
            v.cpus[0].private[27].hw = Some(27);
            v.cpus[0].private[27].active = true;
            v.rebuild_candidates();
            let mut bytes = Vec::new();
            v.save(&mut bytes);
            let mut r = Reader::new(&bytes);
            let back = Vgic::restore(cfg(version), &mut r).unwrap();
            assert_eq!(r.position(), bytes.len());
            assert_eq!(back.observable(), v.observable(), "{version:?}");
            assert_eq!(back.has_pending(1), v.has_pending(1));
            assert!(back.has_pending(1));
            // Another shape is refused; so is a truncated snapshot.
            let other = VgicConfig {
                vcpus: 1,
                ..cfg(version)
            };
            assert_eq!(
                Vgic::restore(other, &mut Reader::new(&bytes)).err(),
                Some(SnapshotError::Mismatch)
            );
            assert_eq!(
                Vgic::restore(cfg(version), &mut Reader::new(&bytes[..bytes.len() - 1])).err(),
                Some(SnapshotError::Short)
            );
        }
    }
}

#[cfg(test)]
mod check_word_tests {
    use super::check_word;

    /// The word-at-a-time path (an aligned buffer) and the byte path (unaligned) agree, for
    /// every length and a tail of any size.
    #[test]
    fn check_word_is_the_same_aligned_or_not() {
        let words: alloc::vec::Vec<u64> = (0..40u64)
            .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .collect();
        // SAFETY: u64s are initialised bytes; the slice covers exactly `words`.
        let aligned =
            unsafe { core::slice::from_raw_parts(words.as_ptr() as *const u8, words.len() * 8) };
        let mut shifted = alloc::vec![0u8; aligned.len() + 1];
        shifted[1..].copy_from_slice(aligned);
        for len in 0..aligned.len() {
            assert_eq!(
                check_word(&aligned[..len]),
                check_word(&shifted[1..1 + len]),
                "{len}"
            );
        }
    }
}
