//! The trusted NVMe driver: QEMU's nvme through BAR0 and the DMA API.
//!
//! It probes the controller the policy binds to it, maps BAR0 (the
//! registers and doorbells; the PCI server keeps the MSI-X table and PBA
//! pages), maps one frame through its group's default domain for the
//! queues and buffers, resets and enables the controller, identifies it
//! and namespace 1, takes an MSI-X vector for its I/O completions, creates
//! an I/O queue pair that raises it, and writes and reads blocks. Each
//! step is a test case of scenario `nvme`. Given a `requests` endpoint,
//! it then serves the block protocol on it (scenario `nvme-block`).
#![no_std]
#![no_main]

mod driver;
mod serve;

use capabilities::pci::Bdf;
use capabilities::protocol::Refused;
use driver::controller::{CompletionInterrupt, Controller, DATA_BYTES, FRAME_PAGES};
use iommu_api::{Reply, Request};
use nvme::Error;
use nvme::command::Direction;
use nvme::identify::Namespace;
use nvme::queue::QueueMemory;
use nvme::registers;
use userlib::cap::{Cap, DeviceMemory, Endpoint, Interrupt, SlotPool, own};
use userlib::ipc::Buffer;
use userlib::mmio::Mapping;
use userlib::testkit::{self, Outcome};
use userlib::{check, check_eq, check_ok, objects};

userlib::cap_slot!(PCI: Endpoint = "pci");
userlib::cap_slot!(REQUESTS: Endpoint = "requests", optional);
userlib::entry!(main);

/// The host page size the driver runs the controller with.
const PAGE_SHIFT: u8 = 12;
const PAGE: u64 = 1 << PAGE_SHIFT;
/// Where BAR0 and the DMA frame are mapped in this task.
const BAR_VIRT: u64 = 0x2000_0000;
const FRAME_VIRT: u64 = 0x2100_0000;
/// The addresses the controller can drive are 64-bit; the DMA API is
/// asked for 32, which every domain has room in.
const DMA_MASK_BITS: u8 = 32;
/// QEMU's vendor identifier, which its nvme reports.
const QEMU_VENDOR: u16 = 0x1b36;
/// The serial number machine `nvme` gives its controller.
const SERIAL: &str = "nvme-disk0";
/// The namespace the machine's drive image backs, and its size.
const NAMESPACE: u32 = 1;
const IMAGE_BYTES: u64 = 16 << 20;
/// The block the pattern goes to.
const TEST_BLOCK: u64 = 77;
/// The MSI-X entry the I/O completion queue raises: not entry 0, which
/// the admin queue always raises, so each interrupt is an I/O completion.
const IO_VECTOR: u16 = 1;

/// Cases share the controller and namespace 1's geometry: they run one
/// after the other, in this task.
static CONTROLLER: spin::Mutex<Option<Controller>> = spin::Mutex::new(None);
static GEOMETRY: spin::Once<Namespace> = spin::Once::new();
/// The task's free slots, shared by the cases that take capabilities.
static SLOTS: spin::Mutex<SlotPool> = spin::Mutex::new(SlotPool::new());
/// The controller's address, for the PCI server's MSI-X requests.
static DEVICE: spin::Once<Bdf> = spin::Once::new();
/// The DMA handle on the controller's group, for its fault log.
static HANDLE: spin::Once<Cap<Endpoint>> = spin::Once::new();

fn main() -> u64 {
    let Some(mut buffer) = Buffer::take() else { return testkit::setup_failed("the IPC buffer was already taken") };
    let failed = testkit::run_with(&mut buffer, CASES);
    if failed != 0 || REQUESTS.get().slot() == 0 {
        return failed;
    }
    serve_clients(&mut buffer)
}

/// Serves the block protocol with what the cases set up.
fn serve_clients(buffer: &mut Buffer) -> u64 {
    let (Some(&handle), Ok(namespace), Some(lent)) = (HANDLE.get(), geometry(), { SLOTS.lock().take() }) else {
        defmt::error!("nvme: the cases left nothing to serve with");
        return 1;
    };
    let mut controller = CONTROLLER.lock();
    let Some(controller) = controller.as_mut() else {
        defmt::error!("nvme: no controller to serve with");
        return 1;
    };
    let mut server = serve::Server { controller, namespace, handle, lent };
    serve::serve(&mut server, REQUESTS.get(), buffer)
}

