//! The GIC virtual CPU interface of the loaded vCPU: list registers, the virtual machine
//! control register, active priorities and the hypervisor control register. GICv3 reaches
//! them as system registers (ICH_*_EL2, IHI 0069 §12.4); GICv2 through the memory-mapped
//! GICH frame (IHI 0048B §5.3).
//!
//! Owns: moving a vCPU's interface state between the hardware and memory on a vCPU switch,
//! and reading and writing list registers. The guest talks to its virtual CPU interface
//! directly (GICv3: ICC_* at EL1 reach ICV_* since HCR_EL2.IMO = 1; GICv2: the GICV frame is
//! mapped at its GICC address), so acknowledging and ending virtual interrupts costs no trap.
//!
//! Only list registers that hold something are moved: ICH_ELRSR_EL2 / GICH_ELRSR0 name the
//! empty ones. Between an unload and the next load every list register of the CPU is empty
//! (`save` empties those it saved, `init_cpu` empties all at boot), so `load` writes only
//! those the incoming vCPU had in use.

use crate::dt::hwinfo::{GicVersion, Region};
use crate::vgic::{lr_from_gich, lr_from_ich, lr_to_gich, lr_to_ich, LrEntry};
use aarch64_cpu::registers::*;
use core::arch::{asm, global_asm};
use core::ptr::{read_volatile, write_volatile};
use core::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};

/// The architecture allows up to 16 list registers (GICv2: 64, of which we use 16).
pub const MAX_LRS: usize = 16;

/// A vCPU's virtual CPU interface state while it is not loaded, in the hardware's encoding.
#[derive(Debug, Clone, Copy, Default)]
pub struct VcpuIfState {
    pub lrs: [u64; MAX_LRS],
    /// The list registers that held something (the others are empty, whatever `lrs` says).
    pub live: u16,
    pub vmcr: u64,
    pub ap1r0: u64,
    pub ap0r0: u64,
    pub hcr: u64,
}

/// ICH_HCR_EL2.En / GICH_HCR.En: the virtual CPU interface is enabled.
pub const HCR_EN: u64 = 1 << 0;
/// ICH_HCR_EL2.NPIE / GICH_HCR.NPIE: maintenance interrupt while no list register holds a
/// pending interrupt, so that interrupts waiting for a free list register get one.
pub const HCR_NPIE: u64 = 1 << 3;

// GICH registers (IHI 0048B §5.3.1).
const GICH_HCR: u64 = 0x0;
const GICH_VTR: u64 = 0x4;
const GICH_VMCR: u64 = 0x8;
const GICH_ELRSR0: u64 = 0x30;
const GICH_APR: u64 = 0xf0;
const GICH_LR0: u64 = 0x100;

/// The GICH frame's address on a GICv2 host; 0 on a GICv3 host (system registers). A plain
/// atomic rather than a `Once`: it is read on every list register access, on the hot paths
/// of docs/benchmarks.md, and written once at boot before any vCPU is loaded.
static GICH_BASE: AtomicU64 = AtomicU64::new(0);
/// ICH_VTR_EL2.ListRegs + 1 (GICH_VTR.ListRegs + 1), at most `MAX_LRS`; 0 until known.
static LR_COUNT: AtomicUsize = AtomicUsize::new(0);

/// Selects the interface from the host's GIC. Boot CPU, once, before any vCPU is loaded.
pub fn init(version: GicVersion, hyp_interface: Option<Region>) {
    if let (GicVersion::V2, Some(gich)) = (version, hyp_interface) {
        GICH_BASE.store(gich.base, Ordering::Relaxed);
    }
    let n = read_lr_count();
    LR_COUNT.store(n, Ordering::Relaxed);
    LR_MASK.store(((1u32 << n) - 1) as u16, Ordering::Relaxed);
}

#[inline(always)]
fn gich() -> Option<u64> {
    match GICH_BASE.load(Ordering::Relaxed) {
        0 => None,
        base => Some(base),
    }
}

fn mmio_read(addr: u64) -> u32 {
    // SAFETY: a GICH register of the host's GIC, mapped as device memory at EL2.
    unsafe { read_volatile(addr as *const u32) }
}

fn mmio_write(addr: u64, value: u32) {
    // SAFETY: as for `mmio_read`.
    unsafe { write_volatile(addr as *mut u32, value) }
}

fn read_lr_count() -> usize {
    let n = match gich() {
        Some(base) => (mmio_read(base + GICH_VTR) & 0x3f) as usize + 1,
        None => ICH_VTR_EL2.read(ICH_VTR_EL2::ListRegs) as usize + 1,
    };
    n.min(MAX_LRS)
}

