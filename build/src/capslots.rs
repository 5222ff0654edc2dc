//! Resolving the capabilities a task binary asks for (its `.cap_slots`
//! section, see `capabilities::capslots`) against what the policy grants,
//! and writing the slots into the binary before it is packed.

use anyhow::{Result, anyhow};
use capabilities::abi::{ObjectKind, slots};
use capabilities::capslots::{self, ENTRY_SIZE, SLOT_OFFSET};
use object::{Object, ObjectSection};

use crate::policy::{Problem, Task};

/// The slot the policy's `index`th grant of a task is installed in.
pub fn slot_of(index: usize) -> u32 {
    slots::FIRST_POLICY + index as u32
}

/// What resolving one task's binary found.
pub struct Resolution {
    /// The ELF with every granted slot written in.
    pub elf: Vec<u8>,
    /// Capabilities the binary asks for that the policy does not grant,
    /// but for those it marks optional (allowed: using them fails with
    /// `InvalidCapability`).
    pub ungranted: Vec<String>,
}

/// Writes the slot of each granted capability into `elf`'s entries; a
/// grant the binary does not ask for, or of the wrong kind, is a problem.
pub fn resolve(task: &Task, elf: &[u8]) -> Result<Result<Resolution, Vec<Problem>>> {
    let file = object::File::parse(elf).map_err(|error| anyhow!("{}: {error}", task.binary))?;
    let mut patched = elf.to_vec();
    let mut asked = Vec::new();
    if let Some(section) = file.section_by_name(capslots::SECTION) {
        let (offset, size) =
            section.file_range().ok_or_else(|| anyhow!("{}: {} has no file data", task.binary, capslots::SECTION))?;
        let data = section.data().map_err(|error| anyhow!("{}: {error}", task.binary))?;
        if !(size as usize).is_multiple_of(ENTRY_SIZE) {
            return Err(anyhow!("{}: {} is not a whole number of entries", task.binary, capslots::SECTION));
        }
        for (index, bytes) in data.chunks_exact(ENTRY_SIZE).enumerate() {
            let entry = capslots::parse(bytes)
                .ok_or_else(|| anyhow!("{}: capability entry {index} is unreadable", task.binary))?;
            let at = offset as usize + index * ENTRY_SIZE + SLOT_OFFSET;
            asked.push((entry.name.to_owned(), entry.kind, at, entry.optional));
        }
    }
    let mut problems = Vec::new();
    for (index, grant) in task.caps.iter().enumerate() {
        match asked.iter().find(|(name, ..)| *name == grant.name) {
            None => problems.push(Problem {
                line: grant.line,
                message: format!(
                    "task `{}`: binary `{}` does not use a capability named `{}` (it asks for: {})",
                    task.name,
                    task.binary,
                    grant.name,
                    if asked.is_empty() {
                        "none".into()
                    } else {
                        asked.iter().map(|(n, ..)| n.as_str()).collect::<Vec<_>>().join(", ")
                    }
                ),
            }),
            Some((_, kind, at, _)) => {
                let granted = grant.object.kind();
                if *kind != granted as u8 {
                    let expected = ObjectKind::from_number(u64::from(*kind));
                    problems.push(Problem {
                        line: grant.line,
                        message: format!(
                            "task `{}`: binary `{}` expects capability `{}` to be {expected:?}, the policy gives {granted:?}",
                            task.name, task.binary, grant.name
                        ),
                    });
                } else {
                    patched[*at..*at + 4].copy_from_slice(&slot_of(index).to_le_bytes());
                }
            }
        }
    }
    if !problems.is_empty() {
        return Ok(Err(problems));
    }
    let ungranted = asked
        .into_iter()
        .filter(|(name, _, _, optional)| !optional && !task.caps.iter().any(|grant| &grant.name == name))
        .map(|(name, ..)| name)
        .collect();
    Ok(Ok(Resolution { elf: patched, ungranted }))
}
