//! The guarantees, checked by simulation: a deterministic clock drives `pick`/`charge`
//! on every physical CPU as the hypervisor would, and the run intervals are measured in every
//! 100 ms window (sliding by 0.1 ms).

use super::*;
use std::collections::BTreeMap;
use std::vec::Vec;

/// QEMU `virt`'s counter: 62.5 MHz.
const MS: u64 = 62_500;
const US: u64 = MS / 1000;
const PERIOD: u64 = 10 * MS;
const WINDOW: u64 = 100 * MS;
const STEP: u64 = MS / 10;

#[derive(Clone, Copy, Debug)]
enum Load {
    /// Always runnable.
    Busy,
    /// Waits in WFI with its virtual timer armed every `every` ticks (first at `phase`), and
    /// runs `work` ticks for each expiry.
    Tick { every: u64, phase: u64, work: u64 },
}

struct Spec {
    vm: VmId,
    vcpus: u16,
    pct: u32,
    load: Load,
}

fn vm(vm: VmId, vcpus: u16, pct: u32, load: Load) -> Spec {
    Spec {
        vm,
        vcpus,
        pct,
        load,
    }
}

struct TickState {
    every: u64,
    work: u64,
    left: u64,
    next_deadline: u64,
    /// The deadline it is blocked on, until it runs.
    waiting_for: Option<u64>,
}

struct Sim {
    s: Scheduler,
    n: usize,
    running: Vec<Option<(VcpuId, u64)>>,
    next: Vec<u64>,
    ticks: BTreeMap<VcpuId, TickState>,
    /// Largest delay between a deadline and the vCPU running.
    max_lateness: u64,
    wakeups: u64,
    log: BTreeMap<VmId, Vec<(u64, u64)>>,
    /// Preemption latency: each CNTHP interrupt is served up to this many ticks late.
    jitter: u64,
    rng: u64,
    now: u64,
}

impl Sim {
    fn new(cfg: Config, specs: &[Spec], mgmt: Option<(u16, Load)>) -> Self {
        let mut s = Scheduler::new(cfg).unwrap();
        if let Some((vcpus, _)) = mgmt {
            s.add_management_vm(vcpus).unwrap();
        }
        for sp in specs {
            s.add_vm(sp.vm, sp.vcpus, sp.pct).unwrap();
        }
        s.start(0);
        let mut sim = Sim {
            s,
            n: cfg.pcpus,
            running: vec![None; cfg.pcpus],
            next: vec![0; cfg.pcpus],
            ticks: BTreeMap::new(),
            max_lateness: 0,
            wakeups: 0,
            log: BTreeMap::new(),
            jitter: 0,
            rng: 0x9e37_79b9_7f4a_7c15,
            now: 0,
        };
        let mut all: Vec<(VmId, u16, Load)> =
            specs.iter().map(|s| (s.vm, s.vcpus, s.load)).collect();
        if let (Some((vcpus, load)), Some(m)) = (mgmt, cfg.management) {
            all.push((m.vm, vcpus, load));
        }
        for (vm, vcpus, load) in all {
            sim.log.insert(vm, Vec::new());
            for i in 0..vcpus {
                sim.set_load(VcpuId::new(vm, i), load);
            }
        }
        sim
    }

    fn set_load(&mut self, v: VcpuId, load: Load) {
        match load {
            Load::Busy => {
                self.s.power_on(v, self.now);
            }
            Load::Tick { every, phase, work } => {
                self.s.power_on(v, self.now);
                self.s.block(v, self.now, Some(phase));
                self.ticks.insert(
                    v,
                    TickState {
                        every,
                        work,
                        left: work,
                        next_deadline: phase + every,
                        waiting_for: Some(phase),
                    },
                );
            }
        }
        self.next.fill(self.now);
    }

    fn with_jitter(mut self, jitter: u64) -> Self {
        self.jitter = jitter;
        self
    }

    fn late(&mut self) -> u64 {
        if self.jitter == 0 {
            return 0;
        }
        // xorshift64
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng % (self.jitter + 1)
    }

    /// Runs the simulated machine until `end`.
    fn run_until(&mut self, end: u64) {
        loop {
            let (c, t) = (0..self.n)
                .map(|c| (c, self.next[c]))
                .min_by_key(|&(c, t)| (t, c))
                .unwrap();
            if t >= end {
                break;
            }
            self.now = t;
            self.step(c, t);
        }
        // Account what runs at `end` without disturbing the schedule.
        for c in 0..self.n {
            if let Some((v, start)) = self.running[c] {
                if end > start {
                    self.s.charge(v, start, end);
                    self.log.get_mut(&v.vm).unwrap().push((start, end));
                    if let Some(tk) = self.ticks.get_mut(&v) {
                        tk.left -= end - start;
                    }
                    self.running[c] = Some((v, end));
                }
            }
        }
        self.now = end;
    }

    fn step(&mut self, c: usize, t: u64) {
        if let Some((v, start)) = self.running[c].take() {
            self.s.charge(v, start, t);
            if t > start {
                self.log.get_mut(&v.vm).unwrap().push((start, t));
            }
            if let Some(tk) = self.ticks.get_mut(&v) {
                tk.left -= t - start;
                if tk.left == 0 {
                    tk.left = tk.work;
                    let d = tk.next_deadline;
                    tk.next_deadline += tk.every;
                    tk.waiting_for = Some(d);
                    self.s.block(v, t, Some(d));
                }
            }
        }
        let d = self.s.pick(c, t);
        for b in 0..self.n {
            if d.kick & (1 << b) != 0 {
                self.next[b] = t;
            }
        }
        let late = self.late();
        match d.run {
            Some(v) => {
                for (o, r) in self.running.iter().enumerate() {
                    assert!(o == c || r.is_none_or(|r| r.0 != v), "{v:?} on two CPUs");
                }
                self.running[c] = Some((v, t));
                let mut ev = d.until.saturating_add(late);
                if let Some(tk) = self.ticks.get_mut(&v) {
                    if let Some(dl) = tk.waiting_for.take() {
                        self.max_lateness = self.max_lateness.max(t.saturating_sub(dl));
                        self.wakeups += 1;
                    }
                    ev = ev.min(t + tk.left);
                }
                assert!(d.until > t, "until {} not after now {}", d.until, t);
                self.next[c] = ev;
            }
            None => self.next[c] = d.until.saturating_add(late),
        }
    }

