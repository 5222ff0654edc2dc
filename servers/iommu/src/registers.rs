//! VT-d register offsets, widths and bit fields, and the register-access trait.
//!
//! Widths are part of each register's type: a [`Register32`] can only be
//! written with a 32-bit access. QEMU aborts on an 8-byte write to a 32-bit
//! register (FSTS, FECTL, FEDATA, ICS, IECTL...), and a 4-byte write to the
//! low half of CCMD or the IOTLB register does not start the command.

/// A 32-bit register at a byte offset in the unit's register page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Register32 {
    /// Byte offset from the register base.
    pub offset: u32,
    /// The specification's name, for logs.
    pub name: &'static str,
}

/// A 64-bit register at a byte offset in the unit's register page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Register64 {
    /// Byte offset from the register base.
    pub offset: u32,
    /// The specification's name, for logs.
    pub name: &'static str,
}

const fn r32(offset: u32, name: &'static str) -> Register32 {
    Register32 { offset, name }
}

const fn r64(offset: u32, name: &'static str) -> Register64 {
    Register64 { offset, name }
}

/// Access to one unit's registers, each with an access of its own width.
///
/// The server implements it with volatile loads and stores on the mapped
/// register page; tests implement it with a model of the hardware.
pub trait Registers {
    /// Reads a 32-bit register.
    fn read32(&mut self, register: Register32) -> u32;
    /// Reads a 64-bit register.
    fn read64(&mut self, register: Register64) -> u64;
    /// Writes a 32-bit register.
    fn write32(&mut self, register: Register32, value: u32);
    /// Writes a 64-bit register with one 8-byte access.
    fn write64(&mut self, register: Register64, value: u64);
}

/// Version: major in bits 7:4, minor in bits 3:0.
pub const VER: Register32 = r32(0x00, "VER");
/// Capabilities.
pub const CAP: Register64 = r64(0x08, "CAP");
/// Extended capabilities.
pub const ECAP: Register64 = r64(0x10, "ECAP");
/// Global command (see [`gcmd`]).
pub const GCMD: Register32 = r32(0x18, "GCMD");
/// Global status (see [`gsts`]).
pub const GSTS: Register32 = r32(0x1c, "GSTS");
/// Root table address; bits 11:10 select the table mode (0 = legacy).
pub const RTADDR: Register64 = r64(0x20, "RTADDR");
/// Context command (see [`ccmd`]).
pub const CCMD: Register64 = r64(0x28, "CCMD");
/// Fault status (see [`fsts`]).
pub const FSTS: Register32 = r32(0x34, "FSTS");
/// Fault event control (see [`event`]).
pub const FECTL: Register32 = r32(0x38, "FECTL");
/// Fault event interrupt data.
pub const FEDATA: Register32 = r32(0x3c, "FEDATA");
/// Fault event interrupt address, bits 31:2.
pub const FEADDR: Register32 = r32(0x40, "FEADDR");
/// Fault event interrupt upper address.
pub const FEUADDR: Register32 = r32(0x44, "FEUADDR");
/// Advanced fault log address.
pub const AFLOG: Register64 = r64(0x58, "AFLOG");
/// Protected memory enable: bit 31 enables, bit 0 reports status.
pub const PMEN: Register32 = r32(0x64, "PMEN");
/// Invalidation queue head, bits 18:4 for 128-bit descriptors.
pub const IQH: Register64 = r64(0x80, "IQH");
/// Invalidation queue tail, bits 18:4 for 128-bit descriptors.
pub const IQT: Register64 = r64(0x88, "IQT");
/// Invalidation queue address (see [`iqa`]).
pub const IQA: Register64 = r64(0x90, "IQA");
/// Invalidation completion status: bit 0 (IWC) is write-1-to-clear.
pub const ICS: Register32 = r32(0x9c, "ICS");
/// Invalidation event control (see [`event`]).
pub const IECTL: Register32 = r32(0xa0, "IECTL");
/// Invalidation event interrupt data.
pub const IEDATA: Register32 = r32(0xa4, "IEDATA");
/// Invalidation event interrupt address.
pub const IEADDR: Register32 = r32(0xa8, "IEADDR");
/// Invalidation event interrupt upper address.
pub const IEUADDR: Register32 = r32(0xac, "IEUADDR");
/// Interrupt remapping table address: bits 63:12 base, bit 11 EIME, 3:0 size.
pub const IRTA: Register64 = r64(0xb8, "IRTA");

