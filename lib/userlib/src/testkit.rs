//! The in-system test kit: a test task runs named cases and reports each
//! result as a log line the host harness reads.
//!
//! The lines are, in order: `TEST PLAN <n>`, then per case `TEST PASS
//! <name>` or `TEST FAIL <name>`, and finally `TEST DONE`. A failing check
//! logs what it compared before the `FAIL` line. The host treats a case
//! without a result line as failed, so a task that dies mid-run cannot
//! make missing cases look passed.

use core::cell::RefCell;

use capabilities::accounting::Figures;
use embassy_sync::blocking_mutex::Mutex;
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;

use crate::cap::{Cap, Control};

/// What nearly every test task names: `use userlib::testkit::prelude::*;`.
pub mod prelude {
    pub use capabilities::ErrorCode;
    pub use capabilities::pci::Bdf;
    pub use capabilities::protocol::{Refusal, Refused};

    pub use super::{Failure, Outcome};
    pub use crate::cap::{Cap, Control, DeviceMemory, Endpoint, Frame, Interrupt, IoPorts, Notification, Task, own};
    pub use crate::ipc::Buffer;
    pub use crate::mmio::Mapping;
    pub use crate::{boot, check, check_eq, check_ok, objects, syscall, testkit};
}

/// A failed check: where it was.
#[derive(Clone, Copy, Debug)]
pub struct Failure {
    /// Source file of the check.
    pub file: &'static str,
    /// Line of the check.
    pub line: u32,
}

/// What a case returns.
pub type Outcome = Result<(), Failure>;

/// A named test case; it gets the task's IPC buffer.
pub struct Case {
    /// Name the host reports it under.
    pub name: &'static str,
    /// The case.
    pub run: fn(&mut crate::ipc::Buffer) -> Outcome,
}

/// The cases of a test task, each reported under its function's name:
/// `testkit::run(userlib::cases![first, module::second])`.
#[macro_export]
macro_rules! cases {
    (@ [$($done:tt)*]) => { &[$($done)*] };
    (@ [$($done:tt)*] $module:ident :: $case:ident $(, $($rest:tt)*)?) => {
        $crate::cases!(@ [$($done)* $crate::testkit::Case { name: stringify!($case), run: $module::$case },] $($($rest)*)?)
    };
    (@ [$($done:tt)*] $case:ident $(, $($rest:tt)*)?) => {
        $crate::cases!(@ [$($done)* $crate::testkit::Case { name: stringify!($case), run: $case },] $($($rest)*)?)
    };
    ($($cases:tt)+) => { $crate::cases!(@ [] $($cases)+) };
}

/// Fails the case unless `left == right`, logging both values (and an
/// optional note saying what the check means).
#[macro_export]
macro_rules! check_eq {
    ($left:expr, $right:expr $(, $note:literal)? $(,)?) => {{
        let (left, right) = (&$left, &$right);
        if left != right {
            $crate::testkit::report_mismatch(file!(), line!(), stringify!($left), stringify!($right));
            defmt::error!("  left:  {}", left);
            defmt::error!("  right: {}", right);
            $( defmt::error!("  ({=str})", $note); )?
            return Err($crate::testkit::Failure { file: file!(), line: line!() });
        }
    }};
}

/// Fails the case unless `condition` holds.
#[macro_export]
macro_rules! check {
    ($condition:expr $(, $note:literal)? $(,)?) => {{
        if !$condition {
            $crate::testkit::report_mismatch(file!(), line!(), stringify!($condition), "true");
            $( defmt::error!("  ({=str})", $note); )?
            return Err($crate::testkit::Failure { file: file!(), line: line!() });
        }
    }};
}

/// Fails the case here, logging `note` if given (a caller that logged
/// what went wrong itself gives none): for a reply of the wrong kind, in a
/// `let ... else`, so a later check never passes on a made-up value.
#[macro_export]
macro_rules! fail {
    () => {{
        return Err($crate::testkit::Failure { file: file!(), line: line!() });
    }};
    ($note:literal) => {{
        defmt::error!("check failed at {=str}:{=u32}: {=str}", file!(), line!(), $note);
        return Err($crate::testkit::Failure { file: file!(), line: line!() });
    }};
}

