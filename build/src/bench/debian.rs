//! Debian's Linux kernel and busybox for the peer guest: fetched with `apt-get download`, cached, and
//! unpacked down to the few files the guest needs (vmlinuz, the VFIO modules, busybox).
//!
//! `linux-image-amd64` is a metapackage; the real kernel is the versioned `linux-image-6.x-amd64` it
//! depends on, resolved with `apt-cache depends` as `shared/tools/linux-groups` does. The modules to
//! load, and their order, come from each module's own `.modinfo` `depends=` list, starting from the ones
//! the benchmark needs, so the list follows the kernel rather than being written down here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, anyhow, bail};
use object::{Object, ObjectSection};

/// The kernel metapackage and the busybox package.
const KERNEL_META: &str = "linux-image-amd64";
const BUSYBOX: &str = "busybox-static";

/// Modules the benchmark itself needs; their dependencies are added from `.modinfo`. `vfio_iommu_type1`
/// is no dependency of anything (VFIO asks for it with `request_module`, which needs a modprobe the
/// initramfs does not have), so it is named too.
const ROOT_MODULES: &[&str] = &["vfio_pci", "vfio_iommu_type1"];

/// Parts of the kernel package's tree to unpack (tar wildcards; `*` also matches `/`).
const KERNEL_MEMBERS: &[&str] = &["./boot/vmlinuz-*", "*/kernel/drivers/vfio/*", "*/kernel/virt/lib/*"];

/// Everything the guest needs, unpacked on the host.
#[derive(Clone, Debug)]
pub struct Guest {
    /// `<package> <version>` of the kernel, e.g. `linux-image-6.1.0-56-amd64 6.1.192-2`.
    pub kernel_package: String,
    /// `<package> <version>` of busybox.
    pub busybox_package: String,
    /// The compressed kernel image (bzImage).
    pub vmlinuz: PathBuf,
    /// The static busybox binary.
    pub busybox: PathBuf,
    /// Uncompressed modules, in an order in which each one's dependencies come before it.
    pub modules: Vec<Module>,
}

/// One kernel module ready for `insmod`.
#[derive(Clone, Debug)]
pub struct Module {
    /// Its name as the kernel knows it (`vfio_pci`).
    pub name: String,
    /// File name to give it in the guest (`vfio-pci.ko`).
    pub file_name: String,
    /// Its uncompressed contents.
    pub bytes: Vec<u8>,
}

