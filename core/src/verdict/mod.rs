//! The statistics that judge green: the health policy and the threshold method ([`health`]),
//! the sequential test ([`sequential`]), provider-wide incidents ([`incident`]) and the split
//! check ([`share_check`]). Pure arithmetic on counts; nothing here keeps state between ticks
//! but what the controller stores.

pub mod health;
pub mod incident;
pub mod sequential;
pub mod share_check;
