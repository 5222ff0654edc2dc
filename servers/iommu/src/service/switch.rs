//! Moving a group's requesters between domains: context entries on the
//! group's unit and the invalidations that make the move take effect, for
//! the ownership state machine (`crate::ownership::GroupHardware`).

use heapless::Vec;

use super::domains::{DomainIndex, Domains};
use super::placement::GroupUnit;
use super::units::UnitIndex;
use super::{Hardware, Platform};
use crate::context::TranslatedContext;
use crate::ownership::{GroupHardware, GroupId, SwitchFailed, Translation};

/// Most requester ids one group's devices use (members and their DMA
/// aliases); a topology with a larger group is refused, never truncated.
pub const MAX_REQUESTERS: usize = 64;

/// The requester ids of each group, indexed by group.
pub type Requesters = Vec<Vec<u16, MAX_REQUESTERS>, { crate::ownership::MAX_GROUPS }>;

/// Everything a translation switch touches, borrowed from the service.
pub struct Switch<'a, P: Platform> {
    /// The units and their table memory.
    pub hw: &'a mut Hardware<P>,
    /// Requester ids per group.
    pub requesters: &'a Requesters,
    /// The unit of each group.
    pub units: &'a [GroupUnit],
    /// The domains (each records the units it is installed on).
    pub domains: &'a mut Domains,
    /// Each group's default domain.
    pub defaults: &'a [DomainIndex],
    /// Each user address space's domain, by address-space id.
    pub ioas_domain: &'a dyn Fn(u16) -> Option<DomainIndex>,
}

impl<'a, P: Platform> Switch<'a, P> {
    /// A switch over `hw`'s units and tables.
    pub fn new(
        hw: &'a mut Hardware<P>,
        requesters: &'a Requesters,
        units: &'a [GroupUnit],
        domains: &'a mut Domains,
        defaults: &'a [DomainIndex],
        ioas_domain: &'a dyn Fn(u16) -> Option<DomainIndex>,
    ) -> Self {
        Self { hw, requesters, units, domains, defaults, ioas_domain }
    }

    /// Points `source` on `unit` at `domain` (or blocks it with `None`).
    fn point(&mut self, unit: UnitIndex, source: u16, domain: Option<DomainIndex>) -> Result<(), SwitchFailed> {
        let Hardware { units, pages } = &mut *self.hw;
        let driven = units.get_mut(usize::from(unit)).ok_or(SwitchFailed)?;
        let current = driven.context.entry(pages, source);
        let target = match domain {
            Some(index) => {
                let domain = self.domains.get(index).ok_or(SwitchFailed)?;
                // Checked before anything changes: a unit that cannot walk
                // the domain's tables leaves the requester as it was.
                if !driven.walks(domain) {
                    return Err(SwitchFailed);
                }
                let context = TranslatedContext {
                    page_table: domain.table.root(),
                    width: domain.table.config().width,
                    domain: domain.id,
                    fault_processing_disable: false,
                };
                Some((index, context))
            }
            None => None,
        };
        if current.is_present() && target.map(|(_, context)| context.domain) == current.domain() {
            return Ok(());
        }
        if current.is_present() {
            // A present entry is never rewritten in place: clear, then install.
            let cleared = driven.context.clear(pages, source);
            let cleared = if cfg!(feature = "mutant-move-no-context-flush") { Default::default() } else { cleared };
            driven.unit.perform(&cleared).map_err(|_| SwitchFailed)?;
        }
        if let Some((index, context)) = target {
            let installed = driven.context.install(pages, source, context).map_err(|_| SwitchFailed)?;
            // From the install on, the unit's caches may hold the domain's
            // translations: its invalidations go here too.
            if let Some(domain) = self.domains.get_mut(index) {
                domain.units = domain.units.with(unit);
            }
            driven.unit.perform(&installed).map_err(|_| SwitchFailed)?;
        }
        Ok(())
    }
}

impl<P: Platform> GroupHardware for Switch<'_, P> {
    fn set_translation(&mut self, group: GroupId, translation: Translation) -> Result<(), SwitchFailed> {
        let Some(unit) = self.units.get(usize::from(group)).and_then(|placed| placed.driven()) else {
            // A group no one unit translates has no context entry on any
            // unit: it is blocked already, and may never be anything else.
            return if translation == Translation::Blocking { Ok(()) } else { Err(SwitchFailed) };
        };
        let domain = match translation {
            Translation::Blocking => None,
            Translation::Default => Some(*self.defaults.get(usize::from(group)).ok_or(SwitchFailed)?),
            Translation::Ioas(ioas) => Some((self.ioas_domain)(ioas).ok_or(SwitchFailed)?),
        };
        let requesters = self.requesters;
        let sources = requesters.get(usize::from(group)).ok_or(SwitchFailed)?;
        for &source in sources {
            if let Err(failure) = self.point(unit, source, domain) {
                // Never leave a loosened mix behind: block what was switched.
                for &source in sources {
                    let _ = self.point(unit, source, None);
                }
                return Err(failure);
            }
        }
        Ok(())
    }
}
