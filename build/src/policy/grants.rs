//! One capability grant of a task: one object, the options that go with it,
//! and the rights and badge it becomes.

use std::ops::Range;

use capabilities::abi::rights;
use capabilities::protocol::Protocol;
use capabilities::{badge, capslots};
use toml::Spanned;

use super::check::{Report, line_of};
use super::raw::{RawCap, RawDeviceMemory, RawInterrupt, RawPorts};
use super::{BootObject, Endpoint, Grant, TaskKind, protocols};

/// What a grant may name: the policy's endpoints, notifications and tasks.
pub(super) struct Names<'a> {
    pub(super) endpoints: &'a [Endpoint],
    pub(super) notifications: &'a [String],
    pub(super) tasks: &'a [&'a str],
}

/// The task a grant is given to.
pub(super) struct Holder<'a> {
    pub(super) name: &'a str,
    pub(super) index: usize,
    /// `None` when the declared kind was not recognised (reported already).
    pub(super) kind: Option<TaskKind>,
}

/// What a grant gives: the object, the rights on it, and the badge.
type Given = (BootObject, u32, u64);

/// Checks capability `cap_name` of `holder` and turns it into a [`Grant`].
pub(super) fn grant(
    report: &mut Report<'_>,
    names: &Names<'_>,
    holder: &Holder<'_>,
    cap_name: &str,
    spanned: &Spanned<RawCap>,
) -> Option<Grant> {
    let mut checking = Checking {
        report,
        names,
        holder,
        what: format!("task `{}`, capability `{cap_name}`", holder.name),
        span: spanned.span(),
    };
    if cap_name.is_empty() || cap_name.len() > capslots::NAME_MAX {
        checking.report.at(
            spanned.span(),
            format!("task `{}`: capability name `{cap_name}` must be 1 to {} bytes", holder.name, capslots::NAME_MAX),
        );
    }
    let cap = spanned.get_ref();
    let fields = object_fields(cap);
    if fields.iter().filter(|field| field.given).count() != 1 {
        let all: Vec<&str> = fields.iter().map(|field| field.name).collect();
        checking.here(format!("give exactly one of {}", all.join(", ")));
        return None;
    }
    check_options(&mut checking, cap);
    if fields.iter().any(|field| field.given && field.hardware) {
        check_hardware_holder(&mut checking);
    }
    let (object, rights, badge) = object(&mut checking, cap)?;
    let line = line_of(checking.report.text, spanned.span());
    Some(Grant { name: cap_name.to_owned(), line, object, rights, badge })
}

/// One grant being checked: where its problems go and how they begin.
struct Checking<'r, 'a> {
    report: &'r mut Report<'a>,
    names: &'r Names<'r>,
    holder: &'r Holder<'r>,
    /// "task `x`, capability `y`": the start of every message.
    what: String,
    /// The grant's table, for problems with the grant as a whole.
    span: Range<usize>,
}

impl Checking<'_, '_> {
    /// Reports a problem at `span`.
    fn at(&mut self, span: Range<usize>, message: String) {
        self.report.at(span, format!("{}: {message}", self.what));
    }

    /// Reports a problem with the grant as a whole.
    fn here(&mut self, message: String) {
        let span = self.span.clone();
        self.at(span, message);
    }

    /// The index of endpoint `name`, or a problem saying it is not declared.
    fn endpoint(&mut self, name: &Spanned<String>) -> Option<usize> {
        let found = self.names.endpoints.iter().position(|endpoint| endpoint.name == *name.get_ref());
        if found.is_none() {
            self.at(name.span(), format!("endpoint `{}` is not declared under [endpoints]", name.get_ref()));
        }
        found
    }
}

/// One of the fields that name a grant's object.
struct ObjectField {
    name: &'static str,
    given: bool,
    /// Whether the object is hardware, which only system servers hold.
    hardware: bool,
}

/// The object fields of `cap`, in the order the policy reference lists them.
fn object_fields(cap: &RawCap) -> [ObjectField; 12] {
    let field = |name, given, hardware| ObjectField { name, given, hardware };
    // The ACPI tables, ECAM and a remapping unit's registers are hardware
    // too: with the unit's registers a task could turn translation off.
    [
        field("receive", cap.receive.is_some(), false),
        field("send", cap.send.is_some(), false),
        field("notification", cap.notification.is_some(), false),
        field("watch", cap.watch.is_some(), false),
        field("io-ports", cap.io_ports.is_some(), true),
        field("interrupt", cap.interrupt.is_some(), true),
        field("device-memory", cap.device_memory.is_some(), true),
        field("control", cap.control.is_some(), true),
        field("acpi-tables", cap.acpi_tables.is_some(), true),
        field("ecam", cap.ecam.is_some(), true),
        field("remapping-unit", cap.remapping_unit.is_some(), true),
        // The figures change nothing: any task may be trusted to read them.
        field("accounting", cap.accounting.is_some(), false),
    ]
}

