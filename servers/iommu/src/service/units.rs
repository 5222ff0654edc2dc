//! The remapping units the server drives: each one's registers, tables and interrupt table.
//!
//! Every unit granted to the server is brought up on its own, over its own
//! root table, with translation on and every requester blocked before any
//! device can be handed out. A unit that cannot be brought up is kept as
//! [`DownUnit`] with the reason: the devices DMAR puts under it are handed
//! out to no one, while the other units' are. Domains are shared out of
//! one pool and one table memory; each domain records the units whose
//! caches may hold its translations, and every invalidation of it goes to
//! exactly those.

use core::fmt;

use capabilities::config::IommuConfig;
use heapless::Vec;

use super::domains::Domain;
use super::{Platform, StartError};
use crate::capability::Capabilities;
use crate::context::ContextTables;
use crate::domain::DomainId;
use crate::interrupt::remapping::InterruptState;
use crate::invalidation::Invalidation;
use crate::pagetable::PageTableConfig;
use crate::unit::{QueueConfig, RemappingUnit, UnitError};

/// Most remapping units one server drives (a unit per socket, and one
/// for integrated graphics, on the larger machines).
pub const MAX_UNITS: usize = 8;

/// A driven unit, by its place in [`Hardware::units`].
pub type UnitIndex = u8;

/// Units, by index: those whose caches may hold a domain's translations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UnitSet(u8);

const _: () = assert!(MAX_UNITS <= u8::BITS as usize);

impl UnitSet {
    /// No unit.
    pub const EMPTY: Self = Self(0);

    /// The set with `unit` added.
    pub fn with(self, unit: UnitIndex) -> Self {
        Self(self.0 | 1u8.checked_shl(u32::from(unit)).unwrap_or(0))
    }

    /// Whether `unit` is in the set.
    pub fn contains(self, unit: UnitIndex) -> bool {
        usize::from(unit) < MAX_UNITS && self.0 >> unit & 1 != 0
    }

    /// The units in the set, lowest first.
    pub fn iter(self) -> impl Iterator<Item = UnitIndex> {
        (0..MAX_UNITS as u8).filter(move |&unit| self.contains(unit))
    }
}

/// One unit to drive, as the platform found it.
pub struct UnitParts<P: Platform> {
    /// Its register base (DMAR names units by it).
    pub base: u64,
    /// Its register window.
    pub registers: P::Registers,
    /// Bytes of the window (the DRHD's register size).
    pub register_window: u64,
    /// Its invalidation queue's memory, if it is to use one.
    pub queue: Option<(P::Queue, QueueConfig)>,
}

/// A unit the server drives.
pub struct Unit<P: Platform> {
    /// Its register base.
    pub base: u64,
    /// The unit.
    pub unit: RemappingUnit<P::Registers, P::Queue>,
    /// Its root and context tables.
    pub context: ContextTables,
    /// How domain tables it walks are built (its widest width, MGAW,
    /// superpages, coherence).
    pub table_config: PageTableConfig,
    /// Its interrupt-remapping table, if it remaps interrupts.
    pub interrupts: InterruptState,
}

/// A unit granted to the server that did not come up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DownUnit {
    /// Its register base.
    pub base: u64,
    /// Why.
    pub reason: StartError,
}

/// The hardware side: the driven units, and the table memory every one of
/// them walks.
pub struct Hardware<P: Platform> {
    /// The driven units, in the order they were granted.
    pub units: Vec<Unit<P>, MAX_UNITS>,
    /// Table memory.
    pub pages: P::Pages,
}

impl fmt::Display for StartError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unit(error) => write!(formatter, "{error}"),
            Self::OutOfTablePages => formatter.write_str("no table memory for its root table"),
            Self::NoWidth => formatter.write_str("it supports no usable table width"),
            Self::NoUnit => formatter.write_str("no remapping unit came up"),
            Self::TooManyUnits => write!(formatter, "more than {MAX_UNITS} remapping units were granted"),
        }
    }
}

impl<P: Platform> Unit<P> {
    /// Brings a unit up over a fresh root table with queued invalidation
    /// when given, turns translation on with every requester blocked, and
    /// sets interrupt remapping up where the unit can.
    pub(super) fn bring_up(
        parts: UnitParts<P>,
        pages: &mut P::Pages,
        config: &IommuConfig,
        host_address_width: u8,
    ) -> Result<Self, StartError> {
        let mut unit = RemappingUnit::new(parts.registers, parts.register_window).map_err(StartError::Unit)?;
        let capabilities: Capabilities = *unit.capabilities();
        let width = capabilities.widest().ok_or(StartError::NoWidth)?;
        let table_config =
            PageTableConfig::new(&capabilities, width, host_address_width).map_err(|_| StartError::NoWidth)?;
        let context = ContextTables::new(pages, &capabilities).map_err(|_| StartError::OutOfTablePages)?;
        // From here on a failure keeps the root page: the unit may have
        // latched its address, so it is never handed out again.
        unit.bring_up(context.root(), parts.queue).map_err(StartError::Unit)?;
        // Translation goes on at once, over a root table with no entries:
        // every requester is blocked until its group's context entries
        // exist, whatever firmware left the unit doing.
        unit.enable_translation().map_err(StartError::Unit)?;
        let interrupts = InterruptState::start(&mut unit, pages, config);
        Ok(Self { base: parts.base, unit, context, table_config, interrupts })
    }

    /// Whether the unit can walk `domain`'s tables: built to its own
    /// configuration (width, MGAW, superpages, coherence), with an id its
    /// caches can tell apart. A domain's tables are shared between units
    /// only then.
    pub fn walks(&self, domain: &Domain) -> bool {
        *domain.table.config() == self.table_config
            && DomainId::new(domain.id.get(), self.unit.capabilities()).is_some()
    }
}

impl<P: Platform> Hardware<P> {
    /// The driven unit `index`.
    pub fn unit(&mut self, index: UnitIndex) -> Option<&mut Unit<P>> {
        self.units.get_mut(usize::from(index))
    }

    /// Has every unit of `units` carry out what `needed` says its
    /// capabilities require; every one is asked even after a failure,
    /// and the first failure is returned.
    pub(crate) fn invalidate(
        &mut self,
        units: UnitSet,
        needed: impl Fn(&Capabilities) -> Invalidation,
    ) -> Result<(), UnitError> {
        let mut outcome = Ok(());
        for index in units.iter() {
            let Some(unit) = self.units.get_mut(usize::from(index)) else { continue };
            let invalidation = needed(unit.unit.capabilities());
            if let Err(error) = unit.unit.perform(&invalidation) {
                error!("unit {=u64:#x}: an invalidation failed: {=str}", unit.base, words(&error).as_str());
                outcome = outcome.and(Err(error));
            }
        }
        outcome
    }
}

/// `error` in words, for the log.
pub(super) fn words(error: &impl fmt::Display) -> heapless::String<96> {
    let mut text = heapless::String::new();
    let _ = core::fmt::write(&mut text, format_args!("{error}"));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unit_set_holds_each_unit_once_and_nothing_past_the_limit() {
        let set = UnitSet::EMPTY.with(2).with(0).with(2).with(MAX_UNITS as u8);
        assert_eq!(set.iter().collect::<std::vec::Vec<_>>(), [0, 2]);
        assert!(!set.contains(1) && !set.contains(MAX_UNITS as u8) && !set.contains(200));
        assert_eq!(UnitSet::EMPTY.iter().count(), 0);
    }
}
