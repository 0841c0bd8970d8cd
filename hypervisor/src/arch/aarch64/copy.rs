//! Copying bytes a cache line's worth at a time: images and device trees into a VM's RAM.
//!
//! The `memcpy` that `compiler_builtins` provides copies one 64-bit word per four
//! instructions (and byte by byte assembled when the source is misaligned); loading a guest's
//! image with it cost half an instruction per byte (docs/benchmarks.md). This copies 64 bytes
//! per eleven instructions with `ldp`/`stp` of general registers (the hypervisor never touches
//! the FP/SIMD registers: they hold the guests' state, switched lazily).

/// Copies `src` into `dst` (same length).
pub fn copy_bytes(dst: &mut [u8], src: &[u8]) {
    assert_eq!(dst.len(), src.len(), "copy_bytes: lengths differ");
    const CHUNK: usize = 64;
    let len = dst.len();
    let (d, s) = (dst.as_mut_ptr() as usize, src.as_ptr() as usize);
    // Bytes before the destination is 16-byte aligned; the source then is 8-byte aligned when
    // both were equally misaligned (ELF segments are: their file offset and address agree
    // modulo the page size).
    let head = d.wrapping_neg() & 15;
    if (d ^ s) & 7 != 0 || len < head + CHUNK {
        dst.copy_from_slice(src);
        return;
    }
    let bulk = (len - head) & !(CHUNK - 1);
    dst[..head].copy_from_slice(&src[..head]);
    let (dst_bulk, dst_tail) = dst[head..].split_at_mut(bulk);
    let (src_bulk, src_tail) = src[head..].split_at(bulk);
    // SAFETY: plain loads from `src_bulk` and stores to `dst_bulk`, both `bulk` bytes long
    // (a non-zero multiple of 64) and distinct (`&mut` and `&` cannot overlap); the pointers
    // are 8-byte aligned. Only the registers named are changed.
    unsafe {
        core::arch::asm!(
            "2:",
            "ldp {a}, {b}, [{s}], #16",
            "ldp {c}, {d}, [{s}], #16",
            "ldp {e}, {f}, [{s}], #16",
            "ldp {g}, {h}, [{s}], #16",
            "stp {a}, {b}, [{t}], #16",
            "stp {c}, {d}, [{t}], #16",
            "stp {e}, {f}, [{t}], #16",
            "stp {g}, {h}, [{t}], #16",
            "subs {n}, {n}, #64",
            "b.ne 2b",
            s = inout(reg) src_bulk.as_ptr() => _,
            t = inout(reg) dst_bulk.as_mut_ptr() => _,
            n = inout(reg) bulk => _,
            a = out(reg) _, b = out(reg) _, c = out(reg) _, d = out(reg) _,
            e = out(reg) _, f = out(reg) _, g = out(reg) _, h = out(reg) _,
            options(nostack)
        );
    }
    dst_tail.copy_from_slice(src_tail);
}
