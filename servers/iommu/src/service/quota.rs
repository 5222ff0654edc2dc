//! Table pages and mapping records charged to the user task whose address space needs them.
//!
//! Table memory is the server's own, so a user whose sparse mappings each
//! cost two or three table pages could otherwise starve every trusted
//! driver's DMA API. A user's address spaces take table pages only within
//! its policy quota (`table-page-quota`) and never from the pages kept for
//! kernel-owned domains; its mappings never take the records kept for DMA
//! handles.

use crate::memory::{TablePage, TablePages};

/// Table pages kept for kernel-owned (default) domains: users never take
/// them, and the server gets them before any user can ask.
pub const KERNEL_TABLE_PAGES: usize = 64;
/// Mapping records kept for DMA handles.
pub const KERNEL_MAPPINGS: usize = 128;

/// A user address space's table-page account: what it holds, and the most
/// it may (its task's quota less what its other spaces hold).
pub struct Charge<'a> {
    /// Table pages it holds.
    pub charged: &'a mut u32,
    /// The most it may hold.
    pub limit: u32,
}

/// Table memory as a user's address space takes it: each page charged to
/// `charged`, refused past `limit` or when only the kernel's pages are left.
pub struct UserPages<'a, T: TablePages> {
    pages: &'a mut T,
    charged: &'a mut u32,
    limit: u32,
}

impl<'a, T: TablePages> UserPages<'a, T> {
    /// `pages`, charging `charged` up to `limit`.
    pub fn new(pages: &'a mut T, charged: &'a mut u32, limit: u32) -> Self {
        Self { pages, charged, limit }
    }
}

impl<T: TablePages> TablePages for UserPages<'_, T> {
    fn allocate(&mut self) -> Option<TablePage> {
        if *self.charged >= self.limit {
            return None;
        }
        while self.pages.spare() <= KERNEL_TABLE_PAGES {
            if !self.pages.grow() {
                return None;
            }
        }
        let page = self.pages.allocate()?;
        *self.charged += 1;
        Some(page)
    }

    fn release(&mut self, page: TablePage) {
        self.pages.release(page);
        *self.charged = self.charged.saturating_sub(1);
    }

    fn read(&self, page: TablePage, index: usize) -> u64 {
        self.pages.read(page, index)
    }

    fn write(&mut self, page: TablePage, index: usize, value: u64) {
        self.pages.write(page, index, value);
    }

    fn flush(&mut self, page: TablePage, first: usize, count: usize) {
        self.pages.flush(page, first, count);
    }

    fn in_use(&self) -> usize {
        self.pages.in_use()
    }

    fn spare(&self) -> usize {
        self.pages.spare().saturating_sub(KERNEL_TABLE_PAGES)
    }

    fn grow(&mut self) -> bool {
        self.pages.grow()
    }
}