/// The cases, in order: each builds on the ones before.
const CASES: &[testkit::Case] = userlib::cases![
    probe_grants_bar0_without_the_msix_pages_and_a_dma_handle,
    the_capabilities_allow_4_kib_pages_and_the_nvm_command_set,
    the_controller_resets_and_enables_with_its_admin_queue,
    identify_controller_names_qemus_nvme_and_the_machines_serial,
    identify_namespace_1_is_the_drive_image,
    an_msix_vector_is_taken_for_io_completions,
    an_io_queue_pair_is_created,
    a_pattern_written_to_a_block_reads_back,
    io_completions_arrive_by_their_msix_vector,
    a_read_crossing_a_page_uses_both_prps,
    a_buffer_needing_a_prp_list_is_refused_before_the_device,
    an_out_of_range_block_is_a_typed_error_and_the_driver_keeps_going,
    a_reset_controller_gets_fresh_queues_and_keeps_its_data,
    a_read_aimed_past_the_frame_is_blocked_and_lands_in_the_fault_log
];

/// Runs `step` on the controller the probe set up.
fn with_controller<T>(step: impl FnOnce(&mut Controller) -> T) -> Result<T, testkit::Failure> {
    let mut controller = CONTROLLER.lock();
    let controller = controller.as_mut().ok_or(testkit::Failure { file: file!(), line: line!() })?;
    Ok(step(controller))
}

fn geometry() -> Result<&'static Namespace, testkit::Failure> {
    GEOMETRY.get().ok_or(testkit::Failure { file: file!(), line: line!() })
}

fn probe_grants_bar0_without_the_msix_pages_and_a_dma_handle(buffer: &mut Buffer) -> Outcome {
    let mut slots = SLOTS.lock();
    let (Some(window), Some(frame)) = (slots.take_run(pci_api::client::GRANT_SLOTS), slots.take()) else {
        userlib::fail!("no free slots");
    };
    let granted = check_ok!(pci_api::client::probe(PCI.get(), buffer, 0, window).map_err(Refused::logged));
    let (Some(bar), Some(handle), Some(bar0)) = (granted.bar(0), granted.dma_handle(), granted.grant.bars.first())
    else {
        userlib::fail!("the grant lacks BAR0 or the DMA handle");
    };
    defmt::info!("nvme holds {} (IOMMU group {})", granted.grant.device, granted.group());
    defmt::info!("nvme: BAR0 is {=u64:#x} bytes, {=u64:#x} of them granted", bar0.size, bar0.len);
    // QEMU's nvme puts its MSI-X table and PBA in BAR0 after the registers
    // and doorbells: the grant covers the registers and stops short.
    check_eq!(bar0.index, 0);
    check_eq!(bar0.offset, 0);
    check!(bar0.len < bar0.size, "the MSI-X pages are not in the holder's BAR0 capability");
    let registers = check_ok!(Mapping::map(own::SPACE, Cap::<DeviceMemory>::at(bar), BAR_VIRT, true));
    let frame = check_ok!(objects::alloc_frame(frame, FRAME_PAGES));
    let dma = iommu_api::client::dma_map(Cap::at(handle), buffer, frame.slot(), true, DMA_MASK_BITS);
    let iova = check_ok!(dma.map_err(Refused::logged));
    defmt::info!("nvme's queues and buffers are at IOVA {=u64:#x}", iova);
    let memory = check_ok!(Mapping::map(own::SPACE, frame, FRAME_VIRT, true));
    let controller = check_ok!(Controller::new(registers, memory, iova));
    // The grant leaves bus mastering off: on only once the queues' memory
    // is the driver's, before the controller is enabled.
    check_ok!(pci_api::client::enable_bus_mastering(PCI.get(), buffer, granted.grant.device).map_err(Refused::logged));
    *CONTROLLER.lock() = Some(controller);
    DEVICE.call_once(|| granted.grant.device);
    HANDLE.call_once(|| Cap::at(handle));
    Ok(())
}

