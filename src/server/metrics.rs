//! The server's metrics: requests by endpoint and outcome, their latency, project IDs rewritten
//! and unmapped, connections held and admission log lines dropped. They are registered in the
//! process's one registry ([`crate::metrics`]), which the server holds: `/metrics` serves it.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::review::RequestOutcome;
use crate::metrics::{registered, FixedFamily};
use crate::rewrite::Location;

/// Upper bounds of the latency histogram's buckets, in seconds.
const LATENCY_BUCKETS: [f64; 10] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0,
];

/// One endpoint's handles, made once: counting a request hashes no labels and takes no lock.
pub struct EndpointMetrics {
    /// `mutate` or `validate`, as the metrics and the log name it.
    pub endpoint: &'static str,
    /// By outcome (`outcome as usize`).
    pub requests: [Counter; RequestOutcome::ALL.len()],
    pub duration: Histogram,
}

impl EndpointMetrics {
    fn new(endpoint: &'static str) -> EndpointMetrics {
        EndpointMetrics {
            endpoint,
            requests: Default::default(),
            duration: Histogram::new(LATENCY_BUCKETS),
        }
    }

    pub fn count(&self, outcome: RequestOutcome, elapsed: std::time::Duration) {
        self.requests[outcome as usize].inc();
        self.duration.observe(elapsed.as_secs_f64());
    }
}

/// The outcomes `/validate` can have (it never patches, waits for a table or is not served):
/// only these of its series are exported; its handles for the others count into nothing.
const VALIDATE_OUTCOMES: [RequestOutcome; 3] = [
    RequestOutcome::Allowed,
    RequestOutcome::Denied,
    RequestOutcome::BadRequest,
];

/// The server's metrics, and the registry they are exported from.
pub struct Metrics {
    /// Every subsystem's metrics (see [`crate::metrics`]).
    registry: Registry,
    /// `/mutate` and `/validate`, made once.
    pub mutate: EndpointMetrics,
    pub validate: EndpointMetrics,
    /// Per location (`location as usize`, see [`Location::ALL`]), made once.
    pub rewrites_at: [Counter; Location::ALL.len()],
    pub unmapped_at: [Counter; Location::ALL.len()],
    pub log_lines_dropped: Counter,
    pub connections: Gauge,
}

impl Metrics {
    /// Registers the server's series in `registry` (where the other subsystems registered
    /// theirs) and keeps it, for `/metrics`.
    pub fn new(mut registry: Registry) -> Metrics {
        let r = &mut registry;
        let mutate = EndpointMetrics::new("mutate");
        let validate = EndpointMetrics::new("validate");
        let exported: [(_, &[_]); 2] = [
            (&mutate, &RequestOutcome::ALL),
            (&validate, &VALIDATE_OUTCOMES),
        ];
        let requests = exported.iter().flat_map(|&(m, outcomes)| {
            outcomes.iter().map(|&o| {
                let labels = [("endpoint", m.endpoint), ("outcome", o.as_str())];
                (labels, m.requests[o as usize].clone())
            })
        });
        let help = "Admission requests by endpoint and outcome";
        r.register("requests", help, FixedFamily::new(requests));
        let duration = exported.map(|(m, _)| ([("endpoint", m.endpoint)], m.duration.clone()));
        let help = "Time to answer an admission request";
        r.register("request_duration_seconds", help, FixedFamily::new(duration));
        let rewrites_at = per_location(r, "rewrites", "Project IDs rewritten, by location");
        let unmapped_at = per_location(r, "unmapped", "Project IDs with no mapping, by location");
        let connections = registered(
            r,
            "connections",
            "Webhook connections open (accepted, not yet closed; at most --max-connections)",
        );
        let log_lines_dropped = registered(
            r,
            "log_lines_dropped",
            "Admission log lines dropped because the log writer fell behind",
        );
        Metrics {
            mutate,
            validate,
            rewrites_at,
            unmapped_at,
            log_lines_dropped,
            connections,
            registry,
        }
    }

    /// The Prometheus text exposition of every subsystem's metrics.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// A counter family by location, registered, and its counter for each location.
fn per_location(r: &mut Registry, name: &str, help: &str) -> [Counter; Location::ALL.len()] {
    let counters: [Counter; Location::ALL.len()] = Default::default();
    let series = Location::ALL.iter().zip(&counters);
    let series = series.map(|(l, c)| ([("location", l.as_str())], c.clone()));
    r.register(name, help, FixedFamily::new(series));
    counters
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::serve::AllMetrics;

    /// The sample lines of a scrape (no comments), in order.
    fn samples(m: &Metrics) -> Vec<String> {
        m.encode()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn every_scrape_lists_the_same_series_in_the_same_order() {
        // Each hash map has its own random seed: several instances would disagree.
        let first = samples(&AllMetrics::register().server);
        for _ in 0..8 {
            assert_eq!(samples(&AllMetrics::register().server), first);
        }
        let requests: Vec<_> = first
            .iter()
            .filter(|l| l.starts_with("rancher_remap_requests_total{endpoint=\"mutate\""))
            .cloned()
            .collect();
        let outcomes: Vec<_> = RequestOutcome::ALL
            .iter()
            .map(|o| {
                format!(
                    "rancher_remap_requests_total{{endpoint=\"mutate\",outcome=\"{}\"}} 0",
                    o.as_str()
                )
            })
            .collect();
        assert_eq!(requests, outcomes);
    }

    #[test]
    fn only_series_that_can_happen_are_exported() {
        let all = AllMetrics::register();
        let text = all.server.encode();
        for impossible in ["patched", "would_patch", "unavailable", "not_served"] {
            let series = format!("endpoint=\"validate\",outcome=\"{impossible}\"");
            assert!(!text.contains(&series), "{series}\n{text}");
        }
        for possible in ["allowed", "denied", "bad_request"] {
            let series = format!("endpoint=\"validate\",outcome=\"{possible}\"");
            assert!(text.contains(&series), "{series}");
        }
        // The handles count into the exported series.
        all.server
            .validate
            .count(RequestOutcome::Denied, std::time::Duration::ZERO);
        crate::live::LiveMappings::new(all.table, false, None).missing();
        let text = all.server.encode();
        assert!(text
            .contains("rancher_remap_requests_total{endpoint=\"validate\",outcome=\"denied\"} 1"));
        assert!(text.contains("rancher_remap_mapping_table_reloads_total{result=\"missing\"} 1"));
    }
}
