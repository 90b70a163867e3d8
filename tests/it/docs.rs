//! The repository stands alone: its README, docs, manifests, chart and `--help` never point
//! outside it, every relative link and anchor in the docs resolves, and every alert's runbook
//! is a section of the guide.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::common::{bin, repo, stdout};

/// Text files an operator reads: README, docs, manifests, the chart, the scripts.
fn shipped_texts() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(p);
            }
        }
    }
    let mut files = vec![repo("README.md"), repo("Makefile"), repo("Dockerfile")];
    for d in ["docs", "deploy", "charts", "scripts"] {
        walk(&repo(d), &mut files);
    }
    files
}

/// The folder beside the repository's root that a clone does not have (written in two parts, so
/// that this file does not point there itself).
const SIBLING_FOLDER: &str = concat!("..", "/", "shared");

fn outside_references(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| l.contains(SIBLING_FOLDER) || l.contains("SPEC.md") || l.contains("SPEC §"))
        .collect()
}

#[test]
fn nothing_an_operator_reads_points_outside_the_repository() {
    // The one exception: the Makefile unpacks the envtest assets kept beside the repository
    // when KUBEBUILDER_ASSETS is not given (a clone elsewhere sets that variable instead).
    let envtest = format!("ENVTEST_SHARED := {SIBLING_FOLDER}/envtest");
    for f in shipped_texts() {
        let text = std::fs::read_to_string(&f).unwrap();
        let mut found = outside_references(&text);
        if f.ends_with("Makefile") {
            found.retain(|l| *l != envtest);
        }
        assert!(found.is_empty(), "{}: {found:?}", f.display());
    }
    let mut helps = vec![stdout(&bin().arg("--help").output().unwrap())];
    for cmd in [
        "serve",
        "rewrite",
        "derive",
        "check",
        "certs",
        "audit",
        "doctor",
        "export-policy",
    ] {
        helps.push(stdout(&bin().args([cmd, "--help"]).output().unwrap()));
    }
    for h in &helps {
        assert!(h.contains("Usage:"), "{h}");
        assert!(outside_references(h).is_empty(), "{h}");
    }
}

/// GitHub's anchor for a heading: lower case, punctuation other than `-` and `_` dropped,
/// spaces to `-`.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_' || *c == ' ')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut in_code = false;
    let mut out = BTreeSet::new();
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            out.insert(anchor(line.trim_start_matches('#')));
        }
    }
    out
}

/// Relative link targets `](target)` in a markdown text.
fn links(markdown: &str) -> Vec<String> {
    markdown
        .split("](")
        .skip(1)
        .filter_map(|rest| rest.split_once(')').map(|(t, _)| t.to_string()))
        .filter(|t| !t.starts_with("http://") && !t.starts_with("https://"))
        .collect()
}

