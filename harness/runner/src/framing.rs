//! Parsing the console transcript (see `docs/architecture.md`, "Console framing").
//!
//! Pure functions: one console line in, one [`ConsoleLine`] out. The result logic lives in
//! [`crate::monitor`].

/// One line of the physical console.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConsoleLine {
    /// `#HV <event> key=value ...`: a hypervisor record.
    Hv(HvRecord),
    /// `<vm>| <text>`: a line a guest printed, with the harness event it carries, if any.
    Guest {
        vm: String,
        text: String,
        event: Option<HtEvent>,
    },
    /// Anything else: hypervisor log lines (`[INFO] ...`), QEMU noise, partial lines.
    Other(String),
}

/// A hypervisor record: `#HV <event> <rest>`, with `rest` split into `key=value` fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HvRecord {
    pub event: String,
    /// Everything after the event name (the message of `#HV panic <message>`).
    pub rest: String,
    /// The `key=value` words of `rest`, in order (words without `=` are skipped).
    pub fields: Vec<(String, String)>,
}

impl HvRecord {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// A harness event inside a guest line (`#HT <event> ...`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HtEvent {
    Begin {
        tests: Option<usize>,
    },
    List(String),
    Run(String),
    Pass(String),
    Fail {
        test: String,
        message: String,
    },
    ExpectStop(String),
    Metric {
        name: String,
        value: String,
    },
    Done {
        passed: Option<usize>,
        failed: Option<usize>,
    },
    /// A `#HT` line this runner does not understand (kept for the log, otherwise ignored).
    Unknown(String),
}

/// Parses one console line (without its line terminator; a trailing `\r` is ignored).
pub fn parse_line(line: &str) -> ConsoleLine {
    let line = line.trim_end_matches(['\r', '\n']);
    if let Some(rest) = line.strip_prefix("#HV ") {
        return ConsoleLine::Hv(parse_hv(rest));
    }
    if let Some((vm, text)) = split_guest_line(line) {
        let event = text.strip_prefix("#HT ").map(parse_ht);
        return ConsoleLine::Guest {
            vm: vm.to_string(),
            text: text.to_string(),
            event,
        };
    }
    ConsoleLine::Other(line.to_string())
}

fn parse_hv(rest: &str) -> HvRecord {
    let rest = rest.trim_start();
    let (event, rest) = rest.split_once(' ').unwrap_or((rest, ""));
    let rest = rest.trim();
    HvRecord {
        event: event.to_string(),
        rest: rest.to_string(),
        fields: key_values(rest),
    }
}

