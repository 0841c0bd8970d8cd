//! Placement: which physical CPU's run queue each vCPU joins, and how each VM's demand is split
//! among the physical CPUs it is on.
//!
//! Demands and capacities are integers in 1/10 000 of one physical CPU (`CPU` is a whole one).
//! A layout is *feasible* when every physical CPU carries at most `CPU` of reservations: then
//! every reservation can be honoured inside every period, whatever order the VMs run in.
//!
//! Two steps:
//! 1. vCPUs to physical CPUs. A VM's vCPUs are spread (no two on one physical CPU while another
//!    has fewer of them), heaviest VMs (per vCPU) first, each onto the least loaded physical
//!    CPU it fits on. Tried in order: keep the current placement and place only new vCPUs;
//!    the same from scratch; plain first-fit decreasing (packs better, spreads worse).
//! 2. Demand to physical CPUs. In proportion to the VM's vCPUs on each physical CPU if that
//!    fits; otherwise a maximum flow (Edmonds–Karp) from VMs to the physical CPUs their vCPUs
//!    are on, which finds a feasible split whenever one exists for that placement: a VM whose
//!    vCPUs span several physical CPUs fills what the others leave.

use super::CPU;
use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;
use core::cmp::Reverse;

/// One VM as the planner sees it.
pub(super) struct Req<'a> {
    /// What the VM may use per period, in 1/10 000 of a physical CPU (already capped at one
    /// physical CPU per vCPU).
    pub demand: u32,
    /// Where each of its vCPUs is now (`None`: not placed yet). Its length is the vCPU count.
    pub current: &'a [Option<usize>],
}

/// A feasible layout: per VM, the physical CPU of each vCPU and the VM's reservation on each
/// physical CPU (1/10 000 of a CPU).
pub(super) struct Layout {
    pub place: Vec<Vec<usize>>,
    pub split: Vec<Vec<u32>>,
}

/// No layout found: VM `vm` (an index into the requests) could not get `missing` of its demand
/// (1/10 000 of a CPU) in the last attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Short {
    pub vm: usize,
    pub missing: u32,
}

#[derive(Clone, Copy)]
enum Mode {
    Spread,
    FirstFit,
}

/// Finds a feasible layout of `reqs` on `n` physical CPUs.
pub(super) fn plan(n: usize, reqs: &[Req]) -> Result<Layout, Short> {
    let keep: Vec<Vec<Option<usize>>> = reqs
        .iter()
        .map(|r| r.current.iter().map(|p| p.filter(|&c| c < n)).collect())
        .collect();
    let fresh: Vec<Vec<Option<usize>>> = reqs.iter().map(|r| vec![None; r.current.len()]).collect();
    let mut last = Short { vm: 0, missing: 0 };
    for (start, mode) in [
        (&keep, Mode::Spread),
        (&fresh, Mode::Spread),
        (&fresh, Mode::FirstFit),
    ] {
        let place = assign(n, reqs, start, mode);
        match split(n, reqs, &place) {
            Ok(split) => return Ok(Layout { place, split }),
            Err(short) => last = short,
        }
    }
    Err(last)
}

