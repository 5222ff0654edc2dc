//! Root and context tables: which domain each requester id translates through.

mod entry;
mod tables;

pub use entry::{ContextEntry, RootEntry, TranslatedContext};
pub use tables::{ContextError, ContextTables};
