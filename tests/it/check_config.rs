//! `plantwatch check-config` as a person runs it: exit codes and the one-line error.

use std::path::{Path, PathBuf};
use std::process::Output;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Runs the binary with only the given environment variables.
fn check_config(files: &[&Path], env: &[(&str, &str)]) -> Output {
    let mut cmd = crate::support::bare_plantwatch();
    cmd.envs(env.iter().copied()).arg("check-config");
    for f in files {
        cmd.arg("--config").arg(f);
    }
    cmd.output().expect("plantwatch runs")
}

/// A file of its own under the target directory (tests run in parallel).
fn scratch_file(name: &str, text: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("check_config");
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("scratch file");
    path
}

#[test]
fn a_valid_configuration_prints_a_summary() {
    let out = check_config(&[&repo("config/production.toml")], &[("PLANTWATCH__LOG__LEVEL", "debug")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.starts_with("configuration is valid\n"), "{stdout}");
    assert!(stdout.contains("  environment  PLANTWATCH__LOG__LEVEL\n"), "{stdout}");
    assert!(stdout.contains("  networks     2\n") && stdout.contains("  devices      4 configured\n"), "{stdout}");
    assert!(stdout.contains("  listen       0.0.0.0:8080\n"), "{stdout}");
}

#[test]
fn an_invalid_file_exits_64_with_file_line_key_and_reason() {
    let path = scratch_file("bad_poll.toml", "[[network]]\nname = \"bldg-a\"\npoll = \"fast\"\n");
    let out = check_config(&[&path], &[]);
    assert_eq!(out.status.code(), Some(64));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = format!("plantwatch: {}:3: network[0].poll: invalid duration \"fast\"", path.display());
    assert!(stderr.starts_with(&expected), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn a_bad_environment_variable_is_named() {
    let out = check_config(&[&repo("config/demo.toml")], &[("PLANTWATCH__RATE_LIMIT__BURST", "0.5")]);
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with(
            "plantwatch: environment variable PLANTWATCH__RATE_LIMIT__BURST: rate_limit.burst: 0.5 is below 1.0"
        ),
        "{stderr}"
    );
}

#[test]
fn a_missing_file_and_a_later_layer_are_reported() {
    let out = check_config(&[&repo("config/demo.toml"), Path::new("/nonexistent/site.toml")], &[]);
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("plantwatch: /nonexistent/site.toml: cannot read the file: "), "{stderr}");

    let override_path = scratch_file("override.toml", "[server]\nlisten = \"127.0.0.1:9090\"\n");
    let out = check_config(&[&repo("config/demo.toml"), &override_path], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("  listen       127.0.0.1:9090\n"), "{stdout}");
}
