//! CAP and ECAP decoded into what the server must do differently per unit.

use core::fmt;

/// An adjusted guest address width, which fixes the page-table depth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AddressWidth {
    /// 39-bit input addresses, 3-level tables.
    Bits39,
    /// 48-bit input addresses, 4-level tables.
    Bits48,
    /// 57-bit input addresses, 5-level tables.
    Bits57,
}

impl AddressWidth {
    /// All widths, smallest first.
    pub const ALL: [Self; 3] = [Self::Bits39, Self::Bits48, Self::Bits57];

    /// Input address bits.
    pub fn bits(self) -> u8 {
        match self {
            Self::Bits39 => 39,
            Self::Bits48 => 48,
            Self::Bits57 => 57,
        }
    }

    /// Page-table levels.
    pub fn levels(self) -> u8 {
        match self {
            Self::Bits39 => 3,
            Self::Bits48 => 4,
            Self::Bits57 => 5,
        }
    }

    /// The encoding used by the context entry's AW field and, as a bit
    /// number, by CAP.SAGAW.
    pub fn encoding(self) -> u8 {
        self.levels() - 2
    }

    /// The width a context entry's AW field encodes.
    pub fn from_encoding(encoding: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|width| width.encoding() == encoding)
    }
}

/// Second-level superpage sizes a unit supports (CAP.SLLPS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Superpages {
    /// 2 MiB pages at level 2.
    pub two_mebibytes: bool,
    /// 1 GiB pages at level 3.
    pub one_gibibyte: bool,
}

/// Why a unit's capabilities cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapabilityError {
    /// CAP.ND holds the reserved value 7.
    DomainIdField,
    /// CAP.SAGAW lists no width this server can build tables for.
    NoSupportedWidth {
        /// The SAGAW field.
        sagaw: u8,
    },
    /// No supported width covers the wanted input address bits.
    WidthUnavailable {
        /// The bits wanted.
        wanted: u8,
    },
    /// The fault recording registers lie outside the register window.
    FaultRegisters {
        /// Byte offset of the first record.
        offset: u32,
        /// Number of records.
        count: u16,
    },
    /// The IOTLB registers lie outside the register window.
    IotlbRegisters {
        /// Byte offset of the IVA register.
        offset: u32,
    },
}

impl fmt::Display for CapabilityError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::DomainIdField => formatter.write_str("CAP.ND holds the reserved value 7"),
            Self::NoSupportedWidth { sagaw } => write!(formatter, "CAP.SAGAW {sagaw:#x} lists no usable width"),
            Self::WidthUnavailable { wanted } => write!(formatter, "no supported width covers {wanted} bits"),
            Self::FaultRegisters { offset, count } => {
                write!(formatter, "{count} fault records at {offset:#x} exceed the register window")
            }
            Self::IotlbRegisters { offset } => write!(formatter, "IOTLB registers at {offset:#x} exceed the window"),
        }
    }
}

fn bit(value: u64, position: u32) -> bool {
    value >> position & 1 != 0
}

fn field(value: u64, low: u32, width: u32) -> u64 {
    value >> low & ((1 << width) - 1)
}

/// A remapping unit's capabilities, decoded from CAP and ECAP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// The raw CAP register.
    pub cap: u64,
    /// The raw ECAP register.
    pub ecap: u64,
    /// Domain id bits (CAP.ND): 4, 6, 8, ... 16.
    pub domain_id_bits: u8,
    /// Software must flush the write buffer after changing tables (RWBF).
    pub write_buffer_flush: bool,
    /// Protected low-memory region registers (PLMR): firmware may have
    /// fenced memory off from DMA with them.
    pub protected_low_memory: bool,
    /// Protected high-memory region registers (PHMR).
    pub protected_high_memory: bool,
    /// Caching mode (CM): not-present and faulting entries may be cached,
    /// so making an entry present needs an invalidation too. Virtual IOMMUs
    /// report it to shadow the tables.
    pub caching_mode: bool,
    /// The supported widths (CAP.SAGAW bits 1, 2, 3).
    pub sagaw: u8,
    /// Maximum guest address width in bits (CAP.MGAW + 1).
    pub max_guest_address_width: u8,
    /// Superpage sizes (CAP.SLLPS).
    pub superpages: Superpages,
    /// Page-selective IOTLB invalidation (CAP.PSI).
    pub page_selective_invalidation: bool,
    /// Largest address mask a page-selective invalidation accepts (MAMV).
    pub max_address_mask: u8,
    /// Byte offset of the first fault recording register (CAP.FRO × 16).
    pub fault_recording_offset: u32,
    /// Number of fault recording registers (CAP.NFR + 1).
    pub fault_recording_count: u16,
    /// Write draining on IOTLB invalidation (DWD).
    pub drain_writes: bool,
    /// Read draining on IOTLB invalidation (DRD).
    pub drain_reads: bool,
    /// Page walks snoop CPU caches (ECAP.C); when clear, table writes must
    /// be flushed from CPU caches before hardware can see them.
    pub coherent: bool,
    /// Queued invalidation (ECAP.QI).
    pub queued_invalidation: bool,
    /// Device-TLBs (ECAP.DT).
    pub device_tlb: bool,
    /// Interrupt remapping (ECAP.IR).
    pub interrupt_remapping: bool,
    /// Extended interrupt mode, x2APIC ids (ECAP.EIM).
    pub extended_interrupt_mode: bool,
    /// Pass-through translation type (ECAP.PT).
    pub pass_through: bool,
    /// Snoop control: the SNP bit of leaf entries is honoured (ECAP.SC).
    pub snoop_control: bool,
    /// Byte offset of the IOTLB registers (ECAP.IRO × 16).
    pub iotlb_register_offset: u32,
}

