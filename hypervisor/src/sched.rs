//! Carrying out the quota scheduler's decisions on each physical CPU (docs/scheduler.md).
//!
//! Owns: the one quota scheduler of the device (`quota::Scheduler`, behind a lock), which vCPU
//! each physical CPU has loaded and since when, and the EL2 timer deadline. On every exit that
//! ends a vCPU's turn (its budget or slice is over, a wake-up deadline came, it waited in WFI,
//! yielded, stopped...) the CPU charges the time the vCPU ran, blocks it if it waits for an
//! interrupt, asks the quota scheduler what runs next and until when, arms CNTHP for exactly
//! that instant, and switches. `quota` decides, this module switches: it never second-guesses
//! a decision except when the vCPU cannot run after all (powered off meanwhile), which it then
//! tells the quota scheduler.
//!
//! vCPUs may move between physical CPUs (the quota scheduler places them, between periods): a
//! vCPU is loaded only once no other CPU has it loaded, and once the CPU whose registers still
//! hold its lazily switched FP/SIMD state or keys has flushed them (`arch::context`).

#[cfg(target_os = "none")]
use crate::vm::Vcpu;

/// Why the loaded vCPU's turn ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TurnEnd {
    /// Preemption, a stop, a kick: nothing the vCPU asked for.
    Other,
    /// It executed WFI: it waits for an interrupt (blocked until one is due).
    Wfi,
    /// It gave up the CPU (yield hypercall, WFE): others that can run go first.
    Yield,
}

/// This CPU's scheduling state.
pub struct CpuSched {
    #[cfg(target_os = "none")]
    current: Option<&'static Vcpu>,
    /// When `current` was last handed the CPU, in counter ticks.
    #[cfg(target_os = "none")]
    since: u64,
    #[cfg(target_os = "none")]
    turn_end: TurnEnd,
    /// The PMU count when this full decision began, while a created VM's first entry is
    /// measured (`measure_first_entry`).
    #[cfg(target_os = "none")]
    probe: Option<crate::arch::pmu::Meter>,
}

impl CpuSched {
    pub const fn new() -> Self {
        CpuSched {
            #[cfg(target_os = "none")]
            current: None,
            #[cfg(target_os = "none")]
            since: 0,
            #[cfg(target_os = "none")]
            turn_end: TurnEnd::Other,
            #[cfg(target_os = "none")]
            probe: None,
        }
    }
}

impl Default for CpuSched {
    fn default() -> Self {
        Self::new()
    }
}

/// The VirMO percentages of the VMs of a boot bundle: `explicit[i]` if given, otherwise an
/// equal part (rounded down) of what the given ones leave. `None` for the management VM
/// (its share is the board's).
pub fn boot_percentages(
    explicit: &[Option<u8>],
    management: &[bool],
) -> alloc::vec::Vec<Option<u8>> {
    let given: u32 = explicit.iter().flatten().map(|&p| p as u32).sum();
    let unset = explicit
        .iter()
        .zip(management)
        .filter(|(p, &m)| p.is_none() && !m)
        .count() as u32;
    let each = 100u32.saturating_sub(given).checked_div(unset).unwrap_or(0);
    explicit
        .iter()
        .zip(management)
        .map(|(p, &m)| {
            if m {
                None
            } else {
                Some(p.unwrap_or(each as u8))
            }
        })
        .collect()
}

#[cfg(target_os = "none")]
pub use target::*;

#[cfg(target_os = "none")]
mod target {
    use super::{CpuSched, TurnEnd};
    use crate::arch::vectors::GuestRegs;
    use crate::quota::{self, QuotaError, QuotaSet, Scheduler, VcpuId, VmStats, NEVER};
    use crate::vm::{Power, Vcpu, Vm};
    use alloc::vec::Vec;
    use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use spin::Mutex;

    /// The device's quota scheduler, and per physical CPU what runs there since when (for
    /// accounting up to "now" while a vCPU is still running).
    struct Global {
        quota: Scheduler,
        running: [Option<(VcpuId, u64)>; crate::arch::percpu::MAX_CPUS],
        /// `#HV sched-window` records: every `trace_window` ticks from `trace_next` (`NEVER`
        /// while off, so that the check on every decision is one comparison).
        trace_window: u64,
        trace_next: u64,
    }

