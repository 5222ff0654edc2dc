//! The admin and NVM I/O commands the drivers send, as submission entries.

use crate::Error;
use crate::prp::Prp;
use crate::queue::SubmissionEntry;

/// Admin opcodes.
pub mod admin {
    /// Create I/O Submission Queue.
    pub const CREATE_SUBMISSION_QUEUE: u8 = 0x01;
    /// Create I/O Completion Queue.
    pub const CREATE_COMPLETION_QUEUE: u8 = 0x05;
    /// Identify.
    pub const IDENTIFY: u8 = 0x06;
}

/// NVM command set I/O opcodes.
pub mod io {
    /// Flush: commit the volatile write cache to media.
    pub const FLUSH: u8 = 0x00;
    /// Write.
    pub const WRITE: u8 = 0x01;
    /// Read.
    pub const READ: u8 = 0x02;
}

/// What an Identify command returns (its CNS value).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Identify {
    /// One namespace's data structure.
    Namespace(u32),
    /// The controller's data structure.
    Controller,
    /// The list of active namespace identifiers.
    ActiveNamespaces,
}

/// An Identify command writing its 4 KiB structure to `buffer`.
pub fn identify(command_id: u16, what: Identify, buffer: Prp) -> SubmissionEntry {
    let (namespace, cns) = match what {
        Identify::Namespace(namespace) => (namespace, 0x00),
        Identify::Controller => (0, 0x01),
        Identify::ActiveNamespaces => (0, 0x02),
    };
    let mut dwords = [0; 6];
    dwords[0] = cns;
    SubmissionEntry { opcode: admin::IDENTIFY, command_id, namespace, prp1: buffer.first, prp2: buffer.second, dwords }
}

/// Queue size and identifier, as Create I/O queue's dword 10 packs them.
fn queue_dword(queue: u16, entries: u16) -> Result<u32, Error> {
    if queue == 0 || entries < 2 {
        return Err(Error::QueueSize);
    }
    Ok((u32::from(entries - 1) << 16) | u32::from(queue))
}

/// Create I/O Completion Queue `queue` of `entries` entries at device
/// address `base` (physically contiguous), raising MSI-X entry `vector`
/// when it posts, or with interrupts off (`None`) for a host that polls.
pub fn create_completion_queue(
    command_id: u16,
    queue: u16,
    entries: u16,
    base: u64,
    vector: Option<u16>,
) -> Result<SubmissionEntry, Error> {
    let mut dwords = [0; 6];
    dwords[0] = queue_dword(queue, entries)?;
    // Bit 0: physically contiguous; bit 1: interrupts enabled; 31:16 the vector.
    dwords[1] = match vector {
        Some(vector) => (u32::from(vector) << 16) | 0b11,
        None => 1,
    };
    Ok(SubmissionEntry { opcode: admin::CREATE_COMPLETION_QUEUE, command_id, prp1: base, ..Default::default() }
        .with_dwords(dwords))
}

/// Create I/O Submission Queue `queue` of `entries` entries at device
/// address `base`, completing to completion queue `completions`.
pub fn create_submission_queue(
    command_id: u16,
    queue: u16,
    entries: u16,
    base: u64,
    completions: u16,
) -> Result<SubmissionEntry, Error> {
    let mut dwords = [0; 6];
    dwords[0] = queue_dword(queue, entries)?;
    dwords[1] = (u32::from(completions) << 16) | 1; // physically contiguous, medium priority
    Ok(SubmissionEntry { opcode: admin::CREATE_SUBMISSION_QUEUE, command_id, prp1: base, ..Default::default() }
        .with_dwords(dwords))
}

/// Which way a block transfer goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// From the namespace to memory.
    Read,
    /// From memory to the namespace.
    Write,
}

