//! The [`Machine`] the kernel logic runs on: physical memory, the console,
//! the clock, the TLB, I/O ports and the interrupt controllers.

use kernel::kernel::Machine;
use kernel::phys::{Frame, PAGE_SIZE, PhysMem};
use x86_64::instructions::port::Port;
use x86_64::registers::control::Cr3;

use crate::memory::Physical;
use crate::{apic, console, time};

/// The machine as the kernel logic sees it. There is one, inside the
/// kernel lock.
pub struct Hardware {
    /// RAM, through the direct map.
    pub memory: Physical,
}

impl Hardware {
    /// Before `kernel_space::init`: nothing is mapped yet.
    pub const fn new() -> Self {
        Self { memory: Physical::new() }
    }
}

impl PhysMem for Hardware {
    fn manages(&self, frame: Frame) -> bool {
        self.memory.manages(frame)
    }

    fn page(&self, frame: Frame) -> &[u8; PAGE_SIZE] {
        self.memory.page(frame)
    }

    fn page_mut(&mut self, frame: Frame) -> &mut [u8; PAGE_SIZE] {
        self.memory.page_mut(frame)
    }

    fn copy(&mut self, src: Frame, src_offset: usize, dst: Frame, dst_offset: usize, len: usize) {
        self.memory.copy(src, src_offset, dst, dst_offset, len);
    }
}

impl Machine for Hardware {
    fn log_record(&mut self, tag: u8, payload: &[u8]) {
        console::write_record(tag, payload);
    }

    fn now(&self) -> u64 {
        time::micros()
    }

    fn flush_tlb(&mut self, root: Frame, virt: u64, pages: u64) {
        let (current, _) = Cr3::read();
        if current.start_address().as_u64() != root.address() {
            return; // not loaded: its non-global entries were dropped at the switch
        }
        if pages > 64 {
            x86_64::instructions::tlb::flush_all();
        } else {
            for page in 0..pages {
                x86_64::instructions::tlb::flush(x86_64::VirtAddr::new(virt + page * PAGE_SIZE as u64));
            }
        }
    }

    fn port_read(&mut self, port: u16, width: u8) -> u32 {
        // SAFETY: the kernel logic checked the port against an I/O-port
        // capability the policy granted; reading it affects only that device.
        unsafe {
            match width {
                1 => u32::from(Port::<u8>::new(port).read()),
                2 => u32::from(Port::<u16>::new(port).read()),
                _ => Port::<u32>::new(port).read(),
            }
        }
    }

    fn port_write(&mut self, port: u16, width: u8, value: u32) {
        // SAFETY: as in `port_read`; the capability covers every byte written.
        unsafe {
            match width {
                1 => Port::<u8>::new(port).write(value as u8),
                2 => Port::<u16>::new(port).write(value as u16),
                _ => Port::<u32>::new(port).write(value),
            }
        }
    }

    fn route_gsi(&mut self, gsi: u8, vector: u8, level: bool) {
        apic::route(gsi, vector, level);
    }

    fn mask_gsi(&mut self, gsi: u8, masked: bool) {
        apic::mask(gsi, masked);
    }

    fn msi_address(&self) -> u64 {
        0xfee0_0000 | u64::from(apic::id()) << 12
    }

    fn remap_gsi(&mut self, gsi: u8, vector: u8, level: bool, handle: u16) {
        apic::route_remapped(gsi, vector, level, handle);
    }
}
