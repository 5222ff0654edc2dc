//! Backtraces in the log, turned into functions, files and lines.
//!
//! Three writers log a list of code addresses, each in a line of its own
//! (`capabilities::backtrace` walks the chains):
//!
//! * the kernel, when it kills a task: `task NAME backtrace: [rip, ...]`,
//!   where the first address is the faulting instruction;
//! * a task's panic handler: `panic backtrace: [...]`;
//! * the kernel's panic handler, in plain text: `!!! backtrace: [...]`,
//!   after the panic's message, which names the instruction (`at rip
//!   0x...`) when the panic is an exception in the kernel.
//!
//! Every address after the faulting instruction is a return address, so
//! it is looked up one byte back, inside the call. The ELF a list belongs
//! to is read with its debug information through `addr2line` (the ELFs
//! keep line tables and frame pointers), and each address becomes a line
//! of its own under the trace: `#1 0x400123 task::function at file.rs:12`,
//! one per inlined call as well.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The most a trace line may hold: [`capabilities::backtrace::MAX_FRAMES`]
/// return addresses, and a faulting instruction before them.
const MAX_ADDRESSES: usize = capabilities::backtrace::MAX_FRAMES + 1;

/// Whose code a trace's addresses are in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owner {
    /// The kernel's.
    Kernel,
    /// The task of this name's.
    Task(String),
}

/// A list of code addresses found in a log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trace {
    /// Whose addresses they are.
    pub owner: Owner,
    /// Whether the first address is a faulting instruction (looked up as
    /// it is) rather than a return address (looked up one byte back).
    pub starts_at_fault: bool,
    /// The addresses, innermost first.
    pub addresses: Vec<u64>,
}

/// The trace `text`, written by `source` (`kernel`, `console` or a task's
/// name), carries, if it is one.
pub fn parse(source: &str, text: &str) -> Option<Trace> {
    let (owner, starts_at_fault, list) = if source == "kernel" {
        let (task, list) = text.strip_prefix("task ")?.split_once(" backtrace: ")?;
        (Owner::Task(task.to_owned()), true, list)
    } else if source == "console" {
        let text = text.trim_start();
        if let Some(rest) = text.strip_prefix("!!! KERNEL PANIC: ") {
            // An exception in the kernel names the instruction.
            let (_, after) = rest.split_once(" at rip 0x")?;
            let digits = after.split(|c: char| !c.is_ascii_hexdigit()).next()?;
            let rip = u64::from_str_radix(digits, 16).ok()?;
            return Some(Trace { owner: Owner::Kernel, starts_at_fault: true, addresses: vec![rip] });
        }
        (Owner::Kernel, false, text.strip_prefix("!!! backtrace: ")?)
    } else {
        (Owner::Task(source.to_owned()), false, text.strip_prefix("panic backtrace: ")?)
    };
    let (inside, _) = list.strip_prefix('[')?.split_once(']')?;
    let addresses = inside
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| u64::from_str_radix(item.strip_prefix("0x")?, 16).ok())
        .collect::<Option<Vec<u64>>>()?;
    (!addresses.is_empty() && addresses.len() <= MAX_ADDRESSES).then_some(Trace { owner, starts_at_fault, addresses })
}

/// One function a code address is in: a real frame, or a call inlined
/// into the one after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Place {
    /// The function, demangled, or `None` if the ELF does not know it.
    pub function: Option<String>,
    /// `file:line`, or `None` if the line tables do not cover it.
    pub location: Option<String>,
}

