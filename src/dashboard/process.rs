//! The gateway process's own resource use, read from `/proc/self`: CPU
//! (user + system) as a share of one core since the previous reading,
//! and resident memory.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Readings closer together than this reuse the last CPU share: two
/// viewers polling at once must not each see a share of a few ms.
const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// CPU share between readings.
#[derive(Default)]
pub struct CpuMeter {
    last: Mutex<Option<Reading>>,
}

#[derive(Clone, Copy)]
struct Reading {
    at: Instant,
    cpu_seconds: f64,
    share: Option<f64>,
}

impl CpuMeter {
    /// CPU used since the previous reading, in % of one core (`None` on
    /// the first reading, or where `/proc` cannot be read).
    pub fn percent(&self) -> Option<f64> {
        let now = cpu_seconds()?;
        let at = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let share = match *last {
            Some(prev) if at - prev.at < MIN_INTERVAL => return prev.share,
            Some(prev) => Some((now - prev.cpu_seconds) / (at - prev.at).as_secs_f64() * 100.0),
            None => None,
        };
        *last = Some(Reading {
            at,
            cpu_seconds: now,
            share,
        });
        share
    }
}

/// User + system CPU seconds of this process.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces), in `)`.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    // utime and stime are fields 14 and 15, the 12th and 13th after `)`.
    let utime: f64 = fields.nth(11)?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    // SAFETY: sysconf only reads a constant of the system.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (ticks > 0).then(|| (utime + stime) / ticks as f64)
}

/// Resident memory of this process, in bytes.
pub fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split(' ').nth(1)?.parse().ok()?;
    // SAFETY: sysconf only reads a constant of the system.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    (page > 0).then(|| pages * page as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_uses_memory_and_cpu() {
        assert!(rss_bytes().unwrap() > 1 << 20);
        let meter = CpuMeter::default();
        assert_eq!(meter.percent(), None);
        let busy = Instant::now();
        let mut spin = 0u64;
        while busy.elapsed() < Duration::from_millis(60) {
            spin = std::hint::black_box(spin.wrapping_add(1));
        }
        assert!(cpu_seconds().unwrap() >= 0.05, "after {spin} turns");
    }
}
