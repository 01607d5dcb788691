//! Loom models of the table's protocol: pinned reads, removes, the slot's
//! reuse, the walk and growth. Run with
//! `RUSTFLAGS="--cfg taskscope_loom" cargo test -p taskscope --release --lib model::table::loom`
//! (`LOOM_MAX_PREEMPTIONS=2` bounds `concurrent_growth`, which is not
//! exhaustive in reasonable time otherwise).

use super::IdTable;
use loom::cell::UnsafeCell;
use loom::thread;
use std::sync::Arc;

/// A record whose contents loom tracks: a read concurrent with the drop's
/// write (a use after the table let go of it) is reported by loom.
struct Rec {
    key: u64,
    data: UnsafeCell<u64>,
}

impl Rec {
    fn new(key: u64) -> Arc<Rec> {
        Arc::new(Rec {
            key,
            data: UnsafeCell::new(key),
        })
    }
    fn read(&self) -> u64 {
        self.data.with(|p| unsafe { *p })
    }
}

impl Drop for Rec {
    fn drop(&mut self) {
        self.data.with_mut(|p| unsafe { *p = 0 });
    }
}

// SAFETY: `data` is only written in `drop` (exclusive) and read through `&self`.
unsafe impl Sync for Rec {}

/// A pinned reader on another thread vs the key's remove and release.
#[test]
fn pinned_read_vs_remove() {
    loom::model(|| {
        let t = Arc::new(IdTable::with_first_level_bits(3));
        assert!(t.insert(1, Rec::new(1)).is_ok());
        let t2 = Arc::clone(&t);
        let reader = thread::spawn(move || t2.with_pinned(1, |r| r.read()));
        let removed = t.remove(1).expect("inserted");
        drop(removed); // the record's last reference: its drop writes `data`
        let seen = reader.join().unwrap();
        assert!(seen == Some(1) || seen.is_none(), "{seen:?}");
    });
}

/// The slot is emptied and claimed by another key while a reader of the
/// first key is between its lookup and its pin: it must never be handed
/// the other key's record.
#[test]
fn pinned_read_vs_remove_and_reuse() {
    loom::model(|| {
        let t = Arc::new(IdTable::with_first_level_bits(3));
        assert!(t.insert(1, Rec::new(1)).is_ok());
        let t2 = Arc::clone(&t);
        let reader = thread::spawn(move || t2.with_pinned(1, |r| (r.key, r.read())));
        drop(t.remove(1));
        // Key 9 has the same home slot as key 1 in an 8-slot level.
        assert!(t.insert(9, Rec::new(9)).is_ok());
        let seen = reader.join().unwrap();
        assert!(seen == Some((1, 1)) || seen.is_none(), "{seen:?}");
        drop(t.remove(9));
    });
}

/// The walk (the leak scan, the publisher) vs a remove in the same window.
#[test]
fn walk_vs_remove() {
    loom::model(|| {
        let t = Arc::new(IdTable::with_first_level_bits(3));
        assert!(t.insert(1, Rec::new(1)).is_ok());
        assert!(t.insert(2, Rec::new(2)).is_ok());
        let t2 = Arc::clone(&t);
        let walker = thread::spawn(move || {
            let mut sum = 0;
            t2.for_each_live(|k, r| {
                assert_eq!(k, r.key);
                sum += r.read();
            });
            sum
        });
        drop(t.remove(2));
        let sum = walker.join().unwrap();
        assert!(sum == 1 || sum == 3, "{sum}");
        assert_eq!(t.len(), 1);
    });
}

/// Two inserts race to grow a full table while a third thread reads pinned:
/// both keys end up findable, in whichever level won.
#[test]
fn concurrent_growth() {
    loom::model(|| {
        let t = Arc::new(IdTable::with_first_level_bits(3));
        for k in 1..=8 {
            assert!(t.insert(k, Rec::new(k)).is_ok());
        }
        let spawn = |k: u64| {
            let t = Arc::clone(&t);
            thread::spawn(move || {
                assert!(t.insert(k, Rec::new(k)).is_ok());
                // Its own key, after its own insert.
                assert_eq!(unsafe { t.with(k, |r| r.read()) }, Some(k));
            })
        };
        let a = spawn(9);
        let b = spawn(17);
        let t2 = Arc::clone(&t);
        let reader = thread::spawn(move || t2.with_pinned(3, |r| r.read()));
        a.join().unwrap();
        b.join().unwrap();
        assert_eq!(reader.join().unwrap(), Some(3));
        assert_eq!(t.with_pinned(9, |r| r.key), Some(9));
        assert_eq!(t.with_pinned(17, |r| r.key), Some(17));
        assert_eq!(t.len(), 10);
        assert!(t.levels() >= 2);
    });
}