/// `plan`'s answer, found without its allocations, when only VM `new` has vCPUs to place and
/// the others stay where they are (adding a VM): `plan` then places `new`'s vCPUs with the
/// others' kept (its first attempt), and if the proportional split of every VM fits, that is
/// its layout. Here: `demand` and `vcpus` per VM, `place` the vCPUs' physical CPUs in VM order
/// (`new`'s slots are filled in); returns the split (VM × physical CPU, flat), or `None` if the
/// proportional split does not fit (or a physical CPU is out of range): `plan` must decide.
/// Checked against `plan` (`tests::plan_beside_is_plan`).
pub(super) fn plan_beside(
    n: usize,
    demand: &[u32],
    vcpus: &[usize],
    new: usize,
    place: &mut [usize],
) -> Option<Vec<u32>> {
    if n == 0 || n > super::MAX_PCPUS {
        return None;
    }
    let mut load = [0u64; super::MAX_PCPUS];
    let mut count = [0usize; super::MAX_PCPUS];
    let weight = |v: usize| (demand[v] as u64).div_ceil(vcpus[v].max(1) as u64);
    let mut at = 0;
    let mut new_at = 0;
    for (v, &k) in vcpus.iter().enumerate() {
        if v == new {
            new_at = at;
        } else {
            for &c in &place[at..at + k] {
                if c >= n {
                    return None;
                }
                load[c] += weight(v);
                count[c] += 1;
            }
        }
        at += k;
    }
    // As `assign` in `Mode::Spread` for the one VM with unplaced vCPUs.
    let w = weight(new);
    for i in 0..vcpus[new] {
        let placed = &place[new_at..new_at + i];
        let best = (0..n)
            .min_by_key(|&c| {
                let same = placed.iter().filter(|&&p| p == c).count();
                (load[c] + w > CPU as u64, same, load[c], count[c], c)
            })
            .unwrap_or(0);
        place[new_at + i] = best;
        load[best] += w;
        count[best] += 1;
    }
    // As `split` when the proportional split fits.
    let mut out = vec![0u32; vcpus.len() * n];
    let mut total = [0u64; super::MAX_PCPUS];
    let mut at = 0;
    for (v, &k) in vcpus.iter().enumerate() {
        let mut cnt = [0u32; super::MAX_PCPUS];
        for &c in &place[at..at + k] {
            cnt[c] += 1;
        }
        at += k;
        if k == 0 {
            continue;
        }
        let row = &mut out[v * n..(v + 1) * n];
        let mut given = 0u64;
        for c in 0..n {
            let share = demand[v] as u64 * cnt[c] as u64 / k as u64;
            row[c] = share as u32;
            given += share;
        }
        let mut left = demand[v] as u64 - given;
        for c in 0..n {
            if left == 0 {
                break;
            }
            if cnt[c] > 0 {
                row[c] += 1;
                left -= 1;
            }
        }
        for c in 0..n {
            if row[c] > CPU {
                return None;
            }
            total[c] += row[c] as u64;
        }
    }
    total[..n].iter().all(|&l| l <= CPU as u64).then_some(out)
}

/// The nominal weight of one vCPU of VM `v`: its demand shared evenly among its vCPUs.
fn weight(reqs: &[Req], v: usize) -> u64 {
    let k = reqs[v].current.len().max(1) as u64;
    (reqs[v].demand as u64).div_ceil(k)
}

fn assign(n: usize, reqs: &[Req], start: &[Vec<Option<usize>>], mode: Mode) -> Vec<Vec<usize>> {
    let mut load = vec![0u64; n];
    let mut count = vec![0usize; n];
    let mut place: Vec<Vec<Option<usize>>> = start.to_vec();
    for (v, p) in place.iter().enumerate() {
        for &c in p.iter().flatten() {
            load[c] += weight(reqs, v);
            count[c] += 1;
        }
    }
    let mut order: Vec<usize> = (0..reqs.len()).collect();
    order.sort_by_key(|&v| (Reverse(weight(reqs, v)), v));
    for v in order {
        let w = weight(reqs, v);
        for i in 0..place[v].len() {
            if place[v][i].is_some() {
                continue;
            }
            let same = |c: usize| place[v].iter().filter(|p| **p == Some(c)).count();
            let best = (0..n)
                .min_by_key(|&c| {
                    let misfit = load[c] + w > CPU as u64;
                    match mode {
                        Mode::Spread => (misfit, same(c), load[c], count[c], c),
                        Mode::FirstFit => (misfit, 0, 0, 0, c),
                    }
                })
                .unwrap_or(0);
            place[v][i] = Some(best);
            load[best] += w;
            count[best] += 1;
        }
    }
    place
        .into_iter()
        .map(|p| p.into_iter().map(|c| c.unwrap_or(0)).collect())
        .collect()
}

fn counts(n: usize, place: &[usize]) -> Vec<u32> {
    let mut cnt = vec![0u32; n];
    for &c in place {
        cnt[c] += 1;
    }
    cnt
}

fn split(n: usize, reqs: &[Req], place: &[Vec<usize>]) -> Result<Vec<Vec<u32>>, Short> {
    let mut out = vec![vec![0u32; n]; reqs.len()];
    let mut load = vec![0u64; n];
    let mut fits = true;
    for (v, req) in reqs.iter().enumerate() {
        let k = place[v].len() as u64;
        if k == 0 {
            continue;
        }
        let cnt = counts(n, &place[v]);
        let mut given = 0u64;
        for c in 0..n {
            let share = req.demand as u64 * cnt[c] as u64 / k;
            out[v][c] = share as u32;
            given += share;
        }
        // The remainder (fewer ticks than physical CPUs in use), one unit each.
        let mut left = req.demand as u64 - given;
        for c in 0..n {
            if left == 0 {
                break;
            }
            if cnt[c] > 0 {
                out[v][c] += 1;
                left -= 1;
            }
        }
        for c in 0..n {
            fits &= out[v][c] <= CPU;
            load[c] += out[v][c] as u64;
        }
    }
    if fits && load.iter().all(|&l| l <= CPU as u64) {
        return Ok(out);
    }
    max_flow(n, reqs, place)
}

