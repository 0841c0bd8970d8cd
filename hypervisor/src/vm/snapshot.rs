//! A suspended VM's vCPU and device state as bytes: the header of its suspend area on disk
//! (`diskfmt::SUSPEND_HEADER_BYTES`, then its RAM), so that it stays suspended and resumable
//! across a restart of the device (docs/virmo.md, "Suspend").
//!
//! Owns: the encoding, explicit and little-endian: a magic, the layout version, the vCPU
//! count, the VM's virtual count at suspend; per vCPU its power state, general registers,
//! exception return state, EL1 system registers (pointer authentication keys included),
//! FP/SIMD registers, virtual CPU interface and virtual-timer activity; then the vGIC and the
//! PL011; a check word of all that at the end (FNV-1a over 64-bit words: it finds a torn or
//! corrupted header cheaply; the disk's records carry CRC-32s). Decoding checks everything before
//! it changes the VM.
//! The list registers are empty when saved (`lifecycle` gives their interrupts back to the
//! vGIC model first), so a snapshot never depends on which list register held what.

use super::machine::VcpuContext;
use super::{Power, Vm};
use crate::arch::context::{El1SysRegs, FpRegs};
use crate::devices::pl011::Pl011;
use crate::vgic::{check_word, Reader, SnapshotError, Vgic, Writer};
use alloc::vec::Vec;

const MAGIC: u32 = 0x5353_5648; // "HVSS"
/// Bumped whenever the encoding or a saved structure changes.
const LAYOUT: u32 = 3;

const EL1_WORDS: usize = core::mem::size_of::<El1SysRegs>() / 8;
const FP_WORDS: usize = core::mem::size_of::<FpRegs>() / 8;
// Both are `repr(C)` structures of u64 (and u128) fields only: their sizes are whole words and
// they have no padding (checked here), so their words are their contents.
const _: () = assert!(core::mem::size_of::<El1SysRegs>().is_multiple_of(8));
const _: () = assert!(core::mem::size_of::<FpRegs>() == 32 * 16 + 2 * 8);

fn el1_words(r: &El1SysRegs) -> &[u64] {
    // SAFETY: `El1SysRegs` is `repr(C)` with only u64 fields (the pointer authentication keys
    // are a `[u64; 10]`), so it is `EL1_WORDS` initialised u64s, 8-byte aligned.
    unsafe { core::slice::from_raw_parts(r as *const El1SysRegs as *const u64, EL1_WORDS) }
}

fn el1_words_mut(r: &mut El1SysRegs) -> &mut [u64] {
    // SAFETY: as in `el1_words`; every u64 pattern is a valid value of every field.
    unsafe { core::slice::from_raw_parts_mut(r as *mut El1SysRegs as *mut u64, EL1_WORDS) }
}

fn fp_words(r: &FpRegs) -> &[u64] {
    // SAFETY: `FpRegs` is `repr(C, align(16))` of 32 u128 then two u64: 528 bytes with no
    // padding (checked above), so it is `FP_WORDS` initialised u64s, aligned.
    unsafe { core::slice::from_raw_parts(r as *const FpRegs as *const u64, FP_WORDS) }
}

fn fp_words_mut(r: &mut FpRegs) -> &mut [u64] {
    // SAFETY: as in `fp_words`; every bit pattern is a valid u128 or u64.
    unsafe { core::slice::from_raw_parts_mut(r as *mut FpRegs as *mut u64, FP_WORDS) }
}

fn save_vcpu(w: &mut Writer, ctx: &VcpuContext, power: Power) {
    match power {
        Power::Off => {
            w.u8(0);
            w.u64(0);
            w.u64(0);
        }
        Power::On => {
            w.u8(1);
            w.u64(0);
            w.u64(0);
        }
        Power::Pending { entry, context } => {
            w.u8(2);
            w.u64(entry);
            w.u64(context);
        }
    }
    w.words(&ctx.regs.x);
    w.u64(ctx.elr);
    w.u64(ctx.spsr);
    w.words(el1_words(&ctx.sys));
    w.words(fp_words(&ctx.fp));
    debug_assert_eq!(ctx.vif.live, 0, "list registers unlisted before saving");
    w.u64(ctx.vif.vmcr);
    w.u64(ctx.vif.ap1r0);
    w.u64(ctx.vif.ap0r0);
    w.u64(ctx.vif.hcr);
    w.u8(ctx.vtimer_active as u8);
}

