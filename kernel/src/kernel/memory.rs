//! Memory operations: allocating frames, mapping frames and device memory.
//!
//! A memory capability maps at most once, and its mapping is recorded in
//! its slot: deleting or revoking the capability removes the mapping, so
//! taking a capability back also takes back the access it gave. Device
//! access (DMA pins, `pins.rs`) is taken back the same way, through the
//! pinner.

use capabilities::ErrorCode;
use capabilities::abi::{PAGE_SIZE, layout, rights};

use super::boot::TaskTables;
use super::{Kernel, Machine};
use crate::cspace::{Capability, Mapping, Object};
use crate::objects::{FrameObject, Handle};
use crate::paging::{self, MapError, flags};
use crate::task::TaskId;

/// Largest frame, in pages (2 MiB).
pub const MAX_FRAME_PAGES: u64 = 512;

/// Most pages one `Map` maps (256 MiB: the configuration space of a whole
/// PCI segment, the largest mapping the system makes). Each page costs a
/// page-table walk with interrupts off, and an `Unmap` leaves the tables
/// charged, so without a bound per call a task holding a large device
/// range could keep the kernel busy for as long as its quota reaches, call
/// after call, at no further cost.
pub const MAX_MAP_PAGES: u64 = 1 << 16;

impl Kernel {
    /// `FrameAlloc`: `pages` zeroed, physically contiguous pages.
    pub(super) fn frame_alloc(
        &mut self,
        m: &mut impl Machine,
        id: TaskId,
        slot: u64,
        pages: u64,
    ) -> Result<[u64; 3], ErrorCode> {
        let slot = self.caps.empty_slot(id, slot)?;
        if !pages.is_power_of_two() || pages > MAX_FRAME_PAGES {
            return Err(ErrorCode::InvalidArgument);
        }
        self.charge_object(id)?;
        if !self.task_mut(id).memory.charge(pages as u32) {
            self.task_mut(id).objects.release(1);
            return Err(ErrorCode::QuotaExceeded);
        }
        let Some(base) = self.frames.alloc_contiguous_high(pages as usize, pages as usize) else {
            self.task_mut(id).memory.release(pages as u32);
            self.task_mut(id).objects.release(1);
            return Err(ErrorCode::OutOfMemory);
        };
        for page in 0..pages {
            m.page_mut(base.add(page)).fill(0);
        }
        let object = FrameObject { base, pages: pages as u32, owner: Some(id), refs: 0, pins: 0, pinner: None };
        let Ok(handle) = self.frame_objects.insert(object) else {
            let _ = self.frames.free_contiguous(base, pages as usize);
            self.task_mut(id).memory.release(pages as u32);
            self.task_mut(id).objects.release(1);
            return Err(ErrorCode::OutOfMemory);
        };
        // Never executable: code comes only from the boot image, so no page
        // a task can write is one it can run (W^X).
        let cap = Capability { object: Object::Frame(handle), rights: rights::READ | rights::WRITE, badge: 0 };
        self.install(slot, cap, None)?;
        Ok([0; 3])
    }

    /// Drops a capability's reference to a frame; frees the memory when no
    /// capability and no pin is left.
    #[unsafe(link_section = ".text.hot.dma")]
    pub(super) fn release_frame(&mut self, handle: Handle) {
        let Some(frame) = self.frame_objects.get_mut(handle) else { return };
        frame.refs = frame.refs.saturating_sub(1);
        self.free_frame_if_unused(handle);
    }

    #[unsafe(link_section = ".text.hot.dma")]
    pub(super) fn free_frame_if_unused(&mut self, handle: Handle) {
        let unused = self.frame_objects.get(handle).is_some_and(|frame| frame.refs == 0 && frame.pins == 0);
        if !unused {
            return;
        }
        if let Some(frame) = self.frame_objects.remove(handle) {
            let _ = self.frames.free_contiguous(frame.base, frame.pages as usize);
            if let Some(owner) = frame.owner {
                let owner = self.task_mut(owner);
                owner.memory.release(frame.pages);
                owner.objects.release(1);
            }
        }
    }

