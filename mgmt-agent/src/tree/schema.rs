//! The node table: every node the agent knows, with its OMA DM properties (DM 1.3 TND: Format,
//! AccessType, Occurrence, Scope, Type). One static table drives the command engine (which
//! command is allowed where, which format a value must have) and the DDF generator, so the two
//! can never disagree.
//!
//! Owns: the table, the property types, and matching a concrete path (`VirMO/vm1/State`) to its
//! definition (`VirMO/<x>/State`). Never: stores values or talks to the hypervisor.
//!
//! Where the spec (VirMO 1.0 sections 8, 9, 11.2.2) gives only the minimum access types, the
//! table adds what the procedures of section 10 need (e.g. Replace on `CreateParams`, which the
//! server "MUST properly set"), and nothing that a "No Replace" forbids.

use core::fmt;

/// Node formats (DM 1.3 TND, DFFormat).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Format {
    Node,
    Chr,
    Int,
    Bool,
    Null,
    Xml,
    Bin,
    B64,
    Float,
    Date,
    Time,
}

impl Format {
    pub const ALL: [Format; 11] = [
        Format::Node,
        Format::Chr,
        Format::Int,
        Format::Bool,
        Format::Null,
        Format::Xml,
        Format::Bin,
        Format::B64,
        Format::Float,
        Format::Date,
        Format::Time,
    ];

    /// The name used in DM messages and in the DDF (`<chr/>`).
    pub const fn name(self) -> &'static str {
        match self {
            Format::Node => "node",
            Format::Chr => "chr",
            Format::Int => "int",
            Format::Bool => "bool",
            Format::Null => "null",
            Format::Xml => "xml",
            Format::Bin => "bin",
            Format::B64 => "b64",
            Format::Float => "float",
            Format::Date => "date",
            Format::Time => "time",
        }
    }

    pub fn parse(s: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.name() == s)
    }

    pub const fn code(self) -> u8 {
        self as u8
    }

    pub fn from_code(c: u8) -> Option<Format> {
        Format::ALL.get(c as usize).copied()
    }

    /// Whether `value` is a valid value of this format; the reason if not.
    pub fn check(self, value: &str) -> Result<(), &'static str> {
        match self {
            Format::Int if value.parse::<i64>().is_err() => Err("is not an int"),
            Format::Bool if value != "true" && value != "false" => {
                Err("is not a bool (true or false)")
            }
            Format::Null if !value.is_empty() => Err("must be empty (format null)"),
            Format::Float if value.parse::<f64>().is_err() => Err("is not a float"),
            _ => Ok(()),
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The DM commands an access type or an ACL can grant. Copy is not supported by this client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmd {
    Add,
    Delete,
    Exec,
    Get,
    Replace,
}

impl Cmd {
    /// In the order the DDF DTD lists them.
    pub const ALL: [Cmd; 5] = [Cmd::Add, Cmd::Delete, Cmd::Exec, Cmd::Get, Cmd::Replace];

    pub const fn name(self) -> &'static str {
        match self {
            Cmd::Add => "Add",
            Cmd::Delete => "Delete",
            Cmd::Exec => "Exec",
            Cmd::Get => "Get",
            Cmd::Replace => "Replace",
        }
    }

    pub fn parse(s: &str) -> Option<Cmd> {
        Cmd::ALL.into_iter().find(|c| c.name() == s)
    }

    const fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// A set of access types (DDF AccessType).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access(u8);

impl Access {
    pub const fn of(cmds: &[Cmd]) -> Access {
        let mut bits = 0;
        let mut i = 0;
        while i < cmds.len() {
            bits |= cmds[i].bit();
            i += 1;
        }
        Access(bits)
    }

    pub const fn allows(self, cmd: Cmd) -> bool {
        self.0 & cmd.bit() != 0
    }

    pub fn iter(self) -> impl Iterator<Item = Cmd> {
        Cmd::ALL.into_iter().filter(move |c| self.allows(*c))
    }
}

/// How many instances of a node may exist (DDF Occurrence).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Occurrence {
    One,
    ZeroOrOne,
    ZeroOrMore,
    OneOrMore,
}

