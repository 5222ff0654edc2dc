//! Checking a parsed policy: names resolve, rights make sense for the kind
//! of task, operations exist, servers are not outranked by their clients.

use std::ops::Range;
use std::path::Path;

use capabilities::abi::rights;
use capabilities::config::InvalidationMode;
use capabilities::manifest::{MAX_BOOT_CAPS, MAX_TASKS, NAME_MAX};
use capabilities::{badge, capslots};

use super::protocols as protocol;
use toml::Spanned;

use super::raw::{RawCap, RawInvalidation, RawPolicy};
use super::{
    BootObject, Endpoint, FORMAT_VERSION, Grant, MAX_PRIORITY, MAX_STACK_PAGES, Policy, Problem, Problems, Task,
    TaskKind,
};

pub(super) fn line_of(text: &str, span: Range<usize>) -> usize {
    text[..span.start.min(text.len())].matches('\n').count() + 1
}

/// Collects problems with their lines.
pub(super) struct Report<'a> {
    pub(super) text: &'a str,
    problems: Vec<Problem>,
}

impl Report<'_> {
    pub(super) fn at(&mut self, span: Range<usize>, message: String) {
        self.problems.push(Problem { line: line_of(self.text, span), message });
    }
}

/// Parses and checks policy `text` (read from `path`); `binaries` are the
/// task crates of the workspace.
pub fn parse(path: &Path, text: &str, binaries: &[String]) -> Result<Policy, Problems> {
    let fail = |problems| Problems { path: path.to_path_buf(), problems };
    let raw: RawPolicy = toml::from_str(text).map_err(|error| {
        let line = error.span().map_or(1, |span| line_of(text, span));
        fail(vec![Problem { line, message: error.message().trim().to_owned() }])
    })?;
    let mut report = Report { text, problems: Vec::new() };
    if *raw.version.get_ref() != FORMAT_VERSION {
        report.at(
            raw.version.span(),
            format!(
                "policy format version {} is not supported (this tool reads version {FORMAT_VERSION})",
                raw.version.get_ref()
            ),
        );
    }
    if raw.tasks.len() > MAX_TASKS {
        report.at(0..0, format!("{} tasks declared; the kernel holds at most {MAX_TASKS}", raw.tasks.len()));
    }
    let task_names: Vec<&str> = raw.tasks.keys().map(String::as_str).collect();
    let task_index = |name: &str| task_names.iter().position(|t| *t == name);

    let mut endpoints = Vec::new();
    for (name, spanned) in &raw.endpoints {
        let server = task_index(spanned.get_ref().server.get_ref());
        if server.is_none() {
            report.at(
                spanned.get_ref().server.span(),
                format!("endpoint `{name}`: server `{}` is not a declared task", spanned.get_ref().server.get_ref()),
            );
        }
        let protocol = spanned.get_ref().protocol.as_ref().and_then(|p| {
            let found = protocol::find(p.get_ref());
            if found.is_none() {
                let known: Vec<_> = protocol::ALL.iter().map(|p| p.name).collect();
                report.at(
                    p.span(),
                    format!("endpoint `{name}`: unknown protocol `{}` (known: {})", p.get_ref(), known.join(", ")),
                );
            }
            found
        });
        let is_iommu = protocol.is_some_and(|p| p.name == iommu_api::PROTOCOL.name);
        if let Some(quota) = &spanned.get_ref().mapping_quota_pages
            && !is_iommu
        {
            report
                .at(quota.span(), format!("endpoint `{name}`: mapping-quota-pages only applies to the iommu protocol"));
        }
        if let Some(mode) = &spanned.get_ref().invalidation
            && !is_iommu
        {
            report.at(mode.span(), format!("endpoint `{name}`: invalidation only applies to the iommu protocol"));
        }
        if let Some(quota) = &spanned.get_ref().interrupt_entries_per_device {
            if !is_iommu {
                report.at(
                    quota.span(),
                    format!("endpoint `{name}`: interrupt-entries-per-device only applies to the iommu protocol"),
                );
            } else if !(1..=32).contains(quota.get_ref()) {
                report.at(
                    quota.span(),
                    format!("endpoint `{name}`: interrupt-entries-per-device must be 1 to 32 (MSI's most vectors)"),
                );
            }
        }
        if spanned.get_ref().address_space_quota.is_some() && !is_iommu {
            report.at(
                spanned.span(),
                format!("endpoint `{name}`: address-space-quota only applies to the iommu protocol"),
            );
        }
        if let Some(allowed) = &spanned.get_ref().assignment_without_interrupt_remapping
            && !is_iommu
        {
            report.at(
                allowed.span(),
                format!("endpoint `{name}`: assignment-without-interrupt-remapping only applies to the iommu protocol"),
            );
        }
        if let Some(allowed) = &spanned.get_ref().assignment_without_reset
            && protocol.is_none_or(|protocol| protocol.name != pci_api::PROTOCOL.name)
        {
            report.at(
                allowed.span(),
                format!("endpoint `{name}`: assignment-without-reset only applies to the pci protocol"),
            );
        }
        endpoints.push(Endpoint {
            name: name.clone(),
            server: server.unwrap_or(0),
            protocol,
            mapping_quota_pages: spanned.get_ref().mapping_quota_pages.as_ref().map(|q| *q.get_ref()),
            address_space_quota: spanned.get_ref().address_space_quota,
            invalidation: spanned.get_ref().invalidation.as_ref().map(|mode| match mode.get_ref() {
                RawInvalidation::Queued => InvalidationMode::Queued,
                RawInvalidation::Registers => InvalidationMode::Registers,
            }),
            interrupt_entries_per_device: spanned.get_ref().interrupt_entries_per_device.as_ref().map(|q| *q.get_ref()),
            assignment_without_interrupt_remapping: spanned
                .get_ref()
                .assignment_without_interrupt_remapping
                .as_ref()
                .is_some_and(|allowed| *allowed.get_ref()),
            assignment_without_reset: spanned
                .get_ref()
                .assignment_without_reset
                .as_ref()
                .is_some_and(|allowed| *allowed.get_ref()),
        });
    }
    let notifications: Vec<String> = raw.notifications.keys().cloned().collect();

    let mut tasks = Vec::new();
    for (index, (name, spanned)) in raw.tasks.iter().enumerate() {
        let span = spanned.span();
        let task = spanned.get_ref();
        if name.is_empty() || name.len() > NAME_MAX {
            report.at(span.clone(), format!("task name `{name}` must be 1 to {NAME_MAX} bytes long"));
        }
        if !binaries.contains(task.binary.get_ref()) {
            report.at(
                task.binary.span(),
                format!(
                    "task `{name}`: binary `{}` is not a task crate of this workspace (known: {})",
                    task.binary.get_ref(),
                    binaries.join(", ")
                ),
            );
        }
        let kind = match task.kind.get_ref().as_str() {
            "system-server" => Some(TaskKind::SystemServer),
            "driver" => Some(TaskKind::Driver),
            "user" => Some(TaskKind::User),
            other => {
                report.at(
                    task.kind.span(),
                    format!("task `{name}`: kind `{other}` is not one of system-server, driver, user"),
                );
                None
            }
        };
        if *task.priority.get_ref() > MAX_PRIORITY {
            report.at(
                task.priority.span(),
                format!("task `{name}`: priority {} is above the highest, {MAX_PRIORITY}", task.priority.get_ref()),
            );
        }
        let stack = *task.stack_pages.get_ref();
        if stack == 0 || stack > MAX_STACK_PAGES {
            report.at(
                task.stack_pages.span(),
                format!("task `{name}`: stack-pages must be 1 to {MAX_STACK_PAGES}, not {stack}"),
            );
        }
        if task.caps.len() > MAX_BOOT_CAPS {
            report
                .at(span.clone(), format!("task `{name}`: {} capabilities; at most {MAX_BOOT_CAPS}", task.caps.len()));
        }
        let mut caps = Vec::new();
        for (cap_name, cap) in &task.caps {
            if cap_name.is_empty() || cap_name.len() > capslots::NAME_MAX {
                report.at(
                    cap.span(),
                    format!("task `{name}`: capability name `{cap_name}` must be 1 to {} bytes", capslots::NAME_MAX),
                );
            }
            let context = GrantContext {
                task: name,
                index,
                kind,
                endpoints: &endpoints,
                notifications: &notifications,
                task_names: &task_names,
            };
            if let Some(object) = grant(&mut report, &context, cap_name, cap, &task_index) {
                caps.push(Grant { name: cap_name.clone(), line: line_of(text, cap.span()), ..object });
            }
        }
        tasks.push(Task {
            name: name.clone(),
            binary: task.binary.get_ref().clone(),
            // An unknown kind was reported above; the policy is refused.
            kind: kind.unwrap_or(TaskKind::User),
            priority: *task.priority.get_ref(),
            memory_pages: *task.memory_pages.get_ref(),
            stack_pages: stack,
            objects: task.objects,
            caps,
            parameters: task.parameters.iter().map(|(key, value)| (key.clone(), *value)).collect(),
        });
    }

    check_servers(&mut report, &raw, &tasks, &endpoints);
    check_parameters(&mut report, &raw, &tasks, &endpoints);
    let devices = super::devices::check(&mut report, &raw, &tasks);
    let (assertions, mut warnings) = super::assertions::check(&mut report, &raw);
    warnings.extend(super::assertions::waiver_warnings(&devices, &tasks));
    let init = raw.init.as_ref().and_then(|init| {
        let index = task_index(init.get_ref());
        if index.is_none() {
            report.at(init.span(), format!("init task `{}` is not declared under [tasks]", init.get_ref()));
        }
        index
    });
    if !report.problems.is_empty() {
        return Err(fail(report.problems));
    }
    Ok(Policy {
        path: path.to_path_buf(),
        description: raw.description,
        tasks,
        endpoints,
        notifications,
        init,
        devices,
        assertions,
        warnings,
    })
}

