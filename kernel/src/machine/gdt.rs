//! Segments: the GDT with kernel and user segments, and the TSS that gives
//! the CPU the kernel stack for entries from ring 3 and a separate stack
//! for double faults.

use spin::Once;
use x86_64::VirtAddr;
use x86_64::instructions::segmentation::{CS, DS, ES, SS, Segment};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::tss::TaskStateSegment;

use kernel::context::{USER_CODE_SELECTOR, USER_DATA_SELECTOR};

use crate::stacks::{self, Ist};

static TSS: Once<TaskStateSegment> = Once::new();
static GDT: Once<(GlobalDescriptorTable, Selectors, SegmentSelector)> = Once::new();

/// The code and data selectors of both rings.
#[derive(Clone, Copy)]
pub struct Selectors {
    /// Ring-0 code.
    pub kernel_code: SegmentSelector,
    /// Ring-0 data and stack.
    pub kernel_data: SegmentSelector,
    /// Ring-3 code.
    pub user_code: SegmentSelector,
    /// Ring-3 data and stack.
    pub user_data: SegmentSelector,
}

/// Loads the GDT and TSS and reloads every segment register.
pub fn init() -> Selectors {
    let tss = TSS.call_once(|| {
        let mut tss = TaskStateSegment::new();
        tss.privilege_stack_table[0] = VirtAddr::new(stacks::kernel_stack_top());
        for ist in Ist::ALL {
            tss.interrupt_stack_table[usize::from(ist.index())] = VirtAddr::new(ist.top());
        }
        tss
    });
    let (gdt, selectors, tss_selector) = GDT.call_once(|| {
        let mut gdt = GlobalDescriptorTable::new();
        let code = gdt.append(Descriptor::kernel_code_segment());
        let data = gdt.append(Descriptor::kernel_data_segment());
        let user_data = gdt.append(Descriptor::user_data_segment());
        let user_code = gdt.append(Descriptor::user_code_segment());
        // `sysret` derives the user selectors from STAR; the trap-frame
        // constants in the kernel library must agree with this order.
        debug_assert_eq!(u64::from(user_data.0), USER_DATA_SELECTOR);
        debug_assert_eq!(u64::from(user_code.0), USER_CODE_SELECTOR);
        let tss_selector = gdt.append(Descriptor::tss_segment(tss));
        let selectors = Selectors { kernel_code: code, kernel_data: data, user_code, user_data };
        (gdt, selectors, tss_selector)
    });
    gdt.load();
    // SAFETY: the selectors index the GDT just loaded and describe flat
    // 64-bit ring-0 code and data segments and a valid TSS.
    unsafe {
        CS::set_reg(selectors.kernel_code);
        SS::set_reg(selectors.kernel_data);
        DS::set_reg(selectors.kernel_data);
        ES::set_reg(selectors.kernel_data);
        load_tss(*tss_selector);
    }
    *selectors
}
