//! The wasmtime host against the real component (`edge/`, built for wasm32-wasip2):
//! the component computes exactly what the linked core computes, snapshots move between
//! the two, bad snapshots are refused, the compiled cache is used and survives corruption,
//! and a guest that spins, panics or eats memory does not take the host down.
//!
//! Needs `target/wasm32-wasip2/release/parlor_edge.wasm` (or `PARLOR_COMPONENT`) and, for the
//! fault tests, a build with the `test-spin` feature at `target/parlor_edge_test_spin.wasm`
//! (or `PARLOR_TEST_SPIN_COMPONENT`); `.ci/run` builds both. Without them the tests say
//! SKIPPED, unless `PARLOR_REQUIRE_COMPONENT=1` (CI), which makes a missing file a failure.

use bytes::Bytes;
use parlor::component::{ComponentMachine, Limits, Program, Runtime};
use parlor_core::app::records::RoomAnswer;
use parlor_core::app::{AppConfig, RoomService};
use parlor_core::config::ClusterConfig;
use parlor_core::conformance::{ConformanceApp, EngineEcho};
use parlor_core::host::{ClusterInput, ClusterOutput, ConnId, Frame, Input, Method, OutFrame, Output, Request};
use parlor_core::service::Machine;
use parlor_core::{Config, Instant, Service};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

const SEED: [u8; 32] = [7; 32];

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("target"))
}

fn find(env: &str, default: PathBuf) -> Option<PathBuf> {
    let path = std::env::var_os(env).map(PathBuf::from).unwrap_or(default);
    if path.exists() {
        return Some(path);
    }
    let hint = "cargo build -p parlor-edge --target wasm32-wasip2 --release (see .ci/run)";
    if std::env::var("PARLOR_REQUIRE_COMPONENT").is_ok_and(|v| v == "1") {
        panic!("component {} not found: {hint}", path.display());
    }
    eprintln!("SKIPPED: component {} not found: {hint}", path.display());
    None
}

fn component_file() -> Option<PathBuf> {
    find("PARLOR_COMPONENT", target_dir().join("wasm32-wasip2/release/parlor_edge.wasm"))
}

fn spin_file() -> Option<PathBuf> {
    find("PARLOR_TEST_SPIN_COMPONENT", target_dir().join("parlor_edge_test_spin.wasm"))
}

fn load(path: &Path, limits: Limits) -> Arc<Program> {
    Runtime::new(limits).unwrap().load(path).unwrap()
}

fn json(value: serde_json::Value) -> String {
    value.to_string()
}

/// One input, then everything it produced.
fn run(m: &mut dyn Machine, input: Input<'_>, now: u64) -> Vec<Output> {
    m.handle(input, Instant(now));
    std::iter::from_fn(|| m.poll_output()).collect()
}

fn run_timeout(m: &mut dyn Machine, now: u64) -> Vec<Output> {
    m.handle_timeout(Instant(now));
    std::iter::from_fn(|| m.poll_output()).collect()
}

fn get(conn: u64, query: &str) -> Input<'_> {
    Input::Request(Request {
        conn: ConnId(conn),
        method: Method::Get,
        query,
        body: b"",
        too_large: false,
        websocket: false,
        remote: Some("127.0.0.1".parse().unwrap()),
    })
}

fn post<'a>(conn: u64, query: &'a str, body: &'a [u8]) -> Input<'a> {
    Input::Request(Request {
        conn: ConnId(conn),
        method: Method::Post,
        query,
        body,
        too_large: false,
        websocket: false,
        remote: None,
    })
}

fn ws_open(conn: u64) -> Input<'static> {
    Input::Request(Request {
        conn: ConnId(conn),
        method: Method::Get,
        query: "EIO=4&transport=websocket",
        body: b"",
        too_large: false,
        websocket: true,
        remote: None,
    })
}

fn text(conn: u64, t: &str) -> Input<'_> {
    Input::Frame { conn: ConnId(conn), frame: Frame::Text(t) }
}

