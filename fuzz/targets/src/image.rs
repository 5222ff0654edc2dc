//! Boot images in the layout the loader expects, for the targets and their seeds.

use capabilities::abi::layout;
use capabilities::manifest::{MAGIC, MAX_SEGMENTS, ManifestHeader, Segment, SegmentFlags, TaskImage};
use heapless::Vec as Bounded;

/// Where the manifest ends and the code bytes begin.
const MANIFEST_BYTES: usize = 0x1000;

/// The segments of every task: a code page holding the first five code
/// bytes, then two data pages starting with the last three.
pub fn segments() -> Bounded<Segment, MAX_SEGMENTS> {
    let code = Segment {
        vaddr: layout::IMAGE_BASE,
        offset: MANIFEST_BYTES as u32,
        file_size: 5,
        mem_size: 0x1000,
        flags: SegmentFlags { write: false, execute: true },
    };
    let data = Segment {
        vaddr: layout::IMAGE_BASE + 0x1000,
        offset: MANIFEST_BYTES as u32 + 5,
        file_size: 3,
        mem_size: 0x2000,
        flags: SegmentFlags { write: true, execute: false },
    };
    [code, data].into_iter().collect()
}

/// The image of `tasks` under `header`: the manifest, cut or padded to a
/// page, then the code bytes every task's [`segments`] point into.
pub fn build(header: &ManifestHeader, tasks: &[TaskImage]) -> Vec<u8> {
    let mut bytes = MAGIC.to_vec();
    bytes.extend(postcard::to_stdvec(header).expect("a manifest header encodes"));
    for task in tasks {
        bytes.extend(postcard::to_stdvec(task).expect("a task record encodes"));
    }
    bytes.resize(MANIFEST_BYTES, 0);
    bytes.extend(b"CODE!DAT");
    bytes
}