    fn consumed(&self, vm: VmId, a: u64, b: u64) -> u64 {
        self.log[&vm]
            .iter()
            .map(|&(s, e)| e.min(b).saturating_sub(s.max(a)))
            .sum()
    }
}

/// Consumption of one VM as a function of time: `F(t)` = time run before `t`.
struct Cumulative {
    starts: Vec<u64>,
    ends: Vec<u64>,
    start_sum: Vec<u128>,
    end_sum: Vec<u128>,
}

impl Cumulative {
    fn new(log: &[(u64, u64)]) -> Self {
        let mut starts: Vec<u64> = log.iter().map(|i| i.0).collect();
        let mut ends: Vec<u64> = log.iter().map(|i| i.1).collect();
        starts.sort_unstable();
        ends.sort_unstable();
        let pre = |v: &[u64]| {
            let mut acc = vec![0u128];
            for &x in v {
                acc.push(acc.last().unwrap() + x as u128);
            }
            acc
        };
        Cumulative {
            start_sum: pre(&starts),
            end_sum: pre(&ends),
            starts,
            ends,
        }
    }

    fn at(&self, t: u64) -> u128 {
        let part = |v: &[u64], sum: &[u128]| {
            let k = v.partition_point(|&x| x <= t);
            sum[k] + t as u128 * (v.len() - k) as u128
        };
        part(&self.ends, &self.end_sum) - part(&self.starts, &self.start_sum)
    }
}

/// The largest error, in percentage points of the device, of `vm`'s share over every window
/// of `WINDOW` starting in `[from, to − WINDOW]` every `STEP`, against `expected_bp`.
fn max_window_error_pp(sim: &Sim, vm: VmId, expected_bp: u32, from: u64, to: u64) -> f64 {
    let f = Cumulative::new(&sim.log[&vm]);
    let device = (sim.n as u64 * WINDOW) as f64;
    let mut worst = 0f64;
    let mut a = from;
    while a + WINDOW <= to {
        let used = (f.at(a + WINDOW) - f.at(a)) as f64;
        let err = (100.0 * used / device - expected_bp as f64 / 100.0).abs();
        worst = worst.max(err);
        a += STEP;
    }
    worst
}

/// The largest error over windows of `vm`, in ticks of consumption.
fn max_window_error_ticks(sim: &Sim, vm: VmId, expected_bp: u32, from: u64, to: u64) -> f64 {
    max_window_error_pp(sim, vm, expected_bp, from, to) / 100.0 * (sim.n as u64 * WINDOW) as f64
}

fn share(sim: &Sim, vm: VmId, a: u64, b: u64) -> f64 {
    100.0 * sim.consumed(vm, a, b) as f64 / (sim.n as u64 * (b - a)) as f64
}

const SECONDS: u64 = 1000 * MS;

fn fifty_thirty_twenty(vcpus: u16) -> [Spec; 3] {
    [
        vm(1, vcpus, 50, Load::Busy),
        vm(2, vcpus, 30, Load::Busy),
        vm(3, vcpus, 20, Load::Busy),
    ]
}

/// Runs 50/30/20 and returns the largest window error (pp) of each VM.
fn run_503020(pcpus: usize, vcpus: u16, jitter: u64) -> (Sim, [f64; 3]) {
    let mut sim = Sim::new(
        Config::new(pcpus, PERIOD),
        &fifty_thirty_twenty(vcpus),
        None,
    )
    .with_jitter(jitter);
    let end = 5 * SECONDS;
    sim.run_until(end);
    let errs = [
        max_window_error_pp(&sim, 1, 5000, 0, end),
        max_window_error_pp(&sim, 2, 3000, 0, end),
        max_window_error_pp(&sim, 3, 2000, 0, end),
    ];
    (sim, errs)
}

/// The module doc's bound for the VM `i`-th in queue order on one physical CPU, with
/// preemption latency `l`: `4i + 2` ticks, `(4i + 2)(1 + l)` with latency.
fn bound_ticks(i: u64, l: u64) -> f64 {
    ((4 * i + 2) * (1 + l)) as f64
}

#[test]
fn share_arithmetic_with_management_vm() {
    // m = 10 %: VirMO 50/30/20 are 45/27/18 % of the device; with the management VM's 10 %
    // they add up to 100 %.
    assert_eq!(device_share_bp(10, 50), 4500);
    assert_eq!(device_share_bp(10, 30), 2700);
    assert_eq!(device_share_bp(10, 20), 1800);
    assert_eq!(10 * 100 + 4500 + 2700 + 1800, DEVICE);
    assert_eq!(device_share_bp(0, 30), 3000);
    assert_eq!(device_share_bp(100, 30), 0);
    // Budget per period: pct/100 × pcpus × period, e.g. 30 % of 2 CPUs over 10 ms = 6 ms.
    let cfg = Config::new(2, PERIOD);
    let mut s = Scheduler::new(cfg).unwrap();
    s.add_vm(1, 2, 30).unwrap();
    s.start(0);
    let total: i64 = s.vms[0].lease.iter().map(|l| l.allot).sum();
    assert_eq!(total as u64, 6 * MS);
}

#[test]
fn management_vm_share_by_simulation() {
    let cfg = Config::new(1, PERIOD).with_management(9, 10);
    let mut sim = Sim::new(cfg, &fifty_thirty_twenty(1), Some((1, Load::Busy)));
    let end = 2 * SECONDS;
    sim.run_until(end);
    for (vm, bp) in [(1, 4500), (2, 2700), (3, 1800), (9, 1000)] {
        let e = max_window_error_pp(&sim, vm, bp, 0, end);
        assert!(e < 0.001, "VM {vm}: {e} pp");
    }
    assert_eq!(sim.s.stats(9, end).unwrap().share_bp, 1000);
    assert_eq!(sim.s.stats(1, end).unwrap().share_bp, 4500);
    // Its share is the board's, not VirMO's.
    assert_eq!(
        sim.s.apply_at_next_period(&QuotaSet::new().with(9, 20)),
        Err(QuotaError::ManagementVm(9))
    );
}

#[test]
fn fifty_thirty_twenty_one_pcpu() {
    let (sim, errs) = run_503020(1, 1, 0);
    std::println!("1 pCPU, exact preemption: max error (pp) {errs:?}");
    for (i, e) in errs.iter().enumerate() {
        assert!(*e <= 0.5, "VM {}: {e} pp", i + 1);
        let ticks = e / 100.0 * WINDOW as f64;
        assert!(
            ticks < bound_ticks(i as u64 + 1, 0),
            "VM {}: {ticks} ticks",
            i + 1
        );
    }
    assert_eq!(
        sim.s.stats(1, 5 * SECONDS).unwrap().consumed,
        5 * SECONDS / 2
    );
}