/// The pair of 64-bit registers of fault recording register `index`, at
/// the byte offset `fault_offset` that CAP.FRO gives (16 bytes each).
pub fn fault_recording(fault_offset: u32, index: u32) -> Option<(Register64, Register64)> {
    let low = fault_offset.checked_add(index.checked_mul(16)?)?;
    Some((r64(low, "FRCD.lo"), r64(low.checked_add(8)?, "FRCD.hi")))
}

/// The invalidate-address register (IVA) and IOTLB invalidate register at
/// the byte offset `iotlb_offset` that ECAP.IRO gives.
pub fn iotlb_registers(iotlb_offset: u32) -> Option<(Register64, Register64)> {
    Some((r64(iotlb_offset, "IVA"), r64(iotlb_offset.checked_add(8)?, "IOTLB")))
}

/// Global command bits; GSTS reports each at the same position.
pub mod gcmd {
    /// Translation enable.
    pub const TE: u32 = 1 << 31;
    /// Set root table pointer (one-shot).
    pub const SRTP: u32 = 1 << 30;
    /// Set fault log (one-shot).
    pub const SFL: u32 = 1 << 29;
    /// Enable advanced fault logging.
    pub const EAFL: u32 = 1 << 28;
    /// Write buffer flush (one-shot).
    pub const WBF: u32 = 1 << 27;
    /// Queued invalidation enable.
    pub const QIE: u32 = 1 << 26;
    /// Interrupt remapping enable.
    pub const IRE: u32 = 1 << 25;
    /// Set interrupt remap table pointer (one-shot).
    pub const SIRTP: u32 = 1 << 24;
    /// Compatibility format interrupts allowed.
    pub const CFI: u32 = 1 << 23;
    /// GSTS bits to keep when composing a GCMD value: everything but the
    /// status of the one-shot commands (SRTP, SFL, WBF, SIRTP), which must
    /// not be re-issued by accident.
    pub const PRESERVE_MASK: u32 = 0x96ff_ffff;
}

/// Global status bits.
pub mod gsts {
    /// Translation enabled.
    pub const TES: u32 = 1 << 31;
    /// Root table pointer set.
    pub const RTPS: u32 = 1 << 30;
    /// Fault log pointer set.
    pub const FLS: u32 = 1 << 29;
    /// Advanced fault logging enabled.
    pub const AFLS: u32 = 1 << 28;
    /// Write buffer flush still in progress.
    pub const WBFS: u32 = 1 << 27;
    /// Queued invalidation enabled.
    pub const QIES: u32 = 1 << 26;
    /// Interrupt remapping enabled.
    pub const IRES: u32 = 1 << 25;
    /// Interrupt remap table pointer set.
    pub const IRTPS: u32 = 1 << 24;
    /// Compatibility format interrupts allowed.
    pub const CFIS: u32 = 1 << 23;
}

/// Context command register fields.
pub mod ccmd {
    /// Invalidate context cache; hardware clears it when done.
    pub const ICC: u64 = 1 << 63;
    /// Shift of the requested granularity (CIRG, bits 62:61).
    pub const CIRG_SHIFT: u32 = 61;
    /// Shift of the actual granularity (CAIG, bits 60:59).
    pub const CAIG_SHIFT: u32 = 59;
    /// Shift of the function mask (bits 33:32).
    pub const FM_SHIFT: u32 = 32;
    /// Shift of the source id (bits 31:16).
    pub const SID_SHIFT: u32 = 16;
}

/// IOTLB invalidate register and invalidate-address register fields.
pub mod iotlb {
    /// Invalidate IOTLB; hardware clears it when done.
    pub const IVT: u64 = 1 << 63;
    /// Shift of the requested granularity (IIRG, bits 61:60).
    pub const IIRG_SHIFT: u32 = 60;
    /// Shift of the actual granularity (IAIG, bits 58:57).
    pub const IAIG_SHIFT: u32 = 57;
    /// Drain reads.
    pub const DR: u64 = 1 << 49;
    /// Drain writes.
    pub const DW: u64 = 1 << 48;
    /// Shift of the domain id (bits 47:32).
    pub const DID_SHIFT: u32 = 32;
    /// IVA: invalidation hint, only leaf entries changed.
    pub const IVA_IH: u64 = 1 << 6;
}

