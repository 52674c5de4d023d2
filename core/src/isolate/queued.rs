//! Stats through a queue: the message an isolate sends instead of posting its batch to the
//! route's controller ([`Queued`]), and what the consumer makes of a delivery ([`merge`]): one
//! batch per route, every stat merged by addition, that names the batches it holds (`parts`)
//! so that the controller counts each of them once however often the queue delivers it.
//!
//! A message is at most [`MAX_MESSAGE_BYTES`]; an isolate posts a larger batch straight to the
//! controller, as it does without a queue.

use serde::{Deserialize, Serialize};

use super::batch::{Accumulator, Batch};

/// Most bytes of one message. Cloudflare Queues takes 128 KB; the rest is the envelope's room.
pub const MAX_MESSAGE_BYTES: usize = 120 * 1024;

/// One message: an isolate's batch for one route, and when the isolate sent it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Queued {
    pub route: String,
    /// Unix ms when the isolate sent it: the controller's intake says how far behind the queue
    /// is from the oldest batch it took.
    pub sent_ms: u64,
    pub batch: Batch,
}

/// The message for `route`'s batch `batch_json` (its JSON, as the outbox keeps it) sent at
/// `sent_ms`: built around the batch's own bytes, never re-encoded. `None` past
/// [`MAX_MESSAGE_BYTES`]: that batch is posted to the controller instead.
pub fn envelope(route: &str, sent_ms: u64, batch_json: &str) -> Option<String> {
    // A string always serializes.
    let route = serde_json::to_string(route).unwrap_or_default();
    let text = format!(r#"{{"route":{route},"sent_ms":{sent_ms},"batch":{batch_json}}}"#);
    (text.len() <= MAX_MESSAGE_BYTES).then_some(text)
}

/// One route's merged batch, and which of the delivery's messages it holds (their indices).
#[derive(Debug, Clone, PartialEq)]
pub struct Merged {
    pub route: String,
    pub batch: Batch,
    pub members: Vec<usize>,
}

/// Merges `messages` (each with its index in the delivery) per route, in order of each
/// route's first message. Each merged batch lists its parts' ids (a part that was itself
/// merged lists its own), the oldest `sent_ms` among them, and an id made from its parts, so
/// that the same parts always make the same batch.
pub fn merge<'a>(messages: impl IntoIterator<Item = (usize, &'a Queued)>) -> Vec<Merged> {
    let mut groups: Vec<(String, Vec<(usize, &Queued)>)> = Vec::new();
    for (i, m) in messages {
        match groups.iter_mut().find(|(route, _)| *route == m.route) {
            Some((_, members)) => members.push((i, m)),
            None => groups.push((m.route.clone(), vec![(i, m)])),
        }
    }
    groups
        .into_iter()
        .map(|(route, members)| {
            let batch = merged(members.iter().map(|(_, m)| *m));
            Merged {
                route,
                batch,
                members: members.iter().map(|(i, _)| *i).collect(),
            }
        })
        .collect()
}

