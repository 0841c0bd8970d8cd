//! The VM's command line (`/chosen/bootargs`): words separated by spaces, parameters written
//! `key=value`. No quoting: a value never contains a space.

/// A command line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cmdline<'a>(&'a str);

impl<'a> Cmdline<'a> {
    pub const fn new(text: &'a str) -> Self {
        Self(text)
    }

    pub fn as_str(&self) -> &'a str {
        self.0
    }

    pub fn words(&self) -> impl Iterator<Item = &'a str> {
        self.0.split_ascii_whitespace()
    }

    /// The value of the last `key=value` word for `key` (later words override earlier ones, as
    /// on Linux); `None` if there is none. `key=` gives `Some("")`.
    pub fn param(&self, key: &str) -> Option<&'a str> {
        self.words()
            .filter_map(|word| word.split_once('='))
            .filter(|&(k, _)| k == key)
            .map(|(_, value)| value)
            .last()
    }

    /// [`Self::param`] as a number (see [`parse_u64`]); `None` if absent or not a number.
    pub fn param_u64(&self, key: &str) -> Option<u64> {
        self.param(key).and_then(parse_u64)
    }

    /// [`Self::param_u64`] with a default for an absent key.
    ///
    /// # Panics
    /// If the key is present with a value that is not a number: a test program must not
    /// silently run with a setting other than the one asked for.
    pub fn param_u64_or(&self, key: &str, default: u64) -> u64 {
        match self.param(key) {
            None => default,
            Some(value) => parse_u64(value)
                .unwrap_or_else(|| panic!("bootarg {key}={value:?} is not a number")),
        }
    }
}

/// Parses decimal (`1234`) or hexadecimal (`0x4d2`, `0X4D2`) digits, nothing else: no sign, no
/// separators, no surrounding spaces. `None` on anything else or on overflow.
pub fn parse_u64(text: &str) -> Option<u64> {
    let (digits, radix) = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => (hex, 16),
        None => (text, 10),
    };
    // `from_str_radix` alone would accept a leading `+`.
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_decimal_and_hex() {
        assert_eq!(parse_u64("0"), Some(0));
        assert_eq!(parse_u64("2000"), Some(2000));
        assert_eq!(parse_u64("0x4000_0000"), None);
        assert_eq!(parse_u64("0x40000000"), Some(0x4000_0000));
        assert_eq!(parse_u64("0XfFfF"), Some(0xffff));
        assert_eq!(parse_u64("18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64("0xffffffffffffffff"), Some(u64::MAX));
    }

    #[test]
    fn refuses_what_is_not_a_plain_number() {
        for bad in [
            "",
            "0x",
            "+5",
            "-5",
            " 5",
            "5 ",
            "12a",
            "0xg",
            "1e3",
            "18446744073709551616",
        ] {
            assert_eq!(parse_u64(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn finds_key_value_words() {
        let c = Cmdline::new("console=hvc  target=0x80001000 access=read quiet");
        assert_eq!(c.param("target"), Some("0x80001000"));
        assert_eq!(c.param("access"), Some("read"));
        assert_eq!(
            c.param("quiet"),
            None,
            "a bare word is not a key=value parameter"
        );
        assert_eq!(c.param("acc"), None, "keys match whole");
        assert_eq!(c.param_u64("target"), Some(0x8000_1000));
        assert_eq!(c.param_u64("access"), None);
    }

    #[test]
    fn the_last_occurrence_wins_and_values_may_hold_equals() {
        let c = Cmdline::new("ticks=1 ticks=3 opt=a=b empty=");
        assert_eq!(c.param_u64("ticks"), Some(3));
        assert_eq!(c.param("opt"), Some("a=b"));
        assert_eq!(c.param("empty"), Some(""));
    }

    #[test]
    fn defaults_apply_only_to_absent_keys() {
        let c = Cmdline::new("wait_ms=50");
        assert_eq!(c.param_u64_or("wait_ms", 2000), 50);
        assert_eq!(c.param_u64_or("spin_ms", 300), 300);
        assert_eq!(Cmdline::default().param_u64_or("ticks", 5), 5);
    }

    #[test]
    #[should_panic(expected = "wait_ms=\"soon\" is not a number")]
    fn a_malformed_number_is_an_error_not_the_default() {
        Cmdline::new("wait_ms=soon").param_u64_or("wait_ms", 2000);
    }
}
