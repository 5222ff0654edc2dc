//! What the server needs from the kernel, as a trait: the bin implements it
//! with system calls, host tests with a record of what was asked.

use capabilities::ErrorCode;

/// A frame pinned for device access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pin {
    /// Handle that releases the pin.
    pub handle: u64,
    /// Physical address of its first page.
    pub physical: u64,
    /// Its pages.
    pub pages: u64,
}

/// Kernel operations on the server's own capabilities.
pub trait Kernel {
    /// Pins the frame capability in `slot` (received with a request) for
    /// device reads, and writes if `device_writes`; the kernel refuses
    /// (`PermissionDenied`) what the capability's rights do not allow.
    fn pin(&mut self, slot: u32, device_writes: bool) -> Result<Pin, ErrorCode>;
    /// Releases a pin (after the IOTLB no longer holds its pages).
    fn unpin(&mut self, pin: u64);
    /// One pin the kernel revoked (its frame capability, or one that
    /// capability came from, was revoked) and has not named before. The
    /// pin still holds the frame: the server unmaps it, invalidates, then
    /// releases it with [`Kernel::unpin`].
    fn revoked_pin(&mut self) -> Option<u64>;
    /// Deletes a capability the server received.
    fn delete(&mut self, slot: u32);
    /// Mints a capability to the server's endpoint with `badge` into a
    /// free slot, to send with the reply; the server keeps it to revoke.
    fn mint(&mut self, badge: u64) -> Result<u32, ErrorCode>;
    /// Revokes every copy of the minted capability in `slot` and deletes it.
    fn revoke(&mut self, slot: u32);
    /// The task a received task capability names.
    fn task_of(&mut self, slot: u32) -> Option<u16>;
    /// Asks to be told (by notification bit) when the task in `slot` dies.
    fn watch(&mut self, slot: u32, task: u16) -> Result<(), ErrorCode>;
    /// Tells the PCI server that groups wait for their devices to be quiesced.
    fn request_reclaim(&mut self);
    /// Microseconds since boot (fault rate limiting).
    fn now(&self) -> u64;
}