/// Options given without the object they go with, or that would be ignored.
fn check_options(checking: &mut Checking<'_, '_>, cap: &RawCap) {
    let mut misplaced = |option: &str, object: &str| checking.here(format!("`{option}` only goes with `{object}`"));
    if cap.send.is_none() {
        if cap.operations.is_some() {
            misplaced("operations", "send");
        }
        if cap.mint.is_some() {
            misplaced("mint", "send");
        }
    }
    if cap.watch.is_none() && cap.kill.is_some() {
        misplaced("kill", "watch");
    }
    if cap.notification.is_none() && (cap.signal.is_some() || cap.wait.is_some() || cap.badge.is_some()) {
        misplaced("signal, wait and badge", "notification");
    }
    if cap.mint == Some(true) && cap.operations.is_some() {
        checking.here("a minting capability is unbadged and carries no operations; drop `operations`".into());
    }
    if cap.acpi_tables == Some(false) {
        checking.here("`acpi-tables = false` grants nothing; leave the capability out".into());
    }
    if cap.accounting == Some(false) {
        checking.here("`accounting = false` grants nothing; leave the capability out".into());
    }
}

/// Hardware goes to system servers only.
fn check_hardware_holder(checking: &mut Checking<'_, '_>) {
    if let Some(kind) = checking.holder.kind
        && kind != TaskKind::SystemServer
    {
        checking.here(format!(
            "a {} task may not hold hardware capabilities; only system servers do (drivers get their devices through the PCI server)",
            kind.name()
        ));
    }
}

/// The object `cap` names (exactly one field is given), checked by its kind.
fn object(checking: &mut Checking<'_, '_>, cap: &RawCap) -> Option<Given> {
    if let Some(name) = &cap.receive {
        return receive(checking, name);
    }
    if let Some(name) = &cap.send {
        return send(checking, cap, name);
    }
    if let Some(name) = &cap.notification {
        return notification(checking, cap, name);
    }
    if let Some(name) = &cap.watch {
        return watch(checking, cap, name);
    }
    if let Some(ports) = &cap.io_ports {
        return Some(io_ports(checking, ports));
    }
    if let Some(line) = &cap.interrupt {
        return Some(interrupt(checking, line));
    }
    if let Some(memory) = &cap.device_memory {
        return Some(device_memory(checking, memory));
    }
    if let Some(names) = &cap.control {
        return Some(control(checking, names));
    }
    if cap.acpi_tables.is_some() {
        return Some((BootObject::AcpiTables, rights::READ, 0));
    }
    if let Some(n) = cap.ecam {
        return Some((BootObject::Ecam(n), rights::READ | rights::WRITE, 0));
    }
    if let Some(n) = cap.remapping_unit {
        return Some((BootObject::RemappingUnit(n), rights::READ | rights::WRITE, 0));
    }
    // A control capability with the ACCOUNT right alone: it reads the
    // kernel's figures (every task's) and does nothing else.
    cap.accounting.map(|_| (BootObject::Control, rights::ACCOUNT, 0))
}

/// `receive = "endpoint"`: only the endpoint's server receives on it.
fn receive(checking: &mut Checking<'_, '_>, name: &Spanned<String>) -> Option<Given> {
    let index = checking.endpoint(name)?;
    let (names, holder) = (checking.names, checking.holder);
    let server = names.endpoints[index].server;
    if server != holder.index {
        checking.at(
            name.span(),
            format!(
                "endpoint `{}` is served by `{}`, so `{}` may not receive on it",
                name.get_ref(),
                names.tasks.get(server).copied().unwrap_or("?"),
                holder.name
            ),
        );
    }
    Some((BootObject::Endpoint(index as u16), rights::RECEIVE, 0))
}

/// `send = "endpoint"`: the server's unbadged minting capability, or a
/// client's, badged with the operations it may invoke.
fn send(checking: &mut Checking<'_, '_>, cap: &RawCap, name: &Spanned<String>) -> Option<Given> {
    let index = checking.endpoint(name)?;
    let (names, holder) = (checking.names, checking.holder);
    let declared = &names.endpoints[index];
    let object = BootObject::Endpoint(index as u16);
    let mut granted = rights::SEND | rights::GRANT;
    if cap.mint == Some(true) {
        if declared.server != holder.index {
            checking.here(format!("only the server of `{}` may mint its badges", declared.name));
        }
        return Some((object, granted | rights::MINT, 0));
    }
    let mut mask = 0u64;
    match (declared.protocol, &cap.operations) {
        (Some(protocol), Some(operations)) => {
            mask = operation_mask(checking, protocol, operations);
            check_reserved_operations(checking, protocol, operations);
        }
        (Some(protocol), None) => checking.here(format!(
            "say which operations of `{}` it may invoke: operations = [{}]",
            protocol.name,
            protocol.operations.iter().map(|op| format!("\"{op}\"")).collect::<Vec<_>>().join(", ")
        )),
        (None, Some(_)) => {
            checking.here(format!("endpoint `{}` has no protocol, so no operations can be named", declared.name))
        }
        (None, None) => granted &= !rights::GRANT,
    }
    Some((object, granted, badge::policy(holder.index as u16, mask)))
}

