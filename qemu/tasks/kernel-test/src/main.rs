//! Test task for the microkernel core, run in QEMU: a call gets its reply,
//! capabilities travel and are revoked, badges identify clients, the timer
//! preempts a spinning task, death watches fire, interrupts arrive through
//! the IO APIC, and no slot index reaches anything it was not given.
#![no_std]
#![no_main]

use capabilities::abi::{ObjectKind, ipc, rights};
use capabilities::badge;
use echo_api::{Operation, Reply, Request};
use userlib::objects::TaskState;
use userlib::testkit::prelude::*;

userlib::cap_slot!(ECHO: Endpoint = "echo");
userlib::cap_slot!(ECHO_REVERSE_ONLY: Endpoint = "echo-reverse-only");
userlib::cap_slot!(ECHO_ADMIN: Endpoint = "echo-admin");
userlib::cap_slot!(ORDER_FAULT: Endpoint = "order-fault");
userlib::cap_slot!(ORDER_EXIT: Endpoint = "order-exit");
userlib::cap_slot!(ORDER_GP: Endpoint = "order-gp");
userlib::cap_slot!(WATCH_FAULT: Task = "watch-fault");
userlib::cap_slot!(WATCH_EXIT: Task = "watch-exit");
userlib::cap_slot!(WATCH_GP: Task = "watch-gp");
userlib::cap_slot!(SPINNER_GO: Notification = "spinner-go");
userlib::cap_slot!(SPINNER_STARTED: Notification = "spinner-started");
userlib::cap_slot!(RTC: IoPorts = "rtc");
userlib::cap_slot!(RTC_IRQ: Interrupt = "rtc-irq");
userlib::entry!(main);

/// Slots this test creates objects in.
const SCRATCH: u32 = 64;
const SCRATCH2: u32 = 65;
const RECEIVED: u32 = 70;
const EVENTS: u32 = 80;

fn main() -> u64 {
    testkit::run(userlib::cases![
        call_gets_reply,
        policy_badge_names_the_client,
        operations_not_granted_are_refused,
        ungranted_endpoint_is_unreachable,
        transferred_capability_is_used_by_receiver,
        minted_badge_identifies_its_client,
        revoked_capability_fails,
        timer_preempts_a_spinning_task,
        fault_triggers_death_watch,
        exit_triggers_death_watch,
        a_general_protection_fault_on_its_own_stack_kills_only_the_task,
        receive_times_out,
        ioapic_interrupt_arrives,
        no_slot_reaches_what_was_not_given
    ])
}

/// Calls the echo server with `request`; returns the decoded reply as
/// (badge or 0, reversed bytes or error).
fn echo(
    endpoint: Cap<Endpoint>,
    buffer: &mut Buffer,
    request: &Request<'_>,
) -> Result<(u64, heapless::Vec<u8, 64>), ErrorCode> {
    let received = endpoint.call_with(buffer, request)?;
    match buffer.decode::<Reply<'_>>(received.len)? {
        Reply::Reversed { badge, bytes } => Ok((badge, bytes.iter().copied().collect())),
        Reply::Done { badge } => Ok((badge, heapless::Vec::new())),
        Reply::Failed(error) => Err(error),
    }
}

fn call_gets_reply(buffer: &mut Buffer) -> Outcome {
    let (_, bytes) = check_ok!(echo(ECHO.get(), buffer, &Request { operation: Operation::Reverse, bytes: b"kernel" }));
    check_eq!(bytes.as_slice(), b"lenrek");
    Ok(())
}

fn policy_badge_names_the_client(buffer: &mut Buffer) -> Outcome {
    let (badge, _) = check_ok!(echo(ECHO.get(), buffer, &Request { operation: Operation::Reverse, bytes: b"x" }));
    let own_index = badge::client(badge);
    check!(own_index.is_some());
    check!(badge::allows(badge, Operation::Reverse as u8));
    check!(badge::allows(badge, Operation::SignalIt as u8));
    let (limited, _) =
        check_ok!(echo(ECHO_REVERSE_ONLY.get(), buffer, &Request { operation: Operation::Reverse, bytes: b"x" }));
    check_eq!(badge::client(limited), own_index);
    check!(!badge::allows(limited, Operation::SignalIt as u8));
    Ok(())
}

fn operations_not_granted_are_refused(buffer: &mut Buffer) -> Outcome {
    for operation in [Operation::SignalIt, Operation::MintBadge] {
        let result = echo(ECHO_REVERSE_ONLY.get(), buffer, &Request { operation, bytes: b"" });
        check_eq!(result.err(), Some(ErrorCode::PermissionDenied));
    }
    Ok(())
}

