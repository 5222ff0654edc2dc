//! Hand-built topologies, one per rule of Linux's group formation.

mod build;

use build::{With, bdf, conventional, expected, explain, partition, pcie};
use capabilities::pci::{AcsFlags, MAX_FUNCTIONS, PciFunction, PcieDeviceType::*};
use iommu_groups::{Cause, GroupError, GroupId, form_groups};

fn requester(functions: &[PciFunction], at: &str) -> String {
    let groups = form_groups(functions).unwrap();
    groups.placement(bdf(at)).unwrap().requester.to_string()
}

#[test]
fn a_pcie_to_pci_bridge_aliases_everything_below_it() {
    let topology = [
        conventional("00:00.0"),
        conventional("00:03.0"),
        pcie("00:04.0", PcieToPciBridge).bridge_to(1),
        conventional("01:01.0"),
        conventional("01:02.0"),
    ];
    let groups = form_groups(&topology).unwrap();
    assert_eq!(partition(&groups), expected(&[&["00:00.0"], &["00:03.0"], &["00:04.0", "01:01.0", "01:02.0"]]));
    assert_eq!(
        explain(&groups, "01:01.0"),
        "01:01.0 and 01:02.0 issue DMA as 01:00.0 (alias through PCIe-to-PCI bridge 00:04.0)"
    );
    let group = groups.group_of(bdf("00:04.0")).unwrap();
    assert_eq!(groups.requesters(group).map(|b| b.to_string()).collect::<Vec<_>>(), ["00:04.0", "01:00.0"]);
    assert_eq!(group, GroupId(2));
}

#[test]
fn a_conventional_bridge_behind_a_pcie_to_pci_bridge_aliases_to_itself_then_to_the_outer_bridge() {
    let topology = [
        pcie("00:04.0", PcieToPciBridge).bridge_to(1),
        conventional("01:01.0").bridge_to(2),
        conventional("01:02.0"),
        conventional("02:03.0"),
    ];
    let groups = form_groups(&topology).unwrap();
    assert_eq!(partition(&groups), expected(&[&["00:04.0", "01:01.0", "01:02.0", "02:03.0"]]));
    assert_eq!(
        explain(&groups, "00:04.0"),
        "01:01.0 and 01:02.0 issue DMA as 01:00.0 (alias through PCIe-to-PCI bridge 00:04.0)\n\
         02:03.0 issues DMA as 01:01.0 (alias through PCI bridge 01:01.0)"
    );
    // What reaches the IOMMU is the outermost alias.
    assert_eq!(requester(&topology, "02:03.0"), "01:00.0");
}

#[test]
fn a_conventional_bridge_on_the_root_bus_aliases_to_its_own_id() {
    let topology = [conventional("00:03.0").bridge_to(1), conventional("01:00.0"), conventional("01:01.0")];
    let groups = form_groups(&topology).unwrap();
    assert_eq!(partition(&groups), expected(&[&["00:03.0", "01:00.0", "01:01.0"]]));
    assert_eq!(requester(&topology, "01:01.0"), "00:03.0");
}

#[test]
fn a_quirked_conventional_bridge_below_a_port_aliases_like_a_pcie_to_pci_bridge() {
    let mut disguised = conventional("01:00.0").bridge_to(2);
    let topology = |disguised: PciFunction| {
        [pcie("00:1c.0", RootPort).full_acs().bridge_to(1), disguised, conventional("02:00.0"), conventional("02:01.0")]
    };
    let groups = form_groups(&topology(disguised)).unwrap();
    assert_eq!(partition(&groups), expected(&[&["00:1c.0"], &["01:00.0", "02:00.0", "02:01.0"]]));
    assert_eq!(requester(&topology(disguised), "02:01.0"), "01:00.0");
    disguised.dma_alias.pcie_bridge_alias = true;
    assert_eq!(requester(&topology(disguised), "02:01.0"), "02:00.0");
    assert_eq!(
        explain(&form_groups(&topology(disguised)).unwrap(), "02:01.0"),
        "02:00.0 and 02:01.0 issue DMA as 02:00.0 (alias through PCI bridge 01:00.0)"
    );
}

