//! Storage as an effect, in a form that knows no application: the core's contract carries
//! an application's storage requests and the store's answers as encoded records, so that
//! adding a record changes the application and the store that serves it, never the
//! contract, the component's interface or its converters.
//!
//! An application defines its own typed records (the room service's are in
//! [`crate::app::records`]) and encodes them with [`Record`]; a store that serves that
//! application decodes them back into the same types and stays typed.
//!
//! The host must carry out requests in the order the core emits them and answer each one
//! (in any order is allowed, but in order is what the embedded store does). The room
//! service sends an ack that says "stored" only after the store's answer came back.

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Names one request; the answer carries it back.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct StoreId(pub u64);

/// What the core asks the store to do: an application's request, encoded with [`Record`].
#[derive(Clone, PartialEq, Eq)]
pub struct StoreRequest(pub Bytes);

impl std::fmt::Debug for StoreRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StoreRequest({} bytes)", self.0.len())
    }
}

/// The store's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreAnswer {
    /// It was done: the application's answer, encoded with [`Record`].
    Done(Bytes),
    /// The store could not do it (or is closed, or could not read the request); nothing
    /// was changed.
    Failed(String),
}

/// A typed record that crosses the contract as bytes (postcard). Records hold JSON as
/// text, not as `serde_json::Value`: postcard is not self-describing.
pub trait Record: Serialize + DeserializeOwned {
    /// The record's bytes.
    fn encode(&self) -> Bytes {
        // Serializing to a Vec only fails for types postcard cannot express (maps with
        // unknown lengths, `deserialize_any`); records have none of them.
        postcard::to_allocvec(self).map(Bytes::from).unwrap_or_default()
    }

    /// The record these bytes hold, or why they hold none.
    fn decode(bytes: &[u8]) -> Result<Self, String> {
        postcard::from_bytes(bytes).map_err(|e| format!("undecodable record: {e}"))
    }
}