fn run(command: &mut Command) -> Result<String> {
    let output = command.stdin(Stdio::null()).output().with_context(|| format!("cannot run {command:?}"))?;
    if !output.status.success() {
        bail!("{command:?} failed: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Fetches (or reuses from `cache`) both packages and unpacks what the guest needs.
pub fn prepare(cache: &Path) -> Result<Guest> {
    for tool in ["apt-get", "apt-cache", "dpkg-deb", "tar"] {
        if Command::new(tool).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_err() {
            bail!("`{tool}` is missing: the Linux peer needs a Debian host with apt");
        }
    }
    let debs = cache.join("debs");
    std::fs::create_dir_all(&debs)?;
    let kernel_deb = download(&debs, &resolve_kernel()?)?;
    let busybox_deb = download(&debs, BUSYBOX)?;

    // Drop what older runs cached for other versions (the kernel package alone is about 70 MB).
    let trees = cache.join("tree");
    let tree = trees.join(file_stem(&kernel_deb));
    remove_others(&debs, &[&kernel_deb, &busybox_deb]);
    remove_others(&trees, &[&tree]);
    let stamp = tree.join(".unpacked");
    if !stamp.exists() {
        let _ = std::fs::remove_dir_all(&tree);
        std::fs::create_dir_all(&tree)?;
        unpack(&kernel_deb, &tree, KERNEL_MEMBERS)?;
        unpack(&busybox_deb, &tree, &["./bin/busybox"])?;
        std::fs::write(&stamp, "")?;
    }
    let vmlinuz = std::fs::read_dir(tree.join("boot"))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .find(|path| path.file_name().is_some_and(|name| name.to_string_lossy().starts_with("vmlinuz-")))
        .ok_or_else(|| anyhow!("{} has no /boot/vmlinuz-*", kernel_deb.display()))?;
    let available = find_modules(&tree)?;
    let modules = load_order(&available, ROOT_MODULES)?;
    Ok(Guest {
        kernel_package: package_id(&kernel_deb)?,
        busybox_package: package_id(&busybox_deb)?,
        vmlinuz,
        busybox: tree.join("bin/busybox"),
        modules,
    })
}

/// The versioned kernel package `linux-image-amd64` depends on, refreshing apt's lists once if apt
/// does not know the metapackage yet.
fn resolve_kernel() -> Result<String> {
    let known = Command::new("apt-cache")
        .args(["show", KERNEL_META])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !known {
        eprintln!("apt does not know {KERNEL_META} yet: running apt-get update");
        run(Command::new("apt-get").args(["update", "-qq"]))
            .context("apt-get update (are Debian's packages reachable?)")?;
    }
    let depends = run(Command::new("apt-cache").args(["depends", KERNEL_META]))?;
    versioned_kernel(&depends)
        .ok_or_else(|| anyhow!("`apt-cache depends {KERNEL_META}` names no linux-image-<version>"))
}

/// The first `Depends: linux-image-<digit>...` of `apt-cache depends` output.
fn versioned_kernel(depends: &str) -> Option<String> {
    depends.lines().find_map(|line| {
        let package = line.trim().strip_prefix("Depends: ")?.trim();
        let version = package.strip_prefix("linux-image-")?;
        version.starts_with(|c: char| c.is_ascii_digit()).then(|| package.to_owned())
    })
}

/// `apt-get download package` into `dir`, unless a `.deb` of its candidate version is already there.
fn download(dir: &Path, package: &str) -> Result<PathBuf> {
    let policy = run(Command::new("apt-cache").args(["policy", package]))?;
    let version = candidate(&policy).ok_or_else(|| anyhow!("apt has no candidate version of {package}"))?;
    // apt writes the epoch's ':' as "%3a" in file names.
    let file = dir.join(format!("{package}_{}_amd64.deb", version.replace(':', "%3a")));
    if file.exists() {
        return Ok(file);
    }
    eprintln!("downloading {package} {version} (apt-get download)...");
    run(Command::new("apt-get").args(["download", "-q", package]).current_dir(dir))
        .with_context(|| format!("downloading {package}"))?;
    if !file.exists() {
        bail!("apt-get download {package} did not write {}", file.display());
    }
    Ok(file)
}

/// The `Candidate:` version of `apt-cache policy` output.
fn candidate(policy: &str) -> Option<String> {
    policy
        .lines()
        .find_map(|line| line.trim().strip_prefix("Candidate:"))
        .map(str::trim)
        .filter(|version| !version.is_empty() && *version != "(none)")
        .map(str::to_owned)
}

/// Removes every entry of `dir` but `keep` (best effort: a failure only leaves a stale file behind).
fn remove_others(dir: &Path, keep: &[&Path]) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for path in entries.filter_map(|entry| entry.ok().map(|entry| entry.path())) {
        if !keep.contains(&path.as_path()) {
            let _ = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
        }
    }
}

fn file_stem(path: &Path) -> String {
    path.file_stem().map(|stem| stem.to_string_lossy().into_owned()).unwrap_or_default()
}

/// `package version` from a `.deb`'s own control data.
fn package_id(deb: &Path) -> Result<String> {
    let fields = run(Command::new("dpkg-deb").args(["--show", "--showformat", "${Package} ${Version}"]).arg(deb))?;
    Ok(fields.trim().to_owned())
}

/// Unpacks the `members` (tar wildcards) of a `.deb`'s data into `into`.
fn unpack(deb: &Path, into: &Path, members: &[&str]) -> Result<()> {
    let mut dpkg = Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(deb)
        .stdout(Stdio::piped())
        .spawn()
        .context("running dpkg-deb")?;
    let stdout = dpkg.stdout.take().context("dpkg-deb output")?;
    let tar = Command::new("tar").arg("-x").arg("-C").arg(into).arg("--wildcards").args(members).stdin(stdout).status();
    let dpkg = dpkg.wait()?;
    if !tar.context("running tar")?.success() || !dpkg.success() {
        bail!("unpacking {} failed", deb.display());
    }
    Ok(())
}

/// Every `.ko`, `.ko.xz` or `.ko.zst` under `tree`, by module name (with `_` for `-`, as the kernel does).
fn find_modules(tree: &Path) -> Result<BTreeMap<String, PathBuf>> {
    let mut found = BTreeMap::new();
    let mut pending = vec![tree.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else if let Some((stem, _)) = path.file_name().and_then(|name| name.to_str()).and_then(module_file) {
                found.insert(stem.replace('-', "_"), path);
            }
        }
    }
    Ok(found)
}

/// Splits a module file name into its stem and compression (`None` for a plain `.ko`).
fn module_file(name: &str) -> Option<(&str, Option<&'static str>)> {
    if let Some(stem) = name.strip_suffix(".ko") {
        Some((stem, None))
    } else if let Some(stem) = name.strip_suffix(".ko.xz") {
        Some((stem, Some("xz")))
    } else {
        name.strip_suffix(".ko.zst").map(|stem| (stem, Some("zstd")))
    }
}

/// A module's bytes, decompressed with the host's `xz`/`zstd` if the package ships it compressed (busybox
/// `insmod` is not built with module decompression). Debian's 6.1 modules are plain `.ko`.
fn read_module(path: &Path) -> Result<Vec<u8>> {
    let name = path.file_name().and_then(|name| name.to_str()).unwrap_or_default();
    match module_file(name).and_then(|(_, compression)| compression) {
        None => Ok(std::fs::read(path)?),
        Some(tool) => {
            let output = Command::new(tool)
                .arg("-dc")
                .arg(path)
                .output()
                .with_context(|| format!("{name} is compressed and `{tool}` is not installed on the host"))?;
            if !output.status.success() {
                bail!("{tool} -dc {name} failed: {}", String::from_utf8_lossy(&output.stderr).trim());
            }
            Ok(output.stdout)
        }
    }
}

/// The `depends=` list of a module's `.modinfo` section (NUL-separated `key=value` strings).
fn depends(elf: &[u8]) -> Result<Vec<String>> {
    let file = object::File::parse(elf).context("not an ELF module")?;
    let section = file.section_by_name(".modinfo").ok_or_else(|| anyhow!("no .modinfo section"))?;
    let data = section.data()?;
    Ok(data
        .split(|&byte| byte == 0)
        .filter_map(|entry| std::str::from_utf8(entry).ok()?.strip_prefix("depends="))
        .flat_map(|list| list.split(','))
        .filter(|name| !name.is_empty())
        .map(|name| name.replace('-', "_"))
        .collect())
}

/// The modules `roots` need, dependencies first (a depth-first post-order), read from `available`.
fn load_order(available: &BTreeMap<String, PathBuf>, roots: &[&str]) -> Result<Vec<Module>> {
    let mut order: Vec<Module> = Vec::new();
    let mut visiting: Vec<String> = Vec::new();
    for root in roots {
        visit(available, root, &mut visiting, &mut order)?;
    }
    Ok(order)
}

fn visit(
    available: &BTreeMap<String, PathBuf>,
    name: &str,
    visiting: &mut Vec<String>,
    order: &mut Vec<Module>,
) -> Result<()> {
    if order.iter().any(|module| module.name == name) {
        return Ok(());
    }
    if visiting.iter().any(|seen| seen == name) {
        bail!("module dependency cycle through {name}");
    }
    let path = available.get(name).ok_or_else(|| {
        anyhow!("module {name} is needed but not in the unpacked package (is it built in, or elsewhere in the tree?)")
    })?;
    let bytes = read_module(path)?;
    let dependencies = depends(&bytes).with_context(|| format!("reading {}", path.display()))?;
    visiting.push(name.to_owned());
    for dependency in &dependencies {
        visit(available, dependency, visiting, order)?;
    }
    visiting.pop();
    let file_name = path.file_name().and_then(|n| n.to_str()).and_then(module_file).map(|(stem, _)| stem);
    order.push(Module { name: name.to_owned(), file_name: format!("{}.ko", file_name.unwrap_or(name)), bytes });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_versioned_kernel_is_the_first_numbered_dependency() {
        let output =
            "linux-image-amd64\n  Depends: linux-image-6.1.0-56-amd64\n  Depends: linux-image-6.1.0-99-amd64\n";
        assert_eq!(versioned_kernel(output).as_deref(), Some("linux-image-6.1.0-56-amd64"));
        assert_eq!(versioned_kernel("linux-image-amd64\n  Depends: linux-image-amd64-signed\n"), None);
        assert_eq!(versioned_kernel(""), None);
    }

    #[test]
    fn the_candidate_version_is_read_from_apt_cache_policy() {
        let policy = "busybox-static:\n  Installed: (none)\n  Candidate: 1:1.35.0-4+deb12u1+b1\n  Version table:\n";
        assert_eq!(candidate(policy).as_deref(), Some("1:1.35.0-4+deb12u1+b1"));
        assert_eq!(candidate("x:\n  Installed: (none)\n  Candidate: (none)\n"), None);
    }

    #[test]
    fn module_file_names_give_stem_and_compression() {
        assert_eq!(module_file("vfio-pci.ko"), Some(("vfio-pci", None)));
        assert_eq!(module_file("vfio.ko.xz"), Some(("vfio", Some("xz"))));
        assert_eq!(module_file("irqbypass.ko.zst"), Some(("irqbypass", Some("zstd"))));
        assert_eq!(module_file("modules.dep"), None);
    }

    /// A minimal x86-64 relocatable ELF whose only content is a `.modinfo` section, laid out by hand:
    /// header, `.modinfo` data, `.shstrtab`, then three section headers (null, `.modinfo`, `.shstrtab`).
    fn fake_module(depends: &str) -> Vec<u8> {
        let modinfo = format!("license=GPL\0depends={depends}\0vermagic=6.1\0").into_bytes();
        let names = b"\0.modinfo\0.shstrtab\0";
        let names_at = 64 + modinfo.len();
        let headers_at = (names_at + names.len()).next_multiple_of(8);
        let mut elf = vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        elf.extend(1u16.to_le_bytes()); // ET_REL
        elf.extend(62u16.to_le_bytes()); // EM_X86_64
        elf.extend(1u32.to_le_bytes()); // EV_CURRENT
        elf.extend([0u8; 16]); // entry, program headers' offset
        elf.extend((headers_at as u64).to_le_bytes());
        elf.extend(0u32.to_le_bytes()); // flags
        for half in [64u16, 0, 0, 64, 3, 2] {
            elf.extend(half.to_le_bytes()); // ehsize, phentsize, phnum, shentsize, shnum, shstrndx
        }
        elf.extend(&modinfo);
        elf.extend(names);
        elf.resize(headers_at + 64, 0); // padding, then the null section header
        let section = |elf: &mut Vec<u8>, name: u32, kind: u32, offset: usize, size: usize| {
            elf.extend(name.to_le_bytes());
            elf.extend(kind.to_le_bytes());
            elf.extend([0u8; 16]); // flags, address
            elf.extend((offset as u64).to_le_bytes());
            elf.extend((size as u64).to_le_bytes());
            elf.extend([0u8; 8]); // link, info
            elf.extend(1u64.to_le_bytes()); // alignment
            elf.extend(0u64.to_le_bytes()); // entry size
        };
        section(&mut elf, 1, 1, 64, modinfo.len()); // SHT_PROGBITS
        section(&mut elf, 10, 3, names_at, names.len()); // SHT_STRTAB
        elf
    }

    #[test]
    fn dependencies_come_from_modinfo_and_load_first() {
        let dir = std::env::temp_dir().join(format!("xtask-modules-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("pci")).expect("temp dir");
        // The real graph of Debian's 6.1 VFIO modules.
        let graph = [
            ("irqbypass.ko", ""),
            ("vfio.ko", ""),
            ("vfio_virqfd.ko", ""),
            ("vfio_iommu_type1.ko", "vfio"),
            ("pci/vfio-pci-core.ko", "vfio,irqbypass,vfio_virqfd"),
            ("pci/vfio-pci.ko", "vfio-pci-core,vfio"),
        ];
        for (file, deps) in graph {
            std::fs::write(dir.join(file), fake_module(deps)).expect("write module");
        }
        assert_eq!(depends(&fake_module("a,b-c")).expect("parses"), ["a", "b_c"]);
        let available = find_modules(&dir).expect("found");
        assert_eq!(available.len(), 6);
        let order = load_order(&available, ROOT_MODULES).expect("ordered");
        let names: Vec<&str> = order.iter().map(|module| module.name.as_str()).collect();
        assert_eq!(names, ["vfio", "irqbypass", "vfio_virqfd", "vfio_pci_core", "vfio_pci", "vfio_iommu_type1"]);
        assert_eq!(order[4].file_name, "vfio-pci.ko");
        for (index, module) in order.iter().enumerate() {
            for dependency in depends(&module.bytes).expect("parses") {
                let at = names.iter().position(|name| *name == dependency).expect("dependency loaded");
                assert!(at < index, "{dependency} must load before {}", module.name);
            }
        }
        std::fs::remove_file(dir.join("vfio.ko")).expect("remove");
        let missing = load_order(&find_modules(&dir).expect("found"), ROOT_MODULES).expect_err("vfio missing");
        assert!(missing.to_string().contains("vfio"), "{missing}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
