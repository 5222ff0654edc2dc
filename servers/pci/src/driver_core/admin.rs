//! Binding and unbinding at run time, listing devices, and the holder's mediated config space.

use capabilities::ErrorCode;
use capabilities::config::driver_dma;
use capabilities::pci::Bdf;
use iommu_api::OwnerReport;
use pci_api::Reply;

use super::device::{Bound, Role};
use super::env::{Hardware, IommuLink, Kernel};
use super::interrupts::COMMAND_BUS_MASTER;
use super::iommu;
use super::mediation::{
    Register, WriteRefusal, check_bus_master, check_power_state, check_read, check_write, reset_requests, without_bit,
    written_bit, written_byte,
};
use super::quiesce::{POWER_CONTROL, reset_function};
use super::refusal::{Refusal, refuse};
use super::state::DriverCore;
use crate::config::ConfigSpace;
use crate::header::reg;

/// The bus-master bit's position in the command register's low byte.
const BUS_MASTER_BIT: u8 = 2;

impl DriverCore {
    /// `Bind`: `driver` drives `device` from now on (it takes the device
    /// with `Probe`, which claims the group if it does DMA, as its task
    /// says in the policy). Only driver tasks may be bound; a DMA-capable
    /// driver is refused at once in a group a user task owns.
    pub(super) fn bind<C: ConfigSpace, K: Kernel, I: IommuLink>(
        &mut self,
        hw: &mut Hardware<'_, C, K, I>,
        caller: u16,
        device: Bdf,
        driver: u16,
    ) -> Result<Reply, Refusal> {
        let position = self.find(device)?;
        if usize::from(driver) >= self.names.0.len() {
            return Err(refuse!(ErrorCode::NotFound, "{device}: there is no task {driver} to bind"));
        }
        let Some(dma) = driver_dma(&self.drivers, driver) else {
            return Err(refuse!(
                ErrorCode::WrongKind,
                "{device}: task {} is not a driver; only driver tasks may be bound",
                self.name(driver)
            ));
        };
        if let Some(bound) = self.devices[position].binding {
            return Err(refuse!(
                ErrorCode::Busy,
                "{device} is already bound to {}; unbind it first",
                self.name(bound.driver)
            ));
        }
        if dma {
            let (group, owner) = iommu::owner(hw.iommu.as_deref_mut(), hw.kernel, device).map_err(|failure| {
                refuse!(failure.code(), "{device}: DMA-capable driver {} not bound: {failure}", self.name(driver))
            })?;
            self.devices[position].group = Some(group);
            if matches!(owner, OwnerReport::User { .. } | OwnerReport::Reclaiming { .. }) {
                return Err(refuse!(
                    ErrorCode::Busy,
                    "{device}: DMA-capable driver {} not bound: group {group} {} it",
                    self.name(driver),
                    self.owner_text(owner)
                ));
            }
        }
        self.devices[position].binding = Some(Bound { driver, dma });
        info!("{} bound to {=str} by {=str}", device, self.name(driver), self.name(caller));
        Ok(Reply::Done)
    }

    /// `Unbind`: the device's driver is unbound, and if it holds the device
    /// it is taken back.
    pub(super) fn unbind<C: ConfigSpace, K: Kernel, I: IommuLink>(
        &mut self,
        hw: &mut Hardware<'_, C, K, I>,
        caller: u16,
        device: Bdf,
    ) -> Result<Reply, Refusal> {
        let position = self.find(device)?;
        let Some(bound) = self.devices[position].binding else {
            return Err(refuse!(ErrorCode::NotFound, "{device} has no driver bound"));
        };
        if self.devices[position].holder.is_some_and(|holder| matches!(holder.role, Role::Driver { .. })) {
            self.take_back(hw, position);
        }
        self.devices[position].binding = None;
        info!("{} unbound from {=str} by {=str}", device, self.name(bound.driver), self.name(caller));
        Ok(Reply::Done)
    }

    /// `Devices`: the `index`th function found.
    pub(super) fn device_at(&self, index: u16) -> Result<Reply, Refusal> {
        let device = self.devices.get(usize::from(index)).ok_or_else(|| {
            refuse!(ErrorCode::NotFound, "there are {} functions; none has number {index}", self.devices.len())
        })?;
        Ok(Reply::Device {
            device: device.function.bdf,
            vendor: device.function.vendor_id,
            device_id: device.function.device_id,
            holder: device.holder.map(|holder| holder.task),
        })
    }

