//! The `key=value&key=value` strings of VirMO (section 8): `CreateParams`, `CurrentConfig`,
//! `NewConfig` and `DeviceResources`.
//!
//! Owns: their syntax, the keys each accepts, value ranges, and formatting. Never: looks at the
//! tree or the hypervisor (defaults that depend on them are applied by the callers).
//!
//! Choices (docs/virmo.md, "CreateParams"):
//! - Keys are case-sensitive; a key may appear once; pairs are never empty (`a=1&&b=2`, a
//!   trailing `&`, `a` without `=`, `a=` are errors).
//! - Unknown keys are refused, vendor-prefixed or not: a server that sends a key expects an
//!   effect, and silently ignoring it (or a typo of a known key) would hide the mistake.
//! - Sizes are bytes; `K`, `M` and `G` suffixes (powers of 1024) are accepted on input, and
//!   output is always plain bytes.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use abi::mgmt::{Name, Resources, MAX_VCPUS, RAM_GRANULE};

/// Storage granule (abi::mgmt::Resources: a multiple of 512).
pub const STORAGE_GRANULE: u64 = 512;

/// Keys of `CreateParams`: the two standard ones (section 8), then ours.
pub const CREATE_KEYS: [&str; 8] = [
    "ImgID", "Running", "RAM", "Storage", "CPU", "Network", "VCPUs", "Name",
];
/// Keys of `NewConfig` (those of `CurrentConfig`).
pub const CONFIG_KEYS: [&str; 5] = ["RAM", "Storage", "CPU", "Network", "VCPUs"];

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParamError {
    /// Pair number n (1-based) is empty.
    EmptyPair(usize),
    NoEquals(String),
    EmptyKey(String),
    EmptyValue(String),
    Duplicate(String),
    UnknownKey(String),
    Missing(&'static str),
    BadBool(String, String),
    BadNumber(String, String),
    OutOfRange(String, String, &'static str),
    BadName(String),
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamError::EmptyPair(n) => write!(f, "pair {n} is empty (&& or a trailing &)"),
            ParamError::NoEquals(p) => write!(f, "{p:?} is not key=value"),
            ParamError::EmptyKey(p) => write!(f, "{p:?} has an empty key"),
            ParamError::EmptyValue(k) => write!(f, "{k} has an empty value"),
            ParamError::Duplicate(k) => write!(f, "duplicate key {k}"),
            ParamError::UnknownKey(k) => {
                write!(f, "unknown key {k}")?;
                let all = CREATE_KEYS.iter();
                match all.clone().find(|known| known.eq_ignore_ascii_case(k)) {
                    Some(known) => write!(f, " (keys are case-sensitive: {known})"),
                    None => {
                        f.write_str(" (known keys:")?;
                        for key in all {
                            write!(f, " {key}")?;
                        }
                        f.write_str(")")
                    }
                }
            }
            ParamError::Missing(k) => write!(f, "missing {k}"),
            ParamError::BadBool(k, v) => write!(f, "{k}={v}: not a bool (true or false)"),
            ParamError::BadNumber(k, v) => {
                write!(f, "{k}={v}: not a number (decimal, optional K/M/G suffix)")
            }
            ParamError::OutOfRange(k, v, rule) => write!(f, "{k}={v}: {rule}"),
            ParamError::BadName(v) => {
                write!(f, "Name={v}: at most 32 bytes, no control characters")
            }
        }
    }
}

/// Splits `s` into its pairs, checking the syntax and that no key repeats.
pub fn pairs(s: &str) -> Result<Vec<(&str, &str)>, ParamError> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    if s.is_empty() {
        return Ok(out);
    }
    for (i, pair) in s.split('&').enumerate() {
        if pair.is_empty() {
            return Err(ParamError::EmptyPair(i + 1));
        }
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| ParamError::NoEquals(pair.into()))?;
        if k.is_empty() {
            return Err(ParamError::EmptyKey(pair.into()));
        }
        if v.is_empty() {
            return Err(ParamError::EmptyValue(k.into()));
        }
        if out.iter().any(|(seen, _)| *seen == k) {
            return Err(ParamError::Duplicate(k.into()));
        }
        out.push((k, v));
    }
    Ok(out)
}

/// Joins pairs into `k=v&k=v`.
pub fn join<V: fmt::Display>(pairs: &[(&str, V)]) -> String {
    let mut s = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            s.push('&');
        }
        s.push_str(k);
        s.push('=');
        s.push_str(&alloc::format!("{v}"));
    }
    s
}

fn parse_bool(k: &str, v: &str) -> Result<bool, ParamError> {
    match v {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(ParamError::BadBool(k.into(), v.into())),
    }
}

/// A decimal number with an optional K, M or G suffix (powers of 1024).
fn parse_size(k: &str, v: &str) -> Result<u64, ParamError> {
    let bad = || ParamError::BadNumber(k.into(), v.into());
    let (digits, shift) = match v.as_bytes().last() {
        Some(b'K') => (&v[..v.len() - 1], 10),
        Some(b'M') => (&v[..v.len() - 1], 20),
        Some(b'G') => (&v[..v.len() - 1], 30),
        _ => (v, 0),
    };
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    n.checked_mul(1 << shift).ok_or_else(bad)
}

