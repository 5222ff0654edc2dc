//! The VFIO user ABI of Linux 6.1 (`include/uapi/linux/vfio.h`): ioctl numbers, flags and argument structs.
//!
//! Every VFIO ioctl is defined with `_IO(VFIO_TYPE, VFIO_BASE + n)`: no size or direction bits, so the number
//! is just `(';' << 8) | (100 + n)`. The values were checked against the header of Debian's
//! `linux-libc-dev` 6.1 with a C program printing the macros (0x3b64 ... 0x3b72).

/// `VFIO_TYPE`, the ioctl "magic" byte: `';'`.
const VFIO_TYPE: u64 = b';' as u64;
/// `VFIO_BASE`: the first VFIO ioctl's sequence number.
const VFIO_BASE: u64 = 100;

/// `_IO(type, nr)`: direction and size bits are zero, so only type and number remain.
const fn io(nr: u64) -> u64 {
    (VFIO_TYPE << 8) | (VFIO_BASE + nr)
}

/// `VFIO_GET_API_VERSION`: returns [`VFIO_API_VERSION`] on a container fd.
pub const VFIO_GET_API_VERSION: u64 = io(0);
/// `VFIO_CHECK_EXTENSION`: argument is an IOMMU type by value; returns > 0 if supported.
pub const VFIO_CHECK_EXTENSION: u64 = io(1);
/// `VFIO_SET_IOMMU`: argument is the IOMMU type by value; needs a group in the container first.
pub const VFIO_SET_IOMMU: u64 = io(2);
/// `VFIO_GROUP_GET_STATUS`: argument is a [`GroupStatus`].
pub const VFIO_GROUP_GET_STATUS: u64 = io(3);
/// `VFIO_GROUP_SET_CONTAINER`: argument is a pointer to the container's fd (`__s32`).
pub const VFIO_GROUP_SET_CONTAINER: u64 = io(4);
/// `VFIO_IOMMU_MAP_DMA`: argument is a [`DmaMap`].
pub const VFIO_IOMMU_MAP_DMA: u64 = io(13);
/// `VFIO_IOMMU_UNMAP_DMA`: argument is a [`DmaUnmap`]; the kernel writes back the unmapped size.
pub const VFIO_IOMMU_UNMAP_DMA: u64 = io(14);

/// `VFIO_API_VERSION`: the only container API version there is.
pub const VFIO_API_VERSION: i32 = 0;
/// `VFIO_TYPE1_IOMMU`: the original type1 IOMMU backend.
pub const VFIO_TYPE1_IOMMU: u64 = 1;
/// `VFIO_TYPE1v2_IOMMU`: type1 with the v2 unmap semantics (what QEMU uses).
pub const VFIO_TYPE1V2_IOMMU: u64 = 3;

/// `VFIO_GROUP_FLAGS_VIABLE`: every device of the group is bound to a VFIO driver or to none.
pub const VFIO_GROUP_FLAGS_VIABLE: u32 = 1 << 0;
/// `VFIO_DMA_MAP_FLAG_READ`: the device may read the mapping.
pub const VFIO_DMA_MAP_FLAG_READ: u32 = 1 << 0;
/// `VFIO_DMA_MAP_FLAG_WRITE`: the device may write the mapping.
pub const VFIO_DMA_MAP_FLAG_WRITE: u32 = 1 << 1;

/// `struct vfio_group_status`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct GroupStatus {
    /// Size of this struct, set by the caller.
    pub argsz: u32,
    /// `VFIO_GROUP_FLAGS_*`, set by the kernel.
    pub flags: u32,
}

/// `struct vfio_iommu_type1_dma_map`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct DmaMap {
    /// Size of this struct, set by the caller.
    pub argsz: u32,
    /// `VFIO_DMA_MAP_FLAG_*`.
    pub flags: u32,
    /// Process virtual address of the memory to map.
    pub vaddr: u64,
    /// I/O virtual address the device will use.
    pub iova: u64,
    /// Length in bytes.
    pub size: u64,
}

/// `struct vfio_iommu_type1_dma_unmap` without its flexible `data[]` tail (unused without the dirty-bitmap flag).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct DmaUnmap {
    /// Size of this struct, set by the caller.
    pub argsz: u32,
    /// `VFIO_DMA_UNMAP_FLAG_*`.
    pub flags: u32,
    /// First I/O virtual address to unmap.
    pub iova: u64,
    /// Length in bytes; the kernel writes back how much it unmapped.
    pub size: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_linux_6_1() {
        // Printed by a C program from Debian's linux-libc-dev 6.1 <linux/vfio.h>.
        assert_eq!(VFIO_GET_API_VERSION, 0x3b64);
        assert_eq!(VFIO_CHECK_EXTENSION, 0x3b65);
        assert_eq!(VFIO_SET_IOMMU, 0x3b66);
        assert_eq!(VFIO_GROUP_GET_STATUS, 0x3b67);
        assert_eq!(VFIO_GROUP_SET_CONTAINER, 0x3b68);
        assert_eq!(VFIO_IOMMU_MAP_DMA, 0x3b71);
        assert_eq!(VFIO_IOMMU_UNMAP_DMA, 0x3b72);
    }

    #[test]
    fn argument_structs_have_the_kernel_sizes() {
        assert_eq!(size_of::<GroupStatus>(), 8);
        assert_eq!(size_of::<DmaMap>(), 32);
        assert_eq!(size_of::<DmaUnmap>(), 24);
    }
}
