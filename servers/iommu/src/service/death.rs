//! What a watched task's death undoes: its groups blocked and reclaimed, its capabilities and address spaces gone.

use super::domains::MappingOwner;
use super::kernel::Kernel;
use super::mapping::{destroy_domain, unmap_all};
use super::{Platform, Service, change_ownership};
use crate::interrupt::remapping;

/// A watched task died: its groups are blocked and reclaimed, its group
/// capabilities revoked, its address spaces torn down.
// Out of line, so its large frame is not paid for by every request.
#[inline(never)]
pub(super) fn task_died<P: Platform>(s: &mut Service<P>, k: &mut impl Kernel, task: u16) {
    let Some(ready) = s.ready.as_mut() else { return };
    let orphaned = change_ownership(&mut s.hw, &mut s.domains, ready, |ownership, hw| ownership.task_died(task, hw));
    remapping::revoke_task(&mut s.hw, task);
    while let Some(position) = ready.group_caps.iter().position(|c| c.task == task) {
        k.revoke(ready.group_caps.swap_remove(position).slot);
    }
    while let Some(position) = ready.address_spaces.iter().position(|a| a.task == task) {
        let space = ready.address_spaces.swap_remove(position);
        unmap_all(&mut s.hw, &mut s.domains, k, MappingOwner::Ioas(space.id));
        destroy_domain(&mut s.hw, &mut s.domains, space.domain);
    }
    if !orphaned.is_empty() {
        info!(
            "task {=str} died owning {=usize} groups: blocked and reclaiming",
            s.config.tasks.name(task),
            orphaned.len()
        );
        k.request_reclaim();
    }
}
