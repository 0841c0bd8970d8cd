//! `--vm kernel=PATH[,format=linux|elf|raw][,initrd=PATH][,ram=SIZE][,base=ADDR][,load=ADDR]
//! [,vcpus=N][,name=NAME][,cmdline=STRING]`: parsing (here, pure) and loading the files it names
//! ([`load_kernel`], [`load_initrd`]). Every mistake is a [`Usage`] error: exit status 2, before
//! anything is built or started. Formats and placement: docs/guest-images.md.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use harness_runner::formats::{
    self, GuestVm, ImageFormat, DEFAULT_RAM_BASE, FORMAT_NAMES, IPA_LIMIT, PLATFORM_DEVICES,
    RAW_LOAD_OFFSET,
};
use harness_runner::layout::{LayoutError, LINUX_BASE_ALIGN};
use harness_runner::linux::{self, DEFAULT_CMDLINE, DEFAULT_RAM};

use crate::args::Usage;

pub const KEYS: &str = "kernel, format, initrd, ram, base, load, vcpus, cpu, cmdline, name";
pub const MAX_VCPUS: u32 = 8;
/// arm64 Linux's `COMMAND_LINE_SIZE` is 2048, terminating NUL included.
pub const MAX_CMDLINE: usize = 2047;
/// A gzip-compressed kernel is decompressed up to this size.
const MAX_KERNEL: u64 = 512 << 20;

/// Which initrd a VM gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InitrdArg {
    /// Linux images: the harness initramfs (`target/images/initramfs.cpio.gz`), built by
    /// xtask; other formats: none.
    Default,
    /// `initrd=none`.
    None,
    Path(PathBuf),
}

/// One `--vm`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmArg {
    pub name: String,
    /// The image, of any format.
    pub kernel: PathBuf,
    /// `None`: detected from the image.
    pub format: Option<ImageFormat>,
    pub initrd: InitrdArg,
    pub ram: u64,
    /// The RAM's IPA.
    pub base: u64,
    /// `load=`: where a raw image goes (an IPA).
    pub load: Option<u64>,
    pub vcpus: u32,
    pub cmdline: String,
    /// `cpu=`: the VirMO CPU percentage (docs/scheduler.md); `None`: an equal part of what
    /// the VMs with one leave.
    pub cpu_pct: Option<u8>,
}

fn usage(msg: impl Into<String>) -> Usage {
    Usage(msg.into())
}

/// A VM name as the boot bundle and the console prefix want it.
pub fn valid_name(name: &str) -> bool {
    (1..32).contains(&name.len())
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
}

/// `256M`, `1G`, `512K`, `1GiB`, `268435456`: bytes. A multiple of 4 KiB, more than 0.
pub fn parse_size(key: &str, v: &str) -> Result<u64, Usage> {
    let not_a_size = || {
        usage(format!(
            "--vm: {key}={v}: not a size (bytes, or a number with K, M or G: 256M, 1G)"
        ))
    };
    let digits = v.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(not_a_size());
    }
    let number: u64 = v[..digits].parse().map_err(|_| not_a_size())?;
    let suffix = &v[digits..];
    let (unit, rest) = match suffix.chars().next() {
        None => (1, ""),
        Some(c) => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                _ => return Err(not_a_size()),
            };
            (1u64 << shift, &suffix[1..])
        }
    };
    if !matches!(rest, "" | "iB" | "B") || (unit == 1 && !rest.is_empty()) {
        return Err(not_a_size());
    }
    let bytes = number.checked_mul(unit).ok_or_else(not_a_size)?;
    if bytes == 0 {
        return Err(usage(format!("--vm: {key}={v}: must be more than 0")));
    }
    if !bytes.is_multiple_of(4096) {
        return Err(usage(format!("--vm: {key}={v}: not a multiple of 4 KiB")));
    }
    Ok(bytes)
}

/// `0x4000_0000`, `0x40000000`, `1073741824`: an address.
pub fn parse_addr(key: &str, v: &str) -> Result<u64, Usage> {
    let bad = || {
        usage(format!(
            "--vm: {key}={v}: not an address (0x4010_0000, or decimal)"
        ))
    };
    let (digits, radix) = match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(hex) => (hex.replace('_', ""), 16),
        None => (v.to_string(), 10),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(bad());
    }
    u64::from_str_radix(&digits, radix).map_err(|_| bad())
}

