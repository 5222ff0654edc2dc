//! The Linux oracle: recorded QEMU topologies must group exactly as Linux 6.1 did.
//!
//! Each fixture holds the configuration space Linux read from every function
//! and the groups Linux formed. The test runs the PCI server's enumeration
//! over the recorded bytes and then group formation, and compares.

mod fixture;

use std::collections::BTreeMap;

use capabilities::pci::{Bdf, Topology};
use fixture::{Fixture, Recorded};
use iommu_groups::{GroupId, Groups, form_groups};
use pci_server::{Options, enumerate};

const OPTIONS: Options = Options { segment: 0, extended_config: true, enable_acs: true };

fn enumerate_fixture(config: BTreeMap<Bdf, Vec<u8>>, roots: &[u8]) -> (Topology, Recorded) {
    let mut recorded = Recorded { config };
    let topology = enumerate(&mut recorded, roots, OPTIONS).expect("enumeration");
    (topology, recorded)
}

fn our_partition(groups: &Groups) -> BTreeMap<u16, Vec<Bdf>> {
    groups
        .ids()
        .map(|id| (id.0, groups.members(id).collect::<Vec<_>>()))
        .collect::<BTreeMap<_, _>>()
        .into_iter()
        .map(|(id, mut members)| {
            members.sort();
            (id, members)
        })
        .collect()
}

fn sorted_groups(partition: &BTreeMap<u16, Vec<Bdf>>) -> Vec<Vec<Bdf>> {
    let mut groups: Vec<_> = partition.values().cloned().collect();
    groups.sort();
    groups
}

#[test]
fn there_are_at_least_seven_recorded_topologies() {
    let names: Vec<_> = Fixture::all().into_iter().map(|fixture| fixture.name).collect();
    assert!(names.len() >= 7, "{names:?}");
}

#[test]
fn enumeration_finds_every_function_linux_found() {
    for fixture in Fixture::all() {
        let linux: Vec<Bdf> = fixture.config.keys().copied().collect();
        let (topology, _) = enumerate_fixture(fixture.config.clone(), &fixture.roots);
        let mut ours: Vec<Bdf> = topology.functions.iter().map(|f| f.bdf).collect();
        ours.sort();
        assert_eq!(ours, linux, "{}", fixture.name);
    }
}

#[test]
fn groups_equal_linux_groups() {
    for fixture in Fixture::all() {
        let (topology, _) = enumerate_fixture(fixture.config.clone(), &fixture.roots);
        let groups = form_groups(&topology.functions).expect("group formation");
        let linux = fixture.linux_partition();
        let ours = our_partition(&groups);
        assert_eq!(sorted_groups(&ours), sorted_groups(&linux), "{}: partition differs\n{groups}", fixture.name);
        // Stronger: the ids match too, because both allocate in probe order.
        assert_eq!(ours, linux, "{}: group ids differ\n{groups}", fixture.name);
    }
}

#[test]
fn enabling_acs_from_the_firmware_state_gives_linux_groups() {
    // Linux enabled ACS before it recorded the bytes; firmware leaves it off.
    // Clear every ACS control register, then enumerate with enable_acs as
    // the PCI server does at boot.
    for fixture in Fixture::all() {
        let (topology, mut recorded) = enumerate_fixture(fixture.config.clone(), &fixture.roots);
        let mut cleared = 0;
        for function in &topology.functions {
            if let Some(acs) = function.acs {
                pci_server::ConfigSpace::write16(&mut recorded, function.bdf, acs.offset + 6, 0).unwrap();
                cleared += 1;
            }
        }
        let without = enumerate(&mut recorded, &fixture.roots, Options { enable_acs: false, ..OPTIONS }).unwrap();
        assert!(without.functions.iter().filter_map(|f| f.acs).all(|acs| acs.control.is_empty()));
        let with = enumerate(&mut recorded, &fixture.roots, OPTIONS).unwrap();
        assert_eq!(with, topology, "{}: {cleared} ACS controls", fixture.name);
    }
}

#[test]
fn explanations_of_the_design_example() {
    let fixture = Fixture::load(&fixture::fixtures_dir().join("design-example.txt"));
    let (topology, _) = enumerate_fixture(fixture.config, &fixture.roots);
    let groups = form_groups(&topology.functions).unwrap();
    let explain = |bdf: &str| groups.explain(groups.group_of(fixture::parse_bdf(bdf)).unwrap()).to_string();
    assert_eq!(
        explain("01:01.0"),
        "01:01.0 and 01:02.0 issue DMA as 01:00.0 (alias through PCIe-to-PCI bridge 00:02.0)"
    );
    assert_eq!(
        explain("00:01.0"),
        "00:01.0 is isolated: no other function shares its requester id or reaches it peer-to-peer"
    );
    assert_eq!(
        explain("00:1f.0"),
        "00:1f.0, 00:1f.2 and 00:1f.3 are functions of one multifunction device without ACS"
    );
    let bridge_group = groups.group_of(fixture::parse_bdf("00:02.0")).unwrap();
    assert_eq!(groups.requesters(bridge_group).map(|b| b.to_string()).collect::<Vec<_>>(), ["00:02.0", "01:00.0"]);
    assert_eq!(bridge_group, GroupId(2));
}

/// Every group of every fixture is explained, and the explanation names
/// each of its members (`--nocapture` prints them all).
#[test]
fn every_group_is_explained_by_name() {
    for fixture in Fixture::all() {
        let (topology, _) = enumerate_fixture(fixture.config, &fixture.roots);
        let groups = form_groups(&topology.functions).unwrap();
        println!("== {}: {}", fixture.name, fixture.qemu);
        for id in groups.ids() {
            let members: Vec<String> = groups.members(id).map(|b| b.to_string()).collect();
            let explanation = groups.explain(id).to_string();
            println!("group {} [{}]", id.0, members.join(" "));
            for line in explanation.lines() {
                println!("    {line}");
            }
            for member in &members {
                assert!(
                    explanation.contains(member.as_str()),
                    "{}: group {} explains {explanation:?} without naming {member}",
                    fixture.name,
                    id.0
                );
            }
        }
    }
}
