//! Test registration, checks, and the run loop that reports through the `#HT` framing.
//!
//! A test is a function registered with [`test!`](crate::test); the macro puts a [`TestDesc`]
//! into a `.ht_tests.<line>` linker section, which guest.ld keeps, sorts by line and brackets
//! with `__ht_tests_start` / `__ht_tests_end`, so [`run_tests`] finds every test, in source
//! order, without a list to maintain. A test returns [`TestResult`]; [`check!`](crate::check),
//! [`check_eq!`](crate::check_eq) and [`fail!`](crate::fail) print the failure (with file and
//! line) and return early.
//!
//! Tests run one after the other on the boot vCPU. A panic or an unexpected exception anywhere
//! ends the program: the current test fails, `#HT done` follows, and the VM powers off.

use core::fmt::{self, Display};

use crate::arch::{self, MAX_VCPUS};
use crate::console;
use crate::framing::{Event, NO_TEST};
use crate::psci;
use crate::sync::Shared;

/// A registered test. `#[repr(C)]`: the linker section is read back as an array of these.
#[repr(C)]
pub struct TestDesc {
    pub name: &'static str,
    pub run: fn() -> TestResult,
}

/// A test failed and its `#HT fail` line has been printed (only [`fail`] makes one).
#[derive(Debug)]
pub struct TestFailure {
    _reported: (),
}

pub type TestResult = Result<(), TestFailure>;

/// Defines a test and registers it: `test!(fn name() { ... })`. The body may use
/// [`check!`](crate::check), [`check_eq!`](crate::check_eq) and `?` on [`TestResult`]s.
#[macro_export]
macro_rules! test {
    ($(#[$attr:meta])* fn $name:ident() $body:block) => {
        $(#[$attr])*
        #[allow(unreachable_code)]
        fn $name() -> $crate::harness::TestResult {
            $body
            Ok(())
        }

        const _: () = {
            // One section per test, numbered by line, so that guest.ld can keep the tests in
            // the order they are written.
            #[used]
            #[link_section = concat!(".ht_tests.", line!())]
            static DESCRIPTOR: $crate::harness::TestDesc =
                $crate::harness::TestDesc { name: stringify!($name), run: $name };
        };
    };
}

/// `fail!("format", args...)`: prints `#HT fail <test> <file>:<line>: <message>` and returns
/// from the test.
#[macro_export]
macro_rules! fail {
    ($($message:tt)+) => {
        return Err($crate::harness::fail(file!(), line!(), format_args!($($message)+)))
    };
}

/// `check!(condition)` or `check!(condition, "format", args...)`: if the condition is false,
/// prints `#HT fail <test> <file>:<line>: <message>` and returns from the test.
#[macro_export]
macro_rules! check {
    ($condition:expr $(,)?) => {
        $crate::check!($condition, "{} failed", stringify!($condition))
    };
    ($condition:expr, $($message:tt)+) => {
        if !$condition {
            $crate::fail!($($message)+);
        }
    };
}

/// `check_eq!(left, right)` or `check_eq!(left, right, "format", args...)`: [`check!`] that
/// both are equal, printing both values (`Debug`) if not.
#[macro_export]
macro_rules! check_eq {
    ($left:expr, $right:expr $(,)?) => {
        match (&$left, &$right) {
            (left, right) => $crate::check!(
                *left == *right,
                "{} == {} failed: left={:?} right={:?}",
                stringify!($left),
                stringify!($right),
                left,
                right
            ),
        }
    };
    ($left:expr, $right:expr, $($message:tt)+) => {
        match (&$left, &$right) {
            (left, right) => $crate::check!(
                *left == *right,
                "{}: left={:?} right={:?}",
                format_args!($($message)+),
                left,
                right
            ),
        }
    };
}

// Written by the boot vCPU only; read by any vCPU that aborts.
static CURRENT_TEST: Shared<Option<&'static str>> = Shared::new(None);
static PASSED: Shared<usize> = Shared::new(0);
static FAILED: Shared<usize> = Shared::new(0);

/// The name of the running test, or `-` between tests.
pub fn current_test() -> &'static str {
    CURRENT_TEST.get().unwrap_or(NO_TEST)
}

fn emit(event: Event) {
    console::print_line(format_args!("{event}"));
}

/// Prints the failure of the current test; what [`check!`](crate::check) calls.
#[doc(hidden)]
pub fn fail(file: &str, line: u32, message: fmt::Arguments) -> TestFailure {
    emit(Event::Fail {
        test: current_test(),
        message: format_args!("{file}:{line}: {message}"),
    });
    TestFailure { _reported: () }
}

/// Announces that the hypervisor is about to stop this VM, and that this is `test` passing.
pub fn expect_stop(test: &str) {
    emit(Event::ExpectStop(test));
}

/// Reports a benchmark figure, `#HT metric <name>=<value>`.
pub fn metric(name: &str, value: impl Display) {
    emit(Event::Metric {
        name,
        value: &value,
    });
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    pub passed: usize,
    pub failed: usize,
}

/// Lists, then runs, `tests`, printing the framing for each.
pub fn run(tests: &'static [TestDesc]) -> Summary {
    emit(Event::Begin { tests: tests.len() });
    for test in tests {
        emit(Event::List(test.name));
    }
    for test in tests {
        CURRENT_TEST.set(Some(test.name));
        emit(Event::Run(test.name));
        match (test.run)() {
            Ok(()) => {
                PASSED.set(PASSED.get() + 1);
                emit(Event::Pass(test.name));
            }
            // `fail` has printed the reason.
            Err(TestFailure { .. }) => FAILED.set(FAILED.get() + 1),
        }
        CURRENT_TEST.set(None);
    }
    Summary {
        passed: PASSED.get(),
        failed: FAILED.get(),
    }
}

/// Every test registered with [`test!`](crate::test) in this program.
#[cfg(target_os = "none")]
pub fn registered_tests() -> &'static [TestDesc] {
    extern "C" {
        // Markers only: their addresses are what matters.
        static __ht_tests_start: [u8; 0];
        static __ht_tests_end: [u8; 0];
    }
    // SAFETY: guest.ld brackets the `.ht_tests` output section with these symbols; the section
    // only holds `TestDesc` statics from `test!`, each 8-byte aligned with a size that is a
    // multiple of 8, so they are laid out as an array.
    unsafe {
        let start = (&raw const __ht_tests_start).cast::<TestDesc>();
        let end = (&raw const __ht_tests_end).cast::<TestDesc>();
        let len = (end as usize - start as usize) / core::mem::size_of::<TestDesc>();
        core::slice::from_raw_parts(start, len)
    }
}

