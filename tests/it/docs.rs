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
    for f in shipped_texts() {
        let text = std::fs::read_to_string(&f).unwrap();
        let found = outside_references(&text);
        assert!(found.is_empty(), "{}: {found:?}", f.display());
    }
    let mut helps = vec![stdout(&bin().arg("--help").output().unwrap())];
    for cmd in [
        "serve", "rewrite", "derive", "check", "certs", "audit", "doctor",
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