fn body(outputs: &[Output]) -> String {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Respond { body, .. } => Some(String::from_utf8_lossy(body).into_owned()),
            Output::Send { frame: OutFrame::Text(b), .. } => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("|")
}

/// The sid from a polling handshake answer (`0{"sid":"..."...}`).
fn sid(outputs: &[Output]) -> String {
    let b = body(outputs);
    let v: serde_json::Value = serde_json::from_str(b.strip_prefix('0').expect("an open packet")).unwrap();
    v["sid"].as_str().unwrap().to_owned()
}

/// Feeds the same inputs to both machines and requires the same outputs and deadlines.
struct Pair<'a> {
    native: &'a mut dyn Machine,
    wasm: &'a mut dyn Machine,
}

impl Pair<'_> {
    fn run(&mut self, input: Input<'_>, now: u64) -> Vec<Output> {
        let a = run(self.native, input.clone(), now);
        let b = run(self.wasm, input, now);
        assert_eq!(a, b, "the component and the linked core disagree at {now} ms");
        assert_eq!(self.native.poll_timeout(), self.wasm.poll_timeout(), "deadlines at {now} ms");
        a
    }

    fn timeout(&mut self, now: u64) -> Vec<Output> {
        let a = run_timeout(self.native, now);
        let b = run_timeout(self.wasm, now);
        assert_eq!(a, b, "the component and the linked core disagree on timers at {now} ms");
        a
    }
}

