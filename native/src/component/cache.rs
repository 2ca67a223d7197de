//! The compiled-component cache: `FILE.wasm.cwasm` next to the component, keyed by the
//! engine's compatibility hash and a hash of the `.wasm`, so a start skips the compile.

use std::path::{Path, PathBuf};
use wasmtime::component::Component;
use wasmtime::Engine;
use super::runtime::to_anyhow;

/// What the first line of a `.cwasm` cache file says, before its key.
const CACHE_MAGIC: &[u8; 13] = b"parlor-cwasm\n";

/// `FILE.wasm` → `FILE.wasm.cwasm`.
pub(super) fn cache_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".cwasm");
    PathBuf::from(name)
}

pub(super) fn load_cached(engine: &Engine, cache: &Path, key: u64) -> Option<Component> {
    let bytes = std::fs::read(cache).ok()?;
    let rest = bytes.strip_prefix(CACHE_MAGIC.as_slice())?;
    let (found, artifact) = rest.split_first_chunk::<8>()?;
    if u64::from_le_bytes(*found) != key {
        tracing::debug!(cache = %cache.display(), "compiled component cache is stale");
        return None;
    }
    // SAFETY: the artifact was written by `store_cache` of this host for a component file
    // with the same hash, under an engine with the same compatibility hash (that is the
    // key); wasmtime checks its own header and the engine's settings again. The file sits
    // next to the component and is as trusted as the component itself.
    match unsafe { Component::deserialize(engine, artifact) } {
        Ok(component) => Some(component),
        Err(e) => {
            tracing::warn!(cache = %cache.display(), error = %e, "compiled component cache unreadable; compiling");
            None
        }
    }
}

/// Writes the cache next to the component (atomically: a temp file, then a rename). A
/// directory that is not writable only costs the next start a compile.
pub(super) fn store_cache(component: &Component, cache: &Path, key: u64) {
    let write = || -> anyhow::Result<()> {
        let artifact = component.serialize().map_err(to_anyhow)?;
        let mut bytes = Vec::with_capacity(CACHE_MAGIC.len() + 8 + artifact.len());
        bytes.extend_from_slice(CACHE_MAGIC);
        bytes.extend_from_slice(&key.to_le_bytes());
        bytes.extend_from_slice(&artifact);
        let tmp = cache.with_extension(format!("cwasm.tmp{}", std::process::id()));
        std::fs::write(&tmp, &bytes)?;
        std::fs::rename(&tmp, cache)?;
        Ok(())
    };
    if let Err(e) = write() {
        tracing::warn!(cache = %cache.display(), error = %e, "cannot write the compiled component cache");
    }
}