/// Parses one `--vm` value; `index` (from 1) names it `vm<index>` unless `name=` is given.
/// `cmdline=` must come last: the rest of the value, commas included, is the command line.
pub fn parse_vm(spec: &str, index: usize) -> Result<VmArg, Usage> {
    let mut kernel = None;
    let mut format = None;
    let mut base = None;
    let mut load = None;
    let mut initrd = None;
    let mut ram = None;
    let mut vcpus = None;
    let mut cpu = None;
    let mut cmdline = None;
    let mut name = None;
    let mut rest = Some(spec);
    while let Some(r) = rest {
        let (item, next) = if r.starts_with("cmdline=") {
            (r, None)
        } else {
            match r.split_once(',') {
                Some((item, next)) => (item, Some(next)),
                None => (r, None),
            }
        };
        rest = next;
        let Some((key, value)) = item.split_once('=') else {
            return Err(usage(format!("--vm: `{item}` is not key=value")));
        };
        if value.is_empty() && key != "cmdline" {
            return Err(usage(format!("--vm: `{item}` has no value")));
        }
        let slot_taken = match key {
            "kernel" => kernel.replace(PathBuf::from(value)).is_some(),
            "initrd" => initrd
                .replace(match value {
                    "none" => InitrdArg::None,
                    p => InitrdArg::Path(PathBuf::from(p)),
                })
                .is_some(),
            "ram" => ram.replace(parse_size(key, value)?).is_some(),
            "format" => {
                let f = ImageFormat::from_name(value).ok_or_else(|| {
                    usage(format!(
                        "--vm: format={value}: unknown format (formats: {FORMAT_NAMES})"
                    ))
                })?;
                format.replace(f).is_some()
            }
            "base" => {
                let b = parse_addr(key, value)?;
                if !b.is_multiple_of(4096) {
                    return Err(usage(format!(
                        "--vm: base={value}: not a multiple of 4 KiB"
                    )));
                }
                base.replace(b).is_some()
            }
            "load" => load.replace(parse_addr(key, value)?).is_some(),
            "vcpus" => {
                let n = value
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=MAX_VCPUS).contains(n))
                    .ok_or_else(|| {
                        usage(format!("--vm: vcpus={value}: must be 1 to {MAX_VCPUS}"))
                    })?;
                vcpus.replace(n).is_some()
            }
            "cpu" => {
                let pct = value
                    .parse::<u8>()
                    .ok()
                    .filter(|p| *p <= 100)
                    .ok_or_else(|| usage(format!("--vm: cpu={value}: a percentage, 0 to 100")))?;
                cpu.replace(pct).is_some()
            }
            "cmdline" => {
                if value.len() > MAX_CMDLINE {
                    return Err(usage(format!(
                        "--vm: cmdline is {} bytes, Linux takes at most {MAX_CMDLINE}",
                        value.len()
                    )));
                }
                cmdline.replace(value.to_string()).is_some()
            }
            "name" => {
                if !valid_name(value) {
                    return Err(usage(format!(
                        "--vm: name={value}: a name is 1 to 31 characters of A-Z a-z 0-9 _ -"
                    )));
                }
                name.replace(value.to_string()).is_some()
            }
            _ => return Err(usage(format!("--vm: unknown key `{key}` (keys: {KEYS})"))),
        };
        if slot_taken {
            return Err(usage(format!("--vm: `{key}` given twice")));
        }
    }
    let kernel = kernel.ok_or_else(|| usage(format!("--vm `{spec}`: `kernel=PATH` is missing")))?;
    let ram = ram.unwrap_or(DEFAULT_RAM);
    let base_given = base.is_some();
    let base = base.unwrap_or(DEFAULT_RAM_BASE);
    if base_given {
        check_ram_range(base, ram)?;
    }
    Ok(VmArg {
        name: name.unwrap_or_else(|| format!("vm{index}")),
        kernel,
        format,
        initrd: initrd.unwrap_or(InitrdArg::Default),
        ram,
        base,
        load,
        vcpus: vcpus.unwrap_or(1),
        cmdline: cmdline.unwrap_or_else(|| DEFAULT_CMDLINE.to_string()),
        cpu_pct: cpu,
    })
}