/// Refuses operations of `protocol` that only another protocol's server
/// may be granted (the IOMMU driver core's), naming the operation and the
/// task.
fn check_reserved_operations(checking: &mut Checking<'_, '_>, protocol: &Protocol, operations: &[Spanned<String>]) {
    let holder = checking.holder.index;
    for operation in operations {
        let Some(number) = protocol.operation(operation.get_ref()) else { continue };
        let Some(owner) = protocols::reserved_for(protocol, number) else { continue };
        let serves =
            |endpoint: &Endpoint| endpoint.server == holder && endpoint.protocol.is_some_and(|p| p.name == owner.name);
        if !checking.names.endpoints.iter().any(serves) {
            let task = checking.holder.name;
            checking.at(
                operation.span(),
                format!(
                    "`{}` is the driver core's: only the server of the {} protocol may be granted it, and task `{task}` serves none",
                    operation.get_ref(),
                    owner.name
                ),
            );
        }
    }
}

/// The badge's operation bits for `operations`, each of which `protocol` must have.
fn operation_mask(checking: &mut Checking<'_, '_>, protocol: &Protocol, operations: &[Spanned<String>]) -> u64 {
    let mut mask = 0;
    for operation in operations {
        match protocol.operation(operation.get_ref()) {
            Some(number) => mask |= 1 << number,
            None => checking.at(
                operation.span(),
                format!(
                    "protocol `{}` has no operation `{}` (it has: {})",
                    protocol.name,
                    operation.get_ref(),
                    protocol.operations.join(", ")
                ),
            ),
        }
    }
    mask
}

/// `notification = "name"`: signal, wait or both, with an optional badge.
fn notification(checking: &mut Checking<'_, '_>, cap: &RawCap, name: &Spanned<String>) -> Option<Given> {
    let Some(index) = checking.names.notifications.iter().position(|n| n == name.get_ref()) else {
        checking.at(name.span(), format!("notification `{}` is not declared under [notifications]", name.get_ref()));
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
        checking.here("a notification capability needs `signal = true`, `wait = true`, or both".into());
    }
    Some((BootObject::Notification(index as u16), granted, cap.badge.unwrap_or(0)))
}

/// `watch = "task"`: learn of its death, and with `kill`, cause it.
fn watch(checking: &mut Checking<'_, '_>, cap: &RawCap, name: &Spanned<String>) -> Option<Given> {
    let Some(index) = checking.names.tasks.iter().position(|task| *task == name.get_ref()) else {
        checking.at(name.span(), format!("task `{}` to watch is not declared", name.get_ref()));
        return None;
    };
    let kill = if cap.kill == Some(true) { rights::KILL } else { 0 };
    Some((BootObject::Task(index as u16), rights::WATCH | kill, 0))
}

/// `io-ports = { base, count }`: a range inside the 64 Ki port space.
fn io_ports(checking: &mut Checking<'_, '_>, ports: &RawPorts) -> Given {
    if ports.count == 0 || u32::from(ports.base) + u32::from(ports.count) > 0x1_0000 {
        checking.here(format!("ports {:#x}+{} do not fit the 64 Ki port space", ports.base, ports.count));
    }
    (BootObject::IoPorts { base: ports.base, count: ports.count }, rights::SEND | rights::RECEIVE, 0)
}

/// `interrupt = { gsi, trigger }`: an edge- or level-triggered line.
fn interrupt(checking: &mut Checking<'_, '_>, line: &RawInterrupt) -> Given {
    let level = match line.trigger.get_ref().as_str() {
        "level" => true,
        "edge" => false,
        other => {
            checking.at(line.trigger.span(), format!("trigger `{other}` is not `edge` or `level`"));
            false
        }
    };
    (BootObject::Interrupt { gsi: line.gsi, level }, rights::ACK, 0)
}

/// `device-memory = { base, pages }`: whole pages of registers.
fn device_memory(checking: &mut Checking<'_, '_>, memory: &RawDeviceMemory) -> Given {
    if !memory.base.is_multiple_of(4096) || memory.pages == 0 {
        checking.here("device memory must be page-aligned and at least one page".into());
    }
    (BootObject::DeviceMemory { base: memory.base, pages: memory.pages }, rights::READ | rights::WRITE, 0)
}

/// `control = [...]`: the named rights over devices the servers hand out.
fn control(checking: &mut Checking<'_, '_>, names: &[Spanned<String>]) -> Given {
    let mut granted = 0;
    for name in names {
        match name.get_ref().as_str() {
            "dma" => granted |= rights::DMA,
            "irq" => granted |= rights::IRQ,
            "device-memory" => granted |= rights::DEVICE,
            other => {
                checking.at(name.span(), format!("control right `{other}` is not `dma`, `irq` or `device-memory`"))
            }
        }
    }
    (BootObject::Control, granted, 0)
}