#[test]
fn fifty_thirty_twenty_one_pcpu_late_preemption() {
    // Every preemption served up to 2 µs late (an exit and a switch on a slow core).
    let l = 2 * US;
    let (sim, errs) = run_503020(1, 1, l);
    std::println!("1 pCPU, preemption up to 2 µs late: max error (pp) {errs:?}");
    for (i, e) in errs.iter().enumerate() {
        assert!(*e <= 0.5, "VM {}: {e} pp", i + 1);
        let ticks =
            max_window_error_ticks(&sim, i as u16 + 1, [5000, 3000, 2000][i], 0, 5 * SECONDS);
        assert!(
            ticks <= bound_ticks(i as u64 + 1, l),
            "VM {}: {ticks} ticks",
            i + 1
        );
    }
    // No drift: over 5 s each VM is within a period's latency of its exact share.
    for (vm, pct) in [(1u16, 50u64), (2, 30), (3, 20)] {
        let got = sim.s.stats(vm, 5 * SECONDS).unwrap().consumed as i64;
        let want = (5 * SECONDS * pct / 100) as i64;
        assert!(
            (got - want).abs() <= 4 * l as i64,
            "VM {vm}: {got} vs {want}"
        );
    }
}

#[test]
fn fifty_thirty_twenty_two_pcpus() {
    for vcpus in [1, 2] {
        let (sim, errs) = run_503020(2, vcpus, 0);
        std::println!("2 pCPUs, {vcpus} vCPU(s) per VM: max error (pp) {errs:?}");
        for (i, e) in errs.iter().enumerate() {
            assert!(*e <= 0.5, "VM {}: {e} pp", i + 1);
            assert!(*e < 0.001, "VM {}: {e} pp", i + 1);
        }
        // Shares of the whole device: VM 1 gets one whole physical CPU's worth.
        let s1 = share(&sim, 1, 0, 5 * SECONDS);
        assert!((s1 - 50.0).abs() < 0.001, "{s1}");
    }
    let (_, errs) = run_503020(2, 2, 2 * US);
    std::println!("2 pCPUs, 2 vCPUs per VM, preemption up to 2 µs late: {errs:?}");
    for e in errs {
        assert!(e <= 0.5);
    }
}

#[test]
fn more_vcpus_than_pcpus() {
    let specs = [
        vm(1, 4, 50, Load::Busy),
        vm(2, 2, 30, Load::Busy),
        vm(3, 1, 20, Load::Busy),
    ];
    let mut sim = Sim::new(Config::new(2, PERIOD), &specs, None).with_jitter(2 * US);
    let end = 3 * SECONDS;
    sim.run_until(end);
    for (vm, bp) in [(1, 5000), (2, 3000), (3, 2000)] {
        let e = max_window_error_pp(&sim, vm, bp, 0, end);
        std::println!("7 vCPUs on 2 pCPUs: VM {vm} max error {e} pp");
        assert!(e <= 0.5, "VM {vm}: {e} pp");
    }
    // Every reservation fits its physical CPU.
    for c in 0..2 {
        let load: u32 = [1, 2, 3]
            .iter()
            .map(|&v| sim.s.reservations(v).unwrap()[c])
            .sum();
        assert!(load <= CPU, "pCPU {c}: {load}");
    }
    // Every vCPU of VM 1 runs.
    for i in 0..4 {
        let j = sim.s.find_vcpu(VcpuId::new(1, i)).unwrap();
        assert!(sim.s.vcpus[j].ran > 0 || sim.s.vcpus[j].state == VcpuState::Runnable);
    }
}

#[test]
fn capped_vm_alone_gets_at_most_its_share() {
    let end = 2 * SECONDS;
    // One physical CPU.
    let mut sim = Sim::new(Config::new(1, PERIOD), &[vm(1, 1, 20, Load::Busy)], None);
    sim.run_until(end);
    let e = max_window_error_pp(&sim, 1, 2000, 0, end);
    assert!(e < 0.001, "{e}");
    assert_eq!(sim.consumed(1, 0, end), end / 5);
    // Accounting: throttled the other 80 %, in every period.
    let st = sim.s.stats(1, end).unwrap();
    assert_eq!(st.consumed, end / 5);
    assert_eq!(st.throttled, end - end / 5);
    assert_eq!(st.throttled_periods, end / PERIOD);
    // Two physical CPUs, two vCPUs, one of them off: the busy one borrows the other's budget,
    // and the VM still gets 20 % of the device, never more.
    let specs = [vm(1, 2, 20, Load::Busy)];
    let mut sim = Sim::new(Config::new(2, PERIOD), &specs, None);
    sim.s.power_off(VcpuId::new(1, 1), 0);
    sim.run_until(end);
    let mut a = 0;
    while a + WINDOW <= end {
        let s = share(&sim, 1, a, a + WINDOW);
        assert!(s <= 20.0 + 1e-9, "{s}");
        assert!(s >= 19.5, "{s}");
        a += STEP;
    }
}

#[test]
fn idle_vm_consumes_little_and_is_woken_on_time() {
    for (phase, jitter) in [
        (0, 0),
        (37 * MS / 10 + 123, 0),
        (37 * MS / 10 + 123, 2 * US),
    ] {
        let specs = [
            vm(1, 1, 50, Load::Busy),
            vm(2, 1, 30, Load::Busy),
            vm(
                3,
                1,
                20,
                Load::Tick {
                    every: 10 * MS,
                    phase,
                    work: 20 * US,
                },
            ),
        ];
        let mut sim = Sim::new(Config::new(1, PERIOD), &specs, None).with_jitter(jitter);
        let end = 3 * SECONDS;
        sim.run_until(end);
        let idle = share(&sim, 3, 0, end);
        std::println!(
            "idle VM (phase {phase}, jitter {jitter}): {idle:.4} %, {} wake-ups, \
             max lateness {} ticks",
            sim.wakeups,
            sim.max_lateness
        );
        assert!(idle < 0.5, "{idle}");
        assert!(sim.wakeups >= end / (10 * MS) - 1);
        assert!(sim.max_lateness <= PERIOD);
        assert!(sim.max_lateness <= jitter, "{}", sim.max_lateness);
        // Every window of the idle VM is under 0.5 % too.
        let mut a = 0;
        while a + WINDOW <= end {
            assert!(share(&sim, 3, a, a + WINDOW) < 0.5);
            a += STEP;
        }
        // The busy VMs keep their reservations.
        for (vm, bp) in [(1, 5000), (2, 3000)] {
            let e = max_window_error_pp(&sim, vm, bp, 0, end);
            assert!(e <= 0.5, "VM {vm}: {e}");
        }
        assert_eq!(sim.s.stats(3, end).unwrap().throttled, 0);
    }
}

