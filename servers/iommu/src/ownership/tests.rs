//! The ownership state machine under random operation sequences, with
//! hardware that sometimes refuses, checking the invariant after each step.

use xorshift::XorShift;

use super::*;

/// Hardware that records each group's translation and fails on demand.
struct Model {
    programmed: std::vec::Vec<Translation>,
    fail_next: bool,
    partial: bool,
}

impl GroupHardware for Model {
    fn set_translation(&mut self, group: GroupId, translation: Translation) -> Result<(), SwitchFailed> {
        if core::mem::take(&mut self.fail_next) {
            if self.partial {
                // A half-done switch leaves the devices blocked, never loosened.
                self.programmed[usize::from(group)] = Translation::Blocking;
            }
            return Err(SwitchFailed);
        }
        self.programmed[usize::from(group)] = translation;
        Ok(())
    }
}

/// The invariant: what the hardware does agrees with who owns the group.
fn check(ownership: &Ownership, model: &Model) {
    for (group, owner) in ownership.owners() {
        let programmed = model.programmed[usize::from(group)];
        match owner {
            Owner::User { .. } | Owner::Reclaiming { .. } => {
                assert_ne!(programmed, Translation::Default, "group {group} is {owner:?} but translates by default")
            }
            Owner::Unowned | Owner::Kernel { .. } => {
                assert_eq!(programmed, Translation::Default, "group {group} is {owner:?}")
            }
        }
        if let Owner::User { ioas: Some(ioas), .. } = owner {
            assert_eq!(programmed, Translation::Ioas(ioas));
        }
    }
}

fn setup(groups: usize) -> (Ownership, Model) {
    (Ownership::new(groups), Model { programmed: vec![Translation::Default; groups], fail_next: false, partial: false })
}

#[test]
fn kernel_and_user_exclude_each_other() {
    let (mut ownership, mut hw) = setup(2);
    ownership.claim_kernel(0).expect("unowned");
    ownership.claim_kernel(0).expect("a second driver shares the default domain");
    assert_eq!(ownership.claim_user(0, 7, &mut hw), Err(OwnershipError::Busy(Owner::Kernel { drivers: 2 })));
    ownership.claim_user(1, 7, &mut hw).expect("unowned");
    assert_eq!(hw.programmed[1], Translation::Blocking, "blocked before it is the user's");
    assert_eq!(ownership.claim_kernel(1), Err(OwnershipError::Busy(Owner::User { task: 7, ioas: None })));
    assert_eq!(ownership.claim_user(1, 8, &mut hw), Err(OwnershipError::Busy(Owner::User { task: 7, ioas: None })));
    ownership.release_kernel(0).expect("owned");
    ownership.release_kernel(0).expect("owned");
    assert_eq!(ownership.owner(0), Ok(Owner::Unowned));
    assert_eq!(ownership.release_kernel(0), Err(OwnershipError::NotOwner));
    check(&ownership, &hw);
}

#[test]
fn a_released_or_orphaned_group_stays_blocked_until_quiesced() {
    let (mut ownership, mut hw) = setup(3);
    ownership.claim_user(0, 4, &mut hw).expect("unowned");
    ownership.claim_user(1, 4, &mut hw).expect("unowned");
    ownership.attach(1, 4, Some(9), &mut hw).expect("owner");
    assert_eq!(hw.programmed[1], Translation::Ioas(9));
    assert_eq!(ownership.attach(1, 5, None, &mut hw), Err(OwnershipError::NotOwner));
    ownership.release_user(0, 4, &mut hw).expect("owner");
    assert_eq!(ownership.task_died(4, &mut hw).as_slice(), &[1]);
    assert_eq!(hw.programmed[1], Translation::Blocking, "nothing the dead task mapped stays reachable");
    assert_eq!(ownership.reclaiming().collect::<std::vec::Vec<_>>(), [0, 1]);
    assert_eq!(ownership.claim_kernel(0), Err(OwnershipError::Busy(Owner::Reclaiming { task: 4 })));
    assert_eq!(ownership.claim_user(1, 5, &mut hw), Err(OwnershipError::Busy(Owner::Reclaiming { task: 4 })));
    ownership.reclaimed(0, &mut hw).expect("reclaiming");
    ownership.claim_kernel(0).expect("a driver can bind again");
    assert_eq!(ownership.reclaimed(2, &mut hw), Err(OwnershipError::NotOwner));
    assert_eq!(ownership.owner(3), Err(OwnershipError::NoSuchGroup));
    check(&ownership, &hw);
}

#[test]
fn refused_hardware_changes_leave_a_safe_state() {
    let (mut ownership, mut hw) = setup(1);
    hw.fail_next = true;
    assert_eq!(ownership.claim_user(0, 1, &mut hw), Err(OwnershipError::Hardware));
    assert_eq!(ownership.owner(0), Ok(Owner::Unowned));
    ownership.claim_user(0, 1, &mut hw).expect("works now");
    hw.fail_next = true;
    hw.partial = true;
    assert_eq!(ownership.attach(0, 1, Some(3), &mut hw), Err(OwnershipError::Hardware));
    assert_eq!(ownership.owner(0), Ok(Owner::User { task: 1, ioas: None }));
    check(&ownership, &hw);
}

#[test]
fn random_sequences_keep_the_invariant() {
    let mut random = XorShift::new(0x9e37_79b9_7f4a_7c15);
    for _ in 0..200 {
        let groups = 1 + random.below(6) as usize;
        let (mut ownership, mut hw) = setup(groups);
        for _ in 0..300 {
            let group = random.below(groups as u64 + 1) as GroupId;
            let task = random.below(4) as TaskIndex;
            hw.fail_next = random.below(10) == 0;
            hw.partial = random.below(2) == 0;
            let before = ownership.owner(group);
            let result = match random.below(8) {
                0 => ownership.claim_kernel(group),
                1 => ownership.release_kernel(group),
                2 => ownership.claim_user(group, task, &mut hw),
                3 => ownership.attach(group, task, (random.below(2) == 0).then(|| random.below(3) as IoasId), &mut hw),
                4 => ownership.release_user(group, task, &mut hw),
                5 => {
                    ownership.task_died(task, &mut hw);
                    Ok(())
                }
                _ => ownership.reclaimed(group, &mut hw),
            };
            hw.fail_next = false;
            check(&ownership, &hw);
            if let Err(OwnershipError::Busy(owner)) = result {
                assert_eq!(before, Ok(owner), "a busy error names the current holder");
            }
        }
    }
}
