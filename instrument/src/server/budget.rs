//! The server's CPU budget: however many viewers connect and whatever they
//! do (20 at once, one reconnecting in a loop, `dump` in a loop), the
//! server's thread uses at most [`SHARE`] of one core on average, so the app
//! keeps the rest of the machine.
//!
//! A bucket of CPU time: it fills at [`SHARE`] of the wall clock, up to
//! [`BURST`], and everything the server's thread spends (publishing, copying
//! updates out to viewers, answering calls, HTTP/2) drains it — the thread's
//! own CPU clock says how much. Before each costly step (a publish, a listing,
//! a task detail) the server waits until the bucket is not in debt, for at
//! most [`MAX_WAIT`] (so viewers get their updates late, never not at all).
//! Where there is no per-thread CPU clock, the duration of the costly steps
//! themselves is counted instead.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::sync::lock;

/// The share of one core the server's thread may use, on average.
pub(crate) const SHARE: f64 = 0.25;

/// CPU time that may be spent at once after a quiet period.
pub(crate) const BURST: Duration = Duration::from_millis(250);

/// The longest one wait for the budget.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(2);

/// The bucket (used on the server's thread only; a mutex to be `Sync`).
#[derive(Debug)]
pub(crate) struct Budget {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Seconds of CPU time that may still be spent (negative: in debt).
    balance: f64,
    /// When `balance` was last brought up to date.
    at: Instant,
    /// The thread's CPU clock then.
    cpu: Option<Duration>,
}

impl Budget {
    /// A full bucket. Call on the thread whose CPU time is to be counted.
    pub(crate) fn new() -> Budget {
        Budget {
            state: Mutex::new(State {
                balance: BURST.as_secs_f64(),
                at: Instant::now(),
                cpu: thread_cpu_time(),
            }),
        }
    }

    /// Brings the balance up to date; returns it.
    fn settle(&self) -> f64 {
        let mut s = lock(&self.state);
        let now = Instant::now();
        let earned = now.duration_since(s.at).as_secs_f64() * SHARE;
        let cpu = thread_cpu_time();
        let spent = match (cpu, s.cpu) {
            (Some(now), Some(before)) => now.saturating_sub(before).as_secs_f64(),
            _ => 0.0,
        };
        s.balance = (s.balance + earned - spent).min(BURST.as_secs_f64());
        s.at = now;
        s.cpu = cpu;
        s.balance
    }

    /// Waits until the bucket is not in debt (at most [`MAX_WAIT`]).
    pub(crate) async fn wait(&self) {
        let deadline = Instant::now() + MAX_WAIT;
        loop {
            let balance = self.settle();
            if balance >= 0.0 {
                return;
            }
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            let refill = Duration::from_secs_f64(-balance / SHARE);
            tokio::time::sleep_until((now + refill).min(deadline)).await;
        }
    }

    /// Runs `step` (a costly one) and, without a per-thread CPU clock, counts
    /// its duration as spent.
    pub(crate) fn spend<T>(&self, step: impl FnOnce() -> T) -> T {
        let started = std::time::Instant::now();
        let out = step();
        if thread_cpu_time().is_none() {
            let mut s = lock(&self.state);
            s.balance -= started.elapsed().as_secs_f64();
        }
        out
    }

    /// The balance now, in seconds of CPU (for tests).
    #[cfg(test)]
    pub(crate) fn balance(&self) -> f64 {
        self.settle()
    }
}

/// The calling thread's CPU time, where the platform has such a clock.
#[cfg(unix)]
pub(crate) fn thread_cpu_time() -> Option<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_THREAD_CPUTIME_ID is
    // a clock every supported Unix has.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (rc == 0).then(|| Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

/// The calling thread's CPU time, where the platform has such a clock.
#[cfg(not(unix))]
pub(crate) fn thread_cpu_time() -> Option<Duration> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn burn(d: Duration) {
        let start = thread_cpu_time().unwrap();
        while thread_cpu_time().unwrap() - start < d {
            std::hint::black_box(0u64.wrapping_add(1));
        }
    }

    #[cfg(unix)]
    #[tokio::test(flavor = "current_thread")]
    async fn cpu_spent_beyond_the_share_is_repaid_by_waiting() {
        let made = std::time::Instant::now();
        let budget = Budget::new();
        burn(Duration::from_millis(600));
        let balance = budget.balance();
        // At most: the burst, plus what the wall clock earned, minus the 0.6 s burnt.
        let most = BURST.as_secs_f64() + made.elapsed().as_secs_f64() * SHARE - 0.6;
        assert!(balance <= most + 1e-3, "{balance} > {most}");
        let started = std::time::Instant::now();
        budget.wait().await;
        let waited = started.elapsed();
        if balance < -0.01 {
            // Repaying a debt at a quarter of a core takes four times the debt.
            let least = Duration::from_secs_f64((-balance / SHARE * 0.9).min(1.8));
            assert!(waited >= least, "waited {waited:?} for a debt of {balance}");
        }
        assert!(budget.balance() >= -0.01 || waited >= MAX_WAIT);
    }
}