/// RAM at `base`: inside the 39-bit IPA space, and clear of the emulated devices.
fn check_ram_range(base: u64, ram: u64) -> Result<(), Usage> {
    let end = base.saturating_add(ram);
    let range = format!("the VM's RAM ({base:#x}..{end:#x})");
    if end > IPA_LIMIT {
        return Err(usage(format!(
            "--vm: base={base:#x}: {range} would end past the 39-bit IPA space ({IPA_LIMIT:#x})"
        )));
    }
    let (dev_start, dev_end) = PLATFORM_DEVICES;
    if base < dev_end && dev_start < end {
        return Err(usage(format!(
            "--vm: base={base:#x}: {range} would overlap the emulated devices at \
             {dev_start:#x}..{dev_end:#x}"
        )));
    }
    Ok(())
}

/// Checks the `--vm`s together: unique names, and RAM that fits the largest QEMU machine.
pub fn check_vms(vms: &[VmArg]) -> Result<(), Usage> {
    for (i, vm) in vms.iter().enumerate() {
        if vms[..i].iter().any(|o| o.name == vm.name) {
            return Err(usage(format!("--vm: two VMs are named `{}`", vm.name)));
        }
    }
    let cpu: u32 = vms.iter().filter_map(|v| v.cpu_pct).map(u32::from).sum();
    if cpu > 100 {
        return Err(usage(format!(
            "--vm: the cpu= percentages add up to {cpu}, over 100"
        )));
    }
    let ram = vms.iter().fold(0u64, |a, v| a.saturating_add(v.ram));
    linux::machine_ram(ram, 0).map_err(|e| usage(format!("--vm: {e}")))?;
    Ok(())
}

fn read_file(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    if path.is_dir() {
        return Err(std::io::Error::other("is a directory"));
    }
    let mut data = Vec::new();
    fs::File::open(path)?
        .take(limit + 1)
        .read_to_end(&mut data)?;
    Ok(data)
}

/// Decompresses `data` if it is gzip (magic `1f 8b`), at most [`MAX_KERNEL`] bytes.
pub fn gunzip_if_gzip(data: Vec<u8>) -> Result<Vec<u8>, String> {
    if !data.starts_with(&[0x1f, 0x8b]) {
        return Ok(data);
    }
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(&data[..])
        .take(MAX_KERNEL + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("gzip data is corrupt: {e}"))?;
    if out.len() as u64 > MAX_KERNEL {
        return Err(format!(
            "decompresses to more than {}",
            linux::size_text(MAX_KERNEL)
        ));
    }
    Ok(out)
}

/// A `--vm` image, read and placed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    pub format: ImageFormat,
    pub bytes: Vec<u8>,
    /// Raw images: where the image goes, from the RAM base; 0 otherwise.
    pub load_offset: u64,
}

/// Reads `vm`'s image, finds its format (`format=`, else detected: ELF magic, arm64 `Image`
/// magic; a gzip file is decompressed first unless it is `elf` or `raw`), and checks it as the
/// hypervisor will: header, placement, fit in the VM's RAM.
pub fn load_kernel(vm: &VmArg) -> Result<Image, Usage> {
    let path = &vm.kernel;
    let fail =
        |e: &dyn std::fmt::Display| usage(format!("VM `{}`: {e} ({})", vm.name, path.display()));
    let data = read_file(path, MAX_KERNEL).map_err(|e| {
        usage(format!(
            "VM `{}`: cannot read kernel {}: {e}",
            vm.name,
            path.display()
        ))
    })?;
    let data = match vm.format {
        None | Some(ImageFormat::Linux) => gunzip_if_gzip(data)
            .map_err(|e| usage(format!("VM `{}`: kernel {}: {e}", vm.name, path.display())))?,
        Some(_) => data,
    };
    let format = match vm.format {
        Some(f) => f,
        None => formats::detect(&data).ok_or_else(|| fail(&formats::UNDETECTED))?,
    };
    if format == ImageFormat::Linux && !vm.base.is_multiple_of(LINUX_BASE_ALIGN) {
        return Err(usage(format!(
            "VM `{}`: base={:#x}: a Linux VM's RAM base must be 2 MiB aligned",
            vm.name, vm.base
        )));
    }
    let load_offset = match (format, vm.load) {
        (ImageFormat::Raw, load) => {
            let load = load.unwrap_or(vm.base + RAW_LOAD_OFFSET);
            load.checked_sub(vm.base).ok_or_else(|| {
                usage(format!(
                    "VM `{}`: load={load:#x} lies below the VM's RAM at {:#x}",
                    vm.name, vm.base
                ))
            })?
        }
        (_, None) => 0,
        (f, Some(_)) => {
            return Err(usage(format!(
                "VM `{}`: load= is only for format=raw (a {f} image says where it goes)",
                vm.name
            )))
        }
    };
    formats::plan(format, vm.base, vm.ram, &data, load_offset, 0)
        .map_err(|e: LayoutError| fail(&e))?;
    Ok(Image {
        format,
        bytes: data,
        load_offset,
    })
}

