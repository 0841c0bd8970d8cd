//! Which VM the physical console's input goes to, switched by an escape sequence.
//!
//! Owns: the routing decision for every byte typed on the physical console. Input goes to one
//! VM at a time; at boot that is the first VM created. The escape character is Ctrl-]
//! (0x1D, the telnet escape, which no shell binds):
//!
//! | keys             | effect                                                           |
//! |------------------|------------------------------------------------------------------|
//! | Ctrl-] `1`..`9`  | input goes to VM n, counting VMs in the order they were created  |
//! | Ctrl-] `?`       | shows which VM has input and the list of VMs                     |
//! | Ctrl-] `s`       | prints every VM's CPU accounting (`#HV sched-stats` records)     |
//! | Ctrl-] Ctrl-]    | sends one Ctrl-] to the VM that has input                        |
//! | Ctrl-] other     | nothing: both bytes are dropped, with a notice                   |
//!
//! Only the first nine VMs can be selected. Selecting a VM that does not exist changes
//! nothing (and gets a notice).
//!
//! Never prints and never touches a VM: it returns an `InputEvent` and the caller delivers the
//! byte (e.g. `Pl011::push_input`) or prints the notice, the list or `HELP`. VMs are numbered
//! by index, 0-based, in creation order (index = VM id - 1 for the VMs created at boot).

/// The escape character, Ctrl-] (ASCII GS).
pub const ESCAPE: u8 = 0x1D;
/// After `ESCAPE`, the key that asks for the help and the VM list.
pub const HELP_KEY: u8 = b'?';
/// After `ESCAPE`, the key that asks for the VMs' CPU accounting (docs/scheduler.md).
pub const STATS_KEY: u8 = b's';
/// How many VMs the digits can reach: `1`..`9`.
pub const SELECTABLE_VMS: usize = 9;

/// What the caller prints for `InputEvent::ShowHelp`, before the list of VMs.
pub const HELP: &str = "console input: Ctrl-] 1-9 selects VM n (creation order), \
Ctrl-] ? shows this, Ctrl-] s prints the VMs' CPU accounting, Ctrl-] Ctrl-] sends Ctrl-]";

/// What to do with one input byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputEvent {
    /// Deliver `byte` to the VM with index `vm`.
    ToVm { vm: usize, byte: u8 },
    /// Input now goes to the VM with index `vm` (it may be the one that already had it).
    Switched { vm: usize },
    /// Print `HELP`, which VM has input (`InputSwitch::current`) and the list of VMs.
    ShowHelp,
    /// Print every VM's CPU accounting (`sched::print_stats`).
    ShowStats,
    /// `byte` followed the escape but means nothing (or names a VM that does not exist): it
    /// was dropped; tell the user.
    Invalid { byte: u8 },
}

pub struct InputSwitch {
    vm_count: usize,
    current: usize,
    /// The previous byte was `ESCAPE`.
    escaped: bool,
}

impl InputSwitch {
    /// Input starts with the first VM (index 0). With no VM at all, bytes are dropped.
    /// The number of VMs changed (created or deleted): the digits reach the new ones. If the
    /// VM that had input is gone, input goes to the first VM.
    pub fn set_vm_count(&mut self, vm_count: usize) {
        self.vm_count = vm_count;
        if self.current >= vm_count {
            self.current = 0;
        }
    }

    pub fn new(vm_count: usize) -> Self {
        InputSwitch {
            vm_count,
            current: 0,
            escaped: false,
        }
    }

    /// The index of the VM that has input.
    pub fn current(&self) -> usize {
        self.current
    }

    /// Routes one byte from the physical console. `None`: nothing to do (the byte started an
    /// escape sequence, or there is no VM to give it to).
    pub fn feed(&mut self, byte: u8) -> Option<InputEvent> {
        if !self.escaped {
            if byte == ESCAPE {
                self.escaped = true;
                return None;
            }
            return self.to_current(byte);
        }
        self.escaped = false;
        match byte {
            ESCAPE => self.to_current(ESCAPE),
            HELP_KEY => Some(InputEvent::ShowHelp),
            STATS_KEY => Some(InputEvent::ShowStats),
            b'1'..=b'9' => {
                let vm = usize::from(byte - b'1');
                if vm < self.vm_count.min(SELECTABLE_VMS) {
                    self.current = vm;
                    Some(InputEvent::Switched { vm })
                } else {
                    Some(InputEvent::Invalid { byte })
                }
            }
            _ => Some(InputEvent::Invalid { byte }),
        }
    }