struct GrantContext<'a> {
    task: &'a str,
    index: usize,
    /// `None` when the declared kind was not recognised (reported already).
    kind: Option<TaskKind>,
    endpoints: &'a [Endpoint],
    notifications: &'a [String],
    task_names: &'a [&'a str],
}

/// Checks one capability grant and turns it into a [`Grant`] (name and
/// line are filled in by the caller).
fn grant(
    report: &mut Report<'_>,
    context: &GrantContext<'_>,
    cap_name: &str,
    spanned: &Spanned<RawCap>,
    task_index: &dyn Fn(&str) -> Option<usize>,
) -> Option<Grant> {
    let cap = spanned.get_ref();
    let span = spanned.span();
    let what = format!("task `{}`, capability `{cap_name}`", context.task);
    let objects = [
        cap.receive.is_some(),
        cap.send.is_some(),
        cap.notification.is_some(),
        cap.watch.is_some(),
        cap.io_ports.is_some(),
        cap.interrupt.is_some(),
        cap.device_memory.is_some(),
        cap.control.is_some(),
        cap.acpi_tables.is_some(),
        cap.ecam.is_some(),
        cap.remapping_unit.is_some(),
    ];
    if objects.iter().filter(|set| **set).count() != 1 {
        report.at(
            span,
            format!(
                "{what}: give exactly one of receive, send, notification, watch, io-ports, interrupt, device-memory, control, acpi-tables, ecam, remapping-unit"
            ),
        );
        return None;
    }
    let endpoint = |report: &mut Report<'_>, name: &Spanned<String>| {
        let found = context.endpoints.iter().position(|e| e.name == *name.get_ref());
        if found.is_none() {
            report.at(name.span(), format!("{what}: endpoint `{}` is not declared under [endpoints]", name.get_ref()));
        }
        found
    };
    let misplaced = |report: &mut Report<'_>, option: &str, object: &str| {
        report.at(span.clone(), format!("{what}: `{option}` only goes with `{object}`"));
    };
    if cap.send.is_none() {
        if cap.operations.is_some() {
            misplaced(report, "operations", "send");
        }
        if cap.mint.is_some() {
            misplaced(report, "mint", "send");
        }
    }
    if cap.watch.is_none() && cap.kill.is_some() {
        misplaced(report, "kill", "watch");
    }
    if cap.notification.is_none() && (cap.signal.is_some() || cap.wait.is_some() || cap.badge.is_some()) {
        misplaced(report, "signal, wait and badge", "notification");
    }
    if cap.mint == Some(true) && cap.operations.is_some() {
        report.at(
            span.clone(),
            format!("{what}: a minting capability is unbadged and carries no operations; drop `operations`"),
        );
    }
    if cap.acpi_tables == Some(false) {
        report.at(span.clone(), format!("{what}: `acpi-tables = false` grants nothing; leave the capability out"));
    }
    // The ACPI tables, ECAM and a remapping unit's registers are hardware
    // too: with the unit's registers a task could turn translation off.
    let hardware = cap.io_ports.is_some()
        || cap.interrupt.is_some()
        || cap.device_memory.is_some()
        || cap.control.is_some()
        || cap.acpi_tables.is_some()
        || cap.ecam.is_some()
        || cap.remapping_unit.is_some();
    if let Some(kind) = context.kind
        && hardware
        && kind != TaskKind::SystemServer
    {
        report.at(
            span.clone(),
            format!(
                "{what}: a {} task may not hold hardware capabilities; only system servers do (drivers get their devices through the PCI server)",
                kind.name()
            ),
        );
    }

    let plain = |object, rights, badge| Some(Grant { name: String::new(), line: 0, object, rights, badge });
    if let Some(name) = &cap.receive {
        let index = endpoint(report, name)?;
        if context.endpoints[index].server != context.index {
            report.at(
                name.span(),
                format!(
                    "{what}: endpoint `{}` is served by `{}`, so `{}` may not receive on it",
                    name.get_ref(),
                    context.task_names.get(context.endpoints[index].server).copied().unwrap_or("?"),
                    context.task
                ),
            );
        }
        return plain(BootObject::Endpoint(index as u16), rights::RECEIVE, 0);
    }
    if let Some(name) = &cap.send {
        let index = endpoint(report, name)?;
        let declared = &context.endpoints[index];
        let mut granted = rights::SEND | rights::GRANT;
        if cap.mint == Some(true) {
            if declared.server != context.index {
                report.at(span.clone(), format!("{what}: only the server of `{}` may mint its badges", declared.name));
            }
            return plain(BootObject::Endpoint(index as u16), granted | rights::MINT, 0);
        }
        let mut mask = 0u64;
        match (declared.protocol, &cap.operations) {
            (Some(protocol), Some(operations)) => {
                for operation in operations {
                    match protocol.operation(operation.get_ref()) {
                        Some(number) => mask |= 1 << number,
                        None => report.at(
                            operation.span(),
                            format!(
                                "{what}: protocol `{}` has no operation `{}` (it has: {})",
                                protocol.name,
                                operation.get_ref(),
                                protocol.operations.join(", ")
                            ),
                        ),
                    }
                }
            }
            (Some(protocol), None) => report.at(
                span.clone(),
                format!(
                    "{what}: say which operations of `{}` it may invoke: operations = [{}]",
                    protocol.name,
                    protocol.operations.iter().map(|op| format!("\"{op}\"")).collect::<Vec<_>>().join(", ")
                ),
            ),
            (None, Some(_)) => report.at(
                span.clone(),
                format!("{what}: endpoint `{}` has no protocol, so no operations can be named", declared.name),
            ),
            (None, None) => granted &= !rights::GRANT,
        }
        return plain(BootObject::Endpoint(index as u16), granted, badge::policy(context.index as u16, mask));
    }
    if let Some(name) = &cap.notification {
        let Some(index) = context.notifications.iter().position(|n| n == name.get_ref()) else {
            report.at(
                name.span(),
                format!("{what}: notification `{}` is not declared under [notifications]", name.get_ref()),
            );
            return None;
        };
        let mut granted = 0;
        if cap.signal == Some(true) {
            granted |= rights::SEND;
        }
        if cap.wait == Some(true) {
            granted |= rights::RECEIVE;
        }
        if granted == 0 {
            report.at(span, format!("{what}: a notification capability needs `signal = true`, `wait = true`, or both"));
        }
        return plain(BootObject::Notification(index as u16), granted, cap.badge.unwrap_or(0));
    }
    if let Some(name) = &cap.watch {
        let Some(index) = task_index(name.get_ref()) else {
            report.at(name.span(), format!("{what}: task `{}` to watch is not declared", name.get_ref()));
            return None;
        };
        let kill = if cap.kill == Some(true) { rights::KILL } else { 0 };
        return plain(BootObject::Task(index as u16), rights::WATCH | kill, 0);
    }
    if let Some(ports) = &cap.io_ports {
        if ports.count == 0 || u32::from(ports.base) + u32::from(ports.count) > 0x1_0000 {
            report.at(span, format!("{what}: ports {:#x}+{} do not fit the 64 Ki port space", ports.base, ports.count));
        }
        return plain(BootObject::IoPorts { base: ports.base, count: ports.count }, rights::SEND | rights::RECEIVE, 0);
    }
    if let Some(interrupt) = &cap.interrupt {
        let level = match interrupt.trigger.get_ref().as_str() {
            "level" => true,
            "edge" => false,
            other => {
                report.at(interrupt.trigger.span(), format!("{what}: trigger `{other}` is not `edge` or `level`"));
                false
            }
        };
        return plain(BootObject::Interrupt { gsi: interrupt.gsi, level }, rights::ACK, 0);
    }
    if let Some(memory) = &cap.device_memory {
        if memory.base % 4096 != 0 || memory.pages == 0 {
            report.at(span, format!("{what}: device memory must be page-aligned and at least one page"));
        }
        let object = BootObject::DeviceMemory { base: memory.base, pages: memory.pages };
        return plain(object, rights::READ | rights::WRITE, 0);
    }
    if let Some(names) = &cap.control {
        let mut granted = 0;
        for name in names {
            match name.get_ref().as_str() {
                "dma" => granted |= rights::DMA,
                "irq" => granted |= rights::IRQ,
                "device-memory" => granted |= rights::DEVICE,
                other => report
                    .at(name.span(), format!("{what}: control right `{other}` is not `dma`, `irq` or `device-memory`")),
            }
        }
        return plain(BootObject::Control, granted, 0);
    }
    if cap.acpi_tables.is_some() {
        return plain(BootObject::AcpiTables, rights::READ, 0);
    }
    if let Some(n) = cap.ecam {
        return plain(BootObject::Ecam(n), rights::READ | rights::WRITE, 0);
    }
    if let Some(n) = cap.remapping_unit {
        return plain(BootObject::RemappingUnit(n), rights::READ | rights::WRITE, 0);
    }
    None
}

