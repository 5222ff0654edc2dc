//! Decoding and checking the boot image the build tool wrote.
//!
//! The image is trusted to come from the build tool but is checked as if it
//! did not: every field that could send the loader out of bounds is
//! validated here, and a failure names the task and the field.

use capabilities::abi::{PAGE_SIZE, layout};
use capabilities::manifest::{MAGIC, MAX_TASKS, ManifestHeader, TaskImage, VERSION};

/// Highest task priority.
pub const MAX_PRIORITY: u8 = 31;

/// Largest stack a task may ask for, in pages.
pub const MAX_STACK_PAGES: u16 = 2048;

/// What is wrong with a boot image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ImageError {
    /// The image does not start with the manifest magic.
    BadMagic,
    /// The manifest header cannot be decoded.
    BadHeader,
    /// The manifest was written for another layout version.
    WrongVersion(u16),
    /// More tasks than the kernel can hold.
    TooManyTasks(u16),
    /// Task `index`'s record cannot be decoded.
    BadTaskRecord(u16),
    /// Task `index` has a bad field.
    BadTask(u16, TaskProblem),
}

/// The field of a task record that is wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum TaskProblem {
    /// The name is empty.
    EmptyName,
    /// Priority above [`MAX_PRIORITY`].
    Priority,
    /// Stack size zero or above [`MAX_STACK_PAGES`].
    StackSize,
    /// Segment `n` starts off a page boundary.
    SegmentMisaligned(u8),
    /// Segment `n` holds more file bytes than memory bytes, or none at all.
    SegmentSize(u8),
    /// Segment `n`'s bytes lie outside the image.
    SegmentOutsideImage(u8),
    /// Segment `n` lies outside the area for task images.
    SegmentOutsideImageArea(u8),
    /// Segment `n` overlaps an earlier segment.
    SegmentOverlap(u8),
    /// Segment `n` is both writable and executable (W^X).
    WritableAndExecutable(u8),
    /// The entry point is not in an executable segment.
    Entry,
}

/// A decoded boot image: its header, and the bytes to read tasks from.
pub struct BootImage<'a> {
    bytes: &'a [u8],
    header: ManifestHeader,
    tasks_at: usize,
}

impl<'a> BootImage<'a> {
    /// Decodes the image header; tasks are decoded by [`Self::tasks`].
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ImageError> {
        let rest = bytes.strip_prefix(&MAGIC[..]).ok_or(ImageError::BadMagic)?;
        let (header, after): (ManifestHeader, _) =
            postcard::take_from_bytes(rest).map_err(|_| ImageError::BadHeader)?;
        if header.version != VERSION {
            return Err(ImageError::WrongVersion(header.version));
        }
        if usize::from(header.task_count) > MAX_TASKS {
            return Err(ImageError::TooManyTasks(header.task_count));
        }
        Ok(Self { bytes, header, tasks_at: bytes.len() - after.len() })
    }

    /// The manifest header.
    pub fn header(&self) -> &ManifestHeader {
        &self.header
    }

    /// The whole image.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Decodes and checks the task records in order, one at a time.
    pub fn tasks(&self) -> impl Iterator<Item = Result<TaskImage, ImageError>> + '_ {
        let mut rest = &self.bytes[self.tasks_at..];
        (0..self.header.task_count).map(move |index| {
            let (task, after): (TaskImage, _) =
                postcard::take_from_bytes(rest).map_err(|_| ImageError::BadTaskRecord(index))?;
            rest = after;
            check_task(&task, self.bytes.len()).map_err(|problem| ImageError::BadTask(index, problem))?;
            Ok(task)
        })
    }
}

/// Lowest address of the stack area of a task with `stack_pages` pages,
/// including the guard page below it.
pub fn stack_floor(stack_pages: u16) -> u64 {
    layout::STACK_TOP - (u64::from(stack_pages) + 1) * PAGE_SIZE
}

