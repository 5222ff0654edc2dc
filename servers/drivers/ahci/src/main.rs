//! The trusted AHCI driver: the q35 chipset's SATA controller through its ABAR and the DMA API.
//!
//! It probes the controller the policy binds to it (00:1f.2, in the ICH9
//! group with the LPC bridge and SMBus, which no-DMA stubs hold), maps
//! its ABAR (BAR5), maps one frame through the group's default domain for
//! the command list, received FISes, a command table and data, starts
//! the first port with a disk, identifies it, and writes and reads
//! sectors, each command's completion arriving by MSI (the PCI server
//! programmed it with the IOMMU server's remapped message). Each step is
//! a test case of scenario `ahci`.
//!
//! With the parameter `user-owned` it is instead a user task that owns
//! the whole ICH9 group (scenario `ahci-user`): it claims the group,
//! creates an I/O address space and attaches the group, acquires the
//! controller from the PCI server and maps its frame at an IOVA of its
//! own choice; the rest is the same code. With `beside-a-dma-driver` it
//! only claims, and must be refused: a DMA-capable driver holds the LPC
//! bridge of the same group (scenario `ahci-mixed`).
#![no_std]
#![no_main]

use ahci::Error;
use ahci::command::{self, Buffer as Data, SECTOR};
use ahci::fis::AtaCommand;
use ahci::hba::{self, port, reg};
use ahci::identify::Disk;
use capabilities::abi::ipc::NONBLOCK;
use capabilities::pci::Bdf;
use capabilities::protocol::Refused;
use core::sync::atomic::{AtomicU32, Ordering};
use iommu_api::client::group;
use iommu_api::{Reply, Request};

use userlib::cap::{Cap, DeviceMemory, Endpoint, Frame, Interrupt, Notification, SlotPool, own};
use userlib::ipc::Buffer;
use userlib::mmio::Mapping;
use userlib::testkit::{self, Outcome};
use userlib::{check, check_eq, check_ok, objects};

userlib::cap_slot!(PCI: Endpoint = "pci");
userlib::cap_slot!(IOMMU: Endpoint = "iommu", optional);
userlib::entry!(main);

/// The ABAR is BAR5.
const ABAR: u8 = 5;
/// Where the ABAR and the DMA frame are mapped in this task.
const ABAR_VIRT: u64 = 0x2000_0000;
const FRAME_VIRT: u64 = 0x2100_0000;
/// The DMA frame: the command list (1 KiB) and received FISes (256 bytes)
/// in page 0, the command table in page 1, data in pages 2 and 3.
const FRAME_PAGES: u64 = 4;
const FIS_OFFSET: u64 = 0x400;
const TABLE_OFFSET: u64 = 0x1000;
const DATA_OFFSET: u64 = 0x2000;
/// The DMA API is asked for addresses below 4 GiB.
const DMA_MASK_BITS: u8 = 32;
/// The sector the pattern goes to, and how many.
const TEST_LBA: u64 = 77;
const TEST_SECTORS: u64 = 8;
/// Waits are bounded by polls of this many microseconds, this many times.
const POLL_US: u64 = 1_000;
const POLLS: u32 = 2_000;

/// The notification bit the controller's MSI sets.
const INTERRUPT_BIT: u64 = 1 << 1;

/// The controller once started: its registers, its interrupt, its port
/// and the frame.
struct Hba {
    registers: Mapping<DeviceMemory>,
    interrupt: Cap<Interrupt>,
    port: u64,
    memory: Mapping<Frame>,
    iova: u64,
    disk: Option<Disk>,
}

static HBA: spin::Mutex<Option<Hba>> = spin::Mutex::new(None);
/// The notification the driver sleeps on, which the MSI also sets.
static SLEEP: spin::Once<Cap<Notification>> = spin::Once::new();
/// Commands whose end the MSI announced.
static INTERRUPTED: AtomicU32 = AtomicU32::new(0);

/// The controller's address on every q35 machine.
const SATA: Bdf = Bdf::at(0, 0x1f, 2);
/// Where a user owner maps its frame in its own address space.
const USER_IOVA: u64 = 0x10_0000;

fn main() -> u64 {
    if userlib::boot::parameter("beside-a-dma-driver", 0) != 0 {
        return testkit::run(userlib::cases![the_claim_beside_a_dma_driver_on_the_lpc_bridge_is_busy]);
    }
    if userlib::boot::parameter("user-owned", 0) != 0 {
        return testkit::run(userlib::cases![
            the_user_owns_the_group_and_its_own_address_space,
            the_first_port_with_a_disk_starts,
            identify_reports_the_disk,
            a_pattern_written_to_sectors_reads_back,
            sectors_past_the_disk_are_refused
        ]);
    }
    testkit::run(userlib::cases![
        probe_grants_the_abar_and_a_dma_handle,
        the_first_port_with_a_disk_starts,
        identify_reports_the_disk,
        a_pattern_written_to_sectors_reads_back,
        sectors_past_the_disk_are_refused
    ])
}