fn the_capabilities_allow_4_kib_pages_and_the_nvm_command_set(_: &mut Buffer) -> Outcome {
    let (capabilities, version) = with_controller(|controller| (controller.capabilities, controller.version()))?;
    let (major, minor, _) = registers::version(check_ok!(version));
    defmt::info!(
        "nvme: NVMe {=u16}.{=u8}, {=u32} entries a queue at most, doorbell stride {=u8}, ready within {=u64} us",
        major,
        minor,
        capabilities.max_queue_entries,
        capabilities.doorbell_stride,
        capabilities.ready_timeout_micros
    );
    check_ok!(capabilities.check(PAGE_SHIFT));
    check!(major >= 1, "the controller implements NVMe 1.0 or later");
    check!(capabilities.ready_timeout_micros > 0, "CAP.TO gives the waits a bound");
    Ok(())
}

fn the_controller_resets_and_enables_with_its_admin_queue(_: &mut Buffer) -> Outcome {
    with_controller(|controller| -> Outcome {
        check_ok!(controller.reset());
        check_eq!(check_ok!(controller.status()).ready, false);
        check_ok!(controller.enable());
        let status = check_ok!(controller.status());
        check!(status.ready && !status.fatal, "the controller is ready and not fatal");
        Ok(())
    })?
}

fn identify_controller_names_qemus_nvme_and_the_machines_serial(_: &mut Buffer) -> Outcome {
    let identified = check_ok!(with_controller(Controller::identify_controller)?);
    defmt::info!("nvme: controller {=str}, serial {=str}", identified.model_text(), identified.serial_text());
    check_eq!(identified.vendor, QEMU_VENDOR);
    check_eq!(identified.serial_text(), SERIAL);
    check!(identified.namespaces >= NAMESPACE, "namespace 1 exists");
    Ok(())
}

fn identify_namespace_1_is_the_drive_image(_: &mut Buffer) -> Outcome {
    let namespace = check_ok!(with_controller(|controller| controller.identify_namespace(NAMESPACE))?);
    defmt::info!("nvme: namespace 1 has {=u64} blocks of {=u64} bytes", namespace.blocks, namespace.block_bytes());
    check_eq!(namespace.blocks * namespace.block_bytes(), IMAGE_BYTES);
    check!(namespace.block_bytes() <= PAGE, "a block fits in a page");
    GEOMETRY.call_once(|| namespace);
    Ok(())
}

fn an_msix_vector_is_taken_for_io_completions(buffer: &mut Buffer) -> Outcome {
    let Some(&device) = DEVICE.get() else { userlib::fail!("no device probed") };
    let (Some(slot), Some(raised)) = ({ SLOTS.lock().take() }, { SLOTS.lock().take() }) else {
        userlib::fail!("no free slots");
    };
    let vectors = check_ok!(
        pci_api::client::msix_vectors(PCI.get(), buffer, device, IO_VECTOR, 1, slot).map_err(Refused::logged)
    );
    check_eq!(vectors.len(), 1);
    let raised = check_ok!(objects::create_notification(raised));
    let interrupt = Cap::<Interrupt>::at(slot);
    check_ok!(interrupt.bind(raised, 1));
    defmt::info!("nvme: I/O completions raise MSI-X entry {=u16}, CPU vector {=u8}", IO_VECTOR, vectors[0]);
    with_controller(|controller| {
        controller.use_interrupt(CompletionInterrupt { entry: IO_VECTOR, interrupt, raised })
    })?;
    Ok(())
}

fn an_io_queue_pair_is_created(_: &mut Buffer) -> Outcome {
    check_ok!(with_controller(Controller::create_io_queues)?);
    Ok(())
}

/// The byte at `index` of the pattern written to the test blocks.
fn pattern(index: u64) -> u8 {
    (index as u8).wrapping_mul(13) ^ (index >> 8) as u8 ^ 0xa5
}

/// Blocks in one page.
fn blocks_per_page(geometry: &Namespace) -> u32 {
    (PAGE >> geometry.block_shift) as u32
}

