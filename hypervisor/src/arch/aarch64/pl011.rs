//! The PL011 UART, transmit side (ARM PrimeCell UART (PL011) TRM, DDI 0183, §3.3).
//!
//! Owns: writing bytes to one PL011 and taking its received bytes. Never configures the baud
//! rate: firmware or QEMU has set it up.

use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::register_bitfields;
use tock_registers::registers::{ReadOnly, ReadWrite};

register_bitfields! [u32,
    FR [
        /// Transmit FIFO full.
        TXFF OFFSET(5) NUMBITS(1) [],
        /// Receive FIFO empty.
        RXFE OFFSET(4) NUMBITS(1) [],
        /// UART busy transmitting.
        BUSY OFFSET(3) NUMBITS(1) [],
    ],
    IMSC [
        /// Receive timeout interrupt mask.
        RTIM OFFSET(6) NUMBITS(1) [],
        /// Receive interrupt mask.
        RXIM OFFSET(4) NUMBITS(1) [],
    ]
];

#[repr(C)]
struct Registers {
    dr: ReadWrite<u32>,
    _reserved0: [u32; 5],
    fr: ReadOnly<u32, FR::Register>,
    _reserved1: [u32; 7],
    imsc: ReadWrite<u32, IMSC::Register>,
}

pub struct Pl011 {
    base: usize,
}

impl Pl011 {
    /// # Safety
    /// `base` must be the address of a PL011's registers, mapped as device memory (or the MMU
    /// must be off), and nothing else may configure that UART concurrently.
    pub const unsafe fn new(base: usize) -> Self {
        Pl011 { base }
    }

    fn regs(&self) -> &Registers {
        // SAFETY: `new`'s contract: `base` points at the PL011's register block.
        unsafe { &*(self.base as *const Registers) }
    }

    pub fn write_byte(&self, byte: u8) {
        let regs = self.regs();
        while regs.fr.is_set(FR::TXFF) {
            core::hint::spin_loop();
        }
        regs.dr.set(byte as u32);
    }

    /// A received byte, if any.
    pub fn read_byte(&self) -> Option<u8> {
        let regs = self.regs();
        if regs.fr.is_set(FR::RXFE) {
            None
        } else {
            Some(regs.dr.get() as u8)
        }
    }

    /// Interrupts on received data (and on the receive timeout, so single bytes arrive at once).
    pub fn enable_rx_interrupt(&self) {
        self.regs().imsc.write(IMSC::RXIM::SET + IMSC::RTIM::SET);
    }

    pub fn write_bytes(&self, bytes: &[u8]) {
        for &b in bytes {
            if b == b'\n' {
                self.write_byte(b'\r');
            }
            self.write_byte(b);
        }
    }
}

impl core::fmt::Write for Pl011 {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.write_bytes(s.as_bytes());
        Ok(())
    }
}
