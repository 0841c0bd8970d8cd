//! Judging CPU shares from the hypervisor's `#HV sched-window` records (docs/scheduler.md).
//!
//! A suite whose bundle sets `sched_trace_us` gets one record every that many microseconds
//! (at the first scheduling decision at or after each multiple, so a few microseconds late):
//! `#HV sched-window t=<counter ticks> vm<id>=<ticks consumed since boot> ...`. Two consecutive
//! records make a *window*; a VM's share of it is
//!
//! ```text
//! share = Δconsumed / (Δt × physical CPUs)        (of the whole device)
//! ```
//!
//! Only windows in which the VMs under test were all busy count: both records after the last
//! `#HT run <test>` of the busy VMs and before the first end (`#HT pass`/`fail`) of one of them.
//! With a `#HV quota-applied t=<ticks>` record (a run-time change), windows that end by `t`
//! are held to the old expectations and windows that start at or after `t` to the new ones:
//! the window that contains `t` is the only one not judged, so the new shares must hold from
//! the first window that starts after the change.
//!
//! Pure: [`judge`] takes what the monitor gathered from the transcript.

use std::fmt::Write;

use crate::suites::{ShareBound, ShareExpect, SharesCheck};

/// How far over its cap a VM may appear, in hundredths of a percentage point: a window's ends
/// are the instants its records were taken, microseconds after the period boundaries, so a
/// VM that runs first in each period can show a few microseconds more or less than its
/// budget (0.01 pp of a 100 ms window is 10 µs).
pub const CAP_SLACK_BP: f64 = 1.0;

/// One `#HV sched-window` record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    /// Its position in the transcript (line number).
    pub seq: u64,
    /// The physical counter when it was taken.
    pub t: u64,
    /// Ticks consumed since boot, per VM id.
    pub consumed: Vec<(u16, u64)>,
}

impl Window {
    /// Parses the fields of a `sched-window` record; `None` if `t` is missing or malformed.
    pub fn parse(seq: u64, fields: &[(String, String)]) -> Option<Window> {
        let mut t = None;
        let mut consumed = Vec::new();
        for (k, v) in fields {
            if k == "t" {
                t = Some(v.parse().ok()?);
            } else if let Some(id) = k.strip_prefix("vm") {
                consumed.push((id.parse().ok()?, v.parse().ok()?));
            }
        }
        Some(Window {
            seq,
            t: t?,
            consumed,
        })
    }

    fn of(&self, vm: u16) -> Option<u64> {
        self.consumed.iter().find(|(id, _)| *id == vm).map(|x| x.1)
    }
}

/// What the monitor gathered from a transcript for a shares check.
#[derive(Clone, Debug, Default)]
pub struct Evidence<'a> {
    /// Physical CPUs (`#HV boot cpus=`).
    pub cpus: Option<u32>,
    /// VM ids and names (`#HV vm-start`).
    pub vms: &'a [(u16, String)],
    pub windows: &'a [Window],
    /// `#HV quota-applied`: (seq, t) of each.
    pub changes: &'a [(u64, u64)],
    /// The seq of the last `#HT run` of the busy tests, if all ran.
    pub busy_from: Option<u64>,
    /// The seq of the first end of a busy test (none: the transcript ended first).
    pub busy_to: Option<u64>,
}

/// The verdict of a shares check.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub failure: Option<String>,
    /// The largest |share − expected| of a `Near` expectation in a judged window, in
    /// percentage points.
    pub max_error_pp: Option<f64>,
    /// Windows judged (old and new expectations).
    pub judged: (usize, usize),
}

fn pct(bp: u32) -> String {
    format!("{}.{:02}%", bp / 100, bp % 100)
}

