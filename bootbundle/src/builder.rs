//! Writing a bundle (host side, used by `xtask`).

use super::*;

/// A VM to put in a bundle, owning its image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedVmSpec {
    pub name: String,
    pub ram_size: u64,
    pub ipa_base: u64,
    pub image: Vec<u8>,
    pub load_offset: u64,
    pub entry_offset: u64,
    pub cmdline: String,
    pub initrd: Vec<u8>,
    pub vcpus: u32,
    pub flags: VmFlags,
    pub start_after: Option<usize>,
    pub fixed_pa: Option<u64>,
    pub cpu_pct: Option<u8>,
}

#[derive(Default, Debug)]
pub struct BundleBuilder {
    vms: Vec<OwnedVmSpec>,
    /// See [`Bundle::sched_trace_us`].
    pub sched_trace_us: u32,
    pub flags: BundleFlags,
}

impl BundleBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a VM and returns its index (for `start_after`).
    pub fn add(&mut self, vm: OwnedVmSpec) -> usize {
        self.vms.push(vm);
        self.vms.len() - 1
    }

    /// Serialises the bundle, then parses it back so that the writer can never produce a bundle
    /// the hypervisor would refuse.
    pub fn build(&self) -> Result<Vec<u8>, BundleError> {
        let n = self.vms.len();
        let mut out = vec![0u8; HEADER_SIZE + ENTRY_SIZE * n];
        out[0..8].copy_from_slice(MAGIC);
        out[8..12].copy_from_slice(&VERSION.to_le_bytes());
        out[12..16].copy_from_slice(&(n as u32).to_le_bytes());
        out[24..28].copy_from_slice(&self.sched_trace_us.to_le_bytes());
        out[28..32].copy_from_slice(&self.flags.0.to_le_bytes());
        for (i, vm) in self.vms.iter().enumerate() {
            let image_off = append_aligned(&mut out, &vm.image);
            let cmd_off = append_aligned(&mut out, vm.cmdline.as_bytes());
            let initrd_off = append_aligned(&mut out, &vm.initrd);
            let e = &mut out[HEADER_SIZE + i * ENTRY_SIZE..][..ENTRY_SIZE];
            let name = vm.name.as_bytes();
            if name.len() >= NAME_LEN {
                return Err(BundleError::BadName { vm: i });
            }
            e[..name.len()].copy_from_slice(name);
            let put64 = |e: &mut [u8], off: usize, v: u64| {
                e[off..off + 8].copy_from_slice(&v.to_le_bytes())
            };
            let put32 = |e: &mut [u8], off: usize, v: u32| {
                e[off..off + 4].copy_from_slice(&v.to_le_bytes())
            };
            put64(e, 32, vm.ram_size);
            put64(e, 40, vm.ipa_base);
            put64(e, 48, image_off as u64);
            put64(e, 56, vm.image.len() as u64);
            put64(e, 64, vm.load_offset);
            put64(e, 72, vm.entry_offset);
            put64(e, 80, cmd_off as u64);
            put32(e, 88, vm.cmdline.len() as u32);
            put32(e, 92, vm.vcpus);
            put32(e, 96, vm.flags.0);
            put32(e, 100, vm.start_after.map_or(NO_VM, |i| i as u32));
            put64(e, 104, vm.fixed_pa.unwrap_or(0));
            put64(e, 112, initrd_off as u64);
            put64(e, 120, vm.initrd.len() as u64);
            put32(e, 128, vm.cpu_pct.map_or(NO_PCT, u32::from));
        }
        let len = out.len() as u64;
        out[16..24].copy_from_slice(&len.to_le_bytes());
        Bundle::parse(&out)?;
        Ok(out)
    }
}

/// Appends `data` at a 16-byte aligned offset and returns that offset.
fn append_aligned(out: &mut Vec<u8>, data: &[u8]) -> usize {
    out.resize(out.len().next_multiple_of(16), 0);
    let off = out.len();
    out.extend_from_slice(data);
    off
}
