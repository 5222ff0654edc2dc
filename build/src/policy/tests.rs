//! Each rule of the policy checker, broken on purpose: the message must
//! name the offending items and the line.

use std::path::Path;

use capabilities::abi::rights;
use capabilities::badge;

use super::testing::{BINARIES, GOOD};
use super::{BootObject, Policy, Problems, TaskKind, parse};

fn binaries() -> Vec<String> {
    BINARIES.iter().map(|s| s.to_string()).collect()
}

fn check(text: &str) -> Result<Policy, Problems> {
    parse(Path::new("test.toml"), text, &binaries())
}

/// Asserts `text` is refused with exactly the `expected` messages (each a
/// prefix `test.toml:LINE: ...`).
fn refused(text: &str, expected: &[&str]) {
    let problems = check(text).expect_err("the policy is invalid").to_string();
    for message in expected {
        assert!(problems.contains(message), "missing `{message}` in:\n{problems}");
    }
    assert_eq!(problems.lines().count(), expected.len(), "unexpected problems:\n{problems}");
}

#[test]
fn a_good_policy_resolves_every_name_into_objects_rights_and_badges() {
    let policy = check(GOOD).expect("valid");
    assert_eq!(policy.init, Some(1));
    assert_eq!(policy.endpoints[0].server, 0);
    let [echo, client] = &policy.tasks[..] else { panic!("two tasks") };
    assert_eq!(echo.kind, TaskKind::SystemServer);
    assert_eq!(echo.objects, 4);
    assert_eq!(echo.caps[0].rights, rights::RECEIVE);
    assert_eq!(echo.caps[1].rights, rights::SEND | rights::GRANT | rights::MINT);
    assert_eq!(echo.caps[1].badge, 0, "the server's minting capability is unbadged");
    let calls = &client.caps[0];
    assert_eq!(calls.object, BootObject::Endpoint(0));
    assert_eq!(calls.badge, badge::policy(1, 0b101), "client #1, operations 0 and 2");
    assert!(badge::allows(calls.badge, 0) && !badge::allows(calls.badge, 1));
    assert_eq!(client.caps[1].rights, rights::SEND | rights::RECEIVE);
    assert_eq!(client.caps[1].badge, 4);
    assert_eq!(client.caps[2].object, BootObject::Task(0));
    assert_eq!(client.caps[4].object, BootObject::Interrupt { gsi: 8, level: false });
    assert_eq!(client.caps[5].rights, rights::DMA | rights::IRQ);
    assert_eq!(client.caps.iter().map(|c| c.line).collect::<Vec<_>>(), [31, 32, 33, 34, 35, 36, 37]);
}

#[test]
fn unknown_names_are_reported_with_what_is_known() {
    let bad = GOOD
        .replace("binary = \"kernel-test\"", "binary = \"nosuch\"")
        .replace("protocol = \"echo\"", "protocol = \"nope\"")
        .replace("watch = \"echo\"", "watch = \"ghost\"")
        .replace("notification = \"wakeup\"", "notification = \"alarm\"")
        .replace("init = \"client\"", "init = \"zed\"");
    refused(
        &bad,
        &[
            "test.toml:3: init task `zed` is not declared",
            "test.toml:7: endpoint `echo`: unknown protocol `nope` (known: block, echo, edu, forger, iommu, pci)",
            "test.toml:24: task `client`: binary `nosuch` is not a task crate of this workspace (known: echo-server, kernel-test, hello)",
            "test.toml:31: task `client`, capability `echo`: endpoint `echo` has no protocol, so no operations can be named",
            "test.toml:32: task `client`, capability `wakeup`: notification `alarm` is not declared",
            "test.toml:33: task `client`, capability `echo-task`: task `ghost` to watch is not declared",
        ],
    );
}

#[test]
fn operations_must_exist_and_be_named() {
    let bad = GOOD.replace("operations = [\"reverse\", \"mint-badge\"]", "operations = [\"reverse\", \"launch\"]");
    refused(
        &bad,
        &[
            "test.toml:31: task `client`, capability `echo`: protocol `echo` has no operation `launch` (it has: reverse, signal-it, mint-badge)",
        ],
    );
    let bad = GOOD.replace(
        "echo = { send = \"echo\", operations = [\"reverse\", \"mint-badge\"] }",
        "echo = { send = \"echo\" }",
    );
    refused(
        &bad,
        &[
            "test.toml:31: task `client`, capability `echo`: say which operations of `echo` it may invoke: operations = [\"reverse\", \"signal-it\", \"mint-badge\"]",
        ],
    );
}

