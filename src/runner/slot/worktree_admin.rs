//! The process-wide lock on git's worktree admin files, shared by the lane
//! (plant, prune, land) and the gate runs that prepare warm worktrees
//! beside it.
//!
//! Planting yields to the others: a plant holds the lock for a whole
//! checkout, and with agents that finish quickly plants came one after the
//! other, so a prune or a land waiting for the lock (an unfair mutex) got it
//! rarely — merged worktrees piled up by the hundred, and every listing of
//! worktrees (per plant, land and branch deletion) then cost in proportion
//! to the run. With the others first, the lane keeps up and the worktrees
//! that exist at once stay about the running ones.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

/// Whether the lock is held, and how many callers that go before plants
/// wait for it.
#[derive(Default)]
struct State {
    held: bool,
    urgent_waiting: usize,
}

static STATE: Mutex<State> = Mutex::new(State {
    held: false,
    urgent_waiting: 0,
});
static RELEASED: Condvar = Condvar::new();

/// Held while git's worktree admin files are written: planting, pruning,
/// landing (it reads the checkouts of the target) and the merge queue's
/// gates preparing their warm worktrees, which run beside the lane.
/// Released on drop.
pub struct AdminGuard(());

impl Drop for AdminGuard {
    fn drop(&mut self) {
        lock_state().held = false;
        RELEASED.notify_all();
    }
}

/// The state's own mutex is held only for a few instructions; a panic while
/// holding it leaves nothing half-done.
fn lock_state() -> MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Takes the lock for a prune, a land or a gate's worktree: before any
/// plant that waits too.
pub fn worktree_admin() -> AdminGuard {
    let mut state = lock_state();
    state.urgent_waiting += 1;
    while state.held {
        state = RELEASED.wait(state).unwrap_or_else(PoisonError::into_inner);
    }
    state.urgent_waiting -= 1;
    state.held = true;
    AdminGuard(())
}

/// Takes the lock for planting: after every [`worktree_admin`] caller
/// already waiting.
pub fn worktree_admin_for_plant() -> AdminGuard {
    let mut state = lock_state();
    while state.held || state.urgent_waiting > 0 {
        state = RELEASED.wait(state).unwrap_or_else(PoisonError::into_inner);
    }
    state.held = true;
    AdminGuard(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    /// A prune waiting for the lock gets it before a plant that waits too,
    /// whichever asked first.
    #[test]
    fn a_waiting_prune_goes_before_a_waiting_plant() {
        let held = worktree_admin();
        let (tx, rx) = mpsc::channel();
        let plant = {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let _g = worktree_admin_for_plant();
                tx.send("plant").expect("send");
            })
        };
        // The plant is waiting (it cannot have the lock while we hold it);
        // now the prune asks, and must be let in first.
        let prune = std::thread::spawn(move || {
            let _g = worktree_admin();
            tx.send("prune").expect("send");
        });
        while lock_state().urgent_waiting == 0 {
            std::thread::yield_now();
        }
        drop(held);
        let first = rx.recv_timeout(Duration::from_secs(10)).expect("first");
        let second = rx.recv_timeout(Duration::from_secs(10)).expect("second");
        plant.join().expect("plant");
        prune.join().expect("prune");
        assert_eq!((first, second), ("prune", "plant"));
    }
}
