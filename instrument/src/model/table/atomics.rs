//! The seam for loom: the table's atomics and spin-wait come from here.

#[cfg(taskscope_loom)]
pub(crate) use loom::sync::atomic::{
    AtomicIsize, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, fence,
};
#[cfg(not(taskscope_loom))]
pub(crate) use std::sync::atomic::{
    AtomicIsize, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, fence,
};

/// One step of a wait for pinned readers: spin a little, then give the core away.
#[inline]
pub(crate) fn backoff(spins: &mut u32) {
    #[cfg(taskscope_loom)]
    {
        let _ = spins;
        loom::thread::yield_now();
    }
    #[cfg(not(taskscope_loom))]
    {
        *spins += 1;
        if *spins < 64 {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

/// The counter stripe of the calling thread (0 under loom).
#[inline]
pub(crate) fn stripe() -> usize {
    #[cfg(taskscope_loom)]
    {
        0
    }
    #[cfg(not(taskscope_loom))]
    {
        use std::cell::Cell;
        use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        thread_local! {
            static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
        }
        STRIPE
            .try_with(|s| {
                let mut v = s.get();
                if v == usize::MAX {
                    v = NEXT.fetch_add(1, Relaxed);
                    s.set(v);
                }
                v
            })
            .unwrap_or(0)
    }
}