#[test]
fn quota_change_takes_effect_at_the_next_period() {
    let mut sim = Sim::new(Config::new(1, PERIOD), &fifty_thirty_twenty(1), None);
    let t = 355 * MS;
    sim.run_until(t);
    sim.s
        .apply_at_next_period(&QuotaSet::new().with(1, 20).with(3, 50))
        .unwrap();
    assert_eq!(sim.s.quotas(), vec![(1, 50), (2, 30), (3, 20)]);
    assert_eq!(sim.s.next_quotas(), vec![(1, 20), (2, 30), (3, 50)]);
    let end = SECONDS;
    sim.run_until(end);
    assert_eq!(sim.s.quotas(), vec![(1, 20), (2, 30), (3, 50)]);
    // The period in which the change was made keeps the old quotas ...
    let (a, b) = (350 * MS, 360 * MS);
    assert_eq!(sim.consumed(1, a, b), 5 * MS);
    assert_eq!(sim.consumed(3, a, b), 2 * MS);
    // ... every period from the next one has the new ones, exactly.
    let mut p = 360 * MS;
    while p + PERIOD <= end {
        assert_eq!(sim.consumed(1, p, p + PERIOD), 2 * MS);
        assert_eq!(sim.consumed(2, p, p + PERIOD), 3 * MS);
        assert_eq!(sim.consumed(3, p, p + PERIOD), 5 * MS);
        p += PERIOD;
    }
    let e = max_window_error_pp(&sim, 3, 5000, 360 * MS, end);
    assert!(e < 0.001, "{e}");
}

#[test]
fn invalid_sets_are_refused_and_the_old_quotas_stay() {
    let mut sim = Sim::new(Config::new(1, PERIOD), &fifty_thirty_twenty(1), None);
    sim.run_until(105 * MS);
    let cases = [
        (
            QuotaSet::new().with(1, 101),
            QuotaError::OverHundred { vm: 1, pct: 101 },
        ),
        (
            QuotaSet::new().with(1, 60),
            QuotaError::SumOverHundred { sum: 110 },
        ),
        (
            QuotaSet::new().with(1, 40).with(2, 40).with(3, 21),
            QuotaError::SumOverHundred { sum: 101 },
        ),
        (QuotaSet::new().with(7, 10), QuotaError::UnknownVm(7)),
        (
            QuotaSet::new().with(1, 10).with(1, 20),
            QuotaError::DuplicateVm(1),
        ),
        (
            QuotaSet::new().with(2, 10).with(3, 4000),
            QuotaError::OverHundred { vm: 3, pct: 4000 },
        ),
    ];
    for (set, err) in cases {
        assert_eq!(sim.s.apply_at_next_period(&set), Err(err));
        assert!(sim.s.pending.is_none());
        assert_eq!(sim.s.next_quotas(), vec![(1, 50), (2, 30), (3, 20)]);
    }
    assert!(std::format!("{}", QuotaError::SumOverHundred { sum: 110 }).contains("110%"));
    // A VM that would push the sum over 100 is refused too.
    assert_eq!(
        sim.s.add_vm(4, 1, 1),
        Err(QuotaError::SumOverHundred { sum: 101 })
    );
    assert!(sim.s.stats(4, 0).is_none());
    let end = SECONDS;
    sim.run_until(end);
    for (vm, bp) in [(1, 5000), (2, 3000), (3, 2000)] {
        assert!(max_window_error_pp(&sim, vm, bp, 0, end) < 0.001);
    }
    // A valid set after invalid ones still works (a partial set: VM 2 keeps its 30 %).
    sim.s
        .apply_at_next_period(&QuotaSet::new().with(1, 40).with(3, 30))
        .unwrap();
    assert_eq!(sim.s.next_quotas(), vec![(1, 40), (2, 30), (3, 30)]);
}

#[test]
fn zero_percent_vm_never_runs_but_keeps_its_state() {
    let specs = [
        vm(1, 1, 50, Load::Busy),
        vm(2, 1, 50, Load::Busy),
        vm(3, 2, 0, Load::Busy),
    ];
    let mut sim = Sim::new(Config::new(2, PERIOD), &specs, None);
    let t = SECONDS;
    sim.run_until(t);
    assert_eq!(sim.consumed(3, 0, t), 0);
    assert_eq!(sim.s.state(VcpuId::new(3, 0)), Some(VcpuState::Runnable));
    assert_eq!(sim.s.state(VcpuId::new(3, 1)), Some(VcpuState::Runnable));
    let st = sim.s.stats(3, t).unwrap();
    assert_eq!(st.consumed, 0);
    assert_eq!(st.throttled, 2 * t); // two runnable vCPUs, all the time
                                     // Given a share mid-period, it runs from the next period.
    let mid = t + PERIOD / 2;
    sim.run_until(mid);
    sim.s
        .apply_at_next_period(&QuotaSet::new().with(1, 40).with(3, 10))
        .unwrap();
    let end = 2 * SECONDS;
    sim.run_until(end);
    let p = t + PERIOD;
    assert_eq!(sim.consumed(3, 0, p), 0);
    assert_eq!(sim.consumed(3, p, end), (end - p) * 2 / 10);
}

#[test]
fn defaulted_shares_shrink_until_they_fit() {
    // The management VM at 10 % of two CPUs (0.2 CPU) and two 1-vCPU VMs given 50 % each
    // (1 CPU each): the second cannot be placed at 50 %; it gets the largest share that can.
    let cfg = Config::new(2, PERIOD).with_management(9, 10);
    let mut s = Scheduler::new(cfg).unwrap();
    s.add_management_vm(1).unwrap();
    assert_eq!(s.add_vm_fitting(1, 1, 50).unwrap(), 50);
    let got = s.add_vm_fitting(2, 1, 50).unwrap();
    assert!(got < 50, "{got}");
    // The largest: one more point does not place.
    let mut probe = Scheduler::new(cfg).unwrap();
    probe.add_management_vm(1).unwrap();
    probe.add_vm(1, 1, 50).unwrap();
    let err = probe.add_vm(2, 1, got as u32 + 1).unwrap_err();
    assert!(matches!(err, QuotaError::Unplaceable { .. }), "{err:?}");
    // Other refusals are not bent: a VM that exists stays refused.
    let err = s.add_vm_fitting(2, 1, 10).unwrap_err();
    assert_eq!(err, QuotaError::VmExists(2));
}

