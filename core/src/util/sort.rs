//! Short slices sorted by insertion. The standard library's sorts are compiled once per type
//! sorted, 3 to 5 KB of wasm each; the slices sorted here hold a few dozen items (a rollout's
//! last losses, blue's last 64 latencies, the hang rule's due times) or a queue delivery's batch
//! ids (one a message, at most 100 a delivery), where insertion costs microseconds. Stable, as
//! `sort_by_key` is.

/// Sorts `v` by `key`, keeping the order of items with equal keys.
pub fn by_key<T, K: PartialOrd>(v: &mut [T], key: impl Fn(&T) -> K) {
    by(v, |a, b| key(a) > key(b));
}

/// Sorts `v` in ascending order.
pub fn ascending<T: PartialOrd>(v: &mut [T]) {
    by(v, |a, b| a > b);
}

/// Sorts `v` so that no item stands before one it goes `after`, keeping the order of the
/// others.
fn by<T>(v: &mut [T], after: impl Fn(&T, &T) -> bool) {
    for i in 1..v.len() {
        let mut j = i;
        while j > 0 && after(&v[j - 1], &v[j]) {
            v.swap(j - 1, j);
            j -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_as_the_standard_library_does() {
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        for len in 0..70 {
            let mut v: Vec<(u64, usize)> = (0..len)
                .map(|i| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    (seed % 8, i)
                })
                .collect();
            let mut want = v.clone();
            want.sort_by_key(|p| p.0);
            by_key(&mut v, |p| p.0);
            assert_eq!(v, want);
            let mut words: Vec<String> = v.iter().map(|p| format!("b{}{}", p.0, p.1 % 3)).collect();
            let mut want = words.clone();
            want.sort();
            ascending(&mut words);
            assert_eq!(words, want);
        }
    }
}
