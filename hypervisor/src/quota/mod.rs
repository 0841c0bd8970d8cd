//! CPU-percentage quotas (issue 4): the pure heart of the time-sharing scheduler, with
//! reservations and caps. `sched.rs` drives it; this module decides, it does not switch.
//!
//! Owns: per-VM quotas (validated, applied atomically from the next period), per-period budgets,
//! the per-physical-CPU run queues of vCPU ids, vCPU run states (runnable, blocked with an
//! optional wake-up deadline, off), placement of vCPUs on physical CPUs, and per-VM accounting.
//! Never: reads a clock (every time is a `u64` in counter ticks passed in by the caller),
//! touches registers, takes locks (the owner wraps the `Scheduler` in one), or logs.
//! Allocates only for configuration changes: when they are made, and (in `pick`/`charge`,
//! rarely) when a pending one is put in force at a period boundary.
//!
//! # Protocol with the caller (per physical CPU)
//!
//! ```text
//! let d = sched.pick(cpu, now);       // d.run: the vCPU to run (None: wfi); d.kick: other
//!                                     // physical CPUs to send a kick SGI to
//! program CNTHP to fire at d.until;   // exact instant, not a fixed tick
//! ... guest runs, then exits at t (CNTHP, WFI trap, hypercall, interrupt) ...
//! sched.charge(vcpu, now, t);         // the time it ran
//! if the exit was a trapped WFI: sched.block(vcpu, t, next virtual-timer expiry);
//! sched.pick(cpu, t) ...              // and so on
//! ```
//! `wake(vcpu, now)` (a virtual interrupt became pending for a blocked vCPU) returns the
//! physical CPU to kick; `power_on`/`power_off` follow PSCI and VM stop/reset. A blocked vCPU
//! is woken at its deadline by the scheduler itself (the deadline is part of `until`).
//!
//! # Shares: the management VM and the VirMO percentages
//!
//! The board gives the management VM `m` % of the device (`Config::management`). The
//! percentages managed through VirMO, `p_i` (each 0..=100, `Σ p_i ≤ 100`), are percentages of
//! what remains, so VM `i` gets
//!
//! ```text
//! s_i = (100 − m) × p_i / 100  % of the device  =  (100 − m) × p_i  in 1/10 000 of the device
//! ```
//!
//! and `m + Σ s_i ≤ m + (100 − m) = 100`. Example: `m = 10`, VirMO 50/30/20 gives 45 %, 27 %,
//! 18 % and the management VM 10 % (`device_share_bp`). Shares are kept exactly, in 1/10 000 of
//! the device, so no rounding happens here.
//!
//! # Budgets
//!
//! A VM's percentage is of the whole device: with `N` physical CPUs and period `P` ticks its
//! budget per period is `s/100 × N × P`, shared among its vCPUs. It is split into
//! reservations, one per physical CPU its vCPUs are on (`placement`); the reservations of one
//! physical CPU never add up to more than `P` (a set that cannot be placed so is refused), so
//! every reservation can be consumed inside every period. Reservation `w` (in 1/10 000 of a
//! CPU) yields per period the integer ticks `G(k+1) − G(k)`, where `G(k)` is the cumulative
//! ideal `X(k) = w·P·k/10 000` rounded down, plus one for the VMs with the largest fractional
//! parts, chosen so that the allotments of one physical CPU add up to `⌊Σ X(k)⌋` (≤ `P` per
//! period). So `|G(k) − X(k)| < 1` tick at every period boundary, forever: no drift, and never
//! more than a physical CPU can give.
//!
//! Unused budget is lost at the end of the period (cap). Time run past the budget (the preemption
//! interrupt is served late) is a debt taken from the next period; budget a VM that wanted to run
//! all period could not get (another VM's late preemption ate into its time) is carried to the next
//! period, up to `P/64`. Both keep long-run shares exact despite preemption latency (the carry on a
//! physical CPU is settled at its first `pick` of the new period, once it has been charged for the
//! old one). A VM at 0 % gets no budget: it never runs but keeps its state. A VM with `k` vCPUs
//! cannot use more than `k` physical CPUs; the excess of its share is unusable.
//!
//! # Choosing what runs
//!
//! Among the runnable vCPUs of a physical CPU whose VM has budget left there: first a vCPU
//! woken since it last ran (earliest wake first: a timer interrupt is served at its deadline),
//! then the VMs in queue order (vCPU id order), and within a VM the vCPU that ran least this
//! period (it gets an equal slice, at least `min_slice`). It runs until the earliest of: its
//! VM's budget on this physical CPU runs out, the period ends (refill), the next wake-up
//! deadline of a blocked vCPU of this physical CPU that has budget. With nothing to run the
//! physical CPU waits until the next deadline, or the next refill if a throttled vCPU waits.
//!
//! A vCPU whose VM has no budget left on its physical CPU first borrows its VM's unused
//! budget from physical CPUs where no vCPU of that VM is runnable or running, as far as this
//! physical CPU has time that no reservation needs (its slack): so budget follows the VM's
//! runnable vCPUs, never beyond the VM's share and never at another VM's expense. (Without
//! migration a single busy vCPU cannot use more than its own physical CPU's slack, though.)
//!
//! # Accuracy guarantee and worst-case error bound
//!
//! Let a VM be CPU-bound (always runnable) in a window of `n` whole periods (`W = n·P`,
//! any start), on a feasible placement. On one physical CPU where it is the `i`-th VM in queue
//! order, and the VMs before it are CPU-bound too, it runs in each period exactly from
//! `o(k) = Σ_{j<i} ℓ_j(k)` to `o(k) + ℓ_i(k)` after the period's start, where
//! `ℓ_j(k) = G_j(k+1) − G_j(k)`. Its consumption up to a time `T` in period `k` is
//! `U(T) = G(k) + clamp(T − start_k − o(k), 0, ℓ(k))`; the ideal, with real-valued
//! `ō, ℓ̄`, differs from it by less than `|G − X| + |o − ō| + |ℓ − ℓ̄| < 1 + 2(i−1) + 2`
//! ticks, and the ideal consumption of any window of `n` whole periods is exactly `n·ℓ̄`.
//! Hence, per physical CPU the VM is on:
//!
//! ```text
//! |consumed(window) − share × window|  <  4·i + 2  ticks            (exact preemption)
//!                                      ≤  4·i + 2 + (4·i + 2)·L       (preemption up to L late)
//! ```
//!
//! (the second line is a sketch, not a proof: each of the at most `i` preemptions before or
//! at the VM's slot, and the refill, shifts it by up to `L` at both ends of the window, and
//! debts and carries settle them within one period; the tests check it by simulation for `L`
//! from 1 tick to 50 µs and up to five VMs). A VM spread over several physical CPUs sums the
//! terms. For the issue's 50/30/20 case on one physical CPU with a 62.5 MHz counter,
//! `P` = 10 ms, `W` = 100 ms = 6.25 M ticks: under 14 ticks, i.e. 0.0002 percentage points;
//! with `L` = 2 µs (125 ticks): at most 1764 ticks, 0.028 pp.
//!
//! When VMs that block and wake share the physical CPU, a woken vCPU runs before the others,
//! so the position of a CPU-bound VM's slot varies between periods; it still gets exactly its
//! budget in every period, and the window error is bounded by `min(ℓ, P − ℓ)/(N·W)` of the
//! device (the slot can move by at most that much between the two ends of the window): for
//! shares that must hold to ±0.5 pp in 100 ms windows whatever the neighbours do, use a period
//! of at most 1 ms (`Config::period`).
//!
//! # Placement limits
//!
//! vCPUs do not migrate inside a period, so a set whose reservations cannot be packed onto
//! the physical CPUs is refused (`QuotaError::Unplaceable`). Example: three 1-vCPU VMs at
//! 34/33/33 % on two physical CPUs need 0.68 + 0.66 + 0.66 physical CPUs, and any two of them
//! exceed one physical CPU. Giving those VMs two vCPUs each makes the set placeable.