/// Sleeps until the MSI or a poll's time; whether the MSI came.
fn sleep() -> bool {
    SLEEP.get().is_some_and(|sleep| sleep.wait(0, POLL_US).is_ok_and(|bits| bits & INTERRUPT_BIT != 0))
}

/// Polls `done` until it holds, at most [`POLLS`] times.
fn wait(waiting_for: &'static str, mut done: impl FnMut() -> bool) -> Result<(), Error> {
    for _ in 0..POLLS {
        if done() {
            return Ok(());
        }
        sleep();
    }
    Err(Error::Timeout { waiting_for })
}

fn probe_grants_the_abar_and_a_dma_handle(buffer: &mut Buffer) -> Outcome {
    let mut slots = SlotPool::new();
    let (Some(window), Some(frame), Some(sleep)) = (slots.take_run(4), slots.take(), slots.take()) else {
        userlib::fail!("no free slots");
    };
    let granted = check_ok!(pci_api::client::probe(PCI.get(), buffer, 0, window).map_err(Refused::logged));
    let abar = granted.bar_number(ABAR);
    let (Some(abar), Some(interrupt), Some(handle)) = (abar, granted.interrupt(), granted.dma_handle()) else {
        userlib::fail!("the grant lacks the ABAR, the MSI or the DMA handle");
    };
    defmt::info!("ahci holds {} (IOMMU group {})", granted.grant.device, granted.group());
    let frame = check_ok!(objects::alloc_frame(frame, FRAME_PAGES));
    let handle = Cap::<Endpoint>::at(handle);
    let dma = iommu_api::client::dma_map(handle, buffer, frame.slot(), true, DMA_MASK_BITS);
    let iova = check_ok!(dma.map_err(Refused::logged));
    take_controller(buffer, abar, interrupt, frame, iova, sleep)
}

/// Maps the ABAR and the frame the device reaches at `iova`, binds the
/// MSI and turns bus mastering on: the controller is the driver's.
fn take_controller(
    buffer: &mut Buffer,
    abar: u32,
    interrupt: u32,
    frame: Cap<Frame>,
    iova: u64,
    sleep: u32,
) -> Outcome {
    let registers = check_ok!(Mapping::map(own::SPACE, Cap::<DeviceMemory>::at(abar), ABAR_VIRT, true));
    let memory = check_ok!(Mapping::map(own::SPACE, frame, FRAME_VIRT, true));
    let sleep = check_ok!(objects::create_notification(sleep));
    let interrupt = Cap::<Interrupt>::at(interrupt);
    check_ok!(interrupt.bind(sleep, INTERRUPT_BIT));
    SLEEP.call_once(|| sleep);
    check_ok!(pci_api::client::enable_bus_mastering(PCI.get(), buffer, SATA).map_err(Refused::logged));
    *HBA.lock() = Some(Hba { registers, interrupt, port: 0, memory, iova, disk: None });
    Ok(())
}

/// A DMA-capable driver holds the LPC bridge, so the group is kernel-owned:
/// the claim is refused as busy, naming the function and its driver.
fn the_claim_beside_a_dma_driver_on_the_lpc_bridge_is_busy(buffer: &mut Buffer) -> Outcome {
    let Some(slot) = SlotPool::new().take() else { userlib::fail!("no free slot") };
    let refused = match group::claim(IOMMU.get(), buffer, SATA, slot) {
        Ok(_) => userlib::fail!("the claim was granted"),
        Err(refused) => refused,
    };
    defmt::info!("  claim refused ({}): {=str}", refused.code, refused.reason.as_str());
    check_eq!(refused.code, capabilities::ErrorCode::Busy);
    check!(refused.reason.contains("00:1f.0"), "the reason names the LPC bridge");
    Ok(())
}