/// Lays out the places of each address of a trace (innermost first, each
/// address's inlined calls first) as indented lines.
pub fn layout(addresses: &[u64], places: &[Vec<Place>]) -> Vec<String> {
    let mut lines = Vec::new();
    for (index, (address, places)) in addresses.iter().zip(places).enumerate() {
        let head = format!("  #{index:<2} {address:#010x}");
        let blank = " ".repeat(head.len());
        if places.is_empty() {
            lines.push(format!("{head} ??"));
        }
        for (depth, place) in places.iter().enumerate() {
            let function = place.function.as_deref().unwrap_or("??");
            let location = place.location.as_deref().map(|at| format!(" at {at}")).unwrap_or_default();
            let inlined = if depth + 1 < places.len() { " (inlined)" } else { "" };
            lines.push(format!("{} {function}{location}{inlined}", if depth == 0 { &head } else { &blank }));
        }
    }
    lines
}

/// The ELFs of the kernel and every task, read when a trace first needs
/// one.
#[derive(Default)]
pub struct Symbols {
    elves: HashMap<String, PathBuf>,
    /// A path prefix left off source files (the workspace root).
    root: Option<PathBuf>,
}

impl Symbols {
    /// Source paths are shown relative to `root`, when under it.
    pub fn new(root: Option<PathBuf>) -> Self {
        Self { elves: HashMap::new(), root }
    }

    /// `owner`'s ELF is at `path` (the kernel's under `kernel`).
    pub fn add(&mut self, owner: &str, path: &Path) {
        self.elves.insert(owner.to_owned(), path.to_owned());
    }

    /// A reader of these ELFs for one console stream.
    pub fn reader(&self) -> Reader<'_> {
        Reader { symbols: self, loaded: HashMap::new() }
    }
}

/// Looks traces up, loading each ELF's debug information once.
pub struct Reader<'s> {
    symbols: &'s Symbols,
    /// `None` for an ELF that could not be loaded (said once).
    loaded: HashMap<String, Option<addr2line::Loader>>,
}

impl Reader<'_> {
    /// The lines that explain `trace`, or one line saying why there are none.
    pub fn explain(&mut self, trace: &Trace) -> Vec<String> {
        let owner = match &trace.owner {
            Owner::Kernel => "kernel",
            Owner::Task(name) => name.as_str(),
        };
        let Some(path) = self.symbols.elves.get(owner) else {
            return vec![format!("  (no ELF known for `{owner}`)")];
        };
        let loader = self.loaded.entry(owner.to_owned()).or_insert_with(|| addr2line::Loader::new(path).ok()).as_ref();
        let Some(loader) = loader else {
            return vec![format!("  (the debug information of {} cannot be read)", path.display())];
        };
        let root = self.symbols.root.as_deref().and_then(Path::to_str);
        let places: Vec<Vec<Place>> = trace
            .addresses
            .iter()
            .enumerate()
            .map(|(index, &address)| {
                let exact = index == 0 && trace.starts_at_fault;
                places(loader, if exact { address } else { address.saturating_sub(1) }, root)
            })
            .collect();
        layout(&trace.addresses, &places)
    }
}

/// The functions `probe` is in, innermost (inlined) first.
fn places(loader: &addr2line::Loader, probe: u64, root: Option<&str>) -> Vec<Place> {
    let mut places = Vec::new();
    if let Ok(mut frames) = loader.find_frames(probe) {
        while let Ok(Some(frame)) = frames.next() {
            let function = frame.function.as_ref().and_then(|name| name.demangle().ok()).map(|name| name.into());
            let location =
                frame.location.as_ref().and_then(|at| Some(format!("{}:{}", shorten(at.file?, root), at.line?)));
            places.push(Place { function, location });
        }
    }
    // The line tables name a function without its path (`main`); the
    // symbol table names the outermost one in full (`faulter::main`).
    let symbol = loader.find_symbol(probe).map(|name| addr2line::demangle_auto(name.into(), None).into_owned());
    match places.last_mut() {
        Some(place) if symbol.is_some() => place.function = symbol,
        Some(_) => {}
        None if symbol.is_some() => places.push(Place { function: symbol, location: None }),
        None => {}
    }
    places
}

