//! A VM's RAM as seen from both sides: one contiguous IPA range backed by one contiguous
//! physical range.
//!
//! Owns: the validation of guest-supplied addresses. Every pointer a guest passes to the
//! hypervisor goes through [`GuestRam::translate`], which refuses anything not wholly inside
//! the caller's own RAM, with overflow-safe arithmetic.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestRam {
    pub ipa: u64,
    pub pa: u64,
    pub size: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutsideRam;

impl GuestRam {
    /// Whether `ipa` is a byte of this RAM.
    pub fn contains(&self, ipa: u64) -> bool {
        ipa >= self.ipa && ipa - self.ipa < self.size
    }

    /// The physical address of `[ipa, ipa + len)` if that whole range is this VM's RAM.
    /// A zero-length range is accepted anywhere inside or at the end of RAM.
    pub fn translate(&self, ipa: u64, len: u64) -> Result<u64, OutsideRam> {
        let offset = ipa.checked_sub(self.ipa).ok_or(OutsideRam)?;
        let end = offset.checked_add(len).ok_or(OutsideRam)?;
        if offset > self.size || end > self.size {
            return Err(OutsideRam);
        }
        Ok(self.pa + offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAM: GuestRam = GuestRam {
        ipa: 0x8000_0000,
        pa: 0x5000_0000,
        size: 0x100_0000,
    };

    #[test]
    fn translates_ranges_inside_ram() {
        assert_eq!(RAM.translate(0x8000_0000, 16), Ok(0x5000_0000));
        assert_eq!(RAM.translate(0x80ff_fff0, 16), Ok(0x50ff_fff0));
        assert_eq!(RAM.translate(0x8100_0000, 0), Ok(0x5100_0000));
    }

    #[test]
    fn refuses_ranges_outside_or_straddling_ram() {
        assert_eq!(RAM.translate(0x7fff_ffff, 1), Err(OutsideRam));
        assert_eq!(RAM.translate(0x80ff_fff0, 17), Err(OutsideRam));
        assert_eq!(RAM.translate(0x8100_0000, 1), Err(OutsideRam));
        assert_eq!(RAM.translate(0, 16), Err(OutsideRam));
        assert_eq!(RAM.translate(u64::MAX - 4, 16), Err(OutsideRam));
        assert_eq!(RAM.translate(0x8000_0010, u64::MAX), Err(OutsideRam));
    }

    #[test]
    fn contains_is_half_open() {
        assert!(RAM.contains(0x8000_0000));
        assert!(RAM.contains(0x80ff_ffff));
        assert!(!RAM.contains(0x8100_0000));
        assert!(!RAM.contains(0x7fff_ffff));
    }
}
