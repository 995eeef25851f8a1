//! The guest's speed factor: how much slower this boot runs than the
//! reference guest (the `test` kernel under TCG with 2 CPUs on an idle
//! 2-core host).
//!
//! Time limits exist to catch hangs, not slowness. Init measures a fixed
//! piece of work once, before the first test program, and every time limit
//! of the run is multiplied by the factor (never below 1): init's own
//! per-program limit, each kselftest test's limit (through
//! `DET_TIME_SCALE`, read by `det_test.h`) and the in-guest Rust tests'
//! limits. The host reads the factor from the output channel's
//! `# DET-SPEED scale=<f>` line and scales its own hang limit the same way.
//!
//! The work mixes what makes guests slow: process creation and page faults
//! (which a debug kernel's KASAN and lockdep slow most) and plain
//! computation (which host load and TCG slow). It takes about a
//! tenth of a second on the reference guest.

use std::hint::black_box;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::child::Reaper;

/// The work's time on the reference guest, rounded down (a lower
/// reference only makes limits more generous). Measured: 226-327 ms with
/// the host's two cores shared by four builds (load average 6), so
/// about a third of that on an idle host.
pub const REFERENCE: Duration = Duration::from_millis(100);

/// The environment entry that carries the factor to test programs.
pub const ENV_KEY: &str = "DET_TIME_SCALE";

/// Processes started, MiB of fresh memory touched, loop iterations.
const SPAWNS: usize = 10;
const TOUCH_MIB: usize = 16;
const SPINS: u64 = 4_000_000;

/// A measured factor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Speed {
    /// `elapsed / REFERENCE`, at least 1.
    pub scale: f64,
    pub elapsed: Duration,
}

impl Speed {
    /// The factor from one measurement: never below 1, rounded up to a
    /// hundredth so that the printed value is the one used.
    pub fn from_elapsed(elapsed: Duration) -> Speed {
        let raw = elapsed.as_secs_f64() / REFERENCE.as_secs_f64();
        let scale = ((raw * 100.0).ceil() / 100.0).max(1.0);
        Speed { scale, elapsed }
    }

    /// `limit` scaled by the factor.
    pub fn scale(&self, limit: Duration) -> Duration {
        limit.mul_f64(self.scale)
    }

    /// The diagnostic line the host looks for.
    pub fn line(&self) -> String {
        let line = bootproto::status::Speed {
            scale: self.scale,
            work_ms: self.elapsed.as_millis(),
            reference_ms: REFERENCE.as_millis(),
        };
        format!("{line}\n")
    }
}

/// Does the work once and returns the factor.
pub fn measure(reaper: &Reaper) -> Speed {
    let start = Instant::now();
    for _ in 0..SPAWNS {
        spawn_true(reaper);
    }
    let mut mem = vec![0u8; TOUCH_MIB << 20];
    for page in mem.chunks_mut(4096) {
        page[0] = 1;
    }
    black_box(&mem);
    drop(mem);
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..SPINS {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x = black_box(x);
    }
    Speed::from_elapsed(start.elapsed())
}

/// Starts and reaps `/bin/true`; a missing one (an image without busybox)
/// only makes the work smaller.
fn spawn_true(reaper: &Reaper) {
    let mut cmd = Command::new("/bin/true");
    cmd.env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Ok(child) = reaper.spawn(&mut cmd) {
        let _ = reaper.wait(child.id(), None, &mut |_| Ok(()), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_below_one_and_rounded_up() {
        assert_eq!(Speed::from_elapsed(Duration::from_millis(10)).scale, 1.0);
        let s = Speed::from_elapsed(REFERENCE * 3 + Duration::from_millis(1));
        assert_eq!(s.scale, 3.01);
        assert_eq!(
            s.scale(Duration::from_secs(100)).as_secs_f64().round(),
            301.0
        );
        assert!(
            s.line().starts_with("# DET-SPEED scale=3.01 "),
            "{}",
            s.line()
        );
    }
}
