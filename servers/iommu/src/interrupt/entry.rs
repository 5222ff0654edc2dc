//! Interrupt-remapping table entries (IRTEs) and the MSI messages that name them.
//!
//! An entry is 128 bits (VT-d 9.10): present (bit 0), destination mode
//! (2, 0: physical), redirection hint (3), trigger mode (4), delivery mode
//! (7:5), the vector (23:16) and the destination (63:32; in xAPIC mode
//! the APIC id sits in bits 47:40), then the source-id check: SID
//! (79:64), SQ (81:80) and SVT (83:82). Everything else is reserved and
//! zero. The server only writes fixed-delivery, physical-destination
//! entries: what the kernel's own vectors need.
//!
//! A message in *compatibility format* (address bit 4 clear) names a CPU
//! and a vector itself; in *remappable format* (bit 4 set) its address
//! carries the entry's handle: bits 19:5 are handle bits 14:0, bit 2 is
//! handle bit 15, bit 3 (SHV) says the data holds a sub-handle added to it.

use super::source::SourceCheck;

/// Where interrupt messages are written: the local APICs' window.
pub const INTERRUPT_WINDOW: u64 = 0xfee0_0000;
/// Address bits 31:20 of every interrupt message.
const WINDOW_MASK: u64 = 0xfff0_0000;
/// Address bit 4: remappable format.
const FORMAT_REMAPPABLE: u64 = 1 << 4;
/// Address bit 3: the data holds a sub-handle (remappable format).
const SUBHANDLE_VALID: u64 = 1 << 3;
/// Address bit 3 in compatibility format: redirection hint.
const REDIRECTION_HINT: u64 = 1 << 3;
/// Address bit 2 in compatibility format: logical destination.
const LOGICAL_DESTINATION: u64 = 1 << 2;
/// Lowest vector a device may be given (0-15 are reserved by the CPU).
pub const FIRST_VECTOR: u8 = 0x10;

/// How an interrupt is triggered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// Edge-triggered: every MSI, and edge IO APIC lines.
    Edge,
    /// Level-triggered IO APIC lines.
    Level,
}

/// Where an entry delivers: a vector on one CPU, fixed delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// The CPU vector.
    pub vector: u8,
    /// The destination's local APIC id (xAPIC: 8 bits).
    pub destination: u8,
    /// The trigger mode.
    pub trigger: Trigger,
}

/// A present remapping entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemapEntry {
    /// What it delivers.
    pub delivery: Delivery,
    /// Which requester ids may use it.
    pub source: SourceCheck,
}

impl RemapEntry {
    /// The entry's low and high 64 bits.
    pub fn encode(&self) -> [u64; 2] {
        let trigger = match self.delivery.trigger {
            Trigger::Edge => 0,
            Trigger::Level => 1 << 4,
        };
        // Present; physical destination, no redirection hint, fixed
        // delivery (bits 2, 3 and 7:5 zero); fault reporting on (FPD 0).
        let low = 1 | trigger | u64::from(self.delivery.vector) << 16 | u64::from(self.delivery.destination) << 40;
        let (svt, sq, sid) = self.source.fields();
        let svt = if cfg!(feature = "mutant-irte-no-source-id") { 0 } else { svt };
        let high = u64::from(sid) | u64::from(sq) << 16 | u64::from(svt) << 18;
        [low, high]
    }

    /// Decodes an entry this module wrote; `None` for a not-present entry
    /// or one using fields the server never sets.
    pub fn decode([low, high]: [u64; 2]) -> Option<Self> {
        const LOW_KNOWN: u64 = 1 | 1 << 4 | 0xff << 16 | 0xff << 40;
        const HIGH_KNOWN: u64 = 0xf_ffff;
        if low & 1 == 0 || low & !LOW_KNOWN != 0 || high & !HIGH_KNOWN != 0 {
            return None;
        }
        let trigger = if low & 1 << 4 != 0 { Trigger::Level } else { Trigger::Edge };
        let delivery = Delivery { vector: (low >> 16) as u8, destination: (low >> 40) as u8, trigger };
        let source = SourceCheck::from_fields((high >> 18) as u8 & 3, (high >> 16) as u8 & 3, high as u16)?;
        Some(Self { delivery, source })
    }
}