fn check_task(task: &TaskImage, image_len: usize) -> Result<(), TaskProblem> {
    if task.name.is_empty() {
        return Err(TaskProblem::EmptyName);
    }
    if task.priority > MAX_PRIORITY {
        return Err(TaskProblem::Priority);
    }
    if task.stack_pages == 0 || task.stack_pages > MAX_STACK_PAGES {
        return Err(TaskProblem::StackSize);
    }
    let area_end = stack_floor(task.stack_pages);
    let mut entry_ok = false;
    for (n, segment) in task.segments.iter().enumerate() {
        let n = n as u8;
        if segment.vaddr % PAGE_SIZE != 0 {
            return Err(TaskProblem::SegmentMisaligned(n));
        }
        if segment.file_size > segment.mem_size || segment.mem_size == 0 {
            return Err(TaskProblem::SegmentSize(n));
        }
        if segment.flags.write && segment.flags.execute {
            return Err(TaskProblem::WritableAndExecutable(n));
        }
        let file_end = u64::from(segment.offset) + u64::from(segment.file_size);
        if file_end > image_len as u64 {
            return Err(TaskProblem::SegmentOutsideImage(n));
        }
        let end = segment.vaddr.saturating_add(u64::from(segment.mem_size));
        if segment.vaddr < layout::IMAGE_BASE || end > area_end {
            return Err(TaskProblem::SegmentOutsideImageArea(n));
        }
        let overlaps = task.segments[..usize::from(n)].iter().any(|earlier| {
            let earlier_end = (earlier.vaddr + u64::from(earlier.mem_size)).next_multiple_of(PAGE_SIZE);
            segment.vaddr < earlier_end && earlier.vaddr < end.next_multiple_of(PAGE_SIZE)
        });
        if overlaps {
            return Err(TaskProblem::SegmentOverlap(n));
        }
        if segment.flags.execute && (segment.vaddr..end).contains(&task.entry) {
            entry_ok = true;
        }
    }
    if !entry_ok {
        return Err(TaskProblem::Entry);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use capabilities::manifest::{Segment, SegmentFlags};

    fn segment(vaddr: u64, offset: u32, size: u32, execute: bool) -> Segment {
        Segment { vaddr, offset, file_size: size, mem_size: size, flags: SegmentFlags { write: !execute, execute } }
    }

    fn task(segments: &[Segment]) -> TaskImage {
        TaskImage {
            name: "hello".try_into().expect("short name"),
            priority: 3,
            entry: 0x40_0010,
            stack_pages: 4,
            memory_pages: 64,
            object_quota: 0,
            segments: segments.iter().copied().collect(),
            caps: Default::default(),
            config: Default::default(),
        }
    }

    fn image(tasks: &[TaskImage], version: u16) -> Vec<u8> {
        let mut bytes = MAGIC.to_vec();
        let header =
            ManifestHeader { version, task_count: tasks.len() as u16, init_task: None, endpoints: 0, notifications: 0 };
        bytes.extend(postcard::to_stdvec(&header).expect("encodes"));
        for task in tasks {
            bytes.extend(postcard::to_stdvec(task).expect("encodes"));
        }
        bytes.resize(0x3000, 0);
        bytes
    }

    fn first_task(bytes: &[u8]) -> Result<TaskImage, ImageError> {
        let image = BootImage::parse(bytes)?;
        image.tasks().next().expect("one task")
    }

    #[test]
    fn a_good_image_decodes_task_by_task() {
        let code = segment(0x40_0000, 0x1000, 0x800, true);
        let data = segment(0x40_1000, 0x2000, 0x100, false);
        let tasks = [task(&[code, data]), task(&[code])];
        let bytes = image(&tasks, VERSION);
        let image = BootImage::parse(&bytes).expect("valid");
        let decoded: Vec<_> = image.tasks().collect::<Result<_, _>>().expect("valid tasks");
        assert_eq!(decoded, tasks);
    }

    #[test]
    fn header_problems_are_named() {
        let good = image(&[], VERSION);
        assert!(matches!(BootImage::parse(&good[1..]), Err(ImageError::BadMagic)));
        assert!(matches!(BootImage::parse(&MAGIC), Err(ImageError::BadHeader)));
        assert!(matches!(BootImage::parse(&image(&[], 7)), Err(ImageError::WrongVersion(7))));
        let mut bytes = MAGIC.to_vec();
        bytes.extend(
            postcard::to_stdvec(&ManifestHeader {
                version: VERSION,
                task_count: 200,
                init_task: None,
                endpoints: 0,
                notifications: 0,
            })
            .expect("encodes"),
        );
        assert!(matches!(BootImage::parse(&bytes), Err(ImageError::TooManyTasks(200))));
        let mut truncated = image(&[task(&[segment(0x40_0000, 0, 16, true)])], VERSION);
        let header =
            ManifestHeader { version: VERSION, task_count: 1, init_task: None, endpoints: 0, notifications: 0 };
        truncated.truncate(MAGIC.len() + postcard::to_stdvec(&header).expect("encodes").len() + 3);
        assert_eq!(first_task(&truncated), Err(ImageError::BadTaskRecord(0)));
    }

    #[test]
    fn each_bad_field_is_reported() {
        let code = segment(0x40_0000, 0x1000, 0x800, true);
        let cases: Vec<(TaskImage, TaskProblem)> = vec![
            (TaskImage { name: Default::default(), ..task(&[code]) }, TaskProblem::EmptyName),
            (TaskImage { priority: 99, ..task(&[code]) }, TaskProblem::Priority),
            (TaskImage { stack_pages: 0, ..task(&[code]) }, TaskProblem::StackSize),
            (task(&[segment(0x40_0010, 0, 16, true)]), TaskProblem::SegmentMisaligned(0)),
            (task(&[Segment { mem_size: 8, ..code }]), TaskProblem::SegmentSize(0)),
            (task(&[segment(0x40_0000, 0x2ff0, 0x20, true)]), TaskProblem::SegmentOutsideImage(0)),
            (task(&[segment(0x1000, 0, 16, true)]), TaskProblem::SegmentOutsideImageArea(0)),
            (task(&[segment(0x0fef_f000, 0, 16, true)]), TaskProblem::SegmentOutsideImageArea(0)),
            (task(&[code, segment(0x40_0000, 0, 16, false)]), TaskProblem::SegmentOverlap(1)),
            (TaskImage { entry: 0x50_0000, ..task(&[code]) }, TaskProblem::Entry),
        ];
        for (bad, problem) in cases {
            assert_eq!(first_task(&image(&[bad], VERSION)), Err(ImageError::BadTask(0, problem)));
        }
    }

    #[test]
    fn a_segment_both_writable_and_executable_is_refused() {
        let rwx =
            Segment { flags: SegmentFlags { write: true, execute: true }, ..segment(0x40_0000, 0x1000, 0x800, true) };
        let refused = Err(ImageError::BadTask(0, TaskProblem::WritableAndExecutable(0)));
        assert_eq!(first_task(&image(&[task(&[rwx])], VERSION)), refused, "W^X");
    }
}
