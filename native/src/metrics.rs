//! `/metrics`: every mount's numbers, summed, in the OpenMetrics text format (through the
//! `prometheus-client` crate, which names, types, escapes and terminates it).
//!
//! The core counts (it sees every packet); the host adds what only it sees (open TCP
//! connections, outbound overflows) and renders. Mounts are summed so that dashboards do
//! not change when an application moves between paths.

use crate::cluster::LinkStats;
use parlor_core::service::Metrics;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// One mount's numbers: the core's, plus the driver's own.
#[derive(Clone, Debug, Default)]
pub(crate) struct MountMetrics {
    pub core: Metrics,
    /// Connections closed because their outbound queue overflowed.
    pub overflows: u64,
    /// The cluster link's counts, in cluster mode.
    pub link: Option<LinkStats>,
    /// How long the link's batches took to Redis and back, in cluster mode.
    pub round_trips: Option<Histogram>,
    /// How long the mount's store took per request, by kind.
    pub store: Option<StoreLatency>,
}

/// A request's kind, for the store's latency.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestKind {
    pub kind: &'static str,
}

/// The store's latency per kind of request (`write`, `read`), from submit to answer.
pub type StoreLatency = Family<RequestKind, Histogram>;

/// The buckets of every latency here: 100 µs doubling to about 3.3 s.
#[must_use]
pub fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_1, 2.0, 16))
}

/// A family of latency histograms, one per label set.
#[must_use]
pub fn store_latency() -> StoreLatency {
    Family::new_with_constructor(latency_histogram as fn() -> Histogram)
}

/// Everything `/metrics` shows.
#[derive(Clone, Debug, Default)]
pub(crate) struct Snapshot {
    /// Open TCP connections (HTTP keep-alive and WebSocket).
    pub tcp_connections: usize,
    pub mounts: Vec<MountMetrics>,
}

/// The content type of [`render`]'s output (OpenMetrics text, which Prometheus scrapes).
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// One label, for the families below.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Namespace {
    namespace: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Direction {
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: &'static str,
}

/// Renders `snapshot` through a registry built for this one scrape: every value is read from
/// the mounts at the time of the request, so nothing is kept between scrapes. Counters get
/// their `_total` suffix from the format.
pub(crate) fn render(snapshot: &Snapshot) -> String {
    let mut registry = Registry::with_prefix("parlor");
    let gauge = |value: usize| ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
    let counter = |value: u64| ConstCounter::new(value);

    let cores = || snapshot.mounts.iter().map(|m| &m.core);
    registry.register("connections", "Open Engine.IO sessions", gauge(cores().map(|c| c.connections).sum()));
    registry.register(
        "tcp_connections",
        "Open TCP connections (HTTP and WebSocket)",
        gauge(snapshot.tcp_connections),
    );

    let sockets = Family::<Namespace, Gauge>::default();
    let rooms = Family::<Namespace, Gauge>::default();
    let packets = Family::<Direction, Counter>::default();
    let bytes = Family::<Direction, Counter>::default();
    let disconnects = Family::<Reason, Counter>::default();
    for core in cores() {
        for (name, n_sockets, n_rooms) in &core.namespaces {
            let label = Namespace { namespace: name.clone() };
            sockets.get_or_create(&label).inc_by(i64::try_from(*n_sockets).unwrap_or(i64::MAX));
            rooms.get_or_create(&label).inc_by(i64::try_from(*n_rooms).unwrap_or(i64::MAX));
        }
        let t = &core.traffic;
        packets.get_or_create(&Direction { direction: "in" }).inc_by(t.packets_in);
        packets.get_or_create(&Direction { direction: "out" }).inc_by(t.packets_out);
        bytes.get_or_create(&Direction { direction: "in" }).inc_by(t.bytes_in);
        bytes.get_or_create(&Direction { direction: "out" }).inc_by(t.bytes_out);
        for (reason, n) in &core.disconnects {
            disconnects.get_or_create(&Reason { reason }).inc_by(*n);
        }
    }
    registry.register("sockets", "Connected Socket.IO sockets per namespace", sockets);
    registry.register("rooms", "Rooms per namespace, not counting each socket's own room", rooms);
    registry.register("packets", "Engine.IO packets received and sent", packets);
    registry.register("bytes", "Engine.IO payload bytes received and sent", bytes);
    registry.register("disconnects", "Socket.IO socket disconnects by reason", disconnects);
    registry.register(
        "outbound_overflows",
        "WebSockets closed because the client did not read fast enough",
        counter(snapshot.mounts.iter().map(|m| m.overflows).sum()),
    );

    // The histograms live as long as their store or link; the first mount with one shows it.
    if let Some(store) = snapshot.mounts.iter().find_map(|m| m.store.clone()) {
        registry.register("store_request_seconds", "How long the store took per request, submit to answer", store);
    }
    cluster(&mut registry, snapshot);

    let mut out = String::with_capacity(2048);
    // Writing into a String cannot fail; the encoder's errors are formatting errors only.
    let _ = encode(&mut out, &registry);
    out
}

