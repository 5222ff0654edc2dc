//! `cargo xtask new driver NAME`: a driver crate, its policy and its scenario, ready to boot.
//!
//! The files come from `build/templates/driver/`, with `{{name}}` replaced;
//! `docs/writing-a-driver.md` starts from exactly what this writes (a test
//! holds the two together) and grows it into the edu tutorial driver.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// Longest driver name: it is a crate, a task and a scenario name.
const NAME_MAX: usize = 32;

/// One file the command writes, relative to the workspace root.
#[derive(Debug, PartialEq, Eq)]
pub struct NewFile {
    /// Where it goes.
    pub path: PathBuf,
    /// What it holds.
    pub text: String,
}

/// The scenario file the command appends to.
pub const SCENARIOS: &str = "qemu/scenarios.toml";

fn fill(template: &str, name: &str) -> String {
    template.replace("{{name}}", name)
}

/// Checks `name`: lowercase letters, digits and hyphens, a letter first,
/// no hyphen last, at most [`NAME_MAX`] bytes.
pub fn check_name(name: &str) -> Result<()> {
    let shaped = name.len() <= NAME_MAX
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !shaped {
        bail!(
            "driver name `{name}`: use lowercase letters, digits and hyphens, a letter first, at most {NAME_MAX} bytes (it names a crate, a task and a scenario)"
        );
    }
    Ok(())
}

/// The files of a new driver `name`: its crate and its policy.
pub fn driver_files(name: &str) -> Vec<NewFile> {
    let crate_dir = Path::new("servers/drivers").join(name);
    vec![
        NewFile {
            path: crate_dir.join("Cargo.toml"),
            text: fill(include_str!("../templates/driver/Cargo.toml.in"), name),
        },
        NewFile { path: crate_dir.join("build.rs"), text: fill(include_str!("../templates/driver/build.rs.in"), name) },
        NewFile {
            path: crate_dir.join("src/main.rs"),
            text: fill(include_str!("../templates/driver/main.rs.in"), name),
        },
        NewFile {
            path: Path::new("qemu/policies").join(format!("{name}.toml")),
            text: fill(include_str!("../templates/driver/policy.toml.in"), name),
        },
    ]
}

/// The scenario entry a new driver `name` appends to [`SCENARIOS`].
pub fn scenario_entry(name: &str) -> String {
    fill(include_str!("../templates/driver/scenario.toml.in"), name)
}

/// Writes driver `name` into the workspace at `root`; refuses, changing
/// nothing, if any of its files or its scenario exists.
pub fn new_driver(root: &Path, name: &str) -> Result<()> {
    check_name(name)?;
    let files = driver_files(name);
    if let Some(taken) = files.iter().find(|file| root.join(&file.path).exists()) {
        bail!("{} already exists: driver `{name}` is taken", taken.path.display());
    }
    let scenarios_path = root.join(SCENARIOS);
    let scenarios = std::fs::read_to_string(&scenarios_path).with_context(|| format!("cannot read {SCENARIOS}"))?;
    if scenarios.contains(&format!("name = \"{name}\"\n")) {
        bail!("{SCENARIOS} already has a scenario or check named `{name}`");
    }
    for file in &files {
        let path = root.join(&file.path);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        std::fs::write(&path, &file.text).with_context(|| format!("cannot write {}", path.display()))?;
        println!("wrote {}", file.path.display());
    }
    std::fs::write(&scenarios_path, scenarios + &scenario_entry(name))
        .with_context(|| format!("cannot write {SCENARIOS}"))?;
    println!("added scenario `{name}` to {SCENARIOS}");
    println!("next: cargo xtask test --no-host --scenario {name}   (docs/writing-a-driver.md goes on from here)");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in ["edu-tutorial", "nvme", "e1000e-2"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Nvme", "1nvme", "nvme-", "nv_me", "a/b", &"x".repeat(33)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_new_driver_is_written_once_and_refused_the_second_time() {
        let root = std::env::temp_dir().join(format!("xtask-new-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("qemu")).unwrap();
        std::fs::write(root.join(SCENARIOS), "# scenarios\n").unwrap();
        new_driver(&root, "my-driver").expect("written");
        let main = std::fs::read_to_string(root.join("servers/drivers/my-driver/src/main.rs")).unwrap();
        assert!(main.contains("\"my-driver holds") || main.contains("my-driver holds"), "{main}");
        assert!(!main.contains("{{name}}"));
        let scenarios = std::fs::read_to_string(root.join(SCENARIOS)).unwrap();
        assert!(scenarios.starts_with("# scenarios\n") && scenarios.contains("name = \"my-driver\"\n"));
        let again = new_driver(&root, "my-driver").unwrap_err().to_string();
        assert!(again.contains("already exists"), "{again}");
        std::fs::remove_dir_all(&root).unwrap();
    }
}

#[cfg(test)]
mod tutorial {
    use super::*;

    /// The tutorial's marked code blocks: (`new` or `final`, path, text).
    fn blocks(doc: &str) -> Vec<(&str, &str, String)> {
        let mut found = Vec::new();
        let mut rest = doc;
        while let Some(at) = rest.find("<!-- ") {
            rest = &rest[at + 5..];
            let (marker, after) = rest.split_once(" -->\n```").expect("a marker is followed by a code block");
            let (kind, path) = marker.split_once(": ").expect("`new: PATH` or `final: PATH`");
            let body = after.split_once('\n').expect("the block's language line").1;
            let (text, after) = body.split_once("```\n").expect("the block ends");
            found.push((kind, path, text.to_owned()));
            rest = after;
        }
        found
    }

    #[test]
    fn the_tutorial_is_what_new_driver_writes_and_what_the_tree_holds() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace");
        let doc = std::fs::read_to_string(root.join("docs/writing-a-driver.md")).expect("the tutorial");
        let written: Vec<(String, String)> = driver_files("edu-tutorial")
            .into_iter()
            .map(|file| (file.path.display().to_string(), file.text))
            .chain([(SCENARIOS.to_owned(), scenario_entry("edu-tutorial"))])
            .collect();
        let blocks = blocks(&doc);
        assert!(blocks.len() >= 10, "the tutorial's marked blocks: {}", blocks.len());
        for (kind, path, text) in &blocks {
            let source = match *kind {
                "new" => written.iter().find(|(written, _)| written == path).map(|(_, text)| text.clone()),
                "final" => std::fs::read_to_string(root.join(path)).ok(),
                other => panic!("unknown marker `{other}` for {path}"),
            };
            let source = source.unwrap_or_else(|| panic!("{kind}: {path} is no file it names"));
            assert!(
                source.contains(text.as_str()),
                "docs/writing-a-driver.md: the `{kind}` block of {path} is not in it:\n{text}"
            );
        }
        // The skeleton is shown whole, and the crate in the tree is the one the command writes.
        let skeleton = written.iter().find(|(path, _)| path.ends_with("src/main.rs")).expect("main.rs");
        assert!(blocks.iter().any(|(kind, path, text)| *kind == "new" && path == &skeleton.0 && text == &skeleton.1));
        for (path, text) in written.iter().filter(|(path, _)| !path.ends_with("main.rs") && path != SCENARIOS) {
            assert_eq!(&std::fs::read_to_string(root.join(path)).expect("in the tree"), text, "{path}");
        }
    }
}
