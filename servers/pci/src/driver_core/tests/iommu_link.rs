//! The IOMMU protocol helpers: topology chunks, and replies the protocol does not allow.

use capabilities::ErrorCode;
use capabilities::pci::{Bdf, Topology};
use iommu_api as iommu;
use iommu_api::{OwnerReport, TOPOLOGY_CHUNK};

use super::*;
use crate::driver_core::iommu::{IommuFailure, claim_kernel, owner, report_topology};

/// A link that answers every call with one fixed reply (and capability).
struct Canned(iommu::Reply, Option<Slot>, Vec<iommu::Request>);

impl IommuLink for Canned {
    fn call(&mut self, request: &iommu::Request) -> Result<(iommu::Reply, Option<Slot>), ErrorCode> {
        self.2.push(request.clone());
        Ok((self.0.clone(), self.1))
    }
}

#[test]
fn the_topology_goes_in_chunks_with_the_last_marked() {
    let world: Shared = Rc::default();
    let mut kernel = MockKernel(world);
    let function = Rig::new().core.devices()[0].function;
    let mut topology = Topology::default();
    for index in 0..(2 * TOPOLOGY_CHUNK + 1) as u16 {
        topology
            .functions
            .push(capabilities::pci::PciFunction { bdf: Bdf::from_requester_id(index), ..function })
            .unwrap();
    }
    let mut link = Canned(iommu::Reply::Done, None, Vec::new());
    report_topology(Some(&mut link), &mut kernel, &topology).unwrap();
    let chunks: Vec<_> = link
        .2
        .iter()
        .map(|request| match request {
            iommu::Request::ReportTopology { functions, last } => (functions.len(), functions[0].bdf, *last),
            other => panic!("{other:?}"),
        })
        .collect();
    let at = Bdf::from_requester_id;
    assert_eq!(chunks, [(16, at(0), false), (16, at(16), false), (1, at(32), true)]);
    let mut link = Canned(iommu::Reply::Done, None, Vec::new());
    report_topology(Some(&mut link), &mut kernel, &Topology::default()).unwrap();
    assert!(
        matches!(link.2.as_slice(), [iommu::Request::ReportTopology { functions, last: true }] if functions.is_empty())
    );
}

#[test]
fn stray_capabilities_are_deleted_and_odd_replies_refused() {
    let world: Shared = Rc::default();
    let mut kernel = MockKernel(world.clone());
    let stray = world.borrow_mut().new_slot();
    let device = bdf("00:03.0");
    let mut link = Canned(iommu::Reply::Owner { group: 1, owner: OwnerReport::Unowned }, Some(stray), Vec::new());
    assert_eq!(owner(Some(&mut link), &mut kernel, device), Err(IommuFailure::Unexpected));
    assert!(world.borrow().kernel.live.is_empty(), "the stray capability was deleted");
    let mut link = Canned(iommu::Reply::Done, None, Vec::new());
    assert_eq!(claim_kernel(Some(&mut link), &mut kernel, device, 1), Err(IommuFailure::Unexpected));
    assert_eq!(owner(None::<&mut Canned>, &mut kernel, device), Err(IommuFailure::Absent));
    assert_eq!(IommuFailure::Absent.code(), ErrorCode::NotFound);
    assert_eq!(IommuFailure::Unexpected.code(), ErrorCode::Malformed);
}

#[test]
fn reclaim_pages_that_do_not_follow_from_the_request_are_refused() {
    use crate::driver_core::iommu::pending_reclaims;
    let world: Shared = Rc::default();
    let mut kernel = MockKernel(world);
    let page = |group, offset, total, members: usize| {
        let members = (0..members as u16).map(Bdf::from_requester_id).collect();
        iommu::Reply::Reclaims { page: Some(iommu::ReclaimPage { group, offset, total, members }) }
    };
    let mut ask = |reply, group, offset| {
        let mut link = Canned(reply, None, Vec::new());
        pending_reclaims(Some(&mut link), &mut kernel, group, offset)
    };
    assert!(ask(page(5, 16, 21, 5), 5, 16).is_ok_and(|page| page.is_some()), "the second page of group 5");
    assert!(ask(page(6, 0, 3, 3), 5, 16).is_ok(), "group 5 is done: group 6 from its first member");
    assert!(ask(iommu::Reply::Reclaims { page: None }, 5, 16).is_ok_and(|page| page.is_none()));
    for (reply, why) in [
        (page(4, 0, 3, 3), "an earlier group"),
        (page(5, 0, 21, 16), "another offset"),
        (page(6, 2, 3, 1), "a later group not from its first member"),
        (page(5, 16, 21, 0), "no progress"),
        (page(5, 16, 17, 5), "past its total"),
        (iommu::Reply::Done, "another reply"),
    ] {
        assert_eq!(ask(reply, 5, 16), Err(IommuFailure::Unexpected), "{why}");
    }
}

#[test]
fn nothing_is_handed_out_when_the_iommu_server_refuses_the_topology() {
    let mut rig = Rig::build_with(machine_config(), pci_config(), true, |world| {
        world.iommu.refuse_topology = Some((ErrorCode::InvalidArgument, "no table memory for a default domain"));
    });
    assert_refused(
        &rig.ask(task::DMA_DRIVER, DRIVER_OPERATIONS, &pci_api::Request::Probe { index: 0 }),
        ErrorCode::Busy,
        &["did not take the topology", "no table memory"],
    );
    let (code, _) = refusal(&rig.ask(task::EDU_PROBE, DRIVER_OPERATIONS, &pci_api::Request::Probe { index: 0 }));
    assert_eq!(code, ErrorCode::Busy, "nor a driver without DMA");
    let acquire = pci_api::Request::Acquire { device: bdf(at::EDU2) };
    assert_eq!(refusal(&rig.ask(task::USER, USER_OPERATIONS, &acquire)).0, ErrorCode::Busy);
}