/// A Read or Write of `blocks` blocks (at least one, at most 65536) of
/// `namespace` from block `first`, with its data at `buffer`.
pub fn transfer(
    command_id: u16,
    direction: Direction,
    namespace: u32,
    first: u64,
    blocks: u32,
    buffer: Prp,
) -> Result<SubmissionEntry, Error> {
    if blocks == 0 || blocks > 1 << 16 {
        return Err(Error::BlockRange);
    }
    let opcode = match direction {
        Direction::Read => io::READ,
        Direction::Write => io::WRITE,
    };
    let mut dwords = [0; 6];
    dwords[0] = first as u32;
    dwords[1] = (first >> 32) as u32;
    dwords[2] = blocks - 1;
    Ok(SubmissionEntry { opcode, command_id, namespace, prp1: buffer.first, prp2: buffer.second, dwords })
}

/// A Flush of `namespace`: every write completed before it is durable
/// once it completes.
pub fn flush(command_id: u16, namespace: u32) -> SubmissionEntry {
    SubmissionEntry { opcode: io::FLUSH, command_id, namespace, prp1: 0, prp2: 0, dwords: [0; 6] }
}

impl SubmissionEntry {
    fn with_dwords(self, dwords: [u32; 6]) -> Self {
        Self { dwords, ..self }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUFFER: Prp = Prp { first: 0x4000, second: 0 };

    #[test]
    fn identify_selects_its_structure_by_cns() {
        let controller = identify(1, Identify::Controller, BUFFER);
        assert_eq!((controller.opcode, controller.namespace, controller.dwords[0]), (0x06, 0, 1));
        let namespace = identify(2, Identify::Namespace(1), BUFFER);
        assert_eq!((namespace.namespace, namespace.dwords[0], namespace.prp1), (1, 0, 0x4000));
        assert_eq!(identify(3, Identify::ActiveNamespaces, BUFFER).dwords[0], 2);
    }

    #[test]
    fn queue_creation_packs_size_identifier_and_completion_queue() {
        let cq = create_completion_queue(1, 1, 64, 0x8000, None).unwrap();
        assert_eq!((cq.opcode, cq.prp1, cq.dwords[0], cq.dwords[1]), (0x05, 0x8000, (63 << 16) | 1, 1));
        let interrupting = create_completion_queue(1, 1, 64, 0x8000, Some(3)).unwrap();
        assert_eq!(interrupting.dwords[1], (3 << 16) | 0b11);
        let sq = create_submission_queue(2, 1, 64, 0x9000, 1).unwrap();
        assert_eq!((sq.opcode, sq.dwords[0], sq.dwords[1]), (0x01, (63 << 16) | 1, (1 << 16) | 1));
        assert_eq!(create_completion_queue(1, 0, 64, 0, None), Err(Error::QueueSize));
        assert_eq!(create_submission_queue(1, 1, 1, 0, 1), Err(Error::QueueSize));
    }

    #[test]
    fn transfers_carry_a_zero_based_block_count_and_a_64_bit_start() {
        let read = transfer(9, Direction::Read, 1, 0x1_0000_0002, 8, BUFFER).unwrap();
        assert_eq!((read.opcode, read.namespace, read.dwords[0], read.dwords[1], read.dwords[2]), (0x02, 1, 2, 1, 7));
        assert_eq!(transfer(9, Direction::Write, 1, 0, 1, BUFFER).unwrap().opcode, 0x01);
        assert_eq!(transfer(9, Direction::Read, 1, 0, 0, BUFFER), Err(Error::BlockRange));
        assert_eq!(transfer(9, Direction::Read, 1, 0, (1 << 16) + 1, BUFFER), Err(Error::BlockRange));
    }

    #[test]
    fn a_flush_names_its_namespace_and_no_data() {
        let flush = flush(4, 1);
        assert_eq!((flush.opcode, flush.command_id, flush.namespace, flush.prp1, flush.prp2), (0x00, 4, 1, 0, 0));
        assert_eq!(flush.dwords, [0; 6]);
    }
}