#[test]
fn only_the_server_receives_or_mints_and_someone_must_receive() {
    let bad = GOOD.replace(
        "echo-task = { watch = \"echo\" }",
        "echo-task = { receive = \"echo\" }\nforge = { send = \"echo\", mint = true }",
    );
    refused(
        &bad,
        &[
            "test.toml:33: task `client`, capability `echo-task`: endpoint `echo` is served by `echo`, so `client` may not receive on it",
            "test.toml:34: task `client`, capability `forge`: only the server of `echo` may mint its badges",
        ],
    );
    let bad = GOOD.replace("requests = { receive = \"echo\" }\n", "");
    refused(&bad, &["test.toml:5: endpoint `echo`: its server `echo` has no `receive = \"echo\"` capability"]);
}

#[test]
fn a_client_may_not_outrank_its_server() {
    let bad = GOOD.replace("priority = 2", "priority = 9");
    refused(
        &bad,
        &[
            "test.toml:5: priority inversion: `client` (priority 9) calls `echo` on endpoint `echo`, whose server has the lower priority 3",
        ],
    );
}

#[test]
fn hardware_goes_only_to_system_servers() {
    let bad = GOOD.replacen("kind = \"system-server\"\npriority = 2", "kind = \"user\"\npriority = 2", 1);
    let expected: Vec<String> = [(34, "rtc"), (35, "rtc-irq"), (36, "control"), (37, "regs")]
        .iter()
        .map(|(line, name)| {
            format!(
                "test.toml:{line}: task `client`, capability `{name}`: a user task may not hold hardware capabilities"
            )
        })
        .collect();
    refused(&bad, &expected.iter().map(String::as_str).collect::<Vec<_>>());
}

#[test]
fn the_accounting_right_goes_to_any_task_alone_and_only_when_granted() {
    let user = GOOD.replacen("kind = \"system-server\"\npriority = 2", "kind = \"user\"\npriority = 2", 1);
    let user = user.replace("rtc = { io-ports", "figures = { accounting = true }\nrtc = { io-ports");
    let problems = check(&user).expect_err("the user task still holds hardware").to_string();
    assert!(!problems.contains("`figures`"), "a user task may read the figures:\n{problems}");
    let granted = GOOD.replace("rtc = { io-ports", "figures = { accounting = true }\nrtc = { io-ports");
    let policy = check(&granted).expect("valid");
    let figures = &policy.tasks[1].caps[3];
    assert_eq!((figures.object, figures.rights), (BootObject::Control, rights::ACCOUNT), "ACCOUNT and nothing else");
    assert!(
        policy.tasks[1].caps.iter().filter(|cap| cap.name != "figures").all(|cap| cap.rights & rights::ACCOUNT == 0)
    );
    let bad = GOOD.replace(
        "rtc = { io-ports",
        "figures = { accounting = false }\nmore = { accounting = true, kill = true }\nboth = { accounting = true, watch = \"echo\" }\nrtc = { io-ports",
    );
    refused(
        &bad,
        &[
            "test.toml:34: task `client`, capability `figures`: `accounting = false` grants nothing; leave the capability out",
            "test.toml:35: task `client`, capability `more`: `kill` only goes with `watch`",
            "test.toml:36: task `client`, capability `both`: give exactly one of receive, send, notification, watch, io-ports, interrupt, device-memory, control, acpi-tables, ecam, remapping-unit, accounting",
        ],
    );
}

