//! Records the git commit the binary was built from, for
//! `plantwatch_build_info`: `PLANTWATCH_COMMIT` from the environment if set
//! (packagers), else `git rev-parse`, else "unknown" (a source tarball).

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!text.is_empty()).then_some(text)
}

fn main() {
    println!("cargo:rerun-if-env-changed=PLANTWATCH_COMMIT");
    let commit = std::env::var("PLANTWATCH_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=PLANTWATCH_COMMIT={commit}");
    // Build again when HEAD moves: HEAD itself, the branch it points at, packed refs.
    for path in [Some("HEAD".to_string()), git(&["symbolic-ref", "-q", "HEAD"]), Some("packed-refs".to_string())]
        .into_iter()
        .flatten()
    {
        if let Some(p) = git(&["rev-parse", "--git-path", &path]) {
            if std::path::Path::new(&p).exists() {
                println!("cargo:rerun-if-changed={p}");
            }
        }
    }
}
