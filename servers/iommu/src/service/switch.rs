//! Moving a group's requesters between domains: context entries and the
//! invalidations that make the move take effect, for the ownership state
//! machine (`crate::ownership::GroupHardware`).

use heapless::Vec;

use super::domains::{DomainIndex, Domains};
use super::{Hardware, Platform};
use crate::capability::AddressWidth;
use crate::context::{ContextTables, TranslatedContext};
use crate::ownership::{GroupHardware, GroupId, SwitchFailed, Translation};
use crate::unit::RemappingUnit;

/// Most requester ids one group's devices use (members and their DMA
/// aliases); a topology with a larger group is refused, never truncated.
pub const MAX_REQUESTERS: usize = 64;

/// The requester ids of each group, indexed by group.
pub type Requesters = Vec<Vec<u16, MAX_REQUESTERS>, { crate::ownership::MAX_GROUPS }>;

/// Everything a translation switch touches, borrowed from the service.
pub struct Switch<'a, P: Platform> {
    /// The unit, for invalidations.
    pub unit: &'a mut RemappingUnit<P::Registers, P::Queue>,
    /// Table memory.
    pub pages: &'a mut P::Pages,
    /// The root and context tables.
    pub context: &'a mut ContextTables,
    /// Width of every domain's table.
    pub width: AddressWidth,
    /// Requester ids per group.
    pub requesters: &'a Requesters,
    /// The domains.
    pub domains: &'a Domains,
    /// Each group's default domain.
    pub defaults: &'a [DomainIndex],
    /// Each user address space's domain, by address-space id.
    pub ioas_domain: &'a dyn Fn(u16) -> Option<DomainIndex>,
}

impl<'a, P: Platform> Switch<'a, P> {
    /// A switch over `hw`'s unit and tables.
    pub fn new(
        hw: &'a mut Hardware<P>,
        requesters: &'a Requesters,
        domains: &'a Domains,
        defaults: &'a [DomainIndex],
        ioas_domain: &'a dyn Fn(u16) -> Option<DomainIndex>,
    ) -> Self {
        Self {
            unit: &mut hw.unit,
            pages: &mut hw.pages,
            context: &mut hw.context,
            width: hw.width,
            requesters,
            domains,
            defaults,
            ioas_domain,
        }
    }

    /// Points `source` at `domain` (or blocks it with `None`).
    fn point(&mut self, source: u16, domain: Option<DomainIndex>) -> Result<(), SwitchFailed> {
        let current = self.context.entry(self.pages, source);
        let target = match domain {
            Some(index) => Some(self.domains.get(index).ok_or(SwitchFailed)?),
            None => None,
        };
        if current.is_present() && target.map(|domain| domain.id) == current.domain() {
            return Ok(());
        }
        if current.is_present() {
            // A present entry is never rewritten in place: clear, then install.
            let cleared = self.context.clear(self.pages, source);
            let cleared = if cfg!(feature = "mutant-move-no-context-flush") { Default::default() } else { cleared };
            self.unit.perform(&cleared).map_err(|_| SwitchFailed)?;
        }
        if let Some(domain) = target {
            let context = TranslatedContext {
                page_table: domain.table.root(),
                width: self.width,
                domain: domain.id,
                fault_processing_disable: false,
            };
            let installed = self.context.install(self.pages, source, context).map_err(|_| SwitchFailed)?;
            self.unit.perform(&installed).map_err(|_| SwitchFailed)?;
        }
        Ok(())
    }
}

impl<P: Platform> GroupHardware for Switch<'_, P> {
    fn set_translation(&mut self, group: GroupId, translation: Translation) -> Result<(), SwitchFailed> {
        let domain = match translation {
            Translation::Blocking => None,
            Translation::Default => Some(*self.defaults.get(usize::from(group)).ok_or(SwitchFailed)?),
            Translation::Ioas(ioas) => Some((self.ioas_domain)(ioas).ok_or(SwitchFailed)?),
        };
        let requesters = self.requesters;
        let sources = requesters.get(usize::from(group)).ok_or(SwitchFailed)?;
        for &source in sources {
            if let Err(failure) = self.point(source, domain) {
                // Never leave a loosened mix behind: block what was switched.
                for &source in sources {
                    let _ = self.point(source, None);
                }
                return Err(failure);
            }
        }
        Ok(())
    }
}
