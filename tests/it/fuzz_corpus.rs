//! The fuzz corpora and the inputs that once crashed a target, replayed in
//! the normal test run: every file of `tests/fuzz/corpus/<target>/` and
//! `tests/fuzz/regressions/<target>/` goes through the function that the
//! cargo-fuzz target `<target>` calls (`plantwatch_actors::fuzzing`,
//! `plantwatch::fuzzing`), and none may panic. A directory or a fuzz target
//! without a known function fails the test, so that no target is skipped
//! silently. See docs/fuzzing.md.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use plantwatch_actors::fuzzing::Target;

use crate::support::repo;

fn targets() -> BTreeMap<&'static str, Target> {
    let all = plantwatch_actors::fuzzing::TARGETS.iter().chain(plantwatch::fuzzing::TARGETS);
    let map: BTreeMap<&'static str, Target> = all.copied().collect();
    assert_eq!(
        map.len(),
        plantwatch_actors::fuzzing::TARGETS.len() + plantwatch::fuzzing::TARGETS.len(),
        "two targets share a name"
    );
    map
}

fn fuzz_dir() -> PathBuf {
    repo().join("tests/fuzz")
}

fn sorted_entries(dir: &Path) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd.map(|e| e.expect("a directory entry").path()).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("cannot read {}: {e}", dir.display()),
    };
    entries.sort();
    entries
}

/// Replays every file under `tests/fuzz/<kind>/<target>/`; returns how many.
fn replay(kind: &str, targets: &BTreeMap<&'static str, Target>, failures: &mut Vec<String>) -> usize {
    let mut count = 0;
    for dir in sorted_entries(&fuzz_dir().join(kind)) {
        if !dir.is_dir() {
            continue;
        }
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        let Some(&target) = targets.get(name.as_str()) else {
            failures.push(format!(
                "tests/fuzz/{kind}/{name}: no fuzzing function for target {name:?} (add it to a fuzzing::TARGETS)"
            ));
            continue;
        };
        for file in sorted_entries(&dir).into_iter().filter(|f| f.is_file()) {
            let input = std::fs::read(&file).expect("a corpus file");
            count += 1;
            if catch_unwind(AssertUnwindSafe(|| target(&input))).is_err() {
                failures.push(format!("{name}: {} panics (see the message above)", file.display()));
            }
        }
    }
    count
}

#[test]
fn corpora_and_regressions_replay_without_a_panic() {
    let targets = targets();
    let mut failures = Vec::new();
    let corpus = replay("corpus", &targets, &mut failures);
    let regressions = replay("regressions", &targets, &mut failures);
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
    assert!(corpus > 0, "tests/fuzz/corpus holds no inputs");
    eprintln!("replayed {corpus} corpus and {regressions} regression inputs");
}

#[test]
fn every_fuzz_target_has_its_function_and_corpus() {
    let targets = targets();
    let mut failures = Vec::new();
    let mut files = Vec::new();
    for f in sorted_entries(&fuzz_dir().join("fuzz_targets")) {
        let Some(name) = f.file_stem().and_then(|n| n.to_str()).filter(|_| f.extension().is_some_and(|e| e == "rs"))
        else {
            continue;
        };
        files.push(name.to_string());
        if !targets.contains_key(name) {
            failures.push(format!("tests/fuzz/fuzz_targets/{name}.rs has no fuzzing function of that name"));
        }
        if sorted_entries(&fuzz_dir().join("corpus").join(name)).is_empty() {
            failures.push(format!("tests/fuzz/corpus/{name}/ is missing or empty"));
        }
    }
    for name in targets.keys() {
        if !files.iter().any(|f| f == name) {
            failures.push(format!("fuzzing function {name} has no tests/fuzz/fuzz_targets/{name}.rs"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