/// Host builds have no linker section to read.
#[cfg(not(target_os = "none"))]
pub fn registered_tests() -> &'static [TestDesc] {
    &[]
}

/// Runs every registered test, prints `#HT done`, and powers the VM off.
pub fn run_tests() -> ! {
    let summary = run(registered_tests());
    emit(Event::Done {
        passed: summary.passed,
        failed: summary.failed,
    });
    psci::system_off()
}

/// The main function of [`test_main!`](crate::test_main).
#[doc(hidden)]
pub fn run_tests_main(_dtb_ipa: u64) {
    run_tests()
}

/// Per vCPU: an abort is being reported, so a second one (a fault while reporting) must not
/// try again.
static ABORTING: [Shared<bool>; MAX_VCPUS] = [const { Shared::new(false) }; MAX_VCPUS];

/// Ends the program after a panic or an unexpected exception, on any vCPU: the current test
/// fails with `reason`, `#HT done` follows, and the VM powers off.
pub(crate) fn abort(reason: fmt::Arguments) -> ! {
    let aborting = &ABORTING[arch::vcpu_index()];
    if !aborting.get() {
        aborting.set(true);
        report_abort(reason);
    }
    psci::system_off()
}

fn report_abort(reason: fmt::Arguments) {
    let fail = Event::Fail {
        test: current_test(),
        message: reason,
    };
    console::print_line_unbuffered(format_args!("{fail}"));
    let done = Event::Done {
        passed: PASSED.get(),
        failed: FAILED.get() + 1,
    };
    console::print_line_unbuffered(format_args!("{done}"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::take_captured;

    crate::test!(
        fn passes() {
            let two = 2;
            check!(two > 1);
            check_eq!(two * 2, 4);
        }
    );

    crate::test!(
        fn fails_a_check() {
            check!(1 > 2, "one is not {}", "greater");
            unreachable!("check! returns from the test");
        }
    );

    crate::test!(
        fn fails_a_check_eq() {
            let x0: i64 = 0;
            check_eq!(x0, -1);
        }
    );

    crate::test!(
        fn fails_a_check_eq_with_message() {
            check_eq!(3u64, 4, "call {}", 7);
        }
    );

    crate::test!(
        fn propagates_with_question_mark() {
            fails_a_check()?;
        }
    );

    static TESTS: [TestDesc; 3] = [
        TestDesc {
            name: "passes",
            run: passes,
        },
        TestDesc {
            name: "fails_a_check",
            run: fails_a_check,
        },
        TestDesc {
            name: "passes_again",
            run: passes,
        },
    ];

    // One test only: the counters are global, and host tests run in parallel threads.
    #[test]
    fn runs_checks_and_reports_the_framing() {
        assert!(passes().is_ok());
        assert!(fails_a_check_eq().is_err());
        assert!(fails_a_check_eq_with_message().is_err());
        assert!(propagates_with_question_mark().is_err());
        let fails = take_captured();
        assert!(fails[0].starts_with("#HT fail - harness/guest-rt/src/harness.rs:"));
        assert!(
            fails[0].ends_with(": x0 == -1 failed: left=0 right=-1"),
            "{}",
            fails[0]
        );
        assert!(
            fails[1].ends_with(": call 7: left=3 right=4"),
            "{}",
            fails[1]
        );
        assert!(fails[2].ends_with(": one is not greater"), "{}", fails[2]);

        let summary = run(&TESTS);
        assert_eq!(
            summary,
            Summary {
                passed: 2,
                failed: 1
            }
        );
        let lines = take_captured();
        let fail_line = &lines[7];
        assert!(fail_line.starts_with("#HT fail fails_a_check harness/guest-rt/src/harness.rs:"));
        assert!(fail_line.ends_with(": one is not greater"));
        assert_eq!(
            lines
                .iter()
                .map(String::as_str)
                .filter(|l| !l.starts_with("#HT fail"))
                .collect::<Vec<_>>(),
            [
                "#HT begin tests=3",
                "#HT list passes",
                "#HT list fails_a_check",
                "#HT list passes_again",
                "#HT run passes",
                "#HT pass passes",
                "#HT run fails_a_check",
                "#HT run passes_again",
                "#HT pass passes_again",
            ]
        );
        assert_eq!(current_test(), NO_TEST);

        report_abort(format_args!("panic: boom\nsecond line"));
        assert_eq!(
            take_captured(),
            [
                "#HT fail - panic: boom second line",
                "#HT done passed=2 failed=2"
            ]
        );

        expect_stop("attack");
        metric(
            "hvc_null_el2_insns",
            crate::framing::Tenths::ratio(25, 10).unwrap(),
        );
        assert_eq!(
            take_captured(),
            [
                "#HT expect-stop attack",
                "#HT metric hvc_null_el2_insns=2.5"
            ]
        );
    }
}
