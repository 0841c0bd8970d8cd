//! User interaction with a VM (VirMO 1.0 section 11.2.2): Exec of
//! `VirMO/<x>/Operations/ExecUICmd` runs the `<Alert>` stored in `VirMO/<x>/UI/Command` and
//! sets `VirMO/<x>/UI/Result` to the `<Status>` answering it.
//!
//! What "running" means here: VMs have no agent that could show a dialog, and the only screen
//! is the device console. So a Display (1100) or Progress notification (1104) is printed on
//! the console as a notice naming the VM (Result status 200); Confirmation (1101), User input
//! (1102) and User choice (1103) need an answer no one can give, so their Result status is 406
//! (optional feature not supported). Anything that is not a user interaction Alert is refused
//! (400) and leaves UI/Result as it was.

use alloc::string::String;
use alloc::vec::Vec;

use super::Agent;
use crate::dm::dm_err;
use crate::dm::DmResult;
use crate::hv::Hypervisor;
use crate::tree::schema::NodeId;

/// DM 1.3 user interaction alert codes.
pub const ALERT_DISPLAY: u32 = 1100;
pub const ALERT_CONFIRM: u32 = 1101;
pub const ALERT_INPUT: u32 = 1102;
pub const ALERT_CHOICE: u32 = 1103;
pub const ALERT_PROGRESS: u32 = 1104;

/// The parts of an `<Alert>` that matter here.
#[derive(Debug, PartialEq, Eq)]
pub struct Alert {
    pub cmd_id: String,
    pub code: u32,
    /// The `<Data>` of each `<Item>`, in order (empty for an item without one).
    pub items: Vec<String>,
}

/// The text between the first `<tag>` and the next `</tag>` in `xml`, and what follows it.
fn element<'a>(xml: &'a str, tag: &str) -> Option<(&'a str, &'a str)> {
    let open = alloc::format!("<{tag}>");
    let close = alloc::format!("</{tag}>");
    let start = xml.find(&open)? + open.len();
    let len = xml[start..].find(&close)?;
    Some((&xml[start..start + len], &xml[start + len + close.len()..]))
}

fn unescape(s: &str) -> String {
    s.trim()
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Reads a user interaction `<Alert>` (DM 1.3 Representation Protocol), tolerantly: comments,
/// whitespace and elements other than CmdID, Data and Item are ignored.
pub fn parse_alert(xml: &str) -> Result<Alert, String> {
    let (body, _) = element(xml, "Alert").ok_or("UI/Command holds no <Alert>...</Alert>")?;
    let cmd_id = element(body, "CmdID").map_or(String::from("1"), |(v, _)| unescape(v));
    // The alert code is the <Data> directly in <Alert>, before the first <Item>.
    let head = &body[..body.find("<Item").unwrap_or(body.len())];
    let code_text = element(head, "Data")
        .ok_or("the <Alert> has no <Data> code")?
        .0;
    let code = unescape(code_text)
        .parse()
        .map_err(|_| alloc::format!("alert code {code_text:?} is not a number"))?;
    let mut items = Vec::new();
    let mut rest = &body[head.len()..];
    while let Some(at) = rest.find("<Item") {
        rest = &rest[at + 5..];
        if rest.starts_with("/>") {
            items.push(String::new());
            continue;
        }
        let end = rest.find("</Item>").ok_or("an <Item> is not closed")?;
        let item = &rest[..end];
        items.push(element(item, "Data").map_or(String::new(), |(d, _)| unescape(d)));
        rest = &rest[end..];
    }
    Ok(Alert {
        cmd_id,
        code,
        items,
    })
}

/// The `<Status>` answering alert `cmd_id` with `code` (one line, so a Get returns one line).
pub fn status_xml(cmd_id: &str, code: u16) -> String {
    alloc::format!(
        "<Status><CmdID>1</CmdID><MsgRef>1</MsgRef><CmdRef>{}</CmdRef><Cmd>Alert</Cmd><Data>{code}</Data></Status>",
        escape(cmd_id)
    )
}

impl<H: Hypervisor> Agent<H> {
    pub(crate) fn exec_ui(&mut self, x: &str) -> DmResult {
        let state = self.refresh_vm(x);
        if !state.is_created() {
            return Err(dm_err!(
                Forbidden,
                "VirMO/{x} has no VM ({state}) to interact with"
            ));
        }
        let command = self.vm_value(x, NodeId::UiCommand);
        if command.trim().is_empty() {
            return Err(dm_err!(
                BadRequest,
                "VirMO/{x}/UI/Command is empty: set an <Alert> first"
            ));
        }
        let alert = parse_alert(&command).map_err(|e| dm_err!(BadRequest, "UI/Command: {e}"))?;
        // The message is the last item's data (the first item holds optional parameters).
        let message = alert
            .items
            .iter()
            .rev()
            .find(|i| !i.is_empty())
            .cloned()
            .unwrap_or_default();
        let code = match alert.code {
            ALERT_DISPLAY | ALERT_PROGRESS => {
                let vmid = self.vm_value(x, NodeId::VmId);
                self.note(alloc::format!("ui VirMO/{x} (VMID {vmid}): {message}"));
                200
            }
            ALERT_CONFIRM | ALERT_INPUT | ALERT_CHOICE => 406,
            other => {
                return Err(dm_err!(
                    BadRequest,
                    "UI/Command: alert {other} is not a user interaction (1100 to 1104)"
                ))
            }
        };
        self.set_vm_value(x, NodeId::UiResult, &status_xml(&alert.cmd_id, code));
        Ok(String::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_spec_example() {
        let xml = "<Alert>\n  <CmdID>2</CmdID>\n  <Data>1101</Data>\n  <Item></Item> <!-- no optional parameters -->\n  <Item>\n    <Data>Do you want to add the CNN access point?</Data>\n  </Item>\n</Alert>";
        assert_eq!(
            parse_alert(xml).unwrap(),
            Alert {
                cmd_id: "2".into(),
                code: 1101,
                items: alloc::vec!["".into(), "Do you want to add the CNN access point?".into()],
            }
        );
        let one_line = "<Alert><CmdID>7</CmdID><Data>1100</Data><Item/><Item><Data>a &lt;b&gt; &amp; c</Data></Item></Alert>";
        let a = parse_alert(one_line).unwrap();
        assert_eq!(a.items, ["", "a <b> & c"]);
        assert_eq!(
            status_xml("7", 200),
            "<Status><CmdID>1</CmdID><MsgRef>1</MsgRef><CmdRef>7</CmdRef><Cmd>Alert</Cmd><Data>200</Data></Status>"
        );
    }

    #[test]
    fn refuses_what_is_not_an_alert() {
        assert!(parse_alert("hello").is_err());
        assert!(parse_alert("<Alert><CmdID>1</CmdID></Alert>").is_err());
        assert!(parse_alert("<Alert><Data>x</Data></Alert>").is_err());
        assert!(parse_alert("<Alert><Data>1100</Data><Item><Data>x</Data></Alert>").is_err());
    }
}
