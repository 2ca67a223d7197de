//! Broadcasts from `@socket.io/redis-emitter` (the Node emitter many backends publish
//! with), in its classic format: msgpack `[uid, packet, opts]`, `packet` a Socket.IO
//! `{type, data, nsp}` and `opts` `{rooms, except, flags}`, published on `KEY#NSP#` (every
//! socket of the namespace, or several rooms) or `KEY#NSP#ROOM#` (exactly one room). A node
//! with `--socketio-emitter-key KEY` listens on the first for each namespace it has sockets
//! in and on the second for each room it has a member of, so the emitter's messages reach
//! only nodes with a target, like parlor's own.

use crate::socketio::{Message, Target};
use bytes::Bytes;
use rmpv::Value as Mp;
use serde_json::{Map, Number, Value};

/// How deep a message may nest (an event's arguments are JSON-like values).
const MAX_DEPTH: usize = 32;
/// At most this many attachments in one event (as Socket.IO's own parser allows).
const MAX_ATTACHMENTS: usize = 10;

/// The channels of one emitter key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmitterChannels {
    key: String,
}

impl EmitterChannels {
    #[must_use]
    pub fn new(key: &str) -> EmitterChannels {
        EmitterChannels { key: key.to_owned() }
    }

    /// Broadcasts to a namespace (or to several of its rooms).
    #[must_use]
    pub fn namespace(&self, nsp: &str) -> String {
        format!("{}#{nsp}#", self.key)
    }

    /// Broadcasts to exactly one room.
    #[must_use]
    pub fn room(&self, nsp: &str, room: &str) -> String {
        format!("{}#{nsp}#{room}#", self.key)
    }

    /// Whether a channel is one of this key's.
    #[must_use]
    pub fn owns(&self, channel: &str) -> bool {
        channel.strip_prefix(self.key.as_str()).is_some_and(|rest| rest.starts_with('#'))
    }
}

/// An emitter's broadcast, as parlor emits it: to whom, and what.
#[derive(Clone, Debug, PartialEq)]
pub struct Emitted {
    pub target: Target,
    pub message: Message,
    pub volatile: bool,
}

/// The broadcast in an emitter's message, or why there is none.
pub fn decode(payload: &[u8]) -> Result<Emitted, String> {
    let mut rd = payload;
    let value = rmpv::decode::read_value_with_max_depth(&mut rd, MAX_DEPTH).map_err(|e| format!("not msgpack: {e}"))?;
    if !rd.is_empty() {
        return Err("bytes after the message".into());
    }
    let Mp::Array(parts) = value else { return Err("not [uid, packet, opts]".into()) };
    let [_uid, packet, opts] = <[Mp; 3]>::try_from(parts).map_err(|_| "not [uid, packet, opts]".to_owned())?;
    let packet = map(packet)?;
    // EVENT (2) or BINARY_EVENT (5): nothing else is a broadcast.
    let kind = field(&packet, "type").and_then(Mp::as_u64).ok_or("no packet type")?;
    if kind != 2 && kind != 5 {
        return Err(format!("packet type {kind} is no event"));
    }
    let nsp = field(&packet, "nsp").and_then(Mp::as_str).unwrap_or("/").to_owned();
    let Some(Mp::Array(data)) = field(&packet, "data") else { return Err("no event data".into()) };
    let mut binary = Vec::new();
    let mut args = data.iter().map(|v| json(v, &mut binary)).collect::<Result<Vec<_>, _>>()?;
    if binary.len() > MAX_ATTACHMENTS {
        return Err(format!("{} attachments", binary.len()));
    }
    if args.is_empty() {
        return Err("an event without a name".into());
    }
    let Value::String(event) = args.remove(0) else { return Err("the event name is not text".into()) };
    let opts = map(opts)?;
    let names = |key: &str| -> Result<Vec<String>, String> {
        match field(&opts, key) {
            None | Some(Mp::Nil) => Ok(Vec::new()),
            Some(Mp::Array(items)) => items
                .iter()
                .map(|i| i.as_str().map(str::to_owned).ok_or_else(|| format!("a {key} entry is not text")))
                .collect(),
            Some(_) => Err(format!("{key} is not a list")),
        }
    };
    let flags = field(&opts, "flags").map(|f| map(f.clone())).transpose()?.unwrap_or_default();
    let volatile = field(&flags, "volatile").and_then(Mp::as_bool).unwrap_or(false);
    let target =
        Target { nsp, rooms: names("rooms")?, except_rooms: names("except")?, except_socket: None, local: true };
    Ok(Emitted { target, message: Message::new(event, args).with_binary(binary), volatile })
}

fn map(v: Mp) -> Result<Vec<(Mp, Mp)>, String> {
    match v {
        Mp::Map(m) => Ok(m),
        _ => Err("not a map".into()),
    }
}

