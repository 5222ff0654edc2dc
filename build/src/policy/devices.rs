//! The `[devices]` section: which driver drives which PCI functions, and
//! which user task may own them (and with them, their whole group).

use capabilities::config::DeviceMatch;
use capabilities::pci::Bdf;
use toml::Spanned;

use super::check::{Report, line_of};
use super::raw::{RawDevice, RawPolicy};
use super::{Device, Task, TaskKind};

/// Parses `BB:DD.F` (hexadecimal, as Linux prints it).
pub fn parse_address(text: &str) -> Option<Bdf> {
    let (bus, rest) = text.split_once(':')?;
    let (device, function) = rest.split_once('.')?;
    let number = |field: &str, max: u32| u32::from_str_radix(field, 16).ok().filter(|value| *value <= max);
    Bdf::new(number(bus, 0xff)? as u8, number(device, 0x1f)? as u8, number(function, 7)? as u8)
}

/// Parses `vvvv:dddd` (hexadecimal vendor and device ids).
pub fn parse_ids(text: &str) -> Option<(u16, u16)> {
    let (vendor, device) = text.split_once(':')?;
    Some((u16::from_str_radix(vendor, 16).ok()?, u16::from_str_radix(device, 16).ok()?))
}

/// Checks every device rule and resolves its names.
pub(super) fn check(report: &mut Report<'_>, raw: &RawPolicy, tasks: &[Task]) -> Vec<Device> {
    let devices: Vec<Device> =
        raw.devices.iter().filter_map(|(name, spanned)| device(report, tasks, name, spanned)).collect();
    check_counts(report, &devices);
    check_double_bindings(report, raw, tasks, &devices);
    devices
}

/// `[devices.NAME]`: which functions, bound to which driver, owned by
/// which user; `None` if it names no functions.
fn device(report: &mut Report<'_>, tasks: &[Task], name: &str, spanned: &Spanned<RawDevice>) -> Option<Device> {
    let span = spanned.span();
    let device = spanned.get_ref();
    let what = format!("device `{name}`");
    let selector = selector(report, &what, spanned);
    let driver = driver(report, tasks, &what, spanned);
    let user = device.user.as_ref().and_then(|user| task_in_role(report, tasks, &what, user, "user", TaskKind::User));
    if driver.is_none() && user.is_none() && device.driver.is_none() && device.user.is_none() {
        report.at(span.clone(), format!("{what}: name a `driver`, a `user`, or both"));
    }
    if let (Some((driver, true)), Some(user)) = (driver, user) {
        report.at(
            span.clone(),
            format!(
                "{what}: DMA-capable driver `{}` and user task `{}` cannot share a device (nor its group); bind a driver whose task says `dma = false` (a stub) if the device must stay claimed",
                tasks[driver].name, tasks[user].name
            ),
        );
    }
    let selector = selector?;
    let waiver =
        device.reserved_region_waiver.as_ref().and_then(|reason| waiver(report, &what, selector, user, reason));
    Some(Device { name: name.to_owned(), line: line_of(report.text, span), selector, driver, user, waiver })
}

/// The functions a rule covers: exactly one of `address` and `ids`.
fn selector(report: &mut Report<'_>, what: &str, spanned: &Spanned<RawDevice>) -> Option<DeviceMatch> {
    let device = spanned.get_ref();
    match (&device.address, &device.ids) {
        (Some(address), None) => {
            let found = parse_address(address.get_ref()).map(DeviceMatch::Address);
            if found.is_none() {
                report.at(address.span(), format!("{what}: address `{}` is not BB:DD.F", address.get_ref()));
            }
            found
        }
        (None, Some(ids)) => {
            let found = parse_ids(ids.get_ref()).map(|(vendor, device)| DeviceMatch::Ids { vendor, device });
            if found.is_none() {
                report.at(ids.span(), format!("{what}: ids `{}` are not vvvv:dddd", ids.get_ref()));
            }
            found
        }
        _ => {
            report.at(
                spanned.span(),
                format!("{what}: give exactly one of `address = \"BB:DD.F\"` or `ids = \"vvvv:dddd\"`"),
            );
            None
        }
    }
}

