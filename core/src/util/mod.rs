//! Leaves with no domain of their own: JSON text read through one reader ([`json`]), a token
//! bucket ([`rate`]), retry schedules as data ([`retry`]), short slices sorted ([`sort`]) and
//! RFC 3339 timestamps ([`time`]).

pub mod json;
pub mod rate;
pub mod retry;
pub mod sort;
pub mod time;
