//! What can go wrong between an AHCI driver and its controller, as values.

use core::fmt;

/// Why a command or a step of bring-up failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The port has no device with an established link (PxSSTS.DET is not 3).
    NoDevice {
        /// The port.
        port: u8,
    },
    /// The device is not a SATA disk (PxSIG), such as an ATAPI drive.
    NotADisk {
        /// The signature it reported.
        signature: u32,
    },
    /// A transfer's length is not a whole number of sectors, or is empty.
    Length {
        /// Bytes asked for.
        bytes: u64,
    },
    /// A buffer's bus address is odd: a PRDT entry's base must be even.
    Unaligned {
        /// The address.
        address: u64,
    },
    /// A transfer larger than one PRDT entry holds (4 MiB), which this
    /// driver does not split.
    TooLarge {
        /// Bytes asked for.
        bytes: u64,
    },
    /// The LBA range runs past 48 bits or the disk's end.
    BlockRange {
        /// First sector.
        lba: u64,
        /// Sectors.
        count: u32,
        /// Sectors the disk has.
        sectors: u64,
    },
    /// The device ended the command with an error (PxTFD.STS.ERR), with its
    /// error register.
    Device {
        /// The ATA error register.
        error: u8,
        /// The ATA status register.
        status: u8,
    },
    /// The HBA reported a task-file or interface error (PxIS).
    Interface {
        /// The port's interrupt status.
        status: u32,
    },
    /// The HBA or the device did not answer in time.
    Timeout {
        /// What was waited for.
        waiting_for: &'static str,
    },
    /// IDENTIFY data that says nothing usable (no LBA sector count).
    Identify,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoDevice { port } => write!(f, "port {port} has no device with a link"),
            Error::NotADisk { signature } => write!(f, "the device's signature {signature:#010x} is no SATA disk"),
            Error::Length { bytes } => write!(f, "{bytes} bytes is not a whole number of 512-byte sectors"),
            Error::Unaligned { address } => write!(f, "bus address {address:#x} is odd"),
            Error::TooLarge { bytes } => write!(f, "{bytes} bytes needs more than one PRDT entry (4 MiB)"),
            Error::BlockRange { lba, count, sectors } => {
                write!(f, "sectors {lba}..{} are past the disk's {sectors}", lba.saturating_add(u64::from(*count)))
            }
            Error::Device { error, status } => {
                write!(f, "the device failed the command: error {error:#04x}, status {status:#04x}")
            }
            Error::Interface { status } => write!(f, "the HBA reported an error: interrupt status {status:#010x}"),
            Error::Timeout { waiting_for } => write!(f, "timed out waiting for {waiting_for}"),
            Error::Identify => write!(f, "IDENTIFY data gives no LBA sector count"),
        }
    }
}
