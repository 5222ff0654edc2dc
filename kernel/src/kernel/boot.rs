//! Boot: creating the tasks, boot objects and capabilities of the image.

use capabilities::abi::{PAGE_SIZE, layout, rights, slots};
use capabilities::manifest::{BootCap, BootObject, TaskImage};
use heapless::Vec;

use super::{Kernel, Machine};
use crate::context::TrapFrame;
use crate::cspace::{Capability, Object, SlotId};
use crate::image::{BootImage, ImageError};
use crate::objects::{Endpoint, Handle, Notification};
use crate::paging::{self, MapError, TableFrames, flags};
use crate::phys::Frame;
use crate::task::{Quota, Task, TaskId, TaskState};

/// Why a task could not be created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum LoadError {
    /// Its memory quota cannot hold its image, stack and tables.
    QuotaTooSmall,
    /// The machine ran out of frames.
    OutOfMemory,
    /// A mapping could not be made.
    Map(MapError),
    /// A boot capability names an object the image does not have.
    BadBootCap(u16),
}

/// Frames for one task's page tables, charged to its quota.
pub(super) struct TaskTables<'a> {
    pub(super) frames: &'a mut super::Frames,
    pub(super) quota: &'a mut Quota,
}

impl TableFrames for TaskTables<'_> {
    fn alloc_table(&mut self) -> Option<Frame> {
        if !self.quota.charge(1) {
            return None;
        }
        let frame = self.frames.alloc();
        if frame.is_none() {
            self.quota.release(1);
        }
        frame
    }

    fn free_table(&mut self, frame: Frame) {
        // Table frames come from this allocator, so returning them succeeds.
        let _ = self.frames.free(frame);
        self.quota.release(1);
    }
}

/// The boot objects, by manifest index.
struct BootObjects {
    endpoints: Vec<Handle, { super::MAX_ENDPOINTS }>,
    notifications: Vec<Handle, { super::MAX_NOTIFICATIONS }>,
}

impl Kernel {
    /// Sets the top-level table whose upper half every address space shares,
    /// and whether the CPU supports no-execute pages.
    pub fn set_kernel_space(&mut self, root: Frame, no_execute: bool) {
        self.kernel_root = Some(root);
        self.no_execute = if no_execute { flags::NO_EXECUTE } else { 0 };
    }

    /// Creates every task of the boot image with its capabilities. A task
    /// that cannot be created is reported and skipped; the others still
    /// start. Returns how many started.
    // Out of line: a task's decoded image is large, and inlined into
    // `kernel_main` its frame would stay on the boot stack under every
    // call made before the load (the image digest's, the ACPI snapshot's).
    #[inline(never)]
    pub fn load(&mut self, m: &mut impl Machine, image: &BootImage) -> Result<usize, ImageError> {
        let header = image.header();
        let objects = self.create_boot_objects(header.endpoints, header.notifications);
        let mut ids: Vec<Option<TaskId>, { capabilities::manifest::MAX_TASKS }> = Vec::new();
        for (index, task) in image.tasks().enumerate() {
            let task = task?;
            let created = match self.create_task(m, image.bytes(), &task) {
                Ok(id) => {
                    info!(
                        "task {=str} loaded: priority {=u8}, {=u32} of {=u32} pages",
                        task.name.as_str(),
                        task.priority,
                        self.task(id).memory.used,
                        task.memory_pages
                    );
                    if header.init_task == Some(index as u16) {
                        self.init = Some(id);
                    }
                    Some(id)
                }
                Err(problem) => {
                    error!("task {=str} not started: {}", task.name.as_str(), problem);
                    None
                }
            };
            let _ = ids.push(created);
        }
        // A capability may name any task, so capabilities go in once every
        // task exists: a second pass decodes the records again (the first
        // checked them) rather than keeping every task's list on the stack.
        for (task, id) in image.tasks().zip(&ids) {
            let (Ok(task), Some(id)) = (task, *id) else { continue };
            for cap in &task.caps {
                if let Err(problem) = self.install_boot_cap(m, id, cap, &objects, &ids) {
                    error!(
                        "task {=str}: boot capability in slot {=u16} not installed: {}",
                        self.task(id).name.as_str(),
                        cap.slot,
                        problem
                    );
                }
            }
        }
        Ok(self.tasks.len())
    }

