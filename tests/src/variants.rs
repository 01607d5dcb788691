//! The ways of running a runtime that the measuring programs compare: nothing
//! installed, taskscope's two captures, and references that are not
//! taskscope: Tokio's task hooks doing nothing, or only reading the clock
//! around each poll (the floor of any capture built on the hooks), and a
//! `tracing` subscriber asking for what `init()` asks for and doing nothing,
//! or only reading the clock on each enter and exit (the floor of any capture
//! built on Tokio's `tracing` instrumentation).

use std::cell::Cell;

/// Installs `variant` on `builder`: `bare`, `hooks` (`install_on`), `init`
/// (with the feature `tracing-capture`, on by default), `hooks+metrics`,
/// `init+metrics` (the same with the metrics endpoint on), `noop-hooks` or
/// `clock-hooks`; taskscope's server is off. Returns taskscope's
/// guard, if taskscope was installed; `None` for an unknown name.
pub fn install(
    variant: &str,
    builder: &mut tokio::runtime::Builder,
) -> Option<Option<taskscope::Guard>> {
    let quiet = || taskscope::Builder::new().server_addr(taskscope::ServerAddr::Off);
    Some(match variant {
        "bare" => None,
        "hooks" => Some(quiet().install_on(builder)),
        #[cfg(feature = "tracing-capture")]
        "init" => Some(quiet().init()),
        // The same with the metrics endpoint on (an ephemeral loopback port,
        // no scraper): what keeping the running totals by location costs.
        "hooks+metrics" => Some(quiet().metrics_addr(Some(ephemeral())).install_on(builder)),
        "init+metrics" => Some(quiet().metrics_addr(Some(ephemeral())).init()),
        "noop-hooks" => {
            install_noop_hooks(builder);
            None
        }
        "clock-hooks" => {
            install_clock_hooks(builder);
            None
        }
        _ => return None,
    })
}

fn ephemeral() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Tokio's four task hooks, each doing nothing.
pub fn install_noop_hooks(builder: &mut tokio::runtime::Builder) {
    builder
        .on_task_spawn(|_| {})
        .on_before_task_poll(|_| {})
        .on_after_task_poll(|_| {})
        .on_task_terminate(|_| {});
}

/// Tokio's poll hooks reading the TSC before and after each poll and adding
/// the difference to a per-thread sum: what any poll timing costs at least.
pub fn install_clock_hooks(builder: &mut tokio::runtime::Builder) {
    builder
        .on_before_task_poll(|_| clock_start())
        .on_after_task_poll(|_| clock_stop());
}

thread_local! {
    static START: Cell<u64> = const { Cell::new(0) };
    static BUSY: Cell<u64> = const { Cell::new(0) };
}

/// A poll starts on this thread: the TSC read (the references' clock).
fn clock_start() {
    START.with(|s| s.set(tsc()));
}

/// The poll ends: the TSC read again, the difference added to a per-thread sum.
fn clock_stop() {
    let took = tsc().wrapping_sub(START.with(Cell::get));
    BUSY.with(|b| b.set(b.get().wrapping_add(took)));
}

#[cfg(target_arch = "x86_64")]
fn tsc() -> u64 {
    // SAFETY: `rdtsc` is available on every x86_64 CPU.
    unsafe { std::arch::x86_64::_rdtsc() }
}

#[cfg(not(target_arch = "x86_64"))]
fn tsc() -> u64 {
    use std::sync::OnceLock;
    static START: OnceLock<std::time::Instant> = OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_nanos() as u64
}

/// Installs, as the global default, a `tracing` subscriber that is not
/// taskscope: it asks for exactly what taskscope's `init()` asks for (Tokio's
/// task spans and its waker events), gives each span an id from a counter,
/// reads the TSC when a span is entered and exited (adding the difference to
/// a per-thread sum, as [`install_clock_hooks`] does) and ignores the events.
/// What any capture built on Tokio's `tracing` instrumentation pays at
/// least: the floor `init()` is measured against. Returns false if a global
/// subscriber was already set.
pub fn install_clock_tracing() -> bool {
    tracing::subscriber::set_global_default(ClockTracing {
        next_id: std::sync::atomic::AtomicU64::new(1),
        clock: true,
    })
    .is_ok()
}

/// The same without reading the clock: only what `tracing` itself costs
/// (Tokio's span per task, the dispatch of each enter, exit and waker
/// event). No capture that times polls through `tracing` can cost less.
pub fn install_noop_tracing() -> bool {
    tracing::subscriber::set_global_default(ClockTracing {
        next_id: std::sync::atomic::AtomicU64::new(1),
        clock: false,
    })
    .is_ok()
}

/// The subscriber of [`install_clock_tracing`] and [`install_noop_tracing`].
struct ClockTracing {
    next_id: std::sync::atomic::AtomicU64,
    /// Read the TSC on each enter and exit.
    clock: bool,
}

impl ClockTracing {
    /// The metadata `init()`'s subscriber asks for: Tokio's task spans and
    /// its waker events.
    fn wanted(meta: &tracing::Metadata<'_>) -> bool {
        (meta.is_span() && meta.target() == "tokio::task" && meta.name() == "runtime.spawn")
            || (meta.is_event() && meta.target() == "tokio::task::waker")
    }
}

impl tracing::Subscriber for ClockTracing {
    fn register_callsite(
        &self,
        meta: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        if Self::wanted(meta) {
            tracing::subscriber::Interest::always()
        } else {
            tracing::subscriber::Interest::never()
        }
    }

    fn enabled(&self, meta: &tracing::Metadata<'_>) -> bool {
        Self::wanted(meta)
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::TRACE)
    }

    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::span::Id::from_u64(id)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, _: &tracing::Event<'_>) {}

    fn enter(&self, _: &tracing::span::Id) {
        if self.clock {
            clock_start();
        }
    }

    fn exit(&self, _: &tracing::span::Id) {
        if self.clock {
            clock_stop();
        }
    }
}
