//! CPU time and memory of a process, read from Linux's /proc, so that a
//! benchmark can put the server's cost beside the load it carried without
//! any instrumentation inside the server.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use serde::Serialize;

/// Kernel clock ticks per second in /proc/PID/stat (USER_HZ, 100 on every
/// Linux architecture Tandem runs on).
const TICKS_PER_SECOND: f64 = 100.0;

/// One reading of a process.
#[derive(Debug, Clone, Copy)]
pub struct Reading {
    at: Instant,
    cpu_ticks: u64,
    rss_kib: u64,
    peak_rss_kib: u64,
}

/// What a process used between two readings.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Usage {
    /// CPU time over wall time, in percent of one core.
    pub cpu_percent: f64,
    /// Resident memory at the second reading.
    pub rss_mib: f64,
    /// The most resident memory the process ever had.
    pub peak_rss_mib: f64,
}

/// The process `pid`, or this process when `None`.
pub fn read(pid: Option<u32>) -> anyhow::Result<Reading> {
    let dir = match pid {
        Some(pid) => PathBuf::from(format!("/proc/{pid}")),
        None => PathBuf::from("/proc/self"),
    };
    let stat = std::fs::read_to_string(dir.join("stat"))
        .with_context(|| format!("reading {}", dir.join("stat").display()))?;
    let status = std::fs::read_to_string(dir.join("status"))
        .with_context(|| format!("reading {}", dir.join("status").display()))?;
    Ok(Reading {
        at: Instant::now(),
        cpu_ticks: cpu_ticks(&stat).context("reading CPU time from /proc/PID/stat")?,
        rss_kib: status_kib(&status, "VmRSS:").unwrap_or(0),
        peak_rss_kib: status_kib(&status, "VmHWM:").unwrap_or(0),
    })
}

impl Reading {
    pub fn usage_since(&self, earlier: &Reading) -> Usage {
        let wall = self.at.duration_since(earlier.at).as_secs_f64();
        let cpu = self.cpu_ticks.saturating_sub(earlier.cpu_ticks) as f64 / TICKS_PER_SECOND;
        Usage {
            cpu_percent: if wall > 0.0 { cpu / wall * 100.0 } else { 0.0 },
            rss_mib: self.rss_kib as f64 / 1024.0,
            peak_rss_mib: self.peak_rss_kib as f64 / 1024.0,
        }
    }
}

/// User plus system time from /proc/PID/stat. The command name (field 2)
/// may contain spaces and parentheses, so fields are counted after its
/// closing parenthesis: utime and stime are fields 14 and 15.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn status_kib(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_found_after_an_awkward_command_name() {
        let stat = "4242 (tandem (x) y) S 1 4242 4242 0 -1 4194560 1 0 0 0 250 75 0 0 20 0 9 0";
        assert_eq!(cpu_ticks(stat), Some(325));
        assert_eq!(cpu_ticks("garbage"), None);
    }

    #[test]
    fn memory_lines_are_read_in_kib() {
        let status = "Name:\ttandem\nVmHWM:\t  20480 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(status_kib(status, "VmRSS:"), Some(10_240));
        assert_eq!(status_kib(status, "VmHWM:"), Some(20_480));
        assert_eq!(status_kib(status, "VmSwap:"), None);
    }

    #[test]
    fn this_process_can_be_read() {
        let first = read(None).unwrap();
        let second = read(None).unwrap();
        let usage = second.usage_since(&first);
        assert!(usage.rss_mib > 0.0);
        assert!(usage.peak_rss_mib >= usage.rss_mib);
    }
}