    /// `Map`: maps memory capability `memory` into address space `space`
    /// at `virt`; `access` may ask for WRITE or EXECUTE (not both) if the
    /// capability has it. At most [`MAX_MAP_PAGES`] pages, so one call's
    /// work (and the `Unmap`, delete or revocation that undoes it) has a
    /// bound of its own, whatever the task's quota.
    pub(super) fn map(&mut self, m: &mut impl Machine, id: TaskId, args: [u64; 6]) -> Result<[u64; 3], ErrorCode> {
        let [space_slot, memory_slot, virt, access, ..] = args;
        let (_, space_cap) = self.caps.lookup(id, space_slot)?;
        let Object::AddressSpace(space) = space_cap.object else { return Err(ErrorCode::WrongKind) };
        if !space_cap.has(rights::MAP) || self.task(space).is_dead() {
            return Err(ErrorCode::PermissionDenied);
        }
        let (slot, cap) = self.caps.lookup(id, memory_slot)?;
        if self.caps.mapping(slot).is_some() {
            return Err(ErrorCode::AlreadyMapped);
        }
        let (physical, pages, device) = match cap.object {
            Object::Frame(handle) => {
                let frame = self.frame_objects.get(handle).ok_or(ErrorCode::ObjectDeleted)?;
                (frame.base.address(), u64::from(frame.pages), false)
            }
            Object::DeviceMemory { base, pages } => (base, u64::from(pages), true),
            _ => return Err(ErrorCode::WrongKind),
        };
        if pages > MAX_MAP_PAGES {
            return Err(ErrorCode::TooLarge);
        }
        let access = access as u32;
        if access & !(rights::READ | rights::WRITE | rights::EXECUTE) != 0 || !cap.has(access | rights::READ) {
            return Err(ErrorCode::PermissionDenied);
        }
        // W^X: a mapping is writable or executable, never both.
        if access & rights::WRITE != 0 && access & rights::EXECUTE != 0 {
            return Err(ErrorCode::PermissionDenied);
        }
        let end = pages.checked_mul(PAGE_SIZE).and_then(|size| virt.checked_add(size));
        if virt % PAGE_SIZE != 0 || virt < layout::USER_MAP_BASE || end.is_none_or(|end| end > layout::USER_MAP_END) {
            return Err(ErrorCode::BadAddress);
        }
        if device && access & rights::EXECUTE != 0 {
            return Err(ErrorCode::PermissionDenied);
        }
        let mut leaf = flags::PRESENT | flags::USER;
        if access & rights::WRITE != 0 {
            leaf |= flags::WRITABLE;
        }
        if access & rights::EXECUTE == 0 {
            leaf |= self.no_execute;
        }
        if device {
            leaf |= flags::WRITE_THROUGH | flags::NO_CACHE | flags::DEVICE;
        }
        let root = self.task(space).root;
        let mut quota = self.task(space).memory;
        let mut result = Ok(());
        let mut mapped = 0;
        {
            let mut tables = TaskTables { frames: &mut self.frames, quota: &mut quota };
            for page in 0..pages {
                let frame = crate::phys::Frame::containing(physical + page * PAGE_SIZE);
                if let Err(error) = paging::map(m, &mut tables, root, virt + page * PAGE_SIZE, frame, leaf) {
                    result = Err(match error {
                        MapError::AlreadyMapped => ErrorCode::AlreadyMapped,
                        MapError::OutOfMemory => ErrorCode::QuotaExceeded,
                        _ => ErrorCode::BadAddress,
                    });
                    break;
                }
                mapped += 1;
            }
        }
        self.task_mut(space).memory = quota;
        if let Err(error) = result {
            self.unmap_pages(m, space, virt, mapped);
            return Err(error);
        }
        self.caps.set_mapping(slot, Some(Mapping { space, virt, pages: pages as u32 }));
        Ok([0; 3])
    }

    /// `Unmap`: removes the mapping made with memory capability `slot`.
    pub(super) fn unmap(&mut self, m: &mut impl Machine, id: TaskId, slot: u64) -> Result<[u64; 3], ErrorCode> {
        let (slot, _) = self.caps.lookup(id, slot)?;
        let mapping = self.caps.mapping(slot).ok_or(ErrorCode::NotMapped)?;
        self.unmap_pages(m, mapping.space, mapping.virt, mapping.pages);
        self.caps.set_mapping(slot, None);
        Ok([0; 3])
    }

    /// Checks that `slot` holds the control capability with `needed`.
    #[unsafe(link_section = ".text.hot.dma")]
    pub(super) fn require_control(&self, id: TaskId, slot: u64, needed: u32) -> Result<(), ErrorCode> {
        let (_, cap) = self.caps.lookup(id, slot)?;
        if cap.object != Object::Control {
            return Err(ErrorCode::WrongKind);
        }
        if !cap.has(needed) {
            return Err(ErrorCode::PermissionDenied);
        }
        Ok(())
    }
}
