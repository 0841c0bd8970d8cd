//! Command-line parsing. Every mistake is found here, before anything is built or started, and
//! reported as a [`Usage`] error (exit status 2).

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use harness_runner::all_suite_names;
use regex::Regex;

use crate::vmarg::{self, VmArg};

/// A command-line mistake.
#[derive(Debug, PartialEq, Eq)]
pub struct Usage(pub String);

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn usage(msg: impl Into<String>) -> Usage {
    Usage(msg.into())
}

pub const HELP: &str = "\
usage: cargo xtask <command> [options]

commands:
  build                      build the hypervisor and guests, write target/images/hypervisor.bin
  run [options]              build, then boot VMs in QEMU and show their consoles; by default two
                             Debian Linux VMs, alpha and beta (docs/linux-guests.md)
      --vm SPEC              a VM instead of the default demo (repeatable):
                             kernel=PATH[,format=linux|elf|raw][,initrd=PATH|none][,ram=SIZE]
                             [,base=ADDR][,load=ADDR][,vcpus=N][,cpu=PCT][,name=NAME]
                             [,cmdline=STRING] (cmdline last: it takes the rest, commas too)
                             cpu: the VM's CPU percentage (0-100, capped and reserved,
                             docs/scheduler.md; default: an equal part of what is left)
                             format: detected from the image (ELF, arm64 Image) unless given;
                             a raw binary needs format=raw (docs/guest-images.md)
                             defaults: initrd: the harness initramfs for Linux, none otherwise;
                             ram=256M, base=0x40000000 (the RAM's IPA), load=base+64K (raw
                             only), vcpus=1, name=vm<N>, cmdline=console=ttyAMA0;
                             SIZE: bytes or 256M, 1G; ADDR: 0x4000_0000 or decimal
      --demo linux|guests    the default demo: two Linux VMs (linux), or the test-guest demo
                             (guests: alpha and beta running the `demo` program)
      --timeout SECS         stop after SECS seconds (default: none)
      --expect REGEX         succeed once a console line matched REGEX (repeatable: all must match)
      --smp N                QEMU CPUs, 1 to 8 (default 2)
      --gic 2|3              GIC version of QEMU's machine (default 3)
      --icount               run QEMU with -icount shift=0,sleep=off
      --keep-disk            boot target/disk/disk.img as the last run left it (default: a new
                             disk holding the run's images and the test guests; docs/disk.md)
      --mgmt-script FILE     boot only the management VM (the VMs named, or the demo, go to the
                             image store), feed FILE's lines to its shell, print each command
                             with its answer, and stop when FILE ends (docs/virmo.md); exits
                             non-zero if the hypervisor panics or an answer does not come
      --fault-injection      let the management shell's `fault ram|disk|image N` make the
                             hypervisor fail on purpose (tests of the roll-backs)
      --mgmt-pmu             give the management VM the PMU: the hypervisor's records of
                             management calls then say how many EL2 instructions they took
  test [options]             host tests, then every harness suite in QEMU
      --suite NAME           run only this suite (repeatable)
      --skip-host            skip the host tests (scripts/fetch-dtbs.sh, cargo test --workspace)
      --jobs N               suites run at once, 1 or 2 (default 2)
      --include-pending      also run the pending suites (listed as skipped otherwise)
  bench                      run the bench suites (docs/benchmarks.md), merge their figures into
                             target/bench/results.json
      --mgmt-only            only the management figures (create, suspend, resume)
  help                       this text
";

#[derive(Debug)]
pub enum Command {
    Build,
    Run(RunOpts),
    Test(TestOpts),
    /// `mgmt_only`: `--mgmt-only`, only the management figures.
    Bench {
        mgmt_only: bool,
    },
    Help,
}

/// What `cargo xtask run` boots when no `--vm` is given.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Demo {
    /// Two Linux VMs, `alpha` and `beta`.
    #[default]
    Linux,
    /// The test-guest demo: `alpha` and `beta` running the `demo` program.
    Guests,
}

#[derive(Debug)]
pub struct RunOpts {
    pub timeout: Option<Duration>,
    pub expects: Vec<Regex>,
    pub smp: u32,
    pub gic: u32,
    pub icount: bool,
    /// `--keep-disk`: boot the disk of the previous run as it is (docs/disk.md).
    pub keep_disk: bool,
    /// `--vm`: VMs (any image format) replacing the demo.
    pub vms: Vec<VmArg>,
    pub demo: Demo,
    /// `--mgmt-script FILE`: only the management VM boots (the VMs named go to the image
    /// store); FILE's lines are fed to its shell and answered one by one.
    pub mgmt_script: Option<std::path::PathBuf>,
    /// `--fault-injection`: the hypervisor serves `HV_MGMT_FAULT_INJECT` (the shell's `fault`
    /// command), for trying the roll-backs by hand.
    pub fault_injection: bool,
    /// `--mgmt-pmu`: the management VM gets the PMU and counts EL2 instructions, so that the
    /// hypervisor's records of management calls carry `el2_insns=` (docs/benchmarks.md).
    pub mgmt_pmu: bool,
}

