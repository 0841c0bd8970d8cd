//! JUnit XML, the format CI systems read test results from.

use std::fmt::Write;

use crate::SuiteReport;

/// Escapes `s` for an XML attribute value. Characters XML 1.0 cannot carry (most control
/// characters) are written as `\u{..}`; tabs and line breaks become character references so
/// that the value keeps them.
pub fn escape(s: &str) -> String {
    escape_with(s, true)
}

/// Escapes `s` for XML element text (line breaks and tabs stay as they are).
pub fn escape_text(s: &str) -> String {
    escape_with(s, false)
}

fn escape_with(s: &str, attribute: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' | '\t' if !attribute => out.push(c),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// One `<testsuite>` per suite, one `<testcase classname=suite name="vm::test">` per case.
pub fn junit_xml(reports: &[SuiteReport]) -> String {
    let tests: usize = reports.iter().map(|r| r.cases.len()).sum();
    let failures: usize = reports.iter().map(|r| r.failed()).sum();
    let skipped: usize = reports.iter().map(|r| r.ignored()).sum();
    let time: f64 = reports.iter().map(|r| r.time.as_secs_f64()).sum();
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(x, "<testsuites name=\"harness\" tests=\"{tests}\" failures=\"{failures}\" skipped=\"{skipped}\" time=\"{time:.3}\">");
    for r in reports {
        let _ = writeln!(
            x,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"0\" skipped=\"{}\" time=\"{:.3}\">",
            escape(&r.name),
            r.cases.len(),
            r.failed(),
            r.ignored(),
            r.time.as_secs_f64()
        );
        if let Some(why) = &r.skipped {
            for c in &r.cases {
                let _ = writeln!(
                    x,
                    "    <testcase classname=\"{}\" name=\"{}\" time=\"0.000\">\n      <skipped message=\"{}\"/>\n    </testcase>",
                    escape(&r.name),
                    escape(&c.id()),
                    escape(why)
                );
            }
            x.push_str("  </testsuite>\n");
            continue;
        }
        for c in &r.cases {
            let _ = write!(
                x,
                "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\"",
                escape(&r.name),
                escape(&c.id()),
                c.time.as_secs_f64()
            );
            if c.failure.is_none() && c.output.is_empty() {
                x.push_str("/>\n");
                continue;
            }
            x.push_str(">\n");
            if let Some(f) = &c.failure {
                let mut body = f.clone();
                if !r.tail.is_empty() {
                    let _ = write!(
                        body,
                        "\n\nlast console lines of the suite ({}):\n",
                        r.log.display()
                    );
                    body.push_str(&r.tail.join("\n"));
                }
                let _ = writeln!(
                    x,
                    "      <failure message=\"{}\">{}</failure>",
                    escape(f),
                    escape_text(&body)
                );
            }
            if !c.output.is_empty() {
                let _ = writeln!(
                    x,
                    "      <system-out>{}</system-out>",
                    escape_text(&c.output.join("\n"))
                );
            }
            x.push_str("    </testcase>\n");
        }
        x.push_str("  </testsuite>\n");
    }
    x.push_str("</testsuites>\n");
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CaseResult;
    use std::path::PathBuf;
    use std::time::Duration;

    #[test]
    fn escapes_everything_xml_cannot_carry() {
        assert_eq!(escape("a<b>&\"c'"), "a&lt;b&gt;&amp;&quot;c&apos;");
        assert_eq!(escape("x\ny\tz\r"), "x&#10;y&#9;z&#13;");
        assert_eq!(escape("\x1b[31mred\0"), "\\u{1b}[31mred\\u{0}");
        assert_eq!(escape("ünïcødé ✓"), "ünïcødé ✓");
        assert_eq!(escape_text("a\n\tb\r<"), "a\n\tb&#13;&lt;");
    }

    #[test]
    fn writes_suites_cases_and_failures() {
        let reports = vec![SuiteReport {
            name: "iso<1>".into(),
            time: Duration::from_millis(1500),
            cases: vec![
                CaseResult {
                    vm: Some("victim".into()),
                    name: "pattern_intact".into(),
                    failure: None,
                    time: Duration::from_millis(250),
                    output: vec![],
                },
                CaseResult {
                    vm: Some("attacker".into()),
                    name: "read".into(),
                    failure: Some("expected \"stop\" & <got> none".into()),
                    time: Duration::ZERO,
                    output: vec![
                        "#HV vm-fault id=2 name=attacker ipa=0x50000000 access=read".into()
                    ],
                },
                CaseResult {
                    vm: None,
                    name: "overlap".into(),
                    failure: None,
                    time: Duration::ZERO,
                    output: vec![],
                },
            ],
            tail: vec!["attacker| \x07bell".into()],
            log: PathBuf::from("target/harness/iso.log"),
            metrics: vec![],
            skipped: None,
        }];
        let x = junit_xml(&reports);
        assert!(x.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites"));
        assert!(x.contains("tests=\"3\" failures=\"1\" skipped=\"0\""));
        assert!(x.contains("<testsuite name=\"iso&lt;1&gt;\" tests=\"3\" failures=\"1\" errors=\"0\" skipped=\"0\" time=\"1.500\">"));
        assert!(x.contains(
            "<testcase classname=\"iso&lt;1&gt;\" name=\"victim::pattern_intact\" time=\"0.250\"/>"
        ));
        assert!(x.contains("name=\"attacker::read\""));
        assert!(
            x.contains("<failure message=\"expected &quot;stop&quot; &amp; &lt;got&gt; none\">")
        );
        assert!(x.contains("attacker| \\u{7}bell</failure>"));
        assert!(x.contains(
            "<system-out>#HV vm-fault id=2 name=attacker ipa=0x50000000 access=read</system-out>"
        ));
        assert!(x.contains("name=\"overlap\""));
        assert!(x.trim_end().ends_with("</testsuites>"));
        // Balanced elements.
        assert_eq!(x.matches("<testcase ").count(), 3);
        assert_eq!(
            x.matches("</testcase>").count() + x.matches("\"/>").count(),
            3
        );
    }

    #[test]
    fn pending_suites_are_skipped_with_their_reason() {
        let r = SuiteReport::skipped(
            "linux_two_vms",
            "pending: <vGIC>",
            std::path::Path::new("target/harness"),
        );
        assert_eq!((r.failed(), r.passed(), r.ignored()), (0, 0, 2));
        let x = junit_xml(&[r]);
        assert!(x.contains("<testsuites name=\"harness\" tests=\"2\" failures=\"0\" skipped=\"2\""));
        assert!(x.contains("<testsuite name=\"linux_two_vms\" tests=\"2\" failures=\"0\" errors=\"0\" skipped=\"2\""));
        assert!(x.contains(
            "<testcase classname=\"linux_two_vms\" name=\"alpha::ready\" time=\"0.000\">\n      <skipped message=\"pending: &lt;vGIC&gt;\"/>\n    </testcase>"
        ));
        assert!(x.contains("name=\"beta::ready\""));
        assert_eq!(
            x.matches("<testcase ").count(),
            x.matches("</testcase>").count()
        );
    }
}
