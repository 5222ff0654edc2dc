//! Badge layout: how a badge says who is calling and what it may ask.
//!
//! Badges of capabilities the policy installs name the client task and
//! carry one bit per operation of the server's protocol the client may
//! invoke, so a server's dispatch refuses the rest with `PermissionDenied`
//! without any table of its own (Hubris generates the same per-operation
//! caller lists from its config). A server that mints badges at run time
//! (for example group capabilities) sets [`SERVER_MINTED`], so its badges
//! can never be mistaken for policy badges.

/// Bit set in every badge a server mints at run time.
pub const SERVER_MINTED: u64 = 1 << 63;

/// Bits of a policy badge that name the client (task index + 1).
const CLIENT_MASK: u64 = 0xffff;

/// First operation bit.
const OPERATIONS_SHIFT: u32 = 16;

/// Most operations a protocol may have.
pub const MAX_OPERATIONS: usize = 47;

/// The badge the policy gives task `index` allowing `operations` (bit
/// `n` set: operation `n` allowed).
pub const fn policy(index: u16, operations: u64) -> u64 {
    (index as u64 + 1) | (operations & ((1 << MAX_OPERATIONS) - 1)) << OPERATIONS_SHIFT
}

/// The client task index a policy badge names, `None` for server-minted
/// or unbadged capabilities.
pub const fn client(badge: u64) -> Option<u16> {
    if badge & SERVER_MINTED != 0 || badge & CLIENT_MASK == 0 { None } else { Some((badge & CLIENT_MASK) as u16 - 1) }
}

/// Whether a policy badge allows operation number `operation`.
pub const fn allows(badge: u64, operation: u8) -> bool {
    client(badge).is_some()
        && (operation as usize) < MAX_OPERATIONS
        && badge >> OPERATIONS_SHIFT & (1 << operation) != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_badges_name_the_client_and_its_operations() {
        let badge = policy(3, 0b101);
        assert_eq!(client(badge), Some(3));
        assert!(allows(badge, 0) && !allows(badge, 1) && allows(badge, 2) && !allows(badge, 46));
        assert!(!allows(badge, 200));
    }

    #[test]
    fn server_minted_and_unbadged_capabilities_are_no_client() {
        assert_eq!(client(0), None);
        assert_eq!(client(SERVER_MINTED | policy(3, 1)), None);
        assert!(!allows(SERVER_MINTED | policy(3, 1), 0));
    }
}
