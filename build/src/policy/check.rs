//! Checking a parsed policy section by section: endpoints, tasks (their
//! grants are [`super::grants`]), servers not outranked by their clients,
//! parameters, then devices, assertions and the init task.

use std::ops::Range;
use std::path::Path;

use capabilities::abi::rights;
use capabilities::config::InvalidationMode;
use capabilities::manifest::{MAX_BOOT_CAPS, MAX_TASKS, NAME_MAX};
use capabilities::protocol::Protocol;
use toml::Spanned;

use super::grants::{Holder, Names, grant};
use super::protocols;
use super::raw::{RawEndpoint, RawInvalidation, RawPolicy, RawTask};
use super::{
    BootObject, Endpoint, FORMAT_VERSION, MAX_PRIORITY, MAX_STACK_PAGES, Policy, Problem, Problems, Task, TaskKind,
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
    check_header(&mut report, &raw);
    let task_names: Vec<&str> = raw.tasks.keys().map(String::as_str).collect();
    let endpoints: Vec<Endpoint> =
        raw.endpoints.iter().map(|(name, spanned)| endpoint(&mut report, &task_names, name, spanned)).collect();
    let notifications: Vec<String> = raw.notifications.keys().cloned().collect();
    let names = Names { endpoints: &endpoints, notifications: &notifications, tasks: &task_names };
    let tasks: Vec<Task> = raw
        .tasks
        .iter()
        .enumerate()
        .map(|(index, (name, spanned))| task(&mut report, binaries, &names, index, name, spanned))
        .collect();
    check_servers(&mut report, &raw, &tasks, &endpoints);
    check_units(&mut report, &tasks);
    check_parameters(&mut report, &raw, &tasks, &endpoints);
    let devices = super::devices::check(&mut report, &raw, &tasks);
    let (assertions, mut warnings) = super::assertions::check(&mut report, &raw);
    warnings.extend(super::assertions::waiver_warnings(&devices, &tasks));
    let init = init(&mut report, &raw, &task_names);
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

/// The format version, and no more tasks than the kernel holds.
fn check_header(report: &mut Report<'_>, raw: &RawPolicy) {
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
}

/// `[endpoints.NAME]`: its server resolved, its protocol found, and the
/// IOMMU settings only on an IOMMU endpoint.
fn endpoint(report: &mut Report<'_>, task_names: &[&str], name: &str, spanned: &Spanned<RawEndpoint>) -> Endpoint {
    let raw = spanned.get_ref();
    let server = task_names.iter().position(|task| task == raw.server.get_ref());
    if server.is_none() {
        report.at(
            raw.server.span(),
            format!("endpoint `{name}`: server `{}` is not a declared task", raw.server.get_ref()),
        );
    }
    let protocol = raw.protocol.as_ref().and_then(|protocol| endpoint_protocol(report, name, protocol));
    check_iommu_settings(report, name, spanned, protocol.is_some_and(|p| p.name == iommu_api::PROTOCOL.name));
    if let Some(allowed) = &raw.assignment_without_reset
        && protocol.is_none_or(|protocol| protocol.name != pci_api::PROTOCOL.name)
    {
        report.at(
            allowed.span(),
            format!("endpoint `{name}`: assignment-without-reset only applies to the pci protocol"),
        );
    }
    Endpoint {
        name: name.to_owned(),
        server: server.unwrap_or(0),
        protocol,
        mapping_quota_pages: raw.mapping_quota_pages.as_ref().map(|quota| *quota.get_ref()),
        address_space_quota: raw.address_space_quota,
        table_page_quota: raw.table_page_quota.as_ref().map(|quota| *quota.get_ref()),
        invalidation: raw.invalidation.as_ref().map(|mode| match mode.get_ref() {
            RawInvalidation::Queued => InvalidationMode::Queued,
            RawInvalidation::Registers => InvalidationMode::Registers,
        }),
        interrupt_entries_per_device: raw.interrupt_entries_per_device.as_ref().map(|quota| *quota.get_ref()),
        assignment_without_interrupt_remapping: raw
            .assignment_without_interrupt_remapping
            .as_ref()
            .is_some_and(|allowed| *allowed.get_ref()),
        assignment_without_reset: raw.assignment_without_reset.as_ref().is_some_and(|allowed| *allowed.get_ref()),
    }
}

/// The protocol an endpoint names, or a problem listing the known ones.
fn endpoint_protocol(report: &mut Report<'_>, name: &str, protocol: &Spanned<String>) -> Option<&'static Protocol> {
    let found = protocols::find(protocol.get_ref());
    if found.is_none() {
        let known: Vec<_> = protocols::ALL.iter().map(|p| p.name).collect();
        report.at(
            protocol.span(),
            format!("endpoint `{name}`: unknown protocol `{}` (known: {})", protocol.get_ref(), known.join(", ")),
        );
    }
    found
}

/// The settings only an IOMMU endpoint takes, and their ranges there.
fn check_iommu_settings(report: &mut Report<'_>, name: &str, spanned: &Spanned<RawEndpoint>, is_iommu: bool) {
    let raw = spanned.get_ref();
    if is_iommu {
        if let Some(quota) = &raw.table_page_quota
            && *quota.get_ref() == 0
        {
            report.at(
                quota.span(),
                format!("endpoint `{name}`: table-page-quota must be at least 1 (an address space needs its root)"),
            );
        }
        if let Some(quota) = &raw.interrupt_entries_per_device
            && !(1..=32).contains(quota.get_ref())
        {
            report.at(
                quota.span(),
                format!("endpoint `{name}`: interrupt-entries-per-device must be 1 to 32 (MSI's most vectors)"),
            );
        }
        return;
    }
    // The address-space quota is a plain number: its problem is located at the endpoint.
    let given = [
        ("mapping-quota-pages", raw.mapping_quota_pages.as_ref().map(Spanned::span)),
        ("table-page-quota", raw.table_page_quota.as_ref().map(Spanned::span)),
        ("invalidation", raw.invalidation.as_ref().map(Spanned::span)),
        ("interrupt-entries-per-device", raw.interrupt_entries_per_device.as_ref().map(Spanned::span)),
        ("address-space-quota", raw.address_space_quota.map(|_| spanned.span())),
        (
            "assignment-without-interrupt-remapping",
            raw.assignment_without_interrupt_remapping.as_ref().map(Spanned::span),
        ),
    ];
    for (setting, span) in given {
        if let Some(span) = span {
            report.at(span, format!("endpoint `{name}`: {setting} only applies to the iommu protocol"));
        }
    }
}

/// `[tasks.NAME]`: its fields in range and each of its capabilities.
fn task(
    report: &mut Report<'_>,
    binaries: &[String],
    names: &Names<'_>,
    index: usize,
    name: &str,
    spanned: &Spanned<RawTask>,
) -> Task {
    let task = spanned.get_ref();
    if name.is_empty() || name.len() > NAME_MAX {
        report.at(spanned.span(), format!("task name `{name}` must be 1 to {NAME_MAX} bytes long"));
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
    let kind = task_kind(report, name, &task.kind);
    if let Some(dma) = task.dma.as_ref().filter(|_| kind.is_some_and(|kind| kind != TaskKind::Driver)) {
        report.at(dma.span(), format!("task `{name}`: `dma` is said only of driver tasks"));
    }
    check_task_limits(report, name, spanned);
    let holder = Holder { name, index, kind };
    let caps = task.caps.iter().filter_map(|(cap, raw)| grant(report, names, &holder, cap, raw)).collect();
    Task {
        name: name.to_owned(),
        binary: task.binary.get_ref().clone(),
        // An unknown kind was reported above; the policy is refused.
        kind: kind.unwrap_or(TaskKind::User),
        dma: kind == Some(TaskKind::Driver) && task.dma.as_ref().is_none_or(|dma| *dma.get_ref()),
        priority: *task.priority.get_ref(),
        memory_pages: *task.memory_pages.get_ref(),
        stack_pages: *task.stack_pages.get_ref(),
        objects: task.objects,
        caps,
        parameters: task.parameters.iter().map(|(key, value)| (key.clone(), *value)).collect(),
    }
}

/// The task kind `kind` spells, or a problem.
fn task_kind(report: &mut Report<'_>, name: &str, kind: &Spanned<String>) -> Option<TaskKind> {
    let found = [TaskKind::SystemServer, TaskKind::Driver, TaskKind::User]
        .into_iter()
        .find(|known| known.name() == kind.get_ref());
    if found.is_none() {
        report.at(
            kind.span(),
            format!("task `{name}`: kind `{}` is not one of system-server, driver, user", kind.get_ref()),
        );
    }
    found
}

/// Priority, stack and capability count within what the kernel allows.
fn check_task_limits(report: &mut Report<'_>, name: &str, spanned: &Spanned<RawTask>) {
    let task = spanned.get_ref();
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
        report.at(spanned.span(), format!("task `{name}`: {} capabilities; at most {MAX_BOOT_CAPS}", task.caps.len()));
    }
}

/// `init = "task"`: the task whose exit ends the system, if declared.
fn init(report: &mut Report<'_>, raw: &RawPolicy, task_names: &[&str]) -> Option<usize> {
    let init = raw.init.as_ref()?;
    let index = task_names.iter().position(|task| task == init.get_ref());
    if index.is_none() {
        report.at(init.span(), format!("init task `{}` is not declared under [tasks]", init.get_ref()));
    }
    index
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

/// Each remapping unit's registers granted once: two holders of a unit
/// (or one holding it twice, as two units) would each believe it owns
/// the unit's tables. Whether unit `n` exists is the machine's to say:
/// the kernel refuses a grant past DMAR's units at boot.
fn check_units(report: &mut Report<'_>, tasks: &[Task]) {
    let grants = tasks.iter().flat_map(|task| task.caps.iter().map(move |cap| (task, cap)));
    let mut seen: Vec<(u8, &str, &str, usize)> = Vec::new();
    for (task, cap) in grants {
        let BootObject::RemappingUnit(unit) = cap.object else { continue };
        match seen.iter().find(|(n, ..)| *n == unit) {
            Some((_, first_task, first_cap, first_line)) => report.problems.push(Problem {
                line: cap.line,
                message: format!(
                    "task `{}`, capability `{}`: remapping unit {unit} is granted already (task `{first_task}`, capability `{first_cap}`, line {first_line}); a unit's registers have one holder, once",
                    task.name, cap.name
                ),
            }),
            None => seen.push((unit, &task.name, &cap.name, cap.line)),
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