#[test]
fn unplaceable_sets_are_refused() {
    // Three 1-vCPU VMs at 34/33/33 on two physical CPUs: any two need more than one CPU.
    let mut s = Scheduler::new(Config::new(2, PERIOD)).unwrap();
    s.add_vm(1, 1, 34).unwrap();
    s.add_vm(2, 1, 33).unwrap();
    let err = s.add_vm(3, 1, 33).unwrap_err();
    assert!(matches!(err, QuotaError::Unplaceable { .. }), "{err:?}");
    assert!(std::format!("{err}").contains("cannot be placed"));
    // With two vCPUs each it places (the third VM fills what the others leave).
    let mut s = Scheduler::new(Config::new(2, PERIOD)).unwrap();
    for (vm, pct) in [(1, 34), (2, 33), (3, 33)] {
        s.add_vm(vm, 2, pct).unwrap();
    }
    // The same refusal at run time, leaving the old set.
    let mut s = Scheduler::new(Config::new(2, PERIOD)).unwrap();
    s.add_vm(1, 1, 40).unwrap();
    s.add_vm(2, 1, 40).unwrap();
    s.add_vm(3, 1, 10).unwrap();
    s.start(0);
    let err = s
        .apply_at_next_period(&QuotaSet::new().with(1, 45).with(2, 45).with(3, 10))
        .unwrap_err();
    assert!(matches!(err, QuotaError::Unplaceable { .. }), "{err:?}");
    // A set that the current placement cannot hold but another can: accepted, and the
    // vCPUs move at the next period.
    let mut s = Scheduler::new(Config::new(2, PERIOD)).unwrap();
    s.add_vm(1, 1, 40).unwrap();
    s.add_vm(2, 1, 10).unwrap();
    s.add_vm(3, 1, 40).unwrap();
    s.add_vm(4, 1, 10).unwrap();
    s.start(0);
    let before: Vec<_> = (1..=4).map(|v| s.placement(VcpuId::new(v, 0))).collect();
    assert_eq!(before[0], before[3], "1 (40 %) and 4 (10 %) share a CPU");
    s.apply_at_next_period(&QuotaSet::new().with(3, 10).with(4, 40))
        .unwrap();
    assert_eq!(
        s.placement(VcpuId::new(4, 0)),
        before[3],
        "not before the next period"
    );
    let d = s.pick(0, PERIOD);
    assert_eq!(d.kick, 0b10, "the other CPU must pick again");
    let after: Vec<_> = (1..=4).map(|v| s.placement(VcpuId::new(v, 0))).collect();
    assert_ne!(after[0], after[3]);
    for c in 0..2 {
        let load: u32 = (1..=4).map(|v| s.reservations(v).unwrap()[c]).sum();
        assert!(load <= CPU);
    }
}

#[test]
fn quota_change_that_moves_vcpus_keeps_shares() {
    let specs = [
        vm(1, 1, 40, Load::Busy),
        vm(2, 1, 10, Load::Busy),
        vm(3, 1, 40, Load::Busy),
        vm(4, 1, 10, Load::Busy),
    ];
    let mut sim = Sim::new(Config::new(2, PERIOD), &specs, None);
    sim.run_until(205 * MS);
    let before = sim.s.placement(VcpuId::new(4, 0));
    sim.s
        .apply_at_next_period(&QuotaSet::new().with(3, 10).with(4, 40))
        .unwrap();
    let end = SECONDS;
    sim.run_until(end);
    let from = 210 * MS;
    let mut p = from;
    while p + PERIOD <= end {
        for (vm, pct) in [(1u16, 40u64), (2, 10), (3, 10), (4, 40)] {
            assert_eq!(
                sim.consumed(vm, p, p + PERIOD),
                2 * PERIOD * pct / 100,
                "VM {vm} at {p}"
            );
        }
        p += PERIOD;
    }
    assert_ne!(sim.s.placement(VcpuId::new(4, 0)), before, "VM 4 moved");
}

#[test]
fn awkward_shares_stay_within_the_bound() {
    // Shares and a period that do not divide: 33/33/34 % on one CPU, P = 10 007 ticks.
    let period = 10_007;
    let specs = [
        vm(1, 1, 33, Load::Busy),
        vm(2, 1, 33, Load::Busy),
        vm(3, 1, 34, Load::Busy),
    ];
    let mut sim = Sim::new(Config::new(1, period), &specs, None);
    let end = 1000 * period;
    sim.run_until(end);
    // Windows of 10 periods.
    for (i, (vm, bp)) in [(1u16, 3300u32), (2, 3300), (3, 3400)]
        .into_iter()
        .enumerate()
    {
        let f = Cumulative::new(&sim.log[&vm]);
        let w = 10 * period;
        let mut worst = 0f64;
        for a in (0..end - w).step_by(97) {
            let used = (f.at(a + w) - f.at(a)) as f64;
            worst = worst.max((used - w as f64 * bp as f64 / DEVICE as f64).abs());
        }
        std::println!("33/33/34, P = 10 007: VM {vm} max window error {worst:.3} ticks");
        assert!(worst < bound_ticks(i as u64 + 1, 0), "VM {vm}: {worst}");
    }
}

#[test]
fn apportionment_is_exact_and_fits_every_period() {
    // Awkward reservations and a prime period: every period's allotments fit the CPU, and
    // the cumulative allotment never strays a tick from the ideal.
    let period = 10_007;
    let cfg = Config::new(1, period);
    let mut s = Scheduler::new(cfg).unwrap();
    for (vm, pct) in [(1, 33), (2, 33), (3, 17), (4, 11), (5, 6)] {
        s.add_vm(vm, 1, pct).unwrap();
    }
    s.start(0);
    let w: Vec<u32> = s.vms.iter().map(|v| v.lease[0].w).collect();
    let mut cum = vec![0i64; w.len()];
    for k in 1..=20_000u64 {
        let total: i64 = s.vms.iter().map(|v| v.lease[0].allot).sum();
        assert!(total <= period as i64);
        for (i, v) in s.vms.iter().enumerate() {
            assert!(v.lease[0].allot >= 0);
            cum[i] += v.lease[0].allot;
            let ideal = w[i] as f64 * period as f64 * k as f64 / DEVICE as f64;
            assert!((cum[i] as f64 - ideal).abs() < 1.0, "VM {i} period {k}");
        }
        s.rollover();
    }
}

