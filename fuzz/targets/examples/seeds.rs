//! Writes the seed inputs of every fuzz target into `fuzz/corpus/`.
//!
//! Run with `cargo run -p fuzz-targets --example seeds`; the files it
//! writes are committed. Real tables come from QEMU 7.2 (the dumps in
//! `acpi_tables::testing::qemu` its unit tests parse), synthesized ones
//! from its builders, policies from the repository.

use std::path::{Path, PathBuf};

use acpi_tables::SliceMemory;
use acpi_tables::testing::qemu::{DMAR_Q35, DMAR_Q35_BRIDGES, MCFG_Q35};
use acpi_tables::testing::{rsdp, table};
use capabilities::abi::{layout, rights};
use capabilities::manifest::{BootCap, BootObject, ManifestHeader, TaskImage, VERSION};
use echo_api::{Operation, Reply, Request};
use fuzz_targets::image;
use xorshift::XorShift;
use xtask::policy::testing::GOOD;

/// A DMAR with every structure kind: a DRHD with a two-hop scope, an RMRR,
/// an ATSR and an RHSA.
fn synthetic_dmar() -> Vec<u8> {
    let mut body = vec![38, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    // DRHD, segment 0, registers at 0xfed91000, scopes: endpoint 00:03.0
    // and a bridge path 00:1c.0 -> 00.0.
    body.extend_from_slice(&[0, 0, 16 + 8 + 10, 0, 0, 0, 0, 0]);
    body.extend_from_slice(&0xfed9_1000u64.to_le_bytes());
    body.extend_from_slice(&[1, 8, 0, 0, 0, 0, 3, 0]);
    body.extend_from_slice(&[2, 10, 0, 0, 0, 0, 0x1c, 0, 0, 0]);
    // An INCLUDE_PCI_ALL unit for segment 1 with an IOAPIC scope.
    body.extend_from_slice(&[0, 0, 24, 0, 1, 0, 1, 0]);
    body.extend_from_slice(&0xfed9_2000u64.to_le_bytes());
    body.extend_from_slice(&[3, 8, 0, 0, 2, 0xf0, 0x1f, 0]);
    // RMRR 0xe0000..=0xfffff for 00:1d.0.
    body.extend_from_slice(&[1, 0, 32, 0, 0, 0, 0, 0]);
    body.extend_from_slice(&0xe_0000u64.to_le_bytes());
    body.extend_from_slice(&0xf_ffffu64.to_le_bytes());
    body.extend_from_slice(&[1, 8, 0, 0, 0, 0, 0x1d, 0]);
    // ATSR for the root port 00:1c.0.
    body.extend_from_slice(&[2, 0, 16, 0, 0, 0, 0, 0]);
    body.extend_from_slice(&[2, 8, 0, 0, 0, 0, 0x1c, 0]);
    // RHSA.
    body.extend_from_slice(&[3, 0, 20, 0, 0, 0, 0, 0]);
    body.extend_from_slice(&0xfed9_1000u64.to_le_bytes());
    body.extend_from_slice(&[0, 0, 0, 0]);
    table(*b"DMAR", 1, &body)
}

/// Firmware memory based at 0xe0000 (the harness's base): an RSDP at 0,
/// its root table at 0x40, MCFG at 0x100 and DMAR at 0x200.
fn firmware(extended: bool) -> Vec<u8> {
    const BASE: u64 = 0xe_0000;
    let mut memory = vec![0u8; 0x400];
    let rsdp = if extended { rsdp(2, 0, BASE + 0x40) } else { rsdp(0, BASE as u32 + 0x40, 0) };
    memory[..rsdp.len()].copy_from_slice(&rsdp);
    let root = if extended {
        let entries: Vec<u8> = [BASE + 0x100, BASE + 0x200].iter().flat_map(|a| a.to_le_bytes()).collect();
        table(*b"XSDT", 1, &entries)
    } else {
        let entries: Vec<u8> =
            [BASE as u32 + 0x100, BASE as u32 + 0x200].iter().flat_map(|a| a.to_le_bytes()).collect();
        table(*b"RSDT", 1, &entries)
    };
    memory[0x40..0x40 + root.len()].copy_from_slice(&root);
    memory[0x100..0x100 + MCFG_Q35.len()].copy_from_slice(&MCFG_Q35);
    memory[0x200..0x200 + DMAR_Q35.len()].copy_from_slice(&DMAR_Q35);
    memory
}

/// A task image in the layout the loader and the syscall harness use.
fn task(name: &str, priority: u8, caps: &[BootCap], config: &[u8]) -> TaskImage {
    TaskImage {
        name: name.try_into().expect("short name"),
        priority,
        entry: layout::IMAGE_BASE,
        stack_pages: 2,
        memory_pages: 64,
        object_quota: 8,
        segments: image::segments(),
        caps: caps.iter().copied().collect(),
        config: config.iter().copied().collect(),
    }
}

/// A boot image of `tasks` with one endpoint and one notification.
fn boot_image(tasks: &[TaskImage], init_task: Option<u16>) -> Vec<u8> {
    let header =
        ManifestHeader { version: VERSION, task_count: tasks.len() as u16, init_task, endpoints: 1, notifications: 1 };
    image::build(&header, tasks)
}

/// Deterministic filler bytes for targets whose input is a decision stream.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut random = XorShift::new(seed);
    (0..len).map(|_| random.next_u64() as u8).collect()
}