/// Every endpoint has a server that receives on it, and no client outranks
/// the server it calls (a call would let the server's low priority stall
/// the more urgent caller: a priority inversion).
fn check_servers(report: &mut Report<'_>, raw: &RawPolicy, tasks: &[Task], endpoints: &[Endpoint]) {
    for (index, endpoint) in endpoints.iter().enumerate() {
        let span = raw.endpoints.get_index(index).map_or(0..0, |(_, e)| e.span());
        let Some(server) = tasks.get(endpoint.server) else { continue };
        let receives = server
            .caps
            .iter()
            .any(|c| c.object == BootObject::Endpoint(index as u16) && c.rights & rights::RECEIVE != 0);
        if !receives {
            report.at(
                span.clone(),
                format!(
                    "endpoint `{}`: its server `{}` has no `receive = \"{}\"` capability",
                    endpoint.name, server.name, endpoint.name
                ),
            );
        }
        for client in tasks {
            let calls = client
                .caps
                .iter()
                .any(|c| c.object == BootObject::Endpoint(index as u16) && c.rights & rights::SEND != 0);
            if calls && client.priority > server.priority {
                report.at(
                    span.clone(),
                    format!(
                        "priority inversion: `{}` (priority {}) calls `{}` on endpoint `{}`, whose server has the lower priority {}",
                        client.name, client.priority, server.name, endpoint.name, server.priority
                    ),
                );
            }
        }
    }
}

