//! Minted badges: a trusted driver's DMA handle and a user task's group capability.

use capabilities::badge::SERVER_MINTED;

/// What a minted badge stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handle {
    /// A trusted driver's DMA handle on `group`'s default domain.
    Dma {
        /// The group whose default domain it maps into.
        group: u16,
        /// Distinguishes handles minted over time (revoked ones stay dead).
        serial: u32,
    },
    /// A user task's capability to `group`.
    Group {
        /// The group its holder owns.
        group: u16,
        /// Distinguishes capabilities minted over time.
        serial: u32,
    },
}

const KIND_DMA: u64 = 1 << 62;

impl Handle {
    /// The badge the server mints for it.
    pub const fn badge(self) -> u64 {
        match self {
            Handle::Dma { group, serial } => SERVER_MINTED | KIND_DMA | (serial as u64) << 16 | group as u64,
            Handle::Group { group, serial } => SERVER_MINTED | (serial as u64) << 16 | group as u64,
        }
    }

    /// Decodes a badge the server minted; `None` for any other badge.
    pub const fn from_badge(badge: u64) -> Option<Self> {
        if badge & SERVER_MINTED == 0 {
            return None;
        }
        let group = (badge & 0xffff) as u16;
        let serial = ((badge >> 16) & 0xffff_ffff) as u32;
        if badge & KIND_DMA != 0 { Some(Handle::Dma { group, serial }) } else { Some(Handle::Group { group, serial }) }
    }
}
