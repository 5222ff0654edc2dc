//! The policy file: one TOML file that describes the whole system.
//!
//! It names every task, the binary it runs, its priority and its memory.
//! Parsing refuses unknown fields; checking reports every problem at once,
//! each with the file and line and the names involved. `docs/policy.md`
//! is the reference for the format.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use capabilities::manifest::{MAX_TASKS, NAME_MAX};
use indexmap::IndexMap;
use serde::Deserialize;
use toml::Spanned;

/// The policy format version this tool reads.
pub const FORMAT_VERSION: u32 = 1;

/// Highest task priority (as the kernel defines it).
pub const MAX_PRIORITY: u8 = 31;

/// Largest stack, in pages (as the kernel defines it).
pub const MAX_STACK_PAGES: u16 = 256;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawPolicy {
    version: Spanned<u32>,
    description: String,
    #[serde(default)]
    init: Option<Spanned<String>>,
    tasks: IndexMap<String, Spanned<RawTask>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawTask {
    binary: Spanned<String>,
    priority: Spanned<u8>,
    memory_pages: Spanned<u32>,
    stack_pages: Spanned<u16>,
}

/// A checked task declaration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Task {
    /// Name in logs and reports.
    pub name: String,
    /// Bare-metal crate whose ELF it runs.
    pub binary: String,
    /// Scheduling priority (larger runs first).
    pub priority: u8,
    /// Pages of memory it may use in all.
    pub memory_pages: u32,
    /// Stack pages.
    pub stack_pages: u16,
}

/// A checked policy.
#[derive(Clone, Debug)]
pub struct Policy {
    /// What the system is.
    pub description: String,
    /// Tasks in declaration order (their manifest order).
    pub tasks: Vec<Task>,
    /// Index of the task whose exit ends the system.
    pub init: Option<usize>,
}

/// One thing wrong with a policy, located in its file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong, naming the items involved.
    pub message: String,
}

/// Every problem found in one policy file.
#[derive(Debug)]
pub struct Problems {
    /// The file.
    pub path: PathBuf,
    /// The problems, in file order.
    pub problems: Vec<Problem>,
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, problem) in self.problems.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "{}:{}: {}", self.path.display(), problem.line, problem.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

fn line_of(text: &str, span: Range<usize>) -> usize {
    text[..span.start.min(text.len())].matches('\n').count() + 1
}

/// Reads and checks the policy at `path`; `binaries` are the task crates
/// that exist.
pub fn load(path: &Path, binaries: &[String]) -> Result<Policy> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read policy {}", path.display()))?;
    parse(path, &text, binaries).map_err(anyhow::Error::from)
}