mod placement;
#[cfg(test)]
mod tests;

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

/// A VM id (as in the boot bundle: from 1, in bundle order).
pub type VmId = u16;

/// A vCPU: its VM and its index in the VM (0-based). Aligned as one 32-bit word, so that it
/// is copied with one load and one store (the scheduler copies it on every decision).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(C, align(4))]
pub struct VcpuId {
    pub vm: VmId,
    pub index: u16,
}

impl VcpuId {
    pub const fn new(vm: VmId, index: u16) -> Self {
        VcpuId { vm, index }
    }
}

/// Unit of shares: 1/10 000 of the device (a basis point).
pub const DEVICE: u32 = 10_000;
/// Unit of reservations: 1/10 000 of one physical CPU; this is a whole one.
pub const CPU: u32 = 10_000;
/// The most physical CPUs (`Decision::kick` is a bit mask).
pub const MAX_PCPUS: usize = 64;
/// The shortest period, in ticks: every non-zero reservation then gets at least one tick per
/// period.
pub const MIN_PERIOD: u64 = 10_000;
/// `Decision::until` when nothing will happen on this physical CPU until a kick.
pub const NEVER: u64 = u64::MAX;

/// A VirMO percentage `pct` as a share of the device, in 1/10 000 (see the module doc):
/// `(100 − mgmt_pct) × pct`.
pub const fn device_share_bp(mgmt_pct: u8, pct: u8) -> u32 {
    (100 - if mgmt_pct > 100 { 100 } else { mgmt_pct } as u32) * pct as u32
}

/// The management VM and its share of the device, from the board configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Management {
    pub vm: VmId,
    /// Percent of the whole device, 0..=100.
    pub pct: u8,
}

/// What the scheduler is built with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Number of physical CPUs, 1..=`MAX_PCPUS`.
    pub pcpus: usize,
    /// The period, in counter ticks (the board's `sched_period_us` converted), ≥ `MIN_PERIOD`.
    pub period: u64,
    /// The shortest slice when vCPUs of one VM take turns on a physical CPU, and the least
    /// budget worth borrowing. Default: `period / 20`.
    pub min_slice: u64,
    /// The management VM, if the board has one.
    pub management: Option<Management>,
}

impl Config {
    pub const fn new(pcpus: usize, period: u64) -> Self {
        Config {
            pcpus,
            period,
            min_slice: period / 20,
            management: None,
        }
    }

    pub const fn with_management(mut self, vm: VmId, pct: u8) -> Self {
        self.management = Some(Management { vm, pct });
        self
    }

    fn mgmt_pct(&self) -> u8 {
        self.management.map_or(0, |m| m.pct)
    }

    fn is_mgmt(&self, vm: VmId) -> bool {
        self.management.is_some_and(|m| m.vm == vm)
    }
}

/// A `Config` that cannot work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    NoPcpus,
    TooManyPcpus(usize),
    PeriodTooShort(u64),
    ManagementOverHundred(u8),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ConfigError::NoPcpus => write!(f, "no physical CPUs"),
            ConfigError::TooManyPcpus(n) => {
                write!(f, "{n} physical CPUs, at most {MAX_PCPUS} supported")
            }
            ConfigError::PeriodTooShort(p) => {
                write!(f, "period of {p} ticks, at least {MIN_PERIOD} needed")
            }
            ConfigError::ManagementOverHundred(p) => {
                write!(f, "management VM share {p}% is over 100%")
            }
        }
    }
}

/// A set of new VirMO percentages for several VMs, applied atomically by
/// `Scheduler::apply_at_next_period`. VMs not named keep theirs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QuotaSet {
    entries: Vec<(VmId, u32)>,
}

impl QuotaSet {
    pub const fn new() -> Self {
        QuotaSet {
            entries: Vec::new(),
        }
    }

    /// Adds `vm` at `pct` percent (validated when applied, so raw hypercall values fit).
    pub fn set(&mut self, vm: VmId, pct: u32) -> &mut Self {
        self.entries.push((vm, pct));
        self
    }

    pub fn with(mut self, vm: VmId, pct: u32) -> Self {
        self.set(vm, pct);
        self
    }

    pub fn entries(&self) -> &[(VmId, u32)] {
        &self.entries
    }
}

/// Why a quota change (or a new VM) was refused. Nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuotaError {
    /// A single percentage over 100.
    OverHundred { vm: VmId, pct: u32 },
    /// The VirMO percentages would add up to `sum` > 100.
    SumOverHundred { sum: u32 },
    /// No such VM.
    UnknownVm(VmId),
    /// The VM is named twice in the set.
    DuplicateVm(VmId),
    /// The VM already exists.
    VmExists(VmId),
    /// The management VM's share is the board's, not VirMO's (or it was added as a VirMO VM).
    ManagementVm(VmId),
    /// `add_management_vm` without a management VM in the configuration.
    NoManagementVm,
    /// A VM needs at least one vCPU.
    NoVcpus(VmId),
    /// The reservations cannot be packed onto the physical CPUs without migrating vCPUs
    /// within a period: VM `vm` would miss `missing` (1/10 000 of a physical CPU) per period.
    Unplaceable { vm: VmId, missing: u32 },
}

impl fmt::Display for QuotaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            QuotaError::OverHundred { vm, pct } => {
                write!(f, "VM {vm}: CPU={pct}% is over 100%")
            }
            QuotaError::SumOverHundred { sum } => {
                write!(f, "the CPU percentages would add up to {sum}%, over 100%")
            }
            QuotaError::UnknownVm(vm) => write!(f, "no VM {vm}"),
            QuotaError::DuplicateVm(vm) => write!(f, "VM {vm} is named twice"),
            QuotaError::VmExists(vm) => write!(f, "VM {vm} already exists"),
            QuotaError::ManagementVm(vm) => write!(
                f,
                "VM {vm} is the management VM: its share is set by the board configuration"
            ),
            QuotaError::NoManagementVm => write!(f, "the board configures no management VM"),
            QuotaError::NoVcpus(vm) => write!(f, "VM {vm} has no vCPUs"),
            QuotaError::Unplaceable { vm, missing } => write!(
                f,
                "the shares cannot be placed on the physical CPUs: VM {vm} would miss \
                 {}.{:02}% of a CPU (give such VMs more vCPUs or change the shares)",
                missing / 100,
                missing % 100
            ),
        }
    }
}

/// A vCPU's run state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VcpuState {
    /// Powered off (or its VM stopped): never runs.
    Off,
    /// Wants to run.
    Runnable,
    /// Waiting for an interrupt (trapped WFI); woken by `wake`, or at `wake_at` (the expiry of
    /// its virtual timer) by the scheduler.
    Blocked { wake_at: Option<u64> },
}

/// What a physical CPU does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The vCPU to run, or `None`: wait in `wfi` at EL2.
    pub run: Option<VcpuId>,
    /// When to ask again (program CNTHP for exactly this count); `NEVER`: only on a kick.
    pub until: u64,
    /// Other physical CPUs (bit per CPU) that must pick again now (send them a kick SGI): a
    /// vCPU moved to them, or the configuration changed.
    pub kick: u64,
    /// The `run` vCPU's tag (`Scheduler::set_tag`); 0 without one.
    pub tag: usize,
}

