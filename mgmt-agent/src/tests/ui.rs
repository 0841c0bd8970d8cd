//! User interaction (section 11.2.2): UI/Command, Operations/ExecUICmd, UI/Result.

use super::support::*;
use crate::dm::Command;

const DISPLAY: &str = "<Alert><CmdID>4</CmdID><Data>1100</Data><Item></Item><Item><Data>Backup at 22:00</Data></Item></Alert>";
const CONFIRM: &str = "<Alert>\n<CmdID>2</CmdID>\n<Data>1101</Data>\n<Item></Item>\n<Item><Data>Do you want to add the CNN access point?</Data></Item>\n</Alert>";

#[test]
fn a_display_alert_is_shown_on_the_console_and_answered_200() {
    let mut a = agent();
    new_vm(&mut a, "vm1", "ImgID=2");
    ok(&mut a, Command::replace("VirMO/vm1/UI/Command", DISPLAY));
    ok(&mut a, Command::exec("VirMO/vm1/Operations/ExecUICmd"));
    assert_eq!(
        get(&mut a, "VirMO/vm1/UI/Result"),
        "<Status><CmdID>1</CmdID><MsgRef>1</MsgRef><CmdRef>4</CmdRef><Cmd>Alert</Cmd><Data>200</Data></Status>"
    );
    assert_eq!(a.take_notices(), ["ui VirMO/vm1 (VMID 1): Backup at 22:00"]);
}

#[test]
fn alerts_that_need_an_answer_get_406_in_the_result() {
    let mut a = agent();
    new_vm(&mut a, "vm1", "ImgID=2");
    ok(&mut a, Command::replace("VirMO/vm1/UI/Command", CONFIRM));
    ok(&mut a, Command::exec("VirMO/vm1/Operations/ExecUICmd"));
    assert!(get(&mut a, "VirMO/vm1/UI/Result")
        .contains("<CmdRef>2</CmdRef><Cmd>Alert</Cmd><Data>406</Data>"));
}

#[test]
fn bad_commands_leave_the_result_alone() {
    let mut a = agent();
    prepare_vm(&mut a, "vm1", "ImgID=2");
    ok(&mut a, Command::replace("VirMO/vm1/UI/Command", DISPLAY));
    fails(&mut a, Command::exec("VirMO/vm1/Operations/ExecUICmd"), 403);
    exec(&mut a, "vm1", "Create");
    for (command, code) in [
        ("", 400),
        ("not xml", 400),
        ("<Alert><CmdID>1</CmdID><Data>1226</Data></Alert>", 400),
    ] {
        ok(&mut a, Command::replace("VirMO/vm1/UI/Command", command));
        fails(
            &mut a,
            Command::exec("VirMO/vm1/Operations/ExecUICmd"),
            code,
        );
        assert_eq!(get(&mut a, "VirMO/vm1/UI/Result"), "");
    }
    fails(
        &mut a,
        Command::replace("VirMO/vm1/UI/Result", "<Status/>"),
        405,
    );
}