/// How many list registers this CPU has (ICH_VTR_EL2.ListRegs + 1, GICH_VTR.ListRegs + 1).
#[inline]
pub fn lr_count() -> usize {
    match LR_COUNT.load(Ordering::Relaxed) {
        0 => {
            let n = read_lr_count();
            LR_COUNT.store(n, Ordering::Relaxed);
            n
        }
        n => n,
    }
}

/// The list registers this CPU has, as a mask.
#[inline]
fn all_lrs() -> u16 {
    match LR_MASK.load(Ordering::Relaxed) {
        0 => ((1u32 << lr_count()) - 1) as u16,
        mask => mask,
    }
}

/// `all_lrs` once known (0 before `init`): it is needed on every vCPU switch.
static LR_MASK: AtomicU16 = AtomicU16::new(0);

/// The list registers that hold no interrupt, as a mask (ICH_ELRSR_EL2, IHI 0069 §12.4.5;
/// GICH_ELRSR0, IHI 0048B §5.3.6). An Invalid entry that still asks for an EOI maintenance
/// interrupt does not count as empty. Bits of list registers the CPU does not have are 0
/// (RES0 in both).
#[inline]
pub fn empty_lrs() -> u16 {
    match gich() {
        Some(base) => mmio_read(base + GICH_ELRSR0) as u16,
        None => {
            let v: u64;
            // SAFETY: reading ICH_ELRSR_EL2 (S3_4_C12_C11_5) at EL2 has no side effect.
            unsafe { asm!("mrs {}, S3_4_C12_C11_5", out(reg) v, options(nomem, nostack)) };
            v as u16
        }
    }
}

/// Empties every list register and disables the virtual CPU interface: this CPU's state at
/// boot, which the architecture leaves UNKNOWN. Each CPU, before it loads a vCPU.
pub fn init_cpu() {
    for n in 0..lr_count() {
        write_lr_raw(n, 0);
    }
    set_hcr(0);
}

/// The set bits of `mask`, lowest first (in as many steps as there are).
fn lr_bits(mask: u16) -> impl Iterator<Item = usize> {
    let mut m = mask;
    core::iter::from_fn(move || {
        (m != 0).then(|| {
            let n = m.trailing_zeros() as usize;
            m &= m - 1;
            n
        })
    })
}

// ICH_LR<n>_EL2 is a different system register for each n: two tables of 16 two-instruction
// entries (the access, `ret`), entered at 8 × n. Cheaper than a `match` on n, which compiles
// to a bounds check and a jump table; the list register accesses are on the hot paths.
// ICH_LR<n>_EL2 is S3_4_C12_C12_<n> for n < 8 and S3_4_C12_C13_<n - 8> above.
global_asm!(
    r#"
    .section .text.ich_lr, "ax"
    .balign 8
hv_ich_lr_read_table:
    .irp crm, 12, 13
    .irp op2, 0, 1, 2, 3, 4, 5, 6, 7
    mrs     x0, S3_4_C12_C\crm\()_\op2
    ret
    .endr
    .endr
    .balign 8
hv_ich_lr_write_table:
    .irp crm, 12, 13
    .irp op2, 0, 1, 2, 3, 4, 5, 6, 7
    msr     S3_4_C12_C\crm\()_\op2, x1
    ret
    .endr
    .endr

    // x0 = n (0..15): x0 = ICH_LR<n>_EL2.
    .global hv_ich_lr_read
hv_ich_lr_read:
    adr     x9, hv_ich_lr_read_table
    add     x9, x9, x0, lsl #3
    br      x9

    // x0 = n (0..15), x1 = value: ICH_LR<n>_EL2 = x1.
    .global hv_ich_lr_write
hv_ich_lr_write:
    adr     x9, hv_ich_lr_write_table
    add     x9, x9, x0, lsl #3
    br      x9
"#
);

extern "C" {
    fn hv_ich_lr_read(n: usize) -> u64;
    fn hv_ich_lr_write(n: usize, value: u64);
}

fn read_ich_lr(n: usize) -> u64 {
    // SAFETY: `n` is cut to 0..15, an entry of the table; the entry only reads the register
    // (and clobbers x9, which the C ABI lets it).
    unsafe { hv_ich_lr_read(n % MAX_LRS) }
}

fn write_ich_lr(n: usize, value: u64) {
    // SAFETY: as for `read_ich_lr`; writing a list register only affects the virtual CPU
    // interface of the vCPU being entered.
    unsafe { hv_ich_lr_write(n % MAX_LRS, value) }
}

/// List register `n` in its hardware encoding.
#[inline]
fn read_lr_raw(n: usize) -> u64 {
    match gich() {
        Some(base) => mmio_read(base + GICH_LR0 + 4 * n as u64) as u64,
        None => read_ich_lr(n),
    }
}

