//! Performing invalidations, through the queue or through registers.

use super::error::UnitError;
use super::queue::QueueMemory;
use super::remapping::RemappingUnit;
use crate::invalidation::policy::MAX_PAGE_INVALIDATIONS;
use crate::invalidation::register::{self, context_command, iotlb_command};
use crate::invalidation::{ContextScope, Descriptor, Drain, Invalidation, IotlbScope};
use crate::registers::{self, Registers, ccmd, iotlb};

impl<R: Registers, Q: QueueMemory> RemappingUnit<R, Q> {
    /// Performs what a table change reported, in order, through the queue
    /// when it is enabled and through registers otherwise.
    pub fn perform(&mut self, invalidation: &Invalidation) -> Result<(), UnitError> {
        if self.queue.is_some() {
            let drain = Drain::supported(&self.capabilities);
            let mut descriptors = heapless::Vec::<Descriptor, { MAX_PAGE_INVALIDATIONS + 1 }>::new();
            let context = invalidation.context.map(Descriptor::context);
            let iotlb = invalidation.iotlb.iter().map(|scope| Descriptor::iotlb(*scope, drain));
            for descriptor in context.into_iter().chain(iotlb) {
                // Sized for one context and every IOTLB scope an
                // Invalidation can hold.
                let _ = descriptors.push(descriptor);
            }
            if !descriptors.is_empty() {
                self.submit(&descriptors)?;
            }
        } else {
            if let Some(scope) = invalidation.context {
                self.invalidate_context_register(scope)?;
            }
            for scope in &invalidation.iotlb {
                self.invalidate_iotlb_register(*scope)?;
            }
        }
        if invalidation.write_buffer {
            self.flush_write_buffer()?;
        }
        Ok(())
    }

    /// Invalidates everything cached: after setting a root table.
    pub fn invalidate_all(&mut self) -> Result<(), UnitError> {
        let mut everything = Invalidation { context: Some(ContextScope::Global), ..Invalidation::default() };
        // An empty Vec has room for one scope.
        let _ = everything.iotlb.push(IotlbScope::Global);
        self.perform(&everything)
    }

    /// Invalidates context-cache entries through CCMD.
    pub fn invalidate_context_register(&mut self, scope: ContextScope) -> Result<(), UnitError> {
        if self.queue.is_some() {
            return Err(UnitError::QueuedInvalidationActive);
        }
        // One 8-byte write: a 4-byte write to the low half does not start
        // the command.
        self.registers.write64(registers::CCMD, context_command(scope));
        let done = self.wait64_clear(registers::CCMD, ccmd::ICC, "invalidate the context cache")?;
        if register::context_done_granularity(done) == 0 {
            return Err(UnitError::InvalidationRefused);
        }
        Ok(())
    }

    /// Invalidates IOTLB entries through the IOTLB registers.
    pub fn invalidate_iotlb_register(&mut self, scope: IotlbScope) -> Result<(), UnitError> {
        if self.queue.is_some() {
            return Err(UnitError::QueuedInvalidationActive);
        }
        let (address_register, command_register) = registers::iotlb_registers(self.capabilities.iotlb_register_offset)
            .ok_or(UnitError::Unsupported { feature: "IOTLB registers" })?;
        let command = iotlb_command(scope, Drain::supported(&self.capabilities));
        if let Some(address) = command.address {
            self.registers.write64(address_register, address);
        }
        self.registers.write64(command_register, command.command);
        let done = self.wait64_clear(command_register, iotlb::IVT, "invalidate the IOTLB")?;
        if register::iotlb_done_granularity(done) == 0 {
            return Err(UnitError::InvalidationRefused);
        }
        Ok(())
    }
}