fn parse_ram(k: &str, v: &str) -> Result<u64, ParamError> {
    let n = parse_size(k, v)?;
    if n == 0 || n % RAM_GRANULE != 0 {
        return Err(ParamError::OutOfRange(
            k.into(),
            v.into(),
            "must be a non-zero multiple of 2 MiB (2097152)",
        ));
    }
    Ok(n)
}

fn parse_storage(k: &str, v: &str) -> Result<u64, ParamError> {
    let n = parse_size(k, v)?;
    if n % STORAGE_GRANULE != 0 {
        return Err(ParamError::OutOfRange(
            k.into(),
            v.into(),
            "must be a multiple of 512",
        ));
    }
    Ok(n)
}

fn parse_pct(k: &str, v: &str) -> Result<u32, ParamError> {
    let n = parse_size(k, v).map_err(|_| ParamError::BadNumber(k.into(), v.into()))?;
    if v.ends_with(['K', 'M', 'G']) {
        return Err(ParamError::BadNumber(k.into(), v.into()));
    }
    if n > 100 {
        return Err(ParamError::OutOfRange(
            k.into(),
            v.into(),
            "a percentage is 0 to 100",
        ));
    }
    Ok(n as u32)
}

fn parse_vcpus(k: &str, v: &str) -> Result<u32, ParamError> {
    let n = parse_pct(k, v).map_err(|_| ParamError::BadNumber(k.into(), v.into()))?;
    if n == 0 || n > MAX_VCPUS {
        return Err(ParamError::OutOfRange(
            k.into(),
            v.into(),
            "must be 1 to 8 (abi::mgmt::MAX_VCPUS)",
        ));
    }
    Ok(n)
}

/// Resource values given in a key=value string; `None`: not given.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResourceKeys {
    pub ram: Option<u64>,
    pub storage: Option<u64>,
    pub cpu: Option<u32>,
    pub network: Option<u32>,
    pub vcpus: Option<u32>,
}

impl ResourceKeys {
    /// Takes `k=v` if `k` is a resource key; false if it is not one.
    fn take(&mut self, k: &str, v: &str) -> Result<bool, ParamError> {
        match k {
            "RAM" => self.ram = Some(parse_ram(k, v)?),
            "Storage" => self.storage = Some(parse_storage(k, v)?),
            "CPU" => self.cpu = Some(parse_pct(k, v)?),
            "Network" => self.network = Some(parse_pct(k, v)?),
            "VCPUs" => self.vcpus = Some(parse_vcpus(k, v)?),
            _ => return Ok(false),
        }
        Ok(true)
    }

    pub fn is_empty(&self) -> bool {
        *self == ResourceKeys::default()
    }

    /// `base` with the given keys replaced.
    pub fn over(&self, base: Resources) -> Resources {
        Resources {
            ram: self.ram.unwrap_or(base.ram),
            storage: self.storage.unwrap_or(base.storage),
            cpu_pct: self.cpu.unwrap_or(base.cpu_pct),
            net_pct: self.network.unwrap_or(base.net_pct),
            vcpus: self.vcpus.unwrap_or(base.vcpus),
        }
    }
}

/// A parsed `CreateParams` (section 8, plus our vendor keys).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateParams {
    /// `ImgID`: a `VMImgMO/<x>/ImgID` value.
    pub img_id: String,
    /// `Running`, default true (section 8).
    pub running: bool,
    pub resources: ResourceKeys,
    /// `Name`: the VM's name in the hypervisor's console lines (default: the VirMO/<x> name).
    pub name: Option<String>,
}

pub fn parse_create_params(s: &str) -> Result<CreateParams, ParamError> {
    let mut img_id = None;
    let mut running = true;
    let mut resources = ResourceKeys::default();
    let mut name = None;
    for (k, v) in pairs(s)? {
        match k {
            "ImgID" => img_id = Some(String::from(v)),
            "Running" => running = parse_bool(k, v)?,
            "Name" => {
                Name::new(v).ok_or_else(|| ParamError::BadName(v.into()))?;
                name = Some(v.into());
            }
            _ if resources.take(k, v)? => {}
            _ => return Err(ParamError::UnknownKey(k.into())),
        }
    }
    Ok(CreateParams {
        img_id: img_id.ok_or(ParamError::Missing("ImgID"))?,
        running,
        resources,
        name,
    })
}

/// Parses a `NewConfig`: any subset of the `CurrentConfig` keys (keys not given keep their
/// current value; a vendor relaxation of section 8, which lists each key as One).
pub fn parse_config(s: &str) -> Result<ResourceKeys, ParamError> {
    let mut keys = ResourceKeys::default();
    for (k, v) in pairs(s)? {
        if !keys.take(k, v)? {
            return Err(ParamError::UnknownKey(k.into()));
        }
    }
    Ok(keys)
}