#[test]
fn a_pci_to_pcie_bridge_aliases_to_its_own_id() {
    let topology = [pcie("00:05.0", PciToPcieBridge).bridge_to(1), pcie("01:00.0", Endpoint)];
    let groups = form_groups(&topology).unwrap();
    assert_eq!(partition(&groups), expected(&[&["00:05.0", "01:00.0"]]));
    assert_eq!(explain(&groups, "01:00.0"), "01:00.0 issues DMA as 00:05.0 (alias through PCI-to-PCIe bridge 00:05.0)");
}

#[test]
fn aliasing_stops_at_a_translation_root_but_its_missing_acs_still_joins() {
    let mut root = conventional("00:06.0").bridge_to(1);
    root.dma_alias.translation_root = true;
    let topology = [root, conventional("01:00.0")];
    let groups = form_groups(&topology).unwrap();
    assert_eq!(partition(&groups), expected(&[&["00:06.0", "01:00.0"]]));
    assert_eq!(requester(&topology, "01:00.0"), "01:00.0");
    assert_eq!(
        explain(&groups, "01:00.0"),
        "PCI bridge 00:06.0 is conventional PCI, which has no ACS, so everything below it shares its group: 01:00.0"
    );
}

#[test]
fn conventional_multifunction_devices_share_a_group() {
    let topology = [conventional("00:05.0").multifunction(), conventional("00:05.1"), conventional("00:05.2")];
    let groups = form_groups(&topology).unwrap();
    assert_eq!(partition(&groups), expected(&[&["00:05.0", "00:05.1", "00:05.2"]]));
    assert_eq!(
        explain(&groups, "00:05.2"),
        "00:05.0, 00:05.1 and 00:05.2 are functions of one multifunction device without ACS"
    );
}

#[test]
fn pcie_multifunction_devices_need_every_isolation_control() {
    let pair = |f0: PciFunction, f1: PciFunction| partition(&form_groups(&[f0.multifunction(), f1]).unwrap());
    let ep = |at| pcie(at, Endpoint);
    let separate = expected(&[&["00:05.0"], &["00:05.1"]]);
    let together = expected(&[&["00:05.0", "00:05.1"]]);
    assert_eq!(pair(ep("00:05.0").full_acs(), ep("00:05.1").full_acs()), separate);
    assert_eq!(pair(ep("00:05.0"), ep("00:05.1")), together);
    // Request redirect implemented but off: not isolated.
    let no_rr = AcsFlags::ISOLATION.difference(AcsFlags::REQUEST_REDIRECT);
    assert_eq!(pair(ep("00:05.0").acs(AcsFlags(0x5f), no_rr), ep("00:05.1").acs(AcsFlags(0x5f), no_rr)), together);
    // Request redirect not implemented at all counts as hard-wired on.
    assert_eq!(pair(ep("00:05.0").acs(no_rr, no_rr), ep("00:05.1").acs(no_rr, no_rr)), separate);
    // Linux only gathers the functions that are not isolated: one isolated
    // function stays alone even though its sibling is not isolated.
    assert_eq!(pair(ep("00:05.0").full_acs(), ep("00:05.1")), separate);
}

#[test]
fn function_zero_without_the_multifunction_bit_counts_as_single() {
    // Linux forces functions above 0 to be multifunction but takes function
    // 0's bit as it reads: a PCIe endpoint 0 without it needs no ACS.
    let groups = form_groups(&[pcie("00:05.0", Endpoint), pcie("00:05.1", Endpoint)]).unwrap();
    assert_eq!(partition(&groups), expected(&[&["00:05.0"], &["00:05.1"]]));
    // Conventional functions are never isolated, so they share a group anyway.
    let groups = form_groups(&[conventional("00:05.0"), conventional("00:05.1")]).unwrap();
    assert_eq!(partition(&groups), expected(&[&["00:05.0", "00:05.1"]]));
}

