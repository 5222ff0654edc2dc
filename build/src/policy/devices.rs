//! The `[devices]` section: which driver drives which PCI functions, and
//! which user task may own them (and with them, their whole group).

use capabilities::config::DeviceMatch;
use capabilities::pci::Bdf;

use super::check::{Report, line_of};
use super::raw::RawPolicy;
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
    let mut devices = Vec::new();
    for (name, spanned) in &raw.devices {
        let span = spanned.span();
        let device = spanned.get_ref();
        let what = format!("device `{name}`");
        let selector = match (&device.address, &device.ids) {
            (Some(address), None) => match parse_address(address.get_ref()) {
                Some(bdf) => Some(DeviceMatch::Address(bdf)),
                None => {
                    report.at(address.span(), format!("{what}: address `{}` is not BB:DD.F", address.get_ref()));
                    None
                }
            },
            (None, Some(ids)) => match parse_ids(ids.get_ref()) {
                Some((vendor, device)) => Some(DeviceMatch::Ids { vendor, device }),
                None => {
                    report.at(ids.span(), format!("{what}: ids `{}` are not vvvv:dddd", ids.get_ref()));
                    None
                }
            },
            _ => {
                report.at(
                    span.clone(),
                    format!("{what}: give exactly one of `address = \"BB:DD.F\"` or `ids = \"vvvv:dddd\"`"),
                );
                None
            }
        };
        let find = |report: &mut Report<'_>, field: &toml::Spanned<String>, role: &str, kinds: &[TaskKind]| {
            let Some(index) = tasks.iter().position(|task| task.name == *field.get_ref()) else {
                report.at(field.span(), format!("{what}: {role} `{}` is not a declared task", field.get_ref()));
                return None;
            };
            let kind = tasks[index].kind;
            if !kinds.contains(&kind) {
                report.at(
                    field.span(),
                    format!(
                        "{what}: {role} `{}` is a {} task; a {role} must be a {}",
                        field.get_ref(),
                        kind.name(),
                        kinds[0].name()
                    ),
                );
            }
            Some(index)
        };
        let driver = match (&device.driver, device.dma) {
            (Some(driver), Some(dma)) => find(report, driver, "driver", &[TaskKind::Driver]).map(|index| (index, dma)),
            (Some(driver), None) => {
                report.at(
                    driver.span(),
                    format!(
                        "{what}: say whether driver `{}` does DMA (`dma = true` or `dma = false`)",
                        driver.get_ref()
                    ),
                );
                None
            }
            (None, Some(_)) => {
                report.at(span.clone(), format!("{what}: `dma` only goes with `driver`"));
                None
            }
            (None, None) => None,
        };
        let user = device.user.as_ref().and_then(|user| find(report, user, "user", &[TaskKind::User]));
        if driver.is_none() && user.is_none() && device.driver.is_none() && device.user.is_none() {
            report.at(span.clone(), format!("{what}: name a `driver`, a `user`, or both"));
        }
        if let (Some((driver, true)), Some(user)) = (driver, user) {
            report.at(
                span.clone(),
                format!(
                    "{what}: DMA-capable driver `{}` and user task `{}` cannot share a device (nor its group); bind a driver with `dma = false` (a stub) if the device must stay claimed",
                    tasks[driver].name, tasks[user].name
                ),
            );
        }
        if let Some(selector) = selector {
            let waiver = device.reserved_region_waiver.as_ref().and_then(|reason| {
                let problem = match (&selector, user) {
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
            });
            devices.push(Device {
                name: name.clone(),
                line: line_of(report.text, span),
                selector,
                driver,
                user,
                waiver,
            });
        }
    }
    // The servers' configurations hold this many of each.
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
    devices
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
