//! Buckler patch: the lock around a connection's stream state.
//!
//! Every operation on a stream (opening it, sending its headers and data, reading its body,
//! dropping a handle to it) takes the connection's lock, about 25 times per proxied request.
//! `std::sync::Mutex` pays two atomic read-modify-writes for each: one to lock and one to
//! unlock, because unlocking must learn whether a waiter sleeps on the futex. Each waits for
//! the store buffer to drain (~4 ns here, `benches/README.md`). This lock never sleeps: a
//! waiter spins briefly, then yields its thread, so unlocking is a plain release store.
//!
//! The sections it guards are short (bookkeeping and queueing frames, no I/O), and the lock is
//! contended only when a connection's task and one of its streams' tasks run on two worker
//! threads at the same instant; with one worker thread it never is. HAProxy guards its shared
//! structures with spinning locks for the same reason.
//!
//! Poisoning works as `std`'s does: a panic while the lock is held marks it, and later
//! `lock()`s return `Err`, which the callers in `streams.rs` rely on.

use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LockResult, PoisonError, TryLockError, TryLockResult};

/// Spins this many times on a held lock before yielding the thread between tries.
const SPINS_BEFORE_YIELD: u32 = 100;

pub(crate) struct Mutex<T> {
    locked: AtomicBool,
    poisoned: AtomicBool,
    value: UnsafeCell<T>,
}

// Safety: as for `std::sync::Mutex`: the value is reached only through a guard, and one guard
// exists at a time (the `locked` flag, taken with acquire and released with release ordering).
unsafe impl<T: Send> Send for Mutex<T> {}
unsafe impl<T: Send> Sync for Mutex<T> {}

impl<T> Mutex<T> {
    pub(crate) fn new(value: T) -> Self {
        Mutex {
            locked: AtomicBool::new(false),
            poisoned: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    pub(crate) fn lock(&self) -> LockResult<MutexGuard<'_, T>> {
        if self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_contended();
        }
        self.guard()
    }

    /// Locks if no one holds the lock (h2 uses it only to print a stream for debugging).
    pub(crate) fn try_lock(&self) -> TryLockResult<MutexGuard<'_, T>> {
        if self
            .locked
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return Err(TryLockError::WouldBlock);
        }
        Ok(self.guard()?)
    }

    /// The guard of a lock just taken, or the poison error carrying it.
    fn guard(&self) -> LockResult<MutexGuard<'_, T>> {
        let guard = MutexGuard {
            lock: self,
            panicking: std::thread::panicking(),
        };
        if self.poisoned.load(Ordering::Relaxed) {
            Err(PoisonError::new(guard))
        } else {
            Ok(guard)
        }
    }

    #[cold]
    fn lock_contended(&self) {
        let mut spins = 0;
        loop {
            while self.locked.load(Ordering::Relaxed) {
                if spins < SPINS_BEFORE_YIELD {
                    spins += 1;
                    std::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                }
            }
            if self
                .locked
                .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return;
            }
        }
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mutex")
            .field("locked", &self.locked.load(Ordering::Relaxed))
            .field("poisoned", &self.poisoned.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

pub(crate) struct MutexGuard<'a, T> {
    lock: &'a Mutex<T>,
    /// Whether the thread was already panicking when it locked: only a panic that starts
    /// while the lock is held poisons it.
    panicking: bool,
}

impl<T: std::fmt::Debug> std::fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

impl<T> Deref for MutexGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // Safety: this guard holds the lock.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // Safety: this guard holds the lock.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for MutexGuard<'_, T> {
    fn drop(&mut self) {
        if !self.panicking && std::thread::panicking() {
            self.lock.poisoned.store(true, Ordering::Relaxed);
        }
        self.lock.locked.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn threads_taking_turns_lose_no_update() {
        let counter = Arc::new(Mutex::new(0u64));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let counter = counter.clone();
                std::thread::spawn(move || {
                    for _ in 0..100_000 {
                        // A read and a write apart, as h2's bookkeeping is: a torn section
                        // would lose increments.
                        let mut guard = counter.lock().unwrap();
                        let seen = *guard;
                        std::hint::black_box(&seen);
                        *guard = seen + 1;
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(*counter.lock().unwrap(), 400_000);
    }

    #[test]
    fn a_panic_while_locked_poisons_and_a_panic_before_does_not() {
        let lock = Arc::new(Mutex::new(1));
        let held = lock.clone();
        let result = std::thread::spawn(move || {
            let _guard = held.lock().unwrap();
            panic!("while holding the lock");
        })
        .join();
        assert!(result.is_err());
        let poisoned = lock.lock();
        assert!(poisoned.is_err(), "a panic while locked poisons the lock");
        // The value is still reachable, as with std's `PoisonError::into_inner`.
        assert_eq!(*poisoned.unwrap_err().into_inner(), 1);
        assert!(lock.lock().is_err(), "and it stays poisoned");
        assert!(matches!(lock.try_lock(), Err(TryLockError::Poisoned(_))));

        // Locked during unwinding (as `Drop` impls in streams.rs do): not a new poisoning.
        let clean = Arc::new(Mutex::new(2));
        let during = clean.clone();
        struct LockOnDrop(Arc<Mutex<i32>>);
        impl Drop for LockOnDrop {
            fn drop(&mut self) {
                let _guard = self.0.lock().unwrap();
            }
        }
        let result = std::thread::spawn(move || {
            let _on_drop = LockOnDrop(during);
            panic!("before locking");
        })
        .join();
        assert!(result.is_err());
        assert!(clean.lock().is_ok());
    }

    #[test]
    fn try_lock_fails_while_held_and_succeeds_after() {
        let lock = Mutex::new(3);
        let guard = lock.lock().unwrap();
        assert!(matches!(lock.try_lock(), Err(TryLockError::WouldBlock)));
        drop(guard);
        assert_eq!(*lock.try_lock().unwrap(), 3);
    }
}