/// The cluster's numbers (cluster mode only): the core's layer and the Redis link.
fn cluster(registry: &mut Registry, snapshot: &Snapshot) {
    let layers: Vec<_> = snapshot.mounts.iter().filter_map(|m| m.core.cluster).collect();
    let links: Vec<LinkStats> = snapshot.mounts.iter().filter_map(|m| m.link).collect();
    if layers.is_empty() && links.is_empty() {
        return;
    }
    let c = registry.sub_registry_with_prefix("cluster");
    if let Some(h) = snapshot.mounts.iter().find_map(|m| m.round_trips.clone()) {
        c.register("redis_round_trip_seconds", "How long the link's command batches took to Redis and back", h);
    }
    let sum = |f: fn(&parlor_core::cluster::ClusterStats) -> u64| layers.iter().map(f).sum::<u64>();
    let gauge = |v: u64| ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX));
    c.register("link_up", "1 while the link to Redis is connected and subscribed", gauge(links.iter().filter(|l| l.up).count() as u64));
    c.register("live_nodes", "Other nodes heard of within their expiry", gauge(sum(|s| s.live_nodes)));
    c.register("subscriptions", "Channels this node holds (rooms with a local member, namespaces, its own)", gauge(sum(|s| s.subscriptions)));
    for (name, help, value) in [
        ("published", "Broadcasts published for other nodes (once per target channel)", sum(|s| s.published)),
        ("received", "Cluster messages received", sum(|s| s.received)),
        ("delivered", "Other nodes' broadcasts delivered to local sockets", sum(|s| s.delivered)),
        ("duplicates", "Second copies of a broadcast (it came on several channels this node holds)", sum(|s| s.duplicates)),
        ("refused", "Cluster messages of another format version, or malformed", sum(|s| s.refused)),
        ("id_conflicts", "Messages from another running node with this node's id", sum(|s| s.id_conflicts)),
        ("app_sent", "The room service's messages to other nodes (presence)", sum(|s| s.app_sent)),
        ("app_received", "Other nodes' room service messages, questions and answers received", sum(|s| s.app_received)),
        ("queries", "Questions asked of every live node (who is in a room opening here, ...)", sum(|s| s.queries)),
        ("query_timeouts", "Questions done at their timeout with a node missing", sum(|s| s.query_timeouts)),
        ("missing_nodes", "Nodes that had not answered a question when it was done (summed)", sum(|s| s.missing_nodes)),
        ("answered", "Other nodes' questions this node answered", sum(|s| s.answered)),
        ("nodes_refused", "Nodes not taken into the registry because it was full", sum(|s| s.nodes_refused)),
        ("emitter_received", "Broadcasts from @socket.io/redis-emitter delivered here", sum(|s| s.emitter_received)),
        ("emitter_refused", "Messages on the emitter's channels that were no broadcast", sum(|s| s.emitter_refused)),
        ("reconnects", "Connections to Redis made again after the first", links.iter().map(|l| l.reconnects).sum()),
        ("dropped", "Commands for Redis dropped: the link's queue was full or Redis away", links.iter().map(|l| l.dropped).sum()),
        ("dropped_events", "Messages from Redis dropped: the node did not keep up", links.iter().map(|l| l.dropped_events).sum()),
        ("lost", "Commands in flight when the link failed (Redis may or may not have run them)", links.iter().map(|l| l.lost).sum()),
        ("bytes_in", "Bytes of the messages Redis delivered", links.iter().map(|l| l.bytes_in).sum()),
        ("bytes_out", "Bytes of the commands Redis accepted", links.iter().map(|l| l.bytes_out).sum()),
    ] {
        c.register(name, help, ConstCounter::new(value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(
        connections: usize,
        namespaces: &[(&str, usize, usize)],
        disconnects: &[(&'static str, u64)],
    ) -> MountMetrics {
        let mut core = Metrics { connections, ..Metrics::default() };
        core.namespaces = namespaces.iter().map(|(n, s, r)| ((*n).to_owned(), *s, *r)).collect();
        core.disconnects = disconnects.to_vec();
        core.traffic.packets_in = 3;
        core.traffic.packets_out = 4;
        core.traffic.bytes_in = 30;
        core.traffic.bytes_out = 40;
        MountMetrics { core, overflows: 1, link: None, round_trips: None, store: None }
    }

    #[test]
    fn renders_every_metric_summed_over_mounts() {
        let snapshot = Snapshot {
            tcp_connections: 7,
            mounts: vec![
                mount(2, &[("/", 2, 1), ("/chat", 1, 0)], &[("transport close", 2)]),
                mount(1, &[("/", 1, 3)], &[("transport close", 1), ("ping timeout", 4)]),
            ],
        };
        let text = render(&snapshot);
        for line in [
            "# TYPE parlor_connections gauge",
            "parlor_connections 3",
            "parlor_tcp_connections 7",
            "# TYPE parlor_sockets gauge",
            "parlor_sockets{namespace=\"/\"} 3",
            "parlor_sockets{namespace=\"/chat\"} 1",
            "parlor_rooms{namespace=\"/\"} 4",
            "parlor_rooms{namespace=\"/chat\"} 0",
            "# TYPE parlor_packets counter",
            "parlor_packets_total{direction=\"in\"} 6",
            "parlor_packets_total{direction=\"out\"} 8",
            "parlor_bytes_total{direction=\"in\"} 60",
            "parlor_bytes_total{direction=\"out\"} 80",
            "parlor_disconnects_total{reason=\"ping timeout\"} 4",
            "parlor_disconnects_total{reason=\"transport close\"} 3",
            "parlor_outbound_overflows_total 2",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn every_metric_has_help_and_type_before_its_samples_and_the_text_ends_with_eof() {
        let mut m = mount(0, &[("/", 0, 0)], &[]);
        let store = store_latency();
        store.get_or_create(&RequestKind { kind: "write" }).observe(0.003);
        m.store = Some(store);
        let text = render(&Snapshot { tcp_connections: 0, mounts: vec![m] });
        let mut declared = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                declared.insert(rest.split(' ').next().unwrap().to_owned());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                let family = ["_total", "_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|suffix| name.strip_suffix(suffix))
                    .unwrap_or(name);
                assert!(declared.contains(family), "{name} sampled before its TYPE");
            }
        }
        assert!(text.contains("parlor_store_request_seconds_count{kind=\"write\"} 1"), "{text}");
        assert_eq!(text.lines().last(), Some("# EOF"));
    }

    #[test]
    fn cluster_numbers_appear_in_cluster_mode_only() {
        let alone = render(&Snapshot { tcp_connections: 0, mounts: vec![mount(0, &[], &[])] });
        assert!(!alone.contains("parlor_cluster"), "{alone}");
        let mut m = mount(0, &[], &[]);
        m.core.cluster = Some(parlor_core::cluster::ClusterStats {
            published: 5,
            duplicates: 2,
            live_nodes: 2,
            ..Default::default()
        });
        m.link = Some(LinkStats { up: true, dropped: 3, ..LinkStats::default() });
        let text = render(&Snapshot { tcp_connections: 0, mounts: vec![m] });
        for line in [
            "parlor_cluster_link_up 1",
            "parlor_cluster_live_nodes 2",
            "parlor_cluster_published_total 5",
            "parlor_cluster_duplicates_total 2",
            "parlor_cluster_dropped_total 3",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn label_values_from_clients_are_escaped() {
        let text = render(&Snapshot { tcp_connections: 0, mounts: vec![mount(1, &[("/a\"b\\c\nd", 1, 0)], &[])] });
        assert!(text.contains("parlor_sockets{namespace=\"/a\\\"b\\\\c\\nd\"} 1"), "{text}");
    }
}