/// Why a message is not one the server remaps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageError {
    /// The address is outside the interrupt window (or above 4 GiB).
    NotInterruptWindow,
    /// The message is in remappable format already.
    AlreadyRemappable,
    /// Logical destination or redirection hint: not a single CPU.
    NotOneCpu,
    /// Not fixed delivery, or level-triggered.
    NotFixedEdge,
    /// A vector the CPU reserves.
    ReservedVector,
}

impl core::fmt::Display for MessageError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::NotInterruptWindow => "the address is not in the interrupt window 0xfee00000",
            Self::AlreadyRemappable => "the message is in remappable format already",
            Self::NotOneCpu => "the message does not name one CPU (logical destination or redirection hint)",
            Self::NotFixedEdge => "the message is not a fixed-delivery, edge-triggered one",
            Self::ReservedVector => "the vector is one the CPU reserves (below 0x10)",
        })
    }
}

/// A compatibility-format MSI, as the kernel's `IrqAllocMsi` returns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompatMessage {
    /// The message address.
    pub address: u64,
    /// The message data.
    pub data: u32,
}

impl CompatMessage {
    /// What the message delivers, if it is a plain fixed, edge-triggered,
    /// physical-destination MSI to one CPU.
    pub fn delivery(self) -> Result<Delivery, MessageError> {
        if self.address & WINDOW_MASK != INTERRUPT_WINDOW || self.address >> 32 != 0 {
            return Err(MessageError::NotInterruptWindow);
        }
        if self.address & FORMAT_REMAPPABLE != 0 {
            return Err(MessageError::AlreadyRemappable);
        }
        if self.address & (REDIRECTION_HINT | LOGICAL_DESTINATION) != 0 {
            return Err(MessageError::NotOneCpu);
        }
        // Data bits 10:8 delivery mode (0: fixed), bit 15 trigger mode.
        if self.data & (0x7 << 8 | 1 << 15) != 0 || self.data >> 16 != 0 {
            return Err(MessageError::NotFixedEdge);
        }
        let vector = self.data as u8;
        if vector < FIRST_VECTOR {
            return Err(MessageError::ReservedVector);
        }
        Ok(Delivery { vector, destination: (self.address >> 12) as u8, trigger: Trigger::Edge })
    }
}

/// The remappable-format message (address, data) naming entry `handle`:
/// sub-handle valid with a zero sub-handle, as single-vector MSI uses.
pub fn remappable_message(handle: u16) -> (u64, u32) {
    let low = u64::from(handle & 0x7fff) << 5;
    let high = u64::from(handle >> 15) << 2;
    (INTERRUPT_WINDOW | low | high | FORMAT_REMAPPABLE | SUBHANDLE_VALID, 0)
}

