//! An emulated PL011 UART, one per VM: enough for Linux's `amba-pl011` driver and its
//! `earlycon=pl011`.
//!
//! Reference: ARM PrimeCell UART (PL011) Technical Reference Manual r1p5, ARM DDI 0183G
//! ("TRM" below): §3.2 summary of registers, §3.3 register descriptions, §3.4 interrupts.
//!
//! Owns: the guest-visible register state of one VM's UART and its 32-entry receive FIFO.
//! Transmission is instantaneous: the transmit FIFO is always empty, so `FR.TXFF` and
//! `FR.BUSY` are never set and a guest never waits. A transmitted byte is handed back to the
//! caller, which pushes it into the VM's `console::LineBuffer`.
//!
//! Never: touches the physical UART, prints, or knows the GIC. It only reports the level of
//! the UART's interrupt line (`irq_level`); the caller must re-read it after every `read`,
//! `write` and `push_input` and deliver it to the vGIC as a level-sensitive SPI.
//!
//! Model choices, each one checked against Linux's `drivers/tty/serial/amba-pl011.c`:
//! - The UART starts as firmware hands it over (enabled, 8N1, FIFOs on, 115200 baud from a
//!   24 MHz UARTCLK), not in its hardware reset state: earlycon writes `DR` without ever
//!   setting `CR.UARTEN`, and `pl011_console_get_options` divides by the baud divisor when
//!   `UARTEN` is set, so that divisor must not be zero.
//! - Linux's ARM vendor data uses 16-bit accesses (`readw`/`writew`) to every register and
//!   earlycon uses 8-bit or 32-bit ones to `DR`: 16- and 32-bit accesses are accepted
//!   everywhere, 8-bit ones on `DR` only.
//! - `PeriphID2` says revision 3 (r1p5), the revision with 32-entry FIFOs: Linux sizes its
//!   FIFO use from it (`get_fifosize_arm`: revision < 3 means 16 entries).
//! - Interrupts (TRM §3.4): `TXIS` is set whenever a byte leaves the transmit FIFO (every
//!   transmitted `DR` write) and when the guest unmasks `TXIM`, since the transmit FIFO is then
//!   empty, i.e. at or below any trigger level; only `ICR` clears it. `RXIS` is set when a
//!   received byte brings the FIFO up to the `IFLS` trigger level (any byte with the FIFOs
//!   off) and cleared by `ICR` or by reads taking the FIFO below the trigger. `RTIS` (receive
//!   timeout) is a level: set whenever the receive FIFO holds data, as if the timeout expired
//!   at once, so Linux always drains the characters below the trigger level; writing it to
//!   `ICR` has no lasting effect while data remains. `OEIS` is set when a byte is dropped on a
//!   full FIFO.

use heapless::Deque;

/// The size of the register window (TRM §3.2: the PL011 decodes 4 KiB).
pub const PL011_SIZE: u64 = 0x1000;

/// Receive FIFO depth with `LCR_H.FEN` set (TRM r1p5: 32 entries).
pub const FIFO_DEPTH: usize = 32;
/// With `LCR_H.FEN` clear the FIFOs act as one-byte holding registers (TRM §3.3.7).
const FIFO_DISABLED_DEPTH: usize = 1;

// Register offsets (TRM §3.2, Table 3-1).
const DR: u64 = 0x000;
const RSR_ECR: u64 = 0x004;
const FR: u64 = 0x018;
const ILPR: u64 = 0x020;
const IBRD: u64 = 0x024;
const FBRD: u64 = 0x028;
const LCR_H: u64 = 0x02C;
const CR: u64 = 0x030;
const IFLS: u64 = 0x034;
const IMSC: u64 = 0x038;
const RIS: u64 = 0x03C;
const MIS: u64 = 0x040;
const ICR: u64 = 0x044;
const DMACR: u64 = 0x048;
const PERIPH_ID0: u64 = 0xFE0;
const PCELL_ID0: u64 = 0xFF0;

/// `UARTPeriphID0-3` (TRM §3.3.15): part number 0x011, designer 0x41 (ARM), revision 3
/// (r1p5), configuration 0. Linux's AMBA bus matches PL011 as `0x00041011` under mask
/// `0x000fffff`.
const PERIPH_ID: [u32; 4] = [0x11, 0x10, 0x34, 0x00];
/// `UARTPCellID0-3` (TRM §3.3.16): the PrimeCell identification `0xB105F00D`.
const PCELL_ID: [u32; 4] = [0x0D, 0xF0, 0x05, 0xB1];

// UARTRSR/UARTECR (TRM §3.3.2).
/// Overrun error: a byte arrived while the receive FIFO was full.
const RSR_OE: u32 = 1 << 3;

