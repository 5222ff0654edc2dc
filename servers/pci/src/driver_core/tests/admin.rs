//! Binding at run time, listing devices, and the holder's mediated configuration space.

use capabilities::ErrorCode;
use iommu_api::OwnerReport;
use pci_api::{Reply, Request};

use super::*;

fn hold_edu(rig: &mut Rig) {
    let answer = rig.ask(task::EDU_PROBE, DRIVER_OPERATIONS, &Request::Probe { index: 0 });
    assert!(matches!(answer.reply, Reply::Granted(_)));
}

fn write(rig: &mut Rig, task: u16, at: &str, offset: u16, width: u8, value: u32) -> Answer {
    rig.ask(task, DRIVER_OPERATIONS, &Request::ConfigWrite { device: bdf(at), offset, width, value })
}

#[test]
fn only_administrators_bind_and_unbind() {
    let mut rig = Rig::new();
    let bind = Request::Bind { device: bdf(at::EDU2), driver: task::EDU_PROBE };
    for request in [bind.clone(), Request::Unbind { device: bdf(at::EDU) }] {
        assert_refused(
            &rig.ask(task::EDU_PROBE, DRIVER_OPERATIONS, &request),
            ErrorCode::PermissionDenied,
            &["edu-probe may not invoke"],
        );
    }
    assert_eq!(rig.ask(task::ADMIN, ALL_OPERATIONS, &bind).reply, Reply::Done);
    let answer = rig.ask(task::EDU_PROBE, DRIVER_OPERATIONS, &Request::Probe { index: 1 });
    assert!(matches!(answer.reply, Reply::Granted(ref grant) if grant.device == bdf(at::EDU2)));
}

#[test]
fn bind_refuses_bound_devices_unknown_tasks_and_dma_in_user_groups() {
    let mut rig = Rig::new();
    let (code, reason) =
        refusal(&rig.ask(task::ADMIN, ALL_OPERATIONS, &Request::Bind { device: bdf(at::EDU), driver: task::STUB }));
    assert_eq!(code, ErrorCode::Busy);
    assert!(reason.contains("already bound to edu-probe"), "{reason}");
    let unknown = Request::Bind { device: bdf(at::EDU2), driver: 40 };
    assert_eq!(refusal(&rig.ask(task::ADMIN, ALL_OPERATIONS, &unknown)).0, ErrorCode::NotFound);
    rig.world.borrow_mut().iommu.owners.insert(12, OwnerReport::User { task: task::USER });
    let dma = Request::Bind { device: bdf(at::EDU2), driver: task::SPARE };
    assert_refused(&rig.ask(task::ADMIN, ALL_OPERATIONS, &dma), ErrorCode::Busy, &["group 12 user task user owns it"]);
    // A no-DMA driver may be bound there (as Linux allows pci-stub).
    let stub = Request::Bind { device: bdf(at::EDU2), driver: task::STUB };
    assert_eq!(rig.ask(task::ADMIN, ALL_OPERATIONS, &stub).reply, Reply::Done);
}

#[test]
fn only_driver_tasks_are_bound_and_their_dma_is_their_own_word() {
    let mut rig = Rig::new();
    for task in [task::ADMIN, task::USER] {
        let (code, reason) =
            refusal(&rig.ask(task::ADMIN, ALL_OPERATIONS, &Request::Bind { device: bdf(at::EDU2), driver: task }));
        assert_eq!(code, ErrorCode::WrongKind);
        assert!(reason.contains("is not a driver"), "{reason}");
    }
    assert_eq!(rig.holder(at::EDU2), None);
    // The spare driver does DMA: its probe claims the group, whoever bound it.
    let bind = Request::Bind { device: bdf(at::EDU2), driver: task::SPARE };
    assert_eq!(rig.ask(task::ADMIN, ALL_OPERATIONS, &bind).reply, Reply::Done);
    let answer = rig.ask(task::SPARE, DRIVER_OPERATIONS, &Request::Probe { index: 0 });
    assert!(matches!(answer.reply, Reply::Granted(ref grant) if grant.dma), "{:?}", answer.reply);
    assert_eq!(rig.world.borrow().iommu.owners.get(&12), Some(&OwnerReport::Kernel { drivers: 1 }));
}