impl Occurrence {
    pub const fn name(self) -> &'static str {
        match self {
            Occurrence::One => "One",
            Occurrence::ZeroOrOne => "ZeroOrOne",
            Occurrence::ZeroOrMore => "ZeroOrMore",
            Occurrence::OneOrMore => "OneOrMore",
        }
    }
}

/// Who creates and deletes a node (DDF Scope): Permanent nodes are made by the client and can
/// never be deleted by a server (405); Dynamic ones can.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Permanent,
    Dynamic,
}

impl Scope {
    pub const fn name(self) -> &'static str {
        match self {
            Scope::Permanent => "Permanent",
            Scope::Dynamic => "Dynamic",
        }
    }
}

/// The "Status" column of the spec's node tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requirement {
    Required,
    Optional,
}

/// The management object a node belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mo {
    /// The tree root `.` itself.
    Root,
    DevInfo,
    DevDetail,
    DmAcc,
    VirMO,
    VmImgMO,
}

/// MO identifiers (VirMO 1.0 sections 8 and 9; DM 1.3 standard objects).
pub const MOID_VIRMO: &str = "urn:oma:mo:oma-virmo:1.0";
pub const MOID_VMIMGMO: &str = "urn:oma:mo:oma-vmimgmo:1.0";
pub const MOID_DEVINFO: &str = "urn:oma:mo:oma-dm-devinfo:1.0";
pub const MOID_DEVDETAIL: &str = "urn:oma:mo:oma-dm-devdetail:1.0";
pub const MOID_DMACC: &str = "urn:oma:mo:oma-dm-dmacc:1.0";

/// The MIME type of plain leaf values.
pub const TEXT_PLAIN: &str = "text/plain";
/// The MIME type of `xml` leaves.
pub const TEXT_XML: &str = "text/xml";

/// Identifies a definition, so the engine can attach behaviour to it (`match def.id`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeId {
    Root,
    DevInfo,
    DevId,
    Man,
    Mod,
    DmV,
    Lang,
    DevDetail,
    DevTyp,
    Oem,
    FwV,
    SwV,
    HwV,
    LrgObj,
    Uri,
    MaxDepth,
    MaxTotLen,
    MaxSegLen,
    DmAcc,
    Account,
    AppId,
    ServerId,
    AccName,
    AppAddr,
    AppAddrX,
    Addr,
    AddrType,
    AAuthPref,
    VirMO,
    Vm,
    VmId,
    VmDescription,
    VmState,
    CreateParams,
    DmTree,
    Resources,
    CurrentConfig,
    NewConfig,
    VmOperations,
    OpCreate,
    OpDelete,
    OpSuspend,
    OpResume,
    OpPowerOn,
    OpPowerOff,
    OpExecUiCmd,
    Ui,
    UiCommand,
    UiResult,
    VmExt,
    VmHandle,
    VmLastError,
    Operations,
    ApplyChanges,
    DeviceResources,
    VmImgMO,
    Img,
    ImgId,
    ImgName,
    ImgDescription,
    DownloadUri,
    DownloadedLocation,
    ImgState,
    MediaType,
    ImgOperations,
    OpDownload,
    OpImgDelete,
    ImgExt,
}

/// One node definition. `path` uses `<x>` for a name chosen at run time.
#[derive(Debug)]
pub struct NodeDef {
    pub id: NodeId,
    pub path: &'static str,
    pub mo: Mo,
    pub format: Format,
    pub access: Access,
    pub occurrence: Occurrence,
    pub scope: Scope,
    pub requirement: Requirement,
    /// DFType: the MOID of an MO root, the MIME type of a leaf, empty for other interior nodes.
    pub mime: &'static str,
    pub description: &'static str,
}