/// One VM's accounting, as the management VM and the console see it. Times in ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmStats {
    pub vm: VmId,
    /// The VirMO percentage in force (the management VM: its board share).
    pub pct: u8,
    /// The share of the device in force, in 1/10 000.
    pub share_bp: u32,
    /// CPU time consumed (sum over its vCPUs).
    pub consumed: u64,
    /// Time its vCPUs spent runnable but without budget (sum over its vCPUs).
    pub throttled: u64,
    /// Periods in which it was throttled at all.
    pub throttled_periods: u64,
    /// Periods begun since the VM was added.
    pub periods: u64,
}

#[derive(Clone, Copy, Debug, Default)]
struct Lease {
    /// Reservation in force, 1/10 000 of a CPU.
    w: u32,
    /// Budget left in this period (negative: a debt).
    rem: i64,
    /// This period's allotment.
    allot: i64,
    /// What was left of the last period's budget at its end (for late charges).
    prev_rem: u64,
    /// Apportionment state: `10 000 × (X − ⌊X⌋)` and whether `G = ⌊X⌋ + 1`.
    frac: u32,
    bonus: bool,
    /// A vCPU of the VM was runnable here since the period began.
    wanted: bool,
    /// It was still wanted when the last period ended: what is left of `prev_rem` once this
    /// physical CPU has been charged for the last period is owed to it (`settle`).
    owed: bool,
    // Scratch for `rollover` and `allot`.
    debt: i64,
    fl: i64,
    frac_new: u32,
    bonus_new: bool,
}

struct Vm {
    id: VmId,
    pct: u8,
    share_bp: u32,
    lease: Vec<Lease>,
    consumed: u64,
    throttled: u64,
    throttled_periods: u64,
    throttled_now: bool,
    first_period: u64,
}

/// The most vCPUs a fast lane holds; a physical CPU with more eligible vCPUs has none.
const LANE_MAX: usize = 8;

/// A vCPU of a lane.
#[derive(Clone, Copy, Debug)]
struct LaneMember {
    /// Index into `Scheduler::vcpus`.
    vcpu: usize,
    /// Its VM's slot in the lane.
    slot: usize,
    id: VcpuId,
    /// Its tag (`Scheduler::set_tag`).
    tag: usize,
}

impl Default for LaneMember {
    fn default() -> Self {
        LaneMember {
            vcpu: 0,
            slot: 0,
            id: VcpuId::new(0, 0),
            tag: 0,
        }
    }
}

/// A physical CPU's fast lane: the vCPUs a yield may switch between without a full decision,
/// valid while nothing but time passes (see `yield_fast`). While it is valid, the budgets of
/// its VMs on this CPU, their consumption and the vCPUs' run times are checked out into it:
/// `fold_lanes` puts them back before anything else reads or changes them.
#[derive(Clone, Copy, Debug, Default)]
struct Lane {
    /// Runnable here, with budget here, in queue order.
    members: [LaneMember; LANE_MAX],
    len: usize,
    /// Where the running vCPU is in `members`.
    pos: usize,
    /// Per VM slot: its index in `vms`, its budget left here, the time it ran since the lane
    /// was built.
    vm: [usize; LANE_MAX],
    rem: [i64; LANE_MAX],
    consumed: [u64; LANE_MAX],
    slots: usize,
    /// Per member: the time it ran since the lane was built.
    ran: [u64; LANE_MAX],
    /// The member that was running when the lane was built.
    first: usize,
    /// Nothing is due on this CPU before this instant (period end, a wake-up deadline).
    horizon: u64,
}

struct Vcpu {
    id: VcpuId,
    /// Index of its VM in `Scheduler::vms`.
    vm: usize,
    /// The physical CPU whose queue it is in.
    pcpu: usize,
    state: VcpuState,
    /// The physical CPU it was last handed to by `pick`, until that CPU picks again.
    on_cpu: Option<usize>,
    /// Woken at this time and not run since.
    boosted_at: Option<u64>,
    /// Run time this period.
    ran: u64,
    throttled_since: Option<u64>,
    /// An opaque word of the embedder's (`set_tag`), returned with decisions that run it.
    tag: usize,
}

/// A configuration to put in force at the next period: per VM (index in `vms`) its
/// percentage, per vCPU (index in `vcpus`) its physical CPU, per VM × physical CPU its
/// reservation.
#[derive(Clone)]
struct Plan {
    pct: Vec<u8>,
    place: Vec<usize>,
    split: Vec<u32>,
}

/// The quota scheduler of the whole device (all physical CPUs).
pub struct Scheduler {
    cfg: Config,
    started: bool,
    period_start: u64,
    period_end: u64,
    period_index: u64,
    /// Sorted by id.
    vms: Vec<Vm>,
    /// Sorted by id.
    vcpus: Vec<Vcpu>,
    /// Per physical CPU: indices into `vcpus`, in id order.
    queues: Vec<Vec<usize>>,
    /// Per physical CPU: what `pick` last handed it.
    cur: Vec<Option<VcpuId>>,
    pending: Option<Plan>,
    kicks: u64,
    /// Per physical CPU: its fast lane (see `yield_fast`), valid while its bit is set here.
    /// Per physical CPU; a fixed array, so that the fast path indexes it without a bound
    /// check.
    lanes: alloc::boxed::Box<[Lane; MAX_PCPUS]>,
    lanes_valid: u64,
    /// Physical CPUs that have not picked since the last period ended (their last charge for
    /// it may be outstanding, so owed budget is not settled yet).
    unsettled: u64,
}

