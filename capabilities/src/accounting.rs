//! The kernel's accounting figures (`Accounting`), and what a death changes in them.
//!
//! A test takes every figure when it starts ([`Figures`]), runs, lets the
//! deaths and reclaims it caused finish, and takes them again. Nothing
//! may then differ from the start but what [`Figures::after_deaths`] says
//! the kernel gives back when a task dies, and that exactly: a frame, a
//! pin, a capability or an object left behind by anyone shows as a
//! [`Difference`].

use heapless::Vec;

use crate::manifest::MAX_TASKS;

/// The `Accounting` scope that asks for the machine's figures; any other
/// value names a task by its index.
pub const MACHINE: u64 = u64::MAX;

/// What the whole machine has in use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct MachineFigures {
    /// Frames of RAM the kernel has not handed out.
    pub free_frames: u64,
    /// DMA pins, live or revoked, that their pinners have not released.
    pub pins: u64,
    /// Capabilities in tasks' slots (the pins' own tree nodes aside).
    pub capabilities: u64,
}

impl MachineFigures {
    /// The figures as `Accounting` returns them (`rdi`, `rsi`, `rdx`).
    pub const fn to_registers(self) -> [u64; 3] {
        [self.free_frames, self.pins, self.capabilities]
    }

    /// The figures from `Accounting`'s result registers.
    pub const fn from_registers([free_frames, pins, capabilities]: [u64; 3]) -> Self {
        Self { free_frames, pins, capabilities }
    }
}

/// What one task has in use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TaskFigures {
    /// Kernel objects charged to its object quota (endpoints,
    /// notifications and frames it created).
    pub objects: u64,
    /// Pages charged to its memory quota: image, stack, IPC buffer,
    /// boot-information page, page tables and the frames it allocated.
    pub memory_pages: u64,
    /// Capabilities in its slots.
    pub capabilities: u64,
}

impl TaskFigures {
    /// The figures as `Accounting` returns them (`rdi`, `rsi`, `rdx`).
    pub const fn to_registers(self) -> [u64; 3] {
        [self.objects, self.memory_pages, self.capabilities]
    }

    /// The figures from `Accounting`'s result registers.
    pub const fn from_registers([objects, memory_pages, capabilities]: [u64; 3]) -> Self {
        Self { objects, memory_pages, capabilities }
    }
}

/// Every figure at one moment: the machine's and each task's, by index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Figures {
    /// The machine's.
    pub machine: MachineFigures,
    /// Each task's, by task index.
    pub tasks: Vec<TaskFigures, MAX_TASKS>,
}

impl Figures {
    /// The figures to expect once every task in `dead` (task indices) has
    /// died and been reaped, if nothing it held stays behind: each holds
    /// no object, page or capability any more, the machine has its pages
    /// free again and its capabilities fewer, and every other figure is
    /// as it was. A task dead already changes nothing.
    pub fn after_deaths(&self, dead: &[usize]) -> Self {
        let mut expected = self.clone();
        for &index in dead {
            let Some(task) = expected.tasks.get_mut(index) else { continue };
            let machine = &mut expected.machine;
            machine.free_frames = machine.free_frames.saturating_add(task.memory_pages);
            machine.capabilities = machine.capabilities.saturating_sub(task.capabilities);
            *task = TaskFigures::default();
        }
        expected
    }

    /// These figures, but with `pages` more pages charged to task `task`,
    /// taken from the free frames: what a task keeps on purpose, such as
    /// the page tables a mapping needed, which stay with its address
    /// space after the unmap.
    pub fn with_pages_kept(&self, task: usize, pages: u64) -> Self {
        let mut expected = self.clone();
        if let Some(figures) = expected.tasks.get_mut(task) {
            figures.memory_pages = figures.memory_pages.saturating_add(pages);
            expected.machine.free_frames = expected.machine.free_frames.saturating_sub(pages);
        }
        expected
    }

    /// Every figure of these that differs from `expected`'s.
    pub fn differences<'a>(&'a self, expected: &'a Self) -> impl Iterator<Item = Difference> + 'a {
        let (found, wanted) = (self.machine, expected.machine);
        let machine = [
            (Figure::FreeFrames, found.free_frames, wanted.free_frames),
            (Figure::Pins, found.pins, wanted.pins),
            (Figure::Capabilities, found.capabilities, wanted.capabilities),
            (Figure::Tasks, self.tasks.len() as u64, expected.tasks.len() as u64),
        ];
        let tasks = self.tasks.iter().zip(&expected.tasks).enumerate().flat_map(|(index, (found, wanted))| {
            let index = index as u8;
            [
                (Figure::Objects(index), found.objects, wanted.objects),
                (Figure::MemoryPages(index), found.memory_pages, wanted.memory_pages),
                (Figure::TaskCapabilities(index), found.capabilities, wanted.capabilities),
            ]
        });
        machine
            .into_iter()
            .chain(tasks)
            .filter(|(_, found, expected)| found != expected)
            .map(|(figure, found, expected)| Difference { figure, found, expected })
    }
}

