//! Heap allocations per `/mutate` answer, in-process (decode to answer), counted by a global
//! allocator that counts: the webhook's path (its one decision) and the floor, on the 5 KB
//! migrated Deployment review (10 rewrites) with a 1,000-entry table, and on a review that holds
//! no project-ID key.
//!
//! Run: `cargo bench --bench allocations`. Figures in BENCHMARKS.md.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use rancher_remap::mapping::objects::Mappings;
use rancher_remap::rewrite::MutateSettings;
use rancher_remap::server::mutate;

/// The system allocator, counting allocations and reallocations.
struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by `f` (the median of 101 runs, after a warm-up).
fn count(mut f: impl FnMut() -> Vec<u8>) -> usize {
    std::hint::black_box(f());
    let mut counts: Vec<usize> = (0..101)
        .map(|_| {
            let before = ALLOCATIONS.load(Ordering::Relaxed);
            let out = f();
            let n = ALLOCATIONS.load(Ordering::Relaxed) - before;
            drop(std::hint::black_box(out));
            n
        })
        .collect();
    counts.sort_unstable();
    counts[50]
}

fn main() {
    // `cargo test --benches` runs bench targets too: this one is quick either way.
    let mappings = Mappings::from_text(&support::mappings(1_000)).unwrap();
    let settings = MutateSettings::default();
    let migrated = support::review_body();
    let plain = serde_json::to_vec(&serde_json::json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "u-1", "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "name": "web", "namespace": "shop", "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:stork"},
            "object": {"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web", "annotations": {"stork.libopenstorage.org/migrated": "true"}, "labels": {"app": "web"}},
                "spec": {"replicas": 3, "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}}}
    }))
    .unwrap();
    println!("| review | floor | webhook |");
    println!("|---|---|---|");
    for (name, body) in [
        ("5 KB migrated Deployment, 10 rewrites", &migrated),
        ("migrated Deployment without project IDs", &plain),
    ] {
        let floor = count(|| support::floor_answer(body).unwrap());
        let webhook = count(|| {
            let mut req = mutate::decode(body, &mappings.table).unwrap();
            mutate::answer(&mut req, &mappings, &settings).body
        });
        println!("| {name} | {floor} | {webhook} |");
    }
}
