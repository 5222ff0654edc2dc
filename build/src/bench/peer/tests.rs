//! The peer's console parsing, figure lookup, initramfs and machine shape.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::boot::ConsoleLines;
use super::guest::initramfs;
use super::report::{check_complete, parse};
use super::*;
use crate::bench::debian::{self, Guest};

fn lines(text: &str) -> Vec<String> {
    text.lines().map(str::to_owned).collect()
}

const CONSOLE: &str = "\
[    0.000000] Linux version 6.1.0-56-amd64
PEER ready 1859761075
PEER info kernel 6.1.0-56-amd64
PEER info meminfo total-kib=480000 free-kib=439000 used-kib=41000
PEER sample pipe_rtt ns 71551.7 77135.2 74565.6
PEER sample pipe_rtt cycles 185897.3 200259.9 193589.9
[    2.01] some kernel noise PEER sample futex_rtt ns 55715.8 58669.0
PEER sample futex_rtt cycles 144773.6 152320.0
PEER info edu 0000:00:03.0 group 3 default-domain DMA
PEER sample vfio_map_1 ns_per_page 7332.5 6467.6
PEER sample vfio_map_1 cycles_per_page 19034.0 16787.8
PEER error vfio VFIO_IOMMU_UNMAP_DMA: Invalid argument (os error 22)
PEER done
[    2.188673] reboot: Power down";

#[test]
fn peer_lines_are_parsed_and_noise_ignored() {
    let report = parse(&lines(CONSOLE));
    assert_eq!(report.ready_boottime_ns, Some(1_859_761_075));
    assert!(report.done);
    assert_eq!(
        report.info,
        [
            "kernel 6.1.0-56-amd64",
            "meminfo total-kib=480000 free-kib=439000 used-kib=41000",
            "edu 0000:00:03.0 group 3 default-domain DMA"
        ]
    );
    assert_eq!(report.figures["pipe_rtt"].nanos, [71551.7, 77135.2, 74565.6]);
    assert_eq!(report.figures["pipe_rtt"].cycles.len(), 3);
    assert_eq!(report.figures["futex_rtt"].nanos, [55715.8, 58669.0], "prefixed by kernel noise");
    assert_eq!(report.figures["vfio_map_1"].cycles, [19034.0, 16787.8]);
    assert_eq!(report.errors, [("vfio".to_owned(), "VFIO_IOMMU_UNMAP_DMA: Invalid argument (os error 22)".into())]);
    let missing = check_complete(&report).expect_err("unmap and batched figures are missing");
    assert!(missing.to_string().contains("vfio_unmap_1, vfio_map_64"), "{missing}");
}

#[test]
fn malformed_lines_become_errors() {
    let report = parse(&lines("PEER sample x ns 1.0 oops\nPEER sample\nPEER bogus\nPEER ready notanumber"));
    assert_eq!(report.errors.len(), 3);
    assert!(report.figures.is_empty());
    assert_eq!(report.ready_boottime_ns, None);
}

fn linux(report: Result<Report, String>) -> Linux {
    Linux {
        packages: vec![],
        release: "6.1".into(),
        qemu_version: "7.2".into(),
        machine: vec![],
        modules: vec![],
        boots: vec![Boot {
            mode: Mode::Strict,
            cases: "ipc,vfio",
            append: String::new(),
            to_ready: Some(Duration::from_millis(2500)),
            wall: Duration::from_secs(10),
            report,
            console: PathBuf::from("console.log"),
            load: 0.5,
        }],
        wall: Duration::from_secs(12),
        boot_files: 30 << 20,
        scale: vec![],
    }
}

#[test]
fn figures_are_found_by_mode_or_explained() {
    let linux = linux(Ok(parse(&lines(CONSOLE))));
    assert_eq!(linux.figure(Mode::Strict, "futex_rtt").expect("measured").nanos.len(), 2);
    let error = linux.figure(Mode::Strict, "vfio_unmap_64").expect_err("vfio failed");
    assert!(error.contains("Invalid argument"), "{error}");
    let error = linux.figure(Mode::Lazy, "vfio_map_1").expect_err("no lazy boot");
    assert!(error.contains("no lazy boot"), "{error}");
    assert_eq!(linux.boot_seconds(), [2.5]);
    assert_eq!(linux.boot_clock_seconds(), [1.859761075]);
    assert_eq!(linux.used_kib(), [41_000.0]);
    let failed = self::linux(Err("QEMU exited".into()));
    assert_eq!(failed.figure(Mode::Strict, "pipe_rtt").expect_err("boot failed"), "QEMU exited");
    let early = self::linux(Ok(parse(&lines("PEER ready 5"))));
    assert!(early.figure(Mode::Strict, "pipe_rtt").expect_err("stopped").contains("stopped early"));
}

#[test]
fn the_initramfs_holds_init_program_busybox_and_modules_in_order() {
    let busybox = std::env::temp_dir().join(format!("xtask-busybox-{}", std::process::id()));
    std::fs::write(&busybox, b"BUSYBOX").expect("temp file");
    let module = |name: &str, file_name: &str| debian::Module {
        name: name.into(),
        file_name: file_name.into(),
        bytes: format!("ELF {name}").into_bytes(),
    };
    let guest = Guest {
        kernel_package: "linux-image-6.1.0-56-amd64 6.1.192-2".into(),
        busybox_package: "busybox-static 1:1.35.0".into(),
        vmlinuz: PathBuf::from("/nonexistent"),
        busybox: busybox.clone(),
        modules: vec![module("vfio", "vfio.ko"), module("vfio_pci", "vfio-pci.ko")],
    };
    let archive = initramfs(&guest, b"PROGRAM").expect("archive");
    let _ = std::fs::remove_file(&busybox);
    let text = String::from_utf8_lossy(&archive);
    for needle in ["bin/busybox\0", "BUSYBOX", "init\0", "/peer\n", "peer\0", "PROGRAM", "dev/console\0"] {
        assert!(text.contains(needle), "{needle:?} missing");
    }
    assert!(text.contains("modules/vfio-pci.ko\0"));
    assert!(text.contains("vfio.ko\nvfio-pci.ko\n"), "load order file");
    assert!(text.contains("TRAILER!!!\0"));
}

#[test]
fn the_default_machine_is_the_benchmark_shape_under_tcg() {
    let command = PeerMachine::default().command(Path::new("/k"), Path::new("/i"), "console=ttyS0");
    let args: Vec<String> = command.get_args().map(|arg| arg.to_string_lossy().into_owned()).collect();
    let joined = args.join(" ");
    assert!(joined.starts_with("-accel tcg -M q35 -m 512M -device intel-iommu -device edu"), "{joined}");
    assert!(joined.contains("-serial stdio -no-reboot"));
    assert!(joined.ends_with("-kernel /k -initrd /i -append console=ttyS0"));
    assert!(!joined.contains("kvm"));
}

#[test]
fn console_output_becomes_lines_whatever_pieces_it_arrives_in() {
    let mut console = ConsoleLines::default();
    console.feed(Duration::from_millis(1), b"[ 0.1] boot\r\nPEER re");
    console.feed(Duration::from_millis(2), b"ady 5\nPEER ready 6\n");
    console.feed(Duration::from_millis(3), b"PEER done");
    console.finish(Duration::from_millis(4));
    assert_eq!(console.lines, ["[ 0.1] boot", "PEER ready 5", "PEER ready 6", "PEER done"]);
    assert_eq!(console.to_ready, Some(Duration::from_millis(2)), "when the first ready line ended");
}
