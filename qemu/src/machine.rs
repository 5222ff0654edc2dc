//! Emulated machines, described in `qemu/machines/<name>.toml`.
//!
//! A machine file names the memory size, the `intel-iommu` options and the
//! device topology as QEMU arguments. The runner adds what the system
//! itself needs (the serial console, `isa-debug-exit`, the kernel and the
//! boot image), so a machine file says only what differs between machines.
//! A machine may declare drive images (`drives`), which the runner creates
//! under `target/drives/` before it boots, never anywhere else.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
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
    /// Raw drive images, each a `-drive` QEMU's devices name by its `id`
    /// (`-device nvme,drive=ID` in `args`).
    #[serde(default)]
    pub drives: Vec<Drive>,
    /// Where the drive images live: `target/drives/` under the workspace
    /// (set when loaded).
    #[serde(skip)]
    pub drive_dir: PathBuf,
}

/// A raw drive image of a machine.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Drive {
    /// The drive's QEMU identifier, and part of its file name.
    pub id: String,
    /// The image's size in MiB.
    pub size_mib: u32,
}

/// The largest drive image a machine may declare, in MiB: the images are
/// sparse, but a typo should not ask for a terabyte.
const MAX_DRIVE_MIB: u32 = 4096;

impl Drive {
    /// Refuses an identifier that could leave the drive directory or split
    /// QEMU's option list, and a size of zero or above [`MAX_DRIVE_MIB`].
    fn check(&self) -> Result<()> {
        let valid = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
        if self.id.is_empty() || !self.id.chars().all(valid) {
            bail!("drive id `{}` must be lower-case letters, digits and '-'", self.id);
        }
        if self.size_mib == 0 || self.size_mib > MAX_DRIVE_MIB {
            bail!("drive `{}`: size-mib must be 1 to {MAX_DRIVE_MIB}, not {}", self.id, self.size_mib);
        }
        Ok(())
    }
}

/// Where drive images go, relative to the workspace root.
pub const DRIVE_DIR: &str = "target/drives";

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
        machine.drive_dir = root.join(DRIVE_DIR);
        for drive in &machine.drives {
            drive.check().with_context(|| format!("machine `{name}`"))?;
        }
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
            drives: Vec::new(),
            drive_dir: PathBuf::new(),
        }
    }

    /// Path of drive `drive`'s image: named after the machine, so machines
    /// never share one.
    pub fn drive_path(&self, drive: &Drive) -> PathBuf {
        self.drive_dir.join(format!("{}-{}.img", self.name, drive.id))
    }

    /// Creates each drive image that is missing, sparse, at its size, and
    /// sets an existing one to its size keeping its contents (what
    /// `truncate -s` does), so data written in one boot is there in the next.
    pub fn prepare_drives(&self) -> Result<()> {
        if self.drives.is_empty() {
            return Ok(());
        }
        std::fs::create_dir_all(&self.drive_dir)
            .with_context(|| format!("cannot create {}", self.drive_dir.display()))?;
        for drive in &self.drives {
            let path = self.drive_path(drive);
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .with_context(|| format!("cannot open drive image {}", path.display()))?;
            file.set_len(u64::from(drive.size_mib) << 20)
                .with_context(|| format!("cannot size drive image {}", path.display()))?;
        }
        Ok(())
    }

    /// The QEMU command that boots `kernel` with `image` on this machine,
    /// once its drive images exist.
    pub fn command(&self, kernel: &Path, image: &Path) -> Result<Command> {
        self.prepare_drives()?;
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
        for drive in &self.drives {
            let mut option = std::ffi::OsString::from("file=");
            option.push(self.drive_path(drive));
            option.push(format!(",if=none,id={},format=raw", drive.id));
            command.arg("-drive").arg(option);
        }
        command.args(&self.args);
        command.arg("-kernel").arg(kernel).arg("-initrd").arg(image);
        Ok(command)
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
        let command = machine.command(Path::new("/k"), Path::new("/i")).expect("no drives to create");
        let args: Vec<String> = command.get_args().map(|arg| arg.to_string_lossy().into_owned()).collect();
        let joined = args.join(" ");
        assert!(joined.contains("-serial stdio"));
        assert!(joined.contains("isa-debug-exit,iobase=0xf4,iosize=4"));
        assert!(joined.contains("-device intel-iommu -device edu"));
        assert!(joined.ends_with("-kernel /k -initrd /i"));
    }

    /// A machine named `name` with `drives`, its images under `dir`.
    fn with_drives(name: &str, dir: &Path, drives: &str) -> Machine {
        let text = format!("description = 'x'\nmemory-mib = 64\ndrives = {drives}\n");
        let mut machine: Machine = toml::from_str(&text).expect("valid machine");
        machine.name = name.into();
        machine.drive_dir = dir.into();
        machine
    }

    #[test]
    fn drive_images_are_created_sparse_sized_and_kept_across_boots() {
        let dir = workspace().join("target/test-drives/kept");
        let _ = std::fs::remove_dir_all(&dir);
        let machine = with_drives("m", &dir, "[{ id = 'disk0', size-mib = 2 }]");
        let command = machine.command(Path::new("/k"), Path::new("/i")).expect("drive created");
        let path = dir.join("m-disk0.img");
        assert_eq!(std::fs::metadata(&path).expect("image exists").len(), 2 << 20);
        let args: Vec<String> = command.get_args().map(|arg| arg.to_string_lossy().into_owned()).collect();
        let expected = format!("file={},if=none,id=disk0,format=raw", path.display());
        assert!(args.windows(2).any(|pair| pair[0] == "-drive" && pair[1] == expected), "{args:?}");
        std::fs::write(&path, b"written in boot one").expect("write");
        std::fs::OpenOptions::new().write(true).open(&path).and_then(|file| file.set_len(2 << 20)).expect("size");
        machine.prepare_drives().expect("second boot");
        let contents = std::fs::read(&path).expect("read");
        assert_eq!(contents.len(), 2 << 20);
        assert!(contents.starts_with(b"written in boot one"));
    }

    #[test]
    fn drive_ids_that_leave_the_directory_or_split_options_and_bad_sizes_are_refused() {
        for drives in [
            "[{ id = '../x', size-mib = 1 }]",
            "[{ id = 'a,file=/etc/passwd', size-mib = 1 }]",
            "[{ id = '', size-mib = 1 }]",
            "[{ id = 'disk0', size-mib = 0 }]",
            "[{ id = 'disk0', size-mib = 5000 }]",
        ] {
            let machine = with_drives("m", Path::new("/nonexistent"), drives);
            assert!(machine.drives.iter().any(|drive| drive.check().is_err()), "{drives} accepted");
        }
    }

    #[test]
    fn unknown_fields_are_refused() {
        let error = toml::from_str::<Machine>("description = 'x'\nmemory-mib = 64\ncolour = 'red'\n")
            .expect_err("unknown field");
        assert!(error.to_string().contains("colour"), "{error}");
    }
}
