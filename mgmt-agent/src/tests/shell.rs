//! The management shell's line protocol: one answer line per command line.

use super::support::*;
use crate::dm::Command;
use crate::shell::{fit, parse_line, Input, Line, LineReader, Shell, MAX_LINE, USAGE};
use crate::tree::schema::Format;

fn session(lines: &[&str]) -> Vec<Option<String>> {
    let mut a = agent();
    let mut sh = Shell::new(S);
    lines.iter().map(|l| sh.answer(&mut a, l)).collect()
}

#[track_caller]
fn answers(lines: &[&str], expected: &[Option<&str>]) {
    let got = session(lines);
    let got: Vec<Option<&str>> = got.iter().map(|o| o.as_deref()).collect();
    assert_eq!(got, expected);
}

#[test]
fn a_vm_is_created_and_driven_from_the_shell() {
    answers(
        &[
            "add ./VirMO/vm1",
            "get VirMO/vm1/State",
            "replace VirMO/vm1/CreateParams ImgID=2&Running=false",
            "exec VirMO/vm1/Operations/Create",
            "get VirMO/vm1/State",
            "",
            "# a comment",
            "exec VirMO/vm1/Operations/Suspend",
            "replace VirMO/vm1/State 2",
            "get VirMO/x/State",
            "replace VirMO/vm1/Description a web server  with spaces",
            "get VirMO/vm1/Description",
            "get VirMO/vm1/Ext/LastError",
        ],
        &[
            Some("STATUS 200"),
            Some("STATUS 200 0"),
            Some("STATUS 200"),
            Some("STATUS 200"),
            Some("STATUS 200 1"),
            None,
            None,
            Some("STATUS 403 Suspend needs Running (2); the VM is PoweredOff (1)"),
            Some("STATUS 405 State is not replaceable"),
            Some("STATUS 404 no such node: VirMO/x/State"),
            Some("STATUS 200"),
            Some("STATUS 200 a web server  with spaces"),
            Some("STATUS 200 405 State is not replaceable"),
        ],
    );
}

#[test]
fn bad_lines_get_400_with_the_usage() {
    let usage = format!("STATUS 400 {USAGE}");
    answers(
        &[
            "frobnicate VirMO",
            "get",
            "get VirMO extra",
            "replace",
            "add",
            "end",
            "atomic now",
            "help",
        ],
        &[
            Some(usage.as_str()),
            Some("STATUS 400 usage: get URI"),
            Some("STATUS 400 usage: get URI"),
            Some("STATUS 400 usage: replace URI VALUE"),
            Some("STATUS 400 usage: add URI [FORMAT] [VALUE]"),
            Some("STATUS 400 end without atomic or sequence"),
            Some("STATUS 400 usage: atomic"),
            Some(format!("STATUS 200 {USAGE}").as_str()),
        ],
    );
}

#[test]
fn add_takes_an_optional_format_and_value() {
    assert_eq!(
        parse_line("add VirMO/vm1/DMTree/X int 5").unwrap(),
        Some(Line::Dm(Command::add(
            "VirMO/vm1/DMTree/X",
            Some(Format::Int),
            "5"
        )))
    );
    assert_eq!(
        parse_line("add VirMO/vm1/Resources/NewConfig CPU=5&RAM=64M").unwrap(),
        Some(Line::Dm(Command::add(
            "VirMO/vm1/Resources/NewConfig",
            None,
            "CPU=5&RAM=64M"
        )))
    );
    assert_eq!(
        parse_line("add VirMO/vm1/DMTree/Y chr int").unwrap(),
        Some(Line::Dm(Command::add(
            "VirMO/vm1/DMTree/Y",
            Some(Format::Chr),
            "int"
        )))
    );
    assert_eq!(
        parse_line("add VirMO/vm1/DMTree/M node urn:oma:mo:oma-scomo:1.0").unwrap(),
        Some(Line::Dm(Command::add(
            "VirMO/vm1/DMTree/M",
            Some(Format::Node),
            "urn:oma:mo:oma-scomo:1.0"
        )))
    );
    assert_eq!(
        parse_line("  get   VirMO  ").unwrap(),
        Some(Line::Dm(Command::get("VirMO")))
    );
    assert_eq!(
        parse_line("replace VirMO/vm1/Description").unwrap(),
        Some(Line::Dm(Command::replace("VirMO/vm1/Description", "")))
    );
}

