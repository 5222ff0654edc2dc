//! Packing the boot image: the manifest (postcard) followed by the
//! loadable segments of every task's ELF, page-aligned.
//!
//! The format is `capabilities::manifest`; the kernel checks every field
//! again when it reads the image.

use anyhow::{Context, Result, bail};
use capabilities::manifest::{BootCap, MAGIC, ManifestHeader, Segment, SegmentFlags, TaskImage, VERSION};
use object::Endianness;
use object::elf::{PF_W, PF_X, PT_LOAD};
use object::read::elf::{ElfFile64, FileHeader, ProgramHeader};

use crate::bare_metal::Elves;
use crate::capslots;
use crate::policy::{Policy, Problems, TaskKind};

const PAGE: usize = 4096;

/// One loadable segment read from an ELF.
struct Loadable {
    vaddr: u64,
    bytes: Vec<u8>,
    mem_size: u64,
    flags: SegmentFlags,
}

/// The entry point and loadable segments of the ELF `bytes`, from `name`.
fn loadables(name: &str, bytes: &[u8]) -> Result<(u64, Vec<Loadable>)> {
    let elf = ElfFile64::<Endianness>::parse(bytes).with_context(|| format!("{name}: not a 64-bit ELF"))?;
    let endian = elf.endian();
    let mut segments = Vec::new();
    for header in elf.elf_program_headers() {
        if header.p_type(endian) != PT_LOAD || header.p_memsz(endian) == 0 {
            continue;
        }
        let vaddr = header.p_vaddr(endian);
        if vaddr % PAGE as u64 != 0 {
            bail!("{name}: segment at {vaddr:#x} is not page-aligned (is it linked with task.ld?)");
        }
        let data = header
            .data(endian, bytes)
            .map_err(|_| anyhow::anyhow!("{name}: segment at {vaddr:#x} lies outside the file"))?;
        let flags = header.p_flags(endian);
        segments.push(Loadable {
            vaddr,
            bytes: data.to_vec(),
            mem_size: header.p_memsz(endian),
            flags: SegmentFlags { write: flags & PF_W != 0, execute: flags & PF_X != 0 },
        });
    }
    Ok((elf.elf_header().e_entry(endian), segments))
}

/// A packed image, and what packing noticed.
pub struct Packed {
    /// The image bytes.
    pub bytes: Vec<u8>,
    /// Per task, capabilities its binary asks for that the policy does
    /// not grant.
    pub ungranted: Vec<(String, Vec<String>)>,
}

/// Packs the boot image for `policy` from the ELFs in `elves`, writing the
/// granted capability slots into each binary.
pub fn pack(policy: &Policy, elves: &Elves) -> Result<Packed> {
    let mut programs = Vec::new();
    let mut problems = Vec::new();
    let mut ungranted = Vec::new();
    for task in &policy.tasks {
        let path = elves.path(&task.binary);
        let bytes =
            std::fs::read(&path).with_context(|| format!("task `{}`: cannot read {}", task.name, path.display()))?;
        match capslots::resolve(task, &bytes)? {
            Ok(resolution) => {
                if !resolution.ungranted.is_empty() {
                    ungranted.push((task.name.clone(), resolution.ungranted));
                }
                programs.push(loadables(&task.binary, &resolution.elf)?);
            }
            Err(found) => problems.extend(found),
        }
    }
    if !problems.is_empty() {
        return Err(Problems { path: policy.path.clone(), problems }.into());
    }
    // Segment offsets depend on the manifest's encoded length, which
    // depends on the offsets (varints): grow the base until it fits.
    let mut base = PAGE;
    loop {
        let (manifest, blobs) = layout(policy, &programs, base)?;
        if manifest.len() <= base {
            let mut image = manifest;
            image.resize(base, 0);
            for (offset, bytes) in blobs {
                image.resize(offset, 0);
                image.extend_from_slice(bytes);
            }
            return Ok(Packed { bytes: image, ungranted });
        }
        base = manifest.len().next_multiple_of(PAGE);
    }
}

/// Where each segment's bytes go in the image: (offset, bytes).
type Placements<'a> = Vec<(usize, &'a [u8])>;