use Cmd::{Add as A, Delete as D, Exec as E, Get as G, Replace as R};
use Format as F;
use Occurrence as O;
use Requirement::{Optional, Required};
use Scope::{Dynamic, Permanent};

// One argument per property keeps every row of NODES a readable line of the table.
#[allow(clippy::too_many_arguments)]
const fn def(
    id: NodeId,
    path: &'static str,
    mo: Mo,
    format: Format,
    access: &[Cmd],
    occurrence: Occurrence,
    scope: Scope,
    requirement: Requirement,
    mime: &'static str,
    description: &'static str,
) -> NodeDef {
    NodeDef {
        id,
        path,
        mo,
        format,
        access: Access::of(access),
        occurrence,
        scope,
        requirement,
        mime,
        description,
    }
}

#[rustfmt::skip]
pub static NODES: &[NodeDef] = &[
    def(NodeId::Root, ".", Mo::Root, F::Node, &[G], O::One, Permanent, Required, "",
        "The root of the device's management tree."),

    // DM 1.3 standard object DevInfo.
    def(NodeId::DevInfo, "DevInfo", Mo::DevInfo, F::Node, &[G], O::One, Permanent, Required, MOID_DEVINFO,
        "Device information (DM 1.3 standard object)."),
    def(NodeId::DevId, "DevInfo/DevId", Mo::DevInfo, F::Chr, &[G], O::One, Permanent, Required, TEXT_PLAIN,
        "Unique identifier of the device."),
    def(NodeId::Man, "DevInfo/Man", Mo::DevInfo, F::Chr, &[G], O::One, Permanent, Required, TEXT_PLAIN,
        "Manufacturer."),
    def(NodeId::Mod, "DevInfo/Mod", Mo::DevInfo, F::Chr, &[G], O::One, Permanent, Required, TEXT_PLAIN,
        "Model."),
    def(NodeId::DmV, "DevInfo/DmV", Mo::DevInfo, F::Chr, &[G], O::One, Permanent, Required, TEXT_PLAIN,
        "OMA DM client version."),
    def(NodeId::Lang, "DevInfo/Lang", Mo::DevInfo, F::Chr, &[G], O::One, Permanent, Required, TEXT_PLAIN,
        "Current language."),

    // DM 1.3 standard object DevDetail.
    def(NodeId::DevDetail, "DevDetail", Mo::DevDetail, F::Node, &[G], O::One, Permanent, Required, MOID_DEVDETAIL,
        "Device details (DM 1.3 standard object)."),
    def(NodeId::DevTyp, "DevDetail/DevTyp", Mo::DevDetail, F::Chr, &[G], O::One, Permanent, Required, TEXT_PLAIN,
        "Device type."),
    def(NodeId::Oem, "DevDetail/OEM", Mo::DevDetail, F::Chr, &[G], O::One, Permanent, Required, TEXT_PLAIN,
        "Original equipment manufacturer."),
    def(NodeId::FwV, "DevDetail/FwV", Mo::DevDetail, F::Chr, &[G], O::One, Permanent, Required, TEXT_PLAIN,
        "Firmware version: the hypervisor ABI version."),
    def(NodeId::SwV, "DevDetail/SwV", Mo::DevDetail, F::Chr, &[G], O::One, Permanent, Required, TEXT_PLAIN,
        "Software version: the management agent's version."),
    def(NodeId::HwV, "DevDetail/HwV", Mo::DevDetail, F::Chr, &[G], O::One, Permanent, Required, TEXT_PLAIN,
        "Hardware version."),
    def(NodeId::LrgObj, "DevDetail/LrgObj", Mo::DevDetail, F::Bool, &[G], O::One, Permanent, Required, TEXT_PLAIN,
        "Whether large objects are supported (false)."),
    def(NodeId::Uri, "DevDetail/URI", Mo::DevDetail, F::Node, &[G], O::One, Permanent, Required, "",
        "Limits on URIs accepted by this client."),
    def(NodeId::MaxDepth, "DevDetail/URI/MaxDepth", Mo::DevDetail, F::Chr, &[G], O::One, Permanent, Required, TEXT_PLAIN,
        "Most segments in a URI."),
    def(NodeId::MaxTotLen, "DevDetail/URI/MaxTotLen", Mo::DevDetail, F::Chr, &[G], O::One, Permanent, Required, TEXT_PLAIN,
        "Longest URI, in bytes."),
    def(NodeId::MaxSegLen, "DevDetail/URI/MaxSegLen", Mo::DevDetail, F::Chr, &[G], O::One, Permanent, Required, TEXT_PLAIN,
        "Longest URI segment, in bytes."),

    // DM 1.3 DMAcc: the accounts of the servers allowed to manage the device.
    def(NodeId::DmAcc, "DMAcc", Mo::DmAcc, F::Node, &[G], O::One, Permanent, Required, "",
        "Placeholder of the DM server accounts."),
    def(NodeId::Account, "DMAcc/<x>", Mo::DmAcc, F::Node, &[A, D, G, R], O::OneOrMore, Dynamic, Required, MOID_DMACC,
        "One DM server account."),
    def(NodeId::AppId, "DMAcc/<x>/AppID", Mo::DmAcc, F::Chr, &[A, D, G, R], O::One, Dynamic, Required, TEXT_PLAIN,
        "Application identifier of DM (w7)."),
    def(NodeId::ServerId, "DMAcc/<x>/ServerID", Mo::DmAcc, F::Chr, &[A, D, G, R], O::One, Dynamic, Required, TEXT_PLAIN,
        "The server's identifier, as used in ACLs."),
    def(NodeId::AccName, "DMAcc/<x>/Name", Mo::DmAcc, F::Chr, &[A, D, G, R], O::ZeroOrOne, Dynamic, Optional, TEXT_PLAIN,
        "Display name of the server."),
    def(NodeId::AppAddr, "DMAcc/<x>/AppAddr", Mo::DmAcc, F::Node, &[A, D, G, R], O::ZeroOrOne, Dynamic, Optional, "",
        "Addresses of the server."),
    def(NodeId::AppAddrX, "DMAcc/<x>/AppAddr/<x>", Mo::DmAcc, F::Node, &[A, D, G, R], O::OneOrMore, Dynamic, Optional, "",
        "One address of the server."),
    def(NodeId::Addr, "DMAcc/<x>/AppAddr/<x>/Addr", Mo::DmAcc, F::Chr, &[A, D, G, R], O::One, Dynamic, Optional, TEXT_PLAIN,
        "The address."),
    def(NodeId::AddrType, "DMAcc/<x>/AppAddr/<x>/AddrType", Mo::DmAcc, F::Chr, &[A, D, G, R], O::One, Dynamic, Optional, TEXT_PLAIN,
        "The kind of address (URI)."),
    def(NodeId::AAuthPref, "DMAcc/<x>/AAuthPref", Mo::DmAcc, F::Chr, &[A, D, G, R], O::ZeroOrOne, Dynamic, Optional, TEXT_PLAIN,
        "Preferred authentication type."),

    // VirMO 1.0 section 8, plus the user interaction nodes of section 11.2.2.
    def(NodeId::VirMO, "VirMO", Mo::VirMO, F::Node, &[G], O::One, Permanent, Required, MOID_VIRMO,
        "Root of the Virtualization MO."),
    def(NodeId::Vm, "VirMO/<x>", Mo::VirMO, F::Node, &[A, D, G], O::ZeroOrMore, Dynamic, Required, "",
        "One virtual machine. Add creates the sub-tree with a new VMID and State 0 (NotCreated); \
         Delete is only allowed in State 0 (use Operations/Delete for a created VM)."),
    def(NodeId::VmId, "VirMO/<x>/VMID", Mo::VirMO, F::Chr, &[G], O::One, Permanent, Required, TEXT_PLAIN,
        "Identifier of the VM, assigned by the client, unique within VirMO, never reused."),
    def(NodeId::VmDescription, "VirMO/<x>/Description", Mo::VirMO, F::Chr, &[G, R], O::One, Permanent, Required, TEXT_PLAIN,
        "Description of the VM."),
    def(NodeId::VmState, "VirMO/<x>/State", Mo::VirMO, F::Int, &[G], O::One, Permanent, Required, TEXT_PLAIN,
        "0 NotCreated, 1 PoweredOff, 2 Running, 3 Suspended, 4 Deleted; read from the hypervisor on every Get."),
    def(NodeId::CreateParams, "VirMO/<x>/CreateParams", Mo::VirMO, F::Chr, &[G, R], O::One, Permanent, Required, TEXT_PLAIN,
        "key=value pairs joined by &: ImgID (required), Running (true/false, default true), \
         and the vendor keys RAM, Storage, CPU, Network, VCPUs, Name."),
    def(NodeId::DmTree, "VirMO/<x>/DMTree", Mo::VirMO, F::Node, &[G], O::One, Permanent, Optional, "",
        "Placeholder for the DM tree of this VM (shared DM client, section 11.2): the server adds \
         management objects below it; they are stored, not forwarded."),
    def(NodeId::Resources, "VirMO/<x>/Resources", Mo::VirMO, F::Node, &[G], O::One, Permanent, Required, "",
        "Resource allocation of this VM."),
    def(NodeId::CurrentConfig, "VirMO/<x>/Resources/CurrentConfig", Mo::VirMO, F::Chr, &[G], O::One, Permanent, Required, TEXT_PLAIN,
        "The real allocation, from the hypervisor: RAM=bytes&Storage=bytes&CPU=percent&Network=percent&VCPUs=n."),
    def(NodeId::NewConfig, "VirMO/<x>/Resources/NewConfig", Mo::VirMO, F::Chr, &[A, D, G, R], O::ZeroOrOne, Dynamic, Required, TEXT_PLAIN,
        "Resources to apply at the next Exec of VirMO/Operations/ApplyChanges, in the format of CurrentConfig."),
    def(NodeId::VmOperations, "VirMO/<x>/Operations", Mo::VirMO, F::Node, &[G], O::One, Permanent, Required, "",
        "Operations on this VM."),
    def(NodeId::OpCreate, "VirMO/<x>/Operations/Create", Mo::VirMO, F::Null, &[E, G], O::One, Permanent, Required, TEXT_PLAIN,
        "Creates the VM from CreateParams: State 0 to 2 (Running=true) or 1."),
    def(NodeId::OpDelete, "VirMO/<x>/Operations/Delete", Mo::VirMO, F::Null, &[E, G], O::One, Permanent, Required, TEXT_PLAIN,
        "Deletes the VM (any created state) and then its sub-tree."),
    def(NodeId::OpSuspend, "VirMO/<x>/Operations/Suspend", Mo::VirMO, F::Null, &[E, G], O::One, Permanent, Optional, TEXT_PLAIN,
        "Suspends the VM: State 2 to 3."),
    def(NodeId::OpResume, "VirMO/<x>/Operations/Resume", Mo::VirMO, F::Null, &[E, G], O::One, Permanent, Optional, TEXT_PLAIN,
        "Resumes the VM: State 3 to 2."),
    def(NodeId::OpPowerOn, "VirMO/<x>/Operations/PowerOn", Mo::VirMO, F::Null, &[E, G], O::One, Permanent, Required, TEXT_PLAIN,
        "Powers the VM on: State 1 to 2."),
    def(NodeId::OpPowerOff, "VirMO/<x>/Operations/PowerOff", Mo::VirMO, F::Null, &[E, G], O::One, Permanent, Required, TEXT_PLAIN,
        "Powers the VM off: State 2 to 1."),
    def(NodeId::OpExecUiCmd, "VirMO/<x>/Operations/ExecUICmd", Mo::VirMO, F::Null, &[E, G], O::One, Permanent, Optional, TEXT_PLAIN,
        "Executes the user interaction command of UI/Command and sets UI/Result (section 11.2.2)."),
    def(NodeId::Ui, "VirMO/<x>/UI", Mo::VirMO, F::Node, &[G], O::One, Permanent, Optional, "",
        "User interaction with this VM (section 11.2.2)."),
    def(NodeId::UiCommand, "VirMO/<x>/UI/Command", Mo::VirMO, F::Xml, &[G, R], O::One, Permanent, Required, TEXT_XML,
        "A DM user interaction <Alert> (1100 display, 1101 confirm, 1102 input, 1103 choice, 1104 progress)."),
    def(NodeId::UiResult, "VirMO/<x>/UI/Result", Mo::VirMO, F::Xml, &[G], O::One, Permanent, Required, TEXT_XML,
        "The <Status> answering UI/Command, set by ExecUICmd."),
    def(NodeId::VmExt, "VirMO/<x>/Ext", Mo::VirMO, F::Node, &[G], O::One, Permanent, Optional, "",
        "Vendor extensions of this VM."),
    def(NodeId::VmHandle, "VirMO/<x>/Ext/Handle", Mo::VirMO, F::Int, &[G], O::One, Permanent, Optional, TEXT_PLAIN,
        "The hypervisor's handle of the VM; 0 when the VM does not exist."),
    def(NodeId::VmLastError, "VirMO/<x>/Ext/LastError", Mo::VirMO, F::Chr, &[G], O::One, Permanent, Optional, TEXT_PLAIN,
        "Why the last change or operation on this VM failed (DM status code and reason); emptied by the next successful operation."),
    def(NodeId::Operations, "VirMO/Operations", Mo::VirMO, F::Node, &[G], O::One, Permanent, Required, "",
        "Operations that concern every VM."),
    def(NodeId::ApplyChanges, "VirMO/Operations/ApplyChanges", Mo::VirMO, F::Null, &[E, G], O::One, Permanent, Required, TEXT_PLAIN,
        "Checks every NewConfig for consistency, applies them all or none, then deletes them."),
    def(NodeId::DeviceResources, "VirMO/DeviceResources", Mo::VirMO, F::Chr, &[G], O::One, Permanent, Required, TEXT_PLAIN,
        "RAM=bytes&Storage=bytes of the device, plus the vendor keys FreeRAM, FreeStorage, CPUs, \
         MgmtCPU, CPUAllocated, NetworkAllocated, VMs, Images, Disk."),

    // VirMO 1.0 section 9.
    def(NodeId::VmImgMO, "VMImgMO", Mo::VmImgMO, F::Node, &[G], O::One, Permanent, Required, MOID_VMIMGMO,
        "Root of the VM Image MO."),
    def(NodeId::Img, "VMImgMO/<x>", Mo::VmImgMO, F::Node, &[A, D, G], O::ZeroOrMore, Dynamic, Required, "",
        "One VM image. Images of the store appear at boot with State 2; Add by a server creates \
         an entry in State 0. Delete is only allowed when nothing is downloaded (use Operations/Delete)."),
    def(NodeId::ImgId, "VMImgMO/<x>/ImgID", Mo::VmImgMO, F::Chr, &[G], O::One, Permanent, Required, TEXT_PLAIN,
        "Identifier of the image, assigned by the client: the store id, or new-<n> before a download."),
    def(NodeId::ImgName, "VMImgMO/<x>/Name", Mo::VmImgMO, F::Chr, &[G, R], O::One, Permanent, Required, TEXT_PLAIN,
        "Name of the image."),
    def(NodeId::ImgDescription, "VMImgMO/<x>/Description", Mo::VmImgMO, F::Chr, &[A, D, G, R], O::ZeroOrOne, Dynamic, Required, TEXT_PLAIN,
        "Human readable description of the image."),
    def(NodeId::DownloadUri, "VMImgMO/<x>/DownloadURI", Mo::VmImgMO, F::Chr, &[G, R], O::One, Permanent, Required, TEXT_PLAIN,
        "Where to download the image from."),
    def(NodeId::DownloadedLocation, "VMImgMO/<x>/DownloadedLocation", Mo::VmImgMO, F::Chr, &[G], O::ZeroOrOne, Permanent, Required, TEXT_PLAIN,
        "Where the downloaded image is: store:<id>. Only present in State 2."),
    def(NodeId::ImgState, "VMImgMO/<x>/State", Mo::VmImgMO, F::Int, &[G], O::One, Permanent, Required, TEXT_PLAIN,
        "0 Not Downloaded, 1 Downloading, 2 Downloaded, 3 Download Failed."),
    def(NodeId::MediaType, "VMImgMO/<x>/MediaType", Mo::VmImgMO, F::Chr, &[G, R], O::One, Permanent, Required, TEXT_PLAIN,
        "MIME media type of the image."),
    def(NodeId::ImgOperations, "VMImgMO/<x>/Operations", Mo::VmImgMO, F::Node, &[G], O::One, Permanent, Required, "",
        "Operations on this image."),
    def(NodeId::OpDownload, "VMImgMO/<x>/Operations/Download", Mo::VmImgMO, F::Null, &[E, G], O::One, Permanent, Required, TEXT_PLAIN,
        "Downloads the image from DownloadURI (not supported yet: 406)."),
    def(NodeId::OpImgDelete, "VMImgMO/<x>/Operations/Delete", Mo::VmImgMO, F::Null, &[E, G], O::One, Permanent, Required, TEXT_PLAIN,
        "Deletes the image from the store and then its sub-tree."),
    def(NodeId::ImgExt, "VMImgMO/<x>/Ext", Mo::VmImgMO, F::Node, &[G], O::One, Permanent, Optional, "",
        "Vendor extensions of this image."),
];