#[test]
fn wake_and_block() {
    let mut s = Scheduler::new(Config::new(2, PERIOD)).unwrap();
    s.add_vm(1, 2, 50).unwrap();
    s.start(0);
    let v0 = VcpuId::new(1, 0);
    let v1 = VcpuId::new(1, 1);
    assert_eq!(s.pick(0, 0).run, None);
    let c0 = s.power_on(v0, 0).unwrap();
    let c1 = s.power_on(v1, 0).unwrap();
    assert_ne!(c0, c1, "a VM's vCPUs are spread");
    let d = s.pick(c0, 0);
    assert_eq!(d.run, Some(v0));
    assert_eq!(d.until, PERIOD / 2, "budget 50 % of 2 CPUs, half on each");
    s.charge(v0, 0, MS);
    s.block(v0, MS, None);
    let d = s.pick(c0, MS);
    assert_eq!(d.run, None);
    assert_eq!(d.until, NEVER);
    assert_eq!(s.wake(v0, 2 * MS), Some(c0));
    assert_eq!(s.wake(v0, 2 * MS), None);
    let d = s.pick(c0, 2 * MS);
    assert_eq!(d.run, Some(v0));
    assert_eq!(d.until, 2 * MS + 4 * MS);
    // A blocked vCPU with a deadline is woken by the scheduler, exactly then.
    s.charge(v0, 2 * MS, 3 * MS);
    s.block(v0, 3 * MS, Some(7 * MS));
    let d = s.pick(c0, 3 * MS);
    assert_eq!((d.run, d.until), (None, 7 * MS));
    let d = s.pick(c0, 7 * MS);
    assert_eq!(d.run, Some(v0));
    assert_eq!(
        d.until, PERIOD,
        "3 ms of budget left, the period ends first"
    );
    assert_eq!(s.stats(1, 7 * MS).unwrap().consumed, 2 * MS);
}

#[test]
fn config_errors() {
    assert_eq!(
        Scheduler::new(Config::new(0, PERIOD)).err(),
        Some(ConfigError::NoPcpus)
    );
    assert_eq!(
        Scheduler::new(Config::new(65, PERIOD)).err(),
        Some(ConfigError::TooManyPcpus(65))
    );
    assert_eq!(
        Scheduler::new(Config::new(1, 100)).err(),
        Some(ConfigError::PeriodTooShort(100))
    );
    assert_eq!(
        Scheduler::new(Config::new(1, PERIOD).with_management(1, 101)).err(),
        Some(ConfigError::ManagementOverHundred(101))
    );
    let mut s = Scheduler::new(Config::new(1, PERIOD)).unwrap();
    assert_eq!(s.add_management_vm(1), Err(QuotaError::NoManagementVm));
    assert_eq!(s.add_vm(1, 0, 10), Err(QuotaError::NoVcpus(1)));
    s.add_vm(1, 1, 10).unwrap();
    assert_eq!(s.add_vm(1, 1, 10), Err(QuotaError::VmExists(1)));
    s.remove_vm(1).unwrap();
    assert_eq!(s.remove_vm(1), Err(QuotaError::UnknownVm(1)));
}

#[test]
fn idle_machine_skips_periods() {
    let mut s = Scheduler::new(Config::new(1, PERIOD)).unwrap();
    s.add_vm(1, 1, 50).unwrap();
    s.start(0);
    let v = VcpuId::new(1, 0);
    s.power_on(v, 0);
    let d = s.pick(0, 0);
    s.charge(v, 0, MS);
    s.block(v, MS, None);
    let _ = d;
    assert_eq!(s.pick(0, MS).until, NEVER);
    // An hour later.
    let later = 3600 * SECONDS + 3 * MS;
    assert_eq!(s.wake(v, later), Some(0));
    assert_eq!(s.period(), (3600 * SECONDS, 3600 * SECONDS + PERIOD));
    let d = s.pick(0, later);
    assert_eq!(d.run, Some(v));
    assert_eq!(d.until, later + PERIOD / 2);
}

