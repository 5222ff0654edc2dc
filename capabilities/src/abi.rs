//! The system-call ABI: numbers, registers, rights and the task layout.
//!
//! # Calling convention
//!
//! A task enters the kernel with the `syscall` instruction. The call number is
//! in `rax`; arguments are in `rdi`, `rsi`, `rdx`, `r10`, `r8`, `r9` in that
//! order. On return `rax` holds `0` for success or an [`ErrorCode`] value, and
//! the call's results are in `rdi`, `rsi` and `rdx`. The kernel clobbers `rcx`,
//! `r11` and every vector register (the user stub declares them clobbered, so
//! the kernel need not save them on this path); every other register is kept.
//!
//! Capabilities are named by *slot* indices into the caller's capability
//! space; an index out of range or an empty slot is
//! [`ErrorCode::InvalidCapability`]. The table of calls with their
//! arguments, results and errors is `docs/syscalls.md`.
//!
//! [`ErrorCode`]: crate::ErrorCode
//! [`ErrorCode::InvalidCapability`]: crate::ErrorCode::InvalidCapability

macro_rules! syscalls {
    ($( $(#[doc = $doc:literal])* $name:ident = $number:literal, )*) => {
        /// System-call numbers (`rax` on entry).
        #[repr(u64)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[cfg_attr(feature = "defmt", derive(defmt::Format))]
        pub enum Syscall {
            $( $(#[doc = $doc])* $name = $number, )*
        }

        impl Syscall {
            /// Every call, in numeric order.
            pub const ALL: &'static [Syscall] = &[$(Syscall::$name),*];

            /// Decodes a call number, or `None` for a number no call has.
            pub const fn from_number(number: u64) -> Option<Self> {
                match number {
                    $( $number => Some(Self::$name), )*
                    _ => None,
                }
            }
        }
    };
}

syscalls! {
    /// Write one encoded `defmt` frame to the log: `rdi` address, `rsi`
    /// length (at most [`LOG_FRAME_MAX`]). The kernel tags it with the caller.
    LogWrite = 0,
    /// End the calling task: `rdi` exit code. Never returns.
    Exit = 1,
    /// Give up the rest of the time slice.
    Yield = 2,
    /// Send the IPC buffer's message on endpoint `rdi` (SEND right): `rsi`
    /// length, `rdx` flags ([`ipc::NONBLOCK`]), `r10` timeout in µs (0:
    /// none). Blocks until a receiver takes it.
    Send = 3,
    /// Receive on endpoint `rdi` (RECEIVE right): `rsi` flags, `rdx`
    /// timeout in µs. Returns badge, length and [`ipc::Info`].
    Recv = 4,
    /// Send on endpoint `rdi` and wait for the reply: `rsi` length. The
    /// receiver gets a one-shot reply capability in [`slots::REPLY`]; the
    /// reply carries capabilities only if the endpoint capability has
    /// GRANT.
    Call = 5,
    /// Answer with the reply capability in slot `rdi`: `rsi` length.
    Reply = 6,
    /// [`Syscall::Reply`] on slot `rdi` with length `rsi`, then
    /// [`Syscall::Recv`] on endpoint `rdx` with flags `r10`, timeout `r8`.
    ReplyRecv = 7,
    /// Set the bits of the notification capability `rdi`'s badge.
    Signal = 8,
    /// Wait on notification `rdi` until a bit is set: `rsi` flags, `rdx`
    /// timeout in µs. Returns and clears the bits.
    Wait = 9,
    /// Copy capability `rdi` to empty slot `rsi`, keeping only rights `rdx`.
    CapCopy = 10,
    /// Mint capability `rdi` into empty slot `rsi` with rights `rdx` and
    /// badge `r10` (needs MINT; a badged capability keeps its badge).
    CapMint = 11,
    /// Move capability `rdi` to empty slot `rsi`.
    CapMove = 12,
    /// Delete capability `rdi` (its derived copies are kept).
    CapDelete = 13,
    /// Delete every capability derived from `rdi`, in every task.
    CapRevoke = 14,
    /// Describe capability `rdi`: kind and rights, badge, extent.
    CapInfo = 15,
    /// Create an endpoint into empty slot `rdi` (object quota).
    EndpointCreate = 16,
    /// Create a notification into empty slot `rdi` (object quota).
    NotificationCreate = 17,
    /// Allocate `rsi` zeroed pages (a power of two, at most 512) of
    /// physically contiguous memory as a frame into slot `rdi` (READ and
    /// WRITE: memory a task allocates is never executable).
    FrameAlloc = 18,
    /// Map memory capability `rsi` (frame or device memory) into address
    /// space `rdi` at `rdx` with access [`rights::WRITE`] or
    /// [`rights::EXECUTE`] (never both) taken from `r10`. A capability maps
    /// once; copy it to map again.
    Map = 19,
    /// Remove the mapping made with memory capability `rdi`.
    Unmap = 20,
    /// Route interrupt capability `rdi` to notification `rsi`, setting
    /// bits `rdx` when it fires.
    IrqBind = 21,
    /// Acknowledge interrupt capability `rdi`: it may fire again.
    IrqAck = 22,
    /// Read port `rsi` of I/O-port capability `rdi`, `rdx` bytes wide.
    PortIn = 23,
    /// Write `r10` to port `rsi` of I/O-port capability `rdi`, `rdx` bytes wide.
    PortOut = 24,
    /// Signal notification `rsi` with bits `rdx` when task capability `rdi`
    /// (WATCH right) dies.
    TaskWatch = 25,
    /// State of task capability `rdi`: see [`task_state`].
    TaskInfo = 26,
    /// Bind notification `rdi` to the caller: a receive also returns when
    /// it is signalled (flag [`ipc::Info::NOTIFICATION`]).
    NotificationBind = 27,
    /// Copy the part `[rdx, rdx + r10)` pages of memory capability `rdi`
    /// into empty slot `rsi` (device memory and I/O ports: the part is in
    /// ports).
    CapSplit = 28,
    /// Pin frame `rsi` for device access through control capability `rdi`
    /// (DMA right): returns a pin handle, the physical address and pages.
    /// The pin is derived from the frame capability, like a copy: revoking
    /// that capability or one it came from revokes the pin (see
    /// [`Syscall::DmaWatch`]). The frame's memory stays allocated until
    /// unpinned, whatever happens to its capabilities, a revoked pin's
    /// too. A frame's pins belong to the task that made them; another
    /// task's pin of it is `Busy`.
    DmaPin = 29,
    /// Release pin handle `rsi`, one of the caller's pins (live or
    /// revoked), through control capability `rdi`.
    DmaUnpin = 30,
    /// Allocate an MSI vector through control capability `rdi` (IRQ right)
    /// as an interrupt capability into slot `rsi`; returns the vector.
    IrqAllocMsi = 31,
    /// Microseconds since the machine started.
    Time = 32,
    /// Create a device-memory capability in empty slot `rsi` for `r10`
    /// pages at physical `rdx` through control capability `rdi` (DEVICE
    /// right); the range may not touch RAM or devices the kernel or a boot
    /// grant holds.
    DeviceMemoryCreate = 33,
    /// `TaskKill(task)`: ends the task the capability names (needs the
    /// KILL right), as a fault would: everything it held is released and
    /// its watchers are told. A supervisor's tool, granted by the policy.
    TaskKill = 34,
    /// Describe the `rsi`th IO APIC line the kernel routes, through
    /// remapping unit `rdi` (the device-memory capability of a DMAR
    /// unit's registers): returns `gsi | level << 8 | remapped << 9`,
    /// `vector | destination APIC id << 8`, and the interrupt-remapping
    /// handle it goes through (`u64::MAX`: compatibility format).
    /// `NotFound` past the last line.
    IoApicLine = 35,
    /// Route IO APIC line `rsi` through interrupt-remapping entry `rdx`
    /// (at most 0xffff) in remappable format, through remapping unit
    /// `rdi`; the line keeps its mask. The entry must deliver the line's
    /// vector with its trigger mode.
    IoApicRemap = 36,
    /// Through control capability `rdi` (DMA right): set bits `rdx` in
    /// notification `rsi` (SEND right) whenever one of the caller's pins
    /// is revoked, and at once if one is revoked and not yet reported.
    /// Replaces the caller's previous watch; deleting the notification
    /// capability ends it.
    DmaWatch = 37,
    /// Through control capability `rdi` (DMA right): one of the caller's
    /// revoked pins not reported before: its handle, physical address and
    /// pages. `WouldBlock` when there is none. The pin still holds the
    /// frame's memory: the caller unmaps it from every device, then
    /// releases it with [`Syscall::DmaUnpin`].
    DmaRevoked = 38,
    /// Through control capability `rdi` (ACCOUNT right): the kernel's
    /// accounting figures. `rsi` [`accounting::MACHINE`]: free frames,
    /// DMA pins (live or revoked, not yet released) and capabilities in
    /// tasks' slots; `rsi` a task index: that task's object-quota use,
    /// memory-quota use in pages and capabilities held. `NotFound` past
    /// the last task. See [`accounting`].
    ///
    /// [`accounting`]: crate::accounting
    /// [`accounting::MACHINE`]: crate::accounting::MACHINE
    Accounting = 39,
}

/// Largest `defmt` frame a task may hand to [`Syscall::LogWrite`].
pub const LOG_FRAME_MAX: usize = 512;

/// Size of a page, the unit of every mapping.
pub const PAGE_SIZE: u64 = 4096;

/// Slots in every task's capability space.
pub const CSPACE_SLOTS: u32 = 128;

/// Capabilities installed in every task at fixed slots.
pub mod slots {
    /// Never holds a capability, so a zero slot is always an error.
    pub const NULL: u32 = 0;
    /// The task itself (WATCH right).
    pub const SELF_TASK: u32 = 1;
    /// The task's own address space (MAP right).
    pub const SELF_SPACE: u32 = 2;
    /// Where a receive puts the reply capability of a call.
    pub const REPLY: u32 = 3;
    /// First slot the policy's capabilities are installed at.
    pub const FIRST_POLICY: u32 = 8;
}

/// Rights bits of a capability. Which apply depends on its kind; a right
/// that does not apply is ignored.
pub mod rights {
    /// Endpoint: send and call. Notification: signal. I/O ports: write.
    pub const SEND: u32 = 1 << 0;
    /// Endpoint: receive. Notification: wait. I/O ports: read.
    pub const RECEIVE: u32 = 1 << 1;
    /// Endpoint: capabilities may be transferred in messages.
    pub const GRANT: u32 = 1 << 2;
    /// Mint copies with a badge (only unbadged capabilities can be re-badged).
    pub const MINT: u32 = 1 << 3;
    /// Memory: map readable.
    pub const READ: u32 = 1 << 4;
    /// Memory: map writable.
    pub const WRITE: u32 = 1 << 5;
    /// Memory: map executable.
    pub const EXECUTE: u32 = 1 << 6;
    /// Task: learn of its death.
    pub const WATCH: u32 = 1 << 7;
    /// Address space: map and unmap.
    pub const MAP: u32 = 1 << 8;
    /// Control: pin frames and learn their physical address.
    pub const DMA: u32 = 1 << 9;
    /// Control: allocate MSI vectors.
    pub const IRQ: u32 = 1 << 10;
    /// Interrupt: bind and acknowledge.
    pub const ACK: u32 = 1 << 11;
    /// Control: create device-memory capabilities for ranges that are
    /// neither RAM nor the kernel's or another boot grant's devices.
    pub const DEVICE: u32 = 1 << 12;
    /// Task: end it.
    pub const KILL: u32 = 1 << 13;
    /// Control: read the kernel's accounting figures, the machine's and
    /// every task's (`Accounting`). It changes nothing, but shows what
    /// every task holds, so the policy grants it on its own.
    pub const ACCOUNT: u32 = 1 << 14;
    /// Every right.
    pub const ALL: u32 = (1 << 15) - 1;
}

/// Kinds of kernel object a capability can name ([`Syscall::CapInfo`]).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ObjectKind {
    /// A task.
    Task = 1,
    /// A task's address space.
    AddressSpace = 2,
    /// An IPC endpoint.
    Endpoint = 3,
    /// A notification word.
    Notification = 4,
    /// Physically contiguous RAM.
    Frame = 5,
    /// A range of device registers (MMIO), mapped uncached.
    DeviceMemory = 6,
    /// A range of I/O ports.
    IoPorts = 7,
    /// An interrupt source.
    Interrupt = 8,
    /// A one-shot right to answer a call.
    Reply = 9,
    /// Privileged operations (DMA pinning, MSI allocation).
    Control = 10,
}

impl ObjectKind {
    /// Decodes a kind number.
    pub const fn from_number(number: u64) -> Option<Self> {
        Some(match number {
            1 => Self::Task,
            2 => Self::AddressSpace,
            3 => Self::Endpoint,
            4 => Self::Notification,
            5 => Self::Frame,
            6 => Self::DeviceMemory,
            7 => Self::IoPorts,
            8 => Self::Interrupt,
            9 => Self::Reply,
            10 => Self::Control,
            _ => return None,
        })
    }
}

/// What [`Syscall::TaskInfo`] returns in `rdi`; `rsi` and `rdx` carry the
/// exit code, or the fault vector and address.
pub mod task_state {
    /// Running or blocked.
    pub const ALIVE: u64 = 0;
    /// Ended by exit; `rsi` is the code.
    pub const EXITED: u64 = 1;
    /// Killed by a fault; `rsi` is the vector, `rdx` the address.
    pub const KILLED: u64 = 2;
    /// Ended by another task's `TaskKill`; `rsi` is that task's index.
    pub const TERMINATED: u64 = 3;
}

/// The IPC buffer and message conventions.
pub mod ipc {
    /// Flag: fail with `WouldBlock` instead of blocking.
    pub const NONBLOCK: u64 = 1 << 0;

    /// Most capabilities transferred with one message.
    pub const MAX_CAPS: usize = 4;

    /// Offset of the message bytes in the IPC buffer page.
    pub const DATA_OFFSET: usize = 64;

    /// Longest message, in bytes.
    pub const MSG_MAX: usize = 4096 - DATA_OFFSET;

    /// Buffer header, at the start of the page (little-endian `u32`s).
    pub mod header {
        /// Number of capabilities to send with the next message.
        pub const SEND_COUNT: usize = 0x00;
        /// Their slots, [`super::MAX_CAPS`] entries.
        pub const SEND_SLOTS: usize = 0x04;
        /// First slot of the window received capabilities go to.
        pub const WINDOW_BASE: usize = 0x14;
        /// Slots in the receive window (0: accept none).
        pub const WINDOW_LEN: usize = 0x18;
        /// Number of capabilities the last receive delivered (kernel-written).
        pub const RECEIVED_COUNT: usize = 0x1c;
        /// Their slots, [`super::MAX_CAPS`] entries (kernel-written).
        pub const RECEIVED_SLOTS: usize = 0x20;
    }

    /// The `rdx` result of a receive.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Info(pub u64);

    impl Info {
        /// The receive returned notification bits (in the badge) rather
        /// than a message.
        pub const NOTIFICATION: u64 = 1 << 8;

        /// Capabilities received with the message.
        pub const fn caps(self) -> usize {
            (self.0 & 0xff) as usize
        }

        /// Whether this is a notification rather than a message.
        pub const fn is_notification(self) -> bool {
            self.0 & Self::NOTIFICATION != 0
        }
    }
}

/// Fixed places in every task's address space.
///
/// The build tool links task images at [`layout::IMAGE_BASE`]; the kernel maps
/// the stack, the IPC buffer and the boot-information page at the addresses
/// below when it creates the task. Page 0 is never mapped, so a null
/// dereference faults.
pub mod layout {
    /// Where task images are linked (the task linker script uses this value).
    pub const IMAGE_BASE: u64 = 0x0040_0000;
    /// One past the highest stack address; the stack grows down from here and
    /// the page above it stays unmapped as a guard.
    pub const STACK_TOP: u64 = 0x0ff0_0000;
    /// The task's IPC buffer page.
    pub const IPC_BUFFER: u64 = 0x1000_0000;
    /// The read-only boot-information page: a little-endian `u32` length,
    /// then the task's configuration blob (`TaskImage::config`).
    pub const BOOT_INFO: u64 = 0x1000_2000;
    /// Lowest address a task may choose for its own mappings.
    pub const USER_MAP_BASE: u64 = 0x2000_0000;
    /// One past the highest user address (the canonical lower half).
    pub const USER_END: u64 = 0x0000_8000_0000_0000;
    /// One past the highest address a task may map: the top page of the
    /// lower half stays unmapped, so the address after any instruction a
    /// task runs (where a `syscall` returns to) is canonical.
    pub const USER_MAP_END: u64 = USER_END - super::PAGE_SIZE;
}

// The IPC buffer header's fields do not overlap each other or the data.
const _: () = {
    assert!(ipc::header::RECEIVED_SLOTS + 4 * ipc::MAX_CAPS <= ipc::DATA_OFFSET);
    assert!(ipc::header::SEND_SLOTS + 4 * ipc::MAX_CAPS <= ipc::header::WINDOW_BASE);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_numbers_are_dense_and_round_trip() {
        for (index, call) in Syscall::ALL.iter().enumerate() {
            assert_eq!(*call as u64, index as u64);
            assert_eq!(Syscall::from_number(index as u64), Some(*call));
        }
        assert_eq!(Syscall::from_number(Syscall::ALL.len() as u64), None);
    }
}
