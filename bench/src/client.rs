//! One Socket.IO client connection over a raw TCP WebSocket: connect, handshake, CONNECT to
//! `/`, join a room; then the scenarios read frames in batches ([`Conn::fill`] and
//! [`RxBuf::next_message`]) and queue what they send ([`TxBuf`]), one write per batch.

use super::proto::{self, Incoming, Sio};
use crate::rng::Rng;
use anyhow::{anyhow, bail, Context};
use parlor_rfc6455::{handshake, OpCode, Peer};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// The largest message we accept from the server.
const MAX_MESSAGE: usize = 16 << 20;

/// Where the server is: `http://host:port/path/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `host:port`, for the Host header.
    pub host: String,
    /// The resolved address.
    pub addr: SocketAddr,
    /// The Engine.IO path, ending with `/`.
    pub path: String,
}

/// Splits `http://host:port/path` into `(host:port, path/)`; the path defaults to
/// `/socket.io/`, the port to 80.
pub fn split_url(url: &str) -> anyhow::Result<(String, String)> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("ws://"))
        .ok_or_else(|| anyhow!("--url must start with http:// or ws:// (got {url:?}); TLS is not supported"))?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if host.is_empty() {
        bail!("--url has no host: {url:?}");
    }
    let host = if host.contains(':') && !host.ends_with(']') { host.to_owned() } else { format!("{host}:80") };
    let path = if path == "/" { "/socket.io/".to_owned() } else { format!("{}/", path.trim_end_matches('/')) };
    Ok((host, path))
}

impl Target {
    pub async fn resolve(url: &str) -> anyhow::Result<Target> {
        let (host, path) = split_url(url)?;
        let addr = tokio::net::lookup_host(&host)
            .await
            .with_context(|| format!("cannot resolve {host}"))?
            .next()
            .ok_or_else(|| anyhow!("{host} resolves to no address"))?;
        Ok(Target { host, addr, path })
    }
}

/// Bytes read and not yet consumed, and the parsing of frames out of them.
pub struct RxBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// A fragmented message being reassembled.
    frag: Vec<u8>,
    fragmented: bool,
}

