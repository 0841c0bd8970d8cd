//! The management calls as a test guest makes them (`abi::mgmt`, docs/hypercalls.md
//! "Management calls"): one record page in the guest's RAM, and each call returning its status
//! and the records it wrote, decoded with the ABI's own decoders.
//!
//! Only the management VM is served; every other VM gets `Status::Denied`. The guests run with
//! the MMU off, so the page's address is its IPA.

use abi::mgmt::*;
use abi::Status;
use guest_rt::hvc;

/// The page records travel in: 4 KiB aligned, as the hypervisor requires.
#[repr(C, align(4096))]
pub struct Page(pub [u8; PAGE_SIZE]);

static mut PAGE: Page = Page([0; PAGE_SIZE]);

/// The record page. Test guests run their tests on one vCPU, one at a time, so there is never
/// more than one user.
pub fn page() -> &'static mut [u8; PAGE_SIZE] {
    // SAFETY: see above: a single user at a time on the one vCPU that runs tests.
    unsafe { &mut (*core::ptr::addr_of_mut!(PAGE)).0 }
}

/// The IPA of the record page.
pub fn page_ipa() -> u64 {
    page().as_ptr() as u64
}

/// `x0` as a status; a value that is none is reported as `Err(x0)`.
pub fn status(x0: u64) -> Result<Status, u64> {
    Status::from_reg(x0).ok_or(x0)
}

/// `HV_MGMT_DEVICE_INFO`.
pub fn device_info() -> Result<DeviceInfo, u64> {
    let r = hvc(HV_MGMT_DEVICE_INFO, [page_ipa(), 0, 0]);
    if r[0] != Status::Success.to_reg() {
        return Err(r[0]);
    }
    DeviceInfo::decode(page()).map_err(|_| u64::MAX)
}

/// `HV_MGMT_VM_LIST`: the handles (at most 16 kept).
pub fn vm_list() -> Result<heapless_handles::Handles, u64> {
    let r = hvc(HV_MGMT_VM_LIST, [page_ipa(), 0, 0]);
    if r[0] != Status::Success.to_reg() {
        return Err(r[0]);
    }
    let mut out = heapless_handles::Handles::default();
    for i in 0..(r[1] as usize).min(heapless_handles::MAX) {
        let b = &page()[i * 4..i * 4 + 4];
        out.push(u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    }
    out.total = r[1] as usize;
    Ok(out)
}

/// `HV_MGMT_VM_QUERY(handle)`.
pub fn vm_query(handle: u64) -> Result<VmInfo, u64> {
    vm_query_at(handle, page_ipa())
}

/// `HV_MGMT_VM_QUERY(handle)` with the record written at `ipa` (to try bad pages).
pub fn vm_query_at(handle: u64, ipa: u64) -> Result<VmInfo, u64> {
    let r = hvc(HV_MGMT_VM_QUERY, [handle, ipa, 0]);
    if r[0] != Status::Success.to_reg() {
        return Err(r[0]);
    }
    VmInfo::decode(page()).map_err(|_| u64::MAX)
}

/// `HV_MGMT_VM_STATS(handle)` (0: the caller).
pub fn vm_stats(handle: u64) -> Result<CpuStats, u64> {
    let r = hvc(HV_MGMT_VM_STATS, [handle, 0, 0]);
    if r[0] != Status::Success.to_reg() {
        return Err(r[0]);
    }
    Ok(CpuStats {
        consumed_ns: r[1],
        throttled_ns: r[2],
        throttled_periods: r[3],
    })
}

/// `HV_MGMT_APPLY(changes)`: `(x0, x1)`, the status and the index of the change at fault.
pub fn apply(changes: &[Change]) -> (u64, u64) {
    let page = page();
    page.fill(0);
    if ApplyBatch::encode(changes, page).is_err() {
        return (u64::MAX, u64::MAX);
    }
    let r = hvc(HV_MGMT_APPLY, [page_ipa(), 0, 0]);
    (r[0], r[1])
}

/// A fixed-capacity list of VM handles (no allocator in the guests).
pub mod heapless_handles {
    pub const MAX: usize = 16;

    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct Handles {
        items: [u32; MAX],
        len: usize,
        /// How many the hypervisor said there are.
        pub total: usize,
    }

    impl Handles {
        pub fn push(&mut self, h: u32) {
            if self.len < MAX {
                self.items[self.len] = h;
                self.len += 1;
            }
        }

        pub fn as_slice(&self) -> &[u32] {
            &self.items[..self.len]
        }
    }
}