/// `fuzz/corpus/`, a folder per target.
struct Corpus(PathBuf);

impl Corpus {
    /// Writes seed `name` of `target`.
    fn write(&self, target: &str, name: &str, bytes: &[u8]) {
        let dir = self.0.join(target);
        std::fs::create_dir_all(&dir).expect("corpus folder");
        std::fs::write(dir.join(name), bytes).expect("seed written");
    }
}

/// `bytes` behind the control byte the ACPI and server-request targets read first.
fn with_control(control: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![control];
    out.extend_from_slice(bytes);
    out
}

fn main() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("fuzz folder").to_path_buf();
    let repo = fuzz.parent().expect("repository").to_path_buf();
    let corpus = Corpus(fuzz.join("corpus"));
    acpi_seeds(&corpus);
    boot_image_seeds(&corpus);
    noise_seeds(&corpus);
    accounting_seed(&corpus);
    policy_seeds(&corpus, &repo);
    echo_seeds(&corpus);
    server_request_seeds(&corpus);
    iommu_decode_seeds(&corpus);
}

/// QEMU's tables and synthetic ones, alone and as firmware memory.
fn acpi_seeds(corpus: &Corpus) {
    corpus.write("acpi-dmar", "seed-qemu-q35", &with_control(0, &DMAR_Q35));
    corpus.write("acpi-dmar", "seed-qemu-q35-bridges", &with_control(0, &DMAR_Q35_BRIDGES));
    corpus.write("acpi-dmar", "seed-every-structure", &with_control(3, &synthetic_dmar()));

    corpus.write("acpi-mcfg", "seed-qemu-q35", &with_control(0, &MCFG_Q35));
    let dsdt = include_bytes!("../../../lib/acpi-tables/testdata/qemu-7.2-q35-two-expanders.dsdt");
    corpus.write("acpi-aml", "seed-qemu-q35-two-expanders", &dsdt[36..]);
    let mut two = vec![0u8; 8];
    for (base, segment, start, end) in [(0xe000_0000u64, 0u16, 0x10u8, 0x1fu8), (0xf000_0000, 1, 0, 0)] {
        two.extend_from_slice(&base.to_le_bytes());
        two.extend_from_slice(&segment.to_le_bytes());
        two.extend_from_slice(&[start, end, 0, 0, 0, 0]);
    }
    corpus.write("acpi-mcfg", "seed-two-windows", &with_control(3, &table(*b"MCFG", 1, &two)));

    for (name, extended) in [("seed-xsdt", true), ("seed-rsdt", false)] {
        corpus.write("acpi-root", name, &with_control(2, &firmware(extended)));
        let memory = firmware(extended);
        let mut out = vec![0u8; 8192];
        let used = acpi_tables::snapshot::build(&SliceMemory { base: 0xe_0000, bytes: &memory }, 0xe_0000, &mut out)
            .expect("the seed firmware snapshots");
        corpus.write("acpi-snapshot", name, &with_control(2, &out[..used]));
    }
}