    fn create_boot_objects(&mut self, endpoints: u16, notifications: u16) -> BootObjects {
        let mut objects = BootObjects { endpoints: Vec::new(), notifications: Vec::new() };
        for _ in 0..endpoints {
            if let Ok(handle) = self.endpoints.insert(Endpoint::new(None)) {
                let _ = objects.endpoints.push(handle);
            }
        }
        for _ in 0..notifications {
            if let Ok(handle) = self.notifications.insert(Notification::new(None)) {
                let _ = objects.notifications.push(handle);
            }
        }
        objects
    }

    fn install_boot_cap(
        &mut self,
        m: &mut impl Machine,
        id: TaskId,
        cap: &BootCap,
        objects: &BootObjects,
        ids: &[Option<TaskId>],
    ) -> Result<(), LoadError> {
        let bad = LoadError::BadBootCap(cap.slot);
        let object = match cap.object {
            BootObject::Endpoint(n) => Object::Endpoint(*objects.endpoints.get(usize::from(n)).ok_or(bad)?),
            BootObject::Notification(n) => Object::Notification(*objects.notifications.get(usize::from(n)).ok_or(bad)?),
            BootObject::Task(n) => Object::Task(ids.get(usize::from(n)).copied().flatten().ok_or(bad)?),
            BootObject::DeviceMemory { base, pages } if base % PAGE_SIZE == 0 && pages > 0 => {
                self.record_device_grant(base, pages).map_err(|_| bad)?;
                Object::DeviceMemory { base, pages }
            }
            BootObject::DeviceMemory { .. } => return Err(bad),
            BootObject::IoPorts { base, count } => Object::IoPorts { base, count },
            BootObject::Interrupt { gsi, level } => {
                Object::Interrupt(self.create_ioapic_interrupt(m, gsi, level).map_err(|_| LoadError::OutOfMemory)?)
            }
            BootObject::Control => Object::Control,
            BootObject::AcpiTables => self.acpi_frame().ok_or(bad)?,
            BootObject::Ecam(n) => self.platform_object(Some(n), None).ok_or(bad)?,
            BootObject::RemappingUnit(n) => self.platform_object(None, Some(n)).ok_or(bad)?,
        };
        if cap.slot < slots::FIRST_POLICY as u16 {
            return Err(bad);
        }
        let slot = SlotId::new(id, u64::from(cap.slot)).map_err(|_| bad)?;
        self.install(slot, Capability { object, rights: cap.rights, badge: cap.badge }, None).map_err(|_| bad)
    }

    fn create_task(&mut self, m: &mut impl Machine, image: &[u8], spec: &TaskImage) -> Result<TaskId, LoadError> {
        let kernel_root = self.kernel_root.ok_or(LoadError::OutOfMemory)?;
        let mut quota = Quota::new(spec.memory_pages);
        let root = self.alloc_page(m, &mut quota)?;
        for slot in 256..512 {
            let entry = m.read_u64(kernel_root, slot * 8);
            m.write_u64(root, slot * 8, entry);
        }
        let built = self.build_space(m, image, spec, root, &mut quota);
        let ipc_buffer = match built {
            Ok(frame) => frame,
            Err(problem) => {
                self.free_space(m, root, &mut quota);
                return Err(problem);
            }
        };
        let id = TaskId::new(self.tasks.len() as u8);
        let task = Task {
            name: spec.name.clone(),
            priority: spec.priority,
            state: TaskState::Runnable,
            frame: TrapFrame::new_user(spec.entry, layout::STACK_TOP),
            root,
            stack_pages: spec.stack_pages,
            ipc_buffer,
            memory: quota,
            objects: Quota::new(u32::from(spec.object_quota)),
            deadline: None,
            bound: None,
            pin_watch: None,
            calls: 0,
        };
        if self.tasks.push(task).is_err() {
            // The image checker allows at most MAX_TASKS records.
            return Err(LoadError::OutOfMemory);
        }
        let own = [
            (slots::SELF_TASK, Object::Task(id), rights::WATCH),
            (slots::SELF_SPACE, Object::AddressSpace(id), rights::MAP),
        ];
        for (index, object, granted) in own {
            if let Ok(slot) = SlotId::new(id, u64::from(index)) {
                let _ = self.install(slot, Capability { object, rights: granted, badge: 0 }, None);
            }
        }
        self.sched.enqueue(id, spec.priority);
        Ok(id)
    }