    fn to_current(&self, byte: u8) -> Option<InputEvent> {
        (self.current < self.vm_count).then_some(InputEvent::ToVm {
            vm: self.current,
            byte,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(s: &mut InputSwitch, bytes: &[u8]) -> Vec<InputEvent> {
        bytes.iter().filter_map(|&b| s.feed(b)).collect()
    }

    fn to(vm: usize, byte: u8) -> InputEvent {
        InputEvent::ToVm { vm, byte }
    }

    #[test]
    fn input_starts_with_the_first_vm() {
        let mut s = InputSwitch::new(2);
        assert_eq!(s.current(), 0);
        assert_eq!(
            feed_all(&mut s, b"ls\n"),
            [to(0, b'l'), to(0, b's'), to(0, b'\n')]
        );
    }

    #[test]
    fn escape_and_digit_switch_vms() {
        let mut s = InputSwitch::new(3);
        assert_eq!(s.feed(ESCAPE), None);
        assert_eq!(s.feed(b'3'), Some(InputEvent::Switched { vm: 2 }));
        assert_eq!(s.current(), 2);
        assert_eq!(s.feed(b'x'), Some(to(2, b'x')));
        assert_eq!(
            feed_all(&mut s, &[ESCAPE, b'1', b'y']),
            [InputEvent::Switched { vm: 0 }, to(0, b'y')]
        );
        // Selecting the VM that already has input says so again.
        assert_eq!(
            feed_all(&mut s, &[ESCAPE, b'1']),
            [InputEvent::Switched { vm: 0 }]
        );
    }

    #[test]
    fn digits_are_plain_input_without_the_escape() {
        let mut s = InputSwitch::new(3);
        assert_eq!(s.feed(b'2'), Some(to(0, b'2')));
        assert_eq!(s.current(), 0);
    }

    #[test]
    fn selecting_a_missing_vm_is_invalid_and_keeps_the_current_one() {
        let mut s = InputSwitch::new(2);
        assert_eq!(
            feed_all(&mut s, &[ESCAPE, b'2']),
            [InputEvent::Switched { vm: 1 }]
        );
        assert_eq!(
            feed_all(&mut s, &[ESCAPE, b'3']),
            [InputEvent::Invalid { byte: b'3' }]
        );
        assert_eq!(
            feed_all(&mut s, &[ESCAPE, b'0']),
            [InputEvent::Invalid { byte: b'0' }]
        );
        assert_eq!(s.current(), 1);
        assert_eq!(s.feed(b'a'), Some(to(1, b'a')));
    }

    #[test]
    fn only_nine_vms_are_selectable() {
        let mut s = InputSwitch::new(12);
        assert_eq!(
            feed_all(&mut s, &[ESCAPE, b'9']),
            [InputEvent::Switched { vm: 8 }]
        );
        assert_eq!(SELECTABLE_VMS, 9);
    }

    #[test]
    fn question_mark_asks_for_help() {
        let mut s = InputSwitch::new(2);
        assert_eq!(
            feed_all(&mut s, &[ESCAPE, HELP_KEY]),
            [InputEvent::ShowHelp]
        );
        assert_eq!(s.current(), 0);
        assert_eq!(s.feed(HELP_KEY), Some(to(0, b'?')), "a plain ? is input");
    }

    #[test]
    fn s_asks_for_the_accounting() {
        let mut s = InputSwitch::new(2);
        assert_eq!(
            feed_all(&mut s, &[ESCAPE, STATS_KEY]),
            [InputEvent::ShowStats]
        );
        assert_eq!(s.current(), 0);
        assert_eq!(s.feed(STATS_KEY), Some(to(0, b's')), "a plain s is input");
        assert_eq!(
            feed_all(&mut s, &[ESCAPE, b'S']),
            [InputEvent::Invalid { byte: b'S' }]
        );
        // Even with no VM: the accounting is the hypervisor's.
        let mut s = InputSwitch::new(0);
        assert_eq!(
            feed_all(&mut s, &[ESCAPE, STATS_KEY]),
            [InputEvent::ShowStats]
        );
    }

    #[test]
    fn double_escape_sends_one_literal_escape() {
        let mut s = InputSwitch::new(2);
        assert_eq!(feed_all(&mut s, &[ESCAPE, ESCAPE]), [to(0, ESCAPE)]);
        // The escape was consumed: the next byte is plain input again.
        assert_eq!(s.feed(b'1'), Some(to(0, b'1')));
        assert_eq!(
            feed_all(&mut s, &[ESCAPE, ESCAPE, ESCAPE, b'2']),
            [to(0, ESCAPE), InputEvent::Switched { vm: 1 }]
        );
    }

    #[test]
    fn anything_else_after_the_escape_is_dropped() {
        let mut s = InputSwitch::new(2);
        for b in [b'a', b'\n', 0x03, 0x7F, 0xFF] {
            assert_eq!(
                feed_all(&mut s, &[ESCAPE, b]),
                [InputEvent::Invalid { byte: b }]
            );
            assert_eq!(
                s.feed(b'z'),
                Some(to(0, b'z')),
                "back to plain input after {b:#x}"
            );
        }
    }

    #[test]
    fn a_trailing_escape_waits_for_the_next_byte() {
        let mut s = InputSwitch::new(2);
        assert_eq!(feed_all(&mut s, b"ab\x1d"), [to(0, b'a'), to(0, b'b')]);
        assert_eq!(s.feed(b'2'), Some(InputEvent::Switched { vm: 1 }));
    }

    #[test]
    fn vms_created_later_can_be_selected_and_a_deleted_one_gives_input_back() {
        // The management VM alone, then it creates a VM: Ctrl-] 2 must reach it.
        let mut s = InputSwitch::new(1);
        assert_eq!(
            feed_all(&mut s, &[ESCAPE, b'2']),
            [InputEvent::Invalid { byte: b'2' }]
        );
        s.set_vm_count(2);
        assert_eq!(
            feed_all(&mut s, &[ESCAPE, b'2', b'x']),
            [InputEvent::Switched { vm: 1 }, to(1, b'x')]
        );
        // It is deleted: input goes back to the first VM.
        s.set_vm_count(1);
        assert_eq!(s.current(), 0);
        assert_eq!(feed_all(&mut s, b"y"), [to(0, b'y')]);
    }

    #[test]
    fn without_vms_input_goes_nowhere() {
        let mut s = InputSwitch::new(0);
        assert_eq!(s.feed(b'a'), None);
        assert_eq!(feed_all(&mut s, &[ESCAPE, ESCAPE]), []);
        assert_eq!(
            feed_all(&mut s, &[ESCAPE, b'1']),
            [InputEvent::Invalid { byte: b'1' }]
        );
        assert_eq!(
            feed_all(&mut s, &[ESCAPE, HELP_KEY]),
            [InputEvent::ShowHelp]
        );
    }
}