fn key_values(s: &str) -> Vec<(String, String)> {
    s.split_whitespace()
        .filter_map(|w| w.split_once('='))
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `<name>| <text>` where the name is a valid VM name (`[A-Za-z0-9_-]{1,31}`).
fn split_guest_line(line: &str) -> Option<(&str, &str)> {
    let bar = line.find('|')?;
    let name = &line[..bar];
    let valid = !name.is_empty()
        && name.len() < 32
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_');
    if !valid {
        return None;
    }
    let text = &line[bar + 1..];
    Some((name, text.strip_prefix(' ').unwrap_or(text)))
}

fn parse_ht(s: &str) -> HtEvent {
    let s = s.trim();
    let (event, rest) = s.split_once(' ').unwrap_or((s, ""));
    let rest = rest.trim();
    let name = || rest.split_whitespace().next().map(str::to_string);
    let num = |key: &str| {
        key_values(rest)
            .into_iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.parse().ok())
    };
    let unknown = || HtEvent::Unknown(s.to_string());
    match event {
        "begin" => HtEvent::Begin {
            tests: num("tests"),
        },
        "list" => name().map_or_else(unknown, HtEvent::List),
        "run" => name().map_or_else(unknown, HtEvent::Run),
        "pass" => name().map_or_else(unknown, HtEvent::Pass),
        "expect-stop" => name().map_or_else(unknown, HtEvent::ExpectStop),
        "fail" => match rest.split_once(char::is_whitespace) {
            Some((test, message)) => HtEvent::Fail {
                test: test.to_string(),
                message: message.trim().to_string(),
            },
            None if !rest.is_empty() => HtEvent::Fail {
                test: rest.to_string(),
                message: String::new(),
            },
            None => unknown(),
        },
        "metric" => match rest.split_once('=') {
            Some((name, value)) if !name.trim().is_empty() && !value.trim().is_empty() => {
                HtEvent::Metric {
                    name: name.trim().to_string(),
                    value: value.trim().to_string(),
                }
            }
            _ => unknown(),
        },
        "done" => HtEvent::Done {
            passed: num("passed"),
            failed: num("failed"),
        },
        _ => unknown(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guest(vm: &str, text: &str, event: Option<HtEvent>) -> ConsoleLine {
        ConsoleLine::Guest {
            vm: vm.into(),
            text: text.into(),
            event,
        }
    }

    #[test]
    fn hypervisor_records() {
        let ConsoleLine::Hv(r) = parse_line(
            "#HV vm-fault id=2 name=attacker vcpu=0 ipa=0x50001000 access=read esr=0x92000007 elr=0x80000123\r",
        ) else {
            panic!("not a record")
        };
        assert_eq!(r.event, "vm-fault");
        assert_eq!(r.get("name"), Some("attacker"));
        assert_eq!(r.get("ipa"), Some("0x50001000"));
        assert_eq!(r.get("access"), Some("read"));
        assert_eq!(r.get("missing"), None);

        let ConsoleLine::Hv(r) = parse_line("#HV panic at src/x.rs:3: oh no a=b") else {
            panic!()
        };
        assert_eq!(r.event, "panic");
        assert_eq!(r.rest, "at src/x.rs:3: oh no a=b");

        let ConsoleLine::Hv(r) = parse_line("#HV all-stopped") else {
            panic!()
        };
        assert_eq!((r.event.as_str(), r.rest.as_str()), ("all-stopped", ""));
    }

    #[test]
    fn records_must_start_the_line() {
        assert_eq!(
            parse_line(" #HV panic x"),
            ConsoleLine::Other(" #HV panic x".into())
        );
        assert_eq!(
            parse_line("[INFO] #HV boot"),
            ConsoleLine::Other("[INFO] #HV boot".into())
        );
        // A guest cannot forge a record: its line carries its name.
        assert_eq!(
            parse_line("evil| #HV panic x"),
            guest("evil", "#HV panic x", None)
        );
    }

    #[test]
    fn guest_lines_and_events() {
        assert_eq!(
            parse_line("alpha| hello | world"),
            guest("alpha", "hello | world", None)
        );
        assert_eq!(parse_line("alpha|"), guest("alpha", "", None));
        assert_eq!(
            parse_line("bad name| x"),
            ConsoleLine::Other("bad name| x".into())
        );
        assert_eq!(parse_line("| x"), ConsoleLine::Other("| x".into()));
        let ev = |l: &str| match parse_line(l) {
            ConsoleLine::Guest { event: Some(e), .. } => e,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            ev("b| #HT begin tests=3"),
            HtEvent::Begin { tests: Some(3) }
        );
        assert_eq!(
            ev("b| #HT list psci_version"),
            HtEvent::List("psci_version".into())
        );
        assert_eq!(
            ev("b| #HT run psci_version"),
            HtEvent::Run("psci_version".into())
        );
        assert_eq!(
            ev("b| #HT pass psci_version\r"),
            HtEvent::Pass("psci_version".into())
        );
        assert_eq!(
            ev("b| #HT fail t expected 1, got 2 <&>"),
            HtEvent::Fail {
                test: "t".into(),
                message: "expected 1, got 2 <&>".into()
            }
        );
        assert_eq!(
            ev("b| #HT fail t"),
            HtEvent::Fail {
                test: "t".into(),
                message: "".into()
            }
        );
        assert_eq!(ev("b| #HT expect-stop t"), HtEvent::ExpectStop("t".into()));
        assert_eq!(
            ev("b| #HT metric hvc_null_cycles=1234.5"),
            HtEvent::Metric {
                name: "hvc_null_cycles".into(),
                value: "1234.5".into()
            }
        );
        assert_eq!(
            ev("b| #HT done passed=2 failed=1"),
            HtEvent::Done {
                passed: Some(2),
                failed: Some(1)
            }
        );
        assert_eq!(
            ev("b| #HT frobnicate"),
            HtEvent::Unknown("frobnicate".into())
        );
        assert_eq!(ev("b| #HT run"), HtEvent::Unknown("run".into()));
        assert_eq!(ev("b| #HT metric x"), HtEvent::Unknown("metric x".into()));
        // `#HT` must start the guest text.
        assert_eq!(
            parse_line("b| say #HT pass t"),
            guest("b", "say #HT pass t", None)
        );
    }
}