/// Checks that `PAGE` bytes of the data pages from `offset` hold the pattern.
fn holds_pattern(controller: &Controller, offset: u64) -> Result<bool, Error> {
    let mut read = [0u8; 512];
    for chunk in 0..PAGE / 512 {
        controller.data().read((offset + chunk * 512) as usize, &mut read)?;
        if read.iter().enumerate().any(|(index, &byte)| byte != pattern(chunk * 512 + index as u64)) {
            return Ok(false);
        }
    }
    Ok(true)
}

fn a_pattern_written_to_a_block_reads_back(_: &mut Buffer) -> Outcome {
    let geometry = geometry()?;
    let blocks = blocks_per_page(geometry);
    with_controller(|controller| -> Outcome {
        let bytes: [u8; PAGE as usize] = core::array::from_fn(|index| pattern(index as u64));
        check_ok!(controller.data().write(0, &bytes));
        check_ok!(controller.transfer(Direction::Write, NAMESPACE, geometry, TEST_BLOCK, blocks, 0));
        check_ok!(controller.data().zero());
        check_eq!(check_ok!(holds_pattern(controller, 0)), false, "the buffer was cleared");
        check_ok!(controller.transfer(Direction::Read, NAMESPACE, geometry, TEST_BLOCK, blocks, 0));
        check!(check_ok!(holds_pattern(controller, 0)), "the blocks read back hold the pattern");
        Ok(())
    })?
}

fn io_completions_arrive_by_their_msix_vector(_: &mut Buffer) -> Outcome {
    let geometry = geometry()?;
    with_controller(|controller| -> Outcome {
        let before = controller.interrupts_taken();
        check_ok!(controller.data().zero());
        check_ok!(controller.transfer(Direction::Read, NAMESPACE, geometry, TEST_BLOCK, blocks_per_page(geometry), 0));
        check!(controller.interrupts_taken() > before, "the read's completion raised the vector");
        check!(check_ok!(holds_pattern(controller, 0)), "and the data is there");
        Ok(())
    })?
}

fn a_read_crossing_a_page_uses_both_prps(_: &mut Buffer) -> Outcome {
    let geometry = geometry()?;
    let blocks = blocks_per_page(geometry);
    let offset = PAGE / 2;
    with_controller(|controller| -> Outcome {
        check_ok!(controller.data().zero());
        check_ok!(controller.transfer(Direction::Read, NAMESPACE, geometry, TEST_BLOCK, blocks, offset));
        check!(check_ok!(holds_pattern(controller, offset)), "both halves arrived through PRP1 and PRP2");
        Ok(())
    })?
}

fn a_buffer_needing_a_prp_list_is_refused_before_the_device(_: &mut Buffer) -> Outcome {
    let geometry = geometry()?;
    // Two pages from a dword past a page boundary span three pages.
    let blocks = 2 * blocks_per_page(geometry);
    let refused =
        with_controller(|controller| controller.transfer(Direction::Read, NAMESPACE, geometry, TEST_BLOCK, blocks, 4))?;
    check_eq!(refused, Err(Error::PrpListUnsupported { pages: 3 }));
    let too_long = with_controller(|controller| {
        controller.transfer(Direction::Read, NAMESPACE, geometry, TEST_BLOCK, blocks + 1, 0)
    })?;
    check_eq!(too_long, Err(Error::PrpListUnsupported { pages: 3 }));
    check!(DATA_BYTES == 2 * PAGE, "two pages is the most one transfer moves");
    Ok(())
}

fn an_out_of_range_block_is_a_typed_error_and_the_driver_keeps_going(_: &mut Buffer) -> Outcome {
    let geometry = geometry()?;
    let past_the_end = geometry.blocks;
    with_controller(|controller| -> Outcome {
        let checked = controller.transfer(Direction::Read, NAMESPACE, geometry, past_the_end, 1, 0);
        check_eq!(checked, Err(Error::BlockRange), "the driver refuses it before the device");
        let device =
            controller.transfer_unchecked(Direction::Read, NAMESPACE, geometry.block_shift, past_the_end, 1, 0);
        let Err(Error::Command(status)) = device else { userlib::fail!("the device accepted a block past the end") };
        defmt::info!("nvme: a read past the end completes with {}", status);
        check!(status.is_lba_out_of_range(), "the device answers LBA out of range");
        check_ok!(controller.data().zero());
        check_ok!(controller.transfer(Direction::Read, NAMESPACE, geometry, TEST_BLOCK, blocks_per_page(geometry), 0));
        check!(check_ok!(holds_pattern(controller, 0)), "the next read works and still finds the pattern");
        Ok(())
    })?
}