#[test]
fn each_grant_names_one_object_with_its_own_options() {
    let bad = GOOD
        .replace(
            "rtc = { io-ports = { base = 0x70, count = 2 } }",
            "rtc = { io-ports = { base = 0xffff, count = 2 }, signal = true }",
        )
        .replace("trigger = \"edge\"", "trigger = \"rising\"")
        .replace("control = [\"dma\", \"irq\"]", "control = [\"root\"]")
        .replace("base = 0xfed90000, pages = 1", "base = 0xfed90010, pages = 1")
        .replace("echo-task = { watch = \"echo\" }", "echo-task = { watch = \"echo\", send = \"echo\" }");
    refused(
        &bad,
        &[
            "test.toml:33: task `client`, capability `echo-task`: give exactly one of receive, send",
            "test.toml:34: task `client`, capability `rtc`: `signal, wait and badge` only goes with `notification`",
            "test.toml:34: task `client`, capability `rtc`: ports 0xffff+2 do not fit the 64 Ki port space",
            "test.toml:35: task `client`, capability `rtc-irq`: trigger `rising` is not `edge` or `level`",
            "test.toml:36: task `client`, capability `control`: control right `root` is not `dma`, `irq` or `device-memory`",
            "test.toml:37: task `client`, capability `regs`: device memory must be page-aligned",
        ],
    );
}

#[test]
fn task_fields_are_checked() {
    let bad = GOOD
        .replace("version = 1", "version = 7")
        .replace("priority = 3", "priority = 99")
        .replace("stack-pages = 4\nobjects", "stack-pages = 0\nobjects")
        .replace("kind = \"system-server\"\npriority = 2", "kind = \"daemon\"\npriority = 2");
    refused(
        &bad,
        &[
            "test.toml:1: policy format version 7 is not supported",
            "test.toml:14: task `echo`: priority 99 is above the highest, 31",
            "test.toml:16: task `echo`: stack-pages must be 1 to 2048, not 0",
            "test.toml:25: task `client`: kind `daemon` is not one of system-server, driver, user",
        ],
    );
}

#[test]
fn unknown_fields_and_syntax_errors_name_the_line() {
    let unknown = GOOD.replace("objects = 4", "objects = 4\ncolour = \"red\"");
    let problems = check(&unknown).expect_err("unknown field").to_string();
    assert!(problems.starts_with("test.toml:18: unknown field `colour`"), "{problems}");
    let unknown_cap = GOOD.replace("{ receive = \"echo\" }", "{ receive = \"echo\", lasers = true }");
    let problems = check(&unknown_cap).expect_err("unknown field").to_string();
    assert!(problems.starts_with("test.toml:20: unknown field `lasers`"), "{problems}");
    let broken = check("version = 1\ndescription = \"x\"\n[tasks.a\n").expect_err("syntax").to_string();
    assert!(broken.starts_with("test.toml:3:"), "{broken}");
}

const DEVICES: &str = r#"version = 1
description = "drivers and a user"

[tasks.edu-driver]
binary = "hello"
kind = "driver"
priority = 2
memory-pages = 64
stack-pages = 4

[tasks.stub]
binary = "hello"
kind = "driver"
dma = false
priority = 2
memory-pages = 64
stack-pages = 4

[tasks.owner]
binary = "hello"
kind = "user"
priority = 1
memory-pages = 64
stack-pages = 4

[devices.kernel-edu]
address = "00:03.0"
driver = "edu-driver"

[devices.user-edu]
address = "00:04.0"
user = "owner"

[devices.held]
ids = "1234:11e8"
driver = "stub"
user = "owner"
"#;

#[test]
fn device_rules_resolve_bindings_and_assignments() {
    use capabilities::config::DeviceMatch;
    let policy = check(DEVICES).expect("valid");
    let [kernel, user, held] = &policy.devices[..] else { panic!("three rules") };
    assert_eq!(kernel.selector, DeviceMatch::Address(capabilities::pci::Bdf::new(0, 3, 0).unwrap()));
    assert_eq!((kernel.driver, kernel.user), (Some((0, true)), None), "drivers do DMA unless they say not");
    assert_eq!((user.driver, user.user), (None, Some(2)));
    assert_eq!(held.selector, DeviceMatch::Ids { vendor: 0x1234, device: 0x11e8 });
    assert_eq!((held.driver, held.user), (Some((1, false)), Some(2)), "a stub may hold what a user owns");
    let dma: Vec<bool> = policy.tasks.iter().map(|task| task.dma).collect();
    assert_eq!(dma, [true, false, false], "a user task never counts as doing DMA");
}

