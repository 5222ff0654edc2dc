//! VFIO type1 map/unmap throughput: load the VFIO modules, bind the `edu` device to `vfio-pci`, put its
//! group in a container and time `VFIO_IOMMU_MAP_DMA`/`VFIO_IOMMU_UNMAP_DMA`.
//!
//! Type1 pins the user pages and maps them with `iommu_map`; unmap clears the PTEs and flushes the IOTLB
//! synchronously (`iommu_iotlb_sync`) before the ioctl returns, whatever `iommu.strict` says, because the
//! group is in an unmanaged domain, not the DMA API's default domain. Both runs (strict and lazy) are
//! measured anyway to show it.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::abi;
use crate::sys::{self, Mapping};
use crate::timing::{Sample, Samples};

/// 4 KiB: the page size every figure counts in.
pub const PAGE: u64 = 4096;
/// The edu device's PCI vendor and device ids as sysfs prints them.
const EDU_VENDOR: &str = "0x1234";
const EDU_DEVICE: &str = "0x11e8";
/// First I/O virtual address used: below the 256 MiB edu DMA mask and clear of the MSI window.
const IOVA_BASE: u64 = 0x0100_0000;

/// What the map/unmap cases measure.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    /// Number of samples per figure.
    pub runs: usize,
    /// Pages mapped (then unmapped) in one run, the same count for every batch size.
    pub pages: u64,
}

/// The four figures of one batch size: map and unmap, each in ns and cycles per page.
pub struct MapUnmap {
    /// Per-page map times, one value per run.
    pub map: Samples,
    /// Per-page unmap times, one value per run.
    pub unmap: Samples,
}

/// Loads the modules listed (one file name a line) in `order_file`, from its directory, with busybox
/// `insmod`, in that order (each needs the ones before it). Returns (module, milliseconds) per module.
pub fn load_modules(order_file: &Path) -> io::Result<Vec<(String, f64)>> {
    let dir = order_file.parent().unwrap_or(Path::new("/"));
    let order = fs::read_to_string(order_file)?;
    let mut loaded = Vec::new();
    for name in order.lines().map(str::trim).filter(|line| !line.is_empty()) {
        let start = sys::monotonic_ns();
        let output = Command::new("/bin/busybox").arg("insmod").arg(dir.join(name)).output()?;
        if !output.status.success() {
            let why = String::from_utf8_lossy(&output.stderr).trim().to_owned();
            return Err(io::Error::other(format!("insmod {name} failed: {why}")));
        }
        loaded.push((name.to_owned(), sys::monotonic_ns().saturating_sub(start) as f64 / 1e6));
    }
    Ok(loaded)
}

/// The sysfs directory of the first `edu` device under `devices` (`/sys/bus/pci/devices`).
pub fn find_edu(devices: &Path) -> io::Result<PathBuf> {
    let mut entries: Vec<PathBuf> = fs::read_dir(devices)?.filter_map(|entry| entry.ok().map(|e| e.path())).collect();
    entries.sort();
    entries
        .into_iter()
        .find(|dir| read_trimmed(&dir.join("vendor")) == EDU_VENDOR && read_trimmed(&dir.join("device")) == EDU_DEVICE)
        .ok_or_else(|| io::Error::other("no edu device (1234:11e8) on the PCI bus"))
}

fn read_trimmed(path: &Path) -> String {
    fs::read_to_string(path).map(|text| text.trim().to_owned()).unwrap_or_default()
}

/// The IOMMU group number of a device: the name its `iommu_group` link points at.
pub fn group_of(device: &Path) -> io::Result<u32> {
    let link = fs::read_link(device.join("iommu_group")).map_err(|error| {
        io::Error::other(format!("{} has no iommu_group ({error}): is the IOMMU on?", device.display()))
    })?;
    link.file_name()
        .and_then(|name| name.to_str())
        .and_then(|name| name.parse().ok())
        .ok_or_else(|| io::Error::other(format!("odd iommu_group link {}", link.display())))
}

/// The default-domain type of a group (`DMA` in strict mode, `DMA-FQ` with the lazy flush queue).
pub fn group_type(group: u32) -> String {
    read_trimmed(&Path::new("/sys/kernel/iommu_groups").join(group.to_string()).join("type"))
}

