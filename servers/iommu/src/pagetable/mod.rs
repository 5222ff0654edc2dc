//! Second-level (DMA) page tables in the VT-d format, 3 to 5 levels deep.

mod entry;
mod map;
mod table;
mod unmap;
mod walk;

#[cfg(test)]
mod tests;

pub use entry::Access;
pub use map::{MapRequest, Mapped};
pub use table::{PageTableConfig, PageTableError, SecondLevelTable, Translation};
pub use unmap::{MAX_UNLINKED, Unlinked, Unmapped};
