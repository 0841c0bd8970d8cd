//! What the boot vCPU learns from the device tree the hypervisor passes in `x0`, and the
//! hand-over to the program's main function.

use core::fmt;
use core::str::Utf8Error;

use fdt::{Fdt, FdtError};

use crate::bootargs::Cmdline;
use crate::sync::Shared;

/// The facts about its VM a test guest needs, read once at boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootInfo<'a> {
    pub dtb_ipa: u64,
    /// `/chosen/bootargs`, empty if absent.
    pub cmdline: Cmdline<'a>,
    /// The first `/memory` region: this VM's RAM.
    pub ram_base: u64,
    pub ram_size: u64,
    /// The number of `cpu` nodes under `/cpus`.
    pub vcpu_count: usize,
}

impl BootInfo<'_> {
    /// The first IPA past the end of RAM.
    pub fn ram_end(&self) -> u64 {
        self.ram_base + self.ram_size
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum DtbError {
    NullPointer,
    Header(FdtError),
    NoMemory,
    NoCpus,
    BootargsNotUtf8(Utf8Error),
}

impl fmt::Display for DtbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DtbError::NullPointer => f.write_str("no device tree (x0 = 0)"),
            DtbError::Header(e) => write!(f, "bad header: {e}"),
            DtbError::NoMemory => f.write_str("no /memory region with a size"),
            DtbError::NoCpus => f.write_str("no cpu node under /cpus"),
            DtbError::BootargsNotUtf8(e) => write!(f, "/chosen/bootargs: {e}"),
        }
    }
}

/// Reads the [`BootInfo`] out of the device tree blob `dtb`, found at `dtb_ipa`.
pub fn parse(dtb: &[u8], dtb_ipa: u64) -> Result<BootInfo<'_>, DtbError> {
    let fdt = Fdt::new(dtb).map_err(DtbError::Header)?;
    let ram = fdt
        .find_node("/memory")
        .and_then(|memory| memory.reg()?.next())
        .ok_or(DtbError::NoMemory)?;
    let ram_size = ram.size.ok_or(DtbError::NoMemory)? as u64;
    let vcpu_count = fdt
        .find_node("/cpus")
        .ok_or(DtbError::NoCpus)?
        .children()
        .filter(|node| node.name.split('@').next() == Some("cpu"))
        .count();
    if vcpu_count == 0 {
        return Err(DtbError::NoCpus);
    }
    Ok(BootInfo {
        dtb_ipa,
        cmdline: Cmdline::new(bootargs(&fdt)?),
        ram_base: ram.starting_address as u64,
        ram_size,
        vcpu_count,
    })
}

/// `/chosen/bootargs` without its NUL terminator. (`fdt`'s own `Chosen::bootargs` panics on an
/// empty property.)
fn bootargs<'a>(fdt: &Fdt<'a>) -> Result<&'a str, DtbError> {
    let Some(property) = fdt
        .find_node("/chosen")
        .and_then(|chosen| chosen.property("bootargs"))
    else {
        return Ok("");
    };
    let text = property.value.strip_suffix(&[0]).unwrap_or(property.value);
    core::str::from_utf8(text).map_err(DtbError::BootargsNotUtf8)
}

/// The first word of every device tree blob (Devicetree Specification v0.4, 5.2).
#[cfg(any(target_os = "none", test))]
const FDT_MAGIC: u32 = 0xd00d_feed;

static BOOT_INFO: Shared<Option<BootInfo<'static>>> = Shared::new(None);

/// This VM's [`BootInfo`].
///
/// # Panics
/// Before the runtime has read the device tree, i.e. never from a program's code.
pub fn boot_info() -> BootInfo<'static> {
    BOOT_INFO
        .get()
        .expect("boot_info() is only known once the runtime has booted")
}