/// Root port 00:01.0, switch upstream port 01:00.0, downstream ports
/// 02:00.0 and 02:01.0, an endpoint below each.
fn switch(root: PciFunction, down0: PciFunction, down1: PciFunction) -> [PciFunction; 6] {
    [
        root.bridge_to(1),
        pcie("01:00.0", SwitchUpstream).bridge_to(2),
        down0.bridge_to(3),
        down1.bridge_to(4),
        pcie("03:00.0", Endpoint),
        pcie("04:00.0", Endpoint),
    ]
}

#[test]
fn switch_ports_with_acs_isolate_everything() {
    let topology = switch(
        pcie("00:01.0", RootPort).full_acs(),
        pcie("02:00.0", SwitchDownstream).full_acs(),
        pcie("02:01.0", SwitchDownstream).full_acs(),
    );
    let groups = form_groups(&topology).unwrap();
    assert_eq!(groups.count(), 6);
    assert!(groups.placements().iter().all(|placement| placement.cause == Cause::Founder));
}

#[test]
fn a_switch_port_without_request_redirect_shares_its_group_with_what_is_below() {
    let no_rr = AcsFlags::ISOLATION.difference(AcsFlags::REQUEST_REDIRECT);
    let topology = switch(
        pcie("00:01.0", RootPort).full_acs(),
        pcie("02:00.0", SwitchDownstream).acs(AcsFlags(0x5f), no_rr),
        pcie("02:01.0", SwitchDownstream).full_acs(),
    );
    let groups = form_groups(&topology).unwrap();
    assert_eq!(
        partition(&groups),
        expected(&[&["00:01.0"], &["01:00.0"], &["02:00.0", "03:00.0"], &["02:01.0"], &["04:00.0"]])
    );
    assert_eq!(
        explain(&groups, "03:00.0"),
        "switch downstream port 02:00.0 lacks ACS request redirect, so everything below it shares its group: 03:00.0"
    );
}

#[test]
fn a_root_port_without_acs_puts_the_whole_switch_in_its_group() {
    let topology = switch(
        pcie("00:01.0", RootPort),
        pcie("02:00.0", SwitchDownstream).full_acs(),
        pcie("02:01.0", SwitchDownstream).full_acs(),
    );
    let groups = form_groups(&topology).unwrap();
    assert_eq!(groups.count(), 1);
    assert_eq!(
        explain(&groups, "00:01.0"),
        "root port 00:01.0 has no ACS capability, so everything below it shares its group: 01:00.0\n\
         root port 00:01.0 has no ACS capability, so everything below it shares a group: 02:00.0 and 02:01.0 join 01:00.0\n\
         root port 00:01.0 has no ACS capability, so everything below it shares a group: 03:00.0 joins 02:00.0\n\
         root port 00:01.0 has no ACS capability, so everything below it shares a group: 04:00.0 joins 02:01.0"
    );
}

#[test]
fn root_ports_without_acs_still_get_a_group_each() {
    // Nothing above a root-bus function can join it to another.
    let topology = [
        pcie("00:01.0", RootPort).bridge_to(1),
        pcie("00:02.0", RootPort).bridge_to(2),
        pcie("01:00.0", Endpoint),
        pcie("02:00.0", Endpoint),
    ];
    let groups = form_groups(&topology).unwrap();
    assert_eq!(partition(&groups), expected(&[&["00:01.0", "01:00.0"], &["00:02.0", "02:00.0"]]));
}

#[test]
fn root_complex_integrated_endpoints() {
    let rciep = |at| pcie(at, RootComplexEndpoint);
    // Alone, an integrated endpoint needs no ACS.
    assert_eq!(partition(&form_groups(&[rciep("00:02.0")]).unwrap()), expected(&[&["00:02.0"]]));
    // Multifunction without ACS (QEMU's nvme pair): one group.
    let groups = form_groups(&[rciep("00:07.0").multifunction(), rciep("00:07.1")]).unwrap();
    assert_eq!(partition(&groups), expected(&[&["00:07.0", "00:07.1"]]));
    // With ACS: apart.
    let groups = form_groups(&[rciep("00:07.0").multifunction().full_acs(), rciep("00:07.1").full_acs()]).unwrap();
    assert_eq!(partition(&groups), expected(&[&["00:07.0"], &["00:07.1"]]));
    // Intel's RCiEP quirk (QEMU's e1000e on the root bus) isolates them,
    // leaving the conventional function between them alone too.
    let intel = |at| rciep(at).acs_quirk(AcsFlags::ISOLATION);
    let groups = form_groups(&[intel("00:06.0").multifunction(), conventional("00:06.1"), intel("00:06.2")]).unwrap();
    assert_eq!(partition(&groups), expected(&[&["00:06.0"], &["00:06.1"], &["00:06.2"]]));
    // An event collector never has ACS.
    let collector = pcie("00:08.0", RootComplexEventCollector).multifunction();
    let groups = form_groups(&[collector, rciep("00:08.1")]).unwrap();
    assert_eq!(partition(&groups), expected(&[&["00:08.0", "00:08.1"]]));
}