/// The recovery a timed-out or fatal command triggers, run on purpose:
/// QEMU's controller never hangs, so this is how the path is shown.
fn a_reset_controller_gets_fresh_queues_and_keeps_its_data(_: &mut Buffer) -> Outcome {
    let geometry = geometry()?;
    with_controller(|controller| -> Outcome {
        check_ok!(controller.recover());
        let before = controller.interrupts_taken();
        check_ok!(controller.data().zero());
        check_ok!(controller.transfer(Direction::Read, NAMESPACE, geometry, TEST_BLOCK, blocks_per_page(geometry), 0));
        check!(check_ok!(holds_pattern(controller, 0)), "the pattern is still on the namespace");
        check!(controller.interrupts_taken() > before, "the new I/O queue raises the same MSI-X entry");
        Ok(())
    })?
}

/// The byte the data pages hold while the controller is aimed elsewhere.
const CANARY: u8 = 0x3c;
/// How long the IOMMU server may take to drain a fault into the log.
const FAULT_ARRIVAL_US: u64 = 1_000_000;

/// The fault records on the controller's group that name `address`'s page.
fn faults_at(buffer: &mut Buffer, address: u64) -> Result<usize, testkit::Failure> {
    let Some(&handle) = HANDLE.get() else { userlib::fail!("no DMA handle") };
    let reply = check_ok!(iommu_api::client::request(handle, buffer, &Request::Faults, &[]).map_err(Refused::logged));
    let Reply::Faults { records, .. } = reply else { userlib::fail!("Faults answered with no records") };
    let page = address & !(PAGE - 1);
    Ok(records.iter().filter(|fault| fault.address == page && fault.write).count())
}

/// The controller aimed at an IOVA nothing maps: its write is blocked and
/// lands in the group's fault log, and the driver's pages keep their canary.
fn a_read_aimed_past_the_frame_is_blocked_and_lands_in_the_fault_log(buffer: &mut Buffer) -> Outcome {
    let geometry = geometry()?;
    let stray = with_controller(|controller| controller.past_the_frame())?;
    let outcome = with_controller(|controller| -> Result<Result<(), Error>, testkit::Failure> {
        let canary = [CANARY; PAGE as usize];
        check_ok!(controller.data().write(0, &canary));
        check_ok!(controller.data().write(PAGE as usize, &canary));
        let prp = nvme::prp::Prp { first: stray, second: 0 };
        Ok(controller.transfer_at(Direction::Read, NAMESPACE, TEST_BLOCK, blocks_per_page(geometry), prp))
    })??;
    // QEMU 7.2's nvme completes this read successfully: the IOMMU's
    // refusal of its write does not reach the command's status. What the
    // case requires is what the IOMMU guarantees: the write blocked and
    // logged, and no memory of the driver's touched instead.
    defmt::info!("nvme: a read into unmapped IOVA {=u64:#x} completes with {}", stray, outcome);
    let deadline = userlib::syscall::now() + FAULT_ARRIVAL_US;
    let mut logged = faults_at(buffer, stray)?;
    while logged == 0 && userlib::syscall::now() < deadline {
        userlib::syscall::yield_now();
        logged = faults_at(buffer, stray)?;
    }
    check!(logged > 0, "the blocked write is in the group's fault log at that page");
    with_controller(|controller| -> Outcome {
        let mut read = [0u8; PAGE as usize];
        for half in 0..2 {
            check_ok!(controller.data().read(half * PAGE as usize, &mut read));
            check!(read.iter().all(|&byte| byte == CANARY), "the driver's data pages are untouched");
        }
        check_ok!(controller.data().zero());
        check_ok!(controller.transfer(Direction::Read, NAMESPACE, geometry, TEST_BLOCK, blocks_per_page(geometry), 0));
        check!(check_ok!(holds_pattern(controller, 0)), "the next read works");
        Ok(())
    })?
}
