//! `hvclock`: prints the virtual counter CNTVCT_EL0 and its frequency CNTFRQ_EL0, in decimal,
//! as `<count> <frequency>` and a newline on standard output, then exits. A static arm64 Linux
//! program without libc, for the `linux_boot_ratio` benchmark (docs/benchmarks.md): Linux lets
//! EL0 read the virtual counter (CNTKCTL_EL1.EL0VCTEN, which its vDSO relies on), and nothing
//! in busybox can.
//!
//! `cargo xtask bench` compiles it with `rustc --target aarch64-unknown-none` (no libc, no
//! std: a static ELF whose entry is `_start`) and adds it to the benchmark's initramfs.
#![no_std]
#![no_main]

use core::arch::{asm, global_asm};

// Linux starts a static ELF at its entry point with SP set; nothing else is needed.
global_asm!(".global _start", "_start:", "bl {main}", main = sym main);

/// Linux arm64 system call numbers (include/uapi/asm-generic/unistd.h).
const SYS_WRITE: u64 = 64;
const SYS_EXIT: u64 = 93;

fn syscall3(nr: u64, a0: u64, a1: u64, a2: u64) -> u64 {
    let ret;
    // SAFETY: a Linux system call; the arguments are checked by the kernel.
    unsafe {
        asm!("svc #0", inlateout("x0") a0 => ret, in("x1") a1, in("x2") a2, in("x8") nr,
            options(nostack))
    };
    ret
}

fn exit(code: u64) -> ! {
    syscall3(SYS_EXIT, code, 0, 0);
    loop {}
}

/// Writes `n` in decimal, then `end`, just before `buf[at]`; returns the new start.
fn decimal_before(buf: &mut [u8], mut at: usize, mut n: u64, end: u8) -> usize {
    at -= 1;
    buf[at] = end;
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return at;
        }
    }
}

extern "C" fn main() -> ! {
    let (count, frequency): (u64, u64);
    // SAFETY: reading the counter and its frequency has no side effect. The counter first:
    // it is the moment measured.
    unsafe {
        asm!("isb", "mrs {}, cntvct_el0", out(reg) count, options(nomem, nostack));
        asm!("mrs {}, cntfrq_el0", out(reg) frequency, options(nomem, nostack));
    }
    let mut buf = [0u8; 48];
    let at = decimal_before(&mut buf, 48, frequency, b'\n');
    let at = decimal_before(&mut buf, at, count, b' ');
    let len = (buf.len() - at) as u64;
    let written = syscall3(SYS_WRITE, 1, buf[at..].as_ptr() as u64, len);
    exit(if written == len { 0 } else { 1 })
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    exit(2)
}
