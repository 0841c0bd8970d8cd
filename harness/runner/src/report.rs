//! The cargo-test-style summary `cargo xtask test` prints.

use std::fmt::Write;
use std::time::Duration;

use crate::SuiteReport;

/// `test <suite>::<vm>::<test> ... ok|FAILED`, one line per case.
pub fn case_lines(r: &SuiteReport) -> String {
    let mut s = String::new();
    if let Some(why) = &r.skipped {
        for c in &r.cases {
            let _ = writeln!(s, "test {}::{} ... ignored, {why}", r.name, c.id());
        }
        return s;
    }
    for c in &r.cases {
        let verdict = if c.passed() { "ok" } else { "FAILED" };
        let _ = writeln!(s, "test {}::{} ... {verdict}", r.name, c.id());
    }
    s
}

/// The failures (each failed case's message, then the suite's last console lines) and the
/// closing `test result:` line.
pub fn summary(reports: &[SuiteReport], time: Duration) -> String {
    let passed: usize = reports.iter().map(|r| r.passed()).sum();
    let failed: usize = reports.iter().map(|r| r.failed()).sum();
    let ignored: usize = reports.iter().map(|r| r.ignored()).sum();
    let mut s = String::new();
    if failed > 0 {
        s.push_str("\nfailures:\n");
        for r in reports.iter().filter(|r| r.failed() > 0) {
            let _ = writeln!(s, "\n---- {} ----", r.name);
            for c in r.cases.iter().filter(|c| !c.passed()) {
                let _ = writeln!(
                    s,
                    "{}::{}: {}",
                    r.name,
                    c.id(),
                    c.failure.as_deref().unwrap_or("")
                );
            }
            let _ = writeln!(
                s,
                "last {} console lines (full log: {}):",
                r.tail.len(),
                r.log.display()
            );
            for line in &r.tail {
                let _ = writeln!(s, "    {line}");
            }
        }
        s.push_str("\nfailures:\n");
        for r in reports {
            for c in r.cases.iter().filter(|c| !c.passed()) {
                let _ = writeln!(s, "    {}::{}", r.name, c.id());
            }
        }
    }
    let verdict = if failed == 0 { "ok" } else { "FAILED" };
    let _ = writeln!(
        s,
        "\ntest result: {verdict}. {passed} passed; {failed} failed; {ignored} ignored; 0 measured; \
         0 filtered out; finished in {:.2}s",
        time.as_secs_f64()
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CaseResult;
    use std::path::PathBuf;

    fn report(failure: Option<&str>) -> SuiteReport {
        SuiteReport {
            name: "basics".into(),
            time: Duration::from_secs(2),
            cases: vec![
                CaseResult {
                    vm: Some("basics".into()),
                    name: "a".into(),
                    failure: None,
                    time: Duration::ZERO,
                    output: vec![],
                },
                CaseResult {
                    vm: Some("basics".into()),
                    name: "b".into(),
                    failure: failure.map(str::to_string),
                    time: Duration::ZERO,
                    output: vec![],
                },
            ],
            tail: vec!["basics| #HT fail b boom".into()],
            log: PathBuf::from("target/harness/basics.log"),
            metrics: vec![],
            skipped: None,
        }
    }

    #[test]
    fn lists_and_summarises() {
        let ok = report(None);
        assert_eq!(
            case_lines(&ok),
            "test basics::basics::a ... ok\ntest basics::basics::b ... ok\n"
        );
        let s = summary(&[ok], Duration::from_millis(1234));
        assert_eq!(
            s,
            "\ntest result: ok. 2 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.23s\n"
        );

        let bad = report(Some("boom"));
        assert!(case_lines(&bad).ends_with("test basics::basics::b ... FAILED\n"));
        let s = summary(&[bad], Duration::from_secs(1));
        assert!(
            s.contains("---- basics ----\nbasics::basics::b: boom\n"),
            "{s}"
        );
        assert!(s.contains("    basics| #HT fail b boom\n"), "{s}");
        assert!(s.contains("full log: target/harness/basics.log"), "{s}");
        assert!(
            s.ends_with("test result: FAILED. 1 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.00s\n"),
            "{s}"
        );
    }

    #[test]
    fn skipped_suites_are_ignored() {
        let skipped = SuiteReport::skipped(
            "linux_boot_gicv3",
            "pending: no vGIC",
            std::path::Path::new("target/harness"),
        );
        assert_eq!(
            case_lines(&skipped),
            "test linux_boot_gicv3::linux::ready ... ignored, pending: no vGIC\n"
        );
        let s = summary(&[report(None), skipped], Duration::from_secs(1));
        assert!(
            s.ends_with("test result: ok. 2 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 1.00s\n"),
            "{s}"
        );
    }
}