/// Judges `check` on `ev`.
pub fn judge(check: &SharesCheck, ev: &Evidence) -> Verdict {
    let mut verdict = Verdict {
        failure: None,
        max_error_pp: None,
        judged: (0, 0),
    };
    let fail = |mut v: Verdict, why: String| {
        v.failure = Some(why);
        v
    };
    let Some(cpus) = ev.cpus.filter(|&c| c > 0) else {
        return fail(verdict, "no `#HV boot cpus=` record".into());
    };
    let Some(from) = ev.busy_from else {
        return fail(
            verdict,
            "the busy tests did not all start (no `#HT run` of each)".into(),
        );
    };
    let to = ev.busy_to.unwrap_or(u64::MAX);
    let id_of = |name: &str| ev.vms.iter().find(|(_, n)| n == name).map(|(id, _)| *id);
    let change = match (&check.after_change, ev.changes) {
        (None, _) => None,
        (Some(_), [(_, t)]) => Some(*t),
        (Some(_), []) => return fail(verdict, "no `#HV quota-applied` record".into()),
        (Some(_), many) => {
            return fail(
                verdict,
                format!("{} `#HV quota-applied` records, expected one", many.len()),
            )
        }
    };
    let inside: Vec<&Window> = ev
        .windows
        .iter()
        .filter(|w| w.seq > from && w.seq < to)
        .collect();
    let mut problems = Vec::new();
    let mut max_error: Option<f64> = None;
    for pair in inside.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        let expect = match change {
            Some(t) if a.t >= t => {
                verdict.judged.1 += 1;
                check.after_change.as_ref().expect("checked above")
            }
            Some(t) if b.t > t => continue, // the window with the change in it
            _ => {
                verdict.judged.0 += 1;
                &check.expect
            }
        };
        let span = b.t.saturating_sub(a.t) as f64 * cpus as f64;
        if span == 0.0 {
            problems.push(format!("records at t={} and t={} do not advance", a.t, b.t));
            continue;
        }
        for e in expect {
            let Some(id) = id_of(&e.vm) else {
                problems.push(format!("no `#HV vm-start` record for VM {}", e.vm));
                continue;
            };
            let (Some(ca), Some(cb)) = (a.of(id), b.of(id)) else {
                problems.push(format!("VM {} (vm{id}) missing from a record", e.vm));
                continue;
            };
            // In hundredths of a percent (bp) of the device.
            let share = cb.saturating_sub(ca) as f64 / span * 10_000.0;
            let (bad, want) = match e.bound {
                ShareBound::Near { bp, tolerance_bp } => {
                    let err = (share - bp as f64).abs() / 100.0;
                    max_error = Some(max_error.map_or(err, |m: f64| m.max(err)));
                    (
                        err * 100.0 > tolerance_bp as f64,
                        format!("{} ± {}", pct(bp), pct(tolerance_bp)),
                    )
                }
                ShareBound::AtMost { bp } => (
                    share > bp as f64 + CAP_SLACK_BP,
                    format!("at most {}", pct(bp)),
                ),
            };
            if bad {
                problems.push(format!(
                    "VM {} got {:.3}% of the device in the window t={}..{}, expected {want}",
                    e.vm,
                    share / 100.0,
                    a.t,
                    b.t
                ));
            }
        }
    }
    verdict.max_error_pp = max_error;
    let (old, new) = verdict.judged;
    if old < check.min_windows {
        problems.push(format!(
            "only {old} window(s) judged{}, at least {} needed (is `sched_trace_us` set, \
             and do the busy tests run long enough?)",
            if change.is_some() {
                " before the change"
            } else {
                ""
            },
            check.min_windows
        ));
    }
    if change.is_some() && new < check.min_windows {
        problems.push(format!(
            "only {new} window(s) judged after the change, at least {} needed",
            check.min_windows
        ));
    }
    if !problems.is_empty() {
        let mut why = format!("{} problem(s): ", problems.len());
        for (i, p) in problems.iter().take(5).enumerate() {
            let _ = write!(why, "{}{p}", if i > 0 { "; " } else { "" });
        }
        if problems.len() > 5 {
            let _ = write!(why, "; ...");
        }
        verdict.failure = Some(why);
    }
    verdict
}