/// One accounting figure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Figure {
    /// The machine's free frames.
    FreeFrames,
    /// The machine's DMA pins.
    Pins,
    /// The machine's capabilities.
    Capabilities,
    /// How many tasks there are.
    Tasks,
    /// The objects of the task with this index.
    Objects(u8),
    /// The memory pages of the task with this index.
    MemoryPages(u8),
    /// The capabilities of the task with this index.
    TaskCapabilities(u8),
}

/// A figure that is not what it should be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Difference {
    /// Which.
    pub figure: Figure,
    /// Its value.
    pub found: u64,
    /// What it should be.
    pub expected: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(free_frames: u64, tasks: &[[u64; 3]]) -> Figures {
        let capabilities = tasks.iter().map(|task| task[2]).sum();
        Figures {
            machine: MachineFigures { free_frames, pins: 2, capabilities },
            tasks: tasks.iter().map(|&task| TaskFigures::from_registers(task)).collect(),
        }
    }

    #[test]
    fn a_death_gives_back_the_dead_tasks_pages_and_capabilities_and_nothing_else() {
        let start = figures(1000, &[[3, 200, 12], [2, 48, 9], [1, 30, 5]]);
        let expected = start.after_deaths(&[1]);
        assert_eq!(expected.machine.capabilities, 17, "the dead task's 9 capabilities are gone");
        assert_eq!(expected.machine.free_frames, 1048, "the dead task's 48 pages are free");
        assert_eq!(expected.machine.pins, 2, "a death releases no pin: only its pinner does");
        assert_eq!(expected.tasks[1], TaskFigures::default());
        assert_eq!((expected.tasks[0], expected.tasks[2]), (start.tasks[0], start.tasks[2]));
        assert_eq!(start.after_deaths(&[]), start);
        assert_eq!(expected.after_deaths(&[1, 7]), expected, "a task dead already, or none, changes nothing");
    }

    #[test]
    fn one_frame_pin_capability_or_object_left_behind_is_a_difference() {
        let start = figures(1000, &[[3, 200, 12], [2, 48, 9]]);
        let expected = start.after_deaths(&[1]);
        assert_eq!(expected.differences(&expected).count(), 0);
        let mut leaked = expected.clone();
        leaked.machine.free_frames -= 1;
        leaked.tasks[1].memory_pages = 1;
        let found: std::vec::Vec<Difference> = leaked.differences(&expected).collect();
        assert_eq!(
            found,
            [
                Difference { figure: Figure::FreeFrames, found: 1047, expected: 1048 },
                Difference { figure: Figure::MemoryPages(1), found: 1, expected: 0 },
            ]
        );
        let mut pinned = expected.clone();
        pinned.machine.pins += 1;
        pinned.tasks[0].objects += 1;
        pinned.tasks[0].capabilities += 1;
        let figures: std::vec::Vec<Figure> = pinned.differences(&expected).map(|d| d.figure).collect();
        assert_eq!(figures, [Figure::Pins, Figure::Objects(0), Figure::TaskCapabilities(0)]);
        let mut fewer = expected.clone();
        fewer.tasks.pop();
        assert_eq!(fewer.differences(&expected).map(|d| d.figure).collect::<std::vec::Vec<_>>(), [Figure::Tasks]);
    }

    #[test]
    fn pages_a_task_keeps_come_from_the_free_frames() {
        let start = figures(1000, &[[3, 200, 12], [2, 48, 9]]);
        let kept = start.with_pages_kept(0, 1);
        assert_eq!((kept.tasks[0].memory_pages, kept.machine.free_frames), (201, 999));
        assert_eq!(kept.tasks[1], start.tasks[1]);
        assert_eq!(start.with_pages_kept(5, 1), start, "no such task");
        let both = start.after_deaths(&[1]).with_pages_kept(0, 1);
        assert_eq!(both.machine.free_frames, 1047);
    }

    #[test]
    fn figures_round_trip_through_the_result_registers() {
        let machine = MachineFigures { free_frames: 7, pins: 8, capabilities: 9 };
        assert_eq!(MachineFigures::from_registers(machine.to_registers()), machine);
        let task = TaskFigures { objects: 1, memory_pages: 2, capabilities: 3 };
        assert_eq!(TaskFigures::from_registers(task.to_registers()), task);
        assert_eq!(task.to_registers(), [1, 2, 3], "objects, memory pages, capabilities: the documented order");
    }
}