    static GLOBAL: Mutex<Option<Global>> = Mutex::new(None);
    static POWERED_OFF: AtomicBool = AtomicBool::new(false);
    /// The start of the last period whose console budgets were refilled.
    static REFILLED_PERIOD: AtomicU64 = AtomicU64::new(0);

    fn with<R>(f: impl FnOnce(&mut Global) -> R) -> Option<R> {
        GLOBAL.lock().as_mut().map(f)
    }

    /// Creates the quota scheduler. Boot CPU, before any VM is created.
    pub fn init(cfg: quota::Config, trace_window: u64) {
        match Scheduler::new(cfg) {
            Ok(quota) => {
                *GLOBAL.lock() = Some(Global {
                    quota,
                    running: [None; crate::arch::percpu::MAX_CPUS],
                    trace_window,
                    trace_next: NEVER,
                })
            }
            Err(e) => log::error!("scheduler configuration refused: {e}"),
        }
    }

    /// Registers a VM's vCPUs (all off) at `pct` percent (`None`: the management VM).
    pub fn add_vm(vm: &Vm, pct: Option<u8>) -> Result<(), QuotaError> {
        let id = vm.id as u16;
        let vcpus = vm.vcpus.len() as u16;
        with(|g| {
            match pct {
                Some(p) => g.quota.add_vm(id, vcpus, p as u32),
                None => g.quota.add_management_vm(vcpus),
            }?;
            tag_vcpus(g, vm);
            Ok(())
        })
        .unwrap_or(Ok(()))
    }

    /// Tags `vm`'s vCPUs with their addresses, which the decisions that run them carry
    /// (`Decision::tag`, read back by `vcpu_of`).
    fn tag_vcpus(g: &mut Global, vm: &Vm) {
        for v in &vm.vcpus {
            let _ = g.quota.set_tag(v.sched_id(), *v as *const Vcpu as usize);
        }
    }

    /// Registers a boot VM given an equal part of the CPU: that part, or the largest lower
    /// one that can be placed (`quota::Scheduler::add_vm_fitting`); the percentage in force.
    pub fn add_vm_fitting(vm: &Vm, pct: u8) -> Result<u8, QuotaError> {
        let (id, vcpus) = (vm.id as u16, vm.vcpus.len() as u16);
        with(|g| {
            let got = g.quota.add_vm_fitting(id, vcpus, pct as u32)?;
            tag_vcpus(g, vm);
            Ok(got)
        })
        .unwrap_or(Ok(pct))
    }

    /// Begins the first period. Boot CPU, once the boot VMs are registered.
    pub fn start() {
        let now = crate::arch::physical_count();
        with(|g| {
            g.quota.start(now);
            if g.trace_window != 0 {
                g.trace_next = now;
            }
        });
        REFILLED_PERIOD.store(now, Ordering::Relaxed);
    }

    /// Forgets a VM (deleted): its share is free from now.
    pub fn remove_vm(vm: &Vm) -> Result<(), QuotaError> {
        with(|g| g.quota.remove_vm(vm.id as u16)).unwrap_or(Ok(()))
    }

    /// `vcpu` was powered on (boot, PSCI CPU_ON, reset): the quota scheduler may run it.
    pub fn vcpu_powered_on(vcpu: &Vcpu) {
        let now = crate::arch::physical_count();
        if let Some(Some(cpu)) = with(|g| g.quota.power_on(vcpu.sched_id(), now)) {
            request_resched(cpu);
        }
    }

    /// A virtual interrupt became pending for `vcpu`: wake it if it waits in WFI.
    pub fn wake(vcpu: &Vcpu) {
        let now = crate::arch::physical_count();
        if let Some(Some(cpu)) = with(|g| g.quota.wake(vcpu.sched_id(), now)) {
            request_resched(cpu);
        }
    }

    /// Makes `vcpu` leave its physical CPU at once if it is loaded on another one (its VM
    /// stopped or is being suspended).
    pub fn kick_vcpu(vcpu: &Vcpu) {
        let here = crate::arch::percpu::current().index();
        let on = vcpu.running_on();
        if vcpu.is_loaded() && on != here {
            request_resched(on);
        }
    }

