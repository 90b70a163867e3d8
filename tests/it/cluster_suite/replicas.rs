//! No write refused when a replica stops (SPEC §17), through the apiserver: replicas behind the
//! Service's name, eight clients writing migrated ConfigMaps, and a replica stopped as
//! Kubernetes stops a pod (SIGTERM), replaced in a rolling restart, or killed.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use super::install::Destination;
use super::objects::{self, MIGRATED, PID};
use super::plane::plane;
use super::rewrites::until_the_webhook_answers;
use crate::common::ServeProcess;

/// The test's Endpoints are the apiserver's /etc/hosts, which Go's resolver re-reads at most
/// every 5 s: the delay must outlast that, as in a cluster it must outlast the Endpoints change
/// reaching every API server (the install's default is 10 s).
const DELAY: (&str, &str) = ("RANCHER_REMAP_SHUTDOWN_DELAY", "7");

/// What the writers saw.
#[derive(Default)]
pub struct Writes {
    pub stored: AtomicUsize,
    pub refused: AtomicUsize,
    /// Stored with the source's project ID: never acceptable.
    pub wrong: AtomicUsize,
    pub errors: Mutex<Vec<String>>,
}

impl Writes {
    pub fn total(&self) -> usize {
        self.stored.load(Ordering::SeqCst) + self.refused.load(Ordering::SeqCst)
    }
}

/// `count` clients creating migrated ConfigMaps in `ns` until `stop`, each waiting `pace`
/// between writes (none: as fast as answered).
pub fn writers(
    client: &kube::Client,
    ns: &str,
    tag: &str,
    (count, pace): (usize, Duration),
    stop: &Arc<AtomicBool>,
) -> (Arc<Writes>, Vec<tokio::task::JoinHandle<()>>) {
    let writes = Arc::new(Writes::default());
    let tasks = (0..count)
        .map(|w| {
            let (client, writes, stop) = (client.clone(), writes.clone(), stop.clone());
            let (ns, tag) = (ns.to_string(), tag.to_string());
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": format!("{tag}-{w}-{n}"), "namespace": ns,
                                     "labels": {PID: "p-ab12c"},
                                     "annotations": {MIGRATED: "true"}}});
                    match objects::create(&client, &cm, false).await {
                        Ok(stored) if stored["metadata"]["labels"][PID] == "p-xy99z" => {
                            writes.stored.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(_) => {
                            writes.stored.fetch_add(1, Ordering::SeqCst);
                            writes.wrong.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(e) => {
                            writes.refused.fetch_add(1, Ordering::SeqCst);
                            writes.errors.lock().unwrap().push(e.to_string());
                        }
                    }
                    if !pace.is_zero() {
                        tokio::time::sleep(pace).await;
                    }
                }
            })
        })
        .collect();
    (writes, tasks)
}

/// Runs `during` while eight writers write, then keeps them writing until `at_least` writes
/// in all; what they saw.
async fn under_writes(
    client: &kube::Client,
    ns: &str,
    tag: &str,
    at_least: usize,
    during: impl AsyncFnOnce(&Writes),
) -> Arc<Writes> {
    let stop = Arc::new(AtomicBool::new(false));
    let (writes, tasks) = writers(client, ns, tag, (8, Duration::ZERO), &stop);
    crate::common::eventually("the first writes", Duration::from_secs(30), async || {
        writes.total() >= 100
    })
    .await;
    during(&writes).await;
    crate::common::eventually("the writes", Duration::from_secs(60), async || {
        writes.total() >= at_least
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    writes
}

/// SIGTERM, as the kubelet stops a pod; waits for the exit, which must be clean.
async fn stop(mut replica: ServeProcess) {
    let began = std::time::Instant::now();
    let status = tokio::task::spawn_blocking(move || {
        let status = replica.terminate();
        (status, replica.log.lock().unwrap().clone())
    })
    .await
    .unwrap();
    assert!(status.0.success(), "{}: {}", status.0, status.1);
    eprintln!(
        "cluster suite: a replica stopped in {:.1?}{}",
        began.elapsed(),
        if status.1.contains("still open when the drain ended") {
            " (the drain ended with connections open)"
        } else {
            ""
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_write_is_refused_when_a_replica_stops_or_rolls() {
    let (plane, _turn) = plane().await;
    let ns = "rr-replicas";
    let Destination {
        install,
        admin: _,
        stork,
        app,
    } = Destination::helm(plane, ns, &[]).await;
    let app = app.as_str();
    // The first replica makes the certificate Secret; the second follows it.
    let r0 = install.start_replica(0, &[DELAY]).await;
    until_the_webhook_answers(&stork, app).await;
    let r1 = install.start_replica(1, &[DELAY]).await;
    let [a0, a1, a2] = install.addrs[..] else {
        panic!("three addresses for {ns}")
    };
    plane.set_endpoints(ns, &[a0, a1]);

    // One of two stopped with SIGTERM mid-writes: as the kubelet does, while its endpoint is
    // taken out.
    let mut r0 = Some(r0);
    let writes = under_writes(&stork, app, "sigterm", 800, async |_: &Writes| {
        plane.set_endpoints(ns, &[a1]);
        stop(r0.take().unwrap()).await;
    })
    .await;
    report("one of two replicas stopped (SIGTERM)", &writes);
    assert_eq!(
        writes.refused.load(Ordering::SeqCst),
        0,
        "{:?}",
        writes.errors
    );
    assert_eq!(writes.wrong.load(Ordering::SeqCst), 0);

    // A rolling restart of two replicas: each replaced in turn, the new one serving before the
    // old one stops (maxSurge 1, maxUnavailable 0).
    let old = vec![install.start_replica(0, &[DELAY]).await, r1];
    plane.set_endpoints(ns, &[a0, a1]);
    let mut old = Some(old);
    let mut new: Vec<ServeProcess> = Vec::new();
    let writes = under_writes(&stork, app, "rolling", 1600, async |_: &Writes| {
        let [first, second]: [ServeProcess; 2] = old.take().unwrap().try_into().ok().unwrap();
        new.push(install.start_replica(2, &[DELAY]).await);
        plane.set_endpoints(ns, &[a0, a1, a2]);
        plane.set_endpoints(ns, &[a1, a2]);
        stop(first).await;
        new.push(install.start_replica(0, &[DELAY]).await);
        plane.set_endpoints(ns, &[a1, a2, a0]);
        plane.set_endpoints(ns, &[a2, a0]);
        stop(second).await;
    })
    .await;
    report("a rolling restart", &writes);
    assert_eq!(
        writes.refused.load(Ordering::SeqCst),
        0,
        "{:?}",
        writes.errors
    );
    assert_eq!(writes.wrong.load(Ordering::SeqCst), 0);

    // One of two killed: writes on its connections may be refused, none is stored wrong.
    // The replica at the first address: the one the apiserver dials first, so it carries the
    // writes.
    let mut victim = Some(new.remove(0));
    let writes = under_writes(&stork, app, "sigkill", 800, async |_: &Writes| {
        let mut v = victim.take().unwrap();
        v.child.kill().unwrap();
        v.child.wait().unwrap();
    })
    .await;
    report("one of two replicas killed (SIGKILL)", &writes);
    assert_eq!(writes.wrong.load(Ordering::SeqCst), 0);
}

fn report(what: &str, writes: &Writes) {
    eprintln!(
        "cluster suite: {what}: {} writes, {} refused, {} stored wrong",
        writes.total(),
        writes.refused.load(Ordering::SeqCst),
        writes.wrong.load(Ordering::SeqCst)
    );
}
