//! Every limit and timing of the core, with Socket.IO's defaults.

/// The core's settings. Every queue, map and buffer a client can grow is bounded here.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Config {
    pub ping_interval_ms: u64,
    pub ping_timeout_ms: u64,
    pub upgrade_timeout_ms: u64,
    pub connect_timeout_ms: u64,
    /// Largest packet (WebSocket frame) or polling POST body, in bytes.
    pub max_payload: usize,
    /// Attachments per binary packet.
    pub max_attachments: usize,
    /// A binary packet's attachments must all arrive within this time of its header;
    /// otherwise the session is closed (what it held is freed).
    pub attachment_timeout_ms: u64,
    /// Bytes of attachments held for packets not yet complete, over every session of the
    /// node; the attachment that would pass it closes its session.
    pub attachment_budget_bytes: usize,
    /// Bytes the core buffers for one session while it cannot send (polling between GETs,
    /// an upgrade in progress). Over it the session is closed as a transport error.
    pub max_buffered_bytes: usize,
    pub max_rooms_per_socket: usize,
    pub max_namespaces_per_connection: usize,
    pub max_connections: usize,
    /// New connections (handshakes) per remote IP per minute; 0 = unlimited (the default:
    /// load tests and proxies open many from one address). Over it → 403 Forbidden.
    pub max_new_connections_per_ip_per_min: u32,
    /// Sessions open at once per remote IP; 0 = unlimited (the default, for the same
    /// reasons). Over it → 403 Forbidden.
    pub max_sessions_per_ip: u32,
    /// Server-to-client acks awaited per socket.
    pub max_pending_acks: usize,
    /// Connection state recovery: how long a disconnected session can be resumed; 0 = off
    /// (the default, as in Socket.IO: with it on, every event without an ack carries one more,
    /// trailing argument, an offset that only socket.io-client knows to use).
    pub recovery_window_ms: u64,
    /// Packets kept for recovery replay (per node).
    pub recovery_max_packets: usize,
    /// Bytes of packets kept for recovery replay (per node).
    pub recovery_max_bytes: usize,
    /// Disconnected sessions kept for recovery.
    pub recovery_max_sessions: usize,
    /// Cluster mode: this node's place among others; `None` runs alone.
    pub cluster: Option<ClusterConfig>,
}

/// How a node takes part in a cluster.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ClusterConfig {
    /// This node's id (`--node-id`): printable ASCII, at most 64 bytes.
    pub node_id: String,
    /// Every channel and key starts with it (`--cluster-prefix`).
    pub prefix: String,
    /// How often the node says it is alive.
    pub heartbeat_ms: u64,
    /// A node not heard of for this long is gone (its registry key expires then too).
    pub node_expiry_ms: u64,
    /// How long a question to the other nodes (who is in a room opening here) waits for
    /// their answers; then it is answered with what arrived, naming the nodes that did not.
    pub query_timeout_ms: u64,
    /// Also deliver the broadcasts `@socket.io/redis-emitter` publishes with this key
    /// (`--socketio-emitter-key`); `None`: off.
    pub emitter_key: Option<String>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            node_id: String::new(),
            prefix: "parlor".into(),
            heartbeat_ms: 3_000,
            node_expiry_ms: 10_000,
            query_timeout_ms: 2_000,
            emitter_key: None,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            ping_interval_ms: 25_000,
            ping_timeout_ms: 20_000,
            upgrade_timeout_ms: 10_000,
            connect_timeout_ms: 45_000,
            max_payload: 1_000_000,
            max_attachments: 10,
            attachment_timeout_ms: 30_000,
            attachment_budget_bytes: 64 << 20,
            max_buffered_bytes: 1 << 20,
            max_rooms_per_socket: 1_000,
            max_namespaces_per_connection: 16,
            max_connections: 200_000,
            max_new_connections_per_ip_per_min: 0,
            max_sessions_per_ip: 0,
            max_pending_acks: 1_000,
            recovery_window_ms: 0,
            recovery_max_packets: 10_000,
            recovery_max_bytes: 64 << 20,
            recovery_max_sessions: 100_000,
            cluster: None,
        }
    }
}

/// The largest ack id a JavaScript client can count to (2^53 − 1).
pub const MAX_ACK_ID: u64 = (1 << 53) - 1;
/// JSON nesting deeper than this makes a packet invalid (serde_json's own limit is the same).
pub const MAX_JSON_DEPTH: usize = 128;
/// Arrays and objects one packet's JSON may hold. Each costs an allocation to parse: a
/// 1 MB packet of nothing but nested brackets held the core for ~90 ms; 20,000 cost a few.
pub const MAX_JSON_CONTAINERS: usize = 20_000;