fn restore_vcpu(r: &mut Reader, ctx: &mut VcpuContext) -> Result<Power, SnapshotError> {
    let tag = r.u8()?;
    let (entry, context) = (r.u64()?, r.u64()?);
    let power = match tag {
        0 => Power::Off,
        1 => Power::On,
        2 => Power::Pending { entry, context },
        _ => return Err(SnapshotError::Mismatch),
    };
    r.words(&mut ctx.regs.x)?;
    ctx.elr = r.u64()?;
    ctx.spsr = r.u64()?;
    r.words(el1_words_mut(&mut ctx.sys))?;
    r.words(fp_words_mut(&mut ctx.fp))?;
    ctx.vif.lrs = [0; crate::arch::vcpu_if::MAX_LRS];
    ctx.vif.live = 0;
    ctx.vif.vmcr = r.u64()?;
    ctx.vif.ap1r0 = r.u64()?;
    ctx.vif.ap0r0 = r.u64()?;
    ctx.vif.hcr = r.u64()?;
    ctx.vtimer_active = match r.u8()? {
        0 => false,
        1 => true,
        _ => return Err(SnapshotError::Mismatch),
    };
    Ok(power)
}

impl Vm {
    /// The VM's state as the suspend header holds it. Its vCPUs must be unloaded, their lazy
    /// state reclaimed and their list registers unlisted (`lifecycle`).
    pub(super) fn snapshot(&self, vcount: u64, out: &mut Vec<u8>) {
        out.clear();
        let mut w = Writer(out);
        w.u32(MAGIC);
        w.u32(LAYOUT);
        w.u32(self.vcpus.len() as u32);
        w.u64(vcount);
        for v in &self.vcpus {
            // SAFETY: the vCPU is loaded nowhere and no CPU holds its state (the caller).
            let ctx = unsafe { v.ctx() };
            save_vcpu(&mut w, ctx, *v.power.lock());
        }
        match &self.platform {
            None => w.u8(0),
            Some(p) => {
                w.u8(1);
                p.vgic().save(w.0);
                let mut w = Writer(w.0);
                let (regs, rx) = p.uart.lock().model.save();
                for r in regs {
                    w.u32(r);
                }
                w.u8(rx.len() as u8);
                for b in rx {
                    w.u8(b);
                }
            }
        }
        let check = check_word(out);
        Writer(out).u64(check);
    }

    /// Puts the state `snapshot` wrote into this VM (created powered off, never run), and
    /// returns the virtual count it had. Nothing changes if `data` is not a valid snapshot of
    /// a VM of this shape.
    pub(super) fn restore_snapshot(&self, data: &[u8]) -> Result<u64, SnapshotError> {
        // Checked in full first, on copies.
        let mut r = Reader::new(data);
        if r.u32()? != MAGIC || r.u32()? != LAYOUT || r.u32()? as usize != self.vcpus.len() {
            return Err(SnapshotError::Mismatch);
        }
        let vcount = r.u64()?;
        let mut states = Vec::new();
        for v in &self.vcpus {
            // SAFETY: the VM is powered off and has never run: nothing else uses the context.
            let mut ctx = unsafe { core::ptr::read(v.ctx()) };
            let power = restore_vcpu(&mut r, &mut ctx)?;
            states.push((ctx, power));
        }
        let platform = match (r.u8()?, &self.platform) {
            (0, None) => None,
            (1, Some(p)) => {
                let cfg = p.vgic().config();
                let vgic = Vgic::restore(cfg, &mut r)?;
                let mut regs = [0u32; 11];
                for x in regs.iter_mut() {
                    *x = r.u32()?;
                }
                let n = r.u8()? as usize;
                let mut rx: heapless::Vec<u8, { crate::devices::pl011::FIFO_DEPTH }> =
                    heapless::Vec::new();
                for _ in 0..n {
                    rx.push(r.u8()?).map_err(|_| SnapshotError::Mismatch)?;
                }
                Some((vgic, Pl011::restore(regs, &rx)))
            }
            _ => return Err(SnapshotError::Mismatch),
        };
        let end = r.position();
        let mut check = Reader::new(data.get(end..).ok_or(SnapshotError::Short)?);
        if check.u64()? != check_word(&data[..end]) {
            return Err(SnapshotError::Mismatch);
        }
        // Valid: install it.
        for (v, (ctx, power)) in self.vcpus.iter().zip(states) {
            // SAFETY: as above.
            unsafe { core::ptr::write(v.ctx(), ctx) };
            *v.power.lock() = power;
        }
        if let (Some((vgic, uart)), Some(p)) = (platform, &self.platform) {
            p.restore(vgic, uart);
        }
        Ok(vcount)
    }
}
