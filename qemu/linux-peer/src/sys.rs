//! The only module with `unsafe`: the system calls std lacks (VFIO ioctls, mmap, futex, fork) and the TSC.
//!
//! Each wrapper pairs one request with the argument type the kernel expects for it, so callers cannot get
//! the pointer/size contract wrong; everything above this module is safe code.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::AtomicU32;

use crate::abi::{self, DmaMap, DmaUnmap, GroupStatus};

/// Nanoseconds of `CLOCK_MONOTONIC`, the clock every figure is measured with.
pub fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// Nanoseconds of `CLOCK_BOOTTIME`: how long this kernel has been running (its own view of boot time).
pub fn boottime_ns() -> u64 {
    clock_ns(libc::CLOCK_BOOTTIME)
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut time = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `time` is a valid, writable `timespec` for the whole call; the clock ids are constants that
    // exist on every kernel this runs on, so the call cannot fail and leaves `time` filled.
    unsafe { libc::clock_gettime(clock, &mut time) };
    (time.tv_sec as u64).wrapping_mul(1_000_000_000).wrapping_add(time.tv_nsec as u64)
}

/// The time-stamp counter, read alongside the clock to give figures in cycles too.
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC reads a register and touches no memory; every x86-64 CPU has it and Linux leaves
    // CR4.TSD clear, so it does not fault in user mode.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Turns a `-1` return into the thread's `errno`.
fn check(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 { Err(io::Error::last_os_error()) } else { Ok(ret) }
}

/// An ioctl whose argument is a plain integer (no pointer for the kernel to follow).
fn ioctl_value(file: &File, request: u64, value: u64) -> io::Result<i32> {
    // SAFETY: `request` is one of the value-argument VFIO requests below, for which the kernel reads no
    // memory through the argument; the fd is owned by `file` and open for the whole call.
    let ret = unsafe { libc::ioctl(file.as_raw_fd(), request as libc::Ioctl, value as libc::c_ulong) };
    check(ret.into()).map(|ret| ret as i32)
}

/// `VFIO_GET_API_VERSION` on a container.
pub fn vfio_api_version(container: &File) -> io::Result<i32> {
    ioctl_value(container, abi::VFIO_GET_API_VERSION, 0)
}

/// `VFIO_CHECK_EXTENSION(iommu_type)` on a container: true if the backend is available.
pub fn vfio_check_extension(container: &File, iommu_type: u64) -> io::Result<bool> {
    ioctl_value(container, abi::VFIO_CHECK_EXTENSION, iommu_type).map(|ret| ret > 0)
}

/// `VFIO_SET_IOMMU(iommu_type)` on a container that already holds a group.
pub fn vfio_set_iommu(container: &File, iommu_type: u64) -> io::Result<()> {
    ioctl_value(container, abi::VFIO_SET_IOMMU, iommu_type).map(drop)
}

/// `VFIO_GROUP_GET_STATUS` on a group: its `VFIO_GROUP_FLAGS_*`.
pub fn vfio_group_status(group: &File) -> io::Result<u32> {
    let mut status = GroupStatus { argsz: size_of::<GroupStatus>() as u32, flags: 0 };
    // SAFETY: VFIO_GROUP_GET_STATUS reads and writes one `struct vfio_group_status`, which `GroupStatus`
    // mirrors (`repr(C)`, size checked by a test); the pointer is valid and exclusive for the call.
    let ret = unsafe { libc::ioctl(group.as_raw_fd(), abi::VFIO_GROUP_GET_STATUS as libc::Ioctl, &mut status) };
    check(ret.into()).map(|_| status.flags)
}

/// `VFIO_GROUP_SET_CONTAINER`: puts `group` into `container`.
pub fn vfio_group_set_container(group: &File, container: &File) -> io::Result<()> {
    let fd: i32 = container.as_raw_fd();
    // SAFETY: VFIO_GROUP_SET_CONTAINER reads one `__s32` (the container fd) through the pointer, which
    // points at a live `i32` for the call.
    let ret = unsafe { libc::ioctl(group.as_raw_fd(), abi::VFIO_GROUP_SET_CONTAINER as libc::Ioctl, &fd) };
    check(ret.into()).map(drop)
}