/// Reads `vm`'s initrd, if it names a file.
pub fn load_initrd(vm: &VmArg) -> Result<Option<Vec<u8>>, Usage> {
    match &vm.initrd {
        InitrdArg::Path(p) => read_file(p, 4 << 30).map(Some).map_err(|e| {
            usage(format!(
                "VM `{}`: cannot read initrd {}: {e}",
                vm.name,
                p.display()
            ))
        }),
        InitrdArg::None => Ok(Some(Vec::new())),
        InitrdArg::Default => Ok(None),
    }
}

/// The VM to put in the bundle, its placement checked (the initrd must fit too).
pub fn finish_vm(vm: &VmArg, image: Image, initrd: Vec<u8>) -> Result<GuestVm, Usage> {
    let out = GuestVm {
        name: vm.name.clone(),
        format: image.format,
        image: image.bytes,
        initrd,
        ram: vm.ram,
        ram_base: vm.base,
        load_offset: image.load_offset,
        vcpus: vm.vcpus,
        cmdline: vm.cmdline.clone(),
        cpu_pct: vm.cpu_pct,
    };
    out.plan().map_err(Usage)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(spec: &str) -> String {
        parse_vm(spec, 1).unwrap_err().0
    }

    #[test]
    fn defaults_and_every_key() {
        assert_eq!(
            parse_vm("kernel=/k", 3).unwrap(),
            VmArg {
                name: "vm3".into(),
                kernel: "/k".into(),
                format: None,
                initrd: InitrdArg::Default,
                ram: 256 << 20,
                base: 0x4000_0000,
                load: None,
                vcpus: 1,
                cmdline: "console=ttyAMA0".into(),
                cpu_pct: None,
            }
        );
        assert_eq!(
            parse_vm(
                "name=web_1,ram=1G,vcpus=8,cpu=30,initrd=/i.gz,kernel=/k,format=raw,\
                 base=0x8000_0000,load=0x80010000,cmdline=console=ttyAMA0 earlycon=pl011,0x9000000 x=a,b",
                1
            )
            .unwrap(),
            VmArg {
                name: "web_1".into(),
                kernel: "/k".into(),
                format: Some(ImageFormat::Raw),
                initrd: InitrdArg::Path("/i.gz".into()),
                ram: 1 << 30,
                base: 0x8000_0000,
                load: Some(0x8001_0000),
                vcpus: 8,
                cmdline: "console=ttyAMA0 earlycon=pl011,0x9000000 x=a,b".into(),
                cpu_pct: Some(30),
            }
        );
        assert_eq!(
            parse_vm("kernel=k,initrd=none", 1).unwrap().initrd,
            InitrdArg::None
        );
        assert_eq!(parse_vm("kernel=k,cmdline=", 1).unwrap().cmdline, "");
        assert_eq!(
            parse_vm("kernel=a=b", 1).unwrap().kernel,
            PathBuf::from("a=b")
        );
    }

    #[test]
    fn sizes() {
        let s = |v: &str| parse_size("ram", v);
        assert_eq!(s("256M"), Ok(256 << 20));
        assert_eq!(s("256m"), Ok(256 << 20));
        assert_eq!(s("256MiB"), Ok(256 << 20));
        assert_eq!(s("256MB"), Ok(256 << 20));
        assert_eq!(s("1G"), Ok(1 << 30));
        assert_eq!(s("4096K"), Ok(4 << 20));
        assert_eq!(s("268435456"), Ok(256 << 20));
        let not = "not a size (bytes, or a number with K, M or G: 256M, 1G)";
        for bad in [
            "",
            "M",
            "lots",
            "1T",
            "1.5G",
            "-1G",
            "1 G",
            "1Gi",
            "1GB2",
            "12B",
            "99999999999999999999",
        ] {
            assert_eq!(
                s(bad).unwrap_err().0,
                format!("--vm: ram={bad}: {not}"),
                "{bad}"
            );
        }
        assert_eq!(
            s("18446744073709551615G").unwrap_err().0,
            format!("--vm: ram=18446744073709551615G: {not}")
        );
        assert_eq!(s("0").unwrap_err().0, "--vm: ram=0: must be more than 0");
        assert_eq!(s("0M").unwrap_err().0, "--vm: ram=0M: must be more than 0");
        assert_eq!(
            s("1000").unwrap_err().0,
            "--vm: ram=1000: not a multiple of 4 KiB"
        );
    }

    #[test]
    fn every_parse_error() {
        assert_eq!(
            err("kernel=k,colour=blue"),
            "--vm: unknown key `colour` (keys: kernel, format, initrd, ram, base, load, vcpus, \
             cpu, cmdline, name)"
        );
        assert_eq!(err("ram=256M"), "--vm `ram=256M`: `kernel=PATH` is missing");
        assert_eq!(
            err("cmdline=x,kernel=k"),
            "--vm `cmdline=x,kernel=k`: `kernel=PATH` is missing"
        );
        assert_eq!(err(""), "--vm: `` is not key=value");
        assert_eq!(err("Image"), "--vm: `Image` is not key=value");
        assert_eq!(err("kernel=k,"), "--vm: `` is not key=value");
        assert_eq!(err("kernel=k,,ram=1G"), "--vm: `` is not key=value");
        assert_eq!(err("kernel="), "--vm: `kernel=` has no value");
        assert_eq!(err("kernel=k,name="), "--vm: `name=` has no value");
        assert_eq!(err("kernel=k,kernel=j"), "--vm: `kernel` given twice");
        assert_eq!(err("kernel=k,ram=1G,ram=2G"), "--vm: `ram` given twice");
        assert_eq!(
            err("kernel=k,initrd=none,initrd=/i"),
            "--vm: `initrd` given twice"
        );
        assert_eq!(err("kernel=k,name=a,name=b"), "--vm: `name` given twice");
        assert_eq!(err("kernel=k,vcpus=1,vcpus=2"), "--vm: `vcpus` given twice");
        assert_eq!(err("kernel=k,vcpus=0"), "--vm: vcpus=0: must be 1 to 8");
        assert_eq!(err("kernel=k,vcpus=9"), "--vm: vcpus=9: must be 1 to 8");
        assert_eq!(err("kernel=k,vcpus=two"), "--vm: vcpus=two: must be 1 to 8");
        assert_eq!(
            err("kernel=k,cpu=101"),
            "--vm: cpu=101: a percentage, 0 to 100"
        );
        assert_eq!(
            err("kernel=k,cpu=-1"),
            "--vm: cpu=-1: a percentage, 0 to 100"
        );
        assert_eq!(
            err("kernel=k,ram=lots").split(':').nth(1),
            Some(" ram=lots")
        );
        let name_err =
            |n: &str| format!("--vm: name={n}: a name is 1 to 31 characters of A-Z a-z 0-9 _ -");
        for bad in ["a.b", "a b", "ä", &"x".repeat(32), "a|b"] {
            assert_eq!(err(&format!("kernel=k,name={bad}")), name_err(bad));
        }
        assert!(parse_vm(&format!("kernel=k,name={}", "x".repeat(31)), 1).is_ok());
        assert_eq!(
            err("kernel=k,format=Image"),
            "--vm: format=Image: unknown format (formats: linux, elf, raw)"
        );
        assert_eq!(
            err("kernel=k,format=elf,format=raw"),
            "--vm: `format` given twice"
        );
        for f in ["linux", "elf", "raw"] {
            assert_eq!(
                parse_vm(&format!("kernel=k,format={f}"), 1).unwrap().format,
                ImageFormat::from_name(f)
            );
        }
        assert_eq!(
            err("kernel=k,base=0x1000,base=0x2000"),
            "--vm: `base` given twice"
        );
        assert_eq!(
            err("kernel=k,base=0x40000800"),
            "--vm: base=0x40000800: not a multiple of 4 KiB"
        );
        assert_eq!(
            err("kernel=k,base=0x7fffff0000"),
            "--vm: base=0x7fffff0000: the VM's RAM (0x7fffff0000..0x800fff0000) would end past \
             the 39-bit IPA space (0x8000000000)"
        );
        assert_eq!(
            err("kernel=k,base=0,ram=256M"),
            "--vm: base=0x0: the VM's RAM (0x0..0x10000000) would overlap the emulated devices \
             at 0x8000000..0xa000000"
        );
        assert!(parse_vm("kernel=k,base=0,ram=128M", 1).is_ok());
        assert!(parse_vm("kernel=k,base=0xa000000", 1).is_ok());
        for bad in ["zz", "0x", "0xg", "-1", "1e3", "0x1_0000_0000_0000_0000"] {
            assert_eq!(
                err(&format!("kernel=k,load={bad}")),
                format!("--vm: load={bad}: not an address (0x4010_0000, or decimal)")
            );
        }
        assert_eq!(parse_addr("load", "0x4001_0000"), Ok(0x4001_0000));
        assert_eq!(parse_addr("load", "0X10"), Ok(16));
        assert_eq!(parse_addr("load", "4096"), Ok(4096));
        assert_eq!(
            err(&format!("kernel=k,cmdline={}", "x".repeat(2048))),
            "--vm: cmdline is 2048 bytes, Linux takes at most 2047"
        );
        assert!(parse_vm(&format!("kernel=k,cmdline={}", "x".repeat(2047)), 1).is_ok());
    }

    #[test]
    fn checks_across_vms() {
        let vm = |s: &str, i| parse_vm(s, i).unwrap();
        assert_eq!(check_vms(&[vm("kernel=a", 1), vm("kernel=b", 2)]), Ok(()));
        assert_eq!(
            check_vms(&[vm("kernel=a,name=vm2", 1), vm("kernel=b", 2)])
                .unwrap_err()
                .0,
            "--vm: two VMs are named `vm2`"
        );
        assert_eq!(
            check_vms(&[vm("kernel=a,ram=5G", 1), vm("kernel=b,ram=3G", 2)])
                .unwrap_err()
                .0,
            "--vm: the VMs need 8 GiB of RAM, plus 256 MiB for the hypervisor: more than the \
             8 GiB QEMU machine xtask runs"
        );
        assert_eq!(check_vms(&[vm("kernel=a,ram=7936M", 1)]), Ok(()));
    }

    /// A scratch directory for one test.
    fn scratch(test: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("xtask-vmarg-{}-{test}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn image(image_size: u64, flags: u64) -> Vec<u8> {
        let mut b = vec![0u8; 8192];
        b[16..24].copy_from_slice(&image_size.to_le_bytes());
        b[24..32].copy_from_slice(&flags.to_le_bytes());
        b[0x38..0x3c].copy_from_slice(b"ARM\x64");
        b
    }

    #[test]
    fn loading_files() {
        let d = scratch("load");
        let p = |n: &str| d.join(n).display().to_string();
        fs::write(d.join("good"), image(32 << 20, 0xa)).unwrap();
        fs::write(d.join("corrupt"), vec![0x5a; 8192]).unwrap();
        fs::write(d.join("short"), b"ARM").unwrap();
        fs::write(d.join("be"), image(1 << 20, 1)).unwrap();
        fs::write(d.join("16k"), image(1 << 20, 2 << 1)).unwrap();
        fs::write(d.join("initrd"), vec![1; 3 << 20]).unwrap();
        let gz = {
            use std::io::Write;
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&image(32 << 20, 0xa)).unwrap();
            e.finish().unwrap()
        };
        fs::write(d.join("good.gz"), &gz).unwrap();
        fs::write(d.join("bad.gz"), &gz[..gz.len() / 2]).unwrap();

        let vm = |s: &str| parse_vm(s, 1).unwrap();
        let kerr = |s: &str| load_kernel(&vm(s)).unwrap_err().0;
        let good = load_kernel(&vm(&format!("kernel={}", p("good")))).unwrap();
        assert_eq!((good.format, good.bytes.len()), (ImageFormat::Linux, 8192));
        assert_eq!(
            load_kernel(&vm(&format!("kernel={}", p("good.gz"))))
                .unwrap()
                .bytes,
            image(32 << 20, 0xa)
        );
        assert!(
            kerr(&format!("kernel={}", p("missing"))).starts_with(&format!(
                "VM `vm1`: cannot read kernel {}: No such file",
                p("missing")
            ))
        );
        assert_eq!(
            kerr(&format!("kernel={}", d.display())),
            format!(
                "VM `vm1`: cannot read kernel {}: is a directory",
                d.display()
            )
        );
        assert_eq!(
            kerr(&format!("kernel={},name=x,format=linux", p("corrupt"))),
            format!(
                "VM `x`: not an arm64 Linux Image: bad magic (no \"ARM\\x64\" at offset 0x38) ({})",
                p("corrupt")
            )
        );
        // Without format=, neither magic: refused, naming format=raw.
        assert_eq!(
            kerr(&format!("kernel={},name=x", p("corrupt"))),
            format!("VM `x`: {} ({})", formats::UNDETECTED, p("corrupt"))
        );
        assert!(kerr(&format!("kernel={}", p("short"))).contains("format=raw"));
        assert!(kerr(&format!("kernel={},format=linux", p("short")))
            .contains("3 bytes, shorter than the 64-byte header"));
        assert!(kerr(&format!("kernel={}", p("be"))).contains("big-endian arm64 kernel"));
        assert!(kerr(&format!("kernel={}", p("16k"))).contains("kernel built for 16 KiB pages"));
        assert!(
            kerr(&format!("kernel={}", p("bad.gz"))).starts_with(&format!(
                "VM `vm1`: kernel {}: gzip data is corrupt",
                p("bad.gz")
            ))
        );
        assert_eq!(
            kerr(&format!("kernel={},ram=16M", p("good"))),
            format!(
                "VM `vm1`: image needs 32 MiB of RAM but the VM has 16 MiB ({})",
                p("good")
            )
        );

        let v = vm(&format!("kernel={},initrd={}", p("good"), p("initrd")));
        assert_eq!(load_initrd(&v).unwrap().unwrap().len(), 3 << 20);
        let v2 = vm(&format!("kernel={},initrd={}", p("good"), p("nope")));
        assert!(load_initrd(&v2).unwrap_err().0.starts_with(&format!(
            "VM `vm1`: cannot read initrd {}: No such file",
            p("nope")
        )));
        assert_eq!(
            load_initrd(&vm("kernel=k,initrd=none")).unwrap(),
            Some(vec![])
        );
        assert_eq!(load_initrd(&vm("kernel=k")).unwrap(), None);

        // The initrd must fit after the kernel: 32 MiB + 3 MiB + the device tree in 34 MiB.
        let small = vm(&format!("kernel={},ram=34M", p("good")));
        let kernel = load_kernel(&small).unwrap();
        assert_eq!(kernel.load_offset, 0);
        assert_eq!(
            finish_vm(&small, kernel.clone(), vec![1; 3 << 20])
                .unwrap_err()
                .0,
            "VM `vm1`: initrd of 3 MiB does not fit: it would start at 0x2000000 in a VM of 34 MiB"
        );
        let ok = finish_vm(&small, kernel, vec![1; 1 << 20]).unwrap();
        assert_eq!((ok.ram, ok.initrd.len()), (34 << 20, 1 << 20));
        assert_eq!((ok.format, ok.ram_base), (ImageFormat::Linux, 0x4000_0000));
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn elf_and_raw_images() {
        let d = scratch("formats");
        let p = |n: &str| d.join(n).display().to_string();
        const RX: u32 = 5;
        let spin: &[u8] = &[0, 0, 0, 0x14];
        let elf = |addr: u64| formats::elf_file(&[(addr, spin, 0x2000, RX)], addr);
        fs::write(d.join("rtos.elf"), elf(0x4008_0000)).unwrap();
        fs::write(d.join("high.elf"), elf(0x8000_0000)).unwrap();
        fs::write(d.join("blob.bin"), [0x14u8; 100]).unwrap();
        let vm = |s: &str| parse_vm(s, 1).unwrap();
        let kerr = |s: &str| load_kernel(&vm(s)).unwrap_err().0;

        // ELF: detected, or named; RAM at 0x4000_0000 unless base= says otherwise.
        for spec in [
            format!("kernel={}", p("rtos.elf")),
            format!("kernel={},format=elf", p("rtos.elf")),
        ] {
            let v = vm(&spec);
            let img = load_kernel(&v).unwrap();
            assert_eq!((img.format, img.load_offset), (ImageFormat::Elf, 0));
            // The default initrd of a non-Linux image is none (main.rs), and it runs as is.
            let g = finish_vm(&v, img, vec![]).unwrap();
            assert_eq!((g.ram_base, g.format), (0x4000_0000, ImageFormat::Elf));
            assert_eq!(g.plan().unwrap().entry_offset, 0x8_0000);
        }
        assert!(
            kerr(&format!("kernel={},ram=16M", p("high.elf"))).starts_with(
                "VM `vm1`: ELF segment 0 (IPA 0x80000000..0x80002000) lies outside the VM's RAM \
                 (0x40000000..0x41000000"
            )
        );
        let high = vm(&format!("kernel={},base=0x80000000,ram=16M", p("high.elf")));
        assert_eq!(load_kernel(&high).unwrap().format, ImageFormat::Elf);
        assert_eq!(
            kerr(&format!("kernel={},load=0x40080000", p("rtos.elf"))),
            "VM `vm1`: load= is only for format=raw (a elf image says where it goes)"
        );

        // Raw: only when named; 64 KiB above the RAM base unless load= says otherwise.
        assert!(kerr(&format!("kernel={}", p("blob.bin"))).contains("format=raw"));
        let v = vm(&format!("kernel={},format=raw", p("blob.bin")));
        let img = load_kernel(&v).unwrap();
        assert_eq!((img.format, img.load_offset), (ImageFormat::Raw, 0x1_0000));
        let g = finish_vm(&v, img, vec![9; 10]).unwrap();
        let l = g.plan().unwrap();
        assert_eq!((l.image_offset, l.entry_offset), (0x1_0000, 0x1_0000));
        let v = vm(&format!(
            "kernel={},format=raw,load=0x40200000",
            p("blob.bin")
        ));
        assert_eq!(load_kernel(&v).unwrap().load_offset, 0x20_0000);
        assert_eq!(
            kerr(&format!(
                "kernel={},format=raw,load=0x3fff0000",
                p("blob.bin")
            )),
            "VM `vm1`: load=0x3fff0000 lies below the VM's RAM at 0x40000000"
        );
        assert!(kerr(&format!(
            "kernel={},format=raw,load=0x50000000",
            p("blob.bin")
        ))
        .starts_with("VM `vm1`: image needs 256.0 MiB"));
        // A raw image is never decompressed, whatever its first bytes.
        fs::write(d.join("gz.bin"), [0x1f, 0x8b, 0, 0]).unwrap();
        let v = vm(&format!("kernel={},format=raw", p("gz.bin")));
        assert_eq!(load_kernel(&v).unwrap().bytes, [0x1f, 0x8b, 0, 0]);
        // A Linux VM's base must be 2 MiB aligned.
        fs::write(d.join("Image"), image(1 << 20, 0xa)).unwrap();
        assert_eq!(
            kerr(&format!("kernel={},base=0x40010000", p("Image"))),
            "VM `vm1`: base=0x40010000: a Linux VM's RAM base must be 2 MiB aligned"
        );
        let v = vm(&format!("kernel={},base=0x80000000", p("Image")));
        assert!(load_kernel(&v).is_ok());
        let _ = fs::remove_dir_all(&d);
    }
}