#[test]
fn every_link_and_anchor_in_the_docs_resolves() {
    let mut docs = vec![repo("README.md")];
    for e in std::fs::read_dir(repo("docs")).unwrap() {
        docs.push(e.unwrap().path());
    }
    let mut checked = 0;
    for doc in &docs {
        let text = std::fs::read_to_string(doc).unwrap();
        for link in links(&text) {
            let (path, frag) = link.split_once('#').unwrap_or((&link, ""));
            let target = if path.is_empty() {
                doc.clone()
            } else {
                doc.parent().unwrap().join(path)
            };
            assert!(target.exists(), "{}: {link}", doc.display());
            if !frag.is_empty() {
                let headings = anchors(&std::fs::read_to_string(&target).unwrap());
                assert!(
                    headings.contains(frag),
                    "{}: {link}: no heading #{frag} in {}",
                    doc.display(),
                    target.display()
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 10, "{checked} links");
}

#[test]
fn every_alert_has_its_runbook_section_in_the_guide() {
    let rules =
        std::fs::read_to_string(repo("charts/rancher-remap/files/rancher-remap.rules.yaml"))
            .unwrap();
    let rules = rancher_remap::manifest::parse_documents(&rules).unwrap();
    let guide = anchors(&std::fs::read_to_string(repo("docs/operators-guide.md")).unwrap());
    let mut n = 0;
    for g in rules[0]["groups"].as_array().unwrap() {
        for r in g["rules"].as_array().unwrap() {
            let url = r["annotations"]["runbook_url"].as_str().unwrap();
            let frag = url
                .strip_prefix("docs/operators-guide.md#")
                .unwrap_or_else(|| panic!("{url}"));
            assert_eq!(frag, r["alert"].as_str().unwrap().to_lowercase());
            assert!(guide.contains(frag), "no section for {frag}");
            n += 1;
        }
    }
    assert!(n >= 8);
}

#[test]
fn readme_installs_both_clusters_with_helm() {
    let readme = std::fs::read_to_string(repo("README.md")).unwrap();
    for role in ["destination", "source"] {
        assert!(
            readme.split("helm install").skip(1).any(|cmd| cmd
                .split("```")
                .next()
                .unwrap()
                .contains(&format!("role={role}"))),
            "no helm install for {role}"
        );
    }
}

/// The version is written once, in Cargo.toml (`scripts/sync-version`, `make version`, copies it):
/// the chart's version and appVersion, every image tag of the installs and every versioned image
/// in the docs follow it.
#[test]
fn the_version_is_written_once() {
    let version = env!("CARGO_PKG_VERSION");
    let chart = std::fs::read_to_string(repo("charts/rancher-remap/Chart.yaml")).unwrap();
    assert!(
        chart.lines().any(|l| l == format!("version: {version}")),
        "{chart}"
    );
    assert!(
        chart
            .lines()
            .any(|l| l == format!("appVersion: \"{version}\"")),
        "{chart}"
    );
    let mut tags = 0;
    for file in shipped_texts() {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        for (i, line) in text.lines().enumerate() {
            // `rancher-remap:1.2.3` image references and kustomize `newTag: 1.2.3` lines.
            let tagged = line
                .match_indices("rancher-remap:")
                .filter_map(|(at, m)| {
                    let rest = &line[at + m.len()..];
                    rest.starts_with(|c: char| c.is_ascii_digit())
                        .then_some(rest)
                })
                .chain(line.trim().strip_prefix("newTag: "));
            for rest in tagged {
                let tag: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+'))
                    .collect();
                assert_eq!(
                    tag,
                    version,
                    "{}:{}: {line} (run `make version`)",
                    file.display(),
                    i + 1
                );
                tags += 1;
            }
        }
    }
    assert!(tags >= 6, "found {tags} versioned references");
}

/// The commands of the README's shell blocks, continuation lines joined (`\`).
fn readme_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(repo("README.md")).unwrap();
    let mut commands = Vec::new();
    let (mut in_block, mut current) = (false, String::new());
    for line in readme.lines() {
        if line.starts_with("```") {
            in_block = line == "```sh";
            continue;
        }
        if !in_block {
            continue;
        }
        let code = line.split(" # ").next().unwrap_or_default().trim_end();
        let code = if code.trim_start().starts_with('#') {
            ""
        } else {
            code
        };
        match code.strip_suffix('\\') {
            Some(head) => current.push_str(head),
            None => {
                current.push_str(code);
                if !current.trim().is_empty() {
                    commands.push(current.trim().to_string());
                }
                current.clear();
            }
        }
    }
    commands
}

/// Every command in the README that needs no cluster (derive, check, rewrite, certs) runs as
/// written, from a fresh folder holding the repository's deploy/ examples: the files it names
/// exist, its flags exist, and it succeeds.
#[test]
fn every_readme_command_that_needs_no_cluster_runs_as_written() {
    let offline = ["derive", "check", "rewrite", "certs"];
    let dir = tempfile::tempdir().unwrap();
    let bin_dir = dir.path().join("bin");
    std::fs::create_dir(&bin_dir).unwrap();
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_rancher-remap"),
        bin_dir.join("rancher-remap"),
    )
    .unwrap();
    std::os::unix::fs::symlink(repo("deploy"), dir.path().join("deploy")).unwrap();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap());
    let mut ran = Vec::new();
    for command in readme_commands() {
        let needs_a_cluster = ["kubectl", "helm", "curl", "make "]
            .iter()
            .any(|t| command.contains(t));
        let sub = command
            .split("rancher-remap ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next());
        if needs_a_cluster || !sub.is_some_and(|s| offline.contains(&s)) {
            continue;
        }
        let out = std::process::Command::new("bash")
            .args(["-o", "pipefail", "-c", &command])
            .current_dir(dir.path())
            .env("PATH", &path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "README: {command}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        ran.push(command);
    }
    assert!(ran.len() >= 9, "{ran:#?}");
}
