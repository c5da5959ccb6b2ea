//! A full analysis (snapshot build + all six detectors) on a generated mesh of 1,000 and 10,000
//! services, on one thread. Also prints the peak heap of one run, measured by a counting
//! allocator. Target (issue 2): 10,000 services in under one second on one core.
//!
//! Run: `cargo bench --bench analysis`. The mesh: namespaces of 50 services; each service has a
//! Deployment (nginx, uvicorn, gunicorn or an unknown image, some bound to loopback, some with a
//! preStop hook), a Service, and for some a DestinationRule, a VirtualService with retries, and
//! a namespace-wide STRICT PeerAuthentication; one stats EnvoyFilter in the root namespace.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use meshmedic::analysis::analyze;
use meshmedic::error::Source;
use meshmedic::snapshot::{SnapshotBuilder, SnapshotOptions};
use serde_json::{Value, json};

struct Counting;
static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn mesh(services: usize) -> Vec<Value> {
    let mut docs = vec![json!({
        "apiVersion": "networking.istio.io/v1alpha3", "kind": "EnvoyFilter",
        "metadata": {"name": "stats", "namespace": "istio-system"},
        "spec": {"configPatches": [{"applyTo": "HTTP_FILTER", "patch": {"operation": "MERGE", "value": {"name": "istio.stats"}}}]}
    })];
    for i in 0..services {
        let ns = format!("ns-{}", i / 50);
        let name = format!("svc-{i}");
        if i % 50 == 0 {
            docs.push(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {"istio-injection": "enabled"}}}));
            docs.push(json!({"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
                "metadata": {"name": "default", "namespace": ns}, "spec": {"mtls": {"mode": "STRICT"}}}));
        }
        let (image, args): (&str, Vec<&str>) = match i % 4 {
            0 => ("nginx:1.27", vec![]),
            1 => (
                "python:3.12",
                vec![
                    "uvicorn",
                    "app:app",
                    "--host",
                    if i % 20 == 1 { "127.0.0.1" } else { "0.0.0.0" },
                ],
            ),
            2 => ("python:3.12", vec!["gunicorn", "app:app"]),
            _ => ("example/app:1.0", vec![]),
        };
        let mut container = json!({"name": "app", "image": image, "args": args, "ports": [{"containerPort": 8080}],
            "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}}});
        if i % 7 == 0 {
            container["lifecycle"] =
                json!({"preStop": {"exec": {"command": ["sh", "-c", "sleep 10"]}}});
        }
        let mut annotations = json!({});
        if i % 11 == 0 {
            annotations["sidecar.istio.io/rewriteAppHTTPProbers"] = json!("false");
        }
        docs.push(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": ns},
            "spec": {"selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name, "version": "v1"}, "annotations": annotations},
                                  "spec": {"containers": [container]}}}}));
        docs.push(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
            "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}));
        if i % 3 == 0 {
            docs.push(json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": {"name": name, "namespace": ns},
                "spec": {"host": name, "trafficPolicy": {"connectionPool": {"tcp": {"idleTimeout": "30m"}}},
                         "subsets": [{"name": "v1", "labels": {"version": "v1"}}]}}));
        }
        if i % 2 == 0 {
            docs.push(json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": name, "namespace": ns},
                "spec": {"hosts": [name], "http": [{"route": [{"destination": {"host": name}}],
                         "retries": {"attempts": 2, "retryOn": if i % 4 == 0 { "5xx" } else { "reset,503" }}}]}}));
        }
    }
    docs
}

fn run(docs: Vec<Value>) -> usize {
    let mut builder = SnapshotBuilder::new(SnapshotOptions::default());
    for (i, doc) in docs.into_iter().enumerate() {
        builder
            .add(Source::new("generated", i), doc)
            .expect("generated objects are valid");
    }
    let snapshot = builder.build().expect("snapshot");
    analyze(&snapshot).findings.len()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("analysis");
    group.sample_size(10);
    for services in [1_000, 10_000] {
        let docs = mesh(services);
        // One run outside the timer for the peak heap, beyond the input documents themselves.
        let input = docs.clone();
        let base = CURRENT.load(Ordering::Relaxed);
        PEAK.store(base, Ordering::Relaxed);
        let findings = run(input);
        let peak = PEAK.load(Ordering::Relaxed).saturating_sub(base);
        eprintln!(
            "analysis/{services}: {} documents, {findings} findings, peak heap above input {:.1} MiB",
            docs.len(),
            peak as f64 / (1024.0 * 1024.0)
        );
        group.bench_function(format!("{services}_services"), |b| {
            b.iter_batched(|| docs.clone(), run, BatchSize::LargeInput)
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
