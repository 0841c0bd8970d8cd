//! Helpers shared by the agent tests: a device with two images, command shortcuts, and
//! snapshots to check that a failed command changed nothing.

use abi::mgmt::ImageFormat;

use crate::dm::{Command, Outcome, StatusCode};
use crate::hv::mock::{MockHypervisor, MockState, MIB};
use crate::persist::{Saved, Store};
use crate::tree::schema::Format;
use crate::tree::Tree;
use crate::{Agent, AgentConfig};

/// The configured server: the one the default ACLs trust.
pub const S: &str = "virmo-server";

pub type A = Agent<MockHypervisor>;

/// A device with a Linux image (id 1, "debian", 128 MiB by default) and an ELF one (id 2,
/// "rtos", 16 MiB).
pub fn hv() -> MockHypervisor {
    MockHypervisor::new()
        .with_image(1, ImageFormat::Linux, 128 * MIB, "debian")
        .with_image(2, ImageFormat::Elf, 16 * MIB, "rtos")
}

pub fn boot(hv: MockHypervisor) -> A {
    Agent::boot(hv, AgentConfig::default())
}

pub fn agent() -> A {
    let mut a = boot(hv());
    a.take_notices();
    a
}

pub fn run(a: &mut A, cmd: Command) -> Outcome {
    a.execute(S, &cmd)
}

/// Runs `cmd`, which must succeed; returns its text.
#[track_caller]
pub fn ok(a: &mut A, cmd: Command) -> String {
    let o = run(a, cmd.clone());
    assert_eq!(o.code, StatusCode::Ok, "{cmd:?} -> {o:?}");
    o.text
}

#[track_caller]
pub fn get(a: &mut A, uri: &str) -> String {
    ok(a, Command::get(uri))
}

/// Runs `cmd`, which must fail with `expected`; returns the reason.
#[track_caller]
pub fn fails(a: &mut A, cmd: Command, expected: u16) -> String {
    let o = run(a, cmd.clone());
    assert_eq!(o.code.code(), expected, "{cmd:?} -> {o:?}");
    o.text
}

pub fn add(uri: &str) -> Command {
    Command::add(uri, None, "")
}

pub fn add_value(uri: &str, format: Format, value: &str) -> Command {
    Command::add(uri, Some(format), value)
}

/// Adds `VirMO/<x>` and sets its CreateParams (no Exec).
#[track_caller]
pub fn prepare_vm(a: &mut A, x: &str, params: &str) {
    ok(a, add(&format!("VirMO/{x}")));
    ok(
        a,
        Command::replace(&format!("VirMO/{x}/CreateParams"), params),
    );
}

/// Adds `VirMO/<x>`, sets CreateParams, Execs Create; returns the hypervisor handle.
#[track_caller]
pub fn new_vm(a: &mut A, x: &str, params: &str) -> u32 {
    prepare_vm(a, x, params);
    ok(a, Command::exec(&format!("VirMO/{x}/Operations/Create")));
    get(a, &format!("VirMO/{x}/Ext/Handle")).parse().unwrap()
}

pub fn exec(a: &mut A, x: &str, op: &str) -> Outcome {
    run(a, Command::exec(&format!("VirMO/{x}/Operations/{op}")))
}

pub fn state(a: &mut A, x: &str) -> String {
    get(a, &format!("VirMO/{x}/State"))
}

/// The tree, the hypervisor's VMs and images, and the newest saved copy of the tree, to compare
/// before and after a command. (The saved copy is compared by content: a command that saves
/// ahead and then restores writes the same tree into the other slot.)
#[derive(Debug, PartialEq)]
pub struct Snap {
    pub tree: Tree,
    pub hv: MockState,
    pub saved: Option<Saved>,
}

/// The newest valid copy in the persistent area of `hv`.
pub fn saved_copy(hv: &MockHypervisor) -> Option<Saved> {
    Store::open(&mut hv.clone()).1.ok()
}

pub fn snap(a: &A) -> Snap {
    let mut hv = a.hv().state();
    hv.store.clear();
    Snap {
        tree: a.tree().clone(),
        hv,
        saved: saved_copy(a.hv()),
    }
}

/// The tree without the `Ext/LastError` values (the one node a failed command writes).
pub fn without_last_error(t: &Tree) -> Tree {
    let mut t = t.clone();
    let paths: Vec<String> = t
        .iter()
        .filter(|(p, _)| p.ends_with("/Ext/LastError"))
        .map(|(p, _)| p.clone())
        .collect();
    for p in paths {
        t.set_value(&p, "");
    }
    t
}

/// Asserts that nothing but LastError changed since `before`.
#[track_caller]
pub fn assert_unchanged(a: &A, before: &Snap) {
    let now = snap(a);
    assert_eq!(now.hv, before.hv, "the hypervisor changed");
    assert_eq!(now.saved, before.saved, "the saved copy changed");
    assert_eq!(
        without_last_error(a.tree()),
        without_last_error(&before.tree),
        "the tree changed"
    );
}

pub fn last_error(a: &A, x: &str) -> String {
    a.tree()
        .value(&format!("VirMO/{x}/Ext/LastError"))
        .unwrap_or_default()
        .to_string()
}