/// The device tree blob at `dtb_ipa`, its length taken from its header.
///
/// # Safety
/// `dtb_ipa` must be the address of readable memory that stays unchanged for the rest of the
/// program (the entry contract's device tree, outside our image).
#[cfg(target_os = "none")]
unsafe fn blob_at(dtb_ipa: u64) -> Result<&'static [u8], DtbError> {
    /// `magic` and `totalsize`, the first two big-endian words of the header.
    const HEADER_PREFIX: usize = 8;
    if dtb_ipa == 0 {
        return Err(DtbError::NullPointer);
    }
    // With the MMU off, an IPA is the address.
    let start = dtb_ipa as usize as *const u8;
    // SAFETY: the caller guarantees readable memory; the header is at least this long.
    let prefix = unsafe { core::slice::from_raw_parts(start, HEADER_PREFIX) };
    let word = |at: usize| {
        u32::from_be_bytes([prefix[at], prefix[at + 1], prefix[at + 2], prefix[at + 3]])
    };
    if word(0) != FDT_MAGIC {
        return Err(DtbError::Header(FdtError::BadMagic));
    }
    let total_size = word(4) as usize;
    // SAFETY: as above; `parse` checks that the header agrees with this length.
    Ok(unsafe { core::slice::from_raw_parts(start, total_size) })
}