fn field<'a>(m: &'a [(Mp, Mp)], key: &str) -> Option<&'a Mp> {
    m.iter().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v)
}

/// A msgpack value as JSON; binary values become attachments with placeholders, as
/// Socket.IO's parser writes them.
fn json(v: &Mp, binary: &mut Vec<Bytes>) -> Result<Value, String> {
    Ok(match v {
        Mp::Nil => Value::Null,
        Mp::Boolean(b) => Value::Bool(*b),
        Mp::Integer(i) => match (i.as_i64(), i.as_u64()) {
            (Some(n), _) => Value::from(n),
            (None, Some(n)) => Value::from(n),
            _ => return Err("an integer out of range".into()),
        },
        Mp::F32(f) => Number::from_f64(f64::from(*f)).map_or(Value::Null, Value::Number),
        Mp::F64(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
        Mp::String(s) => Value::String(s.as_str().ok_or("text that is not UTF-8")?.to_owned()),
        Mp::Binary(b) => {
            binary.push(Bytes::copy_from_slice(b));
            serde_json::json!({"_placeholder": true, "num": binary.len() - 1})
        }
        Mp::Array(items) => Value::Array(items.iter().map(|i| json(i, binary)).collect::<Result<_, _>>()?),
        Mp::Map(entries) => {
            let mut m = Map::new();
            for (k, v) in entries {
                let key = k.as_str().ok_or("a map key that is not text")?.to_owned();
                m.insert(key, json(v, binary)?);
            }
            Value::Object(m)
        }
        Mp::Ext(..) => return Err("a msgpack extension".into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> Mp {
        Mp::String(x.into())
    }

    /// What the emitter writes for `io.to(rooms).except(except).emit(event, ...args)`.
    fn message(nsp: &str, data: Vec<Mp>, rooms: &[&str], except: &[&str], volatile: bool) -> Vec<u8> {
        let packet = Mp::Map(vec![(s("type"), Mp::from(2)), (s("data"), Mp::Array(data)), (s("nsp"), s(nsp))]);
        let list = |v: &[&str]| Mp::Array(v.iter().map(|r| s(r)).collect());
        let flags = if volatile { vec![(s("volatile"), Mp::Boolean(true))] } else { vec![] };
        let opts = Mp::Map(vec![(s("rooms"), list(rooms)), (s("flags"), Mp::Map(flags)), (s("except"), list(except))]);
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, &Mp::Array(vec![s("emitter"), packet, opts])).unwrap();
        out
    }

    #[test]
    fn an_emitters_broadcast_reads_as_parlors_with_attachments_for_buffers() {
        let data = vec![s("news"), Mp::Map(vec![(s("n"), Mp::from(1))]), Mp::Binary(vec![1, 2, 3])];
        let e = decode(&message("/chat", data, &["chat:lobby"], &["muted"], true)).unwrap();
        assert_eq!(e.target.nsp, "/chat");
        assert_eq!(e.target.rooms, ["chat:lobby"]);
        assert_eq!(e.target.except_rooms, ["muted"]);
        assert!(e.target.local && e.volatile);
        assert_eq!(e.message.event, "news");
        assert_eq!(e.message.args, [serde_json::json!({"n": 1}), serde_json::json!({"_placeholder": true, "num": 0})]);
        assert_eq!(e.message.binary, [Bytes::from_static(&[1, 2, 3])]);
    }

    #[test]
    fn anything_else_is_refused() {
        let not_event = {
            let packet = Mp::Map(vec![(s("type"), Mp::from(0)), (s("data"), Mp::Array(vec![])), (s("nsp"), s("/"))]);
            let mut out = Vec::new();
            rmpv::encode::write_value(&mut out, &Mp::Array(vec![s("x"), packet, Mp::Map(vec![])])).unwrap();
            out
        };
        let good = message("/", vec![s("e")], &[], &[], false);
        for bad in [
            vec![],
            vec![0xc1],
            not_event,
            message("/", vec![], &[], &[], false),
            message("/", vec![Mp::from(3)], &[], &[], false),
        ] {
            assert!(decode(&bad).is_err(), "{bad:?}");
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(decode(&trailing).is_err());
        assert!(decode(&good[..good.len() - 1]).is_err(), "truncated");
        let deep = (0..100).fold(Mp::Nil, |inner, _| Mp::Array(vec![inner]));
        assert!(decode(&message("/", vec![s("e"), deep], &[], &[], false)).is_err(), "nested past the bound");
    }

    #[test]
    fn channel_names_are_the_emitters() {
        let c = EmitterChannels::new("socket.io");
        assert_eq!(c.namespace("/"), "socket.io#/#");
        assert_eq!(c.room("/chat", "chat:lobby"), "socket.io#/chat#chat:lobby#");
        assert!(c.owns("socket.io#/#") && !c.owns("socket.io-request#/#") && !c.owns("parlor:nsp:1:/"));
    }
}