/// The handle a remappable-format message names (its sub-handle added),
/// or `None` for a compatibility-format message or one outside the window.
pub fn handle_of(address: u64, data: u32) -> Option<u16> {
    if address & WINDOW_MASK != INTERRUPT_WINDOW || address >> 32 != 0 || address & FORMAT_REMAPPABLE == 0 {
        return None;
    }
    let handle = ((address >> 5) & 0x7fff) as u16 | (((address >> 2) & 1) as u16) << 15;
    if address & SUBHANDLE_VALID != 0 { handle.checked_add(data as u16) } else { Some(handle) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(vector: u8, destination: u8, trigger: Trigger, source: SourceCheck) -> RemapEntry {
        RemapEntry { delivery: Delivery { vector, destination, trigger }, source }
    }

    #[test]
    fn entries_encode_as_the_specification_lays_them_out() {
        let edge = entry(0x31, 0, Trigger::Edge, SourceCheck::Exact(0x0018));
        // P, vector 0x31; SVT 1 (verify SID), SQ 0, SID 00:03.0.
        assert_eq!(edge.encode(), [0x0031_0001, 0x4_0018]);
        let level = entry(0x40, 2, Trigger::Level, SourceCheck::Exact(0xff00));
        assert_eq!(level.encode(), [0x0000_0200_0040_0011, 0x4_ff00]);
        // Bus range 1..=3: SVT 2, start bus in the SID's upper byte.
        let bus = entry(0x33, 0, Trigger::Edge, SourceCheck::Buses { first: 1, last: 3 });
        assert_eq!(bus.encode()[1], 0x8_0103);
        let masked = entry(0x34, 0, Trigger::Edge, SourceCheck::MaskedFunction { id: 0x0020, qualifier: 3 });
        assert_eq!(masked.encode()[1], 0x7_0020);
    }

    #[test]
    fn reserved_fields_stay_zero_and_entries_round_trip() {
        // QEMU checks bits 14:12, 31:24 and 127:84 are zero.
        let reserved_low: u64 = 0x7 << 12 | 0xff << 24;
        let reserved_high: u64 = !0xf_ffff;
        for vector in [0x10, 0x7f, 0xfe] {
            for source in [
                SourceCheck::Exact(0xffff),
                SourceCheck::Buses { first: 0, last: 255 },
                SourceCheck::MaskedFunction { id: 0x0107, qualifier: 1 },
            ] {
                for trigger in [Trigger::Edge, Trigger::Level] {
                    let original = entry(vector, 0xff, trigger, source);
                    let [low, high] = original.encode();
                    assert_eq!((low & reserved_low, high & reserved_high), (0, 0));
                    assert_eq!(RemapEntry::decode([low, high]), Some(original));
                }
            }
        }
        assert_eq!(RemapEntry::decode([0, 0]), None, "not present");
        assert_eq!(RemapEntry::decode([1 | 1 << 2, 0]), None, "a logical destination is not the server's");
    }

    #[test]
    fn the_kernels_messages_decode_and_others_are_refused() {
        let kernel = CompatMessage { address: 0xfee0_0000, data: 0x31 };
        assert_eq!(kernel.delivery(), Ok(Delivery { vector: 0x31, destination: 0, trigger: Trigger::Edge }));
        let cpu3 = CompatMessage { address: 0xfee0_3000, data: 0xef };
        assert_eq!(cpu3.delivery().map(|d| d.destination), Ok(3));
        let refused = [
            (0x1_fee0_0000, 0x31, MessageError::NotInterruptWindow),
            (0xfed0_0000, 0x31, MessageError::NotInterruptWindow),
            (0xfee0_0010, 0x31, MessageError::AlreadyRemappable),
            (0xfee0_0004, 0x31, MessageError::NotOneCpu),
            (0xfee0_0008, 0x31, MessageError::NotOneCpu),
            (0xfee0_0000, 0x0131, MessageError::NotFixedEdge),
            (0xfee0_0000, 0x8031, MessageError::NotFixedEdge),
            (0xfee0_0000, 0x1_0031, MessageError::NotFixedEdge),
            (0xfee0_0000, 0x0f, MessageError::ReservedVector),
        ];
        for (address, data, error) in refused {
            assert_eq!(CompatMessage { address, data }.delivery(), Err(error), "{address:#x}/{data:#x}");
        }
    }

    #[test]
    fn remappable_messages_carry_the_whole_handle() {
        assert_eq!(remappable_message(0), (0xfee0_0018, 0));
        assert_eq!(remappable_message(5), (0xfee0_00b8, 0));
        // Handle bit 15 lives in address bit 2.
        assert_eq!(remappable_message(0x8001), (0xfee0_003c, 0));
        for handle in [0, 1, 0x7fff, 0x8000, 0xffff] {
            let (address, data) = remappable_message(handle);
            assert_eq!(handle_of(address, data), Some(handle));
        }
        assert_eq!(handle_of(0xfee0_0000, 0x31), None, "compatibility format");
        assert_eq!(handle_of(0xfee0_0018 | 5 << 5, 2), Some(7), "sub-handle added");
        assert_eq!(handle_of(0xfee0_0010 | 3 << 5, 9), Some(3), "no sub-handle");
        assert_eq!(handle_of(0xfffe_0018, 0), None);
    }
}
