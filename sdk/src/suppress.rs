//! Alert repeat suppression with an "all clear".

/// What to do about a condition after [`Suppressor::update`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The condition has just started: raise the alert.
    Raise,
    /// The condition persists and the repeat interval has passed: raise it again.
    Repeat,
    /// The condition has just ended: send the "all clear".
    Resolve,
    /// Nothing to send.
    Quiet,
}

impl Transition {
    /// Whether the alert itself should be sent (first time or repeat).
    pub fn raises(self) -> bool {
        matches!(self, Transition::Raise | Transition::Repeat)
    }
}

/// Tracks one alert condition so that a persisting condition is raised once,
/// repeated at most every `repeat_ms`, and followed by a single "all clear"
/// when it ends.
///
/// ```
/// use edgewise_sdk::suppress::{Suppressor, Transition};
///
/// let mut gate = Suppressor::new(30 * 60_000); // repeat at most every 30 min
/// assert_eq!(gate.update(0, true), Transition::Raise);
/// assert_eq!(gate.update(60_000, true), Transition::Quiet);
/// assert_eq!(gate.update(30 * 60_000, true), Transition::Repeat);
/// assert_eq!(gate.update(31 * 60_000, false), Transition::Resolve);
/// assert_eq!(gate.update(32 * 60_000, false), Transition::Quiet);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Suppressor {
    repeat_ms: i64,
    last_raised_ms: Option<i64>,
}

impl Suppressor {
    /// A suppressor repeating at most every `repeat_ms` while the condition holds.
    pub fn new(repeat_ms: i64) -> Suppressor {
        Suppressor {
            repeat_ms,
            last_raised_ms: None,
        }
    }

    /// Whether the condition is currently active (raised and not resolved).
    pub fn is_active(&self) -> bool {
        self.last_raised_ms.is_some()
    }

    /// Feed whether the condition holds at `now_ms`.
    pub fn update(&mut self, now_ms: i64, holds: bool) -> Transition {
        match (self.last_raised_ms, holds) {
            (None, true) => {
                self.last_raised_ms = Some(now_ms);
                Transition::Raise
            }
            (Some(last), true) if now_ms.saturating_sub(last) >= self.repeat_ms => {
                self.last_raised_ms = Some(now_ms);
                Transition::Repeat
            }
            (Some(_), true) => Transition::Quiet,
            (Some(_), false) => {
                self.last_raised_ms = None;
                Transition::Resolve
            }
            (None, false) => Transition::Quiet,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raise_repeat_resolve() {
        let min = 60_000;
        let mut gate = Suppressor::new(30 * min);
        assert_eq!(gate.update(0, false), Transition::Quiet);
        assert_eq!(gate.update(0, true), Transition::Raise);
        assert!(gate.is_active());
        assert_eq!(gate.update(5 * min, true), Transition::Quiet);
        assert_eq!(gate.update(29 * min, true), Transition::Quiet);
        assert_eq!(gate.update(30 * min, true), Transition::Repeat);
        assert_eq!(gate.update(35 * min, true), Transition::Quiet);
        assert_eq!(gate.update(40 * min, false), Transition::Resolve);
        assert_eq!(gate.update(45 * min, false), Transition::Quiet);
        assert_eq!(gate.update(50 * min, true), Transition::Raise);
    }
}