/// The rule's driver task and whether it does DMA, which its task says.
fn driver(report: &mut Report<'_>, tasks: &[Task], what: &str, spanned: &Spanned<RawDevice>) -> Option<(usize, bool)> {
    let device = spanned.get_ref();
    let driver =
        device.driver.as_ref().and_then(|driver| task_in_role(report, tasks, what, driver, "driver", TaskKind::Driver));
    if let Some(dma) = &device.dma {
        let task = driver.map_or("the driver", |index| tasks[index].name.as_str());
        report.at(
            dma.span(),
            format!("{what}: `dma` is the driver's to say, once, for all its devices: write `dma = false` in `[tasks.{task}]` if it does no DMA (drivers do unless they say so)"),
        );
    }
    driver.map(|index| (index, tasks[index].dma))
}

/// The index of the task `field` names, which should be of `kind`; a task
/// of another kind is reported and still resolved.
fn task_in_role(
    report: &mut Report<'_>,
    tasks: &[Task],
    what: &str,
    field: &Spanned<String>,
    role: &str,
    kind: TaskKind,
) -> Option<usize> {
    let Some(index) = tasks.iter().position(|task| task.name == *field.get_ref()) else {
        report.at(field.span(), format!("{what}: {role} `{}` is not a declared task", field.get_ref()));
        return None;
    };
    let found = tasks[index].kind;
    if found != kind {
        report.at(
            field.span(),
            format!(
                "{what}: {role} `{}` is a {} task; a {role} must be a {}",
                field.get_ref(),
                found.name(),
                kind.name()
            ),
        );
    }
    Some(index)
}

/// A reserved-region waiver's reason, if the rule may carry one: one
/// device by address, owned by a user task, and the reason in words.
fn waiver(
    report: &mut Report<'_>,
    what: &str,
    selector: DeviceMatch,
    user: Option<usize>,
    reason: &Spanned<String>,
) -> Option<String> {
    let problem = match (selector, user) {
        (_, None) => Some("a reserved-region waiver lets a user task own the device: name the `user`"),
        (DeviceMatch::Ids { .. }, _) => Some("a reserved-region waiver names one device: use `address`"),
        _ if reason.get_ref().trim().len() < super::assertions::JUSTIFICATION_MIN => {
            Some("a reserved-region waiver needs its reason in words")
        }
        _ if reason.get_ref().len() > capabilities::config::JUSTIFICATION_MAX => {
            Some("the waiver's reason is too long")
        }
        _ => None,
    };
    if let Some(problem) = problem {
        report.at(reason.span(), format!("{what}: {problem}"));
    }
    problem.is_none().then(|| reason.get_ref().clone())
}

/// No more bindings, assignments and waivers than the servers'
/// configurations hold.
fn check_counts(report: &mut Report<'_>, devices: &[Device]) {
    let max = capabilities::config::MAX_DEVICE_RULES;
    let (bindings, assignments) =
        (devices.iter().filter(|d| d.driver.is_some()).count(), devices.iter().filter(|d| d.user.is_some()).count());
    if bindings > max || assignments > max {
        report
            .at(0..0, format!("{bindings} driver bindings and {assignments} user assignments; at most {max} of each"));
    }
    let waivers = devices.iter().filter(|device| device.waiver.is_some()).count();
    if waivers > capabilities::config::MAX_ASSERTIONS {
        report.at(0..0, format!("{waivers} reserved-region waivers; at most {}", capabilities::config::MAX_ASSERTIONS));
    }
}

/// No two rules with the same selector bind drivers.
fn check_double_bindings(report: &mut Report<'_>, raw: &RawPolicy, tasks: &[Task], devices: &[Device]) {
    for (index, device) in devices.iter().enumerate() {
        for earlier in &devices[..index] {
            if let (Some((a, _)), Some((b, _))) = (earlier.driver, device.driver)
                && earlier.selector == device.selector
            {
                let span = raw.devices.get_index(index).map_or(0..0, |(_, d)| d.span());
                report.at(
                    span,
                    format!(
                        "device `{}` is already bound to driver `{}` by `{}`; it cannot also be bound to `{}`",
                        device.name, tasks[a].name, earlier.name, tasks[b].name
                    ),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_ids_parse_like_linux_prints_them() {
        assert_eq!(parse_address("01:1f.7"), Bdf::new(1, 0x1f, 7));
        assert_eq!(parse_address("00:20.0"), None);
        assert_eq!(parse_address("00:03.8"), None);
        assert_eq!(parse_address("100:00.0"), None);
        assert_eq!(parse_address("0003.0"), None);
        assert_eq!(parse_ids("1234:11e8"), Some((0x1234, 0x11e8)));
        assert_eq!(parse_ids("12345:1"), None);
    }
}
