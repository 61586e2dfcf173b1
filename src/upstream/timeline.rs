//! A backend's recent states as the dashboard draws them: the moments its
//! state changed, noted at each health round and each time the dashboard
//! looks, the last [`KEPT`] of them. Never touched by a request.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Instant;

/// Changes kept per backend.
const KEPT: usize = 64;

/// What a backend was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Picked for requests.
    Up,
    /// Failing its checks, or ejected.
    Down,
    /// Healthy, but its breaker is open.
    Open,
}

impl State {
    /// The name the dashboard shows.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Up => "up",
            State::Down => "down",
            State::Open => "open",
        }
    }
}

/// The state changes of one backend, oldest first.
#[derive(Debug, Default)]
pub struct Timeline {
    changes: Mutex<VecDeque<(Instant, State)>>,
}

impl Timeline {
    /// Notes that the backend is in `state` now.
    pub fn note(&self, state: State) {
        let mut changes = self.changes.lock().unwrap_or_else(|p| p.into_inner());
        if changes.back().is_some_and(|(_, s)| *s == state) {
            return;
        }
        if changes.len() == KEPT {
            changes.pop_front();
        }
        changes.push_back((Instant::now(), state));
    }

    /// The changes, oldest first.
    pub fn changes(&self) -> Vec<(Instant, State)> {
        let changes = self.changes.lock().unwrap_or_else(|p| p.into_inner());
        changes.iter().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_changes_are_kept_and_only_the_last_ones() {
        let t = Timeline::default();
        t.note(State::Up);
        t.note(State::Up);
        t.note(State::Down);
        assert_eq!(
            t.changes().iter().map(|c| c.1).collect::<Vec<_>>(),
            [State::Up, State::Down]
        );
        for i in 0..200 {
            t.note(if i % 2 == 0 { State::Up } else { State::Open });
        }
        let kept = t.changes();
        assert_eq!(kept.len(), KEPT);
        assert_eq!(kept.last().unwrap().1, State::Open);
    }
}