/// Parses and checks policy `text` (read from `path`).
pub fn parse(path: &Path, text: &str, binaries: &[String]) -> Result<Policy, Problems> {
    let fail = |problems| Problems { path: path.to_path_buf(), problems };
    let raw: RawPolicy = toml::from_str(text).map_err(|error| {
        let line = error.span().map_or(1, |span| line_of(text, span));
        fail(vec![Problem { line, message: error.message().trim().to_owned() }])
    })?;
    let mut problems = Vec::new();
    let mut problem =
        |span: Range<usize>, message: String| problems.push(Problem { line: line_of(text, span), message });

    if *raw.version.get_ref() != FORMAT_VERSION {
        problem(
            raw.version.span(),
            format!(
                "policy format version {} is not supported (this tool reads version {FORMAT_VERSION})",
                raw.version.get_ref()
            ),
        );
    }
    if raw.tasks.len() > MAX_TASKS {
        problem(0..0, format!("{} tasks declared; the kernel holds at most {MAX_TASKS}", raw.tasks.len()));
    }
    let mut tasks = Vec::new();
    for (name, spanned) in &raw.tasks {
        let span = spanned.span();
        let task = spanned.get_ref();
        if name.is_empty() || name.len() > NAME_MAX {
            problem(span.clone(), format!("task name `{name}` must be 1 to {NAME_MAX} bytes long"));
        }
        if !binaries.contains(task.binary.get_ref()) {
            problem(
                task.binary.span(),
                format!(
                    "task `{name}`: binary `{}` is not a task crate of this workspace (known: {})",
                    task.binary.get_ref(),
                    binaries.join(", ")
                ),
            );
        }
        if *task.priority.get_ref() > MAX_PRIORITY {
            problem(
                task.priority.span(),
                format!("task `{name}`: priority {} is above the highest, {MAX_PRIORITY}", task.priority.get_ref()),
            );
        }
        let stack = *task.stack_pages.get_ref();
        if stack == 0 || stack > MAX_STACK_PAGES {
            problem(
                task.stack_pages.span(),
                format!("task `{name}`: stack-pages must be 1 to {MAX_STACK_PAGES}, not {stack}"),
            );
        }
        tasks.push(Task {
            name: name.clone(),
            binary: task.binary.get_ref().clone(),
            priority: *task.priority.get_ref(),
            memory_pages: *task.memory_pages.get_ref(),
            stack_pages: stack,
        });
    }
    let init = match &raw.init {
        None => None,
        Some(init) => {
            let index = tasks.iter().position(|task| &task.name == init.get_ref());
            if index.is_none() {
                problem(init.span(), format!("init task `{}` is not declared under [tasks]", init.get_ref()));
            }
            index
        }
    };
    if !problems.is_empty() {
        return Err(fail(problems));
    }
    Ok(Policy { description: raw.description, tasks, init })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binaries() -> Vec<String> {
        vec!["hello".into(), "faulter".into()]
    }

    fn check(text: &str) -> Result<Policy, Problems> {
        parse(Path::new("test.toml"), text, &binaries())
    }

    const GOOD: &str = r#"
version = 1
description = "two tasks"
init = "b"

[tasks.a]
binary = "hello"
priority = 1
memory-pages = 64
stack-pages = 4

[tasks.b]
binary = "faulter"
priority = 3
memory-pages = 32
stack-pages = 2
"#;

    #[test]
    fn a_good_policy_keeps_declaration_order() {
        let policy = check(GOOD).expect("valid");
        let names: Vec<_> = policy.tasks.iter().map(|task| task.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(policy.init, Some(1));
        assert_eq!(policy.tasks[1].memory_pages, 32);
    }

    #[test]
    fn every_problem_is_reported_with_its_line() {
        let bad = GOOD
            .replace("version = 1", "version = 7")
            .replace("binary = \"hello\"", "binary = \"nosuch\"")
            .replace("priority = 3", "priority = 99")
            .replace("stack-pages = 2", "stack-pages = 0")
            .replace("init = \"b\"", "init = \"zed\"");
        let problems = check(&bad).expect_err("invalid").to_string();
        let expected = [
            "test.toml:2: policy format version 7 is not supported",
            "test.toml:4: init task `zed` is not declared",
            "test.toml:7: task `a`: binary `nosuch` is not a task crate of this workspace (known: hello, faulter)",
            "test.toml:14: task `b`: priority 99 is above the highest, 31",
            "test.toml:16: task `b`: stack-pages must be 1 to 256, not 0",
        ];
        for message in expected {
            assert!(problems.contains(message), "missing `{message}` in:\n{problems}");
        }
        assert_eq!(problems.lines().count(), expected.len());
    }

    #[test]
    fn unknown_fields_and_syntax_errors_name_the_line() {
        let unknown = GOOD.replace("stack-pages = 4", "stack-pages = 4\ncolour = \"red\"");
        let problems = check(&unknown).expect_err("unknown field").to_string();
        assert!(problems.starts_with("test.toml:11: unknown field `colour`"), "{problems}");
        let broken = check("version = 1\ndescription = \"x\"\n[tasks.a\n").expect_err("syntax").to_string();
        assert!(broken.starts_with("test.toml:3:"), "{broken}");
    }

    #[test]
    fn duplicate_tasks_are_refused_by_toml_itself() {
        let twice = format!("{GOOD}\n[tasks.a]\nbinary = \"hello\"\npriority = 1\nmemory-pages = 1\nstack-pages = 1\n");
        let problems = check(&twice).expect_err("duplicate").to_string();
        assert!(problems.contains("duplicate") || problems.contains("defined"), "{problems}");
    }
}