#[test]
fn device_rules_are_checked() {
    let bad = DEVICES
        .replace("kind = \"driver\"\ndma = false", "kind = \"driver\"\ndma = true")
        .replace("address = \"00:04.0\"\nuser = \"owner\"", "address = \"00:04.9\"\nuser = \"edu-driver\"")
        .replace("driver = \"edu-driver\"\n", "driver = \"owner\"\n");
    refused(
        &bad,
        &[
            "test.toml:28: device `kernel-edu`: driver `owner` is a user task; a driver must be a driver",
            "test.toml:31: device `user-edu`: address `00:04.9` is not BB:DD.F",
            "test.toml:32: device `user-edu`: user `edu-driver` is a driver task; a user must be a user",
            "test.toml:34: device `held`: DMA-capable driver `stub` and user task `owner` cannot share a device",
        ],
    );
    let twice = format!("{DEVICES}\n[devices.again]\nids = \"1234:11e8\"\ndriver = \"edu-driver\"\n");
    refused(
        &twice,
        &[
            "test.toml:39: device `again` is already bound to driver `stub` by `held`; it cannot also be bound to `edu-driver`",
        ],
    );
}

#[test]
fn dma_is_the_driver_tasks_word_said_once() {
    let on_binding = DEVICES.replace("driver = \"stub\"\n", "driver = \"stub\"\ndma = false\n");
    refused(
        &on_binding,
        &[
            "test.toml:37: device `held`: `dma` is the driver's to say, once, for all its devices: write `dma = false` in `[tasks.stub]`",
        ],
    );
    let on_user = DEVICES.replace("kind = \"user\"\n", "kind = \"user\"\ndma = false\n");
    refused(&on_user, &["test.toml:22: task `owner`: `dma` is said only of driver tasks"]);
}

#[test]
fn invalidation_is_an_iommu_endpoint_setting_with_two_values() {
    use capabilities::config::InvalidationMode;
    let on_echo = GOOD.replace("protocol = \"echo\"\n", "protocol = \"echo\"\ninvalidation = \"registers\"\n");
    refused(&on_echo, &["test.toml:8: endpoint `echo`: invalidation only applies to the iommu protocol"]);
    let iommu = GOOD.replace("protocol = \"echo\"\n", "protocol = \"echo\"\n\n[endpoints.iommu]\nserver = \"echo\"\nprotocol = \"iommu\"\ninvalidation = \"registers\"\n");
    let iommu = iommu.replace(
        "requests = { receive = \"echo\" }",
        "requests = { receive = \"echo\" }\niommu-requests = { receive = \"iommu\" }",
    );
    let policy = check(&iommu).expect("valid");
    let endpoint = policy.endpoints.iter().find(|e| e.name == "iommu").expect("declared");
    assert_eq!(endpoint.invalidation, Some(InvalidationMode::Registers));
    let unknown = iommu.replace("invalidation = \"registers\"", "invalidation = \"sometimes\"");
    let problems = check(&unknown).expect_err("an unknown mode").to_string();
    assert!(
        problems.contains("sometimes") && problems.contains("queued") && problems.contains("registers"),
        "{problems}"
    );
}

#[test]
fn parameters_are_short_names_for_tasks_without_a_server_configuration() {
    let with = GOOD.replace(
        "[tasks.client]\nbinary = \"kernel-test\"\n",
        "[tasks.client]\nbinary = \"kernel-test\"\nparameters = { rounds = 20, seed = 7 }\n",
    );
    let policy = check(&with).expect("valid");
    let client = policy.tasks.iter().find(|t| t.name == "client").expect("declared");
    assert_eq!(client.parameters, vec![("rounds".to_string(), 20), ("seed".to_string(), 7)]);
    let long = with.replace("seed = 7", "a_parameter_name_far_too_long_for_it = 7");
    let problems = check(&long).expect_err("too long").to_string();
    assert!(
        problems.contains("parameter name `a_parameter_name_far_too_long_for_it` must be 1 to 24 bytes"),
        "{problems}"
    );
}