/// A complete message (or control frame) from the server.
#[derive(Debug, PartialEq, Eq)]
pub enum Msg<'a> {
    /// A text (or binary) message, reassembled if it was fragmented.
    Data(&'a [u8]),
    /// A WebSocket ping: answer with a pong carrying the same bytes.
    Ping(&'a [u8]),
    /// The server's close frame.
    Close,
}

impl RxBuf {
    #[must_use]
    pub fn with_capacity(n: usize) -> RxBuf {
        RxBuf { buf: vec![0; n.max(64)], start: 0, end: 0, frag: Vec::new(), fragmented: false }
    }

    /// Bytes already read and not consumed.
    #[must_use]
    pub fn pending(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Drops `n` pending bytes.
    pub fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Room to read into: compacts, and grows when a frame needs more than there is.
    fn spare(&mut self, need: usize) -> &mut [u8] {
        if self.start > 0 && (self.buf.len() - self.end < need.max(1024) || self.start == self.end) {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.buf.len() - self.end < need {
            let want = (self.end + need).next_power_of_two();
            self.buf.resize(want, 0);
        }
        &mut self.buf[self.end..]
    }

    /// Appends bytes, as a read would (for tests and the handshake's leftovers).
    pub fn push(&mut self, data: &[u8]) {
        self.spare(data.len())[..data.len()].copy_from_slice(data);
        self.end += data.len();
    }

    /// The next complete message in the buffer, `Ok(None)` if more bytes are needed.
    pub fn next_message(&mut self) -> anyhow::Result<Option<Msg<'_>>> {
        loop {
            let pending = &self.buf[self.start..self.end];
            let Some(h) = parlor_rfc6455::parse_header(pending, MAX_MESSAGE, Peer::Server)? else { return Ok(None) };
            if pending.len() < h.frame_len() {
                return Ok(None);
            }
            let (payload_start, payload_end) = (self.start + h.header_len, self.start + h.frame_len());
            self.start += h.frame_len();
            if let Some(mask) = h.mask {
                parlor_rfc6455::apply_mask(&mut self.buf[payload_start..payload_end], mask);
            }
            let payload = payload_start..payload_end;
            // Consumed fully: the next read may start at 0 again, but the payload must stay
            // valid until the caller is done, so reset lazily in `spare`.
            match h.opcode {
                OpCode::Ping => return Ok(Some(Msg::Ping(&self.buf[payload]))),
                OpCode::Pong => continue,
                OpCode::Close => return Ok(Some(Msg::Close)),
                OpCode::Continuation => {
                    if !self.fragmented {
                        bail!("continuation frame without a start");
                    }
                    if self.frag.len() + payload.len() > MAX_MESSAGE {
                        bail!("fragmented message over {MAX_MESSAGE} bytes");
                    }
                    self.frag.extend_from_slice(&self.buf[payload]);
                    if h.fin {
                        self.fragmented = false;
                        return Ok(Some(Msg::Data(&self.frag)));
                    }
                }
                OpCode::Text | OpCode::Binary => {
                    if self.fragmented {
                        bail!("new data frame inside a fragmented message");
                    }
                    if h.fin {
                        return Ok(Some(Msg::Data(&self.buf[payload])));
                    }
                    self.fragmented = true;
                    self.frag.clear();
                    self.frag.extend_from_slice(&self.buf[payload]);
                }
            }
        }
    }

    /// How many more bytes the frame at the front needs at least (1 if unknown).
    fn wanted(&self) -> usize {
        match parlor_rfc6455::parse_header(self.pending(), MAX_MESSAGE, Peer::Server) {
            Ok(Some(h)) => h.frame_len().saturating_sub(self.end - self.start).max(1),
            _ => 1,
        }
    }
}

/// Frames to send, masked, written in one go by [`Conn::flush`].
pub struct TxBuf {
    pub buf: Vec<u8>,
    pub rng: Rng,
    /// Scratch space for building a packet before framing it.
    pub scratch: Vec<u8>,
}

impl TxBuf {
    #[must_use]
    pub fn new(seed: u64) -> TxBuf {
        TxBuf { buf: Vec::new(), rng: Rng::new(seed), scratch: Vec::new() }
    }

    /// Queues a text message.
    pub fn text(&mut self, payload: &[u8]) {
        let mask = self.rng.mask();
        parlor_rfc6455::write_frame(&mut self.buf, OpCode::Text, payload, Some(mask));
    }

    /// Queues the packet built in `scratch` by `build` as a text message.
    pub fn text_with(&mut self, build: impl FnOnce(&mut Vec<u8>)) {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        build(&mut scratch);
        self.text(&scratch);
        self.scratch = scratch;
    }

    pub fn frame(&mut self, opcode: OpCode, payload: &[u8]) {
        let mask = self.rng.mask();
        parlor_rfc6455::write_frame(&mut self.buf, opcode, payload, Some(mask));
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// One client connection.
pub struct Conn {
    pub stream: TcpStream,
    pub rx: RxBuf,
    pub tx: TxBuf,
    /// Our socket id in `/` once connected.
    pub sid: String,
}

/// What happened to a connection while waiting.
#[derive(Debug)]
pub struct Closed(pub &'static str);

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Closed {}

impl Conn {
    /// TCP connect (TCP_NODELAY), WebSocket handshake, Engine.IO open packet.
    pub async fn open(target: &Target, seed: u64, rx_capacity: usize) -> anyhow::Result<Conn> {
        let socket = if target.addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
        socket.set_nodelay(true)?;
        let stream = socket.connect(target.addr).await.context("connect")?;
        stream.set_nodelay(true)?;
        let mut conn = Conn { stream, rx: RxBuf::with_capacity(rx_capacity), tx: TxBuf::new(seed), sid: String::new() };
        let mut rng = Rng::new(seed.rotate_left(17));
        let mut key_bytes = [0u8; 16];
        key_bytes[..8].copy_from_slice(&rng.next_u64().to_ne_bytes());
        key_bytes[8..].copy_from_slice(&rng.next_u64().to_ne_bytes());
        let key = handshake::request_key(key_bytes);
        let request = handshake::request(&target.host, &format!("{}?EIO=4&transport=websocket", target.path), &key);
        conn.stream.write_all(request.as_bytes()).await.context("send handshake")?;
        let head = loop {
            if let Some(end) = handshake::head_end(conn.rx.pending()) {
                break end;
            }
            if conn.rx.pending().len() > 16 * 1024 {
                bail!("handshake response head over 16 KiB");
            }
            if conn.fill().await? == 0 {
                bail!("server closed during the WebSocket handshake");
            }
        };
        handshake::check_response(&conn.rx.pending()[..head], &key).map_err(|e| anyhow!(e))?;
        conn.rx.consume(head);
        conn.until(|m| matches!(m, Incoming::Open(_)).then_some(())).await.context("Engine.IO open packet")?;
        Ok(conn)
    }

    /// [`Conn::open`] then CONNECT to `/` (the answer's sid is kept).
    pub async fn connect(target: &Target, seed: u64, rx_capacity: usize) -> anyhow::Result<Conn> {
        let mut conn = Conn::open(target, seed, rx_capacity).await?;
        conn.tx.text(proto::CONNECT);
        let sid = conn
            .until(|m| match m {
                Incoming::Sio(Sio::Connect { nsp: b"/", data }) => Some(Ok(sid_of(data))),
                Incoming::Sio(Sio::ConnectError { data, .. }) => {
                    Some(Err(anyhow!("CONNECT refused: {}", String::from_utf8_lossy(data))))
                }
                _ => None,
            })
            .await
            .context("Socket.IO CONNECT")??;
        conn.sid = sid;
        Ok(conn)
    }

    /// Emits `join` with an ack and waits for the ack.
    pub async fn join(&mut self, room: &str) -> anyhow::Result<()> {
        self.tx.text(proto::join(0, room).as_bytes());
        self.until(|m| matches!(m, Incoming::Sio(Sio::Ack { id: 0, .. })).then_some(())).await.context("join")
    }

    /// Reads into the buffer; 0 at end of stream.
    pub async fn fill(&mut self) -> std::io::Result<usize> {
        let need = self.rx.wanted();
        let spare = self.rx.spare(need);
        let n = self.stream.read(spare).await?;
        self.rx.end += n;
        Ok(n)
    }

    /// Writes everything queued.
    pub async fn flush(&mut self) -> std::io::Result<()> {
        if !self.tx.buf.is_empty() {
            self.stream.write_all(&self.tx.buf).await?;
            self.tx.buf.clear();
        }
        Ok(())
    }

    /// Flushes, then reads messages until `f` picks one, answering pings on the way.
    pub async fn until<T>(&mut self, mut f: impl FnMut(Incoming<'_>) -> Option<T>) -> anyhow::Result<T> {
        loop {
            while let Some(msg) = self.rx.next_message()? {
                match msg {
                    Msg::Data(data) => {
                        let packet = proto::parse(data);
                        match packet {
                            Incoming::Ping => self.tx.text(proto::PONG),
                            Incoming::Close => return Err(Closed("server sent an Engine.IO close").into()),
                            Incoming::Sio(Sio::Disconnect { .. }) => {
                                return Err(Closed("server disconnected the socket").into())
                            }
                            _ => {}
                        }
                        if let Some(t) = f(packet) {
                            self.flush().await?;
                            return Ok(t);
                        }
                    }
                    Msg::Ping(data) => {
                        let data = data.to_vec();
                        self.tx.frame(OpCode::Pong, &data);
                    }
                    Msg::Close => return Err(Closed("server closed the WebSocket").into()),
                }
            }
            self.flush().await?;
            if self.fill().await? == 0 {
                return Err(Closed("server closed the TCP connection").into());
            }
        }
    }

    /// Handles every complete message already read: answers Engine.IO and WebSocket
    /// pings (into `tx`), hands events and acks to `on`. Returns the pings answered; an
    /// error if the server closed the connection or disconnected the socket.
    pub fn drain(&mut self, mut on: impl FnMut(&mut TxBuf, Sio<'_>)) -> anyhow::Result<u64> {
        let mut pings = 0;
        while let Some(msg) = self.rx.next_message()? {
            match msg {
                Msg::Data(data) => match proto::parse(data) {
                    Incoming::Sio(Sio::Disconnect { .. }) => {
                        return Err(Closed("server disconnected the socket").into())
                    }
                    Incoming::Sio(sio) => on(&mut self.tx, sio),
                    Incoming::Ping => {
                        pings += 1;
                        self.tx.text(proto::PONG);
                    }
                    Incoming::Close => return Err(Closed("server sent an Engine.IO close").into()),
                    _ => {}
                },
                Msg::Ping(data) => self.tx.frame(OpCode::Pong, data),
                Msg::Close => return Err(Closed("server closed the WebSocket").into()),
            }
        }
        Ok(pings)
    }

    /// Flushes what is queued, then waits for more bytes; an error at end of stream.
    pub async fn pump(&mut self) -> anyhow::Result<()> {
        self.flush().await?;
        if self.fill().await? == 0 {
            return Err(Closed("server closed the TCP connection").into());
        }
        Ok(())
    }

    /// A polite goodbye: DISCONNECT and a close frame, then waits (up to `grace`) for the
    /// server's close frame and the end of the stream, so that the server closes the TCP
    /// connection first (its side keeps the TIME_WAIT, not our ephemeral port).
    pub async fn close(mut self, grace: Duration) -> anyhow::Result<()> {
        self.tx.text(proto::DISCONNECT);
        self.tx.frame(OpCode::Close, &1000u16.to_be_bytes());
        self.flush().await?;
        let mut closed = false;
        let wait = async {
            loop {
                while let Some(msg) = self.rx.next_message()? {
                    closed |= msg == Msg::Close;
                }
                if self.fill().await? == 0 {
                    return anyhow::Ok(());
                }
            }
        };
        match tokio::time::timeout(grace, wait).await {
            Ok(result) => result,
            // The close handshake completed; the server is just slow to drop the socket.
            Err(_) if closed => Ok(()),
            Err(_) => Err(anyhow!("no close from the server within {grace:?}")),
        }
    }
}

/// The `sid` of a CONNECT answer, `{"sid":"..."}` (empty if absent).
fn sid_of(data: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(data)
        .ok()
        .and_then(|v| v.get("sid").and_then(|s| s.as_str()).map(str::to_owned))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_host_and_path() {
        let s = |u: &str| split_url(u).unwrap();
        assert_eq!(s("http://127.0.0.1:3000"), ("127.0.0.1:3000".into(), "/socket.io/".into()));
        assert_eq!(s("http://127.0.0.1:3000/"), ("127.0.0.1:3000".into(), "/socket.io/".into()));
        assert_eq!(s("http://localhost:1/io"), ("localhost:1".into(), "/io/".into()));
        assert_eq!(s("ws://h:2/a/b/"), ("h:2".into(), "/a/b/".into()));
        assert_eq!(s("http://example.com"), ("example.com:80".into(), "/socket.io/".into()));
        assert_eq!(s("http://[::1]:5"), ("[::1]:5".into(), "/socket.io/".into()));
        assert!(split_url("https://x:1").is_err());
        assert!(split_url("http:///x").is_err());
    }

    #[test]
    fn messages_come_out_of_split_and_coalesced_reads() {
        let mut wire = Vec::new();
        let mut rng = Rng::new(9);
        parlor_rfc6455::write_frame(&mut wire, OpCode::Text, b"2", Some(rng.mask()));
        parlor_rfc6455::write_frame(&mut wire, OpCode::Ping, b"hb", Some(rng.mask()));
        // A fragmented message: "42[" + "\"a\"]".
        wire.extend_from_slice(&[0x01, 3]);
        wire.extend_from_slice(b"42[");
        wire.extend_from_slice(&[0x80, 4]);
        wire.extend_from_slice(b"\"a\"]");
        let big = vec![b'x'; 70_000];
        parlor_rfc6455::write_frame(&mut wire, OpCode::Text, &big, Some(rng.mask()));
        parlor_rfc6455::write_frame(&mut wire, OpCode::Pong, b"", Some(rng.mask()));
        parlor_rfc6455::write_frame(&mut wire, OpCode::Close, &1000u16.to_be_bytes(), Some(rng.mask()));
        for chunk in [1usize, 7, 100, 4096, wire.len()] {
            let mut rx = RxBuf::with_capacity(64);
            let mut got: Vec<String> = Vec::new();
            for piece in wire.chunks(chunk) {
                rx.push(piece);
                while let Some(m) = rx.next_message().unwrap() {
                    got.push(match m {
                        Msg::Data(d) if d.len() > 100 => format!("data {}", d.len()),
                        Msg::Data(d) => format!("data {}", String::from_utf8_lossy(d)),
                        Msg::Ping(d) => format!("ping {}", String::from_utf8_lossy(d)),
                        Msg::Close => "close".into(),
                    });
                }
            }
            assert_eq!(got, ["data 2", "ping hb", "data 42[\"a\"]", "data 70000", "close"], "chunks of {chunk}");
            assert!(rx.pending().is_empty());
        }
    }

    #[test]
    fn stray_continuations_are_errors() {
        let mut rx = RxBuf::with_capacity(64);
        rx.push(&[0x80, 1, b'x']);
        assert!(rx.next_message().is_err());
    }
}
