//! Run states kept for reuse: one spare taken and returned without a lock (the common case: one
//! run of a flow at a time), and a locked pool for concurrent runs. Each state carries the tally
//! of the runs made with it (see `stats`).

use super::stats::TallyRef;
use crate::state::RunState;
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::sync::Mutex;

/// A run state and which tally its runs add to: whoever holds it is the tally's only writer.
pub(crate) struct Pooled {
    pub state: RunState,
    pub tally: TallyRef,
    /// The bytes this state added to its pool's count when it was last handed back.
    pub accounted: usize,
}

pub(crate) struct StatePool {
    /// Null, or a run state owned by the pool (made by `Box::into_raw`).
    spare: AtomicPtr<Pooled>,
    // Boxed on purpose: a run state is a few hundred bytes, and moving it in and out of the pool
    // at every run would copy them all.
    #[allow(clippy::vec_box)]
    more: Mutex<Vec<Box<Pooled>>>,
    /// Bytes the pool's states held when last handed back (what the cache bounds).
    bytes: AtomicUsize,
}

impl StatePool {
    pub fn new() -> StatePool {
        StatePool {
            spare: AtomicPtr::new(ptr::null_mut()),
            more: Mutex::new(Vec::new()),
            bytes: AtomicUsize::new(0),
        }
    }

    /// Bytes of the states made for this pool, measured when each was last handed back.
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// A run state, made by `make` if the pool is empty.
    pub fn take(&self, make: impl FnOnce() -> Box<Pooled>) -> Box<Pooled> {
        let spare = self.spare.swap(ptr::null_mut(), Ordering::Acquire);
        if !spare.is_null() {
            // SAFETY: a non-null `spare` came from `Box::into_raw` in `give_back`, and the swap
            // made this thread its only owner.
            return unsafe { Box::from_raw(spare) };
        }
        let pooled = self.more.lock().unwrap_or_else(|e| e.into_inner()).pop();
        // Made without the lock held.
        pooled.unwrap_or_else(make)
    }

    /// The spare run state, if any (for a dropped flow's state to be recycled).
    pub fn take_spare(&mut self) -> Option<Box<Pooled>> {
        let spare = std::mem::replace(self.spare.get_mut(), ptr::null_mut());
        // SAFETY: a non-null `spare` came from `Box::into_raw` in `give_back`; `&mut self` means
        // no other thread can take it, and it is no longer in the pool.
        (!spare.is_null()).then(|| unsafe { Box::from_raw(spare) })
    }

    pub fn give_back(&self, mut state: Box<Pooled>) {
        let now = std::mem::size_of::<Pooled>() + state.state.retained_bytes();
        if now != state.accounted {
            // Wrapping: the difference may be negative; the total stays exact.
            self.bytes
                .fetch_add(now.wrapping_sub(state.accounted), Ordering::Relaxed);
            state.accounted = now;
        }
        let raw = Box::into_raw(state);
        if let Err(raw) = self
            .spare
            .compare_exchange(ptr::null_mut(), raw, Ordering::Release, Ordering::Relaxed)
            .map_err(|_| raw)
        {
            // SAFETY: `raw` came from `Box::into_raw` just above and was not stored.
            let state = unsafe { Box::from_raw(raw) };
            self.more
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(state);
        }
    }
}

impl Drop for StatePool {
    fn drop(&mut self) {
        let spare = *self.spare.get_mut();
        if !spare.is_null() {
            // SAFETY: the pool owns its spare; `&mut self` means no other thread can take it.
            drop(unsafe { Box::from_raw(spare) });
        }
    }
}
