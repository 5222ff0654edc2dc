//! A trusted network driver for two QEMU e1000e on one hub: frames from one to the other through the DMA API.
//!
//! It probes the two NICs the policy binds to it, maps each one's BAR0
//! and one frame through its group's default domain for its rings and
//! buffers, resets them, reads their MAC addresses, brings their links
//! up, and sends frames of 60 to 1514 bytes from the first to the
//! second, which must receive each byte for byte. Completion is polled.
//! Each step is a test case of scenario `net`.
#![no_std]
#![no_main]

use capabilities::protocol::Refused;
use e1000e::descriptor::{self, LEN};
use e1000e::registers::{self as reg, Mac};
use e1000e::ring::Ring;
use userlib::cap::{Cap, DeviceMemory, Frame, Notification, SlotPool, own};
use userlib::ipc::Buffer;
use userlib::mmio::Mapping;
use userlib::testkit::{self, Outcome};
use userlib::{check, check_eq, check_ok, objects};

userlib::cap_slot!(PCI: Endpoint = "pci");
userlib::entry!(main);

/// Descriptors per ring.
const RING: u16 = 8;
/// The frame per NIC: the TX ring at 0, the RX ring at 0x800, RX buffers
/// (2 KiB each, the NIC's default size) from page 1, the TX buffer after
/// (eight pages: frames come in powers of two).
const FRAME_PAGES: u64 = 8;
const RX_RING: u64 = 0x800;
const RX_BUFFERS: u64 = 0x1000;
const RX_BUFFER: u64 = 2048;
const TX_BUFFER: u64 = RX_BUFFERS + RX_BUFFER * RING as u64;
/// The DMA API is asked for addresses below 4 GiB.
const DMA_MASK_BITS: u8 = 32;
/// Where each NIC's BAR0 and frame are mapped in this task.
const BAR_VIRT: [u64; 2] = [0x2000_0000, 0x2200_0000];
const FRAME_VIRT: [u64; 2] = [0x2400_0000, 0x2500_0000];
/// The machine's MAC addresses (machine `net`).
const MACS: [[u8; 6]; 2] = [[0x52, 0x54, 0x00, 0x00, 0x00, 0x0a], [0x52, 0x54, 0x00, 0x00, 0x00, 0x0b]];
/// An EtherType for local experiments (IEEE 802 local experimental 1).
const ETHERTYPE: [u8; 2] = [0x88, 0xb5];
/// Polls of 1 ms each before a wait gives up.
const POLLS: u32 = 2_000;

/// One NIC, set up: its registers, its frame, its rings.
struct Nic {
    registers: Mapping<DeviceMemory>,
    memory: Mapping<Frame>,
    iova: u64,
    tx: Ring,
    rx: Ring,
    mac: Mac,
}

static NICS: spin::Mutex<[Option<Nic>; 2]> = spin::Mutex::new([None, None]);
static SLEEP: spin::Once<Cap<Notification>> = spin::Once::new();

fn main() -> u64 {
    testkit::run(userlib::cases![
        both_nics_are_probed_with_their_dma_handles,
        each_nic_resets_and_reports_its_mac_address,
        frames_from_one_nic_arrive_at_the_other_byte_for_byte
    ])
}

fn wait(mut done: impl FnMut() -> bool) -> bool {
    for _ in 0..POLLS {
        if done() {
            return true;
        }
        if let Some(sleep) = SLEEP.get() {
            let _ = sleep.wait(0, 1_000);
        }
    }
    false
}

fn both_nics_are_probed_with_their_dma_handles(buffer: &mut Buffer) -> Outcome {
    let mut slots = SlotPool::new();
    let Some(sleep) = slots.take() else { userlib::fail!("no free slot") };
    SLEEP.call_once(|| Cap::at(sleep));
    check_ok!(objects::create_notification(sleep));
    let mut nics = NICS.lock();
    for index in 0..2u8 {
        let (Some(window), Some(frame)) = (slots.take_run(4), slots.take()) else { userlib::fail!("no free slots") };
        let granted = check_ok!(pci_api::client::probe(PCI.get(), buffer, index, window).map_err(Refused::logged));
        let bar0 = granted.bar_number(0);
        let (Some(bar0), Some(handle)) = (bar0, granted.dma_handle()) else {
            userlib::fail!("the grant lacks BAR0 or the DMA handle");
        };
        defmt::info!("net holds {} (IOMMU group {})", granted.grant.device, granted.group());
        let frame = check_ok!(objects::alloc_frame(frame, FRAME_PAGES));
        let dma = iommu_api::client::dma_map(Cap::at(handle), buffer, frame.slot(), true, DMA_MASK_BITS);
        let iova = check_ok!(dma.map_err(Refused::logged));
        let slot = usize::from(index);
        let registers = check_ok!(Mapping::map(own::SPACE, Cap::<DeviceMemory>::at(bar0), BAR_VIRT[slot], true));
        let memory = check_ok!(Mapping::map(own::SPACE, frame, FRAME_VIRT[slot], true));
        check_ok!(
            pci_api::client::enable_bus_mastering(PCI.get(), buffer, granted.grant.device).map_err(Refused::logged)
        );
        let (Some(tx), Some(rx)) = (Ring::new(RING), Ring::new(RING)) else { userlib::fail!("ring size") };
        nics[slot] = Some(Nic { registers, memory, iova, tx, rx, mac: Mac([0; 6]) });
    }
    Ok(())
}

impl Nic {
    fn read(&self, offset: u64) -> u32 {
        self.registers.read32(offset).unwrap_or(0)
    }

    fn write(&self, offset: u64, value: u32) {
        let _ = self.registers.write32(offset, value);
    }

