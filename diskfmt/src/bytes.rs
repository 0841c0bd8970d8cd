//! Little-endian fields at fixed offsets, and the CRC-32 that seals every sector we write.
//!
//! The accessors index a buffer whose length the caller has checked (every record is decoded
//! from a whole sector, so offsets are constants below [`crate::SECTOR_SIZE`]).

use crate::{Name, RecordError, NAME_LEN};

pub(crate) fn get_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

pub(crate) fn get_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

pub(crate) fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

pub(crate) fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// Bytes `0..508` of a sector are sealed by the CRC-32 stored little-endian at 508.
pub(crate) const CRC_AT: usize = crate::SECTOR_SIZE - 4;

/// Writes the seal of `sector` (a whole sector).
pub(crate) fn seal(sector: &mut [u8]) {
    let crc = crc32(&sector[..CRC_AT]);
    put_u32(sector, CRC_AT, crc);
}

/// Checks the seal of `sector` (a whole sector).
pub(crate) fn check_seal(sector: &[u8]) -> Result<(), RecordError> {
    let stored = get_u32(sector, CRC_AT);
    let computed = crc32(&sector[..CRC_AT]);
    if stored != computed {
        return Err(RecordError::Checksum { stored, computed });
    }
    Ok(())
}

/// Writes `name` zero padded into `b[..NAME_LEN]`.
pub(crate) fn put_name(b: &mut [u8], name: &Name) {
    b[..NAME_LEN].fill(0);
    let s = name.as_str().as_bytes();
    b[..s.len()].copy_from_slice(s);
}

/// Reads a zero-padded name: UTF-8, no byte after the first NUL, no control character.
pub(crate) fn get_name(b: &[u8]) -> Result<Name, RecordError> {
    let raw = &b[..NAME_LEN];
    let len = raw.iter().position(|&c| c == 0).unwrap_or(NAME_LEN);
    if raw[len..].iter().any(|&c| c != 0) {
        return Err(RecordError::Field("name"));
    }
    let s = core::str::from_utf8(&raw[..len]).map_err(|_| RecordError::Field("name"))?;
    Name::new(s).ok_or(RecordError::Field("name"))
}

/// The CRC-32 of IEEE 802.3 (reflected polynomial 0xEDB88320, initial and final XOR
/// 0xFFFFFFFF), as zlib and `crc32` compute it.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc = CRC_TABLE[((crc ^ u32::from(byte)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        // The check value of CRC-32/ISO-HDLC: the CRC of the ASCII digits 1 to 9.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(&[0u8; 32]), 0x190A_55AD);
    }

    #[test]
    fn seal_detects_any_single_bit_flip() {
        let mut sector = [0u8; crate::SECTOR_SIZE];
        sector[..5].copy_from_slice(b"hello");
        seal(&mut sector);
        assert_eq!(check_seal(&sector), Ok(()));
        for bit in (0..crate::SECTOR_SIZE * 8).step_by(7) {
            let mut bad = sector;
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(check_seal(&bad).is_err(), "bit {bit}");
        }
    }

    #[test]
    fn names_round_trip_and_refuse_garbage() {
        let mut b = [0u8; NAME_LEN];
        put_name(&mut b, &Name::new("debian").unwrap());
        assert_eq!(get_name(&b).unwrap().as_str(), "debian");
        b[10] = b'x'; // after the terminating NUL
        assert_eq!(get_name(&b), Err(RecordError::Field("name")));
        let mut b = [0u8; NAME_LEN];
        b[0] = 0xff; // not UTF-8
        assert_eq!(get_name(&b), Err(RecordError::Field("name")));
        b[0] = b'\n';
        assert_eq!(get_name(&b), Err(RecordError::Field("name")));
        assert_eq!(
            get_name(&[b'a'; NAME_LEN]).unwrap().as_str().len(),
            NAME_LEN
        );
    }
}