/// The boot vCPU's Rust entry: read the device tree, run the program, power off.
#[cfg(target_os = "none")]
pub(crate) fn boot_vcpu_main(dtb_ipa: u64) -> ! {
    extern "Rust" {
        /// Defined by the program with [`crate::entry!`].
        fn __guest_rt_main(dtb_ipa: u64);
    }
    // SAFETY: the entry contract makes x0 the IPA of our device tree, placed by the hypervisor
    // outside our image and never written by us.
    match unsafe { blob_at(dtb_ipa) }.and_then(|blob| parse(blob, dtb_ipa)) {
        Ok(info) => BOOT_INFO.set(Some(info)),
        Err(e) => crate::harness::abort(format_args!("device tree at {dtb_ipa:#x}: {e}")),
    }
    // SAFETY: `entry!` defines this function with exactly this signature.
    unsafe { __guest_rt_main(dtb_ipa) };
    crate::psci::system_off()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal flattened device tree writer (Devicetree Specification v0.4, chapter 5), so
    /// that tests need no `dtc`.
    #[derive(Default)]
    pub(crate) struct DtWriter {
        structs: Vec<u8>,
        strings: Vec<u8>,
    }

    const FDT_BEGIN_NODE: u32 = 1;
    const FDT_END_NODE: u32 = 2;
    const FDT_PROP: u32 = 3;
    const FDT_END: u32 = 9;
    const HEADER_LEN: usize = 40;
    /// One empty (terminating) memory reservation entry.
    const RSVMAP_LEN: usize = 16;

    impl DtWriter {
        fn word(&mut self, w: u32) {
            self.structs.extend(w.to_be_bytes());
        }

        fn bytes_padded(&mut self, b: &[u8]) {
            self.structs.extend(b);
            self.structs
                .resize(self.structs.len().next_multiple_of(4), 0);
        }

        pub fn begin(&mut self, name: &str) -> &mut Self {
            self.word(FDT_BEGIN_NODE);
            self.bytes_padded(&[name.as_bytes(), &[0]].concat());
            self
        }

        pub fn end(&mut self) -> &mut Self {
            self.word(FDT_END_NODE);
            self
        }

        pub fn prop(&mut self, name: &str, value: &[u8]) -> &mut Self {
            let name_offset = self.strings.len() as u32;
            self.strings.extend(name.as_bytes());
            self.strings.push(0);
            self.word(FDT_PROP);
            self.word(value.len() as u32);
            self.word(name_offset);
            self.bytes_padded(value);
            self
        }

        pub fn prop_u32s(&mut self, name: &str, cells: &[u32]) -> &mut Self {
            let value: Vec<u8> = cells.iter().flat_map(|c| c.to_be_bytes()).collect();
            self.prop(name, &value)
        }

        pub fn prop_str(&mut self, name: &str, text: &str) -> &mut Self {
            self.prop(name, &[text.as_bytes(), &[0]].concat())
        }

        pub fn finish(&mut self) -> Vec<u8> {
            self.word(FDT_END);
            let off_struct = HEADER_LEN + RSVMAP_LEN;
            let off_strings = off_struct + self.structs.len();
            let total = off_strings + self.strings.len();
            let header = [
                FDT_MAGIC,
                total as u32,
                off_struct as u32,
                off_strings as u32,
                HEADER_LEN as u32,
                17, // version
                16, // last compatible version
                0,  // boot cpu
                self.strings.len() as u32,
                self.structs.len() as u32,
            ];
            let mut blob: Vec<u8> = header.iter().flat_map(|w| w.to_be_bytes()).collect();
            blob.resize(off_struct, 0);
            blob.extend(&self.structs);
            blob.extend(&self.strings);
            blob
        }
    }

    /// A guest device tree as the hypervisor describes it: 16 MiB at 0x8000_0000.
    pub(crate) fn guest_dtb(bootargs: Option<&str>, cpus: u32) -> Vec<u8> {
        let mut dt = DtWriter::default();
        dt.begin("")
            .prop_u32s("#address-cells", &[2])
            .prop_u32s("#size-cells", &[2]);
        dt.begin("chosen");
        if let Some(args) = bootargs {
            dt.prop_str("bootargs", args);
        }
        dt.end();
        dt.begin("memory@80000000")
            .prop_str("device_type", "memory")
            .prop_u32s("reg", &[0, 0x8000_0000, 0, 0x0100_0000])
            .end();
        dt.begin("cpus")
            .prop_u32s("#address-cells", &[1])
            .prop_u32s("#size-cells", &[0]);
        for i in 0..cpus {
            dt.begin(&format!("cpu@{i}"))
                .prop_str("device_type", "cpu")
                .prop_str("enable-method", "psci")
                .prop_u32s("reg", &[i])
                .end();
        }
        dt.begin("cpu-map").end(); // not a cpu node
        dt.end();
        dt.begin("psci")
            .prop_str("compatible", "arm,psci-1.0")
            .prop_str("method", "hvc")
            .end();
        dt.end().finish()
    }

    #[test]
    fn reads_ram_cpus_and_cmdline() {
        let blob = guest_dtb(Some("vm_id=2 wait_ms=10"), 2);
        let info = parse(&blob, 0x80f0_0000).unwrap();
        assert_eq!(
            info,
            BootInfo {
                dtb_ipa: 0x80f0_0000,
                cmdline: Cmdline::new("vm_id=2 wait_ms=10"),
                ram_base: 0x8000_0000,
                ram_size: 0x0100_0000,
                vcpu_count: 2,
            }
        );
        assert_eq!(info.ram_end(), 0x8100_0000);
        assert_eq!(info.cmdline.param_u64("vm_id"), Some(2));
    }

    #[test]
    fn missing_or_empty_bootargs_is_an_empty_cmdline() {
        assert_eq!(parse(&guest_dtb(None, 1), 0).unwrap().cmdline.as_str(), "");
        assert_eq!(
            parse(&guest_dtb(Some(""), 1), 0).unwrap().cmdline.as_str(),
            ""
        );
    }

    #[test]
    fn refuses_a_tree_without_cpus_or_memory() {
        assert_eq!(parse(&guest_dtb(None, 0), 0), Err(DtbError::NoCpus));
        let no_memory = DtWriter::default()
            .begin("")
            .begin("cpus")
            .end()
            .end()
            .finish();
        assert_eq!(parse(&no_memory, 0), Err(DtbError::NoMemory));
    }

    #[test]
    fn refuses_what_is_not_a_device_tree() {
        assert_eq!(
            parse(&[0u8; 64], 0),
            Err(DtbError::Header(FdtError::BadMagic))
        );
        let mut truncated = guest_dtb(None, 1);
        truncated.truncate(100);
        assert_eq!(
            parse(&truncated, 0),
            Err(DtbError::Header(FdtError::BufferTooSmall))
        );
    }
}