fn the_user_owns_the_group_and_its_own_address_space(buffer: &mut Buffer) -> Outcome {
    let mut slots = SlotPool::new();
    let taken = (slots.take_run(4), slots.take(), slots.take(), slots.take());
    let (Some(window), Some(frame), Some(sleep), Some(group)) = taken else { userlib::fail!("no free slots") };
    // The whole ICH9 group: the LPC bridge and SMBus stay with the no-DMA stub.
    let id = check_ok!(group::claim(IOMMU.get(), buffer, SATA, group).map_err(Refused::logged));
    let group = Cap::<Endpoint>::at(group);
    let ask = |buffer: &mut Buffer, request: &Request, send: &[u32]| {
        iommu_api::client::request(group, buffer, request, send).map_err(Refused::logged)
    };
    let Reply::Ioas { ioas } = check_ok!(ask(buffer, &Request::IoasCreate, &[])) else {
        userlib::fail!("no address space")
    };
    check_eq!(check_ok!(ask(buffer, &Request::Attach { ioas: Some(ioas) }, &[])), Reply::Done);
    let granted = check_ok!(pci_api::client::acquire(PCI.get(), buffer, SATA, window).map_err(Refused::logged));
    let abar = granted.bar_number(ABAR);
    let (Some(abar), Some(interrupt)) = (abar, granted.interrupt()) else {
        userlib::fail!("the grant lacks the ABAR or the MSI");
    };
    defmt::info!("ahci: a user task owns IOMMU group {=u16} and holds {}", id, SATA);
    let frame = check_ok!(objects::alloc_frame(frame, FRAME_PAGES));
    let map = Request::Map { ioas, iova: USER_IOVA, writable: true };
    check_eq!(
        check_ok!(ask(buffer, &map, &[frame.slot()])),
        Reply::Mapped { iova: USER_IOVA },
        "where the owner chose"
    );
    take_controller(buffer, abar, interrupt, frame, USER_IOVA, sleep)
}

impl Hba {
    fn read(&self, offset: u64) -> u32 {
        self.registers.read32(offset).unwrap_or(0)
    }

    fn write(&self, offset: u64, value: u32) {
        let _ = self.registers.write32(offset, value);
    }

    /// Port register `offset` of the driven port.
    fn port_reg(&self, offset: u64) -> u64 {
        self.port + offset
    }

    /// AHCI mode, the disk's port found, stopped, pointed at the frame
    /// and started.
    fn start(&mut self) -> Result<u8, Error> {
        self.write(reg::GHC, self.read(reg::GHC) | hba::GHC_AHCI);
        let implemented = self.read(reg::PI);
        let registers = &self.registers;
        let found = hba::first_disk(implemented, |n| {
            let base = hba::port_base(n);
            let read = |offset| registers.read32(base + offset).unwrap_or(0);
            (read(port::SSTS), read(port::SIG))
        })?;
        self.port = hba::port_base(found);
        let cmd = self.port_reg(port::CMD);
        self.write(cmd, self.read(cmd) & !(hba::CMD_START | hba::CMD_FIS_RECEIVE));
        wait("the port to stop", || self.read(cmd) & (hba::CMD_LIST_RUNNING | hba::CMD_FIS_RUNNING) == 0)?;
        for at in (0..FRAME_PAGES * 4096).step_by(8) {
            let _ = self.memory.write64(at, 0);
        }
        let _ = self.memory.write_back(0, FRAME_PAGES * 4096);
        let (list, fis) = (self.iova, self.iova + FIS_OFFSET);
        self.write(self.port_reg(port::CLB), list as u32);
        self.write(self.port_reg(port::CLBU), (list >> 32) as u32);
        self.write(self.port_reg(port::FB), fis as u32);
        self.write(self.port_reg(port::FBU), (fis >> 32) as u32);
        self.write(self.port_reg(port::SERR), u32::MAX);
        self.write(self.port_reg(port::IS), u32::MAX);
        self.write(cmd, self.read(cmd) | hba::CMD_FIS_RECEIVE | hba::CMD_POWER_ON | hba::CMD_SPIN_UP);
        let tfd = self.port_reg(port::TFD);
        wait("the device to be ready", || self.read(tfd) as u8 & (hba::STATUS_BUSY | hba::STATUS_DRQ) == 0)?;
        self.write(cmd, self.read(cmd) | hba::CMD_START);
        // A command's end (its register FIS) and any error interrupt.
        self.write(self.port_reg(port::IE), hba::IS_D2H_REGISTER | hba::IS_ERRORS);
        self.write(reg::GHC, self.read(reg::GHC) | hba::GHC_INTERRUPTS);
        Ok(found)
    }