// UARTFR (TRM §3.3.3).
/// Clear to send: the complement of nUARTCTS, i.e. the peer is ready.
const FR_CTS: u32 = 1 << 0;
const FR_DSR: u32 = 1 << 1;
const FR_DCD: u32 = 1 << 2;
const FR_RXFE: u32 = 1 << 4;
const FR_RXFF: u32 = 1 << 6;
const FR_TXFE: u32 = 1 << 7;
const FR_TXFF: u32 = 1 << 5;
/// The modem inputs as a connected, ready terminal drives them.
const FR_MODEM_CONNECTED: u32 = FR_CTS | FR_DSR | FR_DCD;

// UARTLCR_H (TRM §3.3.7).
const LCR_H_FEN: u32 = 1 << 4;
const LCR_H_WLEN_8: u32 = 0b11 << 5;

// UARTCR (TRM §3.3.8).
const CR_UARTEN: u32 = 1 << 0;
const CR_LBE: u32 = 1 << 7;
const CR_TXE: u32 = 1 << 8;
const CR_RXE: u32 = 1 << 9;

// UARTIFLS (TRM §3.3.9).
const IFLS_RX_SHIFT: u32 = 3;
const IFLS_SEL_MASK: u32 = 0b111;
/// Reset value: both trigger levels at half full.
const IFLS_RESET: u32 = 0x12;

// Interrupt bits, shared by UARTIMSC, UARTRIS, UARTMIS and UARTICR (TRM §3.3.10-13).
const INT_RX: u32 = 1 << 4;
const INT_TX: u32 = 1 << 5;
const INT_RT: u32 = 1 << 6;
const INT_OE: u32 = 1 << 10;

// Implemented bits of the read/write registers (TRM §3.3); the rest read as zero.
const ILPR_MASK: u32 = 0xFF;
const IBRD_MASK: u32 = 0xFFFF;
const FBRD_MASK: u32 = 0x3F;
const LCR_H_MASK: u32 = 0xFF;
/// Bits 6:3 are reserved.
const CR_MASK: u32 = 0xFF87;
const IFLS_MASK: u32 = 0x3F;
const INT_MASK: u32 = 0x7FF;
const DMACR_MASK: u32 = 0x7;
const DR_DATA_MASK: u32 = 0xFF;

// The state firmware leaves the console UART in (see the module comment).
/// UART, transmitter and receiver enabled.
const HANDOVER_CR: u32 = CR_UARTEN | CR_TXE | CR_RXE;
/// 8 data bits, no parity, one stop bit, FIFOs enabled.
const HANDOVER_LCR_H: u32 = LCR_H_WLEN_8 | LCR_H_FEN;
/// 115200 baud from the 24 MHz UARTCLK of QEMU `virt` (and of the guest device tree):
/// divisor 24e6 / (16 * 115200) = 13.02 = IBRD 13, FBRD round(0.02 * 64) = 1 (TRM §3.3.6).
const HANDOVER_IBRD: u32 = 13;
const HANDOVER_FBRD: u32 = 1;

/// One trapped access: `offset` into the register window, `size` in bytes (1, 2, 4 or 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    pub offset: u64,
    pub size: u8,
}

/// An access the model refuses; the caller treats it as a guest fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pl011Error {
    /// Outside the 4 KiB window, or not 32-bit aligned.
    BadOffset,
    /// Not 16 or 32 bits (or 8 bits on `DR`).
    BadSize,
}

impl Access {
    /// Checks the offset and size; returns the offset.
    fn check(self) -> Result<u64, Pl011Error> {
        if self.offset >= PL011_SIZE || !self.offset.is_multiple_of(4) {
            return Err(Pl011Error::BadOffset);
        }
        match (self.size, self.offset) {
            (2 | 4, _) | (1, DR) => Ok(self.offset),
            _ => Err(Pl011Error::BadSize),
        }
    }

    /// The bits of a register an access of this size transfers.
    fn mask(self) -> u32 {
        match self.size {
            1 => 0xFF,
            2 => 0xFFFF,
            _ => u32::MAX,
        }
    }
}

pub struct Pl011 {
    rx: Deque<u8, FIFO_DEPTH>,
    rsr: u32,
    ilpr: u32,
    ibrd: u32,
    fbrd: u32,
    lcr_h: u32,
    cr: u32,
    ifls: u32,
    imsc: u32,
    dmacr: u32,
    /// The edge-set raw interrupt bits (`TXIS`, `RXIS`, `OEIS`); `RTIS` is computed.
    latched: u32,
    /// Bytes the guest may still send before its transmit FIFO reads as full: the
    /// hypervisor's output budget for this VM (see `set_tx_credit`). `u32::MAX`: unlimited.
    tx_credit: u32,
}

impl Default for Pl011 {
    fn default() -> Self {
        Self::new()
    }
}

