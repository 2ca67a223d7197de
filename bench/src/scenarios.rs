//! The scenarios: each sets its clients up (concurrency-limited), then measures a window
//! between two samples of the server's and the generator's CPU time, and builds a report.

use super::client::{Conn, Target};
use super::proto::{self, Sio};
use super::report::{opt, round, us, Report};
use super::rng::Rng;
use super::stats::{self, ProcSample};
use super::{now_ns, with_local, BenchArgs, Local, Pool, Scenario};
use anyhow::bail;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Semaphore};

/// The room of `fanout` and `idle`.
const ROOM: &str = "bench";
/// Errors kept for the report (the first ones).
const KEEP_ERRORS: usize = 5;
/// Read buffer of a connection that mostly idles (it grows when a frame needs more).
const SMALL_RX: usize = 512;
/// Read buffer of a busy connection.
const BUSY_RX: usize = 16 * 1024;

/// What every client task shares with the coordinator.
struct Ctx {
    /// The servers: client i connects to `targets[i % len]`.
    targets: Vec<Target>,
    setup: Semaphore,
    setup_timeout: Duration,
    seed: u64,
    /// Clients connected (and joined).
    ready: AtomicU64,
    /// Setups (or storm cycles) that failed.
    failed: AtomicU64,
    /// Operations so far (fanout deliveries), for progress and completion.
    ops: AtomicU64,
    /// When the last counted operation happened (ns).
    last_ns: AtomicU64,
    /// Connections the server closed while the run was on.
    closed: AtomicU64,
    /// Acks whose payload was not what was sent.
    mismatched: AtomicU64,
    /// Messages sent (rooms).
    sent: AtomicU64,
    /// The measured window ends here (ns); operations after it are not counted.
    deadline_ns: AtomicU64,
    /// The run is over: stop sending, do not count connections closing.
    stopping: AtomicBool,
    errors: Mutex<Vec<String>>,
}

impl Ctx {
    fn error(&self, e: impl std::fmt::Display) {
        if let Ok(mut errors) = self.errors.lock() {
            if errors.len() < KEEP_ERRORS {
                errors.push(e.to_string());
            }
        }
    }

    fn lost(&self, e: &anyhow::Error) {
        if !self.stopping.load(Relaxed) {
            self.closed.fetch_add(1, Relaxed);
            self.error(format!("{e:#}"));
        }
    }

    /// The server client `i` connects to (the fanout publisher, `usize::MAX`, to the first).
    fn target(&self, i: usize) -> &Target {
        if i == usize::MAX {
            &self.targets[0]
        } else {
            &self.targets[i % self.targets.len()]
        }
    }