/// One batch holding every message's stats.
fn merged<'a>(messages: impl Iterator<Item = &'a Queued>) -> Batch {
    let mut acc = Accumulator::default();
    let mut parts: Vec<String> = Vec::new();
    let mut oldest: Option<u64> = None;
    for m in messages {
        // The same batch twice in one delivery (an isolate that sent it again after a send it
        // could not confirm) counts once.
        let ids = match m.batch.parts.is_empty() {
            true => std::slice::from_ref(&m.batch.id),
            false => m.batch.parts.as_slice(),
        };
        if ids.iter().all(|id| parts.contains(id)) {
            continue;
        }
        for entry in &m.batch.entries {
            acc.add_entry(entry);
        }
        for shadow in &m.batch.shadow {
            acc.add_shadow_entry(shadow);
        }
        acc.add_losses(&m.batch.judge_losses);
        match m.batch.parts.is_empty() {
            true => parts.push(m.batch.id.clone()),
            false => parts.extend(m.batch.parts.iter().cloned()),
        }
        let sent = m.batch.sent_ms.unwrap_or(m.sent_ms).min(m.sent_ms);
        oldest = Some(oldest.map_or(sent, |o| o.min(sent)));
    }
    crate::util::sort::ascending(&mut parts);
    parts.dedup();
    let id = format!(
        "q{:016x}",
        xxhash_rust::xxh64::xxh64(parts.join(",").as_bytes(), 0)
    );
    let mut batch = acc.take(id);
    batch.parts = parts;
    batch.sent_ms = oldest;
    batch
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::environment::Environment;
    use crate::shadow::{ShadowEntry, ShadowStats};
    use crate::stats::{BatchEntry, EnvStats};

    fn entry(minute: u64, env: Environment, requests: u64, errors: u64) -> BatchEntry {
        let mut stats = EnvStats {
            requests,
            ..EnvStats::default()
        };
        stats.errors.server_error = errors;
        stats.total.record(40 * requests);
        BatchEntry {
            minute,
            env,
            forced: false,
            version: Some(3),
            stats,
        }
    }

    fn message(route: &str, id: &str, sent_ms: u64, entries: Vec<BatchEntry>) -> Queued {
        let mut shadow = ShadowStats::default();
        shadow.green.requests = 1;
        Queued {
            route: route.into(),
            sent_ms,
            batch: Batch {
                judge_losses: Vec::new(),
                id: id.into(),
                entries,
                shadow: vec![ShadowEntry {
                    minute: 1,
                    version: 3,
                    stats: shadow,
                }],
                parts: Vec::new(),
                sent_ms: None,
            },
        }
    }

    fn requests(b: &Batch) -> (u64, u64) {
        let count = |env| {
            b.entries
                .iter()
                .filter(|e| e.env == env)
                .map(|e| e.stats.requests)
                .sum::<u64>()
        };
        (count(Environment::Blue), count(Environment::Green))
    }

    #[test]
    fn a_delivery_merges_into_one_batch_per_route_by_addition() {
        let blue = Environment::Blue;
        let green = Environment::Green;
        let msgs = [
            message(
                "a",
                "b1",
                5_000,
                vec![entry(1, blue, 10, 1), entry(1, green, 2, 0)],
            ),
            message("b", "b2", 4_000, vec![entry(1, blue, 7, 0)]),
            message(
                "a",
                "b3",
                3_000,
                vec![entry(1, blue, 5, 2), entry(2, green, 1, 1)],
            ),
        ];
        let merged = merge(msgs.iter().enumerate());
        assert_eq!(merged.len(), 2);
        let a = &merged[0];
        assert_eq!((a.route.as_str(), a.members.clone()), ("a", vec![0, 2]));
        assert_eq!(a.batch.parts, ["b1", "b3"]);
        assert_eq!(a.batch.sent_ms, Some(3_000), "the oldest part's");
        assert_eq!(requests(&a.batch), (15, 3));
        // Minute 1's blue entries became one, their errors and latencies added.
        let blue1: Vec<&BatchEntry> = a
            .batch
            .entries
            .iter()
            .filter(|e| e.env == blue && e.minute == 1)
            .collect();
        assert_eq!(blue1.len(), 1);
        assert_eq!(blue1[0].stats.errors.server_error, 3);
        assert_eq!(blue1[0].stats.total.count(), 2);
        assert_eq!(a.batch.shadow.len(), 1);
        assert_eq!(a.batch.shadow[0].stats.green.requests, 2);
        assert_eq!(merged[1].batch.parts, ["b2"]);
        assert_eq!(a.batch.requests(), 18);
    }

    #[test]
    fn the_same_parts_make_the_same_batch_whatever_their_order_or_grouping() {
        let blue = Environment::Blue;
        let msgs: Vec<Queued> = (0..6)
            .map(|i| {
                message(
                    "r",
                    &format!("id{i}"),
                    1_000 + i,
                    vec![entry(i % 2, blue, i + 1, i % 3)],
                )
            })
            .collect();
        let once = merge(msgs.iter().enumerate()).remove(0).batch;
        let reversed = merge(msgs.iter().rev().enumerate()).remove(0).batch;
        assert_eq!(once, reversed);
        // Merged in two halves first (two consumers' retries), then together.
        let first = merge(msgs[..3].iter().enumerate()).remove(0);
        let second = merge(msgs[3..].iter().enumerate()).remove(0);
        let halves = [
            Queued {
                route: "r".into(),
                sent_ms: 9_999,
                batch: first.batch,
            },
            Queued {
                route: "r".into(),
                sent_ms: 9_999,
                batch: second.batch,
            },
        ];
        let again = merge(halves.iter().enumerate()).remove(0).batch;
        assert_eq!(again, once);
        assert_eq!(once.sent_ms, Some(1_000));
    }

    #[test]
    fn the_same_batch_twice_in_one_delivery_counts_once() {
        let blue = Environment::Blue;
        let msgs = [
            message("r", "b1", 5, vec![entry(1, blue, 10, 1)]),
            message("r", "b1", 6, vec![entry(1, blue, 10, 1)]),
            message("r", "b2", 7, vec![entry(1, blue, 4, 0)]),
        ];
        let merged = merge(msgs.iter().enumerate()).remove(0);
        assert_eq!(
            merged.members,
            [0, 1, 2],
            "every message is acknowledged with the batch"
        );
        assert_eq!(merged.batch.parts, ["b1", "b2"]);
        assert_eq!(merged.batch.requests(), 14);
    }

    #[test]
    fn a_message_wraps_the_batch_as_it_is_and_reads_back_whole() {
        let m = message("r\"/x", "id", 7, vec![entry(1, Environment::Green, 3, 1)]);
        let batch_json = serde_json::to_string(&m.batch).unwrap();
        assert!(
            !batch_json.contains("parts"),
            "an isolate's batch has none: {batch_json}"
        );
        let text = envelope(&m.route, 7, &batch_json).unwrap();
        assert_eq!(serde_json::from_str::<Queued>(&text).unwrap(), m);
        let big = format!(
            r#"{{"id":"x","entries":[],"pad":"{}"}}"#,
            "a".repeat(MAX_MESSAGE_BYTES)
        );
        assert_eq!(
            envelope("r", 7, &big),
            None,
            "too big for a message: posted instead"
        );
    }
}