/// `file` relative to the workspace root, and the toolchain's sources
/// from `library/` on.
fn shorten<'a>(file: &'a str, root: Option<&str>) -> &'a str {
    if let Some(root) = root
        && let Some(inside) = file.strip_prefix(root)
    {
        return inside.trim_start_matches('/');
    }
    match file.strip_prefix("/rustc/").and_then(|rest| rest.split_once('/')) {
        Some((_, inside)) => inside,
        None => file,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_kinds_of_trace_line_are_recognised() {
        let fault = parse("kernel", "task faulter backtrace: [0x40003d, 0x4000a1]").expect("a trace");
        assert_eq!(fault.owner, Owner::Task("faulter".into()));
        assert!(fault.starts_at_fault);
        assert_eq!(fault.addresses, [0x40003d, 0x4000a1]);
        let panic = parse("panicker", "panic backtrace: [0x400100] (the frame chain leaves the stack at 0x8)")
            .expect("a trace with a note");
        assert_eq!(
            (panic.owner, panic.starts_at_fault, panic.addresses),
            (Owner::Task("panicker".into()), false, vec![0x400100])
        );
        let kernel = parse("console", "!!! backtrace: [0xffffffff80001234, 0xffffffff80005678]").expect("a trace");
        assert_eq!(kernel.owner, Owner::Kernel);
        assert_eq!(kernel.addresses.len(), 2);
        let exception =
            "!!! KERNEL PANIC: page fault in the kernel at rip 0xffffffff80012345, address 0x8, error code 0x0";
        let exception = parse("console", exception).expect("the instruction");
        assert_eq!((exception.starts_at_fault, exception.addresses), (true, vec![0xffff_ffff_8001_2345]));
        assert_eq!(parse("console", "!!! KERNEL PANIC: out of frames at kernel/src/frames.rs:9"), None);
    }

    #[test]
    fn other_lines_and_malformed_lists_are_not_traces() {
        assert_eq!(parse("kernel", "task faulter killed: page fault (read) at address 0x0, rip 0x40003d"), None);
        assert_eq!(parse("selftest", "task faulter backtrace: [0x1]"), None, "only the kernel names a task");
        assert_eq!(parse("kernel", "panic backtrace: [0x1]"), None);
        assert_eq!(parse("panicker", "panic backtrace: []"), None);
        assert_eq!(parse("panicker", "panic backtrace: [0x12, zz]"), None);
        assert_eq!(parse("panicker", "panic backtrace: [0x12"), None);
        assert_eq!(parse("panicker", "panic backtrace: [18]"), None, "addresses are hexadecimal");
        let long = format!("panic backtrace: [{}]", vec!["0x1"; MAX_ADDRESSES + 1].join(", "));
        assert_eq!(parse("panicker", &long), None);
    }

    #[test]
    fn places_are_laid_out_one_per_line_with_inlined_calls_marked() {
        let place = |function: Option<&str>, location: Option<&str>| Place {
            function: function.map(str::to_owned),
            location: location.map(str::to_owned),
        };
        let lines = layout(
            &[0x40003d, 0x4000a1, 0x4000f0],
            &[
                vec![
                    place(Some("core::ptr::read"), Some("library/core/src/ptr/mod.rs:9")),
                    place(Some("faulter::main"), Some("main.rs:15")),
                ],
                vec![place(Some("userlib::start::userlib_start"), None)],
                vec![],
            ],
        );
        assert_eq!(
            lines,
            [
                "  #0  0x0040003d core::ptr::read at library/core/src/ptr/mod.rs:9 (inlined)",
                "                 faulter::main at main.rs:15",
                "  #1  0x004000a1 userlib::start::userlib_start",
                "  #2  0x004000f0 ??",
            ]
        );
    }

    #[test]
    fn an_unknown_owner_is_said_not_guessed() {
        let symbols = Symbols::new(None);
        let trace = parse("kernel", "task ghost backtrace: [0x400000]").expect("a trace");
        assert_eq!(symbols.reader().explain(&trace), ["  (no ELF known for `ghost`)"]);
    }
}