#[test]
fn quirk_aliases_join_functions_on_one_bus() {
    let topology = [conventional("00:05.0").alias_devfn(7 << 3), conventional("00:07.0"), conventional("00:09.0")];
    let groups = form_groups(&topology).unwrap();
    assert_eq!(partition(&groups), expected(&[&["00:05.0", "00:07.0"], &["00:09.0"]]));
    assert_eq!(explain(&groups, "00:07.0"), "00:07.0 and 00:05.0 are DMA aliases of each other (device quirk)");
    // An alias to a function that is not there (a ghost requester) joins nothing.
    let groups = form_groups(&[conventional("00:05.0").alias_devfn(0x29), conventional("00:07.0")]).unwrap();
    assert_eq!(groups.count(), 2);
}

#[test]
fn the_input_order_does_not_matter() {
    let topology = switch(
        pcie("00:01.0", RootPort),
        pcie("02:00.0", SwitchDownstream),
        pcie("02:01.0", SwitchDownstream).full_acs(),
    );
    let mut reversed = topology;
    reversed.reverse();
    let (forward, backward) = (form_groups(&topology).unwrap(), form_groups(&reversed).unwrap());
    assert_eq!(forward, backward);
    // Linux probes a bridge before anything below it, whatever the list says.
    assert_eq!(forward.placements()[0].bdf, bdf("00:01.0"));
}

#[test]
fn a_bus_without_a_bridge_is_a_root_bus() {
    let groups = form_groups(&[conventional("00:01.0"), conventional("80:00.0")]).unwrap();
    assert_eq!(groups.count(), 2);
}

#[test]
fn contradictory_topologies_are_refused() {
    let duplicate = [conventional("00:01.0"), conventional("00:01.0")];
    assert_eq!(form_groups(&duplicate), Err(GroupError::DuplicateFunction { bdf: bdf("00:01.0") }));
    let shared = [conventional("00:01.0").bridge_to(1), conventional("00:02.0").bridge_to(1), conventional("01:00.0")];
    assert_eq!(
        form_groups(&shared),
        Err(GroupError::SharedSecondaryBus { bus: 1, first: bdf("00:01.0"), second: bdf("00:02.0") })
    );
    let self_loop = [conventional("01:00.0").bridge_to(1)];
    assert_eq!(form_groups(&self_loop), Err(GroupError::BridgeLoop { bdf: bdf("01:00.0") }));
    let two_loop = [conventional("01:00.0").bridge_to(2), conventional("02:00.0").bridge_to(1)];
    assert_eq!(form_groups(&two_loop), Err(GroupError::BridgeLoop { bdf: bdf("01:00.0") }));
    let too_many: Vec<_> =
        (0..=MAX_FUNCTIONS).map(|n| conventional(&format!("{:02x}:{:02x}.{}", n >> 8, (n >> 3) & 31, n & 7))).collect();
    assert_eq!(form_groups(&too_many), Err(GroupError::TooManyFunctions { count: MAX_FUNCTIONS + 1 }));
}

#[test]
fn groups_survive_postcard() {
    let topology = [pcie("00:04.0", PcieToPciBridge).bridge_to(1), conventional("01:01.0")];
    let groups = form_groups(&topology).unwrap();
    let bytes = postcard::to_allocvec(&groups).unwrap();
    assert_eq!(postcard::from_bytes::<iommu_groups::Groups>(&bytes).unwrap(), groups);
}
