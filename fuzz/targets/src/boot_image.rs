//! The kernel's boot-image decoder, and loading what it accepts.

use capabilities::abi::PAGE_SIZE;
use capabilities::manifest::{MAX_TASKS, VERSION};
use kernel::image::{BootImage, MAX_PRIORITY, MAX_STACK_PAGES};

use crate::sim::Sim;

/// Frames of the machine images are loaded on: enough for a few tasks,
/// few enough that large quotas run the machine out of memory.
const MACHINE_PAGES: usize = 512;

/// Images with more tasks than this are decoded but not loaded (speed).
const MAX_LOADED_TASKS: u16 = 8;

/// `boot-image`: decodes an image and every task record, checks that what
/// the decoder accepts obeys the rules it promises, then loads it on a
/// simulated machine, ends every task and checks all memory came back.
pub fn boot_image(data: &[u8]) {
    let Ok(image) = BootImage::parse(data) else { return };
    let header = image.header().clone();
    assert_eq!(header.version, VERSION);
    assert!(usize::from(header.task_count) <= MAX_TASKS);
    let mut all_valid = true;
    for task in image.tasks() {
        let Ok(task) = task else {
            all_valid = false;
            continue;
        };
        assert!(!task.name.is_empty());
        assert!(task.priority <= MAX_PRIORITY);
        assert!((1..=MAX_STACK_PAGES).contains(&task.stack_pages));
        let mut entry_found = false;
        for segment in &task.segments {
            assert!(segment.vaddr.is_multiple_of(PAGE_SIZE));
            assert!(segment.file_size <= segment.mem_size && segment.mem_size > 0);
            assert!(u64::from(segment.offset) + u64::from(segment.file_size) <= data.len() as u64);
            let end = segment.vaddr + u64::from(segment.mem_size);
            entry_found |= segment.flags.execute && (segment.vaddr..end).contains(&task.entry);
        }
        assert!(entry_found, "accepted a task whose entry is not in an executable segment");
    }
    if !all_valid || header.task_count > MAX_LOADED_TASKS {
        return;
    }
    let mut sim = Sim::new(MACHINE_PAGES);
    let loaded = sim.load(data).expect("an image whose every task record checks out loads");
    assert!(loaded <= usize::from(header.task_count));
    sim.check();
    if sim.wind_down() {
        assert_eq!(
            sim.kernel.frames().free_frames(),
            sim.initial_free,
            "every frame came back after the last task ended"
        );
    }
}
