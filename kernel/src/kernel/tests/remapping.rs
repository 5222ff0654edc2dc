//! IO APIC lines described to, and remapped by, the owner of a remapping unit.

use capabilities::ErrorCode;
use capabilities::abi::{Syscall, rights};
use capabilities::manifest::BootObject;

use super::sim::{Sim, cap, task};

const UNIT: u64 = 0xfed9_0000;
/// A second unit, whose DMAR scope lists no IO APIC.
const OTHER_UNIT: u64 = 0xfed9_1000;

fn rig() -> Sim {
    let caps = [
        cap(8, BootObject::Interrupt { gsi: 8, level: false }, rights::ACK, 0),
        cap(9, BootObject::DeviceMemory { base: UNIT, pages: 1 }, rights::READ | rights::WRITE, 0),
        cap(10, BootObject::DeviceMemory { base: 0xfeb0_0000, pages: 1 }, rights::READ | rights::WRITE, 0),
        cap(11, BootObject::Interrupt { gsi: 11, level: true }, rights::ACK, 0),
        cap(12, BootObject::DeviceMemory { base: OTHER_UNIT, pages: 1 }, rights::READ | rights::WRITE, 0),
    ];
    let mut sim = Sim::boot(&[task("iommu", 1, &caps)], None, 0, 0);
    sim.kernel.add_remapping_unit(UNIT, 1, true);
    sim.kernel.add_remapping_unit(OTHER_UNIT, 1, false);
    sim.schedule();
    sim
}

#[test]
fn the_units_owner_reads_every_line_and_only_it() {
    let mut sim = rig();
    let (_, vector, _) = sim.m.routes[0];
    let [flags, target, handle] = sim.sys(Syscall::IoApicLine, [9, 0, 0, 0, 0, 0]).ok();
    assert_eq!((flags, target, handle), (8, u64::from(vector), u64::MAX), "gsi 8, edge, compatibility format");
    let [flags, _, _] = sim.sys(Syscall::IoApicLine, [9, 1, 0, 0, 0, 0]).ok();
    assert_eq!(flags, 11 | 1 << 8, "gsi 11, level");
    assert_eq!(sim.sys(Syscall::IoApicLine, [9, 2, 0, 0, 0, 0]).error(), ErrorCode::NotFound);
    assert_eq!(sim.sys(Syscall::IoApicLine, [9, u64::MAX, 0, 0, 0, 0]).error(), ErrorCode::NotFound);
    assert_eq!(sim.sys(Syscall::IoApicLine, [10, 0, 0, 0, 0, 0]).error(), ErrorCode::PermissionDenied);
    assert_eq!(sim.sys(Syscall::IoApicLine, [8, 0, 0, 0, 0, 0]).error(), ErrorCode::WrongKind);
}

#[test]
fn a_line_goes_through_the_entry_it_is_given() {
    let mut sim = rig();
    let (_, vector, _) = sim.m.routes[1];
    sim.sys(Syscall::IoApicRemap, [9, 11, 0x8005, 0, 0, 0]).ok();
    assert_eq!(sim.m.remapped, [(11, vector, true, 0x8005)]);
    let [flags, _, handle] = sim.sys(Syscall::IoApicLine, [9, 1, 0, 0, 0, 0]).ok();
    assert_eq!((flags >> 9 & 1, handle), (1, 0x8005));
    assert_eq!(sim.sys(Syscall::IoApicRemap, [9, 9, 1, 0, 0, 0]).error(), ErrorCode::NotFound, "no such line");
    assert_eq!(sim.sys(Syscall::IoApicRemap, [9, 8, 0x1_0000, 0, 0, 0]).error(), ErrorCode::InvalidArgument);
    assert_eq!(sim.sys(Syscall::IoApicRemap, [10, 8, 1, 0, 0, 0]).error(), ErrorCode::PermissionDenied);
    assert_eq!(sim.m.remapped.len(), 1);
}

#[test]
fn the_units_registers_must_carry_the_rights_to_read_and_program_it() {
    let mut sim = rig();
    sim.sys(Syscall::CapCopy, [9, 20, 0, 0, 0, 0]).ok();
    sim.sys(Syscall::CapCopy, [9, 21, u64::from(rights::READ), 0, 0, 0]).ok();
    assert_eq!(sim.sys(Syscall::IoApicLine, [20, 0, 0, 0, 0, 0]).error(), ErrorCode::PermissionDenied, "no rights");
    assert_eq!(sim.sys(Syscall::IoApicRemap, [20, 8, 1, 0, 0, 0]).error(), ErrorCode::PermissionDenied);
    sim.sys(Syscall::IoApicLine, [21, 0, 0, 0, 0, 0]).ok();
    assert_eq!(sim.sys(Syscall::IoApicRemap, [21, 8, 1, 0, 0, 0]).error(), ErrorCode::PermissionDenied, "read only");
    assert!(sim.m.remapped.is_empty());
}

#[test]
fn a_unit_whose_scope_lists_no_io_apic_reaches_none_of_its_lines() {
    let mut sim = rig();
    assert_eq!(sim.sys(Syscall::IoApicLine, [12, 0, 0, 0, 0, 0]).error(), ErrorCode::PermissionDenied);
    assert_eq!(sim.sys(Syscall::IoApicRemap, [12, 8, 1, 0, 0, 0]).error(), ErrorCode::PermissionDenied);
    assert!(sim.m.remapped.is_empty());
}