/// The figures for the report: max window error (pp) per scenario.
#[test]
fn report_figures() {
    let mut worst: f64 = 0.0;
    for (pcpus, vcpus, jitter) in [(1, 1, 0), (1, 1, 2 * US), (2, 1, 0), (2, 2, 2 * US)] {
        let (_, e) = run_503020(pcpus, vcpus, jitter);
        let m = e.iter().cloned().fold(0.0, f64::max);
        worst = worst.max(m);
        std::println!(
            "sched_share_error_pp_max pcpus={pcpus} vcpus/VM={vcpus} latency={}us: {m:.6}",
            jitter / US
        );
    }
    assert!(worst <= 0.5);
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Random machines, loads, quota changes and preemption latency. Checked in every period:
/// no VM gets more than its budget, a VM whose vCPUs are all busy gets all of it, a VM at
/// 0 % never runs, and (in `Sim::step`) no vCPU runs on two CPUs at once.
#[test]
fn random_machines_keep_caps_and_reservations() {
    let (mut ran, mut changes, mut busy_checks) = (0, 0, 0);
    for seed in 1..=100u64 {
        let mut rng = Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d));
        let pcpus = 1 + rng.below(4) as usize;
        let nvms = 1 + rng.below(5) as u16;
        let jitter = [0, US, 2 * US, 20 * US][rng.below(4) as usize];
        let mut pcts = Vec::new();
        let mut left = 100u32;
        let mut specs = Vec::new();
        for id in 1..=nvms {
            let pct = if id == nvms {
                left
            } else {
                rng.below(left as u64 + 1) as u32
            };
            left -= pct;
            pcts.push(pct);
            let vcpus = 1 + rng.below(2 * pcpus as u64) as u16;
            let load = if rng.below(3) == 0 {
                Load::Tick {
                    every: MS + rng.below(20 * MS),
                    phase: rng.below(10 * MS),
                    work: 1 + rng.below(2 * MS),
                }
            } else {
                Load::Busy
            };
            specs.push(vm(id, vcpus, pct, load));
        }
        let cfg = Config::new(pcpus, PERIOD);
        let mut s = Scheduler::new(cfg).unwrap();
        let mut ok = true;
        for sp in &specs {
            ok &= s.add_vm(sp.vm, sp.vcpus, sp.pct).is_ok();
        }
        if !ok {
            continue; // unplaceable start: refused, fine
        }
        ran += 1;
        let mut sim = Sim::new(cfg, &specs, None).with_jitter(jitter);
        // Shares in force per period: (first period start, pct per VM).
        let mut regimes: Vec<(u64, Vec<u32>)> = vec![(0, pcts.clone())];
        let end = 2 * SECONDS;
        let mut t = 0;
        while t < end {
            t += 50 * MS + rng.below(150 * MS);
            sim.run_until(t.min(end));
            if t >= end {
                break;
            }
            // A random full set summing to at most 100.
            let mut left = 100u32;
            let mut set = QuotaSet::new();
            let mut new = Vec::new();
            for vm in 1..=nvms {
                let pct = rng.below(left as u64 + 1) as u32;
                left -= pct;
                set.set(vm, pct);
                new.push(pct);
            }
            let boundary = sim.s.period().1;
            if sim.s.apply_at_next_period(&set).is_ok() {
                if regimes.last().unwrap().0 == boundary {
                    regimes.pop();
                }
                regimes.push((boundary, new));
                changes += 1;
            }
        }
        // Integer rounding (a tick per physical CPU) and late preemptions (a few per period
        // per physical CPU, settled by debts and carries).
        let tol = (pcpus as u64 + 2 + 4 * jitter * pcpus as u64) as f64;
        let mut p = 0;
        while p + PERIOD <= end {
            let pcts = &regimes.iter().rev().find(|r| r.0 <= p).unwrap().1;
            for (k, sp) in specs.iter().enumerate() {
                let got = sim.consumed(sp.vm, p, p + PERIOD) as f64;
                let usable = (pcpus as u64 * PERIOD).min(sp.vcpus as u64 * PERIOD) as f64;
                let budget = (pcts[k] as f64 / 100.0 * (pcpus as u64 * PERIOD) as f64).min(usable);
                assert!(
                    got <= budget + tol,
                    "seed {seed}: VM {} took {got} > {budget} in period at {p}",
                    sp.vm
                );
                if pcts[k] == 0 {
                    // No budget in this period; a late preemption may spill into it.
                    assert!(
                        got <= jitter as f64,
                        "seed {seed}: VM {} at 0 % ran {got}",
                        sp.vm
                    );
                }
                let changed = regimes.iter().any(|r| r.0 == p && r.0 > 0);
                if matches!(sp.load, Load::Busy) && !changed {
                    busy_checks += 1;
                    assert!(
                        got + tol >= budget,
                        "seed {seed}: busy VM {} got {got} < {budget} in period at {p}",
                        sp.vm
                    );
                }
            }
            p += PERIOD;
        }
    }
    std::println!("{ran} machines, {changes} quota changes, {busy_checks} reservation checks");
    assert!(ran >= 50 && changes >= 300 && busy_checks >= 5000);
}

/// The bound of the module doc, checked over a sweep of latencies and queue positions.
#[test]
fn window_error_bound_holds_under_latency() {
    for jitter in [1, US, 2 * US, 10 * US, 50 * US] {
        for pcts in [&[50u32, 30, 20][..], &[25, 25, 25, 15, 10], &[70, 29, 1]] {
            let specs: Vec<Spec> = pcts
                .iter()
                .enumerate()
                .map(|(i, &p)| vm(i as u16 + 1, 1, p, Load::Busy))
                .collect();
            let mut sim = Sim::new(Config::new(1, PERIOD), &specs, None).with_jitter(jitter);
            let end = 3 * SECONDS;
            sim.run_until(end);
            for (i, &p) in pcts.iter().enumerate() {
                let ticks = max_window_error_ticks(&sim, i as u16 + 1, p * 100, 0, end);
                let bound = bound_ticks(i as u64 + 1, jitter);
                assert!(
                    ticks <= bound,
                    "L={jitter} {pcts:?} VM {}: {ticks} > {bound}",
                    i + 1
                );
            }
        }
    }
}

/// Random calls of the whole API: never a panic, `pick` only hands out runnable vCPUs not
/// running elsewhere, always with `until` after `now`, and consumption is what was charged.
#[test]
fn chaos() {
    let (mut runs, mut blocks) = (0u64, 0u64);
    for seed in 1..=200u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let pcpus = 1 + rng.below(4) as usize;
        let cfg = Config::new(pcpus, PERIOD).with_management(50, rng.below(30) as u8);
        let mut s = Scheduler::new(cfg).unwrap();
        let _ = s.add_management_vm(1 + rng.below(3) as u16);
        let mut charged: BTreeMap<VmId, u64> = BTreeMap::new();
        let mut running: Vec<Option<(VcpuId, u64)>> = vec![None; pcpus];
        let mut now = 0u64;
        let started_at = rng.below(5);
        for step in 0..3000 {
            if step == started_at {
                s.start(now);
            }
            now += rng.below(3 * MS);
            let vm = 1 + rng.below(6) as u16;
            let v = VcpuId::new(vm, rng.below(4) as u16);
            match rng.below(10) {
                0 => {
                    let _ = s.add_vm(vm, 1 + rng.below(5) as u16, rng.below(60) as u32);
                }
                1 if rng.below(4) == 0 => {
                    if s.remove_vm(vm).is_ok() {
                        charged.remove(&vm);
                        for r in running.iter_mut() {
                            if r.is_some_and(|r| r.0.vm == vm) {
                                *r = None;
                            }
                        }
                    }
                }
                2 => {
                    let mut set = QuotaSet::new();
                    for _ in 0..rng.below(4) {
                        set.set(1 + rng.below(7) as u16, rng.below(70) as u32);
                    }
                    let _ = s.apply_at_next_period(&set);
                }
                3 => {
                    s.power_on(v, now);
                }
                4 => s.power_off(v, now),
                5 => {
                    let _ = s.wake(v, now);
                }
                _ => {
                    let c = rng.below(pcpus as u64) as usize;
                    if let Some((r, from)) = running[c].take() {
                        s.charge(r, from, now);
                        if s.stats(r.vm, now).is_some() {
                            *charged.entry(r.vm).or_default() += now - from;
                        }
                        if rng.below(3) == 0 {
                            let wake = (rng.below(2) == 0).then(|| now + rng.below(30 * MS));
                            s.block(r, now, wake);
                            blocks += 1;
                        }
                    }
                    let d = s.pick(c, now);
                    assert!(d.until > now, "seed {seed}");
                    if let Some(r) = d.run {
                        assert_eq!(s.state(r), Some(VcpuState::Runnable), "seed {seed}");
                        assert_eq!(s.placement(r), Some(c), "seed {seed}");
                        for (o, x) in running.iter().enumerate() {
                            assert!(o == c || x.is_none_or(|x| x.0 != r), "seed {seed}");
                        }
                        running[c] = Some((r, now));
                        runs += 1;
                    }
                }
            }
        }
        for (&vm, &c) in &charged {
            assert_eq!(s.stats(vm, now).unwrap().consumed, c, "seed {seed} VM {vm}");
        }
        let quotas = s.next_quotas();
        assert!(quotas.iter().map(|q| q.1 as u32).sum::<u32>() <= 100);
    }
    std::println!("chaos: {runs} runs handed out, {blocks} blocks");
    assert!(runs > 20_000 && blocks > 5_000);
}

