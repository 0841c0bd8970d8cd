//! The `#HT` framing: the lines through which a test guest tells the host runner what happens
//! (docs/architecture.md, "Console framing"). Formatting only; [`crate::harness`] writes them.

use core::fmt::{self, Display, Write};

/// What a test name is replaced with when no test is running.
pub const NO_TEST: &str = "-";

/// One framing record, displayed without its trailing newline.
pub enum Event<'a> {
    Begin {
        tests: usize,
    },
    List(&'a str),
    Run(&'a str),
    Pass(&'a str),
    /// The message is kept on one line: a newline in it would end the record early.
    Fail {
        test: &'a str,
        message: fmt::Arguments<'a>,
    },
    ExpectStop(&'a str),
    Metric {
        name: &'a str,
        value: &'a dyn Display,
    },
    Done {
        passed: usize,
        failed: usize,
    },
}

impl Display for Event<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Begin { tests } => write!(f, "#HT begin tests={tests}"),
            Event::List(test) => write!(f, "#HT list {test}"),
            Event::Run(test) => write!(f, "#HT run {test}"),
            Event::Pass(test) => write!(f, "#HT pass {test}"),
            Event::Fail { test, message } => {
                write!(f, "#HT fail {test} ")?;
                write!(SingleLine(f), "{message}")
            }
            Event::ExpectStop(test) => write!(f, "#HT expect-stop {test}"),
            Event::Metric { name, value } => write!(f, "#HT metric {name}={value}"),
            Event::Done { passed, failed } => write!(f, "#HT done passed={passed} failed={failed}"),
        }
    }
}

/// Passes text through with line breaks turned into spaces.
pub struct SingleLine<W>(pub W);

impl<W: Write> Write for SingleLine<W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for piece in s.split_inclusive(['\n', '\r']) {
            match piece.strip_suffix(['\n', '\r']) {
                Some(text) => {
                    self.0.write_str(text)?;
                    self.0.write_char(' ')?;
                }
                None => self.0.write_str(piece)?,
            }
        }
        Ok(())
    }
}

/// A non-negative number shown with one decimal, for metrics that are averages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tenths(u64);

impl Tenths {
    /// `numerator / denominator`, rounded to the nearest tenth (halves up); `None` if the
    /// denominator is 0 or the result does not fit.
    pub fn ratio(numerator: u64, denominator: u64) -> Option<Self> {
        if denominator == 0 {
            return None;
        }
        let (n, d) = (numerator as u128 * 10, denominator as u128);
        u64::try_from((n + d / 2) / d).ok().map(Tenths)
    }
}

impl Display for Tenths {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.0 / 10, self.0 % 10)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_formatted_as_documented() {
        let cases: [(Event, &str); 7] = [
            (Event::Begin { tests: 3 }, "#HT begin tests=3"),
            (Event::List("abi_version"), "#HT list abi_version"),
            (Event::Run("abi_version"), "#HT run abi_version"),
            (Event::Pass("abi_version"), "#HT pass abi_version"),
            (Event::ExpectStop("attack"), "#HT expect-stop attack"),
            (
                Event::Metric {
                    name: "x",
                    value: &12,
                },
                "#HT metric x=12",
            ),
            (
                Event::Done {
                    passed: 2,
                    failed: 1,
                },
                "#HT done passed=2 failed=1",
            ),
        ];
        for (event, text) in cases {
            assert_eq!(event.to_string(), text);
        }
    }

    #[test]
    fn fail_carries_its_message() {
        let e = Event::Fail {
            test: "t",
            message: format_args!("a.rs:3: got {}", 5),
        };
        assert_eq!(e.to_string(), "#HT fail t a.rs:3: got 5");
    }

    #[test]
    fn fail_message_stays_on_one_line() {
        let e = Event::Fail {
            test: NO_TEST,
            message: format_args!("panic: one\ntwo\r\nthree"),
        };
        assert_eq!(e.to_string(), "#HT fail - panic: one two  three");
    }

    #[test]
    fn tenths_round_to_one_decimal() {
        assert_eq!(Tenths::ratio(12_345, 10_000).unwrap().to_string(), "1.2");
        assert_eq!(Tenths::ratio(12_500, 10_000).unwrap().to_string(), "1.3");
        assert_eq!(Tenths::ratio(3, 1).unwrap().to_string(), "3.0");
        assert_eq!(Tenths::ratio(0, 7).unwrap().to_string(), "0.0");
    }

    #[test]
    fn tenths_refuse_what_they_cannot_show() {
        assert_eq!(Tenths::ratio(1, 0), None);
        assert_eq!(Tenths::ratio(u64::MAX, 1), None);
    }
}
