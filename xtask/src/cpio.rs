//! A writer of `newc` cpio archives, the format Linux unpacks as an initramfs
//! (`Documentation/driver-api/early-userspace/buffer-format.rst`).
//!
//! Each entry is a 110-byte ASCII header (`070701`, then 13 eight-digit hex fields: ino, mode,
//! uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor, rdevminor, namesize, check),
//! the NUL-terminated name padded to a multiple of 4 bytes (header included), then the data
//! padded to 4. The archive ends with an entry named `TRAILER!!!`. Everything is owned by root
//! with mtime 0, so the same inputs always give the same bytes.

use std::collections::BTreeSet;

const MAGIC: &str = "070701";
pub const TRAILER: &str = "TRAILER!!!";

pub const S_IFDIR: u32 = 0o040000;
pub const S_IFREG: u32 = 0o100000;
pub const S_IFLNK: u32 = 0o120000;
pub const S_IFCHR: u32 = 0o020000;

/// Builds an archive in memory. Paths are relative (`bin/busybox`, no leading `/`), and a
/// directory must be added before what it contains.
#[derive(Default)]
pub struct CpioWriter {
    out: Vec<u8>,
    next_ino: u32,
    names: BTreeSet<String>,
}

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

impl CpioWriter {
    pub fn new() -> Self {
        CpioWriter {
            out: Vec::new(),
            next_ino: 1,
            names: BTreeSet::new(),
        }
    }

    /// Adds one entry. Refuses absolute paths, `.`/`..` components, empty names, duplicates, a
    /// missing parent directory and sizes that do not fit the 32-bit header fields.
    #[allow(clippy::too_many_arguments)]
    fn entry(
        &mut self,
        path: &str,
        mode: u32,
        nlink: u32,
        rdev: (u32, u32),
        data: &[u8],
    ) -> Result<(), String> {
        if path.is_empty()
            || path.starts_with('/')
            || path.contains('\0')
            || path
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err(format!("cpio: bad path `{path}`"));
        }
        if path == TRAILER {
            return Err(format!("cpio: `{TRAILER}` is reserved"));
        }
        if let Some((parent, _)) = path.rsplit_once('/') {
            if !self.names.contains(parent) {
                return Err(format!(
                    "cpio: `{path}` added before its directory `{parent}`"
                ));
            }
        }
        if !self.names.insert(path.to_string()) {
            return Err(format!("cpio: `{path}` added twice"));
        }
        let size = u32::try_from(data.len())
            .map_err(|_| format!("cpio: `{path}` is larger than 4 GiB"))?;
        let ino = self.next_ino;
        self.next_ino += 1;
        self.raw_entry(ino, mode, nlink, rdev, path, data, size);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn raw_entry(
        &mut self,
        ino: u32,
        mode: u32,
        nlink: u32,
        rdev: (u32, u32),
        name: &str,
        data: &[u8],
        size: u32,
    ) {
        let namesize = name.len() as u32 + 1;
        let fields = [
            ino, mode, 0, 0, nlink, 0, size, 0, 0, rdev.0, rdev.1, namesize, 0,
        ];
        self.out.extend_from_slice(MAGIC.as_bytes());
        for f in fields {
            self.out.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        pad4(&mut self.out);
        self.out.extend_from_slice(data);
        pad4(&mut self.out);
    }

    pub fn dir(&mut self, path: &str, perm: u32) -> Result<(), String> {
        self.entry(path, S_IFDIR | (perm & 0o7777), 2, (0, 0), &[])
    }

    pub fn file(&mut self, path: &str, perm: u32, data: &[u8]) -> Result<(), String> {
        self.entry(path, S_IFREG | (perm & 0o7777), 1, (0, 0), data)
    }

    /// A symbolic link: its data is the target.
    pub fn symlink(&mut self, path: &str, target: &str) -> Result<(), String> {
        if target.is_empty() {
            return Err(format!("cpio: symlink `{path}` has an empty target"));
        }
        self.entry(path, S_IFLNK | 0o777, 1, (0, 0), target.as_bytes())
    }

    /// A character device node (no privilege needed: it is only a header).
    pub fn char_dev(
        &mut self,
        path: &str,
        perm: u32,
        major: u32,
        minor: u32,
    ) -> Result<(), String> {
        self.entry(path, S_IFCHR | (perm & 0o7777), 1, (major, minor), &[])
    }

    /// Appends the trailer and returns the archive.
    pub fn finish(mut self) -> Vec<u8> {
        self.raw_entry(0, 0, 1, (0, 0), TRAILER, &[], 0);
        self.out
    }
}

/// One entry read back (tests).
#[cfg(test)]
#[derive(Debug, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub ino: u32,
    pub mode: u32,
    pub nlink: u32,
    pub rdev: (u32, u32),
    pub data: Vec<u8>,
}