/// Edmonds–Karp on source → VMs (demand) → physical CPUs they are on (one CPU each) → sink
/// (one CPU each).
fn max_flow(n: usize, reqs: &[Req], place: &[Vec<usize>]) -> Result<Vec<Vec<u32>>, Short> {
    let m = reqs.len();
    let nodes = m + n + 2;
    let (s, t) = (m + n, m + n + 1);
    let mut cap = vec![0u64; nodes * nodes];
    for (v, req) in reqs.iter().enumerate() {
        cap[s * nodes + v] = req.demand as u64;
        for (c, &k) in counts(n, &place[v]).iter().enumerate() {
            if k > 0 {
                cap[v * nodes + m + c] = CPU as u64;
            }
        }
    }
    for c in 0..n {
        cap[(m + c) * nodes + t] = CPU as u64;
    }
    let mut parent = vec![usize::MAX; nodes];
    let mut queue = VecDeque::new();
    loop {
        parent.fill(usize::MAX);
        parent[s] = s;
        queue.clear();
        queue.push_back(s);
        while let Some(u) = queue.pop_front() {
            for w in 0..nodes {
                if parent[w] == usize::MAX && cap[u * nodes + w] > 0 {
                    parent[w] = u;
                    queue.push_back(w);
                }
            }
        }
        if parent[t] == usize::MAX {
            break;
        }
        let mut bottleneck = u64::MAX;
        let mut w = t;
        while w != s {
            let u = parent[w];
            bottleneck = bottleneck.min(cap[u * nodes + w]);
            w = u;
        }
        let mut w = t;
        while w != s {
            let u = parent[w];
            cap[u * nodes + w] -= bottleneck;
            cap[w * nodes + u] += bottleneck;
            w = u;
        }
    }
    let mut out = vec![vec![0u32; n]; m];
    for (v, req) in reqs.iter().enumerate() {
        let cnt = counts(n, &place[v]);
        let mut got = 0u64;
        for c in 0..n {
            if cnt[c] > 0 {
                let flow = CPU as u64 - cap[v * nodes + m + c];
                out[v][c] = flow as u32;
                got += flow;
            }
        }
        if got < req.demand as u64 {
            return Err(Short {
                vm: v,
                missing: (req.demand as u64 - got) as u32,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `plan_beside`, whenever it answers, answers what `plan` does: random VMs (demands,
    /// vCPU counts, current places) with one new VM among them.
    #[test]
    fn plan_beside_is_plan() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rand = |m: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % m
        };
        let (mut answered, mut declined) = (0, 0);
        for _ in 0..20_000 {
            let n = 1 + rand(4) as usize;
            let vms = 1 + rand(6) as usize;
            let new = rand(vms as u64) as usize;
            let vcpus: Vec<usize> = (0..vms).map(|_| 1 + rand(4) as usize).collect();
            let demand: Vec<u32> = vcpus
                .iter()
                .map(|&k| (rand(1 + (CPU as u64 * k as u64) / 2)) as u32)
                .collect();
            let current: Vec<Vec<Option<usize>>> = vcpus
                .iter()
                .enumerate()
                .map(|(v, &k)| {
                    (0..k)
                        .map(|_| (v != new).then(|| rand(n as u64) as usize))
                        .collect()
                })
                .collect();
            let reqs: Vec<Req> = demand
                .iter()
                .zip(&current)
                .map(|(&d, c)| Req {
                    demand: d,
                    current: c,
                })
                .collect();
            let mut place: Vec<usize> = current.concat().iter().map(|p| p.unwrap_or(0)).collect();
            match plan_beside(n, &demand, &vcpus, new, &mut place) {
                Some(split) => {
                    answered += 1;
                    let layout = plan(n, &reqs).expect("plan finds what plan_beside found");
                    assert_eq!(layout.place.concat(), place);
                    assert_eq!(layout.split.concat(), split);
                }
                None => declined += 1,
            }
        }
        assert!(answered > 5_000 && declined > 500, "{answered} {declined}");
    }
}