    /// Runs `ata` on sectors from `lba` with `bytes` of data at the
    /// frame's data pages, in slot 0, and polls for its end.
    fn run(&self, ata: AtaCommand, lba: u64, bytes: u64) -> Result<(), Error> {
        let data = (bytes > 0).then_some(Data { address: self.iova + DATA_OFFSET, bytes });
        let prepared = command::prepare(ata, lba, data, self.iova + TABLE_OFFSET)?;
        for (i, &byte) in prepared.header.iter().enumerate() {
            let _ = self.memory.write8(i as u64, byte);
        }
        for (i, &byte) in prepared.table.iter().enumerate() {
            let _ = self.memory.write8(TABLE_OFFSET + i as u64, byte);
        }
        let _ = self.memory.write_back(0, DATA_OFFSET + bytes);
        self.write(self.port_reg(port::IS), u32::MAX);
        self.write(self.port_reg(port::CI), 1);
        let (ci, is) = (self.port_reg(port::CI), self.port_reg(port::IS));
        let mut interrupted = false;
        for _ in 0..POLLS {
            if self.read(ci) & 1 == 0 || self.read(is) & hba::IS_ERRORS != 0 {
                break;
            }
            interrupted |= sleep();
        }
        if self.read(ci) & 1 != 0 && self.read(is) & hba::IS_ERRORS == 0 {
            return Err(Error::Timeout { waiting_for: "the command to end" });
        }
        let status = self.read(is);
        // Acknowledge at the port, at the HBA, then at the kernel.
        self.write(is, status);
        self.write(reg::IS, 1 << ((self.port - hba::port_base(0)) / 0x80));
        if interrupted
            || SLEEP.get().is_some_and(|sleep| sleep.wait(NONBLOCK, 0).is_ok_and(|bits| bits & INTERRUPT_BIT != 0))
        {
            INTERRUPTED.fetch_add(1, Ordering::Relaxed);
        }
        let _ = self.interrupt.acknowledge();
        hba::outcome(self.read(self.port_reg(port::TFD)), status)
    }
}

fn with_hba<T>(body: impl FnOnce(&mut Hba) -> Result<T, Error>) -> Result<T, Error> {
    match HBA.lock().as_mut() {
        Some(hba) => body(hba),
        None => Err(Error::Timeout { waiting_for: "a probed controller" }),
    }
}

fn the_first_port_with_a_disk_starts(_: &mut Buffer) -> Outcome {
    let port = check_ok!(with_hba(Hba::start).map_err(|error| {
        defmt::error!("  {}", defmt::Display2Format(&error));
        error_code(error)
    }));
    defmt::info!("ahci: port {=u8} has a disk and runs", port);
    Ok(())
}

fn error_code(error: Error) -> capabilities::ErrorCode {
    match error {
        Error::BlockRange { .. } | Error::Length { .. } | Error::Unaligned { .. } | Error::TooLarge { .. } => {
            capabilities::ErrorCode::InvalidArgument
        }
        Error::Timeout { .. } => capabilities::ErrorCode::TimedOut,
        _ => capabilities::ErrorCode::Busy,
    }
}

fn identify_reports_the_disk(_: &mut Buffer) -> Outcome {
    let disk = check_ok!(
        with_hba(|hba| {
            hba.run(AtaCommand::Identify, 0, SECTOR)?;
            let mut data = [0u8; 512];
            hba.memory.copy_out(DATA_OFFSET, &mut data).ok_or(Error::Identify)?;
            let disk = Disk::decode(&data)?;
            hba.disk = Some(disk.clone());
            Ok(disk)
        })
        .map_err(error_code)
    );
    defmt::info!("ahci: disk {=str}, {=u64} sectors", disk.model(), disk.sectors);
    check_eq!(disk.sectors, (16u64 << 20) / SECTOR, "the 16 MiB image the machine declares");
    Ok(())
}

fn a_pattern_written_to_sectors_reads_back(_: &mut Buffer) -> Outcome {
    let pattern = |i: u64| (i as u8).wrapping_mul(13) ^ 0xa5;
    let bytes = TEST_SECTORS * SECTOR;
    let outcome = with_hba(|hba| {
        for i in 0..bytes {
            let _ = hba.memory.write8(DATA_OFFSET + i, pattern(i));
        }
        hba.run(AtaCommand::WriteDmaExt, TEST_LBA, bytes)?;
        for i in 0..bytes {
            let _ = hba.memory.write8(DATA_OFFSET + i, 0);
        }
        let _ = hba.memory.write_back(DATA_OFFSET, bytes);
        hba.run(AtaCommand::ReadDmaExt, TEST_LBA, bytes)?;
        Ok((0..bytes).all(|i| hba.memory.read8(DATA_OFFSET + i) == Some(pattern(i))))
    });
    check!(check_ok!(outcome.map_err(error_code)), "the sectors read back hold what was written");
    check!(INTERRUPTED.load(Ordering::Relaxed) >= 3, "IDENTIFY, the write and the read each ended with an MSI");
    Ok(())
}

fn sectors_past_the_disk_are_refused(_: &mut Buffer) -> Outcome {
    let refused = with_hba(|hba| {
        let sectors = hba.disk.as_ref().map_or(0, |disk| disk.sectors);
        command::check_range(sectors - 1, 2, sectors)
    });
    check!(matches!(refused, Err(Error::BlockRange { .. })), "a range past the disk's end");
    Ok(())
}
