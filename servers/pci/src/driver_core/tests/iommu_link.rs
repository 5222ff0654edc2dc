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