/// `VFIO_IOMMU_MAP_DMA`: maps `size` bytes of this process's memory at `vaddr` to `iova`, read and write.
///
/// The memory must stay mapped in this process until it is unmapped from the IOMMU (the kernel pins it).
pub fn vfio_map_dma(container: &File, vaddr: u64, iova: u64, size: u64) -> io::Result<()> {
    let map = DmaMap {
        argsz: size_of::<DmaMap>() as u32,
        flags: abi::VFIO_DMA_MAP_FLAG_READ | abi::VFIO_DMA_MAP_FLAG_WRITE,
        vaddr,
        iova,
        size,
    };
    // SAFETY: VFIO_IOMMU_MAP_DMA reads one `struct vfio_iommu_type1_dma_map`, mirrored by `DmaMap`
    // (`repr(C)`, size checked by a test); the pointer is valid for the call. The kernel validates `vaddr`
    // itself (pin_user_pages), so a bad address is an error, not memory unsafety here.
    let ret = unsafe { libc::ioctl(container.as_raw_fd(), abi::VFIO_IOMMU_MAP_DMA as libc::Ioctl, &map) };
    check(ret.into()).map(drop)
}

/// `VFIO_IOMMU_UNMAP_DMA`: unmaps `size` bytes at `iova`; returns how many bytes the kernel unmapped.
pub fn vfio_unmap_dma(container: &File, iova: u64, size: u64) -> io::Result<u64> {
    let mut unmap = DmaUnmap { argsz: size_of::<DmaUnmap>() as u32, flags: 0, iova, size };
    // SAFETY: VFIO_IOMMU_UNMAP_DMA reads `argsz` bytes of `struct vfio_iommu_type1_dma_unmap` and writes back
    // `size`; `DmaUnmap` mirrors it without the `data[]` tail, which the kernel reads only with the
    // dirty-bitmap flag (not set), and `argsz` says exactly our size. The pointer is valid and exclusive.
    let ret = unsafe { libc::ioctl(container.as_raw_fd(), abi::VFIO_IOMMU_UNMAP_DMA as libc::Ioctl, &mut unmap) };
    check(ret.into()).map(|_| unmap.size)
}

/// An anonymous memory mapping, unmapped on drop. Its usable part may start past the mapping's own start,
/// to honour a larger alignment than the page.
pub struct Mapping {
    base: *mut libc::c_void,
    total: usize,
    start: *mut u8,
    len: usize,
}

impl Mapping {
    /// Maps `len` bytes of zeroed anonymous memory, private or shared with children forked later.
    pub fn anonymous(len: usize, shared: bool) -> io::Result<Self> {
        Self::map(len, 0, shared)
    }

    /// Maps `len` bytes of zeroed private anonymous memory starting on an `align`-byte boundary (a power
    /// of two), e.g. 2 MiB so transparent huge pages can back it.
    pub fn anonymous_aligned(len: usize, align: usize) -> io::Result<Self> {
        Self::map(len, align, false)
    }

    fn map(len: usize, align: usize, shared: bool) -> io::Result<Self> {
        let sharing = if shared { libc::MAP_SHARED } else { libc::MAP_PRIVATE };
        let total = len.checked_add(align).ok_or_else(|| io::Error::other("mapping too large"))?;
        // SAFETY: a fresh anonymous mapping at an address the kernel picks overlaps nothing we use; the
        // result is checked before use.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                total,
                libc::PROT_READ | libc::PROT_WRITE,
                sharing | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let skip = if align == 0 { 0 } else { (base as usize).next_multiple_of(align) - base as usize };
        // SAFETY: `skip < align` (or 0), so `base + skip .. + len` lies within the `total = len + align`
        // bytes just mapped.
        let start = unsafe { base.cast::<u8>().add(skip) };
        Ok(Self { base, total, start, len })
    }

    /// Start address of the usable part, as the VFIO `vaddr` of the memory.
    pub fn addr(&self) -> u64 {
        self.start as u64
    }

