//! The mutant list agrees with the switches in the sources, and no normal build can turn one on.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::{MUTANTS, find_check};
use crate::groups::oracle;
use crate::workspace;

/// Every file under the workspace root whose name ends in `suffix`, outside
/// build outputs, hidden folders and fuzz inputs.
fn files(root: &Path, suffix: &str) -> Vec<PathBuf> {
    let skipped = |path: &Path| {
        let name = path.file_name().and_then(|name| name.to_str()).unwrap_or_default();
        name.starts_with('.') || name == "target" || path.ends_with("fuzz/corpus") || path.ends_with("fuzz/regressions")
    };
    let mut found = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("the workspace is readable").flatten() {
            let path = entry.path();
            if path.is_dir() {
                if !skipped(&path) {
                    pending.push(path);
                }
            } else if path.to_string_lossy().ends_with(suffix) {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// A manifest's package name and parsed text.
fn manifests(root: &Path) -> Vec<(PathBuf, toml::Table)> {
    files(root, "Cargo.toml")
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("a readable manifest");
            let table = toml::from_str(&text).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
            (path, table)
        })
        .collect()
}

fn package_name(manifest: &toml::Table) -> Option<&str> {
    manifest.get("package")?.get("name")?.as_str()
}

fn features(manifest: &toml::Table) -> Vec<(String, Vec<String>)> {
    let Some(table) = manifest.get("features").and_then(|features| features.as_table()) else { return Vec::new() };
    table
        .iter()
        .map(|(name, enables)| {
            let list = enables.as_array().map(|list| list.iter().filter_map(|v| v.as_str().map(str::to_owned)));
            (name.clone(), list.into_iter().flatten().collect())
        })
        .collect()
}

/// The mutant features the sources under `dir` test with `cfg!`.
fn switches_under(dir: &Path) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for path in files(dir, ".rs") {
        let text = std::fs::read_to_string(&path).expect("a readable source");
        for (at, _) in text.match_indices("feature = \"mutant-") {
            let rest = &text[at + "feature = \"".len()..];
            names.insert(rest[..rest.find('"').unwrap_or(rest.len())].to_owned());
        }
    }
    names
}

#[test]
fn every_mutant_has_its_feature_and_switch_and_every_switch_is_a_mutant() {
    let root = workspace::root();
    let manifests = manifests(&root);
    let mut listed = BTreeSet::new();
    for mutant in MUTANTS {
        let feature = mutant.feature();
        assert!(listed.insert(feature.clone()), "{} is listed twice", mutant.name);
        let (path, manifest) = manifests
            .iter()
            .find(|(_, manifest)| package_name(manifest) == Some(mutant.server))
            .unwrap_or_else(|| panic!("mutant {}: no crate {}", mutant.name, mutant.server));
        let Some((_, forwards)) = features(manifest).into_iter().find(|(name, _)| *name == feature) else {
            panic!("mutant {}: {} has no feature {feature}", mutant.name, mutant.server);
        };
        // The switch sits in the server's sources, or in those of the one
        // dependency the feature is forwarded to, under the same name.
        let mut dirs = vec![path.parent().expect("a manifest's folder").join("src")];
        for forward in &forwards {
            let (dependency, forwarded) = forward.split_once('/').expect("a feature forwarded as crate/feature");
            assert_eq!(forwarded, feature, "mutant {}: forwarded under another name", mutant.name);
            let (dep_path, _) = manifests
                .iter()
                .find(|(_, manifest)| package_name(manifest) == Some(dependency))
                .unwrap_or_else(|| panic!("mutant {}: no crate {dependency}", mutant.name));
            dirs.push(dep_path.parent().expect("a manifest's folder").join("src"));
        }
        let switched = dirs.iter().any(|dir| switches_under(dir).contains(&feature));
        assert!(switched, "mutant {}: no source of {} tests `feature = \"{feature}\"`", mutant.name, mutant.server);
    }
    for (path, manifest) in &manifests {
        for (name, _) in features(manifest) {
            assert!(
                !name.starts_with("mutant-") || listed.contains(&name),
                "{}: feature {name} is no mutant of build/src/mutate.rs",
                path.display()
            );
        }
    }
    let unlisted: Vec<String> = switches_under(&root).difference(&listed).cloned().collect();
    assert!(unlisted.is_empty(), "switches no mutant turns on: {unlisted:?}");
}

/// Whether a dependency declaration turns a mutant feature on.
fn enables_a_mutant(declaration: &toml::Value) -> bool {
    let features = declaration.get("features").and_then(|features| features.as_array());
    features.is_some_and(|list| list.iter().any(|f| f.as_str().is_some_and(|f| f.contains("mutant-"))))
}

#[test]
fn no_normal_build_can_turn_a_mutant_on() {
    for (path, manifest) in manifests(&workspace::root()) {
        for (name, enables) in features(&manifest) {
            let mutants: Vec<&String> = enables.iter().filter(|enabled| enabled.contains("mutant-")).collect();
            assert!(
                mutants.is_empty() || name.starts_with("mutant-"),
                "{}: feature {name} turns on {mutants:?}",
                path.display()
            );
        }
        let mut tables: Vec<&toml::Table> = vec![&manifest];
        if let Some(workspace) = manifest.get("workspace").and_then(|w| w.as_table()) {
            tables.push(workspace);
        }
        if let Some(targets) = manifest.get("target").and_then(|t| t.as_table()) {
            tables.extend(targets.values().filter_map(|target| target.as_table()));
        }
        for table in tables {
            for section in ["dependencies", "dev-dependencies", "build-dependencies"] {
                let Some(dependencies) = table.get(section).and_then(|d| d.as_table()) else { continue };
                for (dependency, declaration) in dependencies {
                    assert!(
                        !enables_a_mutant(declaration),
                        "{}: [{section}] {dependency} turns a mutant on",
                        path.display()
                    );
                }
            }
        }
    }
}

#[test]
fn every_mutant_runs_checks_that_exist() {
    let root = workspace::root();
    let scenarios = qemu::scenario::load(&root).expect("the scenario list loads");
    let recordings = oracle::load_all(&root).expect("the recorded topologies load");
    for mutant in MUTANTS {
        assert!(!mutant.checks.is_empty(), "mutant {} runs nothing", mutant.name);
        for check in mutant.checks {
            if let Err(error) = find_check(check, &scenarios, &recordings) {
                panic!("mutant {}: {error}", mutant.name);
            }
        }
    }
}