/// Fault status register bits.
pub mod fsts {
    /// Primary fault overflow (write 1 to clear).
    pub const PFO: u32 = 1 << 0;
    /// Primary pending fault (read-only summary of the F bits).
    pub const PPF: u32 = 1 << 1;
    /// Advanced fault overflow (write 1 to clear).
    pub const AFO: u32 = 1 << 2;
    /// Advanced pending fault (write 1 to clear).
    pub const APF: u32 = 1 << 3;
    /// Invalidation queue error (write 1 to clear).
    pub const IQE: u32 = 1 << 4;
    /// Invalidation completion error (write 1 to clear).
    pub const ICE: u32 = 1 << 5;
    /// Invalidation time-out error (write 1 to clear).
    pub const ITE: u32 = 1 << 6;
    /// Shift of the fault record index (bits 15:8).
    pub const FRI_SHIFT: u32 = 8;
    /// The write-1-to-clear error bits.
    pub const ERRORS: u32 = PFO | AFO | APF | IQE | ICE | ITE;
}

/// Event control bits, shared by FECTL and IECTL.
pub mod event {
    /// Interrupt mask.
    pub const IM: u32 = 1 << 31;
    /// Interrupt pending.
    pub const IP: u32 = 1 << 30;
}

/// Invalidation queue address register fields.
pub mod iqa {
    /// 256-bit descriptors (scalable mode only); this crate uses 128-bit.
    pub const DW: u64 = 1 << 11;
    /// Queue size field (bits 2:0): 2^QS pages of 256 128-bit descriptors.
    pub const QS_MASK: u64 = 7;
    /// Shift of the head and tail index within IQH and IQT for 128-bit
    /// descriptors.
    pub const INDEX_SHIFT: u32 = 4;
}

/// Protected memory enable register bits.
pub mod pmen {
    /// Enable protected memory regions.
    pub const EPM: u32 = 1 << 31;
    /// Protected region status: set while the regions are enforced.
    pub const PRS: u32 = 1;
}

/// Fault recording register fields (high 64 bits).
pub mod frcd {
    /// Fault: the record is valid; write 1 to clear.
    pub const F: u64 = 1 << 63;
    /// Type bit 1: set for a read request, clear for a write.
    pub const T1: u64 = 1 << 62;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_match_the_specification_layout() {
        let thirty_two = [VER, GCMD, GSTS, FSTS, FECTL, FEDATA, FEADDR, FEUADDR, PMEN, ICS, IECTL, IEDATA, IEADDR];
        let offsets: Vec<u32> = thirty_two.iter().map(|register| register.offset).collect();
        assert_eq!(offsets, [0x0, 0x18, 0x1c, 0x34, 0x38, 0x3c, 0x40, 0x44, 0x64, 0x9c, 0xa0, 0xa4, 0xa8]);
        let sixty_four = [CAP, ECAP, RTADDR, CCMD, AFLOG, IQH, IQT, IQA, IRTA];
        let offsets: Vec<u32> = sixty_four.iter().map(|register| register.offset).collect();
        assert_eq!(offsets, [0x8, 0x10, 0x20, 0x28, 0x58, 0x80, 0x88, 0x90, 0xb8]);
        assert_eq!(IEUADDR.offset, 0xac);
    }

    #[test]
    fn fault_and_iotlb_registers_follow_the_capability_offsets() {
        let (low, high) = fault_recording(0x220, 0).unwrap();
        assert_eq!((low.offset, high.offset), (0x220, 0x228));
        let (low, high) = fault_recording(0x220, 3).unwrap();
        assert_eq!((low.offset, high.offset), (0x250, 0x258));
        assert!(fault_recording(u32::MAX - 4, 0).is_none());
        assert!(fault_recording(0, u32::MAX).is_none());
        let (iva, command) = iotlb_registers(0xf0).unwrap();
        assert_eq!((iva.offset, command.offset), (0xf0, 0xf8));
        assert!(iotlb_registers(u32::MAX).is_none());
    }

    #[test]
    fn preserve_mask_drops_exactly_the_one_shot_status_bits() {
        let one_shot = gcmd::SRTP | gcmd::SFL | gcmd::WBF | gcmd::SIRTP;
        assert_eq!(gcmd::PRESERVE_MASK, !one_shot);
        assert_eq!(gsts::RTPS | gsts::FLS | gsts::WBFS | gsts::IRTPS, one_shot);
    }
}
