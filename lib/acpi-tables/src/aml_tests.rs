use xorshift::XorShift;

use super::*;

/// AML a package opcode `op` wraps around `content`, with its package length.
fn package(op: &[u8], content: &[u8]) -> std::vec::Vec<u8> {
    let mut out = op.to_vec();
    if content.len() + 1 < 0x40 {
        out.push((content.len() + 1) as u8);
    } else {
        let total = content.len() + 2;
        out.extend([0x40 | (total & 0x0f) as u8, (total >> 4) as u8]);
    }
    out.extend_from_slice(content);
    out
}

fn joined(parts: &[&[u8]]) -> std::vec::Vec<u8> {
    parts.concat()
}

fn scope(path: &[u8], body: &[u8]) -> std::vec::Vec<u8> {
    package(&[0x10], &joined(&[path, body]))
}

fn device(name: &[u8; 4], body: &[u8]) -> std::vec::Vec<u8> {
    package(&[0x5b, 0x82], &joined(&[name, body]))
}

fn method(name: &[u8; 4], body: &[u8]) -> std::vec::Vec<u8> {
    package(&[0x14], &joined(&[name, &[0x00], body]))
}

fn named_dword(name: &[u8; 4], value: u32) -> std::vec::Vec<u8> {
    joined(&[&[0x08], name, &[0x0c], &value.to_le_bytes()])
}

fn named_byte(name: &[u8; 4], value: u8) -> std::vec::Vec<u8> {
    joined(&[&[0x08], name, &[0x0a, value]])
}

/// A `pxb-pcie` expander as QEMU 7.2 declares it: `_UID`, `_BBN`, ids,
/// a `_CID` package and a `_CRS` buffer.
fn expander(name: &[u8; 4], bus: u8) -> std::vec::Vec<u8> {
    let cid = joined(&[&[0x08], b"_CID", &package(&[0x12], &joined(&[&[0x01, 0x0c], &0x030a_d041u32.to_le_bytes()]))]);
    let crs = joined(&[&[0x08], b"_CRS", &package(&[0x11], &[0x0a, 0x03, 0x88, 0x0d, 0x00])]);
    let body =
        joined(&[&named_byte(b"_UID", bus), &named_byte(b"_BBN", bus), &named_dword(b"_HID", 0x080a_d041), &cid, &crs]);
    device(name, &body)
}

/// Roughly QEMU's q35 DSDT: a region and field at the top, `PCI0` with a
/// method and child devices, an expander, and a `_GPE` scope of methods.
fn q35_like() -> std::vec::Vec<u8> {
    let region = joined(&[&[0x5b, 0x80], b"DBG_", &[0x01, 0x0b, 0x02, 0x04, 0x01]]);
    let field = package(&[0x5b, 0x81], &joined(&[b"DBG_", &[0x01], b"DBGB", &[0x08]]));
    let child = device(b"SF8_", &joined(&[&named_dword(b"_ADR", 0x0008_0000), &method(b"_STA", &[0xa4, 0x0a, 0x0f])]));
    let pci0 = device(
        b"PCI0",
        &joined(&[
            &named_dword(b"_HID", 0x080a_d041),
            &named_dword(b"_CID", 0x030a_d041),
            &named_byte(b"_ADR", 0),
            &method(b"_OSC", &[0xa4, 0x68]),
            &child,
        ]),
    );
    let conditional = package(&[0xa0], &[0x01, 0x70, 0x00, 0x60]);
    let sb = scope(b"\\_SB_", &joined(&[&pci0, &expander(b"PC20", 0x20), &conditional]));
    let gpe = scope(b"_GPE", &method(b"_E02", &[0x5c, 0x2e, b'_', b'S', b'B', b'_', b'P', b'C', b'I', b'0']));
    joined(&[&region, &field, &sb, &gpe])
}

#[test]
fn every_host_bridge_is_found_in_namespace_order_with_its_bus() {
    let bridges = host_bridges(&q35_like()).expect("readable");
    assert_eq!(
        bridges.as_slice(),
        [HostBridge { name: *b"PCI0", segment: 0, bus: 0 }, HostBridge { name: *b"PC20", segment: 0, bus: 0x20 },]
    );
}