/// The expectations for VMs at VirMO percentages `pcts` (name, percent) next to a
/// management VM of `mgmt_pct` percent of the device (0: no management VM), each within
/// `tolerance_bp`: `(100 − m) × p / 100` % of the device (docs/scheduler.md).
pub fn near(mgmt_pct: u32, pcts: &[(&str, u32)], tolerance_bp: u32) -> Vec<ShareExpect> {
    pcts.iter()
        .map(|&(vm, p)| ShareExpect {
            vm: vm.into(),
            bound: ShareBound::Near {
                bp: (100 - mgmt_pct) * p,
                tolerance_bp,
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(seq: u64, t: u64, consumed: &[(u16, u64)]) -> Window {
        Window {
            seq,
            t,
            consumed: consumed.to_vec(),
        }
    }

    fn vms() -> Vec<(u16, String)> {
        vec![(1, "a".into()), (2, "b".into())]
    }

    fn check(expect: Vec<ShareExpect>) -> SharesCheck {
        SharesCheck {
            name: "shares".into(),
            busy: vec![("a".into(), "spin".into()), ("b".into(), "spin".into())],
            expect,
            after_change: None,
            min_windows: 2,
            metric: None,
        }
    }

    /// Windows of 1000 ticks where a and b consume `per_window` each, from seq 10.
    fn steady(n: u64, a: u64, b: u64) -> Vec<Window> {
        (0..=n)
            .map(|i| window(10 + i, 5000 + 1000 * i, &[(1, a * i), (2, b * i)]))
            .collect()
    }

    fn ev<'a>(vms: &'a [(u16, String)], windows: &'a [Window], cpus: u32) -> Evidence<'a> {
        Evidence {
            cpus: Some(cpus),
            vms,
            windows,
            changes: &[],
            busy_from: Some(5),
            busy_to: Some(1000),
        }
    }

    #[test]
    fn parses_records() {
        let f = |s: &str| crate::framing::parse_line(s);
        let crate::framing::ConsoleLine::Hv(r) = f("#HV sched-window t=123 vm1=5 vm12=0") else {
            panic!()
        };
        assert_eq!(
            Window::parse(7, &r.fields),
            Some(window(7, 123, &[(1, 5), (12, 0)]))
        );
        assert_eq!(Window::parse(7, &[("vm1".into(), "5".into())]), None);
        assert_eq!(Window::parse(7, &[("t".into(), "x".into())]), None);
    }

    #[test]
    fn exact_shares_pass_and_errors_are_measured() {
        let vms = vms();
        // One CPU: a 600 of 1000 ticks, b 398.
        let windows = steady(4, 600, 398);
        let c = check(near(0, &[("a", 60), ("b", 40)], 50));
        let v = judge(&c, &ev(&vms, &windows, 1));
        assert_eq!(v.failure, None);
        assert_eq!(v.judged, (4, 0));
        assert!((v.max_error_pp.unwrap() - 0.2).abs() < 1e-9);
        // Two CPUs: the same consumption is half the share.
        let c = check(near(0, &[("a", 30), ("b", 20)], 50));
        assert_eq!(judge(&c, &ev(&vms, &windows, 2)).failure, None);
        // With a management VM at 10 %: 60 % of 90 % is 54 %.
        let c = check(near(10, &[("a", 60)], 50));
        let f = judge(&c, &ev(&vms, &windows, 1)).failure.unwrap();
        assert!(
            f.contains("VM a got 60.000% of the device in the window t=5000..6000, expected 54.00% ± 0.50%"),
            "{f}"
        );
    }

    #[test]
    fn only_windows_while_all_are_busy_count() {
        let vms = vms();
        let mut windows = steady(4, 600, 400);
        // A window before the start and one after the end that are way off.
        windows.insert(0, window(1, 4000, &[(1, 0), (2, 0)]));
        windows.push(window(2000, 90_000, &[(1, 0), (2, 0)]));
        let c = check(near(0, &[("a", 60), ("b", 40)], 50));
        let v = judge(&c, &ev(&vms, &windows, 1));
        assert_eq!((v.failure, v.judged), (None, (4, 0)));
        // Too few windows is a failure, not a pass.
        let mut e = ev(&vms, &windows, 1);
        e.busy_to = Some(12);
        let f = judge(&c, &e).failure.unwrap();
        assert!(f.contains("only 1 window(s) judged"), "{f}");
        e.busy_from = None;
        assert!(judge(&c, &e).failure.unwrap().contains("did not all start"));
    }

    #[test]
    fn caps() {
        let vms = vms();
        let windows = steady(3, 200, 0);
        let cap = |bp| {
            check(vec![ShareExpect {
                vm: "a".into(),
                bound: ShareBound::AtMost { bp },
            }])
        };
        assert_eq!(judge(&cap(2000), &ev(&vms, &windows, 1)).failure, None);
        let f = judge(&cap(1999 - CAP_SLACK_BP as u32), &ev(&vms, &windows, 1))
            .failure
            .unwrap();
        assert!(f.contains("expected at most 19.98%"), "{f}");
        // An idle VM: at most 0.5 %.
        let c = check(vec![ShareExpect {
            vm: "b".into(),
            bound: ShareBound::AtMost { bp: 50 },
        }]);
        let v = judge(&c, &ev(&vms, &windows, 1));
        assert_eq!((v.failure, v.max_error_pp), (None, None));
    }

    #[test]
    fn a_change_splits_the_windows() {
        let vms = vms();
        // 45/45 for windows 0..3, then the change at t = 8500 (inside window 3), then 72/18.
        let mut windows = Vec::new();
        let (mut a, mut b) = (0, 0);
        for i in 0..8u64 {
            windows.push(window(10 + i, 5000 + 1000 * i, &[(1, a), (2, b)]));
            let (da, db) = match i {
                0..=2 => (450, 450),
                3 => (600, 300), // the window with the change: not judged
                _ => (720, 180),
            };
            a += da;
            b += db;
        }
        let mut c = check(near(10, &[("a", 50), ("b", 50)], 50));
        c.after_change = Some(near(10, &[("a", 80), ("b", 20)], 50));
        let changes = [(14, 8500)];
        let mut e = ev(&vms, &windows, 1);
        e.changes = &changes;
        let v = judge(&c, &e);
        assert_eq!((v.failure, v.judged), (None, (3, 3)));
        // Not in force in the first whole window after it: fails.
        let late = [(14, 7500)];
        e.changes = &late;
        let f = judge(&c, &e).failure.unwrap();
        assert!(f.contains("VM a got 60.000%"), "{f}");
        // No change record at all.
        e.changes = &[];
        assert!(judge(&c, &e)
            .failure
            .unwrap()
            .contains("no `#HV quota-applied`"));
    }

    #[test]
    fn missing_evidence() {
        let vms = vms();
        let windows = steady(3, 600, 400);
        let c = check(near(0, &[("c", 60)], 50));
        let f = judge(&c, &ev(&vms, &windows, 1)).failure.unwrap();
        assert!(f.contains("no `#HV vm-start` record for VM c"), "{f}");
        let mut e = ev(&vms, &windows, 1);
        e.cpus = None;
        assert!(judge(&c, &e).failure.unwrap().contains("cpus="));
    }
}