    /// `ConfigRead`: any register of a device the caller holds.
    pub(super) fn config_read<C: ConfigSpace, K: Kernel, I: IommuLink>(
        &self,
        hw: &mut Hardware<'_, C, K, I>,
        caller: u16,
        device: Bdf,
        offset: u16,
        width: u8,
    ) -> Result<Reply, Refusal> {
        let position = self.find(device)?;
        self.check_holder(position, caller)?;
        check_read(offset, width).map_err(|_| bad_access(device, offset, width))?;
        let value = match width {
            1 => hw.config.read8(device, offset).map(u32::from),
            2 => hw.config.read16(device, offset).map(u32::from),
            _ => hw.config.read32(device, offset),
        };
        value.map(Reply::Value).map_err(|error| refuse!(ErrorCode::InvalidArgument, "{device}: read failed: {error:?}"))
    }

    /// `ConfigWrite`: a write the mediation rules allow. A request to reset
    /// the function becomes the server's own reset (the rest of the write
    /// goes through); a change of its power state is refused.
    pub(super) fn config_write<C: ConfigSpace, K: Kernel, I: IommuLink>(
        &self,
        hw: &mut Hardware<'_, C, K, I>,
        caller: u16,
        device: Bdf,
        offset: u16,
        width: u8,
        value: u32,
    ) -> Result<Reply, Refusal> {
        let position = self.find(device)?;
        self.check_holder(position, caller)?;
        let protected = |register: Register| {
            refuse!(
                ErrorCode::PermissionDenied,
                "{device}: {} may not write {width} bytes at {offset:#05x}: that is {register}",
                self.name(caller)
            )
        };
        match check_write(&self.devices[position].protected, offset, width) {
            Ok(()) => {}
            Err(WriteRefusal::BadAccess) => return Err(bad_access(device, offset, width)),
            Err(WriteRefusal::Protected(register)) => return Err(protected(register)),
        }
        if let Some(wanted) = written_bit(offset, width, value, reg::COMMAND, BUS_MASTER_BIT) {
            let command = hw
                .config
                .read16(device, reg::COMMAND)
                .map_err(|error| refuse!(ErrorCode::InvalidArgument, "{device}: command unreadable: {error:?}"))?;
            let current = command & COMMAND_BUS_MASTER != 0;
            let may_dma = self.devices[position].holder.is_some_and(|h| h.role != Role::Driver { dma: false });
            check_bus_master(&self.devices[position].function, may_dma, current, wanted).map_err(protected)?;
        }
        let (function, controls) = (self.devices[position].function, self.devices[position].controls);
        let mut value = value;
        let mut reset = false;
        for (register, bit) in reset_requests(&function, &controls) {
            if written_bit(offset, width, value, register, bit) == Some(true) {
                value = without_bit(offset, value, register, bit);
                reset = true;
            }
        }
        let method = match (reset, controls.reset) {
            (false, _) => None,
            (true, Some(method)) => Some(method),
            (true, None) => {
                return Err(refuse!(
                    ErrorCode::InvalidArgument,
                    "{device} has no reset the server can do, so {} may not reset it",
                    self.name(caller)
                ));
            }
        };
        if let Some(power) = controls.power
            && let Some(wanted) = written_byte(offset, width, value, power + POWER_CONTROL)
        {
            let current = hw
                .config
                .read8(device, power + POWER_CONTROL)
                .map_err(|error| refuse!(ErrorCode::InvalidArgument, "{device}: power state unreadable: {error:?}"))?;
            check_power_state(current, wanted).map_err(protected)?;
        }
        let written = match width {
            1 => hw.config.write8(device, offset, value as u8),
            2 => hw.config.write16(device, offset, value as u16),
            _ => hw.config.write32(device, offset, value),
        };
        written.map_err(|error| refuse!(ErrorCode::InvalidArgument, "{device}: write failed: {error:?}"))?;
        if let Some(method) = method {
            reset_function(hw.config, hw.kernel, &function, method)
                .map_err(|error| refuse!(ErrorCode::InvalidArgument, "{device}: the reset failed: {error}"))?;
            self.restore_msix(hw, position)?;
            info!("{} reset at the request of its holder {=str}, its state restored", device, self.name(caller));
        }
        Ok(Reply::Done)
    }
}

fn bad_access(device: Bdf, offset: u16, width: u8) -> Refusal {
    refuse!(
        ErrorCode::InvalidArgument,
        "{device}: {width} bytes at {offset:#x}: the width must be 1, 2 or 4 and the offset aligned to it, below 0x1000"
    )
}
