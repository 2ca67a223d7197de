//! Seeded randomness: session ids, socket ids and recovery pids come only from here.

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// A ChaCha20 stream from the host's seed. Ids are 20 url-safe characters (120 bits),
/// the shape Socket.IO's own ids have.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Rng(ChaCha20Rng);

impl Rng {
    #[must_use]
    pub fn new(seed: [u8; 32]) -> Self {
        Rng(ChaCha20Rng::from_seed(seed))
    }

    /// A derived stream, so that each layer draws independently of the others.
    #[must_use]
    pub fn fork(&mut self) -> Rng {
        let mut seed = [0u8; 32];
        self.0.fill_bytes(&mut seed);
        Rng::new(seed)
    }

    pub fn id(&mut self) -> String {
        let mut raw = [0u8; 20];
        self.0.fill_bytes(&mut raw);
        raw.iter().map(|b| ALPHABET[(b & 63) as usize] as char).collect()
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
}
