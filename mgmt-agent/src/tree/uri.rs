//! Parsing the URIs of DM commands into tree paths.
//!
//! Owns: URI syntax (DM 1.3 TND: relative URIs, `/`-separated segments, optional `./` prefix,
//! `?prop=` and `?list=` queries) and the limits published in `DevDetail/URI`. Never: looks at
//! the tree.

use alloc::string::String;
use core::fmt;

/// Most segments in a URI (`DevDetail/URI/MaxDepth`).
pub const MAX_DEPTH: usize = 16;
/// Longest URI in bytes, query excluded (`DevDetail/URI/MaxTotLen`).
pub const MAX_TOT_LEN: usize = 255;
/// Longest segment in bytes (`DevDetail/URI/MaxSegLen`); also the longest VM name the
/// hypervisor keeps (`abi::mgmt::NAME_LEN`), so a VirMO/<x> name is never truncated.
pub const MAX_SEG_LEN: usize = 32;

/// What a `?` query asks for (DM 1.3 TND 6.x: node properties and structure listings).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Query {
    /// `?prop=NAME`: a node property (ACL, Format, Type, Name, Size, Title, TStamp, VerNo).
    Prop(String),
    /// `?list=WHAT` (Struct, StructData, TNDS): not supported (406).
    List(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uri {
    /// Normalized: no `./` prefix; `.` for the root.
    pub path: String,
    pub query: Option<Query>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UriError {
    Empty,
    Absolute,
    EmptySegment,
    DotSegment,
    /// A control character or a character DM reserves in a segment.
    BadCharacter(char),
    BadQuery(String),
    TooDeep(usize),
    TooLong(usize),
    SegmentTooLong(String),
}

impl UriError {
    /// Whether this is a limit of `DevDetail/URI` (DM status 414) rather than bad syntax (400).
    pub fn is_limit(&self) -> bool {
        matches!(
            self,
            UriError::TooDeep(_) | UriError::TooLong(_) | UriError::SegmentTooLong(_)
        )
    }
}

impl fmt::Display for UriError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UriError::Empty => f.write_str("empty URI"),
            UriError::Absolute => f.write_str("URIs are relative: ./VirMO or VirMO, not /VirMO"),
            UriError::EmptySegment => f.write_str("empty segment (// or a trailing /)"),
            UriError::DotSegment => f.write_str(". and .. segments are not allowed"),
            UriError::BadCharacter(c) => write!(f, "character {c:?} is not allowed in a segment"),
            UriError::BadQuery(q) => {
                write!(f, "bad query ?{q}: use ?prop=NAME or ?list=Struct")
            }
            UriError::TooDeep(n) => write!(f, "{n} segments, more than MaxDepth {MAX_DEPTH}"),
            UriError::TooLong(n) => write!(f, "{n} bytes, more than MaxTotLen {MAX_TOT_LEN}"),
            UriError::SegmentTooLong(s) => {
                write!(f, "segment {s:?} is longer than MaxSegLen {MAX_SEG_LEN}")
            }
        }
    }
}

/// Whether `c` may appear in a segment: not a control character, a space (the shell splits on
/// it), or a character DM URIs reserve.
pub fn segment_char_ok(c: char) -> bool {
    !c.is_control() && !matches!(c, ' ' | '/' | '?' | '#' | '&' | '=' | '+' | '*')
}

/// Whether `name` may be a node name (one segment).
pub fn check_segment(name: &str) -> Result<(), UriError> {
    if name.is_empty() {
        return Err(UriError::EmptySegment);
    }
    if name == "." || name == ".." {
        return Err(UriError::DotSegment);
    }
    if let Some(c) = name.chars().find(|&c| !segment_char_ok(c)) {
        return Err(UriError::BadCharacter(c));
    }
    if name.len() > MAX_SEG_LEN {
        return Err(UriError::SegmentTooLong(name.into()));
    }
    Ok(())
}

/// Parses `s` (`./VirMO/vm1/State`, `VirMO/vm1/State?prop=ACL`, `.`).
pub fn parse(s: &str) -> Result<Uri, UriError> {
    let (path, query) = match s.split_once('?') {
        Some((p, q)) => (p, Some(parse_query(q)?)),
        None => (s, None),
    };
    if path.is_empty() {
        return Err(UriError::Empty);
    }
    if path.starts_with('/') {
        return Err(UriError::Absolute);
    }
    let path = if path == "." {
        path
    } else {
        path.strip_prefix("./").unwrap_or(path)
    };
    if path != "." {
        if path.len() > MAX_TOT_LEN {
            return Err(UriError::TooLong(path.len()));
        }
        let depth = path.split('/').count();
        if depth > MAX_DEPTH {
            return Err(UriError::TooDeep(depth));
        }
        for seg in path.split('/') {
            check_segment(seg)?;
        }
    }
    Ok(Uri {
        path: path.into(),
        query,
    })
}

fn parse_query(q: &str) -> Result<Query, UriError> {
    match q.split_once('=') {
        Some(("prop", v)) if !v.is_empty() => Ok(Query::Prop(v.into())),
        Some(("list", v)) if !v.is_empty() => Ok(Query::List(v.into())),
        _ => Err(UriError::BadQuery(q.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_both_spellings_and_the_root() {
        assert_eq!(parse("./VirMO/vm1/State").unwrap().path, "VirMO/vm1/State");
        assert_eq!(parse("VirMO/vm1/State").unwrap().path, "VirMO/vm1/State");
        assert_eq!(parse(".").unwrap().path, ".");
        assert_eq!(
            parse("VirMO?prop=ACL").unwrap(),
            Uri {
                path: "VirMO".into(),
                query: Some(Query::Prop("ACL".into()))
            }
        );
        assert_eq!(
            parse("VirMO?list=Struct").unwrap().query,
            Some(Query::List("Struct".into()))
        );
    }

    #[test]
    fn refuses_bad_syntax() {
        assert_eq!(parse(""), Err(UriError::Empty));
        assert_eq!(parse("/VirMO"), Err(UriError::Absolute));
        assert_eq!(parse("VirMO//a"), Err(UriError::EmptySegment));
        assert_eq!(parse("VirMO/"), Err(UriError::EmptySegment));
        assert_eq!(parse("VirMO/../DevInfo"), Err(UriError::DotSegment));
        assert_eq!(parse("VirMO/a\tb"), Err(UriError::BadCharacter('\t')));
        assert_eq!(parse("VirMO/a*"), Err(UriError::BadCharacter('*')));
        assert_eq!(parse("VirMO?x"), Err(UriError::BadQuery("x".into())));
        assert_eq!(
            parse("VirMO?prop="),
            Err(UriError::BadQuery("prop=".into()))
        );
        assert!(!parse("VirMO//a").unwrap_err().is_limit());
    }

    #[test]
    fn enforces_the_devdetail_limits() {
        let deep = ["a"; MAX_DEPTH + 1].join("/");
        assert_eq!(parse(&deep), Err(UriError::TooDeep(MAX_DEPTH + 1)));
        assert!(parse(&["a"; MAX_DEPTH].join("/")).is_ok());
        let long_seg = "x".repeat(MAX_SEG_LEN + 1);
        assert!(parse(&long_seg).unwrap_err().is_limit());
        assert!(parse(&"x".repeat(MAX_SEG_LEN)).is_ok());
        let long = ["abcdefghijklmno"; 16].join("/"); // 16 × 15 + 15 = 255
        assert!(parse(&long).is_ok());
        let longer = alloc::format!("{long}x");
        assert_eq!(parse(&longer), Err(UriError::TooLong(256)));
    }
}