impl Capabilities {
    /// Decodes the raw registers.
    pub fn decode(cap: u64, ecap: u64) -> Result<Self, CapabilityError> {
        let nd = field(cap, 0, 3) as u8;
        if nd == 7 {
            return Err(CapabilityError::DomainIdField);
        }
        let sagaw = field(cap, 8, 5) as u8;
        if AddressWidth::ALL.iter().all(|width| sagaw >> width.encoding() & 1 == 0) {
            return Err(CapabilityError::NoSupportedWidth { sagaw });
        }
        Ok(Self {
            cap,
            ecap,
            domain_id_bits: 4 + 2 * nd,
            write_buffer_flush: bit(cap, 4),
            protected_low_memory: bit(cap, 5),
            protected_high_memory: bit(cap, 6),
            caching_mode: bit(cap, 7),
            sagaw,
            max_guest_address_width: field(cap, 16, 6) as u8 + 1,
            superpages: Superpages { two_mebibytes: bit(cap, 34), one_gibibyte: bit(cap, 35) },
            page_selective_invalidation: bit(cap, 39),
            max_address_mask: field(cap, 48, 6) as u8,
            fault_recording_offset: field(cap, 24, 10) as u32 * 16,
            fault_recording_count: field(cap, 40, 8) as u16 + 1,
            drain_writes: bit(cap, 54),
            drain_reads: bit(cap, 55),
            coherent: bit(ecap, 0),
            queued_invalidation: bit(ecap, 1),
            device_tlb: bit(ecap, 2),
            interrupt_remapping: bit(ecap, 3),
            extended_interrupt_mode: bit(ecap, 4),
            pass_through: bit(ecap, 6),
            snoop_control: bit(ecap, 7),
            iotlb_register_offset: field(ecap, 8, 10) as u32 * 16,
        })
    }

    /// Checks that the fault recording and IOTLB registers lie inside a
    /// register window of `window` bytes (the DRHD's register size).
    pub fn check_register_window(&self, window: u64) -> Result<(), CapabilityError> {
        let faults_end = u64::from(self.fault_recording_offset) + 16 * u64::from(self.fault_recording_count);
        if faults_end > window {
            return Err(CapabilityError::FaultRegisters {
                offset: self.fault_recording_offset,
                count: self.fault_recording_count,
            });
        }
        if u64::from(self.iotlb_register_offset) + 16 > window {
            return Err(CapabilityError::IotlbRegisters { offset: self.iotlb_register_offset });
        }
        Ok(())
    }

    /// Number of domain ids the unit tags cache entries with.
    pub fn domain_count(&self) -> u32 {
        1 << self.domain_id_bits
    }

    /// True if the unit can walk tables of this width.
    pub fn supports(&self, width: AddressWidth) -> bool {
        self.sagaw >> width.encoding() & 1 != 0
    }

    /// The shallowest supported table width that covers `wanted` input
    /// address bits (e.g. 28 for QEMU's edu device, 39 for a 64-bit device
    /// on a 39-bit unit).
    pub fn width_for(&self, wanted: u8) -> Result<AddressWidth, CapabilityError> {
        AddressWidth::ALL
            .into_iter()
            .find(|width| self.supports(*width) && width.bits() >= wanted)
            .ok_or(CapabilityError::WidthUnavailable { wanted })
    }

    /// The deepest supported width that MGAW lets devices use fully: the
    /// choice for a device that can address everything.
    pub fn widest(&self) -> Option<AddressWidth> {
        AddressWidth::ALL
            .into_iter()
            .rev()
            .find(|width| self.supports(*width) && width.bits() <= self.max_guest_address_width)
            .or_else(|| AddressWidth::ALL.into_iter().find(|width| self.supports(*width)))
    }

    /// Input address bits a table of `width` can translate on this unit:
    /// hardware faults anything at or above 2^min(width, MGAW).
    pub fn input_bits(&self, width: AddressWidth) -> u8 {
        width.bits().min(self.max_guest_address_width)
    }
}

#[cfg(test)]
mod tests {
    use xorshift::XorShift;

    use super::*;

    /// CAP and ECAP read from QEMU 7.2's intel-iommu, default options.
    pub(crate) const QEMU_CAP: u64 = 0x00d2_008c_2226_0206;
    pub(crate) const QEMU_ECAP: u64 = 0x0000_0000_00f0_0f4a;

