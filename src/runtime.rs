//! The runtime's clock and randomness: a leaf that every other shell module may read, so that
//! the core gets time and random draws as plain values. Nothing here decides anything.

/// Unix milliseconds. `Date.now()` directly: no `Date` object per reading.
pub fn now_ms() -> u64 {
    js_sys::Date::now() as u64
}

/// What each request gets from the runtime's CSPRNG, in one call: its id and its split draw.
pub struct Tag {
    /// 16 random bytes as hex: `x-bluegreen-request-id`.
    pub id: String,
    /// The random draw for requests without a sticky key.
    pub draw: u64,
    /// A second draw, independent of `draw`: whether a blue request is copied to green on a
    /// shadow step.
    pub shadow_draw: u64,
    /// A third draw: whether a pair of answers to this request is sent to the grader.
    pub judge_draw: u64,
}

impl Tag {
    /// A fresh tag.
    pub fn new() -> Tag {
        let mut buf = [0u8; 40];
        // crypto.getRandomValues cannot fail for a buffer this small.
        getrandom::fill(&mut buf).expect("crypto.getRandomValues");
        let word = |at: usize| {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&buf[at..at + 8]);
            u64::from_le_bytes(bytes)
        };
        Tag {
            id: hex(&buf[..16]),
            draw: word(16),
            shadow_draw: word(24),
            judge_draw: word(32),
        }
    }
}

/// A random 128-bit id as 32 hex characters (stats batch ids, controller request ids).
pub fn random_id() -> String {
    Tag::new().id
}

fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    bytes
        .iter()
        .flat_map(|b| [HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]])
        .map(char::from)
        .collect()
}
