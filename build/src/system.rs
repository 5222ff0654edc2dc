//! Turning a policy into something bootable: the boot image on disk and the
//! `defmt` tables that decode what each of its tasks logs.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use capabilities::logframe;
use qemu::console::Tables;

use crate::bare_metal::Elves;
use crate::policy::{self, Policy};
use crate::{image, workspace};

/// A system ready to boot.
pub struct System {
    /// Its checked policy.
    pub policy: Policy,
    /// The kernel ELF.
    pub kernel: PathBuf,
    /// The boot image.
    pub image: PathBuf,
    /// Decoders for the kernel's and every task's log frames.
    pub tables: Tables,
}

/// The task crates a policy may name (every bare-metal crate but the kernel).
pub fn task_binaries(root: &Path) -> Result<Vec<String>> {
    Ok(workspace::bare_metal_crates(root)?.into_iter().map(|c| c.name).filter(|name| name != "kernel").collect())
}

/// Prints the policy's warnings (its assertions and waivers), each with
/// the file and line, for a person deciding whether to trust the system.
pub fn print_warnings(system: &System) {
    for warning in &system.policy.warnings {
        eprintln!("{}:{}: {}", system.policy.path.display(), warning.line, warning.message);
    }
}

/// Checks the policy at `policy_path`, packs its image and loads the tables.
pub fn prepare(root: &Path, elves: &Elves, policy_path: &Path) -> Result<System> {
    let policy = policy::load(policy_path, &task_binaries(root)?)?;
    let packed = image::pack(&policy, elves)?;
    for (task, names) in packed.ungranted.iter().filter(|_| !crate::progress::under_ci()) {
        eprintln!("note: task `{task}` asks for capabilities the policy does not grant: {}", names.join(", "));
    }
    let bytes = packed.bytes;
    let dir = workspace::image_dir(root);
    std::fs::create_dir_all(&dir)?;
    let stem = policy_path.file_stem().map_or("system".into(), |stem| stem.to_string_lossy().into_owned());
    let image = dir.join(format!("{stem}.img"));
    std::fs::write(&image, &bytes).with_context(|| format!("writing {}", image.display()))?;

    let kernel = elves.path("kernel");
    let mut tables = Tables::with_source_root(root.to_path_buf());
    tables.add(logframe::TAG_KERNEL, "kernel", &kernel)?;
    for (index, task) in policy.tasks.iter().enumerate() {
        tables.add(logframe::task_tag(index), &task.name, &elves.path(&task.binary))?;
    }
    Ok(System { policy, kernel, image, tables })
}

/// A table of the policy's tasks: kind, priority, memory and capabilities.
pub fn summary(policy: &Policy) -> String {
    let mut table = format!("{:<20} {:<14} {:>8} {:>7} capabilities\n", "task", "kind", "priority", "pages");
    for task in &policy.tasks {
        let caps: Vec<&str> = task.caps.iter().map(|grant| grant.name.as_str()).collect();
        table += &format!(
            "{:<20} {:<14} {:>8} {:>7} {}\n",
            task.name,
            task.kind.name(),
            task.priority,
            task.memory_pages,
            caps.join(", ")
        );
    }
    table
}