    /// Makes physical CPU `cpu` pick again now (even if it is this one: the SGI is taken as
    /// soon as the guest is re-entered).
    fn request_resched(cpu: usize) {
        crate::arch::percpu::get(cpu).request_resched();
        crate::arch::kick_cpu(cpu);
    }

    /// Applies new VirMO percentages from the next period, atomically; nothing changes on
    /// error. A change accepted is recorded as `#HV quota-applied t=<ticks> vm<id>=<pct>...`
    /// (the instant it was accepted, and the set).
    pub fn apply_quotas(set: &QuotaSet) -> Result<(), QuotaError> {
        let now = crate::arch::physical_count();
        with(|g| g.quota.apply_at_next_period(set)).unwrap_or(Ok(()))?;
        use core::fmt::Write;
        let mut line: heapless::String<256> = heapless::String::new();
        let _ = write!(line, "t={now}");
        for (vm, pct) in set.entries() {
            let _ = write!(line, " vm{vm}={pct}");
        }
        crate::hv_record!("quota-applied {}", line);
        Ok(())
    }

    /// The VirMO percentage `vm` will have from the next period.
    pub fn next_quota(vm: usize) -> Option<u8> {
        with(|g| g.quota.next_quota(vm as u16)).flatten()
    }

    /// The sum of the VirMO percentages from the next period on.
    pub fn next_quota_sum() -> u32 {
        with(|g| g.quota.next_quotas().iter().map(|&(_, p)| p as u32).sum()).unwrap_or(0)
    }

    /// `vm`'s accounting, including what its running vCPUs have used so far.
    pub fn stats(vm: usize) -> Option<VmStats> {
        let now = crate::arch::physical_count();
        with(|g| stats_now(g, vm as u16, now)).flatten()
    }

    fn stats_now(g: &Global, vm: u16, now: u64) -> Option<VmStats> {
        let mut s = g.quota.stats(vm, now)?;
        for (id, since) in g.running.iter().flatten() {
            if id.vm == vm && now > *since {
                s.consumed += now - since;
            }
        }
        Some(s)
    }

    /// The scheduling period in ticks.
    pub fn period_ticks() -> u64 {
        with(|g| g.quota.config().period).unwrap_or(0)
    }

    impl CpuSched {
        pub fn current(&self) -> Option<&'static Vcpu> {
            self.current
        }

        /// The loaded vCPU's turn ends for `why` (before `run_next`).
        pub fn end_turn(&mut self, why: TurnEnd) {
            self.turn_end = why;
        }

        /// Chooses what runs next on this CPU and returns its registers for `enter_guest`.
        /// Waits (in `wfi`) while nothing can run; powers the machine off once every VM has
        /// stopped.
        #[inline]
        pub fn run_next(&mut self) -> *mut GuestRegs {
            let me = crate::arch::percpu::current().index();
            if self.turn_end == TurnEnd::Yield {
                if let Some(regs) = self.yield_fast(me) {
                    return regs;
                }
            }
            self.run_next_full(me)
        }

        /// `run_next` with a full decision of the quota scheduler.
        #[inline(never)]
        fn run_next_full(&mut self, me: usize) -> *mut GuestRegs {
            loop {
                // Each decision is measured from its start (not from before an idle wait):
                // the one that first enters the VM reports its own cost.
                if FIRST_ENTRY.load(Ordering::Relaxed) != NO_VM {
                    self.probe = crate::arch::pmu::Meter::start_plain();
                }
                let now = crate::arch::physical_count();
                let turn_end = core::mem::replace(&mut self.turn_end, TurnEnd::Other);
                let wake_at = if turn_end == TurnEnd::Wfi {
                    crate::arch::virtual_timer_deadline()
                } else {
                    None
                };
                let mut trace = None;
                let decision = {
                    let mut guard = GLOBAL.lock();
                    let Some(g) = guard.as_mut() else {
                        drop(guard);
                        self.idle(NEVER);
                        continue;
                    };
                    if let Some(cur) = self.current {
                        let id = cur.sched_id();
                        g.quota.charge(id, self.since, now);
                        // Checked under the scheduler's lock, which `wake` takes after making
                        // an interrupt pending: either it is seen here, or the wake-up comes
                        // after the block.
                        if turn_end == TurnEnd::Wfi && !wants_to_run(cur) {
                            g.quota.block(id, now, wake_at);
                        }
                    }
                    g.running[me] = None;
                    let d = if turn_end == TurnEnd::Yield {
                        g.quota.pick_after_yield(me, now)
                    } else {
                        g.quota.pick(me, now)
                    };
                    if let Some(id) = d.run {
                        g.running[me] = Some((id, now));
                    }
                    if now >= g.trace_next {
                        trace = Some(window_record(g, now));
                        while g.trace_next <= now {
                            g.trace_next += g.trace_window;
                        }
                    }
                    (d, g.quota.period().0)
                };
                let (d, period_start) = decision;
                if let Some(record) = trace {
                    print_window(&record);
                }
                if let Some(regs) = self.run_decision(d, me, now, period_start) {
                    return regs;
                }
            }
        }

