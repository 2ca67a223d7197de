//! Measuring: a latency histogram (log-linear, under 0.8% error, constant-time record,
//! mergeable), the server's CPU time and RSS from `/proc`, the generator's own CPU time
//! (`getrusage`), and the open-file limit.

use std::time::Duration;

/// Values below this are recorded exactly.
const EXACT: u64 = 256;
/// Sub-buckets per power of two above [`EXACT`] (7 bits of mantissa).
const SUB: u64 = 128;
/// Buckets: the exact range, then 128 per power of two from 2^8 to 2^63.
const BUCKETS: usize = (EXACT + (64 - 8) * SUB) as usize;

/// A histogram of `u64` values (nanoseconds, here). Relative error of a reported
/// percentile: under 1/128; min and max are exact.
#[derive(Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    min: u64,
    max: u64,
    sum: u128,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new()
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram").field("total", &self.total).field("min", &self.min).field("max", &self.max).finish()
    }
}

/// The bucket of `v`.
#[must_use]
pub fn bucket_of(v: u64) -> usize {
    if v < EXACT {
        return v as usize;
    }
    let e = 63 - u64::from(v.leading_zeros()); // floor(log2 v) >= 8
    let shift = e - 7;
    let mantissa = v >> shift; // in 128..=255
    (EXACT + (e - 8) * SUB + (mantissa - SUB)) as usize
}

/// The smallest and largest value that land in bucket `b`.
#[must_use]
pub fn bucket_range(b: usize) -> (u64, u64) {
    let b = b as u64;
    if b < EXACT {
        return (b, b);
    }
    let e = (b - EXACT) / SUB + 8;
    let mantissa = (b - EXACT) % SUB + SUB;
    let shift = e - 7;
    let low = mantissa << shift;
    (low, low + ((1u64 << shift) - 1))
}

impl Histogram {
    #[must_use]
    pub fn new() -> Histogram {
        Histogram { counts: vec![0; BUCKETS], total: 0, min: u64::MAX, max: 0, sum: 0 }
    }

    pub fn record(&mut self, v: u64) {
        self.counts[bucket_of(v)] += 1;
        self.total += 1;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.sum += u128::from(v);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.sum += other.sum;
    }

    #[must_use]
    pub fn count(&self) -> u64 {
        self.total
    }

    #[must_use]
    pub fn max(&self) -> Option<u64> {
        (self.total > 0).then_some(self.max)
    }

    #[must_use]
    pub fn mean(&self) -> Option<f64> {
        (self.total > 0).then(|| self.sum as f64 / self.total as f64)
    }

