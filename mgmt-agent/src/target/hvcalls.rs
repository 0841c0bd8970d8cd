//! [`Hypervisor`] over the management hypercalls (abi::mgmt, HVC64 fast calls `0xC600_01xx`).
//!
//! Records travel in one 4 KiB-aligned page of our RAM, whose IPA (= its address, MMU off) is
//! the page argument; the agent makes one call at a time, so one page serves them all.

use alloc::vec::Vec;
use core::ptr::addr_of_mut;

use abi::mgmt::*;
use abi::Status;
use mgmt_agent::hv::{probe_size, Hypervisor};

#[repr(C, align(4096))]
struct Page([u8; PAGE_SIZE]);

static mut PAGE: Page = Page([0; PAGE_SIZE]);
static mut TAKEN: bool = false;

pub struct HvCalls {
    page: &'static mut Page,
    store_size: u64,
}

/// The status in `x0`; a value that is no status is taken as "not supported".
fn status(x0: u64) -> Status {
    Status::from_reg(x0).unwrap_or(Status::NotSupported)
}

impl HvCalls {
    /// The only instance (it owns the record page). Panics if called twice.
    pub fn take() -> HvCalls {
        // SAFETY: one vCPU, no interrupts: nothing else reads or writes TAKEN or PAGE, and
        // TAKEN makes the `&'static mut` to PAGE unique.
        let page = unsafe {
            assert!(!TAKEN, "HvCalls::take called twice");
            TAKEN = true;
            &mut *addr_of_mut!(PAGE)
        };
        let mut hv = HvCalls {
            page,
            store_size: 0,
        };
        hv.store_size = hv.find_store_size();
        hv
    }

    fn page_ipa(&self) -> u64 {
        self.page.0.as_ptr() as u64
    }

    /// Issues `function` with `args`; `Ok(x0..x3)` on success. The page may have been written
    /// by the hypervisor: `hvc`'s asm is not `nomem`, and the page's address was handed out,
    /// so the compiler does not assume it unchanged.
    fn call(&mut self, function: u32, args: [u64; 3]) -> Result<[u64; 4], Status> {
        let r = abi::guest::hvc(function, args);
        match status(r[0]) {
            Status::Success => Ok(r),
            s => Err(s),
        }
    }

    fn call_handle(&mut self, function: u32, handle: u32) -> Result<(), Status> {
        self.call(function, [u64::from(handle), 0, 0]).map(|_| ())
    }

    /// The ABI has no call for the size of the persistent area: find it with one-byte reads
    /// (none without a disk).
    fn find_store_size(&mut self) -> u64 {
        match self.device_info() {
            Ok(d) if d.disk != 0 => {}
            _ => return 0,
        }
        let ipa = self.page_ipa();
        probe_size(|offset| {
            let r = abi::guest::hvc(HV_MGMT_STORE_READ, [offset, ipa, 1]);
            status(r[0]) == Status::Success
        })
    }
}

impl Hypervisor for HvCalls {
    fn device_info(&mut self) -> Result<DeviceInfo, Status> {
        let ipa = self.page_ipa();
        self.call(HV_MGMT_DEVICE_INFO, [ipa, 0, 0])?;
        Ok(DeviceInfo::decode(&self.page.0)?)
    }

    fn create(&mut self, req: &VmCreate) -> Result<u32, Status> {
        req.encode(&mut self.page.0);
        let ipa = self.page_ipa();
        let r = self.call(HV_MGMT_VM_CREATE, [ipa, 0, 0])?;
        Ok(r[1] as u32)
    }

    fn delete(&mut self, handle: u32) -> Result<(), Status> {
        self.call_handle(HV_MGMT_VM_DELETE, handle)
    }

    fn power_on(&mut self, handle: u32) -> Result<(), Status> {
        self.call_handle(HV_MGMT_VM_POWER_ON, handle)
    }

    fn power_off(&mut self, handle: u32) -> Result<(), Status> {
        self.call_handle(HV_MGMT_VM_POWER_OFF, handle)
    }

    fn suspend(&mut self, handle: u32) -> Result<(), Status> {
        self.call_handle(HV_MGMT_VM_SUSPEND, handle)
    }

    fn resume(&mut self, handle: u32) -> Result<(), Status> {
        self.call_handle(HV_MGMT_VM_RESUME, handle)
    }

    fn query(&mut self, handle: u32) -> Result<VmInfo, Status> {
        let ipa = self.page_ipa();
        self.call(HV_MGMT_VM_QUERY, [u64::from(handle), ipa, 0])?;
        Ok(VmInfo::decode(&self.page.0)?)
    }

    fn list(&mut self) -> Result<Vec<u32>, Status> {
        let ipa = self.page_ipa();
        let r = self.call(HV_MGMT_VM_LIST, [ipa, 0, 0])?;
        let count = (r[1] as usize).min(PAGE_SIZE / 4);
        Ok(self.page.0[..count * 4]
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }

    fn apply(&mut self, changes: &[Change]) -> Result<(), (Status, Option<usize>)> {
        ApplyBatch::encode(changes, &mut self.page.0).map_err(|e| (e.into(), None))?;
        let ipa = self.page_ipa();
        let r = abi::guest::hvc(HV_MGMT_APPLY, [ipa, 0, 0]);
        match status(r[0]) {
            Status::Success => Ok(()),
            s => Err((s, (r[1] != u64::MAX).then_some(r[1] as usize))),
        }
    }

    fn images(&mut self) -> Result<Vec<ImageInfo>, Status> {
        let ipa = self.page_ipa();
        let r = self.call(HV_MGMT_IMAGE_LIST, [ipa, 0, 0])?;
        let count = (r[1] as usize).min(PAGE_SIZE / ImageInfo::SIZE);
        (0..count)
            .map(|i| Ok(ImageInfo::decode(&self.page.0[i * ImageInfo::SIZE..])?))
            .collect()
    }

    fn remove_image(&mut self, id: u32) -> Result<(), Status> {
        self.call_handle(HV_MGMT_IMAGE_REMOVE, id)
    }

    fn store_read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Status> {
        let ipa = self.page_ipa();
        let mut done = 0;
        for chunk in buf.chunks_mut(PAGE_SIZE) {
            let len = chunk.len();
            self.call(HV_MGMT_STORE_READ, [offset + done, ipa, len as u64])?;
            chunk.copy_from_slice(&self.page.0[..len]);
            done += len as u64;
        }
        Ok(())
    }

    fn store_write(&mut self, offset: u64, data: &[u8]) -> Result<(), Status> {
        let ipa = self.page_ipa();
        let mut done = 0;
        for chunk in data.chunks(PAGE_SIZE) {
            self.page.0[..chunk.len()].copy_from_slice(chunk);
            self.call(
                HV_MGMT_STORE_WRITE,
                [offset + done, ipa, chunk.len() as u64],
            )?;
            done += chunk.len() as u64;
        }
        Ok(())
    }

    fn store_size(&self) -> u64 {
        self.store_size
    }

    fn fault_inject(&mut self, point: FaultPoint, countdown: u32) -> Result<(), Status> {
        self.call(
            HV_MGMT_FAULT_INJECT,
            [point as u64, u64::from(countdown), 0],
        )
        .map(|_| ())
    }
}