#[test]
fn an_isolation_assertion_names_a_device_its_identity_and_a_reason_and_earns_a_warning() {
    let asserted = format!(
        "{GOOD}\n[assertions.pair]\ndevice = \"00:07\"\nids = \"1234:11e8\"\nreason = \"the functions are separate models with no shared path\"\n"
    );
    let policy = check(&asserted).expect("valid");
    assert_eq!(policy.assertions.len(), 1);
    assert_eq!(policy.warnings.len(), 1);
    assert!(
        policy.warnings[0].message.contains("treat the functions of 00:07 (1234:11e8) as isolated from each other"),
        "{:?}",
        policy.warnings
    );
    let broken = asserted
        .replace("\"00:07\"", "\"00:40\"")
        .replace("1234:11e8", "1234")
        .replace("the functions are separate models with no shared path", "trust me");
    let problems = check(&broken).expect_err("three problems").to_string();
    assert!(
        problems.contains("assertion `pair`: `00:40` is neither a device (BB:DD) nor a function (BB:DD.F)"),
        "{problems}"
    );
    assert!(problems.contains("assertion `pair`: ids `1234` are not vvvv:dddd"), "{problems}");
    assert!(problems.contains("assertion `pair`: say why the device isolates its functions"), "{problems}");
}

#[test]
fn a_reserved_region_waiver_goes_with_a_user_and_an_address() {
    let base = format!("{GOOD}\n[devices.usb]\naddress = \"00:1d.0\"\n");
    let waived =
        format!("{base}user = \"client\"\nreserved-region-waiver = \"the firmware's USB emulation stops at boot\"\n");
    let waived = waived.replace("kind = \"system-server\"\npriority = 2", "kind = \"user\"\npriority = 2");
    let waived = waived.replace("rtc = { io-ports = { base = 0x70, count = 2 } }\nrtc-irq = { interrupt = { gsi = 8, trigger = \"edge\" } }\ncontrol = { control = [\"dma\", \"irq\"] }\nregs = { device-memory = { base = 0xfed90000, pages = 1 } }\n", "");
    let policy = check(&waived).expect("valid");
    assert!(
        policy
            .warnings
            .iter()
            .any(|w| w.message.contains("user task `client` may own it even if firmware does DMA to it"))
    );
    let no_user = format!(
        "{base}driver = \"echo\"\ndma = false\nreserved-region-waiver = \"the firmware's USB emulation stops at boot\"\n"
    );
    let problems = check(&no_user).expect_err("no user").to_string();
    assert!(
        problems.contains("a reserved-region waiver lets a user task own the device: name the `user`"),
        "{problems}"
    );
}

#[test]
fn registers_ecam_and_acpi_tables_are_hardware_only_system_servers_hold() {
    let user = GOOD.replace("kind = \"system-server\"\npriority = 2", "kind = \"user\"\npriority = 2").replace(
        "rtc = { io-ports = { base = 0x70, count = 2 } }\nrtc-irq = { interrupt = { gsi = 8, trigger = \"edge\" } }\ncontrol = { control = [\"dma\", \"irq\"] }\nregs = { device-memory = { base = 0xfed90000, pages = 1 } }\n",
        "unit = { remapping-unit = 0 }\necam = { ecam = 0 }\ntables = { acpi-tables = true }\n",
    );
    let problems = check(&user).expect_err("a user task with hardware").to_string();
    for name in ["unit", "ecam", "tables"] {
        assert!(
            problems.contains(&format!("capability `{name}`: a user task may not hold hardware capabilities")),
            "{problems}"
        );
    }
}

#[test]
fn a_remapping_unit_is_granted_once() {
    let units = "unit = { remapping-unit = 0 }\nsecond = { remapping-unit = 1 }\nagain = { remapping-unit = 0 }\n";
    let twice = GOOD.replace("regs = { device-memory", &format!("{units}regs = {{ device-memory"));
    let problems = check(&twice).expect_err("unit 0 twice").to_string();
    assert!(
        problems.contains(
            "capability `again`: remapping unit 0 is granted already (task `client`, capability `unit`, line"
        ),
        "{problems}"
    );
    assert_eq!(problems.lines().count(), 1, "units 0 and 1 once each are fine:\n{problems}");
    let once = GOOD.replace(
        "regs = { device-memory",
        "unit = { remapping-unit = 0 }\nsecond = { remapping-unit = 1 }\nregs = { device-memory",
    );
    let policy = check(&once).expect("each unit once");
    let granted: Vec<_> = policy.tasks[1]
        .caps
        .iter()
        .filter(|cap| matches!(cap.object, BootObject::RemappingUnit(_)))
        .map(|cap| cap.object)
        .collect();
    assert_eq!(granted, [BootObject::RemappingUnit(0), BootObject::RemappingUnit(1)]);
}