    /// Maps the image segments, the stack and the IPC buffer; returns the
    /// IPC buffer's frame.
    fn build_space(
        &mut self,
        m: &mut impl Machine,
        image: &[u8],
        spec: &TaskImage,
        root: Frame,
        quota: &mut Quota,
    ) -> Result<Frame, LoadError> {
        let user = flags::PRESENT | flags::USER | flags::OWNED;
        for segment in &spec.segments {
            let mut leaf = user;
            if segment.flags.write {
                leaf |= flags::WRITABLE;
            }
            if !segment.flags.execute {
                leaf |= self.no_execute;
            }
            let pages = u64::from(segment.mem_size).div_ceil(PAGE_SIZE);
            for page in 0..pages {
                let frame = self.alloc_page(m, quota)?;
                let start = page * PAGE_SIZE;
                if start < u64::from(segment.file_size) {
                    let len = (u64::from(segment.file_size) - start).min(PAGE_SIZE) as usize;
                    let from = segment.offset as usize + start as usize;
                    // The image checker bounds offset + file_size by the image length.
                    m.page_mut(frame)[..len].copy_from_slice(&image[from..from + len]);
                }
                self.map_owned(m, root, quota, segment.vaddr + start, frame, leaf)?;
            }
        }
        let data = user | flags::WRITABLE | self.no_execute;
        for page in 1..=u64::from(spec.stack_pages) {
            let frame = self.alloc_page(m, quota)?;
            self.map_owned(m, root, quota, layout::STACK_TOP - page * PAGE_SIZE, frame, data)?;
        }
        let ipc = self.alloc_page(m, quota)?;
        self.map_owned(m, root, quota, layout::IPC_BUFFER, ipc, data)?;
        let info = self.alloc_page(m, quota)?;
        let page = m.page_mut(info);
        page[..4].copy_from_slice(&(spec.config.len() as u32).to_le_bytes());
        page[4..4 + spec.config.len()].copy_from_slice(&spec.config);
        self.map_owned(m, root, quota, layout::BOOT_INFO, info, user | self.no_execute)?;
        Ok(ipc)
    }

    fn map_owned(
        &mut self,
        m: &mut impl Machine,
        root: Frame,
        quota: &mut Quota,
        virt: u64,
        frame: Frame,
        leaf: u64,
    ) -> Result<(), LoadError> {
        let mut tables = TaskTables { frames: &mut self.frames, quota };
        paging::map(m, &mut tables, root, virt, frame, leaf).map_err(|error| {
            // The frame is not in the tables yet, so free it here.
            let _ = tables.frames.free(frame);
            tables.quota.release(1);
            match error {
                MapError::OutOfMemory => LoadError::QuotaTooSmall,
                other => LoadError::Map(other),
            }
        })
    }

    /// A zeroed frame charged to `quota`.
    fn alloc_page(&mut self, m: &mut impl Machine, quota: &mut Quota) -> Result<Frame, LoadError> {
        if !quota.charge(1) {
            return Err(LoadError::QuotaTooSmall);
        }
        let Some(frame) = self.frames.alloc() else {
            quota.release(1);
            return Err(LoadError::OutOfMemory);
        };
        m.page_mut(frame).fill(0);
        Ok(frame)
    }

    /// Frees every owned frame and table of the space at `root`, and `root`.
    pub(super) fn free_space(&mut self, m: &mut impl Machine, root: Frame, quota: &mut Quota) {
        // Unmap in batches: the walk cannot free while it visits.
        let mut batch: Vec<u64, 64> = Vec::new();
        loop {
            batch.clear();
            paging::for_each_user_leaf(m, root, |virt, leaf| {
                if leaf.flags & flags::OWNED != 0 {
                    let _ = batch.push(virt);
                }
            });
            if batch.is_empty() {
                break;
            }
            for &virt in &batch {
                if let Ok(leaf) = paging::unmap(m, root, virt) {
                    let _ = self.frames.free(Frame::containing(leaf.physical));
                    quota.release(1);
                }
            }
        }
        paging::free_user_tables(m, &mut TaskTables { frames: &mut self.frames, quota }, root);
        let _ = self.frames.free(root);
        quota.release(1);
    }
}
