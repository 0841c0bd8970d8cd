//! The management VM: the agent (`mgmt-agent`) embedded in the hypervisor image at build time,
//! started before the boot bundle's VMs when the bundle asks for it (docs/virmo.md).

use bootbundle::{VmFlags, VmSpec};

/// The agent's ELF file (empty when the image was built without one).
static AGENT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/mgmt_agent.elf"));

/// Its VM id: 0, before every VM of the bundle (ids 1..) and every VM it creates.
pub const ID: usize = 0;
/// Its RAM: the agent's image, heap and the management tree.
pub const RAM: u64 = 64 << 20;
/// Where its RAM is in its IPA space: where the agent is linked (linker/guest.ld).
pub const IPA_BASE: u64 = 0x8000_0000;

/// The management VM's boot entry, if an agent is embedded; with the PMU for benchmarks.
pub fn spec(pmu: bool) -> Option<VmSpec<'static>> {
    if AGENT.is_empty() {
        return None;
    }
    Some(VmSpec {
        name: "mgmt",
        ram_size: RAM,
        ipa_base: IPA_BASE,
        image: AGENT,
        load_offset: 0,
        entry_offset: 0,
        cmdline: "",
        initrd: &[],
        vcpus: 1,
        flags: VmFlags(
            VmFlags::ELF
                | VmFlags::PLATFORM
                | VmFlags::MANAGEMENT
                | if pmu { VmFlags::PMU } else { 0 },
        ),
        start_after: None,
        fixed_pa: None,
        cpu_pct: None,
    })
}