impl Default for RunOpts {
    fn default() -> Self {
        RunOpts {
            timeout: None,
            expects: Vec::new(),
            smp: 2,
            gic: 3,
            icount: false,
            keep_disk: false,
            vms: Vec::new(),
            demo: Demo::default(),
            mgmt_script: None,
            fault_injection: false,
            mgmt_pmu: false,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct TestOpts {
    pub suites: Vec<String>,
    pub skip_host: bool,
    pub jobs: usize,
    /// Run the pending suites too (`harness_runner::PENDING_SUITES`).
    pub include_pending: bool,
}

impl Default for TestOpts {
    fn default() -> Self {
        TestOpts {
            suites: Vec::new(),
            skip_host: false,
            jobs: 2,
            include_pending: false,
        }
    }
}

/// The words after the command: `--flag value`, `--flag=value` and bare `--flag`.
struct Words {
    words: VecDeque<String>,
}

impl Words {
    /// The next flag and its `=value`, if given inline.
    fn next_flag(&mut self) -> Result<Option<(String, Option<String>)>, Usage> {
        let Some(word) = self.words.pop_front() else {
            return Ok(None);
        };
        if !word.starts_with("--") {
            return Err(usage(format!("unexpected argument `{word}`")));
        }
        Ok(Some(match word.split_once('=') {
            Some((flag, value)) => (flag.to_string(), Some(value.to_string())),
            None => (word, None),
        }))
    }

    fn value(&mut self, flag: &str, inline: Option<String>) -> Result<String, Usage> {
        match inline {
            Some(v) => Ok(v),
            None => match self.words.pop_front() {
                Some(v) if !v.starts_with("--") => Ok(v),
                _ => Err(usage(format!("{flag} needs a value"))),
            },
        }
    }

    fn no_value(flag: &str, inline: Option<String>) -> Result<(), Usage> {
        match inline {
            Some(_) => Err(usage(format!("{flag} takes no value"))),
            None => Ok(()),
        }
    }
}

fn number<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, Usage> {
    v.parse()
        .map_err(|_| usage(format!("{flag}: `{v}` is not a number")))
}

pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Command, Usage> {
    let mut args = args.into_iter();
    let Some(command) = args.next() else {
        return Err(usage("no command given"));
    };
    let mut w = Words {
        words: args.collect(),
    };
    match command.as_str() {
        "build" => no_flags(&mut w, "build").map(|()| Command::Build),
        "bench" => parse_bench(&mut w),
        "help" | "--help" | "-h" => Ok(Command::Help),
        "run" => parse_run(&mut w).map(Command::Run),
        "test" => parse_test(&mut w).map(Command::Test),
        other => Err(usage(format!("unknown command `{other}`"))),
    }
}

fn no_flags(w: &mut Words, command: &str) -> Result<(), Usage> {
    match w.next_flag()? {
        Some((flag, _)) => Err(usage(format!("`{command}` takes no option `{flag}`"))),
        None => Ok(()),
    }
}

fn parse_bench(w: &mut Words) -> Result<Command, Usage> {
    let mut mgmt_only = false;
    while let Some((flag, inline)) = w.next_flag()? {
        match flag.as_str() {
            "--mgmt-only" => {
                Words::no_value(&flag, inline)?;
                mgmt_only = true;
            }
            _ => return Err(usage(format!("`bench` takes no option `{flag}`"))),
        }
    }
    Ok(Command::Bench { mgmt_only })
}

fn parse_run(w: &mut Words) -> Result<RunOpts, Usage> {
    let mut o = RunOpts::default();
    let mut demo_given = false;
    while let Some((flag, inline)) = w.next_flag()? {
        match flag.as_str() {
            "--vm" => {
                let v = w.value(&flag, inline)?;
                o.vms.push(vmarg::parse_vm(&v, o.vms.len() + 1)?);
            }
            "--demo" => {
                let v = w.value(&flag, inline)?;
                o.demo = match v.as_str() {
                    "linux" => Demo::Linux,
                    "guests" => Demo::Guests,
                    _ => return Err(usage(format!("--demo must be linux or guests, not `{v}`"))),
                };
                demo_given = true;
            }
            "--timeout" => {
                let v = w.value(&flag, inline)?;
                let secs: f64 = number(&flag, &v)?;
                if !(secs > 0.0 && secs <= 86_400.0) {
                    return Err(usage(format!(
                        "--timeout: {v} is not between 0 and 86400 seconds"
                    )));
                }
                o.timeout = Some(Duration::from_secs_f64(secs));
            }
            "--expect" => {
                let v = w.value(&flag, inline)?;
                let re =
                    Regex::new(&v).map_err(|e| usage(format!("--expect: bad regex `{v}`: {e}")))?;
                o.expects.push(re);
            }
            "--smp" => {
                let v = w.value(&flag, inline)?;
                let n: u32 = number(&flag, &v)?;
                if !(1..=8).contains(&n) {
                    return Err(usage(format!("--smp must be 1 to 8, not {n}")));
                }
                o.smp = n;
            }
            "--gic" => {
                let v = w.value(&flag, inline)?;
                o.gic = match v.as_str() {
                    "3" | "v3" => 3,
                    "2" | "v2" => 2,
                    _ => return Err(usage(format!("--gic must be 2 or 3, not `{v}`"))),
                };
            }
            "--icount" => {
                Words::no_value(&flag, inline)?;
                o.icount = true;
            }
            "--keep-disk" => {
                Words::no_value(&flag, inline)?;
                o.keep_disk = true;
            }
            "--mgmt-pmu" => {
                Words::no_value(&flag, inline)?;
                o.mgmt_pmu = true;
            }
            "--fault-injection" => {
                Words::no_value(&flag, inline)?;
                o.fault_injection = true;
            }
            "--mgmt-script" => {
                let v = w.value(&flag, inline)?;
                let path = std::path::PathBuf::from(&v);
                if !path.is_file() {
                    return Err(usage(format!("--mgmt-script: {v}: no such file")));
                }
                if o.mgmt_script.replace(path).is_some() {
                    return Err(usage("--mgmt-script given twice"));
                }
            }
            _ => return Err(usage(format!("`run` has no option `{flag}`"))),
        }
    }
    if demo_given && !o.vms.is_empty() {
        return Err(usage(
            "--demo and --vm cannot be combined: --vm replaces the demo",
        ));
    }
    vmarg::check_vms(&o.vms)?;
    Ok(o)
}

fn parse_test(w: &mut Words) -> Result<TestOpts, Usage> {
    let mut o = TestOpts::default();
    while let Some((flag, inline)) = w.next_flag()? {
        match flag.as_str() {
            "--suite" => {
                let v = w.value(&flag, inline)?;
                let all = all_suite_names();
                if !all.contains(&v.as_str()) {
                    return Err(usage(format!(
                        "unknown suite `{v}` (suites: {})",
                        all.join(", ")
                    )));
                }
                if !o.suites.contains(&v) {
                    o.suites.push(v);
                }
            }
            "--skip-host" => {
                Words::no_value(&flag, inline)?;
                o.skip_host = true;
            }
            "--include-pending" => {
                Words::no_value(&flag, inline)?;
                o.include_pending = true;
            }
            "--jobs" => {
                let v = w.value(&flag, inline)?;
                o.jobs = number(&flag, &v)?;
                if !(1..=2).contains(&o.jobs) {
                    return Err(usage(format!(
                        "--jobs must be 1 or 2 (the machine has 2 cores), not {v}"
                    )));
                }
            }
            _ => return Err(usage(format!("`test` has no option `{flag}`"))),
        }
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &str) -> Result<Command, Usage> {
        parse(args.split_whitespace().map(str::to_string))
    }

    fn run(args: &str) -> RunOpts {
        match p(args) {
            Ok(Command::Run(o)) => o,
            other => panic!("{other:?}"),
        }
    }

    fn err(args: &str) -> String {
        p(args).unwrap_err().0
    }

    #[test]
    fn run_defaults_and_options() {
        let o = run("run");
        assert_eq!(
            (o.timeout, o.expects.len(), o.smp, o.gic, o.icount),
            (None, 0, 2, 3, false)
        );
        let o = run("run --timeout 90 --expect alpha.*done --expect=beta --smp=4 --gic 3 --icount");
        assert_eq!(o.timeout, Some(Duration::from_secs(90)));
        assert_eq!(
            o.expects.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
            ["alpha.*done", "beta"]
        );
        assert_eq!((o.smp, o.gic, o.icount), (4, 3, true));
        assert_eq!((o.vms.len(), o.demo), (0, Demo::Linux));
        assert_eq!(run("run --gic 2").gic, 2);
        assert_eq!(run("run --gic=v2").gic, 2);
        assert_eq!(run("run --demo guests").demo, Demo::Guests);
        assert!(run("run --keep-disk").keep_disk && !run("run").keep_disk);
        assert_eq!(run("run --demo=linux").demo, Demo::Linux);
        let o = run("run --vm kernel=/k,name=a --vm=kernel=/j,vcpus=2,ram=1G --smp 2");
        assert_eq!(
            o.vms
                .iter()
                .map(|v| (v.name.as_str(), v.vcpus, v.ram))
                .collect::<Vec<_>>(),
            [("a", 1, 256 << 20), ("vm2", 2, 1 << 30)]
        );
        assert_eq!(
            run("run --timeout 0.5").timeout,
            Some(Duration::from_millis(500))
        );
    }

    #[test]
    fn run_errors() {
        assert_eq!(err("run --gic 4"), "--gic must be 2 or 3, not `4`");
        assert_eq!(err("run --smp 0"), "--smp must be 1 to 8, not 0");
        assert_eq!(err("run --smp 9"), "--smp must be 1 to 8, not 9");
        assert_eq!(err("run --smp x"), "--smp: `x` is not a number");
        assert_eq!(err("run --timeout"), "--timeout needs a value");
        assert_eq!(err("run --timeout --smp 1"), "--timeout needs a value");
        assert_eq!(
            err("run --timeout -3"),
            "--timeout: -3 is not between 0 and 86400 seconds"
        );
        assert_eq!(
            err("run --timeout=-3"),
            "--timeout: -3 is not between 0 and 86400 seconds"
        );
        assert_eq!(
            err("run --timeout 0"),
            "--timeout: 0 is not between 0 and 86400 seconds"
        );
        assert!(err("run --expect (").starts_with("--expect: bad regex `(`"));
        assert_eq!(err("run --icount=1"), "--icount takes no value");
        assert_eq!(err("run --frob"), "`run` has no option `--frob`");
        assert_eq!(err("run stray"), "unexpected argument `stray`");
        assert_eq!(
            err("run --demo shiny"),
            "--demo must be linux or guests, not `shiny`"
        );
        assert_eq!(
            err("run --demo guests --vm kernel=k"),
            "--demo and --vm cannot be combined: --vm replaces the demo"
        );
        assert_eq!(err("run --vm"), "--vm needs a value");
        assert_eq!(
            err("run --vm kernel=k,colour=blue"),
            "--vm: unknown key `colour` (keys: kernel, format, initrd, ram, base, load, vcpus, cpu, cmdline, name)"
        );
        assert_eq!(
            err("run --vm ram=1G"),
            "--vm `ram=1G`: `kernel=PATH` is missing"
        );
        assert_eq!(
            err("run --vm kernel=k --vm kernel=j,name=vm1"),
            "--vm: two VMs are named `vm1`"
        );
        assert!(err("run --vm kernel=k,ram=8G").contains("more than the 8 GiB QEMU machine"));
    }

    #[test]
    fn other_commands() {
        assert!(matches!(p("build"), Ok(Command::Build)));
        assert!(matches!(
            p("bench"),
            Ok(Command::Bench { mgmt_only: false })
        ));
        assert!(matches!(
            p("bench --mgmt-only"),
            Ok(Command::Bench { mgmt_only: true })
        ));
        assert!(matches!(p("help"), Ok(Command::Help)));
        assert!(matches!(p("--help"), Ok(Command::Help)));
        assert_eq!(err("bench --x"), "`bench` takes no option `--x`");
        assert_eq!(err("frob"), "unknown command `frob`");
        assert_eq!(err(""), "no command given");
        let Ok(Command::Test(o)) =
            p("test --suite basics --suite=two_vms_two_cpus --suite basics --skip-host --jobs 1")
        else {
            panic!()
        };
        assert_eq!(
            o,
            TestOpts {
                suites: vec!["basics".into(), "two_vms_two_cpus".into()],
                skip_host: true,
                jobs: 1,
                include_pending: false,
            }
        );
        let Ok(Command::Test(o)) = p("test --include-pending --suite linux_sleep_1s") else {
            panic!()
        };
        assert!(o.include_pending);
        assert_eq!(o.suites, ["linux_sleep_1s"]);
        assert_eq!(
            err("test --include-pending=1"),
            "--include-pending takes no value"
        );
        let Ok(Command::Test(o)) = p("test") else {
            panic!()
        };
        assert_eq!(o, TestOpts::default());
        assert!(err("test --suite nope").starts_with("unknown suite `nope` (suites: basics, "));
        assert_eq!(
            err("test --jobs 3"),
            "--jobs must be 1 or 2 (the machine has 2 cores), not 3"
        );
    }
}