/// Reads an archive back, checking every header and the padding (tests).
#[cfg(test)]
pub fn read_all(mut b: &[u8]) -> Result<Vec<Entry>, String> {
    let total = b.len();
    let mut out = Vec::new();
    loop {
        let at = total - b.len();
        if !at.is_multiple_of(4) {
            return Err(format!("entry at {at} not 4-aligned"));
        }
        if b.len() < 110 || &b[..6] != MAGIC.as_bytes() {
            return Err(format!("bad header at {at}"));
        }
        let field = |i: usize| -> Result<u32, String> {
            let s = std::str::from_utf8(&b[6 + 8 * i..14 + 8 * i]).map_err(|e| e.to_string())?;
            u32::from_str_radix(s, 16).map_err(|e| format!("field {i} `{s}`: {e}"))
        };
        let (ino, mode, nlink, size) = (field(0)?, field(1)?, field(4)?, field(6)? as usize);
        let rdev = (field(9)?, field(10)?);
        let namesize = field(11)? as usize;
        if field(2)? != 0 || field(3)? != 0 || field(5)? != 0 || field(12)? != 0 {
            return Err("uid, gid, mtime and check must be 0".into());
        }
        let name_end = 110 + namesize;
        if b.len() < name_end || b[name_end - 1] != 0 {
            return Err(format!("name at {at} not NUL-terminated"));
        }
        let name = String::from_utf8(b[110..name_end - 1].to_vec()).map_err(|e| e.to_string())?;
        let data_start = name_end.next_multiple_of(4);
        let data_end = data_start + size;
        let next = data_end.next_multiple_of(4);
        if b.len() < next
            || b[name_end..data_start]
                .iter()
                .chain(&b[data_end..next])
                .any(|&x| x != 0)
        {
            return Err(format!("bad padding after `{name}`"));
        }
        let data = b[data_start..data_end].to_vec();
        b = &b[next..];
        if name == TRAILER {
            if !b.is_empty() {
                return Err("bytes after the trailer".into());
            }
            return Ok(out);
        }
        out.push(Entry {
            name,
            ino,
            mode,
            nlink,
            rdev,
            data,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_bytes_of_one_file() {
        let mut w = CpioWriter::new();
        w.file("init", 0o755, b"hi\n").unwrap();
        let a = w.finish();
        // ino 1, mode 0100755, uid 0, gid 0, nlink 1, mtime 0, size 3, dev 0:0, rdev 0:0,
        // namesize 5, check 0.
        let header = [
            "070701", "00000001", "000081ed", "00000000", "00000000", "00000001", "00000000",
            "00000003", "00000000", "00000000", "00000000", "00000000", "00000005", "00000000",
        ]
        .concat();
        // 110-byte header + "init\0" = 115, padded to 116; data 3, padded to 4.
        let mut expect = header.as_bytes().to_vec();
        assert_eq!(expect.len(), 110);
        expect.extend_from_slice(b"init\0\0");
        expect.extend_from_slice(b"hi\n\0");
        assert_eq!(&a[..expect.len()], &expect[..]);
        // The trailer: ino 0, mode 0, nlink 1, namesize 11; 110 + 11 = 121 → 124.
        let trailer = &a[expect.len()..];
        assert_eq!(trailer.len(), 124);
        assert!(trailer.starts_with(b"070701"));
        assert_eq!(&trailer[110..121], b"TRAILER!!!\0");
        assert_eq!(a.len() % 4, 0);
    }

    #[test]
    fn round_trips_every_kind_of_entry() {
        let mut w = CpioWriter::new();
        w.dir("bin", 0o755).unwrap();
        w.dir("dev", 0o755).unwrap();
        w.file("bin/busybox", 0o755, &[0x7f, b'E', b'L', b'F', 1])
            .unwrap();
        w.symlink("bin/sh", "busybox").unwrap();
        w.char_dev("dev/console", 0o600, 5, 1).unwrap();
        w.file("empty", 0o644, &[]).unwrap();
        let entries = read_all(&w.finish()).unwrap();
        type Summary<'a> = (&'a str, u32, u32, (u32, u32), &'a [u8]);
        let summary: Vec<Summary> = entries
            .iter()
            .map(|e| (e.name.as_str(), e.mode, e.nlink, e.rdev, e.data.as_slice()))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("bin", 0o40755, 2, (0, 0), &[][..]),
                ("dev", 0o40755, 2, (0, 0), &[][..]),
                (
                    "bin/busybox",
                    0o100755,
                    1,
                    (0, 0),
                    &[0x7f, b'E', b'L', b'F', 1][..]
                ),
                ("bin/sh", 0o120777, 1, (0, 0), &b"busybox"[..]),
                ("dev/console", 0o20600, 1, (5, 1), &[][..]),
                ("empty", 0o100644, 1, (0, 0), &[][..]),
            ]
        );
        // Distinct inode numbers (the kernel would hard-link equal ones with nlink > 1).
        let inos: BTreeSet<u32> = entries.iter().map(|e| e.ino).collect();
        assert_eq!(inos.len(), entries.len());
        assert!(!inos.contains(&0));
    }

    #[test]
    fn every_name_length_is_padded() {
        // Names of 1..8 bytes cover every padding remainder.
        let mut w = CpioWriter::new();
        for n in 1..=8 {
            w.file(&"f".repeat(n), 0o644, &vec![b'x'; n]).unwrap();
        }
        let entries = read_all(&w.finish()).unwrap();
        assert_eq!(entries.len(), 8);
        assert!(entries.iter().all(|e| e.data.len() == e.name.len()));
    }

    #[test]
    fn deterministic() {
        let build = || {
            let mut w = CpioWriter::new();
            w.dir("a", 0o755).unwrap();
            w.file("a/b", 0o644, b"x").unwrap();
            w.finish()
        };
        assert_eq!(build(), build());
    }

    #[test]
    fn refuses_bad_entries() {
        let mut w = CpioWriter::new();
        w.dir("bin", 0o755).unwrap();
        let e = |r: Result<(), String>| r.unwrap_err();
        assert_eq!(e(w.file("/init", 0o755, b"")), "cpio: bad path `/init`");
        assert_eq!(e(w.file("", 0o755, b"")), "cpio: bad path ``");
        assert_eq!(
            e(w.file("bin/../x", 0o755, b"")),
            "cpio: bad path `bin/../x`"
        );
        assert_eq!(e(w.file("bin//x", 0o755, b"")), "cpio: bad path `bin//x`");
        assert_eq!(e(w.file("./x", 0o755, b"")), "cpio: bad path `./x`");
        assert_eq!(e(w.dir("bin", 0o755)), "cpio: `bin` added twice");
        assert_eq!(
            e(w.file("usr/bin/x", 0o755, b"")),
            "cpio: `usr/bin/x` added before its directory `usr/bin`"
        );
        assert_eq!(
            e(w.file(TRAILER, 0o644, b"")),
            "cpio: `TRAILER!!!` is reserved"
        );
        assert_eq!(
            e(w.symlink("bin/sh", "")),
            "cpio: symlink `bin/sh` has an empty target"
        );
        // Nothing refused was written.
        assert_eq!(read_all(&w.finish()).unwrap().len(), 1);
    }

    #[test]
    fn reader_catches_corruption() {
        let mut w = CpioWriter::new();
        w.file("x", 0o644, b"abc").unwrap();
        let good = w.finish();
        assert!(read_all(&good).is_ok());
        let mut bad = good.clone();
        bad[0] = b'1';
        assert!(read_all(&bad).is_err());
        let mut bad = good.clone();
        bad.truncate(bad.len() - 4);
        assert!(read_all(&bad).is_err());
        let mut bad = good;
        bad.extend_from_slice(&[0; 4]);
        assert!(read_all(&bad).unwrap_err().contains("after the trailer"));
    }
}