    /// The `p`-th percentile (0 < p <= 100) by the nearest-rank method: the smallest
    /// recorded value with at least p% of the values at or below it. Reported as the
    /// middle of its bucket, clamped to the exact min and max. `None` when empty.
    #[must_use]
    pub fn percentile(&self, p: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((p / 100.0) * self.total as f64).ceil().clamp(1.0, self.total as f64) as u64;
        let mut seen = 0;
        for (b, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let (low, high) = bucket_range(b);
                return Some((low + (high - low) / 2).clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }
}

/// The nearest-rank percentile of exact values (sorts them): the reference the histogram
/// is tested against, and what the human table uses for small samples (medians of runs).
#[must_use]
pub fn percentile_exact(values: &mut [f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let rank = ((p / 100.0) * n as f64).ceil().clamp(1.0, n as f64) as usize;
    Some(values[rank - 1])
}

/// A moment of another process: CPU time so far and resident memory.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcSample {
    /// utime + stime, in seconds.
    pub cpu_secs: f64,
    /// VmRSS, KiB.
    pub rss_kib: u64,
}

/// `(utime, stime)` in clock ticks from the text of `/proc/PID/stat`.
#[must_use]
pub fn parse_stat_times(stat: &str) -> Option<(u64, u64)> {
    // The command name (field 2) is in parentheses and may contain spaces: split after
    // the last ')'. Then field 3 (state) is index 0, utime (14) index 11, stime (15) 12.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let utime = fields.nth(11)?.parse().ok()?;
    let stime = fields.next()?.parse().ok()?;
    Some((utime, stime))
}

/// VmRSS in KiB from the text of `/proc/PID/status`.
#[must_use]
pub fn parse_vmrss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line["VmRSS:".len()..].trim().trim_end_matches("kB").trim().parse().ok()
}

/// Busy CPU time of the whole machine, in clock ticks, from the text of `/proc/stat`
/// (every state of the `cpu` line but idle and iowait).
#[must_use]
pub fn parse_machine_busy(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let values: Vec<u64> = line.split_ascii_whitespace().skip(1).map(|v| v.parse().ok()).collect::<Option<_>>()?;
    if values.len() < 5 {
        return None;
    }
    // user nice system idle iowait irq softirq steal [guest guest_nice: already in user/nice]
    let busy = values.iter().take(8).enumerate().filter(|&(i, _)| i != 3 && i != 4).map(|(_, v)| v).sum();
    Some(busy)
}

/// Seconds of CPU the whole machine has been busy (all cores), if `/proc/stat` says.
#[must_use]
pub fn machine_busy_secs() -> Option<f64> {
    let busy = parse_machine_busy(&std::fs::read_to_string("/proc/stat").ok()?)?;
    Some(busy as f64 / clock_ticks())
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// Samples process `pid` from `/proc`.
/// The processes' CPU time and RSS, summed; `None` for no process or one that cannot be read.
#[must_use]
pub fn sample_processes(pids: &[u32]) -> Option<ProcSample> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().try_fold(ProcSample { cpu_secs: 0.0, rss_kib: 0 }, |sum, pid| {
        let s = sample_process(*pid).ok()?;
        Some(ProcSample { cpu_secs: sum.cpu_secs + s.cpu_secs, rss_kib: sum.rss_kib + s.rss_kib })
    })
}

pub fn sample_process(pid: u32) -> std::io::Result<ProcSample> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("cannot parse {what}"));
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let (utime, stime) = parse_stat_times(&stat).ok_or_else(|| bad("/proc/PID/stat"))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss_kib = parse_vmrss(&status).ok_or_else(|| bad("VmRSS"))?;
    Ok(ProcSample { cpu_secs: (utime + stime) as f64 / clock_ticks(), rss_kib })
}

/// This process's CPU time (user + system, all threads) so far.
#[must_use]
pub fn own_cpu() -> Duration {
    // SAFETY: getrusage writes into the zeroed struct we pass; RUSAGE_SELF is valid.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut u) != 0 {
            return Duration::ZERO;
        }
        u
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec as u32) * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// This process's resident memory, KiB (0 if unknown).
#[must_use]
pub fn own_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status").ok().and_then(|s| parse_vmrss(&s)).unwrap_or(0)
}