#[test]
fn options_that_would_be_ignored_are_refused() {
    let minting = GOOD.replace(
        "minter = { send = \"echo\", mint = true }",
        "minter = { send = \"echo\", mint = true, operations = [\"reverse\"] }",
    );
    let problems = check(&minting).expect_err("operations on a minter").to_string();
    assert!(problems.contains("a minting capability is unbadged and carries no operations"), "{problems}");
    let tables = GOOD.replace("regs = { device-memory", "tables = { acpi-tables = false }\nregs = { device-memory");
    let problems = check(&tables).expect_err("acpi-tables = false").to_string();
    assert!(problems.contains("`acpi-tables = false` grants nothing"), "{problems}");
    let quota = GOOD.replace("protocol = \"echo\"\n", "protocol = \"echo\"\naddress-space-quota = 2\n");
    let problems = check(&quota).expect_err("a quota on the echo endpoint").to_string();
    assert!(problems.contains("endpoint `echo`: address-space-quota only applies to the iommu protocol"), "{problems}");
}

#[test]
fn more_device_rules_than_the_servers_hold_are_refused_not_a_crash() {
    let mut many = GOOD.to_string();
    for n in 0..33 {
        many.push_str(&format!(
            "\n[devices.d{n}]\naddress = \"{:02x}:{:02x}.0\"\nuser = \"client\"\n",
            2 + n / 32,
            n % 32
        ));
    }
    let many = many.replace("kind = \"system-server\"\npriority = 2", "kind = \"user\"\npriority = 2").replace(
        "rtc = { io-ports = { base = 0x70, count = 2 } }\nrtc-irq = { interrupt = { gsi = 8, trigger = \"edge\" } }\ncontrol = { control = [\"dma\", \"irq\"] }\nregs = { device-memory = { base = 0xfed90000, pages = 1 } }\n",
        "",
    );
    let problems = check(&many).expect_err("33 assignments").to_string();
    assert!(problems.contains("0 driver bindings and 33 user assignments; at most 32 of each"), "{problems}");
}

/// An IOMMU server, a PCI server and a user task; the user's grant of the
/// IOMMU protocol is `{user_operations}`.
fn iommu_policy(user_operations: &str) -> String {
    format!(
        r#"version = 1
description = "driver-core operations"

[endpoints.iommu]
server = "iommu"
protocol = "iommu"

[endpoints.pci]
server = "pci"
protocol = "pci"

[tasks.iommu]
binary = "echo-server"
kind = "system-server"
priority = 5
memory-pages = 64
stack-pages = 4

[tasks.iommu.caps]
requests = {{ receive = "iommu" }}

[tasks.pci]
binary = "echo-server"
kind = "system-server"
priority = 4
memory-pages = 64
stack-pages = 4

[tasks.pci.caps]
requests = {{ receive = "pci" }}
iommu = {{ send = "iommu", operations = ["report-topology", "claim-kernel", "reclaimed"] }}

[tasks.user]
binary = "hello"
kind = "user"
priority = 2
memory-pages = 16
stack-pages = 1

[tasks.user.caps]
iommu = {{ send = "iommu", operations = [{user_operations}] }}
"#
    )
}

#[test]
fn the_driver_cores_operations_go_to_the_pci_server_alone() {
    check(&iommu_policy(r#""claim-group", "owner""#)).expect("a user may claim groups and read owners");
    refused(
        &iommu_policy(r#""claim-group", "release-kernel", "reclaimed""#),
        &[
            "test.toml:41: task `user`, capability `iommu`: `release-kernel` is the driver core's: only the server of the pci protocol may be granted it, and task `user` serves none",
            "test.toml:41: task `user`, capability `iommu`: `reclaimed` is the driver core's: only the server of the pci protocol may be granted it, and task `user` serves none",
        ],
    );
}