/// Parameters: short names, few of them, and only for tasks whose boot
/// information does not already carry a server configuration.
fn check_parameters(report: &mut Report, raw: &RawPolicy, tasks: &[Task], endpoints: &[Endpoint]) {
    use capabilities::config::MAX_PARAMETERS;
    for (index, task) in tasks.iter().enumerate() {
        if task.parameters.is_empty() {
            continue;
        }
        let span = raw.tasks.get(&task.name).map(|t| t.span()).unwrap_or(0..0);
        let configured = endpoints.iter().any(|e| {
            e.server == index
                && e.protocol.is_some_and(|p| p.name == pci_api::PROTOCOL.name || p.name == iommu_api::PROTOCOL.name)
        });
        if configured {
            report.at(
                span.clone(),
                format!("task `{}`: a server of the pci or iommu protocol takes no parameters", task.name),
            );
        }
        if task.parameters.len() > MAX_PARAMETERS {
            report.at(span.clone(), format!("task `{}`: at most {MAX_PARAMETERS} parameters", task.name));
        }
        for (name, _) in task.parameters.iter().filter(|(name, _)| name.is_empty() || name.len() > NAME_MAX) {
            report.at(
                span.clone(),
                format!("task `{}`: parameter name `{name}` must be 1 to {NAME_MAX} bytes", task.name),
            );
        }
    }
}