/// The encoded manifest with segment data placed from `base`, and where
/// each segment's bytes go.
fn layout<'a>(policy: &Policy, programs: &'a [(u64, Vec<Loadable>)], base: usize) -> Result<(Vec<u8>, Placements<'a>)> {
    let header = ManifestHeader {
        version: VERSION,
        task_count: policy.tasks.len() as u16,
        init_task: policy.init.map(|index| index as u16),
        endpoints: policy.endpoints.len() as u16,
        notifications: policy.notifications.len() as u16,
    };
    let mut manifest = MAGIC.to_vec();
    manifest.extend(postcard::to_stdvec(&header)?);
    let mut blobs = Vec::new();
    let mut offset = base;
    for (index, (task, (entry, loadables))) in policy.tasks.iter().zip(programs).enumerate() {
        let mut segments = heapless::Vec::new();
        for loadable in loadables {
            let segment = Segment {
                vaddr: loadable.vaddr,
                offset: u32::try_from(offset).context("boot image larger than 4 GiB")?,
                file_size: loadable.bytes.len() as u32,
                mem_size: u32::try_from(loadable.mem_size).context("segment larger than 4 GiB")?,
                flags: loadable.flags,
            };
            if segments.push(segment).is_err() {
                bail!("task `{}`: binary `{}` has more than {} segments", task.name, task.binary, segments.capacity());
            }
            blobs.push((offset, loadable.bytes.as_slice()));
            offset = (offset + loadable.bytes.len()).next_multiple_of(PAGE);
        }
        let record = TaskImage {
            name: task.name.as_str().try_into().map_err(|_| anyhow::anyhow!("task name `{}` too long", task.name))?,
            priority: task.priority,
            entry: *entry,
            stack_pages: task.stack_pages,
            memory_pages: task.memory_pages,
            object_quota: task.objects,
            segments,
            caps: task.caps.iter().enumerate().map(|(index, grant)| boot_cap(index, grant)).collect(),
            config: config_for(policy, index)?,
        };
        manifest.extend(postcard::to_stdvec(&record)?);
    }
    Ok((manifest, blobs))
}

/// The manifest form of a task's `index`th grant.
fn boot_cap(index: usize, grant: &crate::policy::Grant) -> BootCap {
    BootCap { slot: capslots::slot_of(index) as u16, object: grant.object, rights: grant.rights, badge: grant.badge }
}