/// Binds `device` to `vfio-pci`: unbind any driver, set `driver_override`, ask the bus to probe it.
pub fn bind_vfio_pci(device: &Path) -> io::Result<()> {
    let address = device.file_name().and_then(|name| name.to_str()).unwrap_or_default().to_owned();
    let driver = device.join("driver");
    if let Ok(current) = fs::read_link(&driver) {
        if current.file_name().is_some_and(|name| name == "vfio-pci") {
            return Ok(());
        }
        fs::write(driver.join("unbind"), &address)?;
    }
    fs::write(device.join("driver_override"), "vfio-pci")?;
    fs::write("/sys/bus/pci/drivers_probe", &address)?;
    match fs::read_link(&driver) {
        Ok(bound) if bound.file_name().is_some_and(|name| name == "vfio-pci") => Ok(()),
        Ok(bound) => Err(io::Error::other(format!("{address} bound to {} instead of vfio-pci", bound.display()))),
        Err(_) => Err(io::Error::other(format!("vfio-pci did not bind {address}"))),
    }
}

/// How physically contiguous `pages` pages of `memory` are: (number of runs of consecutive frames, longest
/// run). Type1 hands each contiguous run to the IOMMU driver in one `iommu_map` call, so a batched map of
/// contiguous memory is cheaper; reporting it explains differences between boots. Read from
/// `/proc/self/pagemap` (frame numbers are visible to root only).
pub fn contiguity(memory: &Mapping, pages: u64) -> io::Result<(u64, u64)> {
    let pagemap = File::open("/proc/self/pagemap")?;
    let mut entries = vec![0u8; pages as usize * 8];
    pagemap.read_exact_at(&mut entries, memory.addr() / PAGE * 8)?;
    let frames: Vec<Option<u64>> = entries
        .chunks_exact(8)
        .map(|entry| {
            let entry = u64::from_le_bytes(entry.try_into().unwrap_or_default());
            // Bit 63: present; bits 0-54: the frame number (zero when hidden from non-root readers).
            let frame = entry & ((1 << 55) - 1);
            (entry >> 63 == 1 && frame != 0).then_some(frame)
        })
        .collect();
    runs(&frames).ok_or_else(|| io::Error::other("frame numbers not visible in /proc/self/pagemap"))
}

/// (runs, longest run) of consecutive frame numbers; `None` if any page's frame is unknown.
fn runs(frames: &[Option<u64>]) -> Option<(u64, u64)> {
    let frames: Vec<u64> = frames.iter().copied().collect::<Option<_>>()?;
    let (mut count, mut longest, mut current) = (0, 0, 0);
    for (index, frame) in frames.iter().enumerate() {
        if index > 0 && frames[index - 1].checked_add(1) == Some(*frame) {
            current += 1;
        } else {
            count += 1;
            current = 1;
        }
        longest = longest.max(current);
    }
    Some((count, longest))
}

/// An open VFIO container with one group in it and a type1 IOMMU set.
pub struct Container {
    container: File,
    // Kept open: closing the group would take it out of the container and drop its mappings.
    _group: File,
    /// Which type1 flavour was set (`VFIO_TYPE1v2_IOMMU` when available).
    pub iommu_type: u64,
}