#[test]
fn ids_as_strings_long_packages_and_segments_are_read() {
    let string_hid = joined(&[&[0x08], b"_HID", &[0x0d], b"PNP0A03", &[0x00]]);
    let padding = named_dword(b"PAD_", 0).repeat(10);
    let body = joined(&[&string_hid, &named_byte(b"_SEG", 1), &named_byte(b"_BBN", 0x80), &padding]);
    let bridge = device(b"PC80", &body);
    assert!(bridge.len() > 0x40, "a two-byte package length");
    let bridges = host_bridges(&scope(b"_SB_", &bridge)).expect("readable");
    assert_eq!(bridges.as_slice(), [HostBridge { name: *b"PC80", segment: 1, bus: 0x80 }]);
}

#[test]
fn devices_that_are_no_host_bridge_are_left_out() {
    let other = device(b"COM1", &named_dword(b"_HID", 0x0105_d041));
    assert_eq!(host_bridges(&scope(b"_SB_", &other)), Ok(Vec::new()));
}

#[test]
fn a_bus_number_only_a_method_gives_is_refused_by_name() {
    let body = joined(&[&named_dword(b"_HID", 0x080a_d041), &method(b"_BBN", &[0xa4, 0x0a, 0x40])]);
    assert_eq!(host_bridges(&device(b"PC40", &body)), Err(AmlError::Evaluated { device: *b"PC40", object: *b"_BBN" }));
    let wide = joined(&[&named_dword(b"_HID", 0x080a_d041), &named_dword(b"_BBN", 0x100)]);
    assert_eq!(
        host_bridges(&device(b"PC40", &wide)),
        Err(AmlError::Range { device: *b"PC40", object: *b"_BBN", value: 0x100 })
    );
}

#[test]
fn unknown_opcodes_truncation_depth_and_count_are_errors() {
    assert_eq!(host_bridges(&[0x70, 0x00, 0x60]), Err(AmlError::Opcode { offset: 0, opcode: 0x70 }));
    let mut cut = q35_like();
    cut.truncate(cut.len() - 3);
    assert!(matches!(host_bridges(&cut), Err(AmlError::Truncated { .. })));
    let mut deep = device(b"LEAF", &[]);
    for _ in 0..=MAX_DEPTH {
        deep = scope(b"DEEP", &deep);
    }
    assert!(matches!(host_bridges(&deep), Err(AmlError::TooDeep { .. })));
    let many: std::vec::Vec<u8> = (0..=MAX_HOST_BRIDGES as u8).flat_map(|bus| expander(b"PCXX", bus)).collect();
    assert_eq!(host_bridges(&many), Err(AmlError::TooManyHostBridges));
}

#[test]
fn no_prefix_or_corruption_of_a_table_makes_the_walk_panic() {
    let table = q35_like();
    for end in 0..table.len() {
        let _ = host_bridges(&table[..end]);
    }
    let mut random = XorShift::new(0x2545_f491_4f6c_dd1d);
    for _ in 0..2000 {
        let mut corrupt = table.clone();
        for _ in 0..3 {
            let seed = random.next_u64();
            let at = (seed % corrupt.len() as u64) as usize;
            corrupt[at] = (seed >> 32) as u8;
        }
        let _ = host_bridges(&corrupt);
    }
}

/// QEMU 7.2's q35 DSDT with two `pxb-pcie` expanders at buses 0x10 and
/// 0x40 (oracle topology `two-expanders`), as Linux read it from
/// `/sys/firmware/acpi/tables/DSDT`.
const QEMU_TWO_EXPANDERS: &[u8] = include_bytes!("../testdata/qemu-7.2-q35-two-expanders.dsdt");

#[test]
fn qemus_dsdt_lists_pci0_and_the_expanders_in_linuxs_order() {
    let table = crate::Sdt::parse_signed(QEMU_TWO_EXPANDERS, *b"DSDT").expect("QEMU's DSDT");
    let bridges = host_bridges(&table.bytes()[crate::sdt::HEADER_LENGTH..]).expect("readable");
    assert_eq!(
        bridges.as_slice(),
        [
            HostBridge { name: *b"PCI0", segment: 0, bus: 0 },
            HostBridge { name: *b"PC40", segment: 0, bus: 0x40 },
            HostBridge { name: *b"PC10", segment: 0, bus: 0x10 },
        ]
    );
}