        /// A yield while nothing but time passed since this CPU's last decision: the quota
        /// scheduler's O(1) path (`Scheduler::yield_fast`), the common case of vCPUs handing
        /// the CPU to each other. `None`: take the full path.
        #[inline(always)]
        fn yield_fast(&mut self, me: usize) -> Option<*mut GuestRegs> {
            let now = crate::arch::physical_count();
            let d = {
                let mut guard = GLOBAL.lock();
                let g = guard.as_mut()?;
                if now >= g.trace_next {
                    return None;
                }
                let d = g.quota.yield_fast(me, self.since, now)?;
                g.running[me % crate::arch::percpu::MAX_CPUS] = d.run.map(|id| (id, now));
                d
            };
            // Charged up to `now`: if the switch fails the full path must not charge again.
            self.turn_end = TurnEnd::Other;
            self.since = now;
            let next = vcpu_of(&d)?;
            let regs = self.switch_to(next, me)?;
            crate::arch::timer::arm_at(d.until);
            Some(regs)
        }

        /// Carries out decision `d` taken at `now`: kicks, console budgets at a new period,
        /// the switch. `None` when nothing could run (the caller decides again).
        fn run_decision(
            &mut self,
            d: quota::Decision,
            me: usize,
            now: u64,
            period_start: u64,
        ) -> Option<*mut GuestRegs> {
            if d.kick != 0 {
                for cpu in 0..crate::arch::cpu_count() {
                    if d.kick & (1 << cpu) != 0 {
                        request_resched(cpu);
                    }
                }
            }
            if REFILLED_PERIOD.load(Ordering::Relaxed) != period_start
                && REFILLED_PERIOD.swap(period_start, Ordering::AcqRel) != period_start
            {
                crate::vm::platform::refill_console_budgets();
            }
            match vcpu_of(&d) {
                Some(v) => {
                    if let Some(regs) = self.switch_to(v, me) {
                        crate::arch::timer::arm_at(d.until);
                        self.since = now;
                        return Some(regs);
                    }
                    // It cannot run after all (powered off meanwhile): tell the quota
                    // scheduler, and choose again.
                    with(|g| {
                        g.quota.power_off(v.sched_id(), now);
                        g.running[me] = None;
                    });
                    self.unload_current();
                }
                None => {
                    if let Some(id) = d.run {
                        // A VM no longer in the table: forget its vCPU.
                        with(|g| {
                            g.quota.power_off(id, now);
                            g.running[me] = None;
                        });
                    } else {
                        self.idle(d.until);
                    }
                }
            }
            None
        }

