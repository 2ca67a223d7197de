//! The machines the core offers, by name: what a host may run at a path, natively or in
//! the component (`parlor serve` runs `rooms`; `parlor conformance` runs `echo` at
//! `/engine.io/` and `conformance` at `/socket.io/`). Both hosts name kinds through this
//! one list, so a kind cannot exist on one side only.

use crate::app::{AppConfig, RoomService};
use crate::config::Config;
use crate::conformance::{ConformanceApp, EngineEcho};
use crate::service::{Machine, Service};
use crate::snapshot::SnapshotError;
use crate::time::Instant;

/// A kind of machine.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The room service.
    Rooms,
    /// The Socket.IO handlers the official suite expects.
    Conformance,
    /// Engine.IO alone, echoing every message (the Engine.IO suite).
    Echo,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Rooms, Kind::Conformance, Kind::Echo];

    /// The name hosts and the component's interface use.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Kind::Rooms => "rooms",
            Kind::Conformance => "conformance",
            Kind::Echo => "echo",
        }
    }

    /// The kind with this name.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Every name, for messages: `rooms, conformance, echo`.
    #[must_use]
    pub fn names() -> String {
        Kind::ALL.map(Kind::name).join(", ")
    }

    /// A new machine of this kind (`app` is used by the room service only).
    #[must_use]
    pub fn create(self, core: Config, app: AppConfig, seed: [u8; 32], now: Instant) -> Box<dyn Machine> {
        match self {
            Kind::Rooms => Box::new(Service::new(core, seed, now, RoomService::new(app))),
            Kind::Conformance => Box::new(Service::new(core, seed, now, ConformanceApp::new())),
            Kind::Echo => Box::new(EngineEcho::new(core, seed, now)),
        }
    }

    /// A machine of this kind from its snapshot (which carries its own configuration).
    pub fn restore(self, bytes: &[u8], now: Instant) -> Result<Box<dyn Machine>, SnapshotError> {
        Ok(match self {
            Kind::Rooms => Box::new(Service::<RoomService>::restore(bytes, now)?),
            Kind::Conformance => Box::new(Service::<ConformanceApp>::restore(bytes, now)?),
            Kind::Echo => Box::new(EngineEcho::restore(bytes, now)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Kind;
    use crate::{Config, Instant};

    #[test]
    fn every_kind_is_found_by_its_name_and_restores_its_own_snapshot() {
        assert_eq!(Kind::names(), "rooms, conformance, echo");
        for kind in Kind::ALL {
            assert_eq!(Kind::from_name(kind.name()), Some(kind));
            let machine = kind.create(Config::default(), Default::default(), [3; 32], Instant(0));
            let bytes = machine.snapshot().expect("every kind snapshots");
            assert!(kind.restore(&bytes, Instant(5)).is_ok(), "{kind:?}");
            for other in Kind::ALL.into_iter().filter(|k| *k != kind) {
                assert!(other.restore(&bytes, Instant(5)).is_err(), "{kind:?} into {other:?}");
            }
        }
        assert_eq!(Kind::from_name("chat"), None);
    }
}