/// The properties of a node that exists or may be added at a path.
#[derive(Clone, Copy, Debug)]
pub enum Def {
    /// A node of the table.
    Fixed(&'static NodeDef),
    /// A node below `VirMO/<x>/DMTree`, whose layout the server decides (section 11.2.1).
    Open,
}

impl Def {
    pub fn access(self) -> Access {
        match self {
            Def::Fixed(d) => d.access,
            Def::Open => Access::of(&[A, D, G, R]),
        }
    }

    pub fn scope(self) -> Scope {
        match self {
            Def::Fixed(d) => d.scope,
            Def::Open => Dynamic,
        }
    }

    pub fn id(self) -> Option<NodeId> {
        match self {
            Def::Fixed(d) => Some(d.id),
            Def::Open => None,
        }
    }
}

/// The placeholder segment of the table's paths.
pub const PLACEHOLDER: &str = "<x>";

/// Whether a table path matches a concrete path; the number of literal segments if so (more
/// literal segments is a better match: `VirMO/Operations` beats `VirMO/<x>`).
fn matches(pattern: &str, path: &str) -> Option<usize> {
    let mut literal = 0;
    let mut p = pattern.split('/');
    let mut s = path.split('/');
    loop {
        match (p.next(), s.next()) {
            (None, None) => return Some(literal),
            (Some(PLACEHOLDER), Some(_)) => {}
            (Some(a), Some(b)) if a == b => literal += 1,
            _ => return None,
        }
    }
}

/// The definition of the node at `path` (normalized, see `uri`), if the tree may hold one there.
pub fn lookup(path: &str) -> Option<Def> {
    let best = NODES
        .iter()
        .filter_map(|d| matches(d.path, path).map(|score| (score, d)))
        .max_by_key(|(score, _)| *score)
        .map(|(_, d)| d);
    if let Some(d) = best {
        return Some(Def::Fixed(d));
    }
    // VirMO/<x>/DMTree/...: anything the server builds.
    let mut segs = path.splitn(4, '/');
    match (segs.next(), segs.next(), segs.next(), segs.next()) {
        (Some("VirMO"), Some(_), Some("DMTree"), Some(rest)) if !rest.is_empty() => Some(Def::Open),
        _ => None,
    }
}

/// The definition with this id.
pub fn def_of(id: NodeId) -> &'static NodeDef {
    NODES
        .iter()
        .find(|d| d.id == id)
        .expect("every NodeId has a row in NODES")
}