#[test]
fn a_yield_hands_the_cpu_to_another_runnable_vcpu_and_only_then_back() {
    let mut s = Scheduler::new(Config::new(1, PERIOD)).unwrap();
    s.add_vm(1, 1, 50).unwrap();
    s.add_vm(2, 1, 50).unwrap();
    s.start(0);
    let (a, b) = (VcpuId::new(1, 0), VcpuId::new(2, 0));
    s.power_on(a, 0);
    s.power_on(b, 0);
    let first = s.pick(0, 0).run.unwrap();
    s.charge(first, 0, 10);
    // A plain pick keeps the VM in queue order with budget (no switch)...
    assert_eq!(s.pick(0, 10).run, Some(first));
    s.charge(first, 10, 20);
    // ...a yield switches to the other one...
    let other = s.pick_after_yield(0, 20).run.unwrap();
    assert_ne!(other, first);
    s.charge(other, 20, 30);
    // ...and a yielder alone on its CPU runs again.
    s.block(first, 30, None);
    assert_eq!(s.pick_after_yield(0, 30).run, Some(other));
}

/// Yields at pseudo-random instants, through the fast lane when it applies: shares in every
/// 100 ms window stay within the bound, and the accounting matches the intervals run.
#[test]
fn yields_through_the_fast_lane_keep_shares_and_accounting_exact() {
    for pcpus in [1usize, 2] {
        let mut s = Scheduler::new(Config::new(pcpus, PERIOD)).unwrap();
        let pcts = [(1u16, 50u32), (2, 30), (3, 20)];
        for &(vm, pct) in &pcts {
            s.add_vm(vm, 1, pct).unwrap();
        }
        // Every decision that runs a vCPU carries its tag, through either path.
        let tag = |id: VcpuId| 1000 + id.vm as usize;
        for &(vm, _) in &pcts {
            s.set_tag(VcpuId::new(vm, 0), tag(VcpuId::new(vm, 0)))
                .unwrap();
        }
        assert_eq!(
            s.set_tag(VcpuId::new(9, 0), 1),
            Err(QuotaError::UnknownVm(9))
        );
        s.start(0);
        for &(vm, _) in &pcts {
            s.power_on(VcpuId::new(vm, 0), 0);
        }
        let mut rng = 0x1234_5678_u64;
        let mut next_rand = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let end = 10 * WINDOW;
        let mut log: BTreeMap<VmId, Vec<(u64, u64)>> = BTreeMap::new();
        let mut fast = 0u64;
        // Per CPU: since when it runs what, the decision, and when its vCPU will yield. The
        // CPU with the earliest event goes next, so time only moves forward.
        let mut cpus: Vec<(u64, Decision, u64)> = (0..pcpus)
            .map(|c| {
                let d = s.pick(c, 0);
                (0, d, 10 * US + next_rand() % (490 * US))
            })
            .collect();
        loop {
            let (cpu, t) = cpus
                .iter()
                .enumerate()
                .map(|(c, &(_, d, y))| {
                    (
                        c,
                        if d.run.is_some() {
                            y.min(d.until)
                        } else {
                            d.until
                        },
                    )
                })
                .min_by_key(|&(_, t)| t)
                .unwrap();
            if t >= end {
                break;
            }
            let (now, d, yield_at) = cpus[cpu];
            let next = match d.run {
                None => s.pick(cpu, t),
                Some(run) => {
                    log.entry(run.vm).or_default().push((now, t));
                    if t == yield_at && t < d.until {
                        match s.yield_fast(cpu, now, t) {
                            Some(fd) => {
                                fast += 1;
                                fd
                            }
                            None => {
                                s.charge(run, now, t);
                                s.pick_after_yield(cpu, t)
                            }
                        }
                    } else {
                        s.charge(run, now, t);
                        s.pick(cpu, t)
                    }
                }
            };
            assert_eq!(next.tag, next.run.map_or(0, tag));
            let y = if t == yield_at || d.run.is_none() || next.run != d.run {
                t + 10 * US + next_rand() % (490 * US)
            } else {
                yield_at
            };
            cpus[cpu] = (t, next, y);
        }
        // What still runs at the end.
        for &(now, d, _) in &cpus {
            if let Some(run) = d.run {
                log.entry(run.vm).or_default().push((now, end));
                s.charge(run, now, end);
            }
        }
        assert!(fast > 1000, "the fast lane was used {fast} times");
        for &(vm, pct) in &pcts {
            let runs = &log[&vm];
            let total: u64 = runs.iter().map(|(a, b)| b - a).sum();
            assert_eq!(s.stats(vm, end).unwrap().consumed, total, "VM {vm}");
            for w in 0..10 {
                let (ws, we) = (w * WINDOW, (w + 1) * WINDOW);
                let got: u64 = runs
                    .iter()
                    .map(|&(a, b)| b.min(we).saturating_sub(a.max(ws)))
                    .sum();
                let share = got as f64 * 100.0 / (WINDOW * pcpus as u64) as f64;
                assert!(
                    (share - pct as f64).abs() <= 0.5,
                    "{pcpus} CPUs, VM {vm}, window {w}: {share:.3}% for {pct}%"
                );
            }
        }
    }
}
