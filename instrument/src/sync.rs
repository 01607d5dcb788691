//! Synchronization helpers shared by taskscope's modules: a mutex lock that a
//! panic elsewhere cannot poison, and a count of readers for lock-free
//! pointer hand-offs.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};

/// Locks `m`, ignoring poisoning: a panic while holding one of taskscope's
/// locks must not poison the app's later use of taskscope.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A count of readers of a shared pointer, so that whoever replaces the
/// pointer knows when it may release what it pointed to. The reader announces
/// itself before it loads the pointer; the writer swaps the pointer before it
/// waits for the count to drop (all sequentially consistent): either the writer
/// sees the reader, or the reader sees the new pointer.
#[derive(Default)]
pub(crate) struct Readers(AtomicU32);

impl Readers {
    /// Runs `f` (which loads the pointer and reads through it) as a counted
    /// reader. The count is released however `f` ends, a panic included (a
    /// reader that never left would make the writer wait forever).
    #[inline]
    pub(crate) fn read<R>(&self, f: impl FnOnce() -> R) -> R {
        /// Leaves the count on drop.
        struct Leave<'a>(&'a AtomicU32);
        impl Drop for Leave<'_> {
            #[inline]
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::Release);
            }
        }
        self.0.fetch_add(1, Ordering::SeqCst);
        let _leave = Leave(&self.0);
        f()
    }

    /// Waits until no reader is inside [`Readers::read`]: a few instructions,
    /// unless a reader was preempted there.
    pub(crate) fn wait(&self) {
        let mut spins = 0u32;
        while self.0.load(Ordering::SeqCst) != 0 {
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_that_panics_leaves_the_count() {
        let readers = Readers::default();
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            readers.read(|| panic!("inside a pinned read"))
        }));
        assert!(caught.is_err());
        assert_eq!(readers.0.load(Ordering::SeqCst), 0);
        readers.wait(); // returns at once
        assert_eq!(readers.read(|| 7), 7);
        assert_eq!(readers.0.load(Ordering::SeqCst), 0);
    }
}
