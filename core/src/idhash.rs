//! A fast hasher for keys the server chooses itself: session and connection numbers,
//! socket sequence numbers and socket ids. A broadcast looks each recipient up in several
//! of these tables, and SipHash (std's default, built to resist keys an attacker picks)
//! was a tenth of a large fan-out's CPU. No client can choose these keys, so the
//! resistance buys nothing there. Tables keyed by what clients choose (room names, user
//! ids, document ids) keep std's hasher.
//!
//! It is also deterministic: the same inputs give the same table order on every run.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// The multiply-rotate hash of rustc's `FxHasher`, over 8-byte words.
#[derive(Copy, Clone, Debug, Default)]
pub struct IdHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl IdHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for IdHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    #[inline]
    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    #[inline]
    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

/// Builds [`IdHasher`]s (no state: every table hashes alike).
pub type IdBuild = BuildHasherDefault<IdHasher>;
/// A map keyed by server-chosen ids.
pub type IdMap<K, V> = HashMap<K, V, IdBuild>;
/// A set of server-chosen ids.
pub type IdSet<K> = HashSet<K, IdBuild>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn sequential_ids_spread_over_buckets_and_high_bits() {
        let b = IdBuild::default();
        let mut low = HashSet::new();
        let mut high = HashSet::new();
        for i in 0..1024u64 {
            let h = b.hash_one(i);
            low.insert(h & 1023);
            high.insert(h >> 57);
        }
        // Distinct buckets for distinct ids (the multiplier is odd: a bijection mod 2^10),
        // and the 7 control bits hashbrown uses all take many values.
        assert_eq!(low.len(), 1024);
        assert_eq!(high.len(), 128);
    }

    #[test]
    fn strings_of_any_length_hash_their_whole_content() {
        let b = IdBuild::default();
        assert_ne!(b.hash_one("abcdefgh1"), b.hash_one("abcdefgh2"));
        assert_ne!(b.hash_one("a"), b.hash_one("b"));
        assert_eq!(b.hash_one("same id"), b.hash_one("same id"));
    }
}
