//! The image `make dist` ships, made without a container engine: `scripts/dist oci-image`
//! (the function `make dist` runs on the static binaries) run here on the test binary, then read
//! back as a registry client would: the layout, index, manifest and config parse, every digest
//! and size matches its blob, the layer's diff ID matches its uncompressed bytes, and the layer
//! unpacks to a filesystem whose entrypoint runs the binary.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::common::repo;

/// Runs a tool that must be there (a missing one fails the test).
fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (is it installed?)"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn sha256(path: &Path) -> String {
    let out = run(Command::new("sha256sum").arg(path));
    format!(
        "sha256:{}",
        String::from_utf8(out).unwrap().split(' ').next().unwrap()
    )
}

/// The blob a descriptor names, checked against the descriptor's digest and size.
fn blob(layout: &Path, descriptor: &Value) -> std::path::PathBuf {
    let digest = descriptor["digest"].as_str().unwrap();
    let path = layout
        .join("blobs/sha256")
        .join(digest.strip_prefix("sha256:").unwrap());
    assert_eq!(sha256(&path), digest, "{}", path.display());
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        descriptor["size"].as_u64().unwrap(),
        "{descriptor}"
    );
    path
}

/// Unpacks the tar archive `archive` into the new folder `into`.
fn untar(archive: &Path, into: &Path) -> std::path::PathBuf {
    std::fs::create_dir(into).unwrap();
    run(Command::new("tar")
        .arg("-xf")
        .arg(archive)
        .arg("-C")
        .arg(into));
    into.to_path_buf()
}

fn json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The layout's index: one image manifest, for linux/amd64, named by the version.
fn the_index_manifest(layout: &Path, version: &str) -> Value {
    let index = json(&layout.join("index.json"));
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 1, "{index}");
    let m = manifests[0].clone();
    assert_eq!(m["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(m["platform"]["os"], "linux");
    assert_eq!(m["platform"]["architecture"], "amd64");
    assert_eq!(
        m["annotations"]["org.opencontainers.image.ref.name"],
        version
    );
    m
}

/// The config: what the Dockerfile's image says, and the commit. Returns the entrypoint.
fn check_config(config: &Value, manifest: &Value, version: &str, commit: &str) -> Value {
    assert_eq!(config["os"], "linux");
    assert_eq!(config["architecture"], "amd64");
    let c = &config["config"];
    assert_eq!(c["User"], "65532:65532");
    assert_eq!(c["Cmd"], serde_json::json!(["serve"]));
    let dockerfile = std::fs::read_to_string(repo("Dockerfile")).unwrap();
    let entrypoint: Value = serde_json::from_str(
        dockerfile
            .lines()
            .find_map(|l| l.strip_prefix("ENTRYPOINT "))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(c["Entrypoint"], entrypoint);
    assert_eq!(
        c["Labels"]["org.opencontainers.image.revision"], commit,
        "{config}"
    );
    assert_eq!(c["Labels"]["org.opencontainers.image.version"], version);
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.revision"],
        commit
    );
    entrypoint
}

#[test]
fn the_image_layout_is_valid_and_its_entrypoint_runs_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    // The test binary without its debug info (the same program, a tenth of the bytes to gzip).
    let bin = dir.path().join("rancher-remap");
    run(Command::new("strip")
        .arg("-o")
        .arg(&bin)
        .arg(env!("CARGO_BIN_EXE_rancher-remap")));
    let version = env!("CARGO_PKG_VERSION");
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let make_image = |out: &Path| {
        run(Command::new(repo("scripts/dist"))
            .arg("oci-image")
            .arg(out)
            .args([version, commit])
            .arg(format!("amd64={}", bin.display())));
    };
    let archive = dir.path().join("image-oci.tar");
    make_image(&archive);

    let layout = untar(&archive, &dir.path().join("layout"));
    assert_eq!(
        json(&layout.join("oci-layout")),
        serde_json::json!({"imageLayoutVersion": "1.0.0"})
    );
    let m = &the_index_manifest(&layout, version);
    let manifest = json(&blob(&layout, m));
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    let config = json(&blob(&layout, &manifest["config"]));
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "one layer: the binary needs no base image");
    assert_eq!(
        layers[0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    let layer = blob(&layout, &layers[0]);

    let entrypoint = check_config(&config, &manifest, version, commit);

    // The diff ID is the digest of the uncompressed layer.
    let tar = dir.path().join("layer.tar");
    let bytes = run(Command::new("gzip").arg("-dc").arg(&layer));
    std::fs::write(&tar, bytes).unwrap();
    assert_eq!(config["rootfs"]["type"], "layers");
    assert_eq!(
        config["rootfs"]["diff_ids"],
        serde_json::json!([sha256(&tar)])
    );

    // The layer unpacks to a filesystem whose entrypoint runs the binary.
    let rootfs = untar(&tar, &dir.path().join("rootfs"));
    let exe = rootfs.join(entrypoint[0].as_str().unwrap().trim_start_matches('/'));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&exe).unwrap().permissions().mode() & 0o777,
        0o755
    );
    let said = String::from_utf8(run(Command::new(&exe).arg("--version"))).unwrap();
    assert!(
        said.starts_with(&format!("rancher-remap {version} (commit ")),
        "{said}"
    );

    // The same inputs give the same bytes.
    let again = dir.path().join("again.tar");
    make_image(&again);
    assert_eq!(
        std::fs::read(&archive).unwrap(),
        std::fs::read(&again).unwrap()
    );
}
