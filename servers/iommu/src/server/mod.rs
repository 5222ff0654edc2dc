//! The server binary's glue: registers, table memory, the kernel and ACPI behind the library's traits.

pub mod acpi;
pub mod interrupts;
pub mod kernel;
pub mod queue;
pub mod registers;
pub mod tables;