#[inline]
fn write_lr_raw(n: usize, value: u64) {
    match gich() {
        Some(base) => mmio_write(base + GICH_LR0 + 4 * n as u64, value as u32),
        None => write_ich_lr(n, value),
    }
}

/// List register `n`, decoded.
pub fn read_lr(n: usize) -> LrEntry {
    match gich() {
        Some(_) => lr_from_gich(read_lr_raw(n) as u32),
        None => lr_from_ich(read_lr_raw(n)),
    }
}

/// Writes list register `n`; `None` empties it.
pub fn write_lr(n: usize, entry: Option<&LrEntry>) {
    let raw = match (entry, gich()) {
        (None, _) => 0,
        (Some(e), Some(_)) => lr_to_gich(e) as u64,
        (Some(e), None) => lr_to_ich(e),
    };
    write_lr_raw(n, raw);
}

/// Writes list register `n` with `raw` (already in the hardware's encoding, `lr_encode`) and
/// ICH_HCR_EL2 / GICH_HCR with `hcr`: the whole of the virtual timer's short path
/// (`platform::virtual_timer_fired`), choosing the interface once.
pub fn write_lr_raw_and_hcr(n: usize, raw: u64, hcr: u64) {
    match gich() {
        Some(base) => {
            mmio_write(base + GICH_LR0 + 4 * (n % MAX_LRS) as u64, raw as u32);
            mmio_write(base + GICH_HCR, hcr as u32);
        }
        None => {
            write_ich_lr(n, raw);
            ICH_HCR_EL2.set(hcr);
        }
    }
}

pub fn set_hcr(value: u64) {
    match gich() {
        Some(base) => mmio_write(base + GICH_HCR, value as u32),
        None => ICH_HCR_EL2.set(value),
    }
}

impl VcpuIfState {
    /// The state of a vCPU that has never run: nothing pending; the interface enabled if the
    /// VM has a vGIC (the guest enables its groups itself), disabled otherwise.
    pub fn reset(enabled: bool) -> Self {
        VcpuIfState {
            hcr: if enabled { HCR_EN } else { 0 },
            ..Default::default()
        }
    }

    /// Saves the loaded vCPU's interface and leaves it empty and disabled (nothing left
    /// behind for the next vCPU of this CPU). `filled`: the list registers the vGIC model
    /// wrote and has not yet seen empty (`Platform::lrs_in_use`); only the model writes list
    /// registers, so with none the hardware's are all empty and ICH_ELRSR_EL2 need not be read.
    #[inline]
    pub fn save(&mut self, filled: u16) {
        self.live = if filled == 0 {
            0
        } else {
            !empty_lrs() & all_lrs()
        };
        if self.live != 0 {
            self.save_lrs();
        }
        match gich() {
            Some(base) => {
                self.vmcr = mmio_read(base + GICH_VMCR) as u64;
                self.ap1r0 = mmio_read(base + GICH_APR) as u64;
                self.hcr = mmio_read(base + GICH_HCR) as u64;
                mmio_write(base + GICH_HCR, 0);
            }
            None => {
                self.vmcr = ICH_VMCR_EL2.get();
                self.ap1r0 = ICH_AP1R0_EL2.get();
                self.ap0r0 = ICH_AP0R0_EL2.get();
                self.hcr = ICH_HCR_EL2.get();
                ICH_HCR_EL2.set(0);
            }
        }
    }

    /// Saves and empties the `live` list registers.
    #[inline(never)]
    fn save_lrs(&mut self) {
        for n in lr_bits(self.live) {
            self.lrs[n] = read_lr_raw(n);
            write_lr_raw(n, 0);
        }
    }

    /// Loads a vCPU's interface into a CPU whose list registers are all empty. The caller
    /// synchronises the context before the guest runs (`load_vcpu`).
    #[inline]
    pub fn load(&self) {
        if self.live != 0 {
            self.load_lrs();
        }
        match gich() {
            Some(base) => {
                mmio_write(base + GICH_VMCR, self.vmcr as u32);
                mmio_write(base + GICH_APR, self.ap1r0 as u32);
                mmio_write(base + GICH_HCR, self.hcr as u32);
            }
            None => {
                ICH_VMCR_EL2.set(self.vmcr);
                ICH_AP1R0_EL2.set(self.ap1r0);
                ICH_AP0R0_EL2.set(self.ap0r0);
                ICH_HCR_EL2.set(self.hcr);
            }
        }
    }

    /// Writes the `live` list registers back.
    #[inline(never)]
    fn load_lrs(&self) {
        for n in lr_bits(self.live) {
            write_lr_raw(n, self.lrs[n]);
        }
    }
}
