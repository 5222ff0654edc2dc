//! The policy parser and checker of the build tool, on arbitrary text.
//!
//! Every policy it accepts must resolve each name to an object that
//! exists; every refusal must name a line of the file.

use std::path::Path;

use xtask::policy::testing::BINARIES;
use xtask::policy::{self, BootObject, MAX_PRIORITY, MAX_STACK_PAGES};

/// `policy`: the input as UTF-8 text (invalid sequences replaced).
pub fn policy(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let binaries: Vec<String> = BINARIES.iter().map(|name| name.to_string()).collect();
    match policy::parse(Path::new("fuzz.toml"), &text, &binaries) {
        Ok(checked) => {
            let tasks = checked.tasks.len();
            assert!(tasks > 0, "a policy without tasks was accepted");
            assert!(checked.init.is_none_or(|init| init < tasks));
            for endpoint in &checked.endpoints {
                assert!(endpoint.server < tasks, "endpoint {} names no task", endpoint.name);
            }
            for task in &checked.tasks {
                assert!(BINARIES.contains(&task.binary.as_str()), "unknown binary {} accepted", task.binary);
                assert!(task.priority <= MAX_PRIORITY);
                assert!(task.stack_pages <= MAX_STACK_PAGES);
                for grant in &task.caps {
                    let exists = match grant.object {
                        BootObject::Endpoint(n) => usize::from(n) < checked.endpoints.len(),
                        BootObject::Notification(n) => usize::from(n) < checked.notifications.len(),
                        BootObject::Task(n) => usize::from(n) < tasks,
                        _ => true,
                    };
                    assert!(exists, "grant {} of task {} names no object", grant.name, task.name);
                    assert!(grant.line >= 1);
                }
            }
        }
        Err(problems) => {
            assert!(!problems.problems.is_empty(), "a refusal without a problem");
            let lines = text.lines().count().max(1);
            for problem in &problems.problems {
                assert!(
                    (1..=lines + 1).contains(&problem.line),
                    "problem `{}` at line {} of a {lines}-line file",
                    problem.message,
                    problem.line
                );
            }
            let _ = problems.to_string();
        }
    }
}
