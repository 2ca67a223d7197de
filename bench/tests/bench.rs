//! `parlor bench` end to end against `examples/bench_server.rs`: every scenario runs with
//! small numbers, delivers everything, and prints its summary line (and table). Nothing
//! here asserts on timing: speed is measured in BENCHMARKS.md, not in tests.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// The `parlor` binary and the bench server of this test's profile.
struct Binaries {
    parlor: PathBuf,
    bench_server: PathBuf,
}

/// Builds them if needed: the `parlor` binary is another package's, and `cargo test` builds
/// examples but `cargo test --test bench` does not. Built as `.ci/run` builds the
/// workspace's binaries and examples, so that there they are already fresh: one package
/// alone resolves other features and rebuilt half the dependency tree (about 90 s on two
/// cores).
fn binaries() -> Binaries {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/bench-HASH
    let profile_dir = exe.parent().and_then(|p| p.parent()).unwrap().to_path_buf();
    let mut build = Command::new(env!("CARGO"));
    build.args(["build", "-j2", "--workspace", "--bins", "--examples"]);
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        build.arg("--release");
    }
    let out = build.output().unwrap();
    assert!(
        out.status.success(),
        "building parlor and the bench server failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let exists = |path: PathBuf| {
        assert!(path.exists(), "no {}", path.display());
        path
    };
    Binaries {
        parlor: exists(profile_dir.join("parlor")),
        bench_server: exists(profile_dir.join("examples").join("bench_server")),
    }
}

/// The bench server on a free port, killed on drop, and the `parlor` that runs the bench.
struct Server {
    child: Child,
    url: String,
    parlor: PathBuf,
}

impl Server {
    fn start() -> Server {
        let bins = binaries();
        let mut child = Command::new(&bins.bench_server)
            .args(["--listen", "127.0.0.1:0", "--log", "warn"])
            .env_remove("PARLOR_CONFIG")
            .env_remove("PARLOR_LISTEN")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let url = line.trim().strip_prefix("parlor listening on ").unwrap_or_else(|| panic!("{line:?}")).to_owned();
        Server { child, url, parlor: bins.parlor }
    }

    /// Runs `parlor bench ARGS` against this server; returns the summary and all stdout.
    fn bench(&self, args: &[&str]) -> (Value, String) {
        let pid = self.child.id().to_string();
        let out = Command::new(&self.parlor)
            .arg("bench")
            .args(args)
            .args(["--url", &self.url, "--server-pid", &pid])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{args:?}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        let first = stdout.lines().next().unwrap_or_default();
        assert!(first.starts_with("{\"scenario\":"), "{first}");
        let summary: Value = serde_json::from_str(first).unwrap();
        assert_eq!(summary["scenario"], args[0]);
        assert_eq!(summary["errors"], serde_json::json!([]), "{summary}");
        (summary, stdout)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn number(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or_else(|| panic!("{key} is not a number in {v}"))
}

#[test]
fn every_scenario_runs_against_the_bench_server() {
    let server = Server::start();

    // fanout: 20 receivers × 50 messages, nothing lost; the table follows the line.
    let (s, stdout) = server.bench(&["fanout", "--clients", "20", "--messages", "50", "--in-flight", "8"]);
    assert_eq!((s["clients"].as_u64(), s["expected"].as_u64()), (Some(20), Some(1000)), "{s}");
    assert_eq!((s["received"].as_u64(), s["lost"].as_u64(), s["extra"].as_u64()), (Some(1000), Some(0), Some(0)));
    assert_eq!(s["publisher_done"], true);
    assert!(number(&s, "p50_us") <= number(&s, "p99_us") && number(&s, "p99_us") <= number(&s, "max_us"), "{s}");
    assert!(number(&s, "msgs_per_s") > 0.0 && number(&s, "gen_cpu_us_per_msg") >= 0.0, "{s}");
    assert!(number(&s, "server_cpu_us_per_msg") >= 0.0 && number(&s, "server_rss_kib") > 0.0, "{s}");
    assert!(stdout.contains("delivered msgs/s") && stdout.contains("server CPU µs/msg"), "{stdout}");

    // echo: round trips with the payload coming back intact; --json prints one line only.
    let (s, stdout) = server.bench(&["echo", "--clients", "5", "--seconds", "1", "--json"]);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(s["acks"].as_u64().unwrap() > 0, "{s}");
    assert_eq!((s["mismatched"].as_u64(), s["closed"].as_u64()), (Some(0), Some(0)), "{s}");
    assert!(number(&s, "server_cpu_us_per_ack") >= 0.0, "{s}");

    // rooms: chat in 4 rooms of 3.
    let (s, _) = server.bench(&["rooms", "--rooms", "4", "--members", "3", "--seconds", "1", "--json"]);
    assert_eq!(s["clients"].as_u64(), Some(12));
    assert!(s["received"].as_u64().unwrap() >= s["sent"].as_u64().unwrap(), "each message reaches 3: {s}");
    assert_eq!((s["closed"].as_u64(), s["connect_failed"].as_u64()), (Some(0), Some(0)), "{s}");

    // storm: connection churn without failures.
    let (s, _) = server.bench(&["storm", "--clients", "4", "--seconds", "1", "--json"]);
    assert!(s["connections"].as_u64().unwrap() > 0, "{s}");
    assert_eq!(s["failures"].as_u64(), Some(0), "{s}");

    // idle: connections held, the server's memory per connection reported.
    let (s, _) = server.bench(&["idle", "--clients", "50", "--seconds", "0.2", "--json"]);
    assert_eq!((s["clients"].as_u64(), s["connect_failed"].as_u64()), (Some(50), Some(0)), "{s}");
    assert!(s["server_rss_per_conn_kib"].is_number() && s["closed"] == 0, "{s}");
}
