//! An install as a user makes it — `helm install` of the chart, or `kubectl apply` of the
//! kustomize render — and the server run as its Deployment runs it: the rendered container's
//! environment and its ServiceAccount's own token (so the shipped RBAC is what the apiserver
//! enforces). No kubelet runs here: the test starts the replicas, on the loopback addresses
//! [`super::HOMES`] gives the namespace.

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

use super::plane::{run_ok, ControlPlane, ADMIN, HOMES, SERVICE};
use crate::common::ServeProcess;

/// The table every install follows (deploy/examples' mappings): cluster c-7gh2k's projects
/// p-ab12c and p-cd56e become c-m-4kq8z9rt's p-xy99z and p-gh34k.
pub const TABLE: &str = "c-7gh2k:p-ab12c=c-m-4kq8z9rt:p-xy99z,c-7gh2k:p-cd56e=c-m-4kq8z9rt:p-gh34k,p-ab12c=p-xy99z,p-cd56e=p-gh34k";
/// The destination cluster's ID (the table's destination).
pub const CLUSTER_ID: &str = "c-m-4kq8z9rt";

/// One install in its namespace, removed (with whatever it left cluster-wide) when dropped.
pub struct Install {
    pub plane: &'static ControlPlane,
    pub ns: String,
    /// The rendered server container's environment, fieldRefs resolved as the kubelet would.
    pub env: Vec<(String, String)>,
    /// The port every replica listens on (at its own address).
    pub port: u16,
    pub addrs: &'static [&'static str],
    /// The ServiceAccount's token in a kubeconfig the replicas use, and the post-renderer.
    state: tempfile::TempDir,
    uninstall: Command,
}

impl Install {
    /// `helm install rancher-remap charts/rancher-remap -n NS` with `sets` (`key=value`), the
    /// namespace made first as the README says. A post-renderer points every webhook at its
    /// replicas by URL (see [`Self::post_renderer`]), so that `helm upgrade` keeps doing so.
    pub fn helm(plane: &'static ControlPlane, ns: &str, sets: &[&str]) -> Install {
        Install::helm_chart(
            plane,
            ns,
            &crate::common::repo("charts/rancher-remap"),
            sets,
        )
    }

    /// [`Install::helm`] of `chart`: the chart's folder, or a package `helm package` made.
    pub fn helm_chart(
        plane: &'static ControlPlane,
        ns: &str,
        chart: &Path,
        sets: &[&str],
    ) -> Install {
        remove_leftovers(plane);
        run_ok(plane.kubectl(ADMIN).args(["create", "namespace", ns]));
        let (addrs, port) = home(ns);
        let state = tempfile::tempdir().unwrap();
        let renderer = post_renderer(state.path(), port);
        let mut helm = plane.helm();
        helm.args(["install", "rancher-remap"])
            .arg(chart)
            .args(["-n", ns, "--post-renderer"])
            .arg(&renderer)
            .args([
                "--set",
                "image.repository=registry.example.com/rancher-remap",
            ]);
        for set in sets {
            helm.args(["--set", set]);
        }
        run_ok(&mut helm);
        let mut uninstall = plane.helm();
        uninstall.args(["uninstall", "rancher-remap", "-n", ns, "--wait=false"]);
        Install::finish(plane, ns, addrs, port, state, uninstall)
    }

    /// `helm upgrade rancher-remap … --reuse-values` with `sets`, through the same post-renderer.
    pub fn helm_upgrade(&self, sets: &[&str]) {
        self.helm_upgrade_files(&[], sets);
    }

    /// [`Self::helm_upgrade`], with values from files too (`--set-file KEY=PATH`).
    pub fn helm_upgrade_files(&self, files: &[(&str, &Path)], sets: &[&str]) {
        let mut helm = self.plane.helm();
        helm.args(["upgrade", "rancher-remap"])
            .arg(crate::common::repo("charts/rancher-remap"))
            .args(["-n", &self.ns, "--reuse-values", "--post-renderer"])
            .arg(self.state.path().join("post-render"));
        for set in sets {
            helm.args(["--set", set]);
        }
        for (key, path) in files {
            helm.arg("--set-file")
                .arg(format!("{key}={}", path.display()));
        }
        run_ok(&mut helm);
    }

    /// `kubectl apply -f RENDER` (a kustomize render that makes the namespace `ns`), every
    /// webhook then pointed at its replicas by URL.
    pub fn kubectl_apply(plane: &'static ControlPlane, ns: &str, render: &Path) -> Install {
        remove_leftovers(plane);
        run_ok(plane.kubectl(ADMIN).arg("apply").arg("-f").arg(render));
        let mut uninstall = plane.kubectl(ADMIN);
        uninstall
            .args(["delete", "--ignore-not-found", "--wait=false", "-f"])
            .arg(render);
        let (addrs, port) = home(ns);
        let install = Install::finish(
            plane,
            ns,
            addrs,
            port,
            tempfile::tempdir().unwrap(),
            uninstall,
        );
        install.route_webhooks();
        install
    }