    #[test]
    fn qemu_7_2_defaults() {
        let caps = Capabilities::decode(QEMU_CAP, QEMU_ECAP).unwrap();
        assert_eq!(caps.domain_id_bits, 16);
        assert_eq!(caps.domain_count(), 65536);
        assert!(!caps.write_buffer_flush && !caps.caching_mode);
        assert!(!caps.protected_low_memory && !caps.protected_high_memory);
        assert!(caps.supports(AddressWidth::Bits39) && !caps.supports(AddressWidth::Bits48));
        assert_eq!(caps.max_guest_address_width, 39);
        assert_eq!(caps.superpages, Superpages { two_mebibytes: true, one_gibibyte: true });
        assert!(caps.page_selective_invalidation);
        assert_eq!(caps.max_address_mask, 18);
        assert_eq!((caps.fault_recording_offset, caps.fault_recording_count), (0x220, 1));
        assert!(caps.drain_reads && caps.drain_writes);
        assert!(!caps.coherent, "QEMU reports non-coherent page walks");
        assert!(caps.queued_invalidation && caps.interrupt_remapping && caps.pass_through);
        assert!(!caps.device_tlb && !caps.extended_interrupt_mode && !caps.snoop_control);
        assert_eq!(caps.iotlb_register_offset, 0xf0);
        assert_eq!(caps.width_for(28), Ok(AddressWidth::Bits39));
        assert_eq!(caps.width_for(48), Err(CapabilityError::WidthUnavailable { wanted: 48 }));
        assert_eq!(caps.widest(), Some(AddressWidth::Bits39));
        assert_eq!(caps.input_bits(AddressWidth::Bits39), 39);
        assert_eq!(caps.check_register_window(4096), Ok(()));
        assert_eq!(caps.check_register_window(0x22f), Err(CapabilityError::FaultRegisters { offset: 0x220, count: 1 }));
    }

    #[test]
    fn qemu_7_2_caching_mode_and_48_bit_options() {
        // `caching-mode=on` sets CAP bit 7; `aw-bits=48` adds SAGAW bit 2
        // and MGAW 47; `intremap=off` clears ECAP.IR.
        let caching = Capabilities::decode(0x00d2_008c_2226_0286, QEMU_ECAP).unwrap();
        assert!(caching.caching_mode);
        let wide = Capabilities::decode(0x00d2_008c_222f_0606, QEMU_ECAP).unwrap();
        assert!(wide.supports(AddressWidth::Bits39) && wide.supports(AddressWidth::Bits48));
        assert_eq!(wide.max_guest_address_width, 48);
        assert_eq!(wide.width_for(28), Ok(AddressWidth::Bits39));
        assert_eq!(wide.width_for(40), Ok(AddressWidth::Bits48));
        assert_eq!(wide.widest(), Some(AddressWidth::Bits48));
        let no_ir = Capabilities::decode(QEMU_CAP, 0xf42).unwrap();
        assert!(!no_ir.interrupt_remapping && no_ir.queued_invalidation);
    }

    #[test]
    fn unusable_fields_are_errors() {
        assert_eq!(Capabilities::decode(QEMU_CAP | 7, QEMU_ECAP), Err(CapabilityError::DomainIdField));
        let no_width = QEMU_CAP & !(0x1f << 8) | 1 << 8;
        assert_eq!(Capabilities::decode(no_width, QEMU_ECAP), Err(CapabilityError::NoSupportedWidth { sagaw: 1 }));
        let caps = Capabilities::decode(QEMU_CAP, QEMU_ECAP | 0x3ff << 8).unwrap();
        assert_eq!(caps.iotlb_register_offset, 0x3ff0);
        assert_eq!(caps.check_register_window(4096), Err(CapabilityError::IotlbRegisters { offset: 0x3ff0 }));
        let many = Capabilities::decode(QEMU_CAP | 0xff << 40 | 0x3ff << 24, QEMU_ECAP).unwrap();
        assert_eq!((many.fault_recording_offset, many.fault_recording_count), (0x3ff0, 256));
        assert!(many.check_register_window(0x4fef).is_err());
        assert!(many.check_register_window(0x4ff0).is_ok());
    }

    #[test]
    fn width_encodings_round_trip() {
        for width in AddressWidth::ALL {
            assert_eq!(AddressWidth::from_encoding(width.encoding()), Some(width));
        }
        assert_eq!(AddressWidth::from_encoding(0), None);
        assert_eq!(AddressWidth::Bits48.levels(), 4);
    }

    #[test]
    fn every_cap_value_decodes_without_panicking() {
        let mut random = XorShift::new(0x1234_5678_9abc_def1);
        for _ in 0..10_000 {
            let state = random.next_u64();
            if let Ok(caps) = Capabilities::decode(state, state.rotate_left(17)) {
                let _ = caps.check_register_window(4096);
                let _ = caps.width_for((state >> 58) as u8);
                assert!(caps.widest().is_some());
            }
        }
    }
}