        /// Makes `next` the loaded vCPU (unless it is already) and returns its registers; `None`
        /// if it cannot run (not powered on, its VM not running).
        fn switch_to(&mut self, next: &'static Vcpu, me: usize) -> Option<*mut GuestRegs> {
            let same = self.current.is_some_and(|cur| core::ptr::eq(cur, next));
            let mut started = false;
            if !same {
                self.unload_current();
                crate::arch::take_vcpu(next, me);
                // Marked loaded before the VM's state is read (both `SeqCst`): a CPU stopping
                // the VM writes the state and then looks for loaded vCPUs, so either it waits
                // for this one or this CPU sees the VM stopped and backs off.
                next.set_running_on(me);
                next.set_loaded(true);
                match start_if_pending(next) {
                    Start::No => {
                        next.set_loaded(false);
                        if !next.vm.is_running() {
                            next.vm.after_unload();
                        }
                        return None;
                    }
                    Start::Running => {}
                    Start::Started => started = true,
                }
                // SAFETY: `next` was handed to this CPU by the scheduler, is loaded nowhere
                // else (`take_vcpu`) and nothing else is loaded here.
                unsafe { crate::arch::load_vcpu(next) };
                self.current = Some(next);
            } else if !runnable(next) {
                return None;
            }
            crate::vm::platform::fill_list_registers(next);
            if started {
                self.first_entry(next);
            }
            // SAFETY: `next` is the vCPU loaded on this CPU.
            Some(unsafe { &mut next.ctx().regs })
        }

        /// `next` was just started: if it is the first entry of the VM being measured, says
        /// what this decision cost (`#HV vm-first-entry`).
        #[cold]
        fn first_entry(&mut self, next: &Vcpu) {
            if self.probe.is_none()
                || next.index != 0
                || FIRST_ENTRY
                    .compare_exchange(next.vm.id, NO_VM, Ordering::AcqRel, Ordering::Relaxed)
                    .is_err()
            {
                return;
            }
            if let Some(meter) = self.probe.take() {
                let (insns, _) = meter.finish();
                crate::hv_record!("vm-first-entry id={} el2_insns={}", next.vm.id, insns);
            }
        }

        #[inline(always)]
        fn unload_current(&mut self) {
            if let Some(cur) = self.current.take() {
                // SAFETY: `cur` is the vCPU loaded on this CPU.
                unsafe { crate::arch::unload_vcpu(cur) };
                cur.set_loaded(false);
                // `after_unload` only finishes a stop or a reset. Whoever stops or resets the
                // VM changes its state first and then looks for loaded vCPUs (`SeqCst`, as
                // the mark cleared above): a VM seen running here has nothing to finish.
                if !cur.vm.is_running() {
                    cur.vm.after_unload();
                }
            }
        }

