//! Emulated machines, described in `qemu/machines/<name>.toml`.
//!
//! A machine file names the memory size, the `intel-iommu` options and the
//! device topology as QEMU arguments. The runner adds what the system
//! itself needs (the serial console, `isa-debug-exit`, the kernel and the
//! boot image), so a machine file says only what differs between machines.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use serde::Deserialize;

/// A machine definition.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Machine {
    /// File stem the machine is known by (set when loaded).
    #[serde(skip)]
    pub name: String,
    /// What the machine is for.
    pub description: String,
    /// Guest RAM in MiB.
    pub memory_mib: u32,
    /// Extra QEMU machine options after `q35` (e.g. `kernel-irqchip=split`).
    #[serde(default)]
    pub machine_options: Option<String>,
    /// The `-device intel-iommu,...` value, or `None` for no IOMMU.
    #[serde(default = "default_iommu")]
    pub iommu: Option<String>,
    /// Device topology and anything else, as QEMU arguments.
    #[serde(default)]
    pub args: Vec<String>,
}

fn default_iommu() -> Option<String> {
    Some("intel-iommu".into())
}

/// Where machine files live, relative to the workspace root.
pub const MACHINE_DIR: &str = "qemu/machines";

impl Machine {
    /// Loads `qemu/machines/<name>.toml` under `root`.
    pub fn load(root: &Path, name: &str) -> Result<Self> {
        let path = root.join(MACHINE_DIR).join(format!("{name}.toml"));
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("machine `{name}`: cannot read {}", path.display()))?;
        let mut machine: Machine =
            toml::from_str(&text).with_context(|| format!("machine `{name}`: {} is not valid", path.display()))?;
        machine.name = name.to_owned();
        Ok(machine)
    }

    /// A machine with the default memory and IOMMU and exactly `args`.
    pub fn ad_hoc(args: Vec<String>) -> Self {
        Self {
            name: "command-line".into(),
            description: "machine given on the command line".into(),
            memory_mib: 256,
            machine_options: None,
            iommu: default_iommu(),
            args,
        }
    }

    /// The QEMU command that boots `kernel` with `image` on this machine.
    pub fn command(&self, kernel: &Path, image: &Path) -> Command {
        let mut command = Command::new(QEMU);
        let machine = match &self.machine_options {
            Some(options) => format!("q35,{options}"),
            None => "q35".into(),
        };
        command.args(["-M", &machine, "-m", &format!("{}M", self.memory_mib)]);
        command.args(["-display", "none", "-monitor", "none", "-serial", "stdio", "-no-reboot"]);
        command.args(["-device", "isa-debug-exit,iobase=0xf4,iosize=4"]);
        if let Some(iommu) = &self.iommu {
            command.args(["-device", iommu]);
        }
        command.args(&self.args);
        command.arg("-kernel").arg(kernel).arg("-initrd").arg(image);
        command
    }
}

/// The QEMU binary the runner starts.
pub const QEMU: &str = "qemu-system-x86_64";

/// The machine files present under `root`, by name.
pub fn list(root: &Path) -> Result<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(root.join(MACHINE_DIR))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .filter_map(|path| path.file_stem().map(|stem| stem.to_string_lossy().into_owned()))
        .collect();
    names.sort();
    Ok(names)
}

/// Path of machine `name`'s file.
pub fn path(root: &Path, name: &str) -> PathBuf {
    root.join(MACHINE_DIR).join(format!("{name}.toml"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workspace() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("qemu/ is in the workspace").into()
    }

    #[test]
    fn every_machine_file_loads() {
        let root = workspace();
        let names = list(&root).expect("machine directory exists");
        assert!(!names.is_empty());
        for name in names {
            let machine = Machine::load(&root, &name).expect("valid machine file");
            assert!(machine.memory_mib >= 64, "{name} has too little memory");
        }
    }

    #[test]
    fn the_command_adds_console_exit_device_kernel_and_image() {
        let machine = Machine::ad_hoc(vec!["-device".into(), "edu".into()]);
        let command = machine.command(Path::new("/k"), Path::new("/i"));
        let args: Vec<String> = command.get_args().map(|arg| arg.to_string_lossy().into_owned()).collect();
        let joined = args.join(" ");
        assert!(joined.contains("-serial stdio"));
        assert!(joined.contains("isa-debug-exit,iobase=0xf4,iosize=4"));
        assert!(joined.contains("-device intel-iommu -device edu"));
        assert!(joined.ends_with("-kernel /k -initrd /i"));
    }

    #[test]
    fn unknown_fields_are_refused() {
        let error = toml::from_str::<Machine>("description = 'x'\nmemory-mib = 64\ncolour = 'red'\n")
            .expect_err("unknown field");
        assert!(error.to_string().contains("colour"), "{error}");
    }
}
