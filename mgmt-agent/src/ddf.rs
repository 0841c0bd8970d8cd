//! Device Description Files (OMA DM 1.3 TND, DDF DTD 1.2) of VirMO and VMImgMO, generated from
//! the node table, so that what the DDF says is what the engine does.
//!
//! Owns: the XML. The committed copies are `docs/ddf/VirMO-V1_0.ddf` and
//! `docs/ddf/VMImgMO-V1_0.ddf`; a test fails when they differ from [`generate`]'s output, and
//! `UPDATE_DDF=1 cargo test -p mgmt-agent ddf` rewrites them.

use alloc::string::String;

use crate::tree::schema::{Format, Mo, NodeDef, NODES, PLACEHOLDER};

/// The committed file name of an MO's DDF (VirMO 1.0 section 13.1).
pub fn file_name(mo: Mo) -> Option<&'static str> {
    match mo {
        Mo::VirMO => Some("VirMO-V1_0.ddf"),
        Mo::VmImgMO => Some("VMImgMO-V1_0.ddf"),
        _ => None,
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

struct Out {
    s: String,
}

impl Out {
    fn line(&mut self, depth: usize, text: &str) {
        for _ in 0..depth {
            self.s.push_str("  ");
        }
        self.s.push_str(text);
        self.s.push('\n');
    }

    /// `<tag>` `<inner/>` `</tag>` on three lines.
    fn wrapped(&mut self, depth: usize, tag: &str, inner: &str) {
        self.line(depth, &alloc::format!("<{tag}>"));
        self.line(depth + 1, &alloc::format!("<{inner}/>"));
        self.line(depth, &alloc::format!("</{tag}>"));
    }
}

/// The DDF of `mo` (only VirMO and VMImgMO have one here).
pub fn generate(mo: Mo) -> String {
    let mut out = Out { s: String::new() };
    out.line(0, r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    out.line(
        0,
        r#"<!DOCTYPE MgmtTree PUBLIC "-//OMA//DTD-DM-DDF 1.2//EN" "http://www.openmobilealliance.org/tech/DTD/DM_DDF-V1_2.dtd">"#,
    );
    out.line(
        0,
        "<!-- Generated from the node table of mgmt-agent/src/tree/schema.rs by mgmt-agent/src/ddf.rs. \
         Do not edit: UPDATE_DDF=1 cargo test -p mgmt-agent ddf -->",
    );
    out.line(0, "<MgmtTree>");
    out.line(1, "<VerDTD>1.2</VerDTD>");
    if let Some(root) = NODES.iter().find(|d| d.mo == mo && !d.path.contains('/')) {
        node(&mut out, 1, root);
    }
    out.line(0, "</MgmtTree>");
    out.s
}

fn node(out: &mut Out, depth: usize, d: &NodeDef) {
    out.line(depth, "<Node>");
    let name = d.path.rsplit('/').next().unwrap_or(d.path);
    if name == PLACEHOLDER {
        out.line(depth + 1, "<NodeName/>");
    } else {
        out.line(depth + 1, &alloc::format!("<NodeName>{name}</NodeName>"));
    }
    let p = depth + 1;
    out.line(p, "<DFProperties>");
    out.line(p + 1, "<AccessType>");
    for cmd in d.access.iter() {
        out.line(p + 2, &alloc::format!("<{}/>", cmd.name()));
    }
    out.line(p + 1, "</AccessType>");
    out.line(
        p + 1,
        &alloc::format!("<Description>{}</Description>", xml_escape(d.description)),
    );
    out.wrapped(p + 1, "DFFormat", d.format.name());
    out.wrapped(p + 1, "Occurrence", d.occurrence.name());
    out.wrapped(p + 1, "Scope", d.scope.name());
    out.line(p + 1, "<DFType>");
    if d.format == Format::Node {
        if d.mime.is_empty() {
            out.line(p + 2, "<DDFName/>");
        } else {
            out.line(p + 2, &alloc::format!("<DDFName>{}</DDFName>", d.mime));
        }
    } else {
        out.line(p + 2, &alloc::format!("<MIME>{}</MIME>", d.mime));
    }
    out.line(p + 1, "</DFType>");
    out.line(p, "</DFProperties>");
    for child in NODES.iter().filter(|c| {
        c.path
            .strip_prefix(d.path)
            .and_then(|r| r.strip_prefix('/'))
            .is_some_and(|r| !r.contains('/'))
    }) {
        node(out, depth + 1, child);
    }
    out.line(depth, "</Node>");
}