        /// Nothing to run until `until` (or a kick): unloads the current vCPU, powers the
        /// machine off if every VM has stopped, and waits.
        #[cold]
        #[inline(never)]
        fn idle(&mut self, until: u64) {
            self.unload_current();
            if crate::vm_table::all_stopped() && !POWERED_OFF.swap(true, Ordering::AcqRel) {
                crate::hv_record!("all-stopped");
                let err = crate::arch::firmware::system_off();
                log::error!("PSCI SYSTEM_OFF failed: {err:?}");
            }
            crate::arch::timer::arm_at(until);
            crate::arch::wait_for_event();
        }
    }

    /// Whether `vcpu` has an interrupt it could take now (a WFI would not wait): something in
    /// its list registers, or a deliverable pending interrupt in its vGIC. VMs without a vGIC
    /// cannot take interrupts: their WFI only yields.
    fn wants_to_run(vcpu: &Vcpu) -> bool {
        let Some(p) = vcpu.vm.platform.as_ref() else {
            return true;
        };
        p.lrs_in_use(vcpu.index) != 0 || p.vgic().has_pending(vcpu.index)
    }

    fn runnable(vcpu: &Vcpu) -> bool {
        vcpu.vm.is_running() && vcpu.power.is_on()
    }

    /// Starts `vcpu` if a CPU_ON is pending for it, and says whether it can run.
    /// What `start_if_pending` found.
    enum Start {
        No,
        Running,
        /// It was just started at its entry point (PSCI CPU_ON, boot, power on).
        Started,
    }

    #[inline]
    fn start_if_pending(vcpu: &Vcpu) -> Start {
        if !vcpu.vm.is_running() {
            return Start::No;
        }
        // The usual case without the lock: a vCPU that is on stays on until it turns itself
        // off (PSCI CPU_OFF, while loaded) or its VM stops, which the caller sees next time.
        if vcpu.power.is_on() {
            return Start::Running;
        }
        start_pending(vcpu)
    }

    #[inline(never)]
    fn start_pending(vcpu: &Vcpu) -> Start {
        let mut power = vcpu.power.lock();
        match *power {
            Power::On => Start::Running,
            Power::Off => Start::No,
            Power::Pending { entry, context } => {
                // SAFETY: `vcpu` is this CPU's (`take_vcpu`) and not loaded (a Pending vCPU
                // was Off, hence unloaded).
                unsafe { vcpu.reset(entry, context) };
                crate::arch::context::forget_lazy_state(vcpu);
                *power = Power::On;
                Start::Started
            }
        }
    }

    const NO_VM: usize = usize::MAX;
    /// The VM whose first entry is measured (benchmarks), or `NO_VM`.
    static FIRST_ENTRY: core::sync::atomic::AtomicUsize =
        core::sync::atomic::AtomicUsize::new(NO_VM);

    /// Measures the EL2 instructions of the decision that first enters VM `vm` (with the
    /// PMU set up by the management VM; `#HV vm-first-entry`).
    pub fn measure_first_entry(vm: usize) {
        FIRST_ENTRY.store(vm, Ordering::Release);
    }

    /// The vCPU decision `d` runs: by its tag (its address, `tag_vcpus`), or by its id.
    #[inline]
    fn vcpu_of(d: &quota::Decision) -> Option<&'static Vcpu> {
        if d.tag != 0 {
            // SAFETY: tags are set only by `tag_vcpus`, to the address of a `Vcpu` of a VM in
            // the quota scheduler; vCPUs and VMs are leaked at creation and never freed
            // (`vm_table` hands out `&'static Vm`), so the address stays valid. A deleted VM's
            // vCPU found this way is refused by `switch_to` (its VM is not running).
            return Some(unsafe { &*(d.tag as *const Vcpu) });
        }
        vcpu_by_id(d.run?)
    }

    fn vcpu_by_id(id: VcpuId) -> Option<&'static Vcpu> {
        crate::vm_table::get(id.vm as usize)?
            .vcpus
            .get(id.index as usize)
            .copied()
    }

    /// Each VM's CPU time so far, in ticks, for a `#HV sched-window` record.
    fn window_record(g: &Global, now: u64) -> (u64, Vec<(u16, u64)>) {
        let ids: Vec<u16> = crate::vm_table::all().iter().map(|v| v.id as u16).collect();
        let per_vm = ids
            .into_iter()
            .filter_map(|id| stats_now(g, id, now).map(|s| (id, s.consumed)))
            .collect();
        (now, per_vm)
    }

    fn print_window(record: &(u64, Vec<(u16, u64)>)) {
        use core::fmt::Write;
        let mut line: heapless::String<256> = heapless::String::new();
        let _ = write!(line, "t={}", record.0);
        for (vm, consumed) in &record.1 {
            let _ = write!(line, " vm{vm}={consumed}");
        }
        crate::hv_record!("sched-window {}", line);
    }

    /// The record of a VM's accounting printed by the console command and read by the
    /// management VM, converted to microseconds.
    pub fn print_stats() {
        let freq = crate::arch::counter_frequency().max(1);
        let us = |t: u64| (t as u128 * 1_000_000 / freq as u128) as u64;
        for vm in crate::vm_table::all() {
            if let Some(s) = stats(vm.id) {
                crate::hv_record!(
                    "sched-stats id={} name={} cpu={} share_bp={} consumed_us={} throttled_us={} \
                     throttled_periods={} periods={}",
                    vm.id,
                    vm.name,
                    s.pct,
                    s.share_bp,
                    us(s.consumed),
                    us(s.throttled),
                    s.throttled_periods,
                    s.periods
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::boot_percentages;

    #[test]
    fn unset_percentages_share_what_the_set_ones_leave() {
        assert_eq!(
            boot_percentages(&[Some(50), None, None, None], &[false, false, false, true]),
            [Some(50), Some(25), Some(25), None]
        );
        assert_eq!(
            boot_percentages(&[None, None, None], &[false; 3]),
            [Some(33), Some(33), Some(33)]
        );
        assert_eq!(boot_percentages(&[None], &[false]), [Some(100)]);
        // Nothing left for them: they get 0 % (they keep their state but do not run).
        assert_eq!(
            boot_percentages(&[Some(100), None], &[false, false]),
            [Some(100), Some(0)]
        );
    }
}
