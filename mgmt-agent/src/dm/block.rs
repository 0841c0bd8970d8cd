//! Atomic and Sequence (OMA DM 1.3 Representation Protocol).
//!
//! Atomic: all commands or none. The tree is snapshotted and every hypervisor effect journaled;
//! at the first failure everything done so far is undone (newest first) and the tree restored.
//! The failed command keeps its status, every other one gets 216 (rolled back; also for those
//! never reached), or 516 if its hypervisor effect could not be undone (the tree is then
//! re-read from the hypervisor); the Atomic itself gets 507. Effects that cannot be undone
//! (Exec of a VM's or an image's Delete, PowerOff) are refused inside an Atomic with 406. A
//! successful Atomic is saved once, as a whole; if that save fails, everything is undone and
//! the Atomic gets 510.
//!
//! Sequence: the commands run in order, each one on its own as a single command would (and is
//! saved on its own); after the first failure the rest are not executed (215). The Sequence
//! itself gets 200.

use alloc::vec::Vec;

use super::{BlockOutcome, Command, DmError, Outcome, StatusCode};
use crate::agent::{save_error, Agent, Journal};
use crate::hv::Hypervisor;

impl<H: Hypervisor> Agent<H> {
    pub fn atomic(&mut self, server: &str, cmds: &[Command]) -> BlockOutcome {
        let before = self.tree.clone();
        self.journal = Some(Journal::default());
        let mut results = Vec::new();
        let mut failure: Option<(usize, DmError)> = None;
        for (i, cmd) in cmds.iter().enumerate() {
            if let Some(j) = &mut self.journal {
                j.cmd = i;
            }
            match self.run(server, cmd, true) {
                Ok(text) => results.push(Outcome::ok(text)),
                Err(e) => {
                    failure = Some((i, e));
                    break;
                }
            }
        }
        let journal = self.journal.take().unwrap_or_default();
        let (code, failure) = match failure {
            None => match self.persist() {
                Ok(_) => {
                    return BlockOutcome {
                        code: StatusCode::Ok,
                        results,
                    }
                }
                Err(e) => (StatusCode::DataStoreFailure, Err(save_error(e))),
            },
            Some(f) => (StatusCode::AtomicFailed, Ok(f)),
        };
        let not_undone = self.roll_back(before, journal.undo);
        let results = (0..cmds.len())
            .map(|i| match &failure {
                Ok((at, e)) if *at == i => e.outcome(),
                _ if not_undone.contains(&i) => Outcome {
                    code: StatusCode::RollbackFailed,
                    text: "its effect on the hypervisor could not be undone".into(),
                },
                Err(save) => Outcome {
                    code: StatusCode::RolledBack,
                    text: alloc::format!("rolled back: {}", save.reason),
                },
                Ok(_) => Outcome {
                    code: StatusCode::RolledBack,
                    text: "rolled back".into(),
                },
            })
            .collect();
        if let Ok((_, e)) = &failure {
            self.record_failure(e);
        }
        BlockOutcome { code, results }
    }

    pub fn sequence(&mut self, server: &str, cmds: &[Command]) -> BlockOutcome {
        let mut results: Vec<Outcome> = Vec::new();
        let mut failed = false;
        for cmd in cmds {
            if failed {
                results.push(Outcome {
                    code: StatusCode::NotExecuted,
                    text: "not executed: an earlier command of the Sequence failed".into(),
                });
                continue;
            }
            let outcome = self.execute(server, cmd);
            failed = !outcome.is_success();
            results.push(outcome);
        }
        BlockOutcome {
            code: StatusCode::Ok,
            results,
        }
    }
}
