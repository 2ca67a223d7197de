//! `/metrics`: the Prometheus text exposition of every mount's numbers, summed.
//!
//! The core counts (it sees every packet); the host adds what only it sees (open TCP
//! connections, outbound overflows) and renders. Mounts are summed so that dashboards do
//! not change when an application moves between paths.

use parlor_core::service::Metrics;
use std::collections::BTreeMap;
use std::fmt::Write;

/// One mount's numbers: the core's, plus the driver's own.
#[derive(Clone, Debug, Default)]
pub(crate) struct MountMetrics {
    pub core: Metrics,
    /// Connections closed because their outbound queue overflowed.
    pub overflows: u64,
}

/// Everything `/metrics` shows.
#[derive(Clone, Debug, Default)]
pub(crate) struct Snapshot {
    /// Open TCP connections (HTTP keep-alive and WebSocket).
    pub tcp_connections: usize,
    pub mounts: Vec<MountMetrics>,
}

/// The Prometheus content type of [`render`]'s output.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Renders `snapshot` in the Prometheus text format, one `# HELP`/`# TYPE` pair per metric.
pub(crate) fn render(snapshot: &Snapshot) -> String {
    let mut connections = 0usize;
    let mut overflows = 0u64;
    let (mut packets_in, mut packets_out, mut bytes_in, mut bytes_out) = (0u64, 0u64, 0u64, 0u64);
    // Sorted maps: a stable order makes the output diffable and testable.
    let mut namespaces: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut disconnects: BTreeMap<&str, u64> = BTreeMap::new();
    for m in &snapshot.mounts {
        let core = &m.core;
        connections += core.connections;
        overflows += m.overflows;
        packets_in += core.traffic.packets_in;
        packets_out += core.traffic.packets_out;
        bytes_in += core.traffic.bytes_in;
        bytes_out += core.traffic.bytes_out;
        for (name, sockets, rooms) in &core.namespaces {
            let entry = namespaces.entry(name.as_str()).or_default();
            entry.0 += sockets;
            entry.1 += rooms;
        }
        for (reason, n) in &core.disconnects {
            *disconnects.entry(reason).or_default() += n;
        }
    }

    let mut out = String::with_capacity(1024);
    header(&mut out, "parlor_connections", "gauge", "Open Engine.IO sessions.");
    let _ = writeln!(out, "parlor_connections {connections}");
    header(&mut out, "parlor_tcp_connections", "gauge", "Open TCP connections (HTTP and WebSocket).");
    let _ = writeln!(out, "parlor_tcp_connections {}", snapshot.tcp_connections);
    header(&mut out, "parlor_sockets", "gauge", "Connected Socket.IO sockets per namespace.");
    for (name, (sockets, _)) in &namespaces {
        let _ = writeln!(out, "parlor_sockets{{namespace=\"{}\"}} {sockets}", escape(name));
    }
    header(&mut out, "parlor_rooms", "gauge", "Rooms per namespace, not counting each socket's own room.");
    for (name, (_, rooms)) in &namespaces {
        let _ = writeln!(out, "parlor_rooms{{namespace=\"{}\"}} {rooms}", escape(name));
    }
    header(&mut out, "parlor_packets_total", "counter", "Engine.IO packets received and sent.");
    let _ = writeln!(out, "parlor_packets_total{{direction=\"in\"}} {packets_in}");
    let _ = writeln!(out, "parlor_packets_total{{direction=\"out\"}} {packets_out}");
    header(&mut out, "parlor_bytes_total", "counter", "Engine.IO payload bytes received and sent.");
    let _ = writeln!(out, "parlor_bytes_total{{direction=\"in\"}} {bytes_in}");
    let _ = writeln!(out, "parlor_bytes_total{{direction=\"out\"}} {bytes_out}");
    header(&mut out, "parlor_disconnects_total", "counter", "Socket.IO socket disconnects by reason.");
    for (reason, n) in &disconnects {
        let _ = writeln!(out, "parlor_disconnects_total{{reason=\"{}\"}} {n}", escape(reason));
    }
    header(
        &mut out,
        "parlor_outbound_overflows_total",
        "counter",
        "WebSockets closed because the client did not read fast enough.",
    );
    let _ = writeln!(out, "parlor_outbound_overflows_total {overflows}");
    out
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Escapes a label value: backslash, double quote and newline, as the format requires.
/// Namespace names come from clients, so this is not optional.
fn escape(value: &str) -> String {
    let mut s = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
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
        MountMetrics { core, overflows: 1 }
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
            "# TYPE parlor_packets_total counter",
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
    fn every_metric_has_help_and_type_before_its_samples() {
        let text = render(&Snapshot { tcp_connections: 0, mounts: vec![mount(0, &[("/", 0, 0)], &[])] });
        let mut declared = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                declared.insert(rest.split(' ').next().unwrap().to_owned());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                assert!(declared.contains(name), "{name} sampled before its TYPE");
            }
        }
    }

    #[test]
    fn label_values_from_clients_are_escaped() {
        let text = render(&Snapshot { tcp_connections: 0, mounts: vec![mount(1, &[("/a\"b\\c\nd", 1, 0)], &[])] });
        assert!(text.contains("parlor_sockets{namespace=\"/a\\\"b\\\\c\\nd\"} 1"), "{text}");
    }
}