/// `pattern` with its `<x>` placeholders replaced by `names`, in order.
pub fn instantiate(pattern: &str, names: &[&str]) -> alloc::string::String {
    let mut out = alloc::string::String::new();
    let mut names = names.iter();
    for (i, seg) in pattern.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        if seg == PLACEHOLDER {
            out.push_str(names.next().expect("a name for every <x>"));
        } else {
            out.push_str(seg);
        }
    }
    out
}

/// The path of the node `id` for the instance names `names` (one per `<x>`).
pub fn path_of(id: NodeId, names: &[&str]) -> alloc::string::String {
    instantiate(def_of(id).path, names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_segments_win_over_placeholders() {
        let Some(Def::Fixed(d)) = lookup("VirMO/Operations") else {
            panic!()
        };
        assert_eq!(d.id, NodeId::Operations);
        let Some(Def::Fixed(d)) = lookup("VirMO/Operation") else {
            panic!()
        };
        assert_eq!(d.id, NodeId::Vm);
        let Some(Def::Fixed(d)) = lookup("VirMO/vm1/Operations/Create") else {
            panic!()
        };
        assert_eq!(d.id, NodeId::OpCreate);
        assert!(matches!(
            lookup("VirMO/vm1/DMTree/SCOMO/x"),
            Some(Def::Open)
        ));
        assert!(lookup("VirMO/vm1/Nope").is_none());
        assert!(lookup("Nope").is_none());
    }

    #[test]
    fn every_id_has_exactly_one_row_and_parents_exist() {
        for d in NODES {
            assert_eq!(
                NODES.iter().filter(|e| e.id == d.id).count(),
                1,
                "{}",
                d.path
            );
            assert_eq!(
                NODES.iter().filter(|e| e.path == d.path).count(),
                1,
                "{}",
                d.path
            );
            if let Some((parent, _)) = d.path.rsplit_once('/') {
                assert!(
                    NODES.iter().any(|e| e.path == parent),
                    "parent of {}",
                    d.path
                );
            }
            // A node with children in the table is interior.
            let interior = d.path == "."
                || NODES.iter().any(|e| {
                    e.path
                        .strip_prefix(d.path)
                        .is_some_and(|r| r.starts_with('/'))
                });
            if interior {
                assert_eq!(d.format, Format::Node, "{}", d.path);
            }
            // MO roots carry an MOID, leaves a MIME type.
            if d.format != Format::Node {
                assert!(d.mime.contains('/'), "{}", d.path);
            }
        }
    }

    #[test]
    fn formats_check_values() {
        assert!(Format::Int.check("42").is_ok());
        assert!(Format::Int.check("x").is_err());
        assert!(Format::Bool.check("true").is_ok());
        assert!(Format::Bool.check("yes").is_err());
        assert!(Format::Null.check("").is_ok());
        assert!(Format::Null.check("a").is_err());
        assert!(Format::Chr.check("anything").is_ok());
        for f in Format::ALL {
            assert_eq!(Format::parse(f.name()), Some(f));
            assert_eq!(Format::from_code(f.code()), Some(f));
        }
    }
}