    /// Asks for transparent huge pages (`true`: physically contiguous 2 MiB frames when the kernel has
    /// them) or for 4 KiB frames only (`false`).
    pub fn huge_pages(&self, huge: bool) -> io::Result<()> {
        let advice = if huge { libc::MADV_HUGEPAGE } else { libc::MADV_NOHUGEPAGE };
        // SAFETY: madvise on exactly this mapping changes only how the kernel backs it.
        let ret = unsafe { libc::madvise(self.base, self.total, advice) };
        check(ret.into()).map(drop)
    }

    /// Writes one byte in every page of the usable part, so every page is backed before it is timed.
    /// `interleaved` touches the even pages first and then the odd ones, so no two neighbouring pages get
    /// frames allocated one after the other (whichever way the allocator walks its free lists).
    pub fn touch_pages(&self, page: usize, interleaved: bool) {
        let pages = self.len / page;
        let order: Box<dyn Iterator<Item = usize>> =
            if interleaved { Box::new((0..pages).step_by(2).chain((1..pages).step_by(2))) } else { Box::new(0..pages) };
        for index in order {
            // SAFETY: `index < len / page`, so the byte lies in this live, writable mapping; a volatile write
            // keeps the compiler from dropping it, and no reference to the mapping's bytes exists.
            unsafe { self.start.add(index * page).write_volatile(1) };
        }
    }

    /// The first 4 bytes as an atomic word (the futex of the ping-pong).
    pub fn word(&self) -> &AtomicU32 {
        assert!(self.len >= 4);
        // SAFETY: the usable part is page-aligned and at least 4 bytes long, lives as long as the returned
        // borrow, and these bytes are only ever accessed atomically (here and in forked children).
        unsafe { AtomicU32::from_ptr(self.start.cast::<u32>()) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `base`/`total` are exactly what mmap returned and nothing borrows the mapping any more
        // (borrows of `word()` end before drop).
        unsafe { libc::munmap(self.base, self.total) };
    }
}

/// `FUTEX_WAIT`: sleeps while `*word == expected` (returns at once if it differs, or on a spurious wake).
pub fn futex_wait(word: &AtomicU32, expected: u32) -> io::Result<()> {
    // SAFETY: `word` is a live, aligned u32; FUTEX_WAIT without a timeout reads no other memory. The word
    // is in a MAP_SHARED mapping, so the shared (non-private) futex op is the right one.
    let ret = unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAIT, expected, std::ptr::null::<libc::timespec>())
    };
    match check(ret) {
        Ok(_) => Ok(()),
        Err(error) if matches!(error.raw_os_error(), Some(libc::EAGAIN | libc::EINTR)) => Ok(()),
        Err(error) => Err(error),
    }
}

/// `FUTEX_WAKE`: wakes up to `count` waiters on `word`.
pub fn futex_wake(word: &AtomicU32, count: i32) -> io::Result<()> {
    // SAFETY: `word` is a live, aligned u32; FUTEX_WAKE only uses its address as a key.
    let ret = unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, count) };
    check(ret).map(drop)
}

/// Which side of a `fork` we are on.
pub enum Forked {
    /// The new process.
    Child,
    /// The original process, with the child's pid.
    Parent(libc::pid_t),
}

/// `fork()`. The child must only make plain system calls and end with [`exit_child`].
pub fn fork() -> io::Result<Forked> {
    // SAFETY: the children of this program only call read/write/futex and `_exit` (all async-signal-safe),
    // so a copy of a process that may have other threads (the unit-test harness) is still sound.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid)),
    }
}

/// Ends a forked child at once, without running the parent's exit handlers or flushing its buffers.
pub fn exit_child(code: i32) -> ! {
    // SAFETY: `_exit` never returns and touches no user memory.
    unsafe { libc::_exit(code) }
}

/// Waits for child `pid` and returns its exit code (or 128 + signal).
pub fn wait_child(pid: libc::pid_t) -> io::Result<i32> {
    let mut status = 0;
    // SAFETY: `status` is a valid, writable int for the call.
    let ret = unsafe { libc::waitpid(pid, &mut status, 0) };
    check(ret.into())?;
    Ok(if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { 128 + libc::WTERMSIG(status) })
}