fn ungranted_endpoint_is_unreachable(buffer: &mut Buffer) -> Outcome {
    check_eq!(ECHO_ADMIN.get().slot(), 0);
    let result = ECHO_ADMIN.get().call_with(buffer, &Request { operation: Operation::Reverse, bytes: b"" });
    check_eq!(result.err(), Some(ErrorCode::InvalidCapability));
    Ok(())
}

fn transferred_capability_is_used_by_receiver(buffer: &mut Buffer) -> Outcome {
    let note = check_ok!(objects::create_notification(SCRATCH));
    buffer.set_send_caps(&[note.slot()]);
    let result = echo(ECHO.get(), buffer, &Request { operation: Operation::SignalIt, bytes: b"" });
    buffer.set_send_caps(&[]);
    check_eq!(result.map(|(badge, _)| badge), Ok(0));
    check_eq!(note.wait(ipc::NONBLOCK, 0), Ok(1));
    check_ok!(note.delete());
    Ok(())
}

fn minted_badge_identifies_its_client(buffer: &mut Buffer) -> Outcome {
    buffer.set_window(RECEIVED, 1);
    let (minted, _) = check_ok!(echo(ECHO.get(), buffer, &Request { operation: Operation::MintBadge, bytes: b"" }));
    let slots = buffer.received_caps();
    buffer.set_window(0, 0);
    check_eq!(slots.as_slice(), &[RECEIVED]);
    check!(minted & badge::SERVER_MINTED != 0);
    let mine = Cap::<Endpoint>::at(RECEIVED);
    check_eq!(mine.info().map(|info| info.badge_or_base), Ok(minted));
    let (seen, _) = check_ok!(echo(mine, buffer, &Request { operation: Operation::Reverse, bytes: b"ab" }));
    check_eq!(seen, minted);
    // The minted capability carries exactly the server's grant, no more.
    let result = echo(mine, buffer, &Request { operation: Operation::MintBadge, bytes: b"" });
    check_eq!(result.err(), Some(ErrorCode::PermissionDenied));
    // A badge cannot be forged: a badged capability cannot be re-minted.
    check_eq!(mine.mint_to(SCRATCH2, rights::SEND, 0x1234).err(), Some(ErrorCode::PermissionDenied));
    check_eq!(ECHO.get().mint_to(SCRATCH2, rights::SEND, 0x1234).err(), Some(ErrorCode::PermissionDenied));
    check_ok!(mine.delete());
    Ok(())
}

fn revoked_capability_fails(_: &mut Buffer) -> Outcome {
    let note = check_ok!(objects::create_notification(SCRATCH));
    let copy = check_ok!(note.copy_to(SCRATCH2, rights::SEND));
    check_eq!(copy.signal(), Ok(()));
    check_ok!(note.revoke());
    check_eq!(copy.signal().err(), Some(ErrorCode::InvalidCapability));
    check_eq!(copy.info().err(), Some(ErrorCode::InvalidCapability));
    check_eq!(note.wait(ipc::NONBLOCK, 0), Ok(1), "the original survives its revoke");
    check_ok!(note.delete());
    Ok(())
}

fn timer_preempts_a_spinning_task(_: &mut Buffer) -> Outcome {
    let started = userlib::syscall::now();
    check_ok!(SPINNER_GO.get().signal());
    // The spinner shares this task's priority: once it runs it never
    // yields, so this wait can only end through a timer preemption.
    check_eq!(SPINNER_STARTED.get().wait(0, 2_000_000), Ok(1));
    let waited = userlib::syscall::now() - started;
    defmt::info!("back after {=u64} us of spinning", waited);
    check!(waited >= 1_000, "the spinner ran before the timer took the CPU back");
    Ok(())
}

fn watch(buffer: &mut Buffer, task: Cap<Task>, order: Cap<Endpoint>, byte: u8, expected: TaskState) -> Outcome {
    let events = check_ok!(objects::create_notification(EVENTS));
    check_ok!(task.watch(events, 0b10));
    check_eq!(task.state(), Ok(TaskState::Alive));
    buffer.message_mut()[0] = byte;
    check_ok!(order.send(buffer, 1, 0, 0));
    check_eq!(events.wait(0, 1_000_000), Ok(0b10));
    check_eq!(task.state(), Ok(expected));
    let (_, bytes) = check_ok!(echo(ECHO.get(), buffer, &Request { operation: Operation::Reverse, bytes: b"ok" }));
    check_eq!(bytes.as_slice(), b"ko", "peers keep running");
    check_ok!(events.delete());
    Ok(())
}