/// The configuration blob task `index` receives: its part of the policy if
/// it serves the PCI or IOMMU protocol, else nothing.
fn config_for(policy: &Policy, index: usize) -> Result<heapless::Vec<u8, { capabilities::manifest::CONFIG_MAX }>> {
    use capabilities::config::{
        Assignment, Binding, DeviceMatch, DriverTask, IommuConfig, IsolationAssertion, Parameters, PciConfig,
        ReservedRegionWaiver, TaskNames,
    };
    fn short<const N: usize>(text: &str) -> Result<heapless::String<N>> {
        text.try_into().map_err(|_| anyhow::anyhow!("`{text}` is longer than {N} bytes"))
    }
    let names = || -> Result<TaskNames> {
        let mut names = TaskNames::default();
        for task in &policy.tasks {
            let name =
                task.name.as_str().try_into().map_err(|_| anyhow::anyhow!("task name `{}` too long", task.name))?;
            names.0.push(name).map_err(|_| anyhow::anyhow!("too many tasks"))?;
        }
        Ok(names)
    };
    let mut buffer = [0u8; capabilities::manifest::CONFIG_MAX];
    let encoded: &[u8] = if policy.server_of(pci_api::PROTOCOL.name) == Some(index) {
        let bindings = policy
            .devices
            .iter()
            .filter_map(|d| d.driver.map(|(driver, _)| Binding { device: d.selector, driver: driver as u16 }))
            .collect();
        let drivers = policy
            .tasks
            .iter()
            .enumerate()
            .filter(|(_, task)| task.kind == TaskKind::Driver)
            .map(|(index, task)| DriverTask { task: index as u16, dma: task.dma })
            .collect();
        let endpoint = policy.endpoints.iter().find(|e| e.protocol.is_some_and(|p| p.name == pci_api::PROTOCOL.name));
        let assignment_without_reset = endpoint.is_some_and(|e| e.assignment_without_reset);
        let config = PciConfig { tasks: names()?, drivers, bindings, assignment_without_reset };
        postcard::to_slice(&config, &mut buffer).context("the PCI server's configuration does not fit")?
    } else if policy.server_of(iommu_api::PROTOCOL.name) == Some(index) {
        let endpoint = policy.endpoints.iter().find(|e| e.protocol.is_some_and(|p| p.name == "iommu"));
        let assignments = policy
            .devices
            .iter()
            .filter_map(|d| d.user.map(|task| Assignment { device: d.selector, task: task as u16 }))
            .collect();
        let config = IommuConfig {
            tasks: names()?,
            driver_core: policy.server_of(pci_api::PROTOCOL.name).map(|index| index as u16),
            assignments,
            mapping_quota_pages: endpoint.and_then(|e| e.mapping_quota_pages).unwrap_or(DEFAULT_MAPPING_QUOTA_PAGES),
            address_space_quota: endpoint.and_then(|e| e.address_space_quota).unwrap_or(DEFAULT_ADDRESS_SPACES),
            table_page_quota: endpoint.and_then(|e| e.table_page_quota).unwrap_or(DEFAULT_TABLE_PAGE_QUOTA),
            invalidation: endpoint.and_then(|e| e.invalidation).unwrap_or_default(),
            interrupt_entries_per_device: endpoint
                .and_then(|e| e.interrupt_entries_per_device)
                .unwrap_or(DEFAULT_INTERRUPT_ENTRIES_PER_DEVICE),
            assignment_without_interrupt_remapping: endpoint.is_some_and(|e| e.assignment_without_interrupt_remapping),
            assertions: policy
                .assertions
                .iter()
                .map(|assertion| {
                    Ok(IsolationAssertion {
                        name: short(&assertion.name)?,
                        at: assertion.at,
                        vendor: assertion.ids.0,
                        device_id: assertion.ids.1,
                        reason: short(&assertion.reason)?,
                    })
                })
                .collect::<Result<heapless::Vec<_, { capabilities::config::MAX_ASSERTIONS }>>>()?,
            waivers: policy
                .devices
                .iter()
                .filter_map(|device| match (device.selector, &device.waiver) {
                    (DeviceMatch::Address(device), Some(reason)) => {
                        Some(short(reason).map(|reason| ReservedRegionWaiver { device, reason }))
                    }
                    _ => None,
                })
                .collect::<Result<heapless::Vec<_, { capabilities::config::MAX_ASSERTIONS }>>>()?,
        };
        postcard::to_slice(&config, &mut buffer).context("the IOMMU server's configuration does not fit")?
    } else if !policy.tasks[index].parameters.is_empty() {
        let mut parameters = Parameters::default();
        for (name, value) in &policy.tasks[index].parameters {
            let name = name.as_str().try_into().map_err(|_| anyhow::anyhow!("parameter name `{name}` too long"))?;
            parameters.0.push((name, *value)).map_err(|_| anyhow::anyhow!("too many parameters"))?;
        }
        postcard::to_slice(&parameters, &mut buffer).context("the task's parameters do not fit")?
    } else {
        &[]
    };
    Ok(encoded.iter().copied().collect())
}

/// Pages one DMA handle or user address space may map, unless the policy says.
const DEFAULT_MAPPING_QUOTA_PAGES: u32 = 4096;
/// Address spaces one user task may create, unless the policy says.
const DEFAULT_ADDRESS_SPACES: u16 = 2;
/// Table pages one user task's address spaces may hold when the policy
/// does not say: a few hundred sparse mappings' worth.
const DEFAULT_TABLE_PAGE_QUOTA: u32 = 256;
/// Interrupt-remapping entries one device may have, unless the policy says.
const DEFAULT_INTERRUPT_ENTRIES_PER_DEVICE: u16 = 4;