impl Container {
    /// Opens `/dev/vfio/vfio` and `/dev/vfio/<group>`, checks the API and the group's viability, joins
    /// them and sets the type1 IOMMU.
    pub fn open(group: u32) -> io::Result<Self> {
        let open = |path: &str| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .map_err(|error| io::Error::new(error.kind(), format!("open {path}: {error}")))
        };
        let container = open("/dev/vfio/vfio")?;
        let version = sys::vfio_api_version(&container)?;
        if version != abi::VFIO_API_VERSION {
            return Err(io::Error::other(format!("VFIO API version {version}, expected {}", abi::VFIO_API_VERSION)));
        }
        let iommu_type = if sys::vfio_check_extension(&container, abi::VFIO_TYPE1V2_IOMMU)? {
            abi::VFIO_TYPE1V2_IOMMU
        } else if sys::vfio_check_extension(&container, abi::VFIO_TYPE1_IOMMU)? {
            abi::VFIO_TYPE1_IOMMU
        } else {
            return Err(io::Error::other("the container supports no type1 IOMMU"));
        };
        let group_file = open(&format!("/dev/vfio/{group}"))?;
        let flags = sys::vfio_group_status(&group_file)?;
        if flags & abi::VFIO_GROUP_FLAGS_VIABLE == 0 {
            return Err(io::Error::other(format!(
                "group {group} is not viable (a device in it has a non-VFIO driver)"
            )));
        }
        sys::vfio_group_set_container(&group_file, &container)?;
        sys::vfio_set_iommu(&container, iommu_type)?;
        Ok(Self { container, _group: group_file, iommu_type })
    }

    /// Maps and unmaps `shape.pages` pages in requests of `batch` pages, `shape.runs` times, after one
    /// untimed warm-up run. Each run maps every request, then unmaps every request, timing the two
    /// phases separately.
    pub fn map_unmap(&self, memory: &Mapping, shape: Shape, batch: u64) -> io::Result<MapUnmap> {
        let requests = (shape.pages / batch).max(1);
        let bytes = batch * PAGE;
        let mut result = MapUnmap { map: Samples::default(), unmap: Samples::default() };
        for run in 0..=shape.runs {
            let start = Sample::now();
            for request in 0..requests {
                let offset = request * bytes;
                sys::vfio_map_dma(&self.container, memory.addr() + offset, IOVA_BASE + offset, bytes)?;
            }
            let map = start.per((requests * batch) as usize);
            let start = Sample::now();
            for request in 0..requests {
                let unmapped = sys::vfio_unmap_dma(&self.container, IOVA_BASE + request * bytes, bytes)?;
                if unmapped != bytes {
                    return Err(io::Error::other(format!("unmap returned {unmapped} bytes, expected {bytes}")));
                }
            }
            let unmap = start.per((requests * batch) as usize);
            if run > 0 {
                result.map.push(map);
                result.unmap.push(unmap);
            }
        }
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_device(root: &Path, address: &str, vendor: &str, device: &str) -> PathBuf {
        let dir = root.join(address);
        fs::create_dir_all(&dir).expect("temp dir");
        fs::write(dir.join("vendor"), format!("{vendor}\n")).expect("write");
        fs::write(dir.join("device"), format!("{device}\n")).expect("write");
        dir
    }

    #[test]
    fn contiguous_runs_are_counted() {
        assert_eq!(runs(&[Some(10), Some(11), Some(12), Some(40), Some(41), Some(7)]), Some((3, 3)));
        assert_eq!(runs(&[Some(5), Some(4), Some(3)]), Some((3, 1)));
        assert_eq!(runs(&[Some(1), None]), None);
        assert_eq!(runs(&[]), Some((0, 0)));
    }

    #[test]
    fn the_host_process_has_pages_to_look_at() {
        let memory = Mapping::anonymous(16 * PAGE as usize, false).expect("mmap");
        memory.touch_pages(PAGE as usize, false);
        // Frame numbers are hidden from non-root users; then the error says so.
        match contiguity(&memory, 16) {
            Ok((count, longest)) => assert!((1..=16).contains(&count) && (1..=16).contains(&longest)),
            Err(error) => assert!(error.to_string().contains("not visible"), "{error}"),
        }
    }

    #[test]
    fn the_edu_device_is_found_by_its_ids_and_its_group_by_the_link() {
        let root = std::env::temp_dir().join(format!("linux-peer-sysfs-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fake_device(&root, "0000:00:01.0", "0x1234", "0x1111");
        let edu = fake_device(&root, "0000:00:03.0", "0x1234", "0x11e8");
        fake_device(&root, "0000:00:1f.0", "0x8086", "0x2918");
        assert_eq!(find_edu(&root).expect("edu present"), edu);
        std::os::unix::fs::symlink("../../../kernel/iommu_groups/7", edu.join("iommu_group")).expect("symlink");
        assert_eq!(group_of(&edu).expect("group link"), 7);
        fs::remove_dir_all(edu.clone()).expect("cleanup");
        assert!(find_edu(&root).is_err());
        let _ = fs::remove_dir_all(&root);
    }
}