    fn finish(
        plane: &'static ControlPlane,
        ns: &str,
        addrs: &'static [&'static str],
        port: u16,
        state: tempfile::TempDir,
        uninstall: Command,
    ) -> Install {
        let deployment: Value = serde_json::from_str(&run_ok(plane.kubectl(ADMIN).args([
            "get",
            "deployment",
            SERVICE,
            "-n",
            ns,
            "-o",
            "json",
        ])))
        .unwrap();
        let pod = &deployment["spec"]["template"]["spec"];
        let env = rendered_env(&pod["containers"][0]["env"], ns);
        let account = pod["serviceAccountName"].as_str().unwrap().to_string();
        let token = run_ok(plane.kubectl(ADMIN).args([
            "create",
            "token",
            &account,
            "-n",
            ns,
            "--duration=2h",
        ]));
        plane.write_kubeconfig(&state.path().join("kubeconfig"), token.trim(), ns);
        Install {
            plane,
            ns: ns.to_string(),
            env,
            port,
            addrs,
            state,
            uninstall,
        }
    }

    /// The value of a rendered environment variable.
    pub fn env_var(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The install's webhook configurations: (resource, name).
    fn webhook_configurations(&self) -> Vec<(String, String)> {
        self.env_var("RANCHER_REMAP_WEBHOOK_CONFIGURATIONS")
            .expect("an install whose server keeps its webhook configurations' caBundle")
            .split(',')
            .map(|r| {
                let (kind, name) = r.split_once('/').unwrap();
                (format!("{kind}webhookconfigurations"), name.to_string())
            })
            .collect()
    }

    /// Each of this install's webhook configurations as stored now: its resource, name and
    /// object.
    fn webhook_configuration_objects(&self) -> Vec<(String, String, Value)> {
        self.webhook_configurations()
            .into_iter()
            .map(|(resource, name)| {
                let config = serde_json::from_str(&run_ok(
                    self.plane
                        .kubectl(ADMIN)
                        .args(["get", &resource, &name, "-o", "json"]),
                ))
                .unwrap();
                (resource, name, config)
            })
            .collect()
    }

    /// Every webhook's caBundle, base64 as stored (null where there is none).
    pub fn ca_bundles(&self) -> Vec<Value> {
        self.webhook_configuration_objects()
            .into_iter()
            .flat_map(|(_, _, config)| {
                config["webhooks"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|hook| hook["clientConfig"]["caBundle"].clone())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Replaces each webhook's `clientConfig.FROM` by `clientConfig.TO`, whose value `to` makes
    /// from the webhook; the caBundle, and everything else, stays.
    fn swap_client_config(&self, from: &str, to: &str, value: impl Fn(&Value) -> Value) {
        for (resource, name, config) in self.webhook_configuration_objects() {
            let mut ops = Vec::new();
            for (i, hook) in config["webhooks"].as_array().unwrap().iter().enumerate() {
                ops.push(
                    json!({"op": "remove", "path": format!("/webhooks/{i}/clientConfig/{from}")}),
                );
                ops.push(
                    json!({"op": "add", "path": format!("/webhooks/{i}/clientConfig/{to}"),
                                "value": value(hook)}),
                );
            }
            run_ok(self.plane.kubectl(ADMIN).args([
                "patch",
                &resource,
                &name,
                "--type=json",
                "-p",
                &Value::Array(ops).to_string(),
            ]));
        }
    }

    /// Puts back the Service reference every webhook had as installed (see
    /// [`Self::route_webhooks`]), for a check of the install as a user has it: from then on the
    /// apiserver cannot reach the webhooks (no Endpoints here), so writes they see are refused.
    pub fn restore_service_references(&self) {
        self.swap_client_config("url", "service", |hook| {
            let url = hook["clientConfig"]["url"].as_str().unwrap();
            let path = &url[url.find(".svc:").unwrap()..];
            let path = &path[path.find('/').unwrap()..];
            json!({"name": SERVICE, "namespace": self.ns, "path": path, "port": 443})
        });
    }

    /// Points every webhook of this install at its replicas by URL: the Service's own DNS name
    /// (which the server's certificate is for), resolved by the apiserver to [`Self::addrs`].
    fn route_webhooks(&self) {
        self.swap_client_config("service", "url", |hook| {
            let path = hook["clientConfig"]["service"]["path"].as_str().unwrap();
            json!(format!(
                "https://{SERVICE}.{}.svc:{}{path}",
                self.ns, self.port
            ))
        });
    }

    /// The `serve` command of replica `i` as its pod would run it: the rendered environment
    /// only, the ServiceAccount's token, listening at the replica's address.
    pub fn replica_command(&self, i: usize, extra_env: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rancher-remap"));
        cmd.arg("serve")
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("POD_NAME", format!("{SERVICE}-{i}"))
            .env(
                "RANCHER_REMAP_LISTEN",
                format!("{}:{}", self.addrs[i], self.port),
            )
            .env("RANCHER_REMAP_ADMIN_LISTEN", "127.0.0.1:0")
            .env("KUBECONFIG", self.state.path().join("kubeconfig"));
        cmd.envs(extra_env.iter().copied());
        cmd
    }

    /// Starts replica `i` and waits until it serves.
    pub async fn start_replica(&self, i: usize, extra_env: &[(&str, &str)]) -> ServeProcess {
        ServeProcess::spawn_command(self.replica_command(i, extra_env)).await
    }
}

impl Drop for Install {
    fn drop(&mut self) {
        let _ = self.uninstall.output();
        remove_leftovers(self.plane);
    }
}

/// Cluster-wide objects an earlier install left (a test that failed half-way): every install
/// sees every namespace, so none may outlive its test.
fn remove_leftovers(plane: &ControlPlane) {
    run_ok(plane.kubectl(ADMIN).args([
        "delete",
        "mutatingwebhookconfigurations,validatingwebhookconfigurations,clusterroles,clusterrolebindings",
        "-l",
        "app.kubernetes.io/name=rancher-remap",
        "--ignore-not-found",
        "--wait=false",
    ]));
}

/// The container's env as the kubelet gives it: values, and the two fieldRefs the chart uses.
fn rendered_env(env: &Value, ns: &str) -> Vec<(String, String)> {
    env.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let name = e["name"].as_str().unwrap().to_string();
            let value = match (
                &e["value"],
                e["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
            ) {
                (Value::String(v), _) => v.clone(),
                (_, Some("metadata.namespace")) => ns.to_string(),
                (_, Some("metadata.name")) => format!("{SERVICE}-0"),
                (Value::Null, None) => String::new(),
                other => panic!("an env var the suite cannot resolve: {name} {other:?}"),
            };
            (name, value)
        })
        .collect()
}

/// The addresses of `ns`'s replicas ([`HOMES`]) and a port free on all of them.
fn home(ns: &str) -> (&'static [&'static str], u16) {
    let addrs = HOMES
        .iter()
        .find(|(home, _)| *home == ns)
        .unwrap_or_else(|| panic!("{ns} is not one of the cluster suite's HOMES"))
        .1;
    (addrs, free_port_on(addrs))
}

/// A Helm post-renderer (`dir/post-render`) that turns each webhook's `clientConfig.service`
/// into the URL of the same Service name and path at `port`, which the apiserver resolves to
/// the replicas. (Helm's three-way merge would otherwise put `service` back beside a `url`
/// patched in by hand at the next upgrade.) The chart renders name, namespace, path and port
/// in that order.
fn post_renderer(dir: &Path, port: u16) -> std::path::PathBuf {
    let path = dir.join("post-render");
    let script = format!(
        r#"#!/bin/sh
exec awk -v port={port} '
function val(l) {{ sub(/^[^:]*: */, "", l); gsub(/"/, "", l); return l }}
/^ *service:$/ && prev ~ /clientConfig:$/ {{
  indent = substr($0, 1, index($0, "s") - 1)
  getline n; getline ns; getline p; getline po
  print indent "url: https://" val(n) "." val(ns) ".svc:" port val(p)
  prev = $0; next
}}
{{ print; prev = $0 }}'
"#
    );
    std::fs::write(&path, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// A port free on every one of `addrs`.
fn free_port_on(addrs: &[&str]) -> u16 {
    'next: loop {
        let first = std::net::TcpListener::bind((addrs[0], 0)).unwrap();
        let port = first.local_addr().unwrap().port();
        for addr in &addrs[1..] {
            if std::net::TcpListener::bind((*addr, port)).is_err() {
                continue 'next;
            }
        }
        return port;
    }
}

/// What most cluster tests start from: the chart installed in `ns` with this cluster's ID (and
/// `sets`), the mapping ConfigMap for [`TABLE`], a namespace `NS-app` for migrated writes (the
/// webhooks skip the install's own), and clients as the admin and as Stork.
pub struct Destination {
    pub install: Install,
    pub admin: kube::Client,
    pub stork: kube::Client,
    pub app: String,
}

impl Destination {
    pub async fn helm(plane: &'static ControlPlane, ns: &str, sets: &[&str]) -> Destination {
        let cluster = format!("clusterId={CLUSTER_ID}");
        let mut all = vec![cluster.as_str()];
        all.extend_from_slice(sets);
        Destination::of(Install::helm(plane, ns, &all)).await
    }

    /// The same around an install already made.
    pub async fn of(install: Install) -> Destination {
        let plane = install.plane;
        let admin = plane.client(super::plane::ADMIN).await;
        let stork = plane.client(super::plane::STORK).await;
        super::objects::create(
            &admin,
            &super::rewrites::mappings_configmap(&install.ns, TABLE),
            false,
        )
        .await
        .unwrap();
        let app = format!("{}-app", install.ns);
        create_namespace(&admin, &app).await;
        Destination {
            install,
            admin,
            stork,
            app,
        }
    }
}

/// Creates the Namespace `name`.
pub async fn create_namespace(client: &kube::Client, name: &str) {
    super::objects::create(
        client,
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
        false,
    )
    .await
    .unwrap_or_else(|e| panic!("Namespace {name}: {e}"));
}
