//! What the binary's integration tests share: a `parlor` process on a free loopback port.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

pub const PARLOR: &str = env!("CARGO_BIN_EXE_parlor");

/// A running `parlor` with the given arguments (which must make it listen on
/// `127.0.0.1:0`), killed when dropped.
pub struct Server {
    child: Child,
    /// `host:port` from its "parlor listening on http://..." line.
    pub addr: String,
}

impl Server {
    pub fn start(args: &[&str]) -> Server {
        let mut child = Command::new(PARLOR)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let addr =
            line.trim().strip_prefix("parlor listening on http://").unwrap_or_else(|| panic!("{line}")).to_owned();
        Server { child, addr }
    }

    /// The server's resident memory now, in KiB (Linux: VmRSS in /proc).
    #[allow(dead_code)] // see `terminate`
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// SIGTERM, then the exit status.
    #[allow(dead_code)] // each test crate compiles this module; not every one stops a server so
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        self.child.wait().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