impl Scheduler {
    /// A scheduler with no VMs. Configuration changes take effect at once until `start`.
    pub fn new(cfg: Config) -> Result<Self, ConfigError> {
        if cfg.pcpus == 0 {
            return Err(ConfigError::NoPcpus);
        }
        if cfg.pcpus > MAX_PCPUS {
            return Err(ConfigError::TooManyPcpus(cfg.pcpus));
        }
        if cfg.period < MIN_PERIOD {
            return Err(ConfigError::PeriodTooShort(cfg.period));
        }
        if let Some(m) = cfg.management {
            if m.pct > 100 {
                return Err(ConfigError::ManagementOverHundred(m.pct));
            }
        }
        Ok(Scheduler {
            cfg,
            started: false,
            period_start: 0,
            period_end: 0,
            period_index: 0,
            vms: Vec::new(),
            vcpus: Vec::new(),
            queues: vec![Vec::new(); cfg.pcpus],
            cur: vec![None; cfg.pcpus],
            pending: None,
            kicks: 0,
            unsettled: 0,
            lanes: vec![Lane::default(); MAX_PCPUS]
                .into_boxed_slice()
                .try_into()
                .unwrap_or_else(|_| unreachable!("MAX_PCPUS lanes")),
            lanes_valid: 0,
        })
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Begins the first period at `now`.
    pub fn start(&mut self, now: u64) {
        self.fold_lanes();
        if self.started {
            return;
        }
        self.started = true;
        self.period_start = now;
        self.period_end = now + self.cfg.period;
        self.allot();
        for vm in &mut self.vms {
            for l in &mut vm.lease {
                l.rem = l.allot;
                l.prev_rem = 0;
            }
        }
        self.mark_wanted();
        for j in 0..self.vcpus.len() {
            self.retally(j, now);
        }
    }

    /// The current period, `[start, end)`.
    pub fn period(&self) -> (u64, u64) {
        (self.period_start, self.period_end)
    }

    /// Adds a VirMO VM with `vcpus` vCPUs (all off) at `pct` percent, in force from the next
    /// period.
    pub fn add_vm(&mut self, vm: VmId, vcpus: u16, pct: u32) -> Result<(), QuotaError> {
        if self.cfg.is_mgmt(vm) {
            return Err(QuotaError::ManagementVm(vm));
        }
        if pct > 100 {
            return Err(QuotaError::OverHundred { vm, pct });
        }
        self.insert_vm(vm, vcpus, pct as u8)
    }

    /// Adds a VM whose percentage nobody chose (a boot VM given an equal part of the CPU):
    /// `pct`, or, if that share cannot be placed beside the others (a 1-vCPU VM cannot use
    /// more than one physical CPU), the largest lower percentage that can. Returns the
    /// percentage in force. Every other refusal is returned as it is.
    pub fn add_vm_fitting(&mut self, vm: VmId, vcpus: u16, pct: u32) -> Result<u8, QuotaError> {
        let mut pct = pct;
        loop {
            match self.add_vm(vm, vcpus, pct) {
                Ok(()) => return Ok(pct as u8),
                // A refused add leaves the scheduler as it was: try a smaller share.
                Err(QuotaError::Unplaceable { .. }) if pct > 1 => pct -= 1,
                Err(e) => return Err(e),
            }
        }
    }

    /// Adds the management VM, at the board's share, in force from the next period.
    pub fn add_management_vm(&mut self, vcpus: u16) -> Result<(), QuotaError> {
        let m = self.cfg.management.ok_or(QuotaError::NoManagementVm)?;
        self.insert_vm(m.vm, vcpus, m.pct)
    }

    fn insert_vm(&mut self, vm: VmId, vcpus: u16, pct: u8) -> Result<(), QuotaError> {
        self.fold_lanes();
        if vcpus == 0 {
            return Err(QuotaError::NoVcpus(vm));
        }
        let pos = match self.vms.binary_search_by_key(&vm, |v| v.id) {
            Ok(_) => return Err(QuotaError::VmExists(vm)),
            Err(pos) => pos,
        };
        let mut pct_all = self.latest_pct();
        pct_all.insert(pos, pct);
        let at = self.vcpus.partition_point(|x| x.id.vm < vm);
        let (place, split) = match self.layout_beside(pos, vm, vcpus, &pct_all, at)? {
            Some(fast) => fast,
            None => {
                let mut ids: Vec<VmId> = self.vms.iter().map(|v| v.id).collect();
                ids.insert(pos, vm);
                let mut current = self.latest_place_per_vm();
                current.insert(pos, vec![None; vcpus as usize]);
                let layout = self.layout(&ids, &pct_all, &current)?;
                (layout.place.concat(), layout.split.concat())
            }
        };

        let n = self.cfg.pcpus;
        self.vms.insert(
            pos,
            Vm {
                id: vm,
                pct: 0,
                share_bp: 0,
                lease: vec![Lease::default(); n],
                consumed: 0,
                throttled: 0,
                throttled_periods: 0,
                throttled_now: false,
                first_period: self.period_index,
            },
        );
        for i in 0..vcpus {
            self.vcpus.insert(
                at + i as usize,
                Vcpu {
                    id: VcpuId::new(vm, i),
                    vm: pos,
                    pcpu: place[at + i as usize],
                    state: VcpuState::Off,
                    on_cpu: None,
                    boosted_at: None,
                    ran: 0,
                    throttled_since: None,
                    tag: 0,
                },
            );
        }
        self.rebuild();
        self.commit(Plan {
            pct: pct_all,
            place,
            split,
        });
        Ok(())
    }

    /// Attaches `tag` to `vcpu`: decisions that run it carry it (`Decision::tag`), so that the
    /// embedder finds its own vCPU without a lookup (the hypervisor's: the vCPU's address).
    pub fn set_tag(&mut self, vcpu: VcpuId, tag: usize) -> Result<(), QuotaError> {
        self.fold_lanes();
        let j = self.find_vcpu(vcpu).ok_or(QuotaError::UnknownVm(vcpu.vm))?;
        self.vcpus[j].tag = tag;
        Ok(())
    }

    /// Adding VM `vm` (`vcpus` vCPUs, at index `pos` of `vms` and `at` of `vcpus`) with the
    /// percentages `pct` (the new one included): checks their sum, then the layout
    /// (`place` per vCPU, `split` per VM × physical CPU) from `placement::plan_beside` when the
    /// new VM fits beside the others where they are, the common case, found without `plan`'s
    /// many allocations (a VM's creation is timed: docs/benchmarks.md); `None`: `plan` decides.
    #[allow(clippy::type_complexity)]
    fn layout_beside(
        &self,
        pos: usize,
        vm: VmId,
        vcpus: u16,
        pct: &[u8],
        at: usize,
    ) -> Result<Option<(Vec<usize>, Vec<u32>)>, QuotaError> {
        let id_of = |i: usize| match i.cmp(&pos) {
            core::cmp::Ordering::Less => self.vms[i].id,
            core::cmp::Ordering::Equal => vm,
            core::cmp::Ordering::Greater => self.vms[i - 1].id,
        };
        let sum: u32 = (0..pct.len())
            .filter(|&i| !self.cfg.is_mgmt(id_of(i)))
            .map(|i| pct[i] as u32)
            .sum();
        if sum > 100 {
            return Err(QuotaError::SumOverHundred { sum });
        }
        let mut counts = vec![0usize; pct.len()];
        for x in &self.vcpus {
            counts[x.vm + usize::from(x.vm >= pos)] += 1;
        }
        counts[pos] = vcpus as usize;
        let n = self.cfg.pcpus;
        let demand: Vec<u32> = (0..pct.len())
            .map(|i| {
                let d = self.share_bp(id_of(i), pct[i]) as u64 * n as u64;
                d.min(CPU as u64 * counts[i] as u64) as u32
            })
            .collect();
        let mut place = Vec::with_capacity(self.vcpus.len() + vcpus as usize);
        for (j, x) in self.vcpus.iter().enumerate() {
            if j == at {
                place.extend(core::iter::repeat_n(0, vcpus as usize));
            }
            place.push(self.pending.as_ref().map_or(x.pcpu, |p| p.place[j]));
        }
        if at == self.vcpus.len() {
            place.extend(core::iter::repeat_n(0, vcpus as usize));
        }
        Ok(
            placement::plan_beside(n, &demand, &counts, pos, &mut place)
                .map(|split| (place, split)),
        )
    }

    /// Removes a VM and its vCPUs now; its share is free at once.
    pub fn remove_vm(&mut self, vm: VmId) -> Result<(), QuotaError> {
        self.fold_lanes();
        let i = self.find_vm(vm).ok_or(QuotaError::UnknownVm(vm))?;
        let mut pct_all = self.latest_pct();
        let mut current = self.latest_place_per_vm();
        pct_all.remove(i);
        current.remove(i);
        self.vms.remove(i);
        self.vcpus.retain(|x| x.id.vm != vm);
        for c in &mut self.cur {
            if c.is_some_and(|id| id.vm == vm) {
                *c = None;
            }
        }
        self.rebuild();
        if self.pending.is_some() {
            let ids: Vec<VmId> = self.vms.iter().map(|v| v.id).collect();
            self.pending = self.layout(&ids, &pct_all, &current).ok().map(|l| Plan {
                pct: pct_all,
                place: l.place.concat(),
                split: l.split.concat(),
            });
        }
        Ok(())
    }

    /// Validates `set` and, if it is valid, puts it in force from the next period, as a whole.
    /// Otherwise nothing changes. Validated against the latest accepted quotas.
    pub fn apply_at_next_period(&mut self, set: &QuotaSet) -> Result<(), QuotaError> {
        self.fold_lanes();
        let mut pct_all = self.latest_pct();
        for (k, &(vm, pct)) in set.entries().iter().enumerate() {
            if pct > 100 {
                return Err(QuotaError::OverHundred { vm, pct });
            }
            if self.cfg.is_mgmt(vm) {
                return Err(QuotaError::ManagementVm(vm));
            }
            let i = self.find_vm(vm).ok_or(QuotaError::UnknownVm(vm))?;
            if set.entries()[..k].iter().any(|e| e.0 == vm) {
                return Err(QuotaError::DuplicateVm(vm));
            }
            pct_all[i] = pct as u8;
        }
        let ids: Vec<VmId> = self.vms.iter().map(|v| v.id).collect();
        self.check_sum(&ids, &pct_all)?;
        let current = self.latest_place_per_vm();
        let layout = self.layout(&ids, &pct_all, &current)?;
        self.commit(Plan {
            pct: pct_all,
            place: layout.place.concat(),
            split: layout.split.concat(),
        });
        Ok(())
    }

    /// The VirMO percentages in force (the management VM excluded).
    pub fn quotas(&self) -> Vec<(VmId, u8)> {
        self.vms
            .iter()
            .filter(|v| !self.cfg.is_mgmt(v.id))
            .map(|v| (v.id, v.pct))
            .collect()
    }

    /// The VirMO percentages that the next period will have in force.
    pub fn next_quotas(&self) -> Vec<(VmId, u8)> {
        let pct = self.latest_pct();
        self.vms
            .iter()
            .zip(pct)
            .filter(|(v, _)| !self.cfg.is_mgmt(v.id))
            .map(|(v, p)| (v.id, p))
            .collect()
    }

    /// The VirMO percentage `vm` will have from the next period (without allocating).
    pub fn next_quota(&self, vm: VmId) -> Option<u8> {
        let i = self.find_vm(vm)?;
        Some(match &self.pending {
            Some(p) => p.pct[i],
            None => self.vms[i].pct,
        })
    }

    /// The physical CPU whose queue `vcpu` is in.
    pub fn placement(&self, vcpu: VcpuId) -> Option<usize> {
        self.find_vcpu(vcpu).map(|j| self.vcpus[j].pcpu)
    }

    pub fn state(&self, vcpu: VcpuId) -> Option<VcpuState> {
        self.find_vcpu(vcpu).map(|j| self.vcpus[j].state)
    }

    /// `vm`'s reservation on each physical CPU in force, in 1/10 000 of a CPU.
    pub fn reservations(&self, vm: VmId) -> Option<Vec<u32>> {
        self.find_vm(vm)
            .map(|i| self.vms[i].lease.iter().map(|l| l.w).collect())
    }

    /// `vm`'s accounting up to `now`.
    pub fn stats(&self, vm: VmId, now: u64) -> Option<VmStats> {
        let i = self.find_vm(vm)?;
        let v = &self.vms[i];
        let mut checked_out = 0;
        let mut valid = self.lanes_valid;
        while valid != 0 {
            let c = valid.trailing_zeros() as usize;
            valid &= !(1 << c);
            let lane = &self.lanes[c];
            for k in 0..lane.slots {
                if lane.vm[k] == i {
                    checked_out += lane.consumed[k];
                }
            }
        }
        let mut throttled = v.throttled;
        let mut now_throttled = v.throttled_now;
        for x in self.vcpus.iter().filter(|x| x.vm == i) {
            if let Some(t) = x.throttled_since {
                if now > t {
                    throttled += now - t;
                    now_throttled = true;
                }
            }
        }
        Some(VmStats {
            vm,
            pct: v.pct,
            share_bp: v.share_bp,
            consumed: v.consumed + checked_out,
            throttled,
            throttled_periods: v.throttled_periods + now_throttled as u64,
            periods: self.period_index + 1 - v.first_period,
        })
    }

    /// Off → runnable (PSCI CPU_ON, VM start). Returns the physical CPU to kick.
    pub fn power_on(&mut self, vcpu: VcpuId, now: u64) -> Option<usize> {
        self.fold_lanes();
        self.advance(now);
        let j = self.find_vcpu(vcpu)?;
        if self.vcpus[j].state != VcpuState::Off {
            return None;
        }
        self.vcpus[j].state = VcpuState::Runnable;
        self.retally(j, now);
        Some(self.vcpus[j].pcpu)
    }

    /// → off (PSCI CPU_OFF, VM stop or reset). Its physical CPU must pick again if it ran it.
    pub fn power_off(&mut self, vcpu: VcpuId, now: u64) {
        self.fold_lanes();
        self.advance(now);
        if let Some(j) = self.find_vcpu(vcpu) {
            self.vcpus[j].state = VcpuState::Off;
            self.vcpus[j].boosted_at = None;
            self.unwant(j);
            self.retally(j, now);
        }
    }

    /// The vCPU waits for an interrupt (trapped WFI) from `now`; `wake_at`: when its virtual
    /// timer fires, if armed. Call after `charge`, then `pick`.
    pub fn block(&mut self, vcpu: VcpuId, now: u64, wake_at: Option<u64>) {
        self.fold_lanes();
        self.advance(now);
        let Some(j) = self.find_vcpu(vcpu) else {
            return;
        };
        let x = &mut self.vcpus[j];
        if x.state == VcpuState::Off {
            return;
        }
        match wake_at {
            Some(d) if d <= now => {
                x.state = VcpuState::Runnable;
                x.boosted_at = Some(now);
            }
            _ => {
                x.state = VcpuState::Blocked { wake_at };
                x.boosted_at = None;
                self.unwant(j);
            }
        }
        self.retally(j, now);
    }

    /// A virtual interrupt is pending for `vcpu`: if it was blocked it is runnable now, and the
    /// returned physical CPU should pick again (kick it if it is not the caller's).
    pub fn wake(&mut self, vcpu: VcpuId, now: u64) -> Option<usize> {
        self.advance(now);
        let j = self.find_vcpu(vcpu)?;
        if !matches!(self.vcpus[j].state, VcpuState::Blocked { .. }) {
            return None;
        }
        self.fold_lanes();
        self.vcpus[j].state = VcpuState::Runnable;
        self.vcpus[j].boosted_at = Some(now);
        self.retally(j, now);
        Some(self.vcpus[j].pcpu)
    }

    /// What physical CPU `pcpu` runs from `now`, and until when. What it ran before is no
    /// longer on it (charge it first).
    pub fn pick(&mut self, pcpu: usize, now: u64) -> Decision {
        self.pick_inner(pcpu, now, false)
    }

    /// As `pick`, after the vCPU this physical CPU ran gave it up (a yield hypercall): any
    /// other vCPU that can run here goes first; the yielder runs again only if none can.
    pub fn pick_after_yield(&mut self, pcpu: usize, now: u64) -> Decision {
        self.pick_inner(pcpu, now, true)
    }

    fn pick_inner(&mut self, pcpu: usize, now: u64, yielded: bool) -> Decision {
        self.fold_lanes();
        if !self.started || pcpu >= self.cfg.pcpus {
            return Decision {
                run: None,
                until: NEVER,
                kick: 0,
                tag: 0,
            };
        }
        self.advance(now);
        let mut previous = None;
        if let Some(id) = self.cur[pcpu].take() {
            if let Some(j) = self.find_vcpu(id) {
                previous = Some(j);
                if self.vcpus[j].pcpu != pcpu && self.vcpus[j].state == VcpuState::Runnable {
                    self.kicks |= 1 << self.vcpus[j].pcpu;
                }
            }
        }
        self.settle(pcpu);
        // A yielder stays marked as on this CPU (so not free) while the others are considered.
        let mut chosen = if yielded {
            self.choose(pcpu, now)
        } else {
            None
        };
        if let Some(j) = previous {
            self.vcpus[j].on_cpu = None;
        }
        if chosen.is_none() {
            chosen = self.choose(pcpu, now);
        }
        let until = self.until(pcpu, now, chosen);
        let run = chosen.map(|j| {
            let x = &mut self.vcpus[j];
            x.on_cpu = Some(pcpu);
            x.boosted_at = None;
            x.id
        });
        let tag = chosen.map_or(0, |j| self.vcpus[j].tag);
        self.cur[pcpu] = run;
        for k in 0..self.queues[pcpu].len() {
            let j = self.queues[pcpu][k];
            self.retally(j, now);
        }
        let kick = self.kicks & !(1 << pcpu);
        self.kicks = 0;
        if let Some(j) = chosen {
            self.build_lane(pcpu, j);
        }
        Decision {
            run,
            until,
            kick,
            tag,
        }
    }

    /// After a full decision for `pcpu` that chose `chosen`: the vCPUs a yield may switch
    /// between until something happens (see `yield_fast`), if that set is simple enough.
    fn build_lane(&mut self, pcpu: usize, chosen: usize) {
        debug_assert_eq!(self.lanes_valid & (1 << pcpu), 0);
        if self.pending.is_some() || pcpu >= MAX_PCPUS {
            return;
        }
        let mut lane = Lane {
            horizon: self.period_end,
            ..Lane::default()
        };
        for &j in &self.queues[pcpu] {
            let x = &self.vcpus[j];
            match x.state {
                VcpuState::Runnable => {
                    // A vCPU woken and waiting for its turn must be chosen first: full path.
                    if x.boosted_at.is_some() {
                        return;
                    }
                    let rem = self.vms[x.vm].lease[pcpu].rem;
                    if (j == chosen || x.on_cpu.is_none()) && rem > 0 {
                        if lane.len == LANE_MAX {
                            return;
                        }
                        let slot = match lane.vm[..lane.slots].iter().position(|&v| v == x.vm) {
                            Some(k) => k,
                            None => {
                                let k = lane.slots;
                                lane.vm[k] = x.vm;
                                lane.rem[k] = rem;
                                lane.slots += 1;
                                k
                            }
                        };
                        if j == chosen {
                            lane.pos = lane.len;
                            lane.first = lane.len;
                        }
                        lane.members[lane.len] = LaneMember {
                            vcpu: j,
                            slot,
                            id: x.id,
                            tag: x.tag,
                        };
                        lane.len += 1;
                    }
                }
                VcpuState::Blocked { wake_at: Some(d) } => lane.horizon = lane.horizon.min(d),
                _ => {}
            }
        }
        self.lanes[pcpu] = lane;
        self.lanes_valid |= 1 << pcpu;
    }

    /// Puts what every valid lane checked out back (budgets, consumption, run times, which
    /// vCPU runs) and invalidates them.
    fn fold_lanes(&mut self) {
        while self.lanes_valid != 0 {
            let c = self.lanes_valid.trailing_zeros() as usize;
            self.lanes_valid &= !(1 << c);
            let lane = self.lanes[c];
            for k in 0..lane.slots {
                let vm = &mut self.vms[lane.vm[k]];
                vm.lease[c].rem = lane.rem[k];
                vm.consumed += lane.consumed[k];
            }
            for i in 0..lane.len {
                let m = lane.members[i];
                self.vcpus[m.vcpu].ran += lane.ran[i];
            }
            if lane.pos != lane.first {
                let was = lane.members[lane.first];
                let now = lane.members[lane.pos];
                self.vcpus[was.vcpu].on_cpu = None;
                self.vcpus[now.vcpu].on_cpu = Some(c);
                self.cur[c] = Some(now.id);
            }
        }
    }

    /// The fast path of a yield (docs/scheduler.md, "Switch cost"): the vCPU running on
    /// `pcpu` since `from` gives the CPU up at `now`. If nothing but time passed since this
    /// CPU's last full decision (no wake-up, block, power or configuration change, no period
    /// end or deadline due) and the yielder keeps budget, it is charged exactly and the next
    /// vCPU of the lane runs, in O(1). Otherwise `None`, and nothing changed: the caller makes
    /// the full `charge` and `pick_after_yield`.
    #[inline(always)]
    pub fn yield_fast(&mut self, pcpu: usize, from: u64, now: u64) -> Option<Decision> {
        if pcpu >= MAX_PCPUS || self.lanes_valid & (1 << pcpu) == 0 {
            return None;
        }
        let lane = &mut self.lanes[pcpu];
        if now >= lane.horizon || now < from {
            return None;
        }
        let dt = now - from;
        let pos = lane.pos % LANE_MAX;
        // At most `LANE_MAX` by construction (`build_lane`); every index below is reduced
        // modulo `LANE_MAX` anyway.
        let len = lane.len;
        let me = lane.members[pos];
        let slot = me.slot % LANE_MAX;
        if lane.rem[slot] <= dt as i64 {
            return None;
        }
        // Charged as `charge` would: within the period, budget left, nobody's throttling
        // state changes.
        lane.rem[slot] -= dt as i64;
        lane.consumed[slot] += dt;
        lane.ran[pos] += dt;
        // The next member with budget after the yielder, in turn; the yielder if none. Two
        // members (two vCPUs taking turns) is the common case: the other one, without a loop.
        let next = if len == 2 {
            let other = (pos ^ 1) % LANE_MAX;
            if lane.rem[lane.members[other].slot % LANE_MAX] > 0 {
                other
            } else {
                pos
            }
        } else {
            let mut next = pos;
            let mut k = pos;
            for _ in 1..len {
                k = if k + 1 >= len { 0 } else { k + 1 };
                if lane.rem[lane.members[k % LANE_MAX].slot % LANE_MAX] > 0 {
                    next = k;
                    break;
                }
            }
            next
        };
        lane.pos = next;
        let m = lane.members[next % LANE_MAX];
        let rem = lane.rem[m.slot % LANE_MAX] as u64;
        Some(Decision {
            run: Some(m.id),
            until: lane.horizon.min(now.saturating_add(rem)),
            kick: 0,
            tag: m.tag,
        })
    }

    /// `vcpu` ran from `from` to `to`: charge its VM's budget and accounts.
    pub fn charge(&mut self, vcpu: VcpuId, from: u64, to: u64) {
        if !self.started || to <= from {
            return;
        }
        self.fold_lanes();
        let Some(j) = self.find_vcpu(vcpu) else {
            return;
        };
        let (vm, c) = (
            self.vcpus[j].vm,
            self.vcpus[j].on_cpu.unwrap_or(self.vcpus[j].pcpu),
        );
        self.vms[vm].consumed += to - from;
        let mut t = from;
        if t < self.period_start {
            // Run in a period another physical CPU has already closed.
            let end = to.min(self.period_start);
            let l = &mut self.vms[vm].lease[c];
            let part = end - t;
            if part <= l.prev_rem {
                l.prev_rem -= part;
            } else {
                l.rem -= (part - l.prev_rem) as i64;
                l.prev_rem = 0;
            }
            t = end;
        }
        while t < to {
            if t >= self.period_end {
                self.advance(t);
            }
            let end = to.min(self.period_end);
            self.vms[vm].lease[c].rem -= (end - t) as i64;
            self.vcpus[j].ran += end - t;
            t = end;
        }
        self.retally_vm(vm, c, to);
        let p = self.vcpus[j].pcpu;
        if p != c {
            self.retally_vm(vm, p, to);
        }
    }

    // ---- time ----

    /// Wakes due deadlines and closes periods up to `now`, in time order.
    fn advance(&mut self, now: u64) {
        if !self.started {
            return;
        }
        loop {
            let limit = if now >= self.period_end {
                self.period_end - 1
            } else {
                now
            };
            self.wake_due(limit);
            if now < self.period_end {
                return;
            }
            self.rollover();
            self.skip_idle(now);
        }
    }

    fn wake_due(&mut self, limit: u64) {
        for j in 0..self.vcpus.len() {
            if let VcpuState::Blocked { wake_at: Some(d) } = self.vcpus[j].state {
                if d <= limit {
                    self.vcpus[j].state = VcpuState::Runnable;
                    self.vcpus[j].boosted_at = Some(d);
                    self.retally(j, d);
                }
            }
        }
    }

    /// Closes the current period and opens the next: accounting, pending configuration,
    /// refill.
    fn rollover(&mut self) {
        self.fold_lanes();
        let end = self.period_end;
        for j in 0..self.vcpus.len() {
            if let Some(t) = self.vcpus[j].throttled_since.take() {
                let vm = &mut self.vms[self.vcpus[j].vm];
                if end > t {
                    vm.throttled += end - t;
                    vm.throttled_now = true;
                }
            }
        }
        for vm in &mut self.vms {
            if vm.throttled_now {
                vm.throttled_periods += 1;
                vm.throttled_now = false;
            }
            for l in &mut vm.lease {
                l.prev_rem = l.rem.max(0) as u64;
                l.debt = l.rem.min(0);
                l.owed = l.wanted;
            }
        }
        let all = if self.cfg.pcpus == 64 {
            u64::MAX
        } else {
            (1 << self.cfg.pcpus) - 1
        };
        if let Some(plan) = self.pending.take() {
            self.install(&plan);
            self.kicks = all;
        }
        self.unsettled = all;
        self.allot();
        for vm in &mut self.vms {
            for l in &mut vm.lease {
                if l.w == 0 {
                    l.rem = 0;
                    l.owed = false;
                } else {
                    l.rem = l.allot + l.debt;
                }
            }
        }
        self.period_start = end;
        self.period_end = end + self.cfg.period;
        self.period_index += 1;
        for x in &mut self.vcpus {
            x.ran = 0;
        }
        self.mark_wanted();
        for j in 0..self.vcpus.len() {
            self.retally(j, end);
        }
    }

    /// Whole periods in which nothing can happen (nothing runnable, no deadline, no pending
    /// change) are skipped in one step; debts count as repaid.
    fn skip_idle(&mut self, now: u64) {
        if self.pending.is_some() || self.vcpus.iter().any(|x| x.state == VcpuState::Runnable) {
            return;
        }
        let next = self
            .vcpus
            .iter()
            .filter_map(|x| match x.state {
                VcpuState::Blocked { wake_at } => wake_at,
                _ => None,
            })
            .min()
            .unwrap_or(NEVER);
        let horizon = now.min(next);
        if horizon < self.period_end {
            return;
        }
        let skip = (horizon - self.period_start) / self.cfg.period;
        self.period_start += skip * self.cfg.period;
        self.period_end += skip * self.cfg.period;
        self.period_index += skip;
        for vm in &mut self.vms {
            for l in &mut vm.lease {
                l.rem = l.rem.max(l.allot);
                l.prev_rem = 0;
                l.owed = false;
            }
        }
    }

    /// Physical CPU `c` picks for the first time since the last period ended, so it has been
    /// charged for it: a VM that wanted to run there all that period and still had budget
    /// left was kept from it by others' late preemptions; it gets that budget now, up to
    /// `P/64`.
    fn settle(&mut self, c: usize) {
        if self.unsettled & (1 << c) == 0 {
            return;
        }
        self.unsettled &= !(1 << c);
        let max = self.cfg.period / 64;
        for vm in &mut self.vms {
            let l = &mut vm.lease[c];
            if l.owed {
                l.rem += l.prev_rem.min(max) as i64;
                l.owed = false;
            }
            l.prev_rem = 0;
        }
    }

    /// This period's allotment of every reservation (see "Budgets" in the module doc).
    fn allot(&mut self) {
        let p = self.cfg.period as u128;
        for c in 0..self.cfg.pcpus {
            let mut frac_sum = 0u64;
            for vm in &mut self.vms {
                let l = &mut vm.lease[c];
                l.bonus_new = false;
                if l.w == 0 {
                    l.fl = 0;
                    l.frac_new = 0;
                    continue;
                }
                let num = l.frac as u128 + l.w as u128 * p;
                l.fl = (num / DEVICE as u128) as i64;
                l.frac_new = (num % DEVICE as u128) as u32;
                frac_sum += l.frac_new as u64;
            }
            // One extra tick each for the largest fractions, so that Σ G = ⌊Σ X⌋.
            for _ in 0..frac_sum / DEVICE as u64 {
                let best = (0..self.vms.len())
                    .filter(|&i| !self.vms[i].lease[c].bonus_new && self.vms[i].lease[c].w > 0)
                    .max_by_key(|&i| {
                        let l = &self.vms[i].lease[c];
                        (l.frac_new, l.bonus, core::cmp::Reverse(i))
                    });
                if let Some(i) = best {
                    self.vms[i].lease[c].bonus_new = true;
                }
            }
            for vm in &mut self.vms {
                let l = &mut vm.lease[c];
                l.allot = l.fl + l.bonus_new as i64 - l.bonus as i64;
                l.frac = l.frac_new;
                l.bonus = l.bonus_new;
            }
        }
    }

    // ---- choice ----

    fn free(&self, j: usize, c: usize) -> bool {
        let x = &self.vcpus[j];
        x.state == VcpuState::Runnable && x.pcpu == c && x.on_cpu.is_none()
    }

    fn choose(&mut self, c: usize, now: u64) -> Option<usize> {
        let len = self.queues[c].len();
        // Woken vCPUs first, earliest wake first.
        let mut best: Option<(u64, usize)> = None;
        for k in 0..len {
            let j = self.queues[c][k];
            if !self.free(j, c) {
                continue;
            }
            if let Some(t) = self.vcpus[j].boosted_at {
                if best.is_none_or(|(bt, _)| t < bt) && self.budget(self.vcpus[j].vm, c, now) {
                    best = Some((t, j));
                }
            }
        }
        if let Some((_, j)) = best {
            return Some(j);
        }
        // Then VMs in queue order; within a VM the vCPU that ran least this period.
        let mut k = 0;
        while k < len {
            let vm = self.vcpus[self.queues[c][k]].vm;
            let mut end = k;
            let mut pick: Option<usize> = None;
            while end < len && self.vcpus[self.queues[c][end]].vm == vm {
                let j = self.queues[c][end];
                if self.free(j, c) && pick.is_none_or(|p| self.vcpus[j].ran < self.vcpus[p].ran) {
                    pick = Some(j);
                }
                end += 1;
            }
            if let Some(j) = pick {
                if self.budget(vm, c, now) {
                    return Some(j);
                }
            }
            k = end;
        }
        None
    }

    /// Whether VM `vm` has budget on `c`, borrowing its own unused budget from other physical
    /// CPUs if `c` has time to spare.
    fn budget(&mut self, vm: usize, c: usize, now: u64) -> bool {
        if self.vms[vm].lease[c].rem > 0 {
            return true;
        }
        if self.cfg.pcpus == 1 || now >= self.period_end {
            return false;
        }
        let committed: i64 = self.vms.iter().map(|v| v.lease[c].rem.max(0)).sum();
        let slack = (self.period_end - now) as i64 - committed;
        if slack < self.cfg.min_slice.max(1) as i64 {
            return false;
        }
        let mut want = slack - self.vms[vm].lease[c].rem;
        for d in 0..self.cfg.pcpus {
            if want <= 0 {
                break;
            }
            if d == c || self.vms[vm].lease[d].rem <= 0 || self.active_on(vm, d) {
                continue;
            }
            let take = self.vms[vm].lease[d].rem.min(want);
            self.vms[vm].lease[d].rem -= take;
            self.vms[vm].lease[c].rem += take;
            want -= take;
        }
        self.vms[vm].lease[c].rem > 0
    }

    /// A vCPU of `vm` is runnable in `d`'s queue or running on `d`.
    fn active_on(&self, vm: usize, d: usize) -> bool {
        self.queues[d]
            .iter()
            .any(|&j| self.vcpus[j].vm == vm && self.vcpus[j].state == VcpuState::Runnable)
            || self.cur[d].is_some_and(|id| id.vm == self.vms[vm].id)
    }

    fn until(&self, c: usize, now: u64, chosen: Option<usize>) -> u64 {
        let end = self.period_end;
        let mut until = NEVER;
        if let Some(j) = chosen {
            let x = &self.vcpus[j];
            let rem = self.vms[x.vm].lease[c].rem.max(1) as u64;
            until = end.min(now.saturating_add(rem));
            let (mut n, mut ran) = (0u64, 0u64);
            for &s in &self.queues[c] {
                let y = &self.vcpus[s];
                if y.vm == x.vm && (s == j || self.free(s, c)) {
                    n += 1;
                    ran += y.ran;
                }
            }
            if n > 1 {
                let slice = ((ran + rem) / n)
                    .saturating_sub(x.ran)
                    .max(self.cfg.min_slice)
                    .max(1);
                until = until.min(now.saturating_add(slice));
            }
        }
        for &s in &self.queues[c] {
            let y = &self.vcpus[s];
            match y.state {
                VcpuState::Runnable if Some(s) != chosen => until = until.min(end),
                VcpuState::Blocked { wake_at: Some(d) } => {
                    let due = if self.vms[y.vm].lease[c].rem > 0 {
                        d
                    } else {
                        d.max(end)
                    };
                    until = until.min(due);
                }
                _ => {}
            }
        }
        if self.pending.is_some() && !self.queues[c].is_empty() {
            until = until.min(end);
        }
        until
    }

    // ---- accounting ----

    /// Starts or ends `j`'s throttled interval at `now` to match its state.
    fn retally(&mut self, j: usize, now: u64) {
        let x = &self.vcpus[j];
        let vm = x.vm;
        let throttled = x.state == VcpuState::Runnable && self.vms[vm].lease[x.pcpu].rem <= 0;
        match (throttled, x.throttled_since) {
            (true, None) => self.vcpus[j].throttled_since = Some(now),
            (false, Some(t)) => {
                self.vcpus[j].throttled_since = None;
                if now > t {
                    self.vms[vm].throttled += now - t;
                    self.vms[vm].throttled_now = true;
                }
            }
            _ => {}
        }
    }

    fn retally_vm(&mut self, vm: usize, c: usize, now: u64) {
        for k in 0..self.queues[c].len() {
            let j = self.queues[c][k];
            if self.vcpus[j].vm == vm {
                self.retally(j, now);
            }
        }
    }

    fn mark_wanted(&mut self) {
        for vm in &mut self.vms {
            for l in &mut vm.lease {
                l.wanted = false;
            }
        }
        for x in &self.vcpus {
            if x.state == VcpuState::Runnable {
                self.vms[x.vm].lease[x.pcpu].wanted = true;
            }
        }
    }

    /// `j` stopped being runnable: its VM no longer wanted its whole period on that CPU if
    /// it has no other runnable vCPU there.
    fn unwant(&mut self, j: usize) {
        let (vm, c) = (self.vcpus[j].vm, self.vcpus[j].pcpu);
        let still = self.queues[c]
            .iter()
            .any(|&s| self.vcpus[s].vm == vm && self.vcpus[s].state == VcpuState::Runnable);
        if !still {
            self.vms[vm].lease[c].wanted = false;
        }
    }

    // ---- configuration ----

    fn find_vm(&self, vm: VmId) -> Option<usize> {
        self.vms.binary_search_by_key(&vm, |v| v.id).ok()
    }

    fn find_vcpu(&self, id: VcpuId) -> Option<usize> {
        self.vcpus.binary_search_by_key(&id, |x| x.id).ok()
    }

    fn share_bp(&self, vm: VmId, pct: u8) -> u32 {
        if self.cfg.is_mgmt(vm) {
            pct as u32 * 100
        } else {
            device_share_bp(self.cfg.mgmt_pct(), pct)
        }
    }

    fn latest_pct(&self) -> Vec<u8> {
        match &self.pending {
            Some(p) => p.pct.clone(),
            None => self.vms.iter().map(|v| v.pct).collect(),
        }
    }

    fn latest_place_per_vm(&self) -> Vec<Vec<Option<usize>>> {
        let mut out: Vec<Vec<Option<usize>>> = self.vms.iter().map(|_| Vec::new()).collect();
        for (j, x) in self.vcpus.iter().enumerate() {
            let c = self.pending.as_ref().map_or(x.pcpu, |p| p.place[j]);
            out[x.vm].push(Some(c));
        }
        out
    }

    fn check_sum(&self, ids: &[VmId], pct: &[u8]) -> Result<(), QuotaError> {
        let sum: u32 = ids
            .iter()
            .zip(pct)
            .filter(|(id, _)| !self.cfg.is_mgmt(**id))
            .map(|(_, &p)| p as u32)
            .sum();
        if sum > 100 {
            return Err(QuotaError::SumOverHundred { sum });
        }
        Ok(())
    }

    fn layout(
        &self,
        ids: &[VmId],
        pct: &[u8],
        current: &[Vec<Option<usize>>],
    ) -> Result<placement::Layout, QuotaError> {
        let n = self.cfg.pcpus as u64;
        let reqs: Vec<placement::Req> = ids
            .iter()
            .zip(pct)
            .zip(current)
            .map(|((&id, &p), cur)| placement::Req {
                demand: (self.share_bp(id, p) as u64 * n).min(CPU as u64 * cur.len() as u64) as u32,
                current: cur,
            })
            .collect();
        placement::plan(self.cfg.pcpus, &reqs).map_err(|s| QuotaError::Unplaceable {
            vm: ids[s.vm],
            missing: s.missing,
        })
    }

    fn commit(&mut self, plan: Plan) {
        self.fold_lanes();
        if self.started {
            self.pending = Some(plan);
        } else {
            self.install(&plan);
        }
    }

    fn install(&mut self, plan: &Plan) {
        let n = self.cfg.pcpus;
        for i in 0..self.vms.len() {
            let id = self.vms[i].id;
            let share = self.share_bp(id, plan.pct[i]);
            let vm = &mut self.vms[i];
            vm.pct = plan.pct[i];
            vm.share_bp = share;
            for c in 0..n {
                let l = &mut vm.lease[c];
                l.w = plan.split[i * n + c];
                if l.w == 0 {
                    l.frac = 0;
                    l.bonus = false;
                }
            }
        }
        for (j, x) in self.vcpus.iter_mut().enumerate() {
            x.pcpu = plan.place[j];
        }
        self.rebuild();
    }

    fn rebuild(&mut self) {
        self.fold_lanes();
        for q in &mut self.queues {
            q.clear();
        }
        for (j, x) in self.vcpus.iter_mut().enumerate() {
            x.vm = self
                .vms
                .binary_search_by_key(&x.id.vm, |v| v.id)
                .unwrap_or(0);
            self.queues[x.pcpu].push(j);
        }
    }
}
