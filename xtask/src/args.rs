//! Command-line parsing. Every mistake is found here, before anything is built or started, and
//! reported as a [`Usage`] error (exit status 2).

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use harness_runner::suites::ALL_SUITES;
use regex::Regex;

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
  run [options]              build, then boot the demo (VMs alpha and beta) in QEMU
      --timeout SECS         stop after SECS seconds (default: none)
      --expect REGEX         succeed once a console line matched REGEX (repeatable: all must match)
      --smp N                QEMU CPUs, 1 to 8 (default 2)
      --gic 2|3              GIC version (default 3)
      --icount               run QEMU with -icount shift=0,sleep=off
  test [options]             host tests, then every harness suite in QEMU
      --suite NAME           run only this suite (repeatable)
      --skip-host            skip the host tests (scripts/fetch-dtbs.sh, cargo test --workspace)
      --jobs N               suites run at once, 1 or 2 (default 2)
  bench                      run the bench suite, merge its figures into target/bench/results.json
  help                       this text
";

#[derive(Debug)]
pub enum Command {
    Build,
    Run(RunOpts),
    Test(TestOpts),
    Bench,
    Help,
}

#[derive(Debug)]
pub struct RunOpts {
    pub timeout: Option<Duration>,
    pub expects: Vec<Regex>,
    pub smp: u32,
    pub gic: u32,
    pub icount: bool,
    // Issue 3 adds `--vm kernel=PATH,...` here: a list of VMs replacing the demo.
}

impl Default for RunOpts {
    fn default() -> Self {
        RunOpts {
            timeout: None,
            expects: Vec::new(),
            smp: 2,
            gic: 3,
            icount: false,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct TestOpts {
    pub suites: Vec<String>,
    pub skip_host: bool,
    pub jobs: usize,
}

impl Default for TestOpts {
    fn default() -> Self {
        TestOpts {
            suites: Vec::new(),
            skip_host: false,
            jobs: 2,
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
        "bench" => no_flags(&mut w, "bench").map(|()| Command::Bench),
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

fn parse_run(w: &mut Words) -> Result<RunOpts, Usage> {
    let mut o = RunOpts::default();
    while let Some((flag, inline)) = w.next_flag()? {
        match flag.as_str() {
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
                    "2" | "v2" => return Err(usage("--gic 2: GICv2 is not supported yet")),
                    _ => return Err(usage(format!("--gic must be 2 or 3, not `{v}`"))),
                };
            }
            "--icount" => {
                Words::no_value(&flag, inline)?;
                o.icount = true;
            }
            _ => return Err(usage(format!("`run` has no option `{flag}`"))),
        }
    }
    Ok(o)
}

fn parse_test(w: &mut Words) -> Result<TestOpts, Usage> {
    let mut o = TestOpts::default();
    while let Some((flag, inline)) = w.next_flag()? {
        match flag.as_str() {
            "--suite" => {
                let v = w.value(&flag, inline)?;
                if !ALL_SUITES.contains(&v.as_str()) {
                    return Err(usage(format!(
                        "unknown suite `{v}` (suites: {})",
                        ALL_SUITES.join(", ")
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
        assert_eq!(
            run("run --timeout 0.5").timeout,
            Some(Duration::from_millis(500))
        );
    }

    #[test]
    fn run_errors() {
        assert_eq!(err("run --gic 2"), "--gic 2: GICv2 is not supported yet");
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
    }

    #[test]
    fn other_commands() {
        assert!(matches!(p("build"), Ok(Command::Build)));
        assert!(matches!(p("bench"), Ok(Command::Bench)));
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
                jobs: 1
            }
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