impl Pl011 {
    /// A UART in the state firmware hands over: enabled, 8N1, FIFOs on, 115200 baud, all
    /// interrupts masked, receive FIFO empty.
    pub const fn new() -> Self {
        Pl011 {
            rx: Deque::new(),
            rsr: 0,
            ilpr: 0,
            ibrd: HANDOVER_IBRD,
            fbrd: HANDOVER_FBRD,
            lcr_h: HANDOVER_LCR_H,
            cr: HANDOVER_CR,
            ifls: IFLS_RESET,
            imsc: 0,
            dmacr: 0,
            latched: 0,
            tx_credit: u32::MAX,
        }
    }

    /// Sets how many more bytes the guest may send before its transmit FIFO reads as full
    /// (back-pressure for a VM that floods its console: a guest driver waits on TXFF, so
    /// nothing is lost and nobody else is slowed). Raising the credit from zero drains the
    /// "FIFO", which raises the transmit interrupt as the real UART would.
    pub fn set_tx_credit(&mut self, credit: u32) {
        if self.tx_credit == 0 && credit > 0 {
            self.latched |= INT_TX;
        }
        self.tx_credit = credit;
    }

    pub fn tx_credit(&self) -> u32 {
        self.tx_credit
    }

    /// Its registers and receive FIFO as words, for a suspended VM saved to disk: the
    /// registers in declaration order, then the FIFO's length and bytes.
    pub fn save(&self) -> ([u32; 11], heapless::Vec<u8, FIFO_DEPTH>) {
        let regs = [
            self.rsr,
            self.ilpr,
            self.ibrd,
            self.fbrd,
            self.lcr_h,
            self.cr,
            self.ifls,
            self.imsc,
            self.dmacr,
            self.latched,
            self.tx_credit,
        ];
        (regs, self.rx.iter().copied().collect())
    }

    /// The UART `save` described.
    pub fn restore(regs: [u32; 11], rx: &[u8]) -> Self {
        let mut u = Self::new();
        [
            u.rsr,
            u.ilpr,
            u.ibrd,
            u.fbrd,
            u.lcr_h,
            u.cr,
            u.ifls,
            u.imsc,
            u.dmacr,
            u.latched,
            u.tx_credit,
        ] = regs;
        for &b in rx.iter().take(FIFO_DEPTH) {
            let _ = u.rx.push_back(b);
        }
        u
    }

    /// Back to the state of `new`, e.g. when the VM is reset. Pending input is discarded.
    pub fn reset(&mut self) {
        *self = Self::new();
    }

    /// A guest read. Reading DR pops the RX FIFO. Returns the value (only the low `size`
    /// bytes can be non-zero).
    pub fn read(&mut self, offset: u64, size: u8) -> Result<u32, Pl011Error> {
        let access = Access { offset, size };
        let value = match access.check()? {
            DR => self.read_dr(),
            RSR_ECR => self.rsr,
            FR => self.fr(),
            ILPR => self.ilpr,
            IBRD => self.ibrd,
            FBRD => self.fbrd,
            LCR_H => self.lcr_h,
            CR => self.cr,
            IFLS => self.ifls,
            IMSC => self.imsc,
            RIS => self.ris(),
            MIS => self.ris() & self.imsc,
            DMACR => self.dmacr,
            o @ PERIPH_ID0..PCELL_ID0 => PERIPH_ID[((o - PERIPH_ID0) / 4) as usize],
            o @ PCELL_ID0..PL011_SIZE => PCELL_ID[((o - PCELL_ID0) / 4) as usize],
            // ICR is write-only; the rest of the window is reserved: both read as zero.
            _ => 0,
        };
        Ok(value & access.mask())
    }

    /// A guest write. Writing DR with UARTCR.UARTEN and TXE set emits the byte: returned so
    /// the caller can push it to the VM's LineBuffer. (In loopback mode, `CR.LBE`, the byte
    /// goes to the receive FIFO instead, as on the real UART.)
    pub fn write(&mut self, offset: u64, size: u8, value: u32) -> Result<Option<u8>, Pl011Error> {
        let access = Access { offset, size };
        let value = value & access.mask();
        match access.check()? {
            DR => return Ok(self.write_dr(value)),
            // Any write to UARTECR clears the error flags (TRM §3.3.2).
            RSR_ECR => self.rsr = 0,
            ILPR => self.ilpr = value & ILPR_MASK,
            IBRD => self.ibrd = value & IBRD_MASK,
            FBRD => self.fbrd = value & FBRD_MASK,
            // Changing FEN keeps the received bytes; only the capacity changes.
            LCR_H => self.lcr_h = value & LCR_H_MASK,
            CR => self.cr = value & CR_MASK,
            IFLS => self.ifls = value & IFLS_MASK,
            IMSC => {
                let value = value & INT_MASK;
                // The transmit FIFO is empty whenever the guest looks (unless it is out of
                // credit), so unmasking the transmit interrupt finds it asserted.
                if value & !self.imsc & INT_TX != 0 && self.tx_credit > 0 {
                    self.latched |= INT_TX;
                }
                self.imsc = value;
            }
            ICR => self.latched &= !value,
            DMACR => self.dmacr = value & DMACR_MASK,
            // FR, RIS, MIS and the ID registers are read-only; the rest of the window is
            // reserved: writes are ignored.
            _ => {}
        }
        Ok(None)
    }

