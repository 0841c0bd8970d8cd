//! `--vm kernel=PATH[,initrd=PATH][,ram=SIZE][,vcpus=N][,cmdline=STRING][,name=NAME]`: parsing
//! (here, pure) and loading the files it names ([`load_kernel`], [`load_initrd`]). Every
//! mistake is a [`Usage`] error: exit status 2, before anything is built or started.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use harness_runner::layout::{self, LayoutError};
use harness_runner::linux::{self, LinuxVm, DEFAULT_CMDLINE, DEFAULT_RAM};

use crate::args::Usage;

pub const KEYS: &str = "kernel, initrd, ram, vcpus, cmdline, name";
pub const MAX_VCPUS: u32 = 8;
/// arm64 Linux's `COMMAND_LINE_SIZE` is 2048, terminating NUL included.
pub const MAX_CMDLINE: usize = 2047;
/// A gzip-compressed kernel is decompressed up to this size.
const MAX_KERNEL: u64 = 512 << 20;

/// Which initrd a VM gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InitrdArg {
    /// The harness initramfs (`target/images/initramfs.cpio.gz`), built by xtask.
    Default,
    /// `initrd=none`.
    None,
    Path(PathBuf),
}

/// One `--vm`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmArg {
    pub name: String,
    pub kernel: PathBuf,
    pub initrd: InitrdArg,
    pub ram: u64,
    pub vcpus: u32,
    pub cmdline: String,
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

/// Parses one `--vm` value; `index` (from 1) names it `vm<index>` unless `name=` is given.
/// `cmdline=` must come last: the rest of the value, commas included, is the command line.
pub fn parse_vm(spec: &str, index: usize) -> Result<VmArg, Usage> {
    let mut kernel = None;
    let mut initrd = None;
    let mut ram = None;
    let mut vcpus = None;
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
    Ok(VmArg {
        name: name.unwrap_or_else(|| format!("vm{index}")),
        kernel,
        initrd: initrd.unwrap_or(InitrdArg::Default),
        ram: ram.unwrap_or(DEFAULT_RAM),
        vcpus: vcpus.unwrap_or(1),
        cmdline: cmdline.unwrap_or_else(|| DEFAULT_CMDLINE.to_string()),
    })
}

/// Checks the `--vm`s together: unique names, and RAM that fits the largest QEMU machine.
pub fn check_vms(vms: &[VmArg]) -> Result<(), Usage> {
    for (i, vm) in vms.iter().enumerate() {
        if vms[..i].iter().any(|o| o.name == vm.name) {
            return Err(usage(format!("--vm: two VMs are named `{}`", vm.name)));
        }
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

/// Reads `vm`'s kernel (decompressing it if it is gzip), checks its header and that it fits in
/// the VM's RAM.
pub fn load_kernel(vm: &VmArg) -> Result<Vec<u8>, Usage> {
    let path = &vm.kernel;
    let data = read_file(path, MAX_KERNEL).map_err(|e| {
        usage(format!(
            "VM `{}`: cannot read kernel {}: {e}",
            vm.name,
            path.display()
        ))
    })?;
    let data = gunzip_if_gzip(data)
        .map_err(|e| usage(format!("VM `{}`: kernel {}: {e}", vm.name, path.display())))?;
    let bad = |e: LayoutError| usage(format!("VM `{}`: {e} ({})", vm.name, path.display()));
    layout::plan(vm.ram, &data, true, 0, 0, 0).map_err(bad)?;
    Ok(data)
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
pub fn finish_vm(vm: &VmArg, kernel: Vec<u8>, initrd: Vec<u8>) -> Result<LinuxVm, Usage> {
    let out = LinuxVm {
        name: vm.name.clone(),
        kernel,
        initrd,
        ram: vm.ram,
        vcpus: vm.vcpus,
        cmdline: vm.cmdline.clone(),
    };
    linux::plan_vm(&out).map_err(Usage)?;
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
                initrd: InitrdArg::Default,
                ram: 256 << 20,
                vcpus: 1,
                cmdline: "console=ttyAMA0".into(),
            }
        );
        assert_eq!(
            parse_vm(
                "name=web_1,ram=1G,vcpus=8,initrd=/i.gz,kernel=/k,cmdline=console=ttyAMA0 earlycon=pl011,0x9000000 x=a,b",
                1
            )
            .unwrap(),
            VmArg {
                name: "web_1".into(),
                kernel: "/k".into(),
                initrd: InitrdArg::Path("/i.gz".into()),
                ram: 1 << 30,
                vcpus: 8,
                cmdline: "console=ttyAMA0 earlycon=pl011,0x9000000 x=a,b".into(),
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
            "--vm: unknown key `colour` (keys: kernel, initrd, ram, vcpus, cmdline, name)"
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
        assert_eq!(
            load_kernel(&vm(&format!("kernel={}", p("good"))))
                .unwrap()
                .len(),
            8192
        );
        assert_eq!(
            load_kernel(&vm(&format!("kernel={}", p("good.gz")))).unwrap(),
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
            kerr(&format!("kernel={},name=x", p("corrupt"))),
            format!(
                "VM `x`: not an arm64 Linux Image: bad magic (no \"ARM\\x64\" at offset 0x38) ({})",
                p("corrupt")
            )
        );
        assert!(kerr(&format!("kernel={}", p("short")))
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
        assert_eq!(
            finish_vm(&small, kernel.clone(), vec![1; 3 << 20])
                .unwrap_err()
                .0,
            "VM `vm1`: initrd of 3 MiB does not fit: it would start at 0x2000000 in a VM of 34 MiB"
        );
        let ok = finish_vm(&small, kernel, vec![1; 1 << 20]).unwrap();
        assert_eq!((ok.ram, ok.initrd.len()), (34 << 20, 1 << 20));
        let _ = fs::remove_dir_all(&d);
    }
}