/// A server and a client that calls, signals and watches it; the client alone.
fn boot_image_seeds(corpus: &Corpus) {
    let server = task(
        "server",
        2,
        &[BootCap { slot: 8, object: BootObject::Endpoint(0), rights: rights::RECEIVE, badge: 0 }],
        &[],
    );
    let client = task(
        "client",
        1,
        &[
            BootCap { slot: 8, object: BootObject::Endpoint(0), rights: rights::SEND | rights::GRANT, badge: 7 },
            BootCap { slot: 9, object: BootObject::Notification(0), rights: rights::SEND | rights::RECEIVE, badge: 0 },
            BootCap { slot: 10, object: BootObject::Task(0), rights: rights::WATCH, badge: 0 },
        ],
        b"config bytes",
    );
    corpus.write("boot-image", "seed-server-and-client", &boot_image(&[server.clone(), client.clone()], Some(1)));
    corpus.write("boot-image", "seed-one-task", &boot_image(&[client], None));
}

/// Filler for the targets whose input is a stream of decisions.
fn noise_seeds(corpus: &Corpus) {
    for seed in 1..=4u64 {
        let name = format!("seed-noise-{seed}");
        corpus.write("kernel-syscalls", &name, &noise(seed * 0x9e37_79b9, 96 * seed as usize));
        corpus.write("iommu-pagetable", &name, &noise(seed * 0x85eb_ca6b, 64 * seed as usize));
        corpus.write("pci-caps", &name, &noise(seed * 0xc2b2_ae35, 128 * seed as usize));
        corpus.write("iommu-service", &name, &noise(seed * 0x27d4_eb2f, 256 * seed as usize));
        corpus.write("pci-driver-core", &name, &noise(seed * 0x1656_67b1, 256 * seed as usize));
    }
}

/// One task holding a control capability with the ACCOUNT right reads
/// the figures, allocates a frame and reads them again: a successful
/// `Accounting` is otherwise rare in random input. The bytes are the
/// target's decisions, in the order `syscalls` reads them.
fn accounting_seed(corpus: &Corpus) {
    // 1024 pages; one task with one capability: slot 8, control, the
    // ninth entry of `RIGHTS` (ACCOUNT), no badge; priority 0, 64 pages,
    // 4 objects; no init task, endpoints or notifications.
    let mut bytes = vec![2, 0, 1, 1, 0, 7, 1, 7, 0, 0, 2, 4, 1, 0, 0];
    // A system call (event 0) numbered 39 (Accounting), with the
    // argument kinds for slot 8 and the scope.
    let accounting = |scope_kind: u8| [0, 1, 39, 2, 0, scope_kind, 0, 0, 0, 0];
    let (machine, task_0) = (accounting(14), accounting(0));
    // FrameAlloc (18) of one page into slot 9.
    let frame = [0, 1, 18, 2, 1, 1, 1, 0, 0, 0, 0];
    for event in [&machine[..], &task_0, &frame, &machine, &task_0] {
        bytes.extend_from_slice(event);
    }
    corpus.write("kernel-syscalls", "seed-accounting", &bytes);
}