    /// Host input for this VM; false if the RX FIFO is full (the byte is dropped; the caller
    /// may count drops). Also false while the receiver is disabled or in loopback, when the
    /// real UART would not sample its input either.
    pub fn push_input(&mut self, byte: u8) -> bool {
        if self.cr & CR_LBE != 0 {
            return false;
        }
        self.receive(byte)
    }

    /// Whether `push_input` would accept a byte now: a caller that keeps its own backlog
    /// moves bytes in while this holds (re-check after every guest read of DR).
    pub fn can_accept_input(&self) -> bool {
        self.receiver_enabled() && self.cr & CR_LBE == 0 && self.rx.len() < self.rx_depth()
    }

    /// The level of the UART's interrupt line: (RIS & IMSC) != 0.
    pub fn irq_level(&self) -> bool {
        self.ris() & self.imsc != 0
    }

    fn receiver_enabled(&self) -> bool {
        self.cr & (CR_UARTEN | CR_RXE) == CR_UARTEN | CR_RXE
    }

    fn transmitter_enabled(&self) -> bool {
        self.cr & (CR_UARTEN | CR_TXE) == CR_UARTEN | CR_TXE
    }

    fn fifo_enabled(&self) -> bool {
        self.lcr_h & LCR_H_FEN != 0
    }

    fn rx_depth(&self) -> usize {
        if self.fifo_enabled() {
            FIFO_DEPTH
        } else {
            FIFO_DISABLED_DEPTH
        }
    }

    /// How many received bytes assert `RXIS` (TRM §3.3.9: 1/8, 1/4, 1/2, 3/4 or 7/8 full;
    /// reserved encodings are taken as 1/2). With the FIFOs off, any byte does.
    fn rx_trigger(&self) -> usize {
        if !self.fifo_enabled() {
            return FIFO_DISABLED_DEPTH;
        }
        let eighths = match (self.ifls >> IFLS_RX_SHIFT) & IFLS_SEL_MASK {
            0b000 => 1,
            0b001 => 2,
            0b011 => 6,
            0b100 => 7,
            _ => 4,
        };
        FIFO_DEPTH * eighths / 8
    }

    /// UARTRIS: the latched bits plus the receive timeout, a level while data is waiting.
    fn ris(&self) -> u32 {
        let timeout = if self.rx.is_empty() { 0 } else { INT_RT };
        self.latched | timeout
    }

    /// UARTFR: nothing is ever being transmitted; the receive flags follow the FIFO.
    fn fr(&self) -> u32 {
        let mut fr = if self.tx_credit == 0 {
            FR_TXFF
        } else {
            FR_TXFE
        } | FR_MODEM_CONNECTED;
        if self.rx.is_empty() {
            fr |= FR_RXFE;
        }
        if self.rx.len() >= self.rx_depth() {
            fr |= FR_RXFF;
        }
        fr
    }

    /// A byte arriving at the receiver, from the host or looped back.
    fn receive(&mut self, byte: u8) -> bool {
        if !self.receiver_enabled() {
            return false;
        }
        if self.rx.len() >= self.rx_depth() {
            self.rsr |= RSR_OE;
            self.latched |= INT_OE;
            return false;
        }
        // Cannot fail: the FIFO's capacity is FIFO_DEPTH >= rx_depth().
        let _ = self.rx.push_back(byte);
        if self.rx.len() >= self.rx_trigger() {
            self.latched |= INT_RX;
        }
        true
    }

    /// UARTDR read: the oldest received byte (error bits always 0), or 0 if there is none.
    fn read_dr(&mut self) -> u32 {
        let byte = self.rx.pop_front().unwrap_or(0);
        if self.rx.len() < self.rx_trigger() {
            self.latched &= !INT_RX;
        }
        u32::from(byte)
    }