#[test]
fn the_component_computes_what_the_linked_core_computes() {
    let Some(file) = component_file() else { return };
    let program = load(&file, Limits::default());

    // The room service over long-polling: handshake, CONNECT, join (a store round trip),
    // send-message (another), the heartbeat.
    let config = Config { ping_interval_ms: 1_000, ping_timeout_ms: 500, ..Config::default() };
    let app = AppConfig::default();
    let cfg = json(serde_json::json!({ "core": config, "app": app }));
    let mut native = Service::new(config.clone(), SEED, Instant(0), RoomService::new(app));
    let mut wasm = ComponentMachine::new(program.clone(), "rooms", cfg, SEED, Instant(0)).unwrap();
    // A fresh component machine asks for a timeout step to learn its deadline.
    assert_eq!(wasm.poll_timeout(), Some(Instant(0)));
    assert!(run_timeout(&mut wasm, 0).is_empty());
    let mut p = Pair { native: &mut native, wasm: &mut wasm };
    p.run(Input::WallClock { unix_ms: 1_700_000_000_000 }, 0);
    let open = p.run(get(1, "EIO=4&transport=polling"), 1);
    let sid = sid(&open);
    let q = format!("EIO=4&transport=polling&sid={sid}");
    p.run(post(2, &q, b"40"), 2);
    let connected = p.run(get(3, &q), 3);
    assert!(body(&connected).starts_with("40{\"sid\""), "{}", body(&connected));
    let join = p.run(post(4, &q, br#"42["join",{"username":"ann","room":"lobby"}]"#), 4);
    let store_ids: Vec<_> = join
        .iter()
        .filter_map(|o| match o {
            Output::Store { id, .. } => Some(*id),
            _ => None,
        })
        .collect();
    for id in store_ids {
        p.run(Input::Stored { id, answer: RoomAnswer::Messages(vec![]).into() }, 5);
    }
    let msg = p.run(post(6, &q, br#"421["send-message",{"content":"hi","room":"lobby"}]"#), 6);
    for o in &msg {
        if let Output::Store { id, .. } = o {
            p.run(Input::Stored { id: *id, answer: RoomAnswer::Done.into() }, 7);
        }
    }
    let polled = p.run(get(8, &q), 8);
    let seen = body(&polled);
    assert!(
        seen.contains("room-info") && seen.contains("new-message") && seen.contains("[{\"success\":true"),
        "{seen}"
    );
    p.timeout(1_001);
    p.timeout(1_600);

    // Engine.IO echo over WebSocket, binary included.
    let mut native = EngineEcho::new(Config::default(), SEED, Instant(0));
    let mut wasm = ComponentMachine::new(program, "echo", "{}".into(), SEED, Instant(0)).unwrap();
    run_timeout(&mut wasm, 0);
    let mut p = Pair { native: &mut native, wasm: &mut wasm };
    p.run(ws_open(9), 10);
    let echoed = p.run(text(9, "4héllo"), 11);
    assert_eq!(body(&echoed), "4héllo");
    let bin = p.run(Input::Frame { conn: ConnId(9), frame: Frame::Binary(&[0, 1, 255]) }, 12);
    assert!(
        matches!(&bin[..], [Output::Send { frame: OutFrame::Binary(b), .. }] if b == &Bytes::from_static(&[0, 1, 255]))
    );
    p.run(Input::Shutdown, 13);
}

#[test]
fn the_component_speaks_the_cluster_contract_as_the_linked_core_does() {
    let Some(file) = component_file() else { return };
    let program = load(&file, Limits::default());
    let node = |id: &str| Config {
        cluster: Some(ClusterConfig { node_id: id.into(), prefix: "t".into(), ..ClusterConfig::default() }),
        ..Config::default()
    };
    let app = AppConfig::default();
    let cfg = json(serde_json::json!({ "core": node("a"), "app": app }));
    let mut native = Service::new(node("a"), SEED, Instant(0), RoomService::new(app.clone()));
    let mut wasm = ComponentMachine::new(program, "rooms", cfg, SEED, Instant(0)).unwrap();
    // The first step subscribes the node's own channel and the registry's, on both.
    let first = run_timeout(&mut wasm, 0);
    assert_eq!(first, run_timeout(&mut native, 0));
    assert_eq!(first.len(), 2, "{first:?}");
    let mut p = Pair { native: &mut native, wasm: &mut wasm };
    // The link comes up: a heartbeat and the registry key go out at once.
    p.run(Input::Cluster(ClusterInput::Up), 1);
    let beat = p.timeout(1);
    assert!(beat.iter().any(|o| matches!(o, Output::Cluster(ClusterOutput::SetExpiring { .. }))), "{beat:?}");
    p.run(ws_open(1), 2);
    p.run(text(1, "40"), 3);
    let joined = p.run(text(1, r#"42["join-room","lobby"]"#), 4);
    assert!(
        joined
            .iter()
            .any(|o| matches!(o, Output::Cluster(ClusterOutput::Subscribe { channel }) if channel.contains("lobby"))),
        "the room's channel is subscribed: {joined:?}"
    );
    // Another node's broadcast to the room arrives through the link.
    let mut other = Service::new(node("b"), [9; 32], Instant(0), RoomService::new(app));
    let mut out = run(&mut other, ws_open(7), 1);
    out.extend(run(&mut other, text(7, "40"), 2));
    out.extend(run(&mut other, text(7, r#"42["join-room","lobby"]"#), 3));
    out.extend(run(&mut other, text(7, r#"42["typing-start",{"room":"lobby"}]"#), 4));
    let published: Vec<(String, Bytes)> = out
        .into_iter()
        .filter_map(|o| match o {
            Output::Cluster(ClusterOutput::Publish { channel, payload }) if channel.contains("lobby") => {
                Some((channel, payload))
            }
            _ => None,
        })
        .collect();
    assert!(!published.is_empty(), "the other node published to the room");
    for (channel, payload) in &published {
        let delivered = p.run(Input::Cluster(ClusterInput::Message { channel, payload }), 5);
        assert!(delivered.iter().all(|o| matches!(o, Output::Send { conn: ConnId(1), .. })), "{delivered:?}");
    }
    p.run(Input::Cluster(ClusterInput::Down), 6);
    let bye = p.run(Input::Shutdown, 7);
    assert!(bye.iter().any(|o| matches!(o, Output::Cluster(ClusterOutput::Delete { .. }))), "{bye:?}");
}

#[test]
fn snapshots_move_between_the_linked_core_and_the_component_and_bad_ones_are_refused() {
    let Some(file) = component_file() else { return };
    let program = load(&file, Limits::default());
    // Recovery off: no offset argument appended to events.
    let config = Config { recovery_window_ms: 0, ..Config::default() };
    let mut native = Service::new(config, SEED, Instant(0), ConformanceApp::new());
    let open = run(&mut native, ws_open(1), 1);
    assert!(matches!(open[0], Output::Accept { .. }));
    run(&mut native, text(1, "40"), 2);

    // Linked core → component: the socket carries on.
    let snap = native.snapshot().unwrap();
    let mut wasm = ComponentMachine::restore(program.clone(), "conformance", "{}".into(), &snap, Instant(3)).unwrap();
    let back = run(&mut wasm, text(1, r#"42["message","still here"]"#), 4);
    assert_eq!(body(&back), r#"42["message-back","still here"]"#);

    // Component → component (a reload) and component → linked core.
    let snap = wasm.snapshot().unwrap();
    let mut again = ComponentMachine::restore(program.clone(), "conformance", "{}".into(), &snap, Instant(5)).unwrap();
    let ack = run(&mut again, text(1, r#"421["message-with-ack",1,2]"#), 6);
    assert_eq!(body(&ack), "431[1,2]");
    let mut linked = Service::<ConformanceApp>::restore(&again.snapshot().unwrap(), Instant(7)).unwrap();
    let back = run(&mut linked, text(1, r#"42["message","home"]"#), 8);
    assert_eq!(body(&back), r#"42["message-back","home"]"#);

    // Refusals name the reason; nothing panics.
    let err = ComponentMachine::restore(program.clone(), "rooms", "{}".into(), b"garbage", Instant(9)).unwrap_err();
    assert!(format!("{err:#}").contains("refused the snapshot: not a parlor snapshot"), "{err:#}");
    let echo = ComponentMachine::new(program.clone(), "echo", "{}".into(), SEED, Instant(0)).unwrap();
    let err =
        ComponentMachine::restore(program.clone(), "conformance", "{}".into(), &echo.snapshot().unwrap(), Instant(9))
            .unwrap_err();
    assert!(format!("{err:#}").contains("echo"), "{err:#}");
    let mut newer = snap.clone();
    newer[6] = newer[6].wrapping_add(1);
    let err = ComponentMachine::restore(program.clone(), "conformance", "{}".into(), &newer, Instant(9)).unwrap_err();
    assert!(format!("{err:#}").contains("format"), "{err:#}");
    let err = ComponentMachine::new(program, "nope", "{}".into(), SEED, Instant(0)).unwrap_err();
    assert!(format!("{err:#}").contains("unknown kind"), "{err:#}");
}

#[test]
fn the_compiled_cache_is_written_reused_and_replaced_when_bad() {
    let Some(file) = component_file() else { return };
    let dir = std::env::temp_dir().join(format!("parlor-component-cache-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let wasm = dir.join("parlor_edge.wasm");
    std::fs::copy(&file, &wasm).unwrap();
    let cache = dir.join("parlor_edge.wasm.cwasm");
    let runtime = Runtime::new(Limits::default()).unwrap();

    let started = std::time::Instant::now();
    runtime.load(&wasm).unwrap();
    let compiled = started.elapsed();
    let written = std::fs::read(&cache).expect("the cache is written next to the component");
    assert!(written.starts_with(b"parlor-cwasm\n"));

    let started = std::time::Instant::now();
    let program = runtime.load(&wasm).unwrap();
    let cached = started.elapsed();
    eprintln!("compile {compiled:?}, from cache {cached:?}");
    assert!(cached < compiled, "loading from the cache ({cached:?}) beats compiling ({compiled:?})");
    ComponentMachine::new(program, "echo", "{}".into(), SEED, Instant(0)).unwrap();

    // A corrupt cache is compiled around and rewritten; a stale key too.
    let mut bad = written.clone();
    let n = bad.len();
    bad[n / 2..].fill(0xAB);
    std::fs::write(&cache, &bad).unwrap();
    let program = runtime.load(&wasm).unwrap();
    ComponentMachine::new(program, "echo", "{}".into(), SEED, Instant(0)).unwrap();
    assert_eq!(std::fs::read(&cache).unwrap(), written);
    let mut stale = written.clone();
    stale[13] ^= 1;
    std::fs::write(&cache, &stale).unwrap();
    runtime.load(&wasm).unwrap();
    assert_eq!(std::fs::read(&cache).unwrap(), written);
    std::fs::write(&cache, b"short").unwrap();
    runtime.load(&wasm).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_spinning_panicking_or_hoarding_guest_does_not_take_the_host_down() {
    let Some(file) = spin_file() else { return };
    let limits = Limits { memory_bytes: 64 << 20, step_timeout: Duration::from_millis(300) };
    let program = load(&file, limits);
    let mut m = ComponentMachine::new(program, "test-spin", "{}".into(), SEED, Instant(0)).unwrap();
    run_timeout(&mut m, 0);
    let open = run(&mut m, ws_open(1), 1_000);
    assert!(matches!(open[0], Output::Accept { conn: ConnId(1) }));
    // A step at least a second after the last snapshot refreshes it: the session is in it.
    assert_eq!(body(&run(&mut m, text(1, "4before"), 1_001)), "4before");

    let started = std::time::Instant::now();
    let out = run(&mut m, text(1, "4spin"), 1_002);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "the step timeout stopped the loop ({took:?})");
    assert_eq!(out, vec![Output::Close { conn: ConnId(1), code: 1011, reason: "internal error" }]);
    assert_eq!(m.traps(), 1);
    // The fresh instance has the snapshot: the session still echoes.
    run_timeout(&mut m, 1_003);
    assert_eq!(body(&run(&mut m, text(1, "4after spin"), 1_004)), "4after spin");

    let out = run(&mut m, text(1, "4panic"), 1_005);
    assert_eq!(out, vec![Output::Close { conn: ConnId(1), code: 1011, reason: "internal error" }]);
    assert_eq!(m.traps(), 2);
    assert_eq!(body(&run(&mut m, text(1, "4after panic"), 1_006)), "4after panic");

    let started = std::time::Instant::now();
    let out = run(&mut m, text(1, "4grow"), 1_007);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(m.traps(), 3);
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(body(&run(&mut m, text(1, "4after grow"), 1_008)), "4after grow");

    // An HTTP request whose step traps gets a 500, not silence.
    let out = run(&mut m, post(7, "EIO=4&transport=polling&sid=x", b"4panic"), 1_009);
    assert!(matches!(&out[..], [Output::Respond { conn: ConnId(7), status: 500, .. }]), "{out:?}");
    assert_eq!(m.traps(), 4);
    // New sessions work, and metrics still answer.
    let open = run(&mut m, ws_open(2), 2_000);
    assert!(matches!(open[0], Output::Accept { conn: ConnId(2) }));
    assert!(m.metrics().connections >= 1);
}

/// The cost of a step through the component against the linked core (release build):
/// `cargo test --release -p parlor --test component -- --ignored --nocapture step_cost`.
#[test]
#[ignore = "a benchmark: run it by name with --ignored --nocapture"]
fn step_cost() {
    let Some(file) = component_file() else { return };
    let program = load(&file, Limits::default());
    const N: u64 = 10_000;

    /// The best of 5 runs of `steps` steps (the machine is shared: less noise than a mean).
    fn per_step(m: &mut dyn Machine, steps: u64, input: &dyn Fn(u64) -> Input<'static>) -> f64 {
        (0..5)
            .map(|_| {
                let started = std::time::Instant::now();
                for i in 0..steps {
                    m.handle(input(i), Instant(1_000 + i / 100));
                    while m.poll_output().is_some() {}
                }
                started.elapsed().as_nanos() as f64 / steps as f64
            })
            .fold(f64::INFINITY, f64::min)
    }

    fn timeouts(m: &mut dyn Machine, steps: u64) -> f64 {
        (0..5)
            .map(|_| {
                let started = std::time::Instant::now();
                for _ in 0..steps {
                    m.handle_timeout(Instant(1_000));
                    while m.poll_output().is_some() {}
                }
                started.elapsed().as_nanos() as f64 / steps as f64
            })
            .fold(f64::INFINITY, f64::min)
    }

    let echo = |_: u64| text(1, "4hello, world");
    let kib = |_: u64| -> Input<'static> {
        static KIB: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        text(1, KIB.get_or_init(|| format!("4{}", "x".repeat(1024))))
    };
    let mut rows = Vec::new();
    for (what, input) in
        [("echo, 13-byte text frame", &echo as &dyn Fn(u64) -> Input<'static>), ("echo, 1 KiB text frame", &kib)]
    {
        let mut native = EngineEcho::new(Config::default(), SEED, Instant(0));
        let mut wasm = ComponentMachine::new(program.clone(), "echo", "{}".into(), SEED, Instant(0)).unwrap();
        for m in [&mut native as &mut dyn Machine, &mut wasm] {
            m.handle_timeout(Instant(0));
            run(m, ws_open(1), 1);
            per_step(m, 1_000, input); // warm up
        }
        rows.push((what, per_step(&mut native, N, input), per_step(&mut wasm, N, input)));
    }
    // Room-service events broadcast to 9 others: `typing-start`/`typing-stop` (no store round trip).
    let config = Config { recovery_window_ms: 0, ..Config::default() };
    let app = AppConfig {
        typing_limit: parlor_core::app::ratelimit::Limit { capacity: u32::MAX, window_ms: 1 },
        ..AppConfig::default()
    };
    let cfg = json(serde_json::json!({ "core": config, "app": app }));
    let mut native = Service::new(config, SEED, Instant(0), RoomService::new(app));
    let mut wasm = ComponentMachine::new(program.clone(), "rooms", cfg, SEED, Instant(0)).unwrap();
    for m in [&mut native as &mut dyn Machine, &mut wasm] {
        m.handle_timeout(Instant(0));
        for c in 1..=10 {
            run(m, ws_open(c), 1);
            run(m, text(c, "40"), 1);
            for o in run(m, text(c, r#"42["join",{"username":"u","room":"r"}]"#), 1) {
                if let Output::Store { id, .. } = o {
                    run(m, Input::Stored { id, answer: RoomAnswer::Messages(vec![]).into() }, 1);
                }
            }
        }
    }
    let typing = |i: u64| match i % 2 {
        0 => text(1, r#"42["typing-start",{"room":"r"}]"#),
        _ => text(1, r#"42["typing-stop",{"room":"r"}]"#),
    };
    let t_native = per_step(&mut native, N, &typing);
    let t_wasm = per_step(&mut wasm, N, &typing);
    rows.push(("rooms, typing-start/stop to 9 others", t_native, t_wasm));
    let mut native = EngineEcho::new(Config::default(), SEED, Instant(0));
    let mut wasm = ComponentMachine::new(program, "echo", "{}".into(), SEED, Instant(0)).unwrap();
    rows.push(("timeout step, nothing due", timeouts(&mut native, N), timeouts(&mut wasm, N)));

    println!("\n| step (best of 5 × {N}) | linked core | component | ratio |\n|---|---|---|---|");
    for (what, native, wasm) in rows {
        println!("| {what} | {:.2} µs | {:.2} µs | {:.1}× |", native / 1000.0, wasm / 1000.0, wasm / native);
    }
}
