//! Every install command the CLI prints works once the placeholders it names are filled in.

use crate::common::*;

/// The placeholders `derive` says to fill in, each as `<name>`, in the order it names them.
fn named_placeholders(said: &str) -> Vec<String> {
    let fill = said
        .split("(fill in ")
        .nth(1)
        .and_then(|rest| rest.split("):").next())
        .unwrap_or_else(|| panic!("no placeholders named in: {said}"));
    fill.split("; ")
        .map(|p| p.split(':').next().unwrap().to_string())
        .collect()
}

#[test]
fn derives_install_commands_name_their_placeholders_and_install_once_filled_in() {
    let pair = repo("deploy/examples/clusterpair.yaml");
    let out = run(&["derive", "-n", "remap", "-f", pair.to_str().unwrap()], "");
    assert!(out.status.success(), "{}", stderr(&out));
    let said = stderr(&out);
    let named = named_placeholders(&said);
    assert_eq!(
        named,
        ["<image-repository>", "<chart>", "<configmap.yaml>"],
        "{said}"
    );
    assert!(
        said.contains("which the chart requires as image.repository"),
        "{said}"
    );
    let commands: Vec<&str> = said
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("kubectl ") || l.starts_with("helm "))
        .collect();
    assert_eq!(
        commands,
        [
            "kubectl create namespace remap",
            "kubectl label namespace remap pod-security.kubernetes.io/enforce=restricted",
            "kubectl apply -f <configmap.yaml>",
            "helm install rancher-remap <chart> -n remap --set role=destination --set image.repository=<image-repository> --set clusterId=c-m-4kq8z9rt",
        ]
    );
    // Every placeholder in a command is one of those named.
    for c in &commands {
        for part in c.split(['=', ' ']).filter(|p| p.starts_with('<')) {
            assert!(
                named.iter().any(|n| n == part),
                "{part} in {c} is not named"
            );
        }
    }

    // The helm command, filled in, passes the chart's schema and renders the destination
    // install with this cluster's ID (helm template takes install's arguments).
    let chart = repo("charts/rancher-remap");
    let helm = commands[3]
        .replace("<chart>", chart.to_str().unwrap())
        .replace("<image-repository>", "registry.example.com/rancher-remap");
    let args: Vec<&str> = helm.split_whitespace().collect();
    assert_eq!(args[..2], ["helm", "install"]);
    let rendered = tool("helm")
        .arg("template")
        .args(&args[2..])
        .output()
        .unwrap();
    let manifest = String::from_utf8_lossy(&rendered.stdout);
    assert!(
        rendered.status.success(),
        "{}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    assert!(
        manifest.contains("image: \"registry.example.com/rancher-remap:")
            && manifest.contains("value: \"c-m-4kq8z9rt\"")
            && manifest.contains("namespace: remap"),
        "{manifest}"
    );
    // Left unfilled, the schema refuses it: the placeholder named is the one that matters.
    let unfilled = commands[3]
        .replace("<chart>", chart.to_str().unwrap())
        .replace(" --set image.repository=<image-repository>", "");
    let args: Vec<&str> = unfilled.split_whitespace().collect();
    let refused = tool("helm")
        .arg("template")
        .args(&args[2..])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("repository"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}
