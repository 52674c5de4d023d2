//! The breaker's settings (`GREEN_EJECTION*`, `GREEN_HANG_FLOOR_MS`), each brought into its
//! range before use.

use super::MAX_HUNG_ATTEMPTS;

/// Longest duration any setting may name: a day. Keeps every sum of a time and a duration
/// far from overflow without making one meaningless.
pub(super) const MAX_MS: u64 = 86_400_000;

/// The breaker's settings. [`Breaker::new`] brings each into its range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Off: every green request goes to green and nothing is tracked (`GREEN_EJECTION`).
    pub enabled: bool,
    /// Failures in a row that eject green, 1–100 (`GREEN_EJECTION_FAILURES`).
    pub consecutive_failures: u32,
    /// First cool-down; the n-th ejection in a row lasts n times this
    /// (`GREEN_EJECTION_BASE_MS`).
    pub base_ejection_ms: u64,
    /// Longest cool-down (at least `base_ejection_ms`).
    pub max_ejection_ms: u64,
    /// The hang deadline is this many times blue's p90 answer time, 1–100.
    pub hang_factor: u32,
    /// Shortest hang deadline (`GREEN_HANG_FLOOR_MS`).
    pub hang_floor_ms: u64,
    /// Longest hang deadline (at least the floor), and the deadline while blue has no answer
    /// to compare with.
    pub hang_cap_ms: u64,
    /// Overdue attempts, with no green answer since, that show green hung; 1–16.
    pub hung_attempts: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            enabled: true,
            consecutive_failures: 5,
            base_ejection_ms: 30_000,
            max_ejection_ms: 300_000,
            hang_factor: 5,
            hang_floor_ms: 4_000,
            hang_cap_ms: 120_000,
            hung_attempts: 3,
        }
    }
}

impl Settings {
    pub(super) fn bounded(self) -> Settings {
        let base = self.base_ejection_ms.clamp(1, MAX_MS);
        let floor = self.hang_floor_ms.clamp(1, MAX_MS);
        Settings {
            enabled: self.enabled,
            consecutive_failures: self.consecutive_failures.clamp(1, 100),
            base_ejection_ms: base,
            max_ejection_ms: self.max_ejection_ms.clamp(base, MAX_MS),
            hang_factor: self.hang_factor.clamp(1, 100),
            hang_floor_ms: floor,
            hang_cap_ms: self.hang_cap_ms.clamp(floor, MAX_MS),
            hung_attempts: self.hung_attempts.clamp(1, MAX_HUNG_ATTEMPTS as u32),
        }
    }
}