    /// UARTDR write: transmit at once, or loop back; dropped while the transmitter is off.
    fn write_dr(&mut self, value: u32) -> Option<u8> {
        // With the FIFO full, a written byte is lost (TRM §3.3.1), as on the real UART.
        if !self.transmitter_enabled() || self.tx_credit == 0 {
            return None;
        }
        if self.tx_credit != u32::MAX {
            self.tx_credit -= 1;
        }
        let byte = (value & DR_DATA_MASK) as u8;
        // The byte has left the transmit FIFO, which is empty again (unless out of credit).
        if self.tx_credit > 0 {
            self.latched |= INT_TX;
        }
        if self.cr & CR_LBE != 0 {
            self.receive(byte);
            return None;
        }
        Some(byte)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(u: &mut Pl011, offset: u64) -> u32 {
        u.read(offset, 4).unwrap()
    }

    #[test]
    fn out_of_credit_the_fifo_is_full_and_refilling_raises_the_tx_interrupt() {
        let mut u = Pl011::new();
        u.set_tx_credit(2);
        assert_eq!(w(&mut u, DR, b'a' as u32), Some(b'a'));
        assert_eq!(w(&mut u, DR, b'b' as u32), Some(b'b'));
        assert_ne!(r(&mut u, FR) & FR_TXFF, 0);
        assert_eq!(r(&mut u, FR) & FR_TXFE, 0);
        // A byte written while full is lost, as on the hardware.
        assert_eq!(w(&mut u, DR, b'c' as u32), None);
        w(&mut u, ICR, INT_MASK);
        w(&mut u, IMSC, INT_TX);
        assert!(
            !u.irq_level(),
            "no transmit interrupt while the FIFO is full"
        );
        u.set_tx_credit(10);
        assert_eq!(r(&mut u, FR) & FR_TXFF, 0);
        assert!(u.irq_level(), "draining the FIFO raises TXIS");
        assert_eq!(w(&mut u, DR, b'd' as u32), Some(b'd'));
        assert_eq!(u.tx_credit(), 9);
    }

    fn w(u: &mut Pl011, offset: u64, value: u32) -> Option<u8> {
        u.write(offset, 4, value).unwrap()
    }

    fn ris(u: &mut Pl011) -> u32 {
        r(u, RIS)
    }

    #[test]
    fn linux_amba_probe_sees_a_pl011_rev3() {
        let mut u = Pl011::new();
        // drivers/amba/bus.c: byte i of the ID is the low byte of the word at 0xFE0 + 4i.
        let id = |u: &mut Pl011, base: u64| {
            (0..4).fold(0u32, |acc, i| acc | (r(u, base + 4 * i) & 0xFF) << (8 * i))
        };
        let pid = id(&mut u, PERIPH_ID0);
        let cid = id(&mut u, PCELL_ID0);
        assert_eq!(pid & 0x000F_FFFF, 0x0004_1011);
        assert_eq!(cid, 0xB105_F00D);
        // amba_rev(): bits 23:20; 3 makes Linux use 32-entry FIFOs, matching the model.
        assert_eq!((pid >> 20) & 0xF, 3);
    }

    #[test]
    fn starts_as_firmware_hands_it_over() {
        let mut u = Pl011::new();
        let cr = r(&mut u, CR);
        assert_eq!(
            cr & (CR_UARTEN | CR_TXE | CR_RXE),
            CR_UARTEN | CR_TXE | CR_RXE
        );
        assert_eq!(r(&mut u, LCR_H), LCR_H_WLEN_8 | LCR_H_FEN);
        // pl011_console_get_options: baud = uartclk * 4 / (64 * IBRD + FBRD), never / 0.
        let divisor = 64 * r(&mut u, IBRD) + r(&mut u, FBRD);
        let baud = 24_000_000 * 4 / divisor;
        assert!(baud.abs_diff(115_200) < 115, "baud {baud}");
        assert_eq!(r(&mut u, FR), FR_TXFE | FR_RXFE | FR_MODEM_CONNECTED);
        assert_eq!(r(&mut u, IFLS), IFLS_RESET);
        assert_eq!(r(&mut u, IMSC), 0);
        assert_eq!(ris(&mut u), 0);
        assert!(!u.irq_level());
    }

    #[test]
    fn transmits_only_when_uart_and_transmitter_are_enabled() {
        let mut u = Pl011::new();
        assert_eq!(w(&mut u, DR, u32::from(b'a')), Some(b'a'));
        // earlycon: writeb, or writel; Linux's driver: writew.
        assert_eq!(u.write(DR, 1, u32::from(b'b')), Ok(Some(b'b')));
        assert_eq!(u.write(DR, 2, 0x0F00 | u32::from(b'c')), Ok(Some(b'c')));
        w(&mut u, CR, CR_TXE | CR_RXE);
        assert_eq!(w(&mut u, DR, u32::from(b'x')), None);
        w(&mut u, CR, CR_UARTEN | CR_RXE);
        assert_eq!(w(&mut u, DR, u32::from(b'y')), None);
        w(&mut u, CR, CR_UARTEN | CR_TXE);
        assert_eq!(w(&mut u, DR, u32::from(b'z')), Some(b'z'));
        // Never full, never busy: a polling writer never waits.
        assert_eq!(r(&mut u, FR) & (1 << 5 | 1 << 3), 0);
    }

    #[test]
    fn loopback_sends_transmitted_bytes_to_the_receiver_only() {
        let mut u = Pl011::new();
        w(&mut u, CR, HANDOVER_CR | CR_LBE);
        assert_eq!(w(&mut u, DR, u32::from(b'L')), None);
        assert!(
            !u.push_input(b'h'),
            "external input is disconnected in loopback"
        );
        assert_eq!(r(&mut u, DR), u32::from(b'L'));
        assert_ne!(r(&mut u, FR) & FR_RXFE, 0);
    }

    #[test]
    fn receive_fifo_keeps_order() {
        let mut u = Pl011::new();
        for &b in b"abc" {
            assert!(u.push_input(b));
        }
        assert_eq!(r(&mut u, FR) & (FR_RXFE | FR_RXFF), 0);
        assert_eq!(u.read(DR, 1), Ok(u32::from(b'a')));
        assert_eq!(u.read(DR, 2), Ok(u32::from(b'b')));
        assert_eq!(u.read(DR, 4), Ok(u32::from(b'c')));
        assert_ne!(r(&mut u, FR) & FR_RXFE, 0);
        assert_eq!(r(&mut u, DR), 0, "an empty FIFO reads as 0");
    }

    #[test]
    fn full_fifo_drops_and_flags_overrun() {
        let mut u = Pl011::new();
        for i in 0..FIFO_DEPTH {
            assert!(u.can_accept_input());
            assert!(u.push_input(i as u8), "byte {i}");
        }
        assert!(!u.can_accept_input());
        assert!(!u.push_input(0xEE));
        assert_ne!(r(&mut u, FR) & FR_RXFF, 0);
        assert_eq!(r(&mut u, RSR_ECR), RSR_OE);
        assert_ne!(ris(&mut u) & INT_OE, 0);
        w(&mut u, RSR_ECR, 0);
        assert_eq!(r(&mut u, RSR_ECR), 0);
        w(&mut u, ICR, INT_OE);
        assert_eq!(ris(&mut u) & INT_OE, 0);
        for i in 0..FIFO_DEPTH {
            assert_eq!(
                r(&mut u, DR),
                i as u32,
                "the stored bytes survive the overrun"
            );
        }
        assert!(u.push_input(1));
    }

    #[test]
    fn fifo_disabled_holds_one_byte() {
        let mut u = Pl011::new();
        w(&mut u, LCR_H, LCR_H_WLEN_8);
        assert!(u.push_input(b'1'));
        assert_ne!(r(&mut u, FR) & FR_RXFF, 0);
        assert!(!u.can_accept_input());
        assert!(!u.push_input(b'2'));
        assert_eq!(r(&mut u, DR), u32::from(b'1'));
        assert!(u.push_input(b'3'));
    }

    #[test]
    fn disabled_receiver_takes_no_input() {
        let mut u = Pl011::new();
        w(&mut u, CR, CR_UARTEN | CR_TXE);
        assert!(!u.can_accept_input());
        assert!(!u.push_input(b'a'));
        assert_eq!(
            ris(&mut u) & INT_OE,
            0,
            "not an overrun: nothing was sampled"
        );
        w(&mut u, CR, CR_RXE | CR_TXE);
        assert!(!u.push_input(b'a'));
        w(&mut u, CR, HANDOVER_CR);
        assert!(u.push_input(b'a'));
    }

    #[test]
    fn rx_interrupt_follows_the_trigger_level_and_the_mask() {
        let mut u = Pl011::new();
        w(&mut u, IMSC, INT_RX);
        // IFLS reset: RX trigger at 1/2 of 32 = 16.
        for i in 0..15 {
            u.push_input(i);
        }
        assert!(!u.irq_level());
        assert_eq!(ris(&mut u) & INT_RX, 0);
        u.push_input(15);
        assert!(u.irq_level());
        assert_eq!(r(&mut u, MIS), INT_RX);
        r(&mut u, DR);
        assert!(!u.irq_level(), "below the trigger again");
        // Masked: raw status only.
        u.push_input(16);
        w(&mut u, IMSC, 0);
        assert_ne!(ris(&mut u) & INT_RX, 0);
        assert!(!u.irq_level());
        assert_eq!(r(&mut u, MIS), 0);
    }

    #[test]
    fn rx_trigger_levels_follow_ifls() {
        for (sel, level) in [
            (0b000, 4),
            (0b001, 8),
            (0b010, 16),
            (0b011, 24),
            (0b100, 28),
        ] {
            let mut u = Pl011::new();
            w(&mut u, IFLS, sel << IFLS_RX_SHIFT);
            for i in 0..level - 1 {
                u.push_input(i as u8);
            }
            assert_eq!(ris(&mut u) & INT_RX, 0, "sel {sel:#b}");
            u.push_input(0);
            assert_ne!(ris(&mut u) & INT_RX, 0, "sel {sel:#b}");
        }
    }

    #[test]
    fn any_byte_raises_rx_with_fifos_off() {
        let mut u = Pl011::new();
        w(&mut u, LCR_H, LCR_H_WLEN_8);
        w(&mut u, IMSC, INT_RX);
        u.push_input(b'k');
        assert!(u.irq_level());
        r(&mut u, DR);
        assert!(!u.irq_level());
    }

    #[test]
    fn receive_timeout_is_a_level_while_data_waits() {
        let mut u = Pl011::new();
        w(&mut u, IMSC, INT_RT);
        u.push_input(b'a');
        u.push_input(b'b');
        assert!(u.irq_level());
        w(&mut u, ICR, INT_MASK);
        assert!(
            u.irq_level(),
            "the timeout fires again at once while data waits"
        );
        r(&mut u, DR);
        assert!(u.irq_level());
        r(&mut u, DR);
        assert!(!u.irq_level());
        assert_eq!(ris(&mut u) & INT_RT, 0);
    }

    #[test]
    fn tx_interrupt_after_transmit_and_on_unmask() {
        let mut u = Pl011::new();
        assert_eq!(ris(&mut u) & INT_TX, 0, "nothing sent yet");
        w(&mut u, DR, u32::from(b'a'));
        assert_ne!(ris(&mut u) & INT_TX, 0);
        assert!(!u.irq_level(), "masked");
        w(&mut u, IMSC, INT_TX);
        assert!(u.irq_level());
        w(&mut u, ICR, INT_TX);
        assert!(!u.irq_level());
        w(&mut u, IMSC, INT_TX);
        assert!(!u.irq_level(), "no 0 -> 1 change of TXIM, nothing new");
        w(&mut u, DR, u32::from(b'b'));
        assert!(u.irq_level());
        w(&mut u, IMSC, 0);
        w(&mut u, ICR, INT_TX);
        w(&mut u, IMSC, INT_TX);
        assert!(u.irq_level(), "unmasking finds the empty transmit FIFO");
    }

    #[test]
    fn a_dropped_write_raises_no_tx_interrupt() {
        let mut u = Pl011::new();
        w(&mut u, CR, CR_UARTEN);
        w(&mut u, DR, u32::from(b'a'));
        assert_eq!(ris(&mut u) & INT_TX, 0);
    }

    /// Linux's startup (pl011_hwinit, pl011_startup, pl011_enable_interrupts), then its
    /// interrupt handler (pl011_int) with 16-bit accesses as for the ARM vendor: the handler
    /// loop must end with the line low, and transmission must never need an interrupt.
    #[test]
    fn linux_driver_sequence_terminates() {
        let mut u = Pl011::new();
        let rw = |u: &mut Pl011, o| u.read(o, 2).unwrap();
        let ww = |u: &mut Pl011, o, v| u.write(o, 2, v).unwrap();
        ww(&mut u, ICR, INT_OE | 0xF << 7 | INT_RT | INT_RX);
        let mut im = rw(&mut u, IMSC);
        ww(&mut u, IMSC, INT_RT | INT_RX);
        ww(&mut u, IMSC, im);
        ww(&mut u, IFLS, 0b010 << 3 | 0b010); // RX4_8 | TX4_8
        let cr = rw(&mut u, CR) & (1 << 11 | 1 << 10);
        ww(&mut u, CR, cr | CR_UARTEN | CR_RXE | CR_TXE);
        ww(&mut u, ICR, INT_RT | INT_RX);
        while rw(&mut u, FR) & FR_RXFE == 0 {
            rw(&mut u, DR);
        }
        im = INT_RT | INT_RX;
        ww(&mut u, IMSC, im);
        assert!(!u.irq_level());

        // pl011_start_tx_pio: writes while !TXFF, which never sets, so it sends everything
        // and never unmasks TXIM.
        let mut sent = Vec::new();
        for &b in b"login: " {
            assert_eq!(rw(&mut u, FR) & (1 << 5), 0);
            sent.extend(ww(&mut u, DR, u32::from(b)));
        }
        assert_eq!(sent, b"login: ");
        assert!(!u.irq_level());

        for &b in b"root\n" {
            u.push_input(b);
        }
        assert!(u.irq_level());
        let mut got = Vec::new();
        let mut passes = 0;
        let mut status = rw(&mut u, RIS) & im;
        while status != 0 {
            passes += 1;
            assert!(passes < 4, "interrupt storm");
            ww(&mut u, ICR, status & !(INT_TX | INT_RT | INT_RX));
            if status & (INT_RT | INT_RX) != 0 {
                while rw(&mut u, FR) & FR_RXFE == 0 {
                    got.push(rw(&mut u, DR) as u8);
                }
            }
            status = rw(&mut u, RIS) & im;
        }
        assert_eq!(got, b"root\n");
        assert!(!u.irq_level());
    }

    #[test]
    fn refuses_bad_offsets_and_sizes() {
        let mut u = Pl011::new();
        assert_eq!(u.read(PL011_SIZE, 4), Err(Pl011Error::BadOffset));
        assert_eq!(u.write(DR + 1, 1, 0), Err(Pl011Error::BadOffset));
        assert_eq!(u.read(FR + 2, 2), Err(Pl011Error::BadOffset));
        assert_eq!(u.read(DR, 8), Err(Pl011Error::BadSize));
        assert_eq!(u.read(DR, 3), Err(Pl011Error::BadSize));
        assert_eq!(u.read(DR, 0), Err(Pl011Error::BadSize));
        assert_eq!(u.read(FR, 1), Err(Pl011Error::BadSize));
        assert_eq!(u.write(CR, 1, 0), Err(Pl011Error::BadSize));
        assert_eq!(u.write(CR, 8, 0), Err(Pl011Error::BadSize));
        // A refused write changes nothing.
        assert_eq!(r(&mut u, CR), HANDOVER_CR);
        assert_eq!(u.read(FR, 2), Ok(FR_TXFE | FR_RXFE | FR_MODEM_CONNECTED));
    }

    #[test]
    fn reserved_offsets_read_zero_and_ignore_writes() {
        let mut u = Pl011::new();
        for offset in [0x008, 0x01C, 0x04C, 0x100, 0xFDC] {
            assert_eq!(u.write(offset, 4, u32::MAX), Ok(None));
            assert_eq!(u.read(offset, 4), Ok(0));
        }
        assert_eq!(w(&mut u, ICR, 0), None);
        assert_eq!(r(&mut u, ICR), 0, "write-only");
    }

    #[test]
    fn read_only_registers_ignore_writes() {
        let mut u = Pl011::new();
        for offset in [FR, RIS, MIS, PERIPH_ID0, PCELL_ID0 + 12] {
            let before = r(&mut u, offset);
            w(&mut u, offset, 0xFF);
            assert_eq!(r(&mut u, offset), before, "offset {offset:#x}");
        }
    }

    #[test]
    fn control_registers_keep_their_implemented_bits() {
        let mut u = Pl011::new();
        for (offset, mask) in [
            (ILPR, ILPR_MASK),
            (IBRD, IBRD_MASK),
            (FBRD, FBRD_MASK),
            (LCR_H, LCR_H_MASK),
            (CR, CR_MASK),
            (IFLS, IFLS_MASK),
            (IMSC, INT_MASK),
            (DMACR, DMACR_MASK),
        ] {
            w(&mut u, offset, u32::MAX);
            assert_eq!(r(&mut u, offset), mask, "offset {offset:#x}");
            w(&mut u, offset, 0);
            assert_eq!(r(&mut u, offset), 0, "offset {offset:#x}");
        }
        // A 16-bit write stores only its 16 bits; a 16-bit read returns only 16.
        u.write(IBRD, 2, 0x1_0005).unwrap();
        assert_eq!(u.read(IBRD, 2), Ok(5));
        assert_eq!(u.read(PCELL_ID0 + 12, 2), Ok(0xB1));
    }

    #[test]
    fn reset_restores_the_handover_state() {
        let mut u = Pl011::new();
        u.push_input(b'a');
        w(&mut u, IMSC, INT_TX | INT_RT);
        w(&mut u, CR, 0);
        assert!(u.irq_level());
        u.reset();
        assert!(!u.irq_level());
        assert_eq!(r(&mut u, CR), HANDOVER_CR);
        assert_eq!(r(&mut u, IMSC), 0);
        assert_ne!(r(&mut u, FR) & FR_RXFE, 0);
    }
}

#[cfg(test)]
mod snapshot_tests {
    use super::*;

    #[test]
    fn save_and_restore_keep_registers_and_pending_input() {
        let mut u = Pl011::new();
        u.write(IMSC, 4, 0x50).unwrap();
        u.push_input(b'a');
        u.push_input(b'b');
        let (regs, rx) = u.save();
        let mut back = Pl011::restore(regs, &rx);
        assert_eq!(back.read(IMSC, 4).unwrap(), 0x50);
        assert_eq!(back.read(DR, 4).unwrap() & 0xff, b'a' as u32);
        assert_eq!(back.read(DR, 4).unwrap() & 0xff, b'b' as u32);
    }
}
