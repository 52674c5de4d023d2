//! What the breaker knows of blue: its last answers in each mode and their p90, against which
//! a green attempt's hang deadline is set.

use super::MAX_MS;

/// Blue answers kept per mode for the p90.
const BLUE_WINDOW: usize = 64;

/// Blue's last answers in one mode, and their p90.
#[derive(Debug, Clone)]
pub(super) struct Recent {
    ms: [u64; BLUE_WINDOW],
    len: usize,
    next: usize,
    pub(super) p90: Option<u64>,
}

impl Recent {
    pub(super) fn new() -> Recent {
        Recent {
            ms: [0; BLUE_WINDOW],
            len: 0,
            next: 0,
            p90: None,
        }
    }

    pub(super) fn push(&mut self, ms: u64) {
        self.ms[self.next] = ms.min(MAX_MS);
        self.next = (self.next + 1) % BLUE_WINDOW;
        self.len = (self.len + 1).min(BLUE_WINDOW);
        let mut sorted = self.ms;
        let sorted = &mut sorted[..self.len];
        // Nearest rank: the ⌈0.9 n⌉-th smallest. With 64 answers the six largest are ignored.
        let rank = (9 * self.len).div_ceil(10);
        crate::util::sort::by_key(sorted, |&ms| ms);
        self.p90 = Some(sorted[rank - 1]);
    }
}
