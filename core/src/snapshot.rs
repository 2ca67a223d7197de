//! Whole-state snapshot and restore: the running core as bytes (postcard), so a host can
//! move a live service into a new instance (a new WebAssembly component, a restart)
//! without dropping a connection.
//!
//! A snapshot is `PARLOR` + a format version (u16, little endian) + the machine's kind +
//! the postcard-encoded state. Restoring checks all three and refuses anything else with a
//! [`SnapshotError`]; the running instance then simply keeps going.
//!
//! Transient queues (outputs the host has drained, events the layers above have handled)
//! are empty between steps and are not part of a snapshot.

use serde::de::DeserializeOwned;
use serde::Serialize;
use thiserror::Error;

const MAGIC: &[u8; 6] = b"PARLOR";
/// Bumped whenever the encoded state changes shape.
pub const FORMAT_VERSION: u16 = 3;

#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum SnapshotError {
    #[error("not a parlor snapshot")]
    NotASnapshot,
    #[error("snapshot format {found} is not the supported format {FORMAT_VERSION}")]
    Version { found: u16 },
    #[error("snapshot of a {found:?} machine, not of a {expected:?} one")]
    Kind { found: String, expected: &'static str },
    #[error("snapshot does not decode: {0}")]
    Decode(String),
    #[error("this machine cannot be snapshotted")]
    Unsupported,
}

/// Encodes `state` as a snapshot of a machine of `kind`.
pub fn encode<T: Serialize>(kind: &str, state: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.push(u8::try_from(kind.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(&kind.as_bytes()[..kind.len().min(255)]);
    // Every state type serializes without failing (no maps with non-string keys in JSON,
    // nothing postcard refuses); an error here would be a bug caught by the tests.
    match postcard::to_extend(state, out) {
        Ok(out) => out,
        Err(e) => panic!("a parlor state failed to encode: {e}"),
    }
}

/// Decodes a snapshot of a machine of `kind`.
pub fn decode<T: DeserializeOwned>(kind: &'static str, bytes: &[u8]) -> Result<T, SnapshotError> {
    let rest = bytes.strip_prefix(MAGIC.as_slice()).ok_or(SnapshotError::NotASnapshot)?;
    let (version, rest) = rest.split_first_chunk::<2>().ok_or(SnapshotError::NotASnapshot)?;
    let version = u16::from_le_bytes(*version);
    if version != FORMAT_VERSION {
        return Err(SnapshotError::Version { found: version });
    }
    let (&len, rest) = rest.split_first().ok_or(SnapshotError::NotASnapshot)?;
    let (found, rest) = rest.split_at_checked(len as usize).ok_or(SnapshotError::NotASnapshot)?;
    if found != kind.as_bytes() {
        return Err(SnapshotError::Kind { found: String::from_utf8_lossy(found).into_owned(), expected: kind });
    }
    postcard::from_bytes(rest).map_err(|e| SnapshotError::Decode(e.to_string()))
}

/// `#[serde(with = "json")]`: a JSON value as its text, since postcard (not self-describing)
/// cannot decode `serde_json::Value` directly.
pub mod json {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use serde_json::Value;

    pub fn serialize<S: Serializer>(v: &Value, s: S) -> Result<S::Ok, S::Error> {
        v.to_string().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        let text = String::deserialize(d)?;
        serde_json::from_str(&text).map_err(serde::de::Error::custom)
    }
}

/// `#[serde(with = "json_opt")]` for `Option<Value>`.
pub mod json_opt {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use serde_json::Value;

    pub fn serialize<S: Serializer>(v: &Option<Value>, s: S) -> Result<S::Ok, S::Error> {
        v.as_ref().map(Value::to_string).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(text) => serde_json::from_str(&text).map(Some).map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}

/// `#[serde(with = "json_seq")]` for a `VecDeque<Value>`.
pub mod json_seq {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use serde_json::Value;
    use std::collections::VecDeque;

    pub fn serialize<S: Serializer>(v: &VecDeque<Value>, s: S) -> Result<S::Ok, S::Error> {
        v.iter().map(Value::to_string).collect::<Vec<String>>().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<VecDeque<Value>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|t| serde_json::from_str(t).map_err(serde::de::Error::custom))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::{ConformanceApp, EngineEcho};
    use crate::service::Machine;
    use crate::testing::Host;
    use crate::time::Instant;
    use crate::{Config, Service};

    /// The conformance machines with live sessions survive a snapshot. With
    /// `PARLOR_SNAPSHOT_SEEDS=DIR` their snapshots are written there as seeds for the
    /// `snapshot_restore` fuzz target (mode byte 0, then the snapshot).
    #[test]
    fn conformance_machines_restore_with_their_sessions() {
        let config = Config { max_buffered_bytes: 400, ..Config::default() };
        let mut echo = Host::new(EngineEcho::new(config.clone(), [1; 32], Instant(0)));
        let sid = echo.open_polling("EIO=4&transport=polling");
        echo.post(&format!("EIO=4&transport=polling&sid={sid}"), b"4hello\x1e4again");
        let (ws, _) = echo.open_ws();
        echo.text(ws, "4hi");
        echo.get(&format!("EIO=4&transport=polling&sid={sid}"));
        let mut app = Host::new(Service::new(config, [2; 32], Instant(0), ConformanceApp::new()));
        let (a, _) = app.open_ws();
        app.text(a, "40");
        app.text(a, "40/custom,{\"token\":\"abc\"}");
        app.text(a, "451-[\"message\",{\"_placeholder\":true,\"num\":0}]");
        let sid = app.open_polling("EIO=4&transport=polling");
        app.post(&format!("EIO=4&transport=polling&sid={sid}"), b"40");

        let echo_snap = echo.machine.snapshot().unwrap();
        let app_snap = app.machine.snapshot().unwrap();
        let echo2 = EngineEcho::restore(&echo_snap, Instant(0)).unwrap();
        let app2 = Service::<ConformanceApp>::restore(&app_snap, Instant(0)).unwrap();
        assert_eq!(echo2.metrics().connections, 2);
        assert_eq!(app2.metrics(), app.machine.metrics());
        assert_eq!(app2.check_bounds(), Ok(()));
        assert_eq!(echo2.engine().check_bounds(), Ok(()));
        if let Some(dir) = std::env::var_os("PARLOR_SNAPSHOT_SEEDS") {
            for (name, snap) in [("snap_echo", &echo_snap), ("snap_conformance", &app_snap)] {
                let seed: Vec<u8> = std::iter::once(0).chain(snap.iter().copied()).collect();
                std::fs::write(std::path::Path::new(&dir).join(name), seed).unwrap();
            }
        }
    }

    #[test]
    fn refuses_foreign_bytes_other_versions_and_other_kinds() {
        let snap = encode("echo", &(1u32, String::from("x")));
        assert_eq!(decode::<(u32, String)>("echo", &snap), Ok((1, "x".into())));
        assert_eq!(
            decode::<(u32, String)>("rooms", &snap),
            Err(SnapshotError::Kind { found: "echo".into(), expected: "rooms" })
        );
        assert_eq!(decode::<u32>("echo", b"nope"), Err(SnapshotError::NotASnapshot));
        let mut old = snap.clone();
        old[6] = 99;
        assert_eq!(decode::<(u32, String)>("echo", &old), Err(SnapshotError::Version { found: 99 }));
        assert!(matches!(decode::<(u32, String)>("echo", &snap[..snap.len() - 1]), Err(SnapshotError::Decode(_))));
    }
}
