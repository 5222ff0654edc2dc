//! The policy file as TOML, before any checking: serde types with spans.

use indexmap::IndexMap;
use serde::Deserialize;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawPolicy {
    pub version: Spanned<u32>,
    pub description: String,
    #[serde(default)]
    pub init: Option<Spanned<String>>,
    #[serde(default)]
    pub endpoints: IndexMap<String, Spanned<RawEndpoint>>,
    #[serde(default)]
    pub notifications: IndexMap<String, Spanned<RawNotification>>,
    pub tasks: IndexMap<String, Spanned<RawTask>>,
    #[serde(default)]
    pub devices: IndexMap<String, Spanned<RawDevice>>,
    #[serde(default)]
    pub assertions: IndexMap<String, Spanned<RawAssertion>>,
}

/// `[assertions.X]`: a device asserted to isolate its functions.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawAssertion {
    pub device: Spanned<String>,
    pub ids: Spanned<String>,
    pub reason: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawDevice {
    #[serde(default)]
    pub address: Option<Spanned<String>>,
    #[serde(default)]
    pub ids: Option<Spanned<String>>,
    #[serde(default)]
    pub driver: Option<Spanned<String>>,
    /// Refused by name: a driver says once, in its task, whether it does DMA.
    #[serde(default)]
    pub dma: Option<Spanned<bool>>,
    #[serde(default)]
    pub user: Option<Spanned<String>>,
    #[serde(default)]
    pub reserved_region_waiver: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawEndpoint {
    pub server: Spanned<String>,
    #[serde(default)]
    pub protocol: Option<Spanned<String>>,
    #[serde(default)]
    pub mapping_quota_pages: Option<Spanned<u32>>,
    #[serde(default)]
    pub address_space_quota: Option<u16>,
    #[serde(default)]
    pub table_page_quota: Option<Spanned<u32>>,
    #[serde(default)]
    pub invalidation: Option<Spanned<RawInvalidation>>,
    #[serde(default)]
    pub interrupt_entries_per_device: Option<Spanned<u16>>,
    #[serde(default)]
    pub assignment_without_interrupt_remapping: Option<Spanned<bool>>,
    #[serde(default)]
    pub assignment_without_reset: Option<Spanned<bool>>,
}

/// `invalidation = "queued" | "registers"` on the IOMMU endpoint.
#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
pub enum RawInvalidation {
    Queued,
    Registers,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawNotification {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawTask {
    pub binary: Spanned<String>,
    pub kind: Spanned<String>,
    pub priority: Spanned<u8>,
    pub memory_pages: Spanned<u32>,
    pub stack_pages: Spanned<u16>,
    #[serde(default)]
    pub dma: Option<Spanned<bool>>,
    #[serde(default)]
    pub objects: u16,
    #[serde(default)]
    pub parameters: IndexMap<String, u64>,
    #[serde(default)]
    pub caps: IndexMap<String, Spanned<RawCap>>,
}

/// One capability grant: exactly one of the object fields, plus the
/// options that go with it.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawCap {
    pub receive: Option<Spanned<String>>,
    pub send: Option<Spanned<String>>,
    pub operations: Option<Vec<Spanned<String>>>,
    pub mint: Option<bool>,
    pub notification: Option<Spanned<String>>,
    pub signal: Option<bool>,
    pub wait: Option<bool>,
    pub badge: Option<u64>,
    pub watch: Option<Spanned<String>>,
    pub kill: Option<bool>,
    pub io_ports: Option<RawPorts>,
    pub interrupt: Option<RawInterrupt>,
    pub device_memory: Option<RawDeviceMemory>,
    pub control: Option<Vec<Spanned<String>>>,
    pub acpi_tables: Option<bool>,
    pub ecam: Option<u8>,
    pub remapping_unit: Option<u8>,
    pub accounting: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawPorts {
    pub base: u16,
    pub count: u16,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawInterrupt {
    pub gsi: u8,
    pub trigger: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawDeviceMemory {
    pub base: u64,
    pub pages: u32,
}