/// The tests' good policy and every policy of the repository.
fn policy_seeds(corpus: &Corpus, repo: &Path) {
    corpus.write("policy", "seed-good", GOOD.as_bytes());
    corpus.write("policy", "seed-system", &std::fs::read(repo.join("system.toml")).expect("system.toml"));
    let mut policies: Vec<_> =
        std::fs::read_dir(repo.join("qemu/policies")).expect("qemu/policies").flatten().collect();
    policies.sort_by_key(|entry| entry.file_name());
    for entry in policies {
        let name = format!("seed-{}", entry.file_name().to_string_lossy().trim_end_matches(".toml"));
        corpus.write("policy", &name, &std::fs::read(entry.path()).expect("policy file"));
    }
}

/// One echo request per operation, and one reply of each kind.
fn echo_seeds(corpus: &Corpus) {
    let requests = [
        Request { operation: Operation::Reverse, bytes: b"hello" },
        Request { operation: Operation::SignalIt, bytes: &[] },
        Request { operation: Operation::MintBadge, bytes: &[] },
    ];
    for (index, request) in requests.iter().enumerate() {
        corpus.write("echo-request", &format!("seed-request-{index}"), &postcard::to_stdvec(request).expect("encodes"));
    }
    let replies = [
        Reply::Reversed { badge: 0x77, bytes: b"olleh" },
        Reply::Done { badge: 1 << 63 | 5 },
        Reply::Failed(capabilities::ErrorCode::Malformed),
    ];
    for (index, reply) in replies.iter().enumerate() {
        corpus.write("echo-request", &format!("seed-reply-{index}"), &postcard::to_stdvec(reply).expect("encodes"));
    }
}

/// IOMMU and PCI server requests: a type byte (see fuzz_targets::protocols), then the message.
fn server_request_seeds(corpus: &Corpus) {
    let device = capabilities::pci::Bdf::new(0, 3, 0).expect("valid address");
    let iommu_requests = [
        iommu_api::Request::ClaimKernel { device, driver: 2 },
        iommu_api::Request::Map { ioas: 1, iova: 0x10_0000, writable: true },
        iommu_api::Request::ReportTopology { functions: Default::default(), last: true },
        iommu_api::Request::Attach { ioas: Some(3) },
    ];
    for (index, request) in iommu_requests.iter().enumerate() {
        let bytes = with_control(0, &postcard::to_stdvec(request).expect("encodes"));
        corpus.write("server-requests", &format!("seed-iommu-{index}"), &bytes);
    }
    let pci_requests = [
        pci_api::Request::ConfigRead { device, offset: 0x10, width: 4 },
        pci_api::Request::Bind { device, driver: 1 },
        pci_api::Request::Devices { index: 0 },
    ];
    for (index, request) in pci_requests.iter().enumerate() {
        let bytes = with_control(2, &postcard::to_stdvec(request).expect("encodes"));
        corpus.write("server-requests", &format!("seed-pci-{index}"), &bytes);
    }
    for kind in [1u8, 3, 4, 5] {
        corpus.write("server-requests", &format!("seed-type-{kind}"), &[kind, 0, 0, 0, 0]);
    }
}

/// Register pairs: a fault QEMU records for edu at 00:03.0 reading
/// through a blocked context entry, a write fault with a PASID, a present
/// context entry, and QEMU's capability registers.
fn iommu_decode_seeds(corpus: &Corpus) {
    let mut registers = Vec::new();
    for (low, high) in [
        (0x4123u64, 1u64 << 63 | 1 << 62 | 2 << 32 | 0x0018),
        (0x1_0000_0000, 1 << 63 | 5 << 32 | 0x0108 | 1 << 31 | 0x123 << 40),
        (0x45_6003, 0x12_3402),
        (0x00d2_008c_2226_0206, 0xf0_0f4a),
    ] {
        registers.extend_from_slice(&low.to_le_bytes());
        registers.extend_from_slice(&high.to_le_bytes());
    }
    corpus.write("iommu-decode", "seed-qemu-registers", &registers);
}