    fn seed(&self, i: usize) -> u64 {
        self.seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let mut targets = Vec::new();
    for url in args.url.split(',').filter(|u| !u.is_empty()) {
        targets.push(Target::resolve(url).await?);
    }
    if targets.is_empty() {
        bail!("--url names no server");
    }
    let clients = match args.scenario {
        Scenario::Fanout => args.clients.unwrap_or(1000),
        Scenario::Echo | Scenario::Storm => args.clients.unwrap_or(50),
        Scenario::Idle => args.clients.unwrap_or(10_000),
        Scenario::Rooms => args.rooms * args.members,
    };
    if clients == 0 {
        bail!("no clients: --clients (or --rooms × --members) must be at least 1");
    }
    let want = clients as u64 + 256;
    let nofile = stats::raise_nofile(want);
    if nofile < want {
        eprintln!("warning: open-file limit {nofile} is below the {want} this run needs; connections will fail");
    }
    for pid in &args.server_pid {
        stats::sample_process(*pid).map_err(|e| anyhow::anyhow!("--server-pid {pid}: {e}"))?;
    }
    let ctx = Arc::new(Ctx {
        targets,
        setup: Semaphore::new(args.connect_concurrency),
        setup_timeout: Duration::from_secs_f64(args.timeout),
        seed: now_ns() ^ u64::from(std::process::id()).rotate_left(32),
        ready: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        ops: AtomicU64::new(0),
        last_ns: AtomicU64::new(0),
        closed: AtomicU64::new(0),
        mismatched: AtomicU64::new(0),
        sent: AtomicU64::new(0),
        deadline_ns: AtomicU64::new(u64::MAX),
        stopping: AtomicBool::new(false),
        errors: Mutex::new(Vec::new()),
    });
    let pool = Pool::new(args.threads)?;
    let say = |s: String| {
        if !args.json {
            eprintln!("{s}");
        }
    };
    let mut report = match args.scenario {
        Scenario::Fanout => fanout(&pool, &ctx, &args, clients, say).await?,
        Scenario::Echo => echo(&pool, &ctx, &args, clients, say).await?,
        Scenario::Idle => idle(&pool, &ctx, &args, clients, say).await?,
        Scenario::Storm => storm(&pool, &ctx, &args, clients, say).await?,
        Scenario::Rooms => rooms(&pool, &ctx, &args, clients, say).await?,
    };
    ctx.stopping.store(true, Relaxed);
    report.field("threads", args.threads as u64);
    let errors = ctx.errors.lock().map(|e| e.clone()).unwrap_or_default();
    report.field("errors", errors.clone());
    report.print(args.json);
    if !args.json {
        for e in errors {
            println!("  error: {e}");
        }
    }
    drop(pool);
    Ok(())
}

/// Connects client `i`, joins `room` if given: `None` (counted and kept) on failure.
async fn setup(ctx: &Ctx, i: usize, room: Option<&str>, rx_capacity: usize) -> Option<Conn> {
    let permit = ctx.setup.acquire().await.ok()?;
    let attempt = async {
        let mut conn = Conn::connect(ctx.target(i), ctx.seed(i), rx_capacity).await?;
        if let Some(room) = room {
            conn.join(room).await?;
        }
        anyhow::Ok(conn)
    };
    let result = tokio::time::timeout(ctx.setup_timeout, attempt).await;
    drop(permit);
    match result {
        Ok(Ok(conn)) => {
            ctx.ready.fetch_add(1, Relaxed);
            Some(conn)
        }
        Ok(Err(e)) => {
            ctx.failed.fetch_add(1, Relaxed);
            ctx.error(format!("setup: {e:#}"));
            None
        }
        Err(_) => {
            ctx.failed.fetch_add(1, Relaxed);
            ctx.error(format!("setup: timed out after {:?}", ctx.setup_timeout));
            None
        }
    }
}

/// Waits until `n` setups have finished, one way or the other.
async fn setups_done(ctx: &Ctx, n: u64) {
    while ctx.ready.load(Relaxed) + ctx.failed.load(Relaxed) < n {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Keeps a connection alive (answering pings) until the run ends.
async fn idle_loop(mut conn: Conn, ctx: Arc<Ctx>) {
    loop {
        if let Err(e) = conn.pump().await {
            ctx.lost(&e);
            return;
        }
        match conn.drain(|_, _| {}) {
            Ok(0) => {}
            Ok(pings) => with_local(|l| l.pings += pings),
            Err(e) => {
                ctx.lost(&e);
                return;
            }
        }
    }
}

/// CPU time of the server and of the generator from the start of the measured window.
struct Window {
    pids: Vec<u32>,
    server: Option<ProcSample>,
    own: Duration,
    start_ns: u64,
    /// Busy CPU seconds of the whole machine.
    machine: Option<f64>,
}

impl Window {
    fn start(pids: &[u32]) -> Window {
        let server = stats::sample_processes(pids);
        Window {
            pids: pids.to_vec(),
            server,
            own: stats::own_cpu(),
            start_ns: now_ns(),
            machine: stats::machine_busy_secs(),
        }
    }

    /// Samples the end of the window and reports CPU per operation (`per` names it).
    fn finish(&self, report: &mut Report, per: &str, ops: u64) {
        let own = (stats::own_cpu() - self.own).as_secs_f64();
        let server = stats::sample_processes(&self.pids);
        let server_cpu = match (self.server, server) {
            (Some(a), Some(b)) => Some(b.cpu_secs - a.cpu_secs),
            _ => None,
        };
        let per_op = |secs: Option<f64>| opt(secs.filter(|_| ops > 0).map(|s| s * 1e6 / ops as f64), 3);
        report.shown(&format!("server_cpu_us_per_{per}"), &format!("server CPU µs/{per}"), per_op(server_cpu));
        report.shown(&format!("gen_cpu_us_per_{per}"), &format!("generator CPU µs/{per}"), per_op(Some(own)));
        // Busy fraction of a core over the window: near 1.0, that side is the bottleneck.
        let secs = (now_ns() - self.start_ns) as f64 / 1e9;
        report.field("server_cpu_s", opt(server_cpu, 3));
        report.field("gen_cpu_s", round(own, 3));
        report.shown("server_busy", "server cores busy", opt(server_cpu.map(|c| c / secs), 2));
        report.shown("gen_busy", "generator cores busy", opt(Some(own / secs), 2));
        // Everything else on the machine over the window (other builds, ...): the figures
        // are only comparable between runs where this is near 0.
        let machine = match (self.machine, stats::machine_busy_secs()) {
            (Some(a), Some(b)) => Some(b - a),
            _ => None,
        };
        let others = machine.map(|m| (m - own - server_cpu.unwrap_or(0.0)).max(0.0) / secs);
        report.shown("others_busy", "other processes' cores busy", opt(others, 2));
        report.shown("server_rss_kib", "server RSS KiB", server.map(|s| s.rss_kib));
    }
}

/// Latency fields from a histogram of nanoseconds.
fn latency(report: &mut Report, local: &Local) {
    let h = &local.latency;
    report.shown("p50_us", "p50 µs", us(h.percentile(50.0)));
    report.shown("p99_us", "p99 µs", us(h.percentile(99.0)));
    report.shown("max_us", "max µs", us(h.max()));
}

async fn fanout(
    pool: &Pool,
    ctx: &Arc<Ctx>,
    args: &BenchArgs,
    clients: usize,
    say: impl Fn(String),
) -> anyhow::Result<Report> {
    let (m, size, window) = (args.messages, args.size, args.in_flight.max(1));
    let t = now_ns();
    for i in 0..clients {
        let ctx = ctx.clone();
        pool.spawn(i, async move {
            if let Some(conn) = setup(&ctx, i, Some(ROOM), BUSY_RX).await {
                receiver(conn, ctx).await;
            }
        });
    }
    setups_done(ctx, clients as u64).await;
    let receivers = ctx.ready.load(Relaxed);
    // The publisher is in the room too: its own copies tell it what the server took.
    let (go_tx, go) = watch::channel(false);
    let publisher_done = Arc::new(AtomicBool::new(false));
    {
        let (ctx, done) = (ctx.clone(), publisher_done.clone());
        pool.spawn(clients, async move {
            if let Some(conn) = setup(&ctx, usize::MAX, Some(ROOM), BUSY_RX).await {
                publisher(conn, ctx, go, m, size, window, done).await;
            }
        });
    }
    setups_done(ctx, clients as u64 + 1).await;
    if ctx.ready.load(Relaxed) != receivers + 1 {
        bail!("the publisher could not connect: {:?}", ctx.errors.lock().map(|e| e.clone()).unwrap_or_default());
    }
    say(format!(
        "fanout: {receivers} receivers + 1 publisher up in {:.2} s ({} failed); {m} messages of {size} B, {window} in flight",
        (now_ns() - t) as f64 / 1e9,
        ctx.failed.load(Relaxed)
    ));
    tokio::time::sleep(Duration::from_millis(200)).await;
    pool.take_locals().await;
    let w = Window::start(&args.server_pid);
    let _ = go_tx.send(true);

    let expected = receivers * m;
    let stall = Duration::from_secs_f64(args.timeout);
    let (mut seen, mut since) = (0, std::time::Instant::now());
    loop {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let got = ctx.ops.load(Relaxed);
        if got >= expected {
            break;
        }
        if got != seen {
            (seen, since) = (got, std::time::Instant::now());
        } else if since.elapsed() >= stall {
            say(format!("fanout: no delivery for {stall:?}: stopping at {got} of {expected}"));
            break;
        }
    }
    let end = ctx.last_ns.load(Relaxed).max(w.start_ns + 1);
    let mut report = Report::new(Scenario::Fanout.name());
    w.finish(&mut report, "msg", ctx.ops.load(Relaxed));
    ctx.stopping.store(true, Relaxed);
    let local = pool.take_locals().await;
    let received = local.ops;
    let secs = (end - w.start_ns) as f64 / 1e9;
    let mut r = Report::new(Scenario::Fanout.name());
    r.shown("clients", "receivers", receivers)
        .field("messages", m)
        .field("size", size as u64)
        .field("in_flight", window)
        .field("expected", expected)
        .shown("received", "delivered", received)
        .shown("lost", "lost", expected.saturating_sub(received))
        .field("extra", received.saturating_sub(expected))
        .field("publisher_done", publisher_done.load(Relaxed))
        .shown("duration_s", "duration s", round(secs, 3))
        .shown("msgs_per_s", "delivered msgs/s", round(received as f64 / secs, 0));
    latency(&mut r, &local);
    r.merge(report);
    r.field("connect_failed", ctx.failed.load(Relaxed)).field("closed", ctx.closed.load(Relaxed));
    Ok(r)
}

/// A fanout receiver: counts `message` events and records their latency, batch by batch.
async fn receiver(mut conn: Conn, ctx: Arc<Ctx>) {
    loop {
        if let Err(e) = conn.pump().await {
            ctx.lost(&e);
            return;
        }
        let now = now_ns();
        let mut got = 0u64;
        let drained = with_local(|l| {
            let pings = conn.drain(|_, sio| {
                if let Sio::Event { data, .. } = sio {
                    if let Some((sent, _)) = proto::message_stamp(data) {
                        l.latency.record(now.saturating_sub(sent));
                        got += 1;
                    }
                }
            })?;
            l.ops += got;
            l.pings += pings;
            anyhow::Ok(())
        });
        if got > 0 {
            ctx.ops.fetch_add(got, Relaxed);
            ctx.last_ns.fetch_max(now, Relaxed);
        }
        if let Err(e) = drained {
            ctx.lost(&e);
            return;
        }
    }
}

/// The fanout publisher: keeps `window` messages outstanding until `m` are back.
async fn publisher(
    mut conn: Conn,
    ctx: Arc<Ctx>,
    mut go: watch::Receiver<bool>,
    m: u64,
    size: usize,
    window: u64,
    done: Arc<AtomicBool>,
) {
    if go.wait_for(|g| *g).await.is_err() {
        return;
    }
    let (mut sent, mut back) = (0u64, 0u64);
    while back < m {
        while sent < m && sent - back < window {
            let t = now_ns();
            conn.tx.text_with(|b| proto::write_message(b, ROOM, t, sent, size));
            sent += 1;
        }
        let step = async {
            conn.pump().await?;
            conn.drain(|_, sio| {
                if let Sio::Event { data, .. } = sio {
                    if proto::message_stamp(data).is_some() {
                        back += 1;
                    }
                }
            })
        };
        if let Err(e) = step.await {
            ctx.error(format!("publisher: {e:#}"));
            return;
        }
    }
    done.store(true, Relaxed);
    idle_loop(conn, ctx).await;
}

async fn echo(
    pool: &Pool,
    ctx: &Arc<Ctx>,
    args: &BenchArgs,
    clients: usize,
    say: impl Fn(String),
) -> anyhow::Result<Report> {
    let secs = args.seconds.unwrap_or(10.0);
    let (go_tx, go) = watch::channel(false);
    for i in 0..clients {
        let (ctx, go, size) = (ctx.clone(), go.clone(), args.size);
        pool.spawn(i, async move {
            if let Some(conn) = setup(&ctx, i, None, BUSY_RX).await {
                echo_client(conn, ctx, go, i as u64, size).await;
            }
        });
    }
    setups_done(ctx, clients as u64).await;
    let ready = ctx.ready.load(Relaxed);
    if ready == 0 {
        bail!("no client could connect: {:?}", ctx.errors.lock().map(|e| e.clone()).unwrap_or_default());
    }
    say(format!("echo: {ready} clients up ({} failed); {secs} s of round trips", ctx.failed.load(Relaxed)));
    pool.take_locals().await;
    let w = Window::start(&args.server_pid);
    let deadline = w.start_ns + (secs * 1e9) as u64;
    ctx.deadline_ns.store(deadline, Relaxed);
    let _ = go_tx.send(true);
    tokio::time::sleep(Duration::from_nanos(deadline.saturating_sub(now_ns()))).await;
    let mut cpu = Report::new(Scenario::Echo.name());
    let local = pool.take_locals().await;
    w.finish(&mut cpu, "ack", local.ops);
    ctx.stopping.store(true, Relaxed);
    let mut r = Report::new(Scenario::Echo.name());
    r.shown("clients", "clients", ready)
        .field("size", args.size as u64)
        .shown("seconds", "seconds", secs)
        .shown("acks", "acks", local.ops)
        .shown("acks_per_s", "acks/s", round(local.ops as f64 / secs, 0))
        .shown("mismatched", "mismatched acks", ctx.mismatched.load(Relaxed));
    latency(&mut r, &local);
    r.merge(cpu);
    r.field("connect_failed", ctx.failed.load(Relaxed)).field("closed", ctx.closed.load(Relaxed));
    Ok(r)
}

/// Round trips, one outstanding, until the deadline; then idles.
async fn echo_client(mut conn: Conn, ctx: Arc<Ctx>, mut go: watch::Receiver<bool>, idx: u64, size: usize) {
    if go.wait_for(|g| *g).await.is_err() {
        return;
    }
    let deadline = ctx.deadline_ns.load(Relaxed);
    let mut id = 1u64;
    loop {
        let t0 = now_ns();
        if t0 >= deadline {
            break;
        }
        conn.tx.text_with(|b| proto::write_echo(b, id, t0, idx, size));
        let (mut done, mut good) = (false, false);
        while !done {
            let step = async {
                conn.pump().await?;
                conn.drain(|_, sio| {
                    if let Sio::Ack { id: got, data, .. } = sio {
                        if got == id {
                            done = true;
                            good = proto::first_string(data, false).and_then(proto::stamp) == Some((t0, idx));
                        }
                    }
                })
            };
            match step.await {
                Ok(pings) => with_local(|l| l.pings += pings),
                Err(e) => {
                    ctx.lost(&e);
                    return;
                }
            }
        }
        let t1 = now_ns();
        if t1 <= deadline {
            with_local(|l| {
                l.latency.record(t1 - t0);
                l.ops += 1;
            });
        }
        if !good {
            ctx.mismatched.fetch_add(1, Relaxed);
        }
        id += 1;
    }
    idle_loop(conn, ctx).await;
}

async fn idle(
    pool: &Pool,
    ctx: &Arc<Ctx>,
    args: &BenchArgs,
    clients: usize,
    say: impl Fn(String),
) -> anyhow::Result<Report> {
    let hold = args.seconds.unwrap_or(30.0);
    let before = stats::sample_processes(&args.server_pid);
    let own_before = stats::own_rss_kib();
    let t = now_ns();
    for i in 0..clients {
        let ctx = ctx.clone();
        pool.spawn(i, async move {
            if let Some(conn) = setup(&ctx, i, Some(ROOM), SMALL_RX).await {
                idle_loop(conn, ctx).await;
            }
        });
    }
    let mut last_say = now_ns();
    while ctx.ready.load(Relaxed) + ctx.failed.load(Relaxed) < clients as u64 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if now_ns() - last_say > 2_000_000_000 {
            last_say = now_ns();
            say(format!("idle: {} connected, {} failed", ctx.ready.load(Relaxed), ctx.failed.load(Relaxed)));
        }
    }
    let setup_secs = (now_ns() - t) as f64 / 1e9;
    let connected = ctx.ready.load(Relaxed);
    say(format!(
        "idle: {connected} connected in {setup_secs:.2} s ({} failed); settling 2 s, then holding {hold} s",
        ctx.failed.load(Relaxed)
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = stats::sample_processes(&args.server_pid);
    let own_after = stats::own_rss_kib();
    pool.take_locals().await;
    let w = Window::start(&args.server_pid);
    tokio::time::sleep(Duration::from_secs_f64(hold)).await;
    let local = pool.take_locals().await;
    let mut cpu = Report::new(Scenario::Idle.name());
    w.finish(&mut cpu, "conn", connected);
    ctx.stopping.store(true, Relaxed);
    let per_conn = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) if connected > 0 => opt(Some((b as f64 - a as f64) / connected as f64), 2),
        _ => serde_json::Value::Null,
    };
    let mut r = Report::new(Scenario::Idle.name());
    r.shown("clients", "connections", connected)
        .shown("connect_failed", "connect errors", ctx.failed.load(Relaxed))
        .shown("setup_s", "setup s", round(setup_secs, 2))
        .shown("conns_per_s", "setups/s", round(connected as f64 / setup_secs, 0))
        .shown(
            "server_rss_per_conn_kib",
            "server RSS KiB/conn",
            per_conn(before.map(|s| s.rss_kib), after.map(|s| s.rss_kib)),
        )
        .field("server_rss_before_kib", before.map(|s| s.rss_kib))
        .field("server_rss_after_kib", after.map(|s| s.rss_kib))
        .shown("gen_rss_per_conn_kib", "generator RSS KiB/conn", per_conn(Some(own_before), Some(own_after)))
        .shown("hold_s", "held s", hold)
        .shown("pings", "pings answered", local.pings)
        .shown("closed", "closed by server", ctx.closed.load(Relaxed));
    // The server's CPU while the connections idle, per connection over the hold.
    r.field("server_cpu_hold_s", cpu.fields_value("server_cpu_s"));
    r.field("others_busy", cpu.fields_value("others_busy"));
    Ok(r)
}

async fn storm(
    pool: &Pool,
    ctx: &Arc<Ctx>,
    args: &BenchArgs,
    workers: usize,
    say: impl Fn(String),
) -> anyhow::Result<Report> {
    let secs = args.seconds.unwrap_or(10.0);
    say(format!("storm: {workers} workers connecting, joining and disconnecting for {secs} s"));
    pool.take_locals().await;
    let w = Window::start(&args.server_pid);
    let deadline = w.start_ns + (secs * 1e9) as u64;
    ctx.deadline_ns.store(deadline, Relaxed);
    for i in 0..workers {
        let ctx = ctx.clone();
        pool.spawn(i, storm_worker(ctx, i));
    }
    tokio::time::sleep(Duration::from_nanos(deadline.saturating_sub(now_ns()))).await;
    let local = pool.take_locals().await;
    let mut cpu = Report::new(Scenario::Storm.name());
    w.finish(&mut cpu, "conn", local.ops);
    ctx.stopping.store(true, Relaxed);
    let mut r = Report::new(Scenario::Storm.name());
    r.shown("clients", "workers", workers as u64)
        .shown("seconds", "seconds", secs)
        .shown("connections", "connections", local.ops)
        .shown("conns_per_s", "connections/s", round(local.ops as f64 / secs, 0))
        .shown("failures", "failures", ctx.failed.load(Relaxed));
    latency(&mut r, &local);
    r.merge(cpu);
    Ok(r)
}

/// Connect, CONNECT, join, DISCONNECT + close, again, until the deadline.
async fn storm_worker(ctx: Arc<Ctx>, worker: usize) {
    let room = format!("storm-{worker}");
    let deadline = ctx.deadline_ns.load(Relaxed);
    let mut n = 0usize;
    loop {
        let t0 = now_ns();
        if t0 >= deadline {
            return;
        }
        let cycle = async {
            let mut conn = Conn::connect(ctx.target(worker), ctx.seed(worker ^ (n << 20)), SMALL_RX).await?;
            conn.join(&room).await?;
            conn.close(Duration::from_secs(2)).await
        };
        let result = tokio::time::timeout(ctx.setup_timeout, cycle).await;
        let t1 = now_ns();
        n += 1;
        match result {
            Ok(Ok(())) if t1 <= deadline => with_local(|l| {
                l.latency.record(t1 - t0);
                l.ops += 1;
            }),
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                ctx.failed.fetch_add(1, Relaxed);
                ctx.error(format!("storm: {e:#}"));
            }
            Err(_) => {
                ctx.failed.fetch_add(1, Relaxed);
                ctx.error(format!("storm: cycle timed out after {:?}", ctx.setup_timeout));
            }
        }
    }
}

async fn rooms(
    pool: &Pool,
    ctx: &Arc<Ctx>,
    args: &BenchArgs,
    clients: usize,
    say: impl Fn(String),
) -> anyhow::Result<Report> {
    let secs = args.seconds.unwrap_or(10.0);
    let (go_tx, go) = watch::channel(false);
    for i in 0..clients {
        let (ctx, go) = (ctx.clone(), go.clone());
        let room = format!("room-{}", i % args.rooms);
        let (size, think_ms) = (args.size, args.think_ms);
        pool.spawn(i, async move {
            if let Some(conn) = setup(&ctx, i, Some(&room), BUSY_RX).await {
                member(conn, ctx, go, room, i as u64, size, think_ms).await;
            }
        });
    }
    setups_done(ctx, clients as u64).await;
    let ready = ctx.ready.load(Relaxed);
    if ready == 0 {
        bail!("no client could connect: {:?}", ctx.errors.lock().map(|e| e.clone()).unwrap_or_default());
    }
    say(format!(
        "rooms: {} rooms × {} members = {ready} clients up ({} failed); {secs} s of chat",
        args.rooms,
        args.members,
        ctx.failed.load(Relaxed)
    ));
    pool.take_locals().await;
    let w = Window::start(&args.server_pid);
    let deadline = w.start_ns + (secs * 1e9) as u64;
    ctx.deadline_ns.store(deadline, Relaxed);
    let _ = go_tx.send(true);
    tokio::time::sleep(Duration::from_nanos(deadline.saturating_sub(now_ns()))).await;
    let local = pool.take_locals().await;
    let mut cpu = Report::new(Scenario::Rooms.name());
    w.finish(&mut cpu, "msg", local.ops);
    ctx.stopping.store(true, Relaxed);
    let mut r = Report::new(Scenario::Rooms.name());
    r.shown("rooms", "rooms", args.rooms as u64)
        .shown("members", "members per room", args.members as u64)
        .field("clients", ready)
        .field("size", args.size as u64)
        .field("think_ms", args.think_ms)
        .shown("seconds", "seconds", secs)
        .shown("sent", "sent", ctx.sent.load(Relaxed))
        .shown("received", "delivered", local.ops)
        .shown("msgs_per_s", "delivered msgs/s", round(local.ops as f64 / secs, 0));
    latency(&mut r, &local);
    r.merge(cpu);
    r.field("connect_failed", ctx.failed.load(Relaxed)).field("closed", ctx.closed.load(Relaxed));
    Ok(r)
}

/// A chat member: sends to its room (4 in 5 chat-sized, 1 in 5 typing-sized), waits for
/// its own message to come back (recording everything it receives), pauses, again.
async fn member(
    mut conn: Conn,
    ctx: Arc<Ctx>,
    mut go: watch::Receiver<bool>,
    room: String,
    idx: u64,
    size: usize,
    think_ms: u64,
) {
    if go.wait_for(|g| *g).await.is_err() {
        return;
    }
    let deadline = ctx.deadline_ns.load(Relaxed);
    let mut rng = Rng::new(ctx.seed(idx as usize));
    // Receives what is there (recording it); true once our message `mine` is back.
    let receive = |conn: &mut Conn, mine: Option<u64>| {
        let now = now_ns();
        let mut back = false;
        let drained = with_local(|l| {
            let mut got = 0;
            let pings = conn.drain(|_, sio| {
                if let Sio::Event { data, .. } = sio {
                    if let Some((sent, from)) = proto::message_stamp(data) {
                        if now <= deadline {
                            l.latency.record(now.saturating_sub(sent));
                            got += 1;
                        }
                        back |= from == idx && Some(sent) == mine;
                    }
                }
            })?;
            l.ops += got;
            l.pings += pings;
            anyhow::Ok(())
        });
        drained.map(|()| back)
    };
    loop {
        let t = now_ns();
        if t >= deadline {
            break;
        }
        let len = if rng.below(5) == 0 { 0 } else { size / 2 + rng.below(size as u64 + 1) as usize };
        conn.tx.text_with(|b| proto::write_message(b, &room, t, idx, len));
        ctx.sent.fetch_add(1, Relaxed);
        loop {
            let step = async {
                conn.pump().await?;
                receive(&mut conn, Some(t))
            };
            match step.await {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => {
                    ctx.lost(&e);
                    return;
                }
            }
        }
        if think_ms > 0 {
            // Keep reading while thinking, or the others' messages would wait in the socket.
            let until = tokio::time::Instant::now() + Duration::from_millis(rng.below(2 * think_ms + 1));
            loop {
                tokio::select! {
                    () = tokio::time::sleep_until(until) => break,
                    filled = conn.fill() => {
                        let result = match filled {
                            Ok(0) => Err(anyhow::anyhow!("server closed the TCP connection")),
                            Ok(_) => receive(&mut conn, None).map(drop),
                            Err(e) => Err(e.into()),
                        };
                        if let Err(e) = result.and(conn.flush().await.map_err(Into::into)) {
                            ctx.lost(&e);
                            return;
                        }
                    }
                }
            }
        }
    }
    idle_loop(conn, ctx).await;
}