/// The value of a `Result` that must be `Ok`; an error fails the case,
/// logged with the expression and the error (and an optional note saying
/// what the call was for).
#[macro_export]
macro_rules! check_ok {
    ($result:expr $(, $note:literal)? $(,)?) => {
        match $result {
            Ok(value) => value,
            Err(error) => {
                defmt::error!(
                    "check failed at {=str}:{=u32}: {=str} returned {}",
                    file!(),
                    line!(),
                    stringify!($result),
                    error
                );
                $( defmt::error!("  ({=str})", $note); )?
                return Err($crate::testkit::Failure { file: file!(), line: line!() });
            }
        }
    };
}

/// The code of a server's refusal, its reason logged; `None` for any
/// other reply.
pub fn refusal<R: capabilities::protocol::Refusal>(reply: &R) -> Option<capabilities::ErrorCode> {
    let (code, reason) = reply.refusal()?;
    defmt::info!("  refused ({}): {=str}", code, reason);
    Some(code)
}

/// Whether every kernel accounting figure is what `expected` says (see
/// `capabilities::accounting`), read through `control` (ACCOUNT right);
/// each one that is not is logged with its value and the expected one.
pub fn figures_are(
    control: crate::cap::Cap<crate::cap::Control>,
    expected: &capabilities::accounting::Figures,
) -> bool {
    let found = match control.figures() {
        Ok(found) => found,
        Err(code) => {
            defmt::error!("  the kernel's figures cannot be read: {}", code);
            return false;
        }
    };
    let mut same = true;
    for difference in found.differences(expected) {
        defmt::error!("  {}: {=u64}, expected {=u64}", difference.figure, difference.found, difference.expected);
        same = false;
    }
    same
}

/// The kernel's figures one case takes for a later case to compare with.
pub struct Baseline(Mutex<CriticalSectionRawMutex, RefCell<Option<Figures>>>);

impl Baseline {
    /// Nothing taken yet.
    pub const fn new() -> Self {
        Self(Mutex::new(RefCell::new(None)))
    }

    /// Takes the figures now, through `control` (ACCOUNT right); false
    /// (logged) if they cannot be read.
    pub fn take(&self, control: Cap<Control>) -> bool {
        let figures = control.figures();
        if let Err(code) = figures {
            defmt::error!("  the kernel's figures cannot be read: {}", code);
        }
        let taken = figures.is_ok();
        self.0.lock(|saved| *saved.borrow_mut() = figures.ok());
        taken
    }

    /// The figures taken, if any.
    pub fn get(&self) -> Option<Figures> {
        self.0.lock(|saved| saved.borrow().clone())
    }
}

impl Default for Baseline {
    fn default() -> Self {
        Self::new()
    }
}

/// Logs the header of a failed comparison.
pub fn report_mismatch(file: &str, line: u32, left: &str, right: &str) {
    defmt::error!("check failed at {=str}:{=u32}: {=str} == {=str}", file, line, left, right);
}

/// Reports that the task could not set up what its cases need (`what`
/// says which objects, and why) as a failed case named `setup`; returns
/// the exit code for `main`.
pub fn setup_failed(what: &str) -> u64 {
    defmt::error!("TEST FAIL setup: {=str}", what);
    1
}

/// Runs every case in order and returns the number that failed.
pub fn run(cases: &[Case]) -> u64 {
    let Some(mut buffer) = crate::ipc::Buffer::take() else {
        defmt::info!("TEST PLAN {=usize}", cases.len());
        setup_failed("the IPC buffer was already taken");
        return cases.len() as u64;
    };
    run_with(&mut buffer, cases)
}

/// [`run`] with the IPC buffer the caller took, for a task that goes on
/// using it once its cases are done (a driver that serves after them).
pub fn run_with(buffer: &mut crate::ipc::Buffer, cases: &[Case]) -> u64 {
    defmt::info!("TEST PLAN {=usize}", cases.len());
    let mut failed = 0;
    for case in cases {
        match (case.run)(buffer) {
            Ok(()) => defmt::info!("TEST PASS {=str}", case.name),
            Err(failure) => {
                failed += 1;
                defmt::error!("TEST FAIL {=str} at {=str}:{=u32}", case.name, failure.file, failure.line);
            }
        }
    }
    defmt::info!("TEST DONE");
    failed
}
