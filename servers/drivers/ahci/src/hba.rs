//! The HBA's and each port's registers (AHCI 1.3.1, sections 3.1 and 3.3): offsets, bits, and what their values say.

use crate::Error;

/// Generic host control registers, offsets in the ABAR.
pub mod reg {
    /// Host capabilities.
    pub const CAP: u64 = 0x00;
    /// Global host control.
    pub const GHC: u64 = 0x04;
    /// Interrupt status, a bit per port.
    pub const IS: u64 = 0x08;
    /// Ports implemented.
    pub const PI: u64 = 0x0c;
}

/// Port registers, offsets from the port's block.
pub mod port {
    /// Command list base address (1 KiB aligned), low half.
    pub const CLB: u64 = 0x00;
    /// Command list base address, high half.
    pub const CLBU: u64 = 0x04;
    /// Received-FIS base address (256-byte aligned), low half.
    pub const FB: u64 = 0x08;
    /// Received-FIS base address, high half.
    pub const FBU: u64 = 0x0c;
    /// Interrupt status.
    pub const IS: u64 = 0x10;
    /// Interrupt enable.
    pub const IE: u64 = 0x14;
    /// Command and status.
    pub const CMD: u64 = 0x18;
    /// Task file data: the device's status and error registers.
    pub const TFD: u64 = 0x20;
    /// Signature of the attached device.
    pub const SIG: u64 = 0x24;
    /// SATA status (link state).
    pub const SSTS: u64 = 0x28;
    /// SATA error.
    pub const SERR: u64 = 0x30;
    /// Command issue: a bit per slot.
    pub const CI: u64 = 0x38;
}

/// GHC.HR: reset the HBA (it clears the bit when done).
pub const GHC_RESET: u32 = 1 << 0;
/// GHC.IE: the HBA may interrupt.
pub const GHC_INTERRUPTS: u32 = 1 << 1;
/// GHC.AE: AHCI mode (rather than legacy IDE).
pub const GHC_AHCI: u32 = 1 << 31;

/// PxCMD.ST: the port processes its command list.
pub const CMD_START: u32 = 1 << 0;
/// PxCMD.SUD: spin the device up.
pub const CMD_SPIN_UP: u32 = 1 << 1;
/// PxCMD.POD: power the device on.
pub const CMD_POWER_ON: u32 = 1 << 2;
/// PxCMD.FRE: the port posts received FISes to FB.
pub const CMD_FIS_RECEIVE: u32 = 1 << 4;
/// PxCMD.FR: FIS receive is running.
pub const CMD_FIS_RUNNING: u32 = 1 << 14;
/// PxCMD.CR: the command list is running.
pub const CMD_LIST_RUNNING: u32 = 1 << 15;

/// PxIS.DHRS: a device-to-host register FIS arrived (a command ended).
pub const IS_D2H_REGISTER: u32 = 1 << 0;
/// PxIS.TFES: the device reported an error.
pub const IS_TASK_FILE_ERROR: u32 = 1 << 30;
/// PxIS bits that mean the command or the link failed.
pub const IS_ERRORS: u32 = (1 << 30) | (1 << 29) | (1 << 28) | (1 << 27) | (1 << 26) | (1 << 24) | (1 << 23);

/// ATA status: error.
pub const STATUS_ERROR: u8 = 1 << 0;
/// ATA status: data request.
pub const STATUS_DRQ: u8 = 1 << 3;
/// ATA status: busy.
pub const STATUS_BUSY: u8 = 1 << 7;

/// The signature of a SATA disk.
pub const SIGNATURE_DISK: u32 = 0x0000_0101;

/// Offset in the ABAR of port `n`'s register block.
pub const fn port_base(n: u8) -> u64 {
    0x100 + 0x80 * n as u64
}

/// What the capability register says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// Ports the HBA supports (CAP.NP + 1).
    pub ports: u8,
    /// Command slots per port (CAP.NCS + 1).
    pub slots: u8,
    /// 64-bit addresses for the command list, FIS area, tables and data (CAP.S64A).
    pub addresses_64: bool,
}

impl Capabilities {
    /// Decodes CAP.
    pub fn decode(cap: u32) -> Self {
        Self { ports: (cap & 0x1f) as u8 + 1, slots: ((cap >> 8) & 0x1f) as u8 + 1, addresses_64: cap & (1 << 31) != 0 }
    }
}

/// The first implemented port whose link is up with a SATA disk on it,
/// given PI and each port's (PxSSTS, PxSIG) by `port_state`.
pub fn first_disk(implemented: u32, mut port_state: impl FnMut(u8) -> (u32, u32)) -> Result<u8, Error> {
    let mut found = Error::NoDevice { port: 0 };
    for port in (0..32u8).filter(|port| implemented & (1 << port) != 0) {
        let (status, signature) = port_state(port);
        // DET = 3: a device is present and the PHY has established communication.
        if status & 0xf != 3 {
            found = Error::NoDevice { port };
            continue;
        }
        if signature != SIGNATURE_DISK {
            found = Error::NotADisk { signature };
            continue;
        }
        return Ok(port);
    }
    Err(found)
}

/// The outcome a port's TFD and IS say for a command that is no longer
/// issued: `Ok` or the error.
pub fn outcome(task_file: u32, interrupt_status: u32) -> Result<(), Error> {
    let status = task_file as u8;
    if status & STATUS_ERROR != 0 || interrupt_status & IS_TASK_FILE_ERROR != 0 {
        return Err(Error::Device { error: (task_file >> 8) as u8, status });
    }
    if interrupt_status & IS_ERRORS != 0 {
        return Err(Error::Interface { status: interrupt_status });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemus_capabilities_decode() {
        // 6 ports, 32 slots, 64-bit addressing: the shape ich9-ahci reports.
        let cap = Capabilities::decode(0x4024_1f05 | 1 << 31);
        assert_eq!(cap, Capabilities { ports: 6, slots: 32, addresses_64: true });
        assert_eq!(port_base(0), 0x100);
        assert_eq!(port_base(5), 0x380);
    }

    #[test]
    fn the_first_port_with_a_disk_is_chosen_and_others_say_why_not() {
        let ports = |port: u8| match port {
            0 => (0x0, 0),
            1 => (0x113, 0xeb14_0101),
            2 => (0x113, SIGNATURE_DISK),
            _ => (0x0, 0),
        };
        assert_eq!(first_disk(0b111, ports), Ok(2));
        assert_eq!(first_disk(0b011, ports), Err(Error::NotADisk { signature: 0xeb14_0101 }));
        assert_eq!(first_disk(0b001, ports), Err(Error::NoDevice { port: 0 }));
        assert_eq!(first_disk(0, ports), Err(Error::NoDevice { port: 0 }));
    }

    #[test]
    fn a_command_outcome_is_read_from_the_task_file_and_the_interrupt_status() {
        assert_eq!(outcome(0x50, IS_D2H_REGISTER), Ok(()));
        assert_eq!(
            outcome(0x0451, IS_D2H_REGISTER | IS_TASK_FILE_ERROR),
            Err(Error::Device { error: 0x04, status: 0x51 })
        );
        assert_eq!(outcome(0x50, 1 << 27), Err(Error::Interface { status: 1 << 27 }));
    }
}