#[test]
fn dma_bind_without_an_iommu_server_is_refused() {
    let mut rig = Rig::without_iommu();
    let dma = Request::Bind { device: bdf(at::EDU2), driver: task::SPARE };
    assert_refused(&rig.ask(task::ADMIN, ALL_OPERATIONS, &dma), ErrorCode::NotFound, &["no IOMMU server"]);
}

#[test]
fn devices_lists_every_function_with_its_holder() {
    let mut rig = Rig::new();
    hold_edu(&mut rig);
    let mut found = Vec::new();
    for index in 0.. {
        match rig.ask(task::USER, 1 << 7, &Request::Devices { index }).reply {
            Reply::Device { device, vendor, device_id, holder } => found.push((device, vendor, device_id, holder)),
            Reply::Refused { code, .. } => {
                assert_eq!(code, ErrorCode::NotFound);
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        found,
        [
            (bdf("00:00.0"), 0x8086, 0x29c0, None),
            (bdf(at::EDU), 0x1234, 0x11e8, Some(task::EDU_PROBE)),
            (bdf(at::EDU2), 0x1234, 0x11e8, None),
            (bdf(at::PORT), 0x1b36, 0x000c, None),
            (bdf(at::NVME), 0x1b36, 0x0010, None),
        ]
    );
}

#[test]
fn the_holder_reads_any_register_with_a_valid_width() {
    let mut rig = Rig::new();
    let read = |offset, width| Request::ConfigRead { device: bdf(at::EDU), offset, width };
    let (code, _) = refusal(&rig.ask(task::EDU_PROBE, DRIVER_OPERATIONS, &read(0, 4)));
    assert_eq!(code, ErrorCode::PermissionDenied, "not held yet");
    hold_edu(&mut rig);
    assert_eq!(rig.ask(task::EDU_PROBE, DRIVER_OPERATIONS, &read(0, 4)).reply, Reply::Value(0x11e8_1234));
    assert_eq!(rig.ask(task::EDU_PROBE, DRIVER_OPERATIONS, &read(2, 2)).reply, Reply::Value(0x11e8));
    assert_eq!(rig.ask(task::EDU_PROBE, DRIVER_OPERATIONS, &read(0x10, 4)).reply, Reply::Value(EDU_BAR as u32));
    for (offset, width) in [(0, 3), (1, 2), (2, 4), (0x1000, 1), (0xfffe, 4), (0, 0), (0, 8)] {
        let (code, _) = refusal(&rig.ask(task::EDU_PROBE, DRIVER_OPERATIONS, &read(offset, width)));
        assert_eq!(code, ErrorCode::InvalidArgument, "{offset:#x}/{width}");
    }
    assert_refused(
        &rig.ask(task::BRIDGE, DRIVER_OPERATIONS, &read(0, 4)),
        ErrorCode::PermissionDenied,
        &["held by edu-probe, not bridge"],
    );
}

#[test]
fn writes_that_would_move_a_bar_are_refused_and_harmless_ones_pass() {
    let mut rig = Rig::new();
    hold_edu(&mut rig);
    for (offset, width) in [(0x10, 4), (0x12, 2), (0x13, 1), (0x24, 4), (0x30, 4)] {
        let (code, reason) = refusal(&write(&mut rig, task::EDU_PROBE, at::EDU, offset, width, 0xdead_0000));
        assert_eq!(code, ErrorCode::PermissionDenied, "{offset:#x}");
        assert!(reason.contains("00:03.0") && reason.contains("edu-probe"), "{reason}");
    }
    let (_, reason) = refusal(&write(&mut rig, task::EDU_PROBE, at::EDU, 0x10, 4, 0));
    assert!(reason.contains("BAR 0"), "{reason}");
    assert_eq!(rig.read32(at::EDU, 0x10), EDU_BAR as u32, "BAR untouched");
    let (_, reason) = refusal(&write(&mut rig, task::EDU_PROBE, at::EDU, 0x42, 2, 0));
    assert!(reason.contains("MSI capability"), "{reason}");
    // The command register (here: INTx back on) and device-specific space are the holder's.
    assert_eq!(write(&mut rig, task::EDU_PROBE, at::EDU, 0x04, 2, 0x0002).reply, Reply::Done);
    assert_eq!(rig.read16(at::EDU, 0x04), 0x0002);
    assert_eq!(write(&mut rig, task::EDU_PROBE, at::EDU, 0x80, 4, 0x1234_5678).reply, Reply::Done);
    assert_eq!(rig.read32(at::EDU, 0x80), 0x1234_5678);
    assert_eq!(write(&mut rig, task::EDU_PROBE, at::EDU, 0x0c, 1, 0x10).reply, Reply::Done);
    let (code, _) = refusal(&write(&mut rig, task::EDU_PROBE, at::EDU, 0x05, 2, 0));
    assert_eq!(code, ErrorCode::InvalidArgument, "unaligned");
    let (code, _) = refusal(&write(&mut rig, task::BRIDGE, at::EDU, 0x80, 4, 0));
    assert_eq!(code, ErrorCode::PermissionDenied, "not the holder");
}

#[test]
fn bridge_and_isolation_registers_are_the_servers() {
    let mut rig = Rig::new();
    let answer = rig.ask(task::BRIDGE, DRIVER_OPERATIONS, &Request::Probe { index: 0 });
    assert!(matches!(answer.reply, Reply::Granted(_)));
    let cases = [
        (0x18, 1, "bus numbers"),
        (0x1a, 1, "bus numbers"),
        (0x1c, 2, "windows"),
        (0x20, 4, "windows"),
        (0x2c, 4, "windows"),
        (0x38, 4, "expansion ROM"),
        (0x3e, 2, "bridge control"),
        (0x106, 2, "ACS control"),
        (0x10, 4, "BAR 0"),
    ];
    for (offset, width, what) in cases {
        let (code, reason) = refusal(&write(&mut rig, task::BRIDGE, at::PORT, offset, width, 0));
        assert_eq!(code, ErrorCode::PermissionDenied, "{offset:#x}");
        assert!(reason.contains(what), "{offset:#x}: {reason}");
    }
    // The secondary status beside the I/O window, and the ACS capability register, are not.
    assert_eq!(write(&mut rig, task::BRIDGE, at::PORT, 0x1e, 2, 0xffff).reply, Reply::Done);
    assert_eq!(write(&mut rig, task::BRIDGE, at::PORT, 0x104, 2, 0).reply, Reply::Done);
}

#[test]
fn msix_and_resizable_bars_are_the_servers() {
    let mut rig = Rig::new();
    let answer = rig.ask(task::DMA_DRIVER, DRIVER_OPERATIONS, &Request::Probe { index: 0 });
    assert!(matches!(answer.reply, Reply::Granted(_)));
    let (_, reason) = refusal(&write(&mut rig, task::DMA_DRIVER, at::NVME, 0x62, 2, 0x8000));
    assert!(reason.contains("MSI-X"), "{reason}");
    let (_, reason) = refusal(&write(&mut rig, task::DMA_DRIVER, at::NVME, 0x108, 4, 0));
    assert!(reason.contains("resizable-BAR"), "{reason}");
    let (_, reason) = refusal(&write(&mut rig, task::DMA_DRIVER, at::NVME, 0x14, 4, 0));
    assert!(reason.contains("BAR 1"), "{reason}");
    // Device control is the holder's (a reset it asks for is the server's: tests/reset.rs).
    assert_eq!(write(&mut rig, task::DMA_DRIVER, at::NVME, NVME_PCIE + 8, 2, 0).reply, Reply::Done);
}
