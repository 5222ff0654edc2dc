//! The policy file: one TOML file that describes the whole system.
//!
//! It names every task (its binary, kind, priority and quotas), the boot
//! endpoints and notifications, and the capabilities each task receives,
//! with the server operations a client may invoke. Parsing refuses unknown
//! fields; checking reports every problem at once, each with the file and
//! line and the names involved. `docs/policy.md` is the reference.

mod assertions;
mod check;
pub mod devices;
mod grants;
pub mod machine;
pub mod protocols;
mod raw;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use capabilities::config::DeviceMatch;
pub use capabilities::manifest::BootObject;
use capabilities::protocol::Protocol;

pub use check::parse;

/// The policy format version this tool reads.
pub const FORMAT_VERSION: u32 = 1;

/// Highest task priority (as the kernel defines it).
pub const MAX_PRIORITY: u8 = 31;

/// Largest stack, in pages (as the kernel defines it).
pub const MAX_STACK_PAGES: u16 = 2048;

/// What a task is, which decides what it may be given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskKind {
    /// A trusted server of the system (IOMMU, PCI, test tasks): may hold
    /// hardware capabilities.
    SystemServer,
    /// A trusted driver server: reaches its device through the servers.
    Driver,
    /// An untrusted user task.
    User,
}

impl TaskKind {
    /// Its spelling in the policy.
    pub fn name(self) -> &'static str {
        match self {
            TaskKind::SystemServer => "system-server",
            TaskKind::Driver => "driver",
            TaskKind::User => "user",
        }
    }
}

/// A boot endpoint.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// Its name.
    pub name: String,
    /// Index of the task that receives on it.
    pub server: usize,
    /// Its protocol, whose operations clients are granted.
    pub protocol: Option<&'static Protocol>,
    /// IOMMU protocol: pages one DMA handle or address space may map.
    pub mapping_quota_pages: Option<u32>,
    /// IOMMU protocol: address spaces one user task may create.
    pub address_space_quota: Option<u16>,
    /// IOMMU protocol: table pages one user task's address spaces may hold.
    pub table_page_quota: Option<u32>,
    /// IOMMU protocol: how the server invalidates the unit's caches.
    pub invalidation: Option<capabilities::config::InvalidationMode>,
    /// IOMMU protocol: interrupt-remapping entries one device may have.
    pub interrupt_entries_per_device: Option<u16>,
    /// IOMMU protocol: user tasks may own groups on a machine that cannot
    /// remap interrupts.
    pub assignment_without_interrupt_remapping: bool,
    /// PCI protocol: user tasks may acquire functions that have no reset.
    pub assignment_without_reset: bool,
}

/// A device rule: the driver bound to it, and the user task that may own it.
#[derive(Clone, Debug)]
pub struct Device {
    /// The rule's name.
    pub name: String,
    /// Line of its table.
    pub line: usize,
    /// Which functions it covers.
    pub selector: DeviceMatch,
    /// The driver task bound to them, and whether that task does DMA.
    pub driver: Option<(usize, bool)>,
    /// The user task that may own their groups.
    pub user: Option<usize>,
    /// Why the user task may own it though firmware does DMA to it (a
    /// reserved memory region).
    pub waiver: Option<String>,
}

/// One capability a task receives at boot.
#[derive(Clone, Debug)]
pub struct Grant {
    /// The name the task's binary knows it by.
    pub name: String,
    /// Line in the policy file.
    pub line: usize,
    /// The object.
    pub object: BootObject,
    /// `abi::rights` bits.
    pub rights: u32,
    /// Badge (0: unbadged).
    pub badge: u64,
}

/// A checked task declaration.
#[derive(Clone, Debug)]
pub struct Task {
    /// Name in logs and reports.
    pub name: String,
    /// Bare-metal crate whose ELF it runs.
    pub binary: String,
    /// What it is.
    pub kind: TaskKind,
    /// A driver that does DMA: it claims its group's default domain at
    /// probe, so no user task may own that group. Drivers do unless their
    /// table says `dma = false` (stubs, bridges); other kinds never count.
    pub dma: bool,
    /// Scheduling priority (larger runs first).
    pub priority: u8,
    /// Pages of memory it may use in all.
    pub memory_pages: u32,
    /// Stack pages.
    pub stack_pages: u16,
    /// Kernel objects it may create.
    pub objects: u16,
    /// Capabilities it receives, in declaration order (their slots).
    pub caps: Vec<Grant>,
    /// Named numbers it reads from its boot information.
    pub parameters: Vec<(String, u64)>,
}

/// An isolation assertion, checked.
#[derive(Clone, Debug)]
pub struct Assertion {
    /// Its name.
    pub name: String,
    /// Line of its table.
    pub line: usize,
    /// Where it applies.
    pub at: capabilities::config::AssertedAt,
    /// The identity the device must have.
    pub ids: (u16, u16),
    /// Why.
    pub reason: String,
}

/// A checked policy.
#[derive(Clone, Debug)]
pub struct Policy {
    /// The file it came from.
    pub path: PathBuf,
    /// What the system is.
    pub description: String,
    /// Tasks in declaration order (their manifest order).
    pub tasks: Vec<Task>,
    /// Boot endpoints.
    pub endpoints: Vec<Endpoint>,
    /// Boot notifications, by name.
    pub notifications: Vec<String>,
    /// Index of the task whose exit ends the system.
    pub init: Option<usize>,
    /// Device bindings and assignments.
    pub devices: Vec<Device>,
    /// Isolation assertions.
    pub assertions: Vec<Assertion>,
    /// What is allowed but deserves a reader's attention (each assertion
    /// and waiver), as `file:line: warning: ...`.
    pub warnings: Vec<Problem>,
}

impl Policy {
    /// The task that serves the endpoint speaking `protocol`, if any.
    pub fn server_of(&self, protocol: &str) -> Option<usize> {
        self.endpoints.iter().find(|e| e.protocol.is_some_and(|p| p.name == protocol)).map(|e| e.server)
    }
}

/// One thing wrong with a policy, located in its file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong, naming the items involved.
    pub message: String,
}

/// Every problem found in one policy file.
#[derive(Debug)]
pub struct Problems {
    /// The file.
    pub path: PathBuf,
    /// The problems, in the order found.
    pub problems: Vec<Problem>,
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, problem) in self.problems.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "{}:{}: {}", self.path.display(), problem.line, problem.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

/// Reads and checks the policy at `path`; `binaries` are the task crates
/// that exist.
pub fn load(path: &Path, binaries: &[String]) -> Result<Policy> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read policy {}", path.display()))?;
    parse(path, &text, binaries).map_err(anyhow::Error::from)
}

#[cfg(test)]
mod tests;