/// `CurrentConfig`: `RAM=..&Storage=..&CPU=..&Network=..&VCPUs=..`.
pub fn format_config(r: &Resources) -> String {
    join(&[
        ("RAM", r.ram),
        ("Storage", r.storage),
        ("CPU", u64::from(r.cpu_pct)),
        ("Network", u64::from(r.net_pct)),
        ("VCPUs", u64::from(r.vcpus)),
    ])
}

/// The allocation of a VM that does not exist.
pub const NOTHING: Resources = Resources {
    ram: 0,
    storage: 0,
    cpu_pct: 0,
    net_pct: 0,
    vcpus: 0,
};

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn create_params_standard_keys_and_defaults() {
        let p = parse_create_params("ImgID=3").unwrap();
        assert_eq!(p.img_id, "3");
        assert!(p.running, "Running defaults to true");
        assert!(p.resources.is_empty());
        let p = parse_create_params("ImgID=new-1&Running=false").unwrap();
        assert!(!p.running);
        let p = parse_create_params(
            "Running=true&ImgID=1&RAM=64M&Storage=1G&CPU=30&Network=5&VCPUs=2&Name=web",
        )
        .unwrap();
        assert_eq!(
            p.resources,
            ResourceKeys {
                ram: Some(64 << 20),
                storage: Some(1 << 30),
                cpu: Some(30),
                network: Some(5),
                vcpus: Some(2),
            }
        );
        assert_eq!(p.name.as_deref(), Some("web"));
    }

    #[test]
    fn create_params_errors_are_specific() {
        let e = |s| parse_create_params(s).unwrap_err();
        assert_eq!(e(""), ParamError::Missing("ImgID"));
        assert_eq!(e("Running=true"), ParamError::Missing("ImgID"));
        assert_eq!(e("ImgID=1&ImgID=2"), ParamError::Duplicate("ImgID".into()));
        assert_eq!(
            e("ImgID=1&Running=yes"),
            ParamError::BadBool("Running".into(), "yes".into())
        );
        assert_eq!(
            e("ImgID=1&Running=True"),
            ParamError::BadBool("Running".into(), "True".into())
        );
        assert_eq!(e("ImgID=1&Foo=2"), ParamError::UnknownKey("Foo".into()));
        assert_eq!(e("ImgID=1&X-Foo=2"), ParamError::UnknownKey("X-Foo".into()));
        assert_eq!(e("imgid=1"), ParamError::UnknownKey("imgid".into()));
        assert!(e("imgid=1").to_string().contains("case-sensitive: ImgID"));
        assert!(e("Foo=1").to_string().contains("known keys: ImgID Running"));
        assert_eq!(e("ImgID=1&&Running=true"), ParamError::EmptyPair(2));
        assert_eq!(e("ImgID=1&"), ParamError::EmptyPair(2));
        assert_eq!(e("ImgID"), ParamError::NoEquals("ImgID".into()));
        assert_eq!(e("=1"), ParamError::EmptyKey("=1".into()));
        assert_eq!(e("ImgID="), ParamError::EmptyValue("ImgID".into()));
        assert!(matches!(e("ImgID=1&RAM=3M"), ParamError::OutOfRange(..)));
        assert!(matches!(e("ImgID=1&RAM=0"), ParamError::OutOfRange(..)));
        assert!(matches!(e("ImgID=1&RAM=x"), ParamError::BadNumber(..)));
        assert!(matches!(
            e("ImgID=1&RAM=99999999999G"),
            ParamError::BadNumber(..)
        ));
        assert!(matches!(
            e("ImgID=1&Storage=100"),
            ParamError::OutOfRange(..)
        ));
        assert!(matches!(e("ImgID=1&CPU=101"), ParamError::OutOfRange(..)));
        assert!(matches!(e("ImgID=1&CPU=1K"), ParamError::BadNumber(..)));
        assert!(matches!(e("ImgID=1&CPU=-1"), ParamError::BadNumber(..)));
        assert!(matches!(e("ImgID=1&VCPUs=0"), ParamError::OutOfRange(..)));
        assert!(matches!(e("ImgID=1&VCPUs=9"), ParamError::OutOfRange(..)));
        assert!(matches!(
            e("ImgID=1&Name=0123456789012345678901234567890123"),
            ParamError::BadName(..)
        ));
    }

    #[test]
    fn config_keys_partial_and_formatted() {
        let k = parse_config("CPU=50").unwrap();
        let base = Resources {
            ram: 64 << 20,
            storage: 512,
            cpu_pct: 10,
            net_pct: 1,
            vcpus: 1,
        };
        assert_eq!(
            k.over(base),
            Resources {
                cpu_pct: 50,
                ..base
            }
        );
        assert_eq!(
            format_config(&base),
            "RAM=67108864&Storage=512&CPU=10&Network=1&VCPUs=1"
        );
        assert_eq!(
            parse_config(&format_config(&base)).unwrap().over(NOTHING),
            base
        );
        assert!(parse_config("").unwrap().is_empty());
        assert_eq!(
            parse_config("ImgID=1"),
            Err(ParamError::UnknownKey("ImgID".into()))
        );
        assert_eq!(
            parse_config("CPU=1&CPU=2"),
            Err(ParamError::Duplicate("CPU".into()))
        );
    }
}
