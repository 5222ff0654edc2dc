//! Error codes: the one list every system call and server reply uses.
//!
//! Each code has a fixed number; `0` is never an error (it means success in
//! `rax`). The list is written once, in [`error_codes!`], which derives the
//! enum, the decoder and [`ErrorCode::ALL`] from it so they cannot disagree.

use serde::{Deserialize, Serialize};

macro_rules! error_codes {
    ($( $(#[doc = $doc:literal])* $name:ident = $code:literal, )*) => {
        /// Why a system call or a server request failed.
        #[repr(u16)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[cfg_attr(feature = "defmt", derive(defmt::Format))]
        pub enum ErrorCode {
            $( $(#[doc = $doc])* $name = $code, )*
        }

        impl ErrorCode {
            /// Every code, in numeric order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$name),*];

            /// Decodes a number carried in `rax` or a reply; `None` for unknown numbers.
            pub const fn from_code(code: u64) -> Option<Self> {
                match code {
                    $( $code => Some(Self::$name), )*
                    _ => None,
                }
            }

            /// The code's name, as the documentation spells it.
            pub const fn name(self) -> &'static str {
                match self {
                    $( Self::$name => stringify!($name), )*
                }
            }
        }
    };
}

error_codes! {
    /// No system call or operation has this number.
    NoSuchCall = 1,
    /// An argument is out of its documented range.
    InvalidArgument = 2,
    /// A user address is unmapped, not writable where it must be, or not a
    /// user address at all.
    BadAddress = 3,
    /// A length exceeds the documented maximum.
    TooLarge = 4,
    /// The slot index is out of range or the slot is empty (a deleted or
    /// revoked capability leaves its slot empty).
    InvalidCapability = 5,
    /// The capability is of the wrong kind for the operation.
    WrongKind = 6,
    /// The capability lacks a right the operation needs.
    PermissionDenied = 7,
    /// The destination slot already holds a capability.
    SlotOccupied = 8,
    /// A quota of the task (memory pages or kernel objects) is used up.
    QuotaExceeded = 9,
    /// The machine has no free memory or kernel objects of that kind left.
    OutOfMemory = 10,
    /// A non-blocking operation found nothing to do.
    WouldBlock = 11,
    /// A blocking operation's timeout passed.
    TimedOut = 12,
    /// The task at the other end died (or the server holding the reply
    /// capability did) before the operation completed.
    PeerDied = 13,
    /// The server deleted the reply capability without replying.
    NoReply = 14,
    /// The object went away while the caller was blocked on it.
    ObjectDeleted = 15,
    /// The address range overlaps an existing mapping.
    AlreadyMapped = 16,
    /// Nothing is mapped there, or the capability is not mapped.
    NotMapped = 17,
    /// A message could not be decoded (servers).
    Malformed = 18,
    /// The resource is in use by another holder (servers).
    Busy = 19,
    /// No such device, group or entry (servers), IO APIC line or task
    /// (`IoApicLine`, `Accounting`).
    NotFound = 20,
}

impl ErrorCode {
    /// The number carried in `rax` or in a reply.
    pub const fn code(self) -> u16 {
        self as u16
    }
}

impl core::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} ({})", self.name(), self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_and_numbers_are_dense() {
        assert_eq!(ErrorCode::ALL.len(), 20);
        for (index, error) in ErrorCode::ALL.iter().enumerate() {
            assert_eq!(usize::from(error.code()), index + 1, "{error} breaks the numbering");
            assert_eq!(ErrorCode::from_code(u64::from(error.code())), Some(*error));
        }
        assert_eq!(ErrorCode::from_code(0), None);
        assert_eq!(ErrorCode::from_code(ErrorCode::ALL.len() as u64 + 1), None);
    }
}
