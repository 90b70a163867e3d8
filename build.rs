//! Records which commit the binary was built from, for `--version`: the short commit hash and
//! its date (the commit's, not the clock's, so that the same commit builds the same binary).
//! Outside a git checkout (a source tarball, a container build whose context leaves `.git` out)
//! they come from RANCHER_REMAP_GIT_COMMIT and RANCHER_REMAP_GIT_DATE when set (the Dockerfile's
//! build arguments), else read `unknown`.

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_string())
}

fn main() {
    let given = |var: &str| {
        println!("cargo:rerun-if-env-changed={var}");
        std::env::var(var).ok().filter(|v| !v.trim().is_empty())
    };
    let commit = git(&["rev-parse", "--short=12", "HEAD"])
        .or_else(|| given("RANCHER_REMAP_GIT_COMMIT"))
        .unwrap_or_else(|| "unknown".into());
    let date = git(&["log", "-1", "--format=%cs"])
        .or_else(|| given("RANCHER_REMAP_GIT_DATE"))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=RANCHER_REMAP_COMMIT={commit}");
    println!("cargo:rustc-env=RANCHER_REMAP_BUILD_DATE={date}");
    // A new commit, or a checkout of another, changes HEAD or the ref it names. In a linked
    // worktree HEAD is in its own git dir and the branches are in the common one: watch both.
    for dir in [
        git(&["rev-parse", "--git-dir"]),
        git(&["rev-parse", "--git-common-dir"]),
    ]
    .into_iter()
    .flatten()
    {
        for f in ["HEAD", "refs", "packed-refs"] {
            let p = Path::new(&dir).join(f);
            if p.exists() {
                println!("cargo:rerun-if-changed={}", p.display());
            }
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