#[test]
fn atomic_and_sequence_blocks_answer_once_at_the_end() {
    answers(
        &[
            "atomic",
            "add VirMO/vm1",
            "replace VirMO/vm1/CreateParams ImgID=2",
            "atomic",
            "replace VirMO/vm1/State 1",
            "end",
            "get VirMO/vm1",
            "sequence",
            "add VirMO/vm1",
            "get VirMO/vm1/VMID",
            "get VirMO/vm1/Nope",
            "get VirMO/vm1/VMID",
            "end",
            "atomic",
            "end",
        ],
        &[
            Some("STATUS 200 Atomic started: send commands, then end"),
            Some("STATUS 202 queued 1 in Atomic"),
            Some("STATUS 202 queued 2 in Atomic"),
            Some("STATUS 400 nested blocks are not supported: end the open one first"),
            Some("STATUS 202 queued 3 in Atomic"),
            Some("STATUS 507 [216 rolled back] [216 rolled back] [405 State is not replaceable]"),
            Some("STATUS 404 no such node: VirMO/vm1"),
            Some("STATUS 200 Sequence started: send commands, then end"),
            Some("STATUS 202 queued 1 in Sequence"),
            Some("STATUS 202 queued 2 in Sequence"),
            Some("STATUS 202 queued 3 in Sequence"),
            Some("STATUS 202 queued 4 in Sequence"),
            Some("STATUS 200 [200] [200 2] [404 no such node: VirMO/vm1/Nope] [215 not executed: an earlier command of the Sequence failed]"),
            Some("STATUS 200 Atomic started: send commands, then end"),
            Some("STATUS 200"),
        ],
    );
}

#[test]
fn the_shell_acts_as_a_server_and_can_switch() {
    answers(
        &[
            "server",
            "server intruder",
            "add VirMO/vm1",
            "server virmo-server",
            "add VirMO/vm1",
        ],
        &[
            Some("STATUS 200 virmo-server"),
            Some("STATUS 200 intruder"),
            Some("STATUS 425 server intruder may not Add VirMO/vm1 (ACL of VirMO: Add=virmo-server&Delete=virmo-server&Exec=virmo-server&Get=*&Replace=virmo-server)"),
            Some("STATUS 200 virmo-server"),
            Some("STATUS 200"),
        ],
    );
}

#[test]
fn every_answer_is_one_line() {
    let mut a = agent();
    let mut sh = Shell::new(S);
    sh.answer(&mut a, "add VirMO/vm1");
    sh.answer(&mut a, "add VirMO/vm1/DMTree/X chr a]b\\c");
    // A value with a newline (possible through DM, not through the shell) stays one line.
    a.execute(
        S,
        &Command::replace("VirMO/vm1/DMTree/X", "line1\nline2\tx\u{7}"),
    );
    let got = sh.answer(&mut a, "get VirMO/vm1/DMTree/X").unwrap();
    assert_eq!(got, "STATUS 200 line1\\nline2\\tx\\x07");
    assert!(!got.contains('\n'));
    let got = session(&["sequence", "get ./VirMO/vm1/DMTree/X", "end"]);
    assert_eq!(
        got[2].as_deref(),
        Some("STATUS 200 [404 no such node: VirMO/vm1/DMTree/X]")
    );
}

#[test]
fn long_answers_are_cut_to_fit_a_console_line() {
    assert_eq!(fit("short", 256), "short");
    let long = "x".repeat(300);
    let cut = fit(&long, 256);
    assert_eq!(cut.len(), 256);
    assert!(cut.ends_with(" [+60 bytes cut]"), "{cut}");
    let wide = "é".repeat(200);
    let cut = fit(&wide, 256);
    assert!(cut.len() <= 256);
    assert!(cut.ends_with("bytes cut]"));
}

#[test]
fn the_line_reader_handles_line_ends_backspace_and_overflow() {
    let mut r = LineReader::new();
    let mut feed =
        |bytes: &[u8]| -> Vec<Input> { bytes.iter().filter_map(|b| r.push(*b)).collect() };
    assert_eq!(feed(b"get V"), []);
    assert_eq!(
        feed(b"irMX\x7fO\r\n"),
        [Input::Line("get VirMO".into()), Input::Line(String::new())]
    );
    assert_eq!(feed(b"a\x08\x08b\n"), [Input::Line("b".into())]);
    assert_eq!(feed("é\x7f\n".as_bytes()), [Input::Line(String::new())]);
    let long = vec![b'x'; MAX_LINE + 1];
    assert_eq!(feed(&long), []);
    assert_eq!(feed(b"\n"), [Input::TooLong]);
    assert_eq!(feed(b"ok\n"), [Input::Line("ok".into())]);
}

#[test]
fn fault_lines_arm_the_hypervisor_fault_points() {
    let mut a = agent();
    let mut sh = Shell::new(S);
    assert_eq!(
        sh.answer(&mut a, "fault disk 2").as_deref(),
        Some("STATUS 200 fault DiskIo armed at 2")
    );
    assert_eq!(
        a.hv().armed,
        [(abi::mgmt::FaultPoint::DiskIo, 2)],
        "the mock recorded it"
    );
    for bad in ["fault", "fault cpu 1", "fault ram", "fault ram x"] {
        assert_eq!(
            sh.answer(&mut a, bad).as_deref(),
            Some("STATUS 400 usage: fault ram|disk|image N"),
            "{bad}"
        );
    }
}