/// Raises the soft open-file limit to at least `want` if it can (up to the hard limit,
/// or beyond it with the privilege to raise that too). Returns the soft limit now in force.
pub fn raise_nofile(want: u64) -> u64 {
    // SAFETY: getrlimit/setrlimit with a valid resource and a valid struct pointer.
    unsafe {
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur >= want {
            return lim.rlim_cur;
        }
        if lim.rlim_max < want {
            let raised = libc::rlimit { rlim_cur: want, rlim_max: want };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return want;
            }
        }
        let soft = libc::rlimit { rlim_cur: lim.rlim_max.min(want.max(lim.rlim_cur)), rlim_max: lim.rlim_max };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &soft) == 0 {
            soft.rlim_cur
        } else {
            lim.rlim_cur
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_value_contiguously() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(255), 255);
        assert_eq!(bucket_of(256), 256);
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        let mut next = 0u64;
        for b in 0..BUCKETS {
            let (low, high) = bucket_range(b);
            assert_eq!(low, next, "bucket {b} starts where {} ended", b.saturating_sub(1));
            assert!(high >= low);
            assert_eq!(bucket_of(low), b);
            assert_eq!(bucket_of(high), b);
            // The width is under 1/128 of the values in it.
            assert!((high - low) as f64 <= low as f64 / 128.0 + 1.0, "bucket {b}");
            next = high.wrapping_add(1);
        }
        assert_eq!(next, 0, "the last bucket ends at u64::MAX");
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut h = Histogram::new();
        assert_eq!(h.percentile(50.0), None);
        assert_eq!(h.max(), None);
        for v in 1..=100 {
            h.record(v);
        }
        assert_eq!(h.percentile(50.0), Some(50));
        assert_eq!(h.percentile(99.0), Some(99));
        assert_eq!(h.percentile(100.0), Some(100));
        assert_eq!(h.percentile(0.0), Some(1), "rank at least 1");
        assert_eq!(h.percentile(0.5), Some(1));
        assert_eq!(h.mean(), Some(50.5));
        let mut one = Histogram::new();
        one.record(7);
        assert_eq!((one.percentile(50.0), one.percentile(99.0), one.max()), (Some(7), Some(7), Some(7)));
    }

    #[test]
    fn histogram_percentiles_are_within_one_percent_of_exact_ones() {
        let mut rng = crate::rng::Rng::new(3);
        let mut h = Histogram::new();
        let mut exact = Vec::new();
        for _ in 0..20_000 {
            // Latencies from 1 µs to about 1 s, log-spread.
            let v = 1_000u64 << rng.below(20);
            let v = v + rng.below(v);
            h.record(v);
            exact.push(v as f64);
        }
        for p in [1.0, 50.0, 90.0, 99.0, 99.9, 100.0] {
            let want = percentile_exact(&mut exact, p).unwrap();
            let got = h.percentile(p).unwrap() as f64;
            assert!((got - want).abs() <= want / 100.0, "p{p}: {got} vs {want}");
        }
        assert_eq!(h.max().unwrap() as f64, percentile_exact(&mut exact, 100.0).unwrap());
    }

    #[test]
    fn merging_equals_recording_into_one() {
        let (mut a, mut b, mut both) = (Histogram::new(), Histogram::new(), Histogram::new());
        for v in 0..1000u64 {
            let v = v * v * 37;
            if v % 3 == 0 {
                a.record(v);
            } else {
                b.record(v);
            }
            both.record(v);
        }
        a.merge(&b);
        assert_eq!(a.count(), both.count());
        for p in [10.0, 50.0, 99.0, 100.0] {
            assert_eq!(a.percentile(p), both.percentile(p));
        }
        assert_eq!((a.max(), a.mean()), (both.max(), both.mean()));
        let mut empty = Histogram::new();
        empty.merge(&Histogram::new());
        assert_eq!(empty.percentile(50.0), None);
    }

    #[test]
    fn exact_percentiles() {
        assert_eq!(percentile_exact(&mut [], 50.0), None);
        assert_eq!(percentile_exact(&mut [3.0, 1.0, 2.0], 50.0), Some(2.0), "median of 3");
        assert_eq!(percentile_exact(&mut [4.0, 1.0, 3.0, 2.0], 50.0), Some(2.0), "lower median");
        assert_eq!(percentile_exact(&mut [5.0], 99.0), Some(5.0));
    }

    #[test]
    fn proc_files_parse() {
        let stat = "1234 (my (weird) server) S 1 1234 1234 0 -1 4194560 1000 0 0 0 \
                    250 75 0 0 20 0 3 0 100 123456 789 18446744073709551615";
        assert_eq!(parse_stat_times(stat), Some((250, 75)));
        assert_eq!(parse_stat_times("garbage"), None);
        let status = "Name:\tparlor\nVmPeak:\t  20000 kB\nVmRSS:\t   12345 kB\nThreads:\t3\n";
        assert_eq!(parse_vmrss(status), Some(12345));
        assert_eq!(parse_vmrss("Name:\tx\n"), None);
        let proc_stat = "cpu  100 5 50 1000 20 3 2 1 0 0\ncpu0 50 2 25 500 10 1 1 0 0 0\nintr 1 2\n";
        assert_eq!(parse_machine_busy(proc_stat), Some(100 + 5 + 50 + 3 + 2 + 1));
        assert_eq!(parse_machine_busy("cpu0 1 2 3 4 5\n"), None);
        assert!(machine_busy_secs().is_some());
    }

    #[test]
    fn this_process_can_be_sampled() {
        let me = sample_process(std::process::id()).unwrap();
        assert!(me.rss_kib > 0);
        assert!(own_rss_kib() > 0);
        let before = own_cpu();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = std::hint::black_box(x.wrapping_add(i * i));
        }
        assert!(own_cpu() >= before, "{x}");
        assert!(raise_nofile(64) >= 64);
    }
}
