//! CPU set-up: features the kernel uses, control registers, legacy PIC off.

use x86_64::instructions::port::Port;
use x86_64::registers::control::{Cr4, Cr4Flags};
use x86_64::registers::model_specific::{Efer, EferFlags};

/// Optional CPU features the kernel found and enabled.
#[derive(Clone, Copy)]
pub struct Features {
    /// Global pages (CR4.PGE).
    pub global_pages: bool,
}

fn cpuid(leaf: u32) -> core::arch::x86_64::CpuidResult {
    core::arch::x86_64::__cpuid(leaf)
}

/// Enables the features the kernel relies on and masks the 8259 PICs.
/// Refuses to boot on a CPU without the no-execute page bit: W^X (no
/// page a task can write is one it can run, and the kernel's data is
/// never code) rests on it.
pub fn init() -> Features {
    if cpuid(0x8000_0001).edx & (1 << 20) == 0 {
        panic!(
            "the CPU has no no-execute page bit (CPUID 0x80000001 EDX bit 20): writable memory would be \
             executable, so W^X cannot hold; refusing to boot"
        );
    }
    let global_pages = cpuid(1).edx & (1 << 13) != 0;
    // SAFETY: setting EFER.NXE (the CPU has it, checked above) and
    // EFER.SCE only enables the NX bit in page tables and the `syscall`
    // instruction, whose target MSRs are programmed before any task runs.
    unsafe {
        Efer::update(|flags| flags.insert(EferFlags::SYSTEM_CALL_EXTENSIONS | EferFlags::NO_EXECUTE_ENABLE));
    }
    if global_pages {
        // SAFETY: global pages only change which TLB entries survive a CR3
        // write; the kernel marks global only its own (shared) mappings.
        unsafe { Cr4::update(|flags| flags.insert(Cr4Flags::PAGE_GLOBAL)) };
    }
    mask_legacy_pic();
    Features { global_pages }
}

/// Moves the 8259 PICs' vectors to 0x20-0x2f, out of the exception range,
/// and masks every line: interrupts come through the APICs.
fn mask_legacy_pic() {
    let writes: [(u16, u8); 10] = [
        (0x20, 0x11), // ICW1: initialise, ICW4 follows
        (0xa0, 0x11),
        (0x21, 0x20), // ICW2: primary vectors 0x20-0x27
        (0xa1, 0x28), // secondary 0x28-0x2f
        (0x21, 0x04), // ICW3: secondary on line 2
        (0xa1, 0x02),
        (0x21, 0x01), // ICW4: 8086 mode
        (0xa1, 0x01),
        (0x21, 0xff), // mask everything
        (0xa1, 0xff),
    ];
    for (port, value) in writes {
        // SAFETY: ports 0x20/0x21/0xa0/0xa1 are the two 8259 PICs, which the
        // kernel owns and no task is granted; this only remaps and masks.
        unsafe { Port::new(port).write(value) };
    }
}
