//! `[assertions]`: devices the policy asserts isolate their functions, and the warnings they (and reserved-region waivers) earn.
//!
//! An assertion is the scoped, audited alternative to Linux's out-of-tree
//! "ACS override": it names one device by address and identity, says why,
//! and group formation then treats exactly that device as having ACS
//! isolation. It is never a switch for the whole machine, and every
//! assertion is printed as a warning when the policy is checked.

use capabilities::config::{AssertedAt, JUSTIFICATION_MAX, MAX_ASSERTIONS};

use super::check::{Report, line_of};
use super::devices::{parse_address, parse_ids};
use super::raw::RawPolicy;
use super::{Assertion, Device, Problem, Task};

/// The shortest reason accepted: a sentence, not a placeholder.
pub const JUSTIFICATION_MIN: usize = 20;

/// Parses `BB:DD` (a whole device) or `BB:DD.F` (one function).
fn parse_location(text: &str) -> Option<AssertedAt> {
    if text.contains('.') {
        return parse_address(text).map(AssertedAt::Function);
    }
    let (bus, device) = text.split_once(':')?;
    let bus = u8::from_str_radix(bus, 16).ok()?;
    let device = u8::from_str_radix(device, 16).ok().filter(|device| *device < 32)?;
    Some(AssertedAt::Device { bus, device })
}

/// Checks every assertion; returns them with one warning each.
pub(super) fn check(report: &mut Report<'_>, raw: &RawPolicy) -> (Vec<Assertion>, Vec<Problem>) {
    let (mut assertions, mut warnings) = (Vec::new(), Vec::new());
    if raw.assertions.len() > MAX_ASSERTIONS {
        report.at(0..0, format!("{} isolation assertions; at most {MAX_ASSERTIONS}", raw.assertions.len()));
    }
    for (name, spanned) in &raw.assertions {
        let assertion = spanned.get_ref();
        let what = format!("assertion `{name}`");
        let at = parse_location(assertion.device.get_ref());
        if at.is_none() {
            report.at(
                assertion.device.span(),
                format!(
                    "{what}: `{}` is neither a device (BB:DD) nor a function (BB:DD.F)",
                    assertion.device.get_ref()
                ),
            );
        }
        let ids = parse_ids(assertion.ids.get_ref());
        if ids.is_none() {
            report.at(assertion.ids.span(), format!("{what}: ids `{}` are not vvvv:dddd", assertion.ids.get_ref()));
        }
        let reason = assertion.reason.get_ref().trim();
        if reason.len() < JUSTIFICATION_MIN {
            report.at(
                assertion.reason.span(),
                format!("{what}: say why the device isolates its functions (at least {JUSTIFICATION_MIN} characters)"),
            );
        } else if reason.len() > JUSTIFICATION_MAX {
            report.at(assertion.reason.span(), format!("{what}: the reason is longer than {JUSTIFICATION_MAX} bytes"));
        }
        if name.len() > capabilities::manifest::NAME_MAX {
            report.at(
                spanned.span(),
                format!("{what}: the name is longer than {} bytes", capabilities::manifest::NAME_MAX),
            );
        }
        let (Some(at), Some(ids)) = (at, ids) else { continue };
        let line = line_of(report.text, spanned.span());
        let place = match at {
            AssertedAt::Function(bdf) => format!("{bdf} ({:04x}:{:04x}) as isolating what is below it", ids.0, ids.1),
            AssertedAt::Device { bus, device } => {
                format!(
                    "the functions of {bus:02x}:{device:02x} ({:04x}:{:04x}) as isolated from each other",
                    ids.0, ids.1
                )
            }
        };
        warnings.push(Problem {
            line,
            message: format!(
                "warning: assertion `{name}`: group formation will treat {place} though the device shows no ACS, because: {reason}"
            ),
        });
        assertions.push(Assertion { name: name.clone(), line, at, ids, reason: reason.to_owned() });
    }
    (assertions, warnings)
}

/// One warning per reserved-region waiver.
pub(super) fn waiver_warnings(devices: &[Device], tasks: &[Task]) -> Vec<Problem> {
    devices
        .iter()
        .filter_map(|device| {
            let (reason, user) = (device.waiver.as_ref()?, device.user?);
            Some(Problem {
                line: device.line,
                message: format!(
                    "warning: device `{}`: user task `{}` may own it even if firmware does DMA to it (a reserved memory region), because: {reason}",
                    device.name, tasks[user].name
                ),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_name_a_device_or_one_function() {
        assert_eq!(parse_location("00:07"), Some(AssertedAt::Device { bus: 0, device: 7 }));
        assert_eq!(
            parse_location("03:00.1").map(|at| at.covers(capabilities::pci::Bdf::new(3, 0, 1).unwrap())),
            Some(true)
        );
        assert_eq!(parse_location("00:20"), None);
        assert_eq!(parse_location("0007"), None);
    }
}