    fn put(&self, offset: u64, bytes: &[u8]) {
        for (i, &byte) in bytes.iter().enumerate() {
            let _ = self.memory.write8(offset + i as u64, byte);
        }
        let _ = self.memory.write_back(offset, bytes.len() as u64);
    }

    fn descriptor(&self, offset: u64) -> [u8; LEN] {
        let mut out = [0u8; LEN];
        let _ = self.memory.copy_out(offset, &mut out);
        out
    }

    /// Reset, link up, interrupts masked, both rings set and on; the MAC.
    fn start(&mut self) -> Option<Mac> {
        self.write(reg::IMC, u32::MAX);
        self.write(reg::CTRL, self.read(reg::CTRL) | reg::CTRL_RESET);
        if !wait(|| self.read(reg::CTRL) & reg::CTRL_RESET == 0) {
            return None;
        }
        self.write(reg::IMC, u32::MAX);
        self.write(reg::CTRL, self.read(reg::CTRL) | reg::CTRL_SET_LINK_UP);
        self.mac = Mac::from_receive_address(self.read(reg::RAL0), self.read(reg::RAH0))?;
        for at in (0..FRAME_PAGES * 4096).step_by(8) {
            let _ = self.memory.write64(at, 0);
        }
        let _ = self.memory.write_back(0, FRAME_PAGES * 4096);
        let bytes = u32::from(RING) * LEN as u32;
        self.write(reg::TDBAL, self.iova as u32);
        self.write(reg::TDBAH, (self.iova >> 32) as u32);
        self.write(reg::TDLEN, bytes);
        self.write(reg::TDH, 0);
        self.write(reg::TDT, 0);
        let rx_ring = self.iova + RX_RING;
        self.write(reg::RDBAL, rx_ring as u32);
        self.write(reg::RDBAH, (rx_ring >> 32) as u32);
        self.write(reg::RDLEN, bytes);
        self.write(reg::RDH, 0);
        while let Some(index) = self.rx.fill() {
            let buffer = self.iova + RX_BUFFERS + RX_BUFFER * u64::from(index);
            self.put(RX_RING + LEN as u64 * u64::from(index), &descriptor::receive(buffer));
        }
        self.write(reg::RDT, u32::from(self.rx.tail()));
        self.write(reg::RCTL, reg::RCTL_ENABLE | reg::RCTL_BROADCAST | reg::RCTL_STRIP_CRC);
        self.write(reg::TCTL, reg::TCTL_ENABLE | reg::TCTL_PAD_SHORT);
        wait(|| self.read(reg::STATUS) & reg::STATUS_LINK_UP != 0).then_some(self.mac)
    }

    /// Sends `frame` and waits for the NIC to say it went.
    fn send(&mut self, frame: &[u8]) -> bool {
        let Ok(entry) = descriptor::transmit(self.iova + TX_BUFFER, frame.len()) else { return false };
        let Some(index) = self.tx.fill() else { return false };
        self.put(TX_BUFFER, frame);
        let at = LEN as u64 * u64::from(index);
        self.put(at, &entry);
        self.write(reg::TDT, u32::from(self.tx.tail()));
        let sent = wait(|| descriptor::transmitted(&self.descriptor(at)));
        self.tx.retire();
        sent
    }

    /// Waits for the next frame and copies it into `into`; its length.
    fn receive(&mut self, into: &mut [u8]) -> Option<usize> {
        let index = self.rx.oldest()?;
        let at = RX_RING + LEN as u64 * u64::from(index);
        if !wait(|| descriptor::received(&self.descriptor(at)).is_some()) {
            return None;
        }
        let len = descriptor::received(&self.descriptor(at))?.ok()?;
        let buffer = RX_BUFFERS + RX_BUFFER * u64::from(index);
        let copied = self.memory.copy_out(buffer, into.get_mut(..len)?);
        // The buffer goes back to the NIC, empty.
        self.rx.retire();
        self.put(at, &descriptor::receive(self.iova + buffer));
        let _ = self.rx.fill();
        self.write(reg::RDT, u32::from(self.rx.tail()));
        copied.map(|()| len)
    }
}

fn each_nic_resets_and_reports_its_mac_address(_: &mut Buffer) -> Outcome {
    let mut nics = NICS.lock();
    for (slot, nic) in nics.iter_mut().enumerate() {
        let Some(nic) = nic.as_mut() else { userlib::fail!("a NIC was not probed") };
        let Some(mac) = nic.start() else { userlib::fail!("no reset, MAC or link") };
        defmt::info!("net: NIC {=usize} is {=[u8]:02x}, its link up", slot, mac.0);
        check_eq!(mac.0, MACS[slot], "the machine's address");
    }
    Ok(())
}

fn frames_from_one_nic_arrive_at_the_other_byte_for_byte(_: &mut Buffer) -> Outcome {
    let mut nics = NICS.lock();
    let [Some(from), Some(to)] = &mut *nics else { userlib::fail!("two NICs") };
    let mut sent = [0u8; 1514];
    let mut got = [0u8; 1514];
    for (round, len) in [60usize, 61, 128, 1000, 1514].into_iter().enumerate() {
        sent[0..6].copy_from_slice(&to.mac.0);
        sent[6..12].copy_from_slice(&from.mac.0);
        sent[12..14].copy_from_slice(&ETHERTYPE);
        for (i, byte) in sent[14..len].iter_mut().enumerate() {
            *byte = (i as u8).wrapping_mul(7).wrapping_add(round as u8);
        }
        check!(from.send(&sent[..len]), "the NIC sent the frame");
        let received = to.receive(&mut got);
        check_eq!(received, Some(len), "the other NIC received it whole");
        check!(got[..len] == sent[..len], "byte for byte");
    }
    defmt::info!("net: frames of 60 to 1514 bytes crossed the hub");
    Ok(())
}
