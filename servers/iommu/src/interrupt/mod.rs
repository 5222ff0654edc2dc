//! Interrupt remapping: table entries, the messages that name them, source checks, the allocator.
//!
//! With remapping on, a device's interrupt message no longer says which
//! vector of which CPU it raises: it names an entry of the interrupt
//! remapping table (its *handle*), and the unit delivers what the entry
//! says, only if the message's requester id passes the entry's source
//! check. The server owns the table: [`table::InterruptTable`] hands out
//! entries per device and holder within quotas, [`entry::RemapEntry`]
//! encodes them, [`source::SourceCheck`] says which requester ids may use
//! one, and [`entry`] turns the kernel's compatibility-format message
//! into the remappable one a device is programmed with.

pub mod entry;
pub mod remapping;
pub mod source;
pub mod table;
mod unit;

pub use entry::{CompatMessage, Delivery, MessageError, RemapEntry, Trigger, remappable_message};
pub use source::SourceCheck;
pub use table::{EntryOwner, Holder, InterruptTable, TableError};
