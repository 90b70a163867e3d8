//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// The built `rancher-remap` binary.
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rancher-remap"))
}

/// Runs the binary with `args`, feeding `stdin`.
pub fn run(args: &[&str], stdin: &str) -> Output {
    let mut child = bin()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rancher-remap");
    // The command may exit before reading (e.g. on invalid mappings): a broken pipe is fine.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap()
}

/// A file in the repository.
pub fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A fixture from tests/data.
pub fn data(name: &str) -> String {
    std::fs::read_to_string(repo("tests/data").join(name)).unwrap()
}

/// `request.object` of a fixture review.
pub fn fixture_object(name: &str) -> serde_json::Value {
    let review: serde_json::Value = serde_json::from_str(&data(name)).unwrap();
    review["request"]["object"].clone()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