fn fault_triggers_death_watch(buffer: &mut Buffer) -> Outcome {
    watch(buffer, WATCH_FAULT.get(), ORDER_FAULT.get(), 1, TaskState::Killed { vector: 14, address: 0 })
}

fn exit_triggers_death_watch(buffer: &mut Buffer) -> Outcome {
    watch(buffer, WATCH_EXIT.get(), ORDER_EXIT.get(), 2, TaskState::Exited(5))
}

/// A #GP arrives on its own IST stack; the entry code moves the frame to
/// the kernel stack, and the task dies as for any fault.
fn a_general_protection_fault_on_its_own_stack_kills_only_the_task(buffer: &mut Buffer) -> Outcome {
    watch(buffer, WATCH_GP.get(), ORDER_GP.get(), 3, TaskState::Killed { vector: 13, address: 0 })
}

fn receive_times_out(buffer: &mut Buffer) -> Outcome {
    let endpoint = check_ok!(objects::create_endpoint(SCRATCH));
    check_eq!(endpoint.receive(buffer, ipc::NONBLOCK, 0).err(), Some(ErrorCode::WouldBlock));
    let before = userlib::syscall::now();
    check_eq!(endpoint.receive(buffer, 0, 5_000).err(), Some(ErrorCode::TimedOut));
    check!(userlib::syscall::now() - before >= 5_000);
    check_ok!(endpoint.delete());
    Ok(())
}

/// CMOS RTC registers (through ports 0x70 index, 0x71 data).
fn cmos(rtc: Cap<IoPorts>, register: u8, value: Option<u8>) -> Result<u8, ErrorCode> {
    rtc.write(0x70, 1, u32::from(register))?;
    match value {
        Some(value) => rtc.write(0x71, 1, u32::from(value)).map(|()| value),
        None => rtc.read(0x71, 1).map(|value| value as u8),
    }
}

fn ioapic_interrupt_arrives(_: &mut Buffer) -> Outcome {
    let (rtc, irq) = (RTC.get(), RTC_IRQ.get());
    let events = check_ok!(objects::create_notification(EVENTS));
    check_ok!(irq.bind(events, 0b100));
    let status_b = check_ok!(cmos(rtc, 0x0b, None));
    check_ok!(cmos(rtc, 0x0a, Some(0x26))); // 1024 Hz
    check_ok!(cmos(rtc, 0x0b, Some(status_b | 0x40))); // periodic interrupts on
    let mut seen = 0;
    for _ in 0..3 {
        let bits = events.wait(0, 500_000);
        check_eq!(bits, Ok(0b100));
        check_ok!(cmos(rtc, 0x0c, None)); // reading C lets the RTC fire again
        check_ok!(irq.acknowledge());
        seen += 1;
    }
    check_ok!(cmos(rtc, 0x0b, Some(status_b & !0x40)));
    check_eq!(seen, 3);
    check_eq!(rtc.read(0x72, 1).err(), Some(ErrorCode::PermissionDenied), "only the granted ports");
    check_ok!(events.delete());
    Ok(())
}

fn no_slot_reaches_what_was_not_given(_: &mut Buffer) -> Outcome {
    let granted = [
        ECHO.get().slot(),
        ECHO_REVERSE_ONLY.get().slot(),
        ORDER_FAULT.get().slot(),
        ORDER_EXIT.get().slot(),
        ORDER_GP.get().slot(),
    ];
    let mut slots = heapless::Vec::<u64, 160>::new();
    slots.extend(0..=140u64);
    slots.extend([255, 256, 1 << 20, u32::MAX.into(), u64::MAX - 1, u64::MAX]);
    for slot in slots {
        if granted.iter().any(|g| u64::from(*g) == slot) {
            continue;
        }
        let result = userlib::syscall::raw_number(capabilities::abi::Syscall::Call as u64, [slot, 0, 0, 0, 0, 0]);
        let expected = match Cap::<Endpoint>::at(slot as u32).info() {
            Ok(info) if slot < 128 && info.kind != Some(ObjectKind::Endpoint) => ErrorCode::WrongKind,
            _ => ErrorCode::InvalidCapability,
        };
        check_eq!(result.err(), Some(expected));
    }
    Ok(())
}
