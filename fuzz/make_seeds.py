#!/usr/bin/env python3
"""Writes the seed corpora of the structured fuzz targets (ot, service, the stream mode of
socketio_packet, the tamper/sign modes of token) under fuzz/corpus/.

The targets read their input through `arbitrary` 1.x; this script writes bytes in that
format, mirroring the targets' types (fuzz/src/lib.rs, fuzz/fuzz_targets/*.rs). If those
types change, the seeds stay valid inputs but may mean something else: rerun this and
check with `cargo +nightly fuzz fmt TARGET fuzz/corpus/TARGET/FILE`.

The format, as far as used here: enum variant i of n = a u32 (little-endian) x with
(x * n) >> 32 == i; bool = one byte, low bit; u8/u16/u64 = little-endian bytes; Vec<T> =
a continuation bool before each element and a false at the end (take_rest: until the
data runs out); Option = bool then value; String/&[u8] = bytes, with their length taken
from the END of the data (one byte while at most 256 bytes remain, else two).
"""

import os
import sys


class E:
    def __init__(self):
        self.front = bytearray()
        self.back = []  # lengths, in the order they are read

    def u8(self, v):
        self.front.append(v & 0xFF)
        return self

    def u16(self, v):
        self.front += int(v).to_bytes(2, "little")
        return self

    def u64(self, v):
        self.front += int(v).to_bytes(8, "little")
        return self

    def bool(self, v):
        return self.u8(1 if v else 0)

    def variant(self, i, n):
        assert 0 <= i < n
        x = (i * (1 << 32) + n - 1) // n
        assert (x * n) >> 32 == i and x < (1 << 32)
        self.front += x.to_bytes(4, "little")
        return self

    def string(self, s):
        b = s.encode() if isinstance(s, str) else bytes(s)
        self.back.append((len(self.front), len(b)))
        self.front += b
        return self

    def vec(self, items, f, take_rest=False):
        for it in items:
            self.bool(True)
            f(it)
        if not take_rest:
            self.bool(False)
        return self

    def option(self, v, f):
        self.bool(v is not None)
        if v is not None:
            f(v)
        return self

    def bytes(self):
        # A length takes 1 byte while at most 256 bytes remain, else 2: find the sizes
        # that agree with the total they make.
        sizes = [1] * len(self.back)
        while True:
            total = len(self.front) + sum(sizes)
            new, used = [], 0
            for pos, _ in self.back:
                remaining = total - pos - used
                size = 1 if remaining <= 256 else 2
                assert remaining <= 65537
                new.append(size)
                used += size
            if new == sizes:
                break
            sizes = new
        tail = b""
        for (_, n), size in zip(self.back, sizes):
            assert n < 256 ** size
            tail = n.to_bytes(size, "big") + tail
        return bytes(self.front) + tail


# ---- parlor_fuzz (src/lib.rs) ----

KNOWN_STRINGS = ["general", "random", "a", "", "   ", "doc1", "doc2", "alice", "bob", "root", "hello",
                 "😀", "é", "message", "chat:general", "user:alice", "doc:doc1", "/", "/chat"]
KNOWN_KEYS = ["room", "rooms", "username", "content", "docId", "version", "delta", "position", "selection",
              "to", "id", "userId", "socketId", "title", "message", "event", "data", "token", "pid", "offset",
              "ops", "insert", "retain", "delete", "_placeholder", "num"]


def Str(e, s):
    """A known string, `("seen", k)` for the k-th id seen, or any string."""
    if isinstance(s, tuple) and s[0] == "seen":
        e.variant(2, 4).u8(s[1])
    elif s in KNOWN_STRINGS:
        e.variant(0, 4).u8(KNOWN_STRINGS.index(s))
    else:
        e.variant(3, 4).string(s)


def DeltaOp(e, op):
    kind, v = op
    if kind == "retain":
        e.variant(0, 5).u8(v)
    elif kind == "delete":
        e.variant(1, 5).u8(v)
    elif kind == "insert":
        e.variant(2, 5)
        Str(e, v)
    else:
        raise ValueError(kind)


def J(e, v, depth=0):
    """JSON: None, bool, small int, str, list, dict (known keys only), or ("delta", ops)."""
    if v is None:
        e.u8(0)
    elif isinstance(v, bool):
        e.u8(1).bool(v)
    elif isinstance(v, int):
        assert 0 <= v < 256
        e.u8(3).u8(v)
    elif isinstance(v, str):
        e.u8(5)
        Str(e, v)
    elif isinstance(v, tuple) and v[0] == "delta":
        e.u8(9).u8(len(v[1]))
        for op in v[1]:
            DeltaOp(e, op)
    elif isinstance(v, list):
        e.u8(6).u8(len(v))
        for x in v:
            J(e, x, depth + 1)
    elif isinstance(v, dict):
        e.u8(8).u8(len(v))
        for k, x in v.items():
            e.u8(KNOWN_KEYS.index(k))
            J(e, x, depth + 1)
    else:
        raise ValueError(v)


# ---- service ----

OPS = ["OpenPolling", "OpenWs", "Poll", "Post", "PostRaw", "Sio", "Pong", "Probe", "ProbeStep", "WsText",
       "WsBinary", "End", "Advance", "Store", "StaleStore", "Wall", "Shutdown", "Api", "Raw"]
NSP = ["/", "/chat", "/admin", "/nope"]
EVENTS = ["message", "join", "join-room", "send-message", "typing-start", "typing-stop", "leave-room",
          "private-message", "notification-read", "notifications-read-all", "join-document", "leave-document",
          "text-change", "cursor-move", "selection-change", "stats", "kick", "notify", "broadcast", "unknown-event"]
ARGS = ["Any", "Str", "Join", "Room", "Content", "Private", "Doc", "TextChange", "Cursor", "Selection",
        "NotificationId", "Kick", "Notify", "Broadcast"]
ANSWERS = ["Proper", "Done", "Failed", "Updated", "Records", "Document", "Drop"]


def op(e, name):
    e.variant(OPS.index(name), len(OPS))


def arg(e, a):
    kind, *rest = a
    e.variant(ARGS.index(kind), len(ARGS))
    if kind == "Any":
        J(e, rest[0])
    elif kind == "TextChange":
        doc, version, delta = rest
        Str(e, doc)
        e.variant(0, 2).u8(version)
        J(e, ("delta", delta))
    elif kind == "Cursor":
        Str(e, rest[0])
        e.u16(rest[1])
    elif kind == "Selection":
        Str(e, rest[0])
        J(e, rest[1])
    elif kind == "Kick":
        e.option(rest[0], lambda u: Str(e, u))
        Str(e, rest[1])
    else:
        for s in rest:
            Str(e, s)


def sio_packet(e, p):
    kind = p[0]
    if kind == "connect":
        _, nsp, auth = p
        e.variant(0, 4).variant(NSP.index(nsp), 4)
        if auth is None:
            e.variant(0, 5)
        elif auth[0] == "username":
            e.variant(1, 5)
            Str(e, auth[1])
        elif auth[0] == "token":
            e.variant(2, 5).u8(auth[1])
        elif auth[0] == "recover":
            e.variant(3, 5).u8(auth[1]).option(None, None)
        else:
            raise ValueError(auth)
    elif kind == "disconnect":
        e.variant(1, 4).variant(NSP.index(p[1]), 4)
    elif kind == "event":
        _, nsp, event, args, ack, binary = p
        e.variant(2, 4).variant(NSP.index(nsp), 4).u8(EVENTS.index(event))
        e.vec(args, lambda a: arg(e, a))
        e.bool(ack)
        e.vec(binary, lambda b: e.vec(b, e.u8))
    else:
        raise ValueError(kind)


def service(setup, ops):
    e = E()
    authed, recovery, per_ip, tight = setup
    e.bool(authed).bool(recovery).bool(per_ip).bool(tight).u8(7)

    def one(o):
        name = o[0]
        op(e, name)
        if name in ("OpenPolling", "OpenWs"):
            e.u8(0)
        elif name in ("Poll", "Pong", "Probe"):
            e.u8(o[1])
        elif name == "Sio":
            e.u8(o[1])
            sio_packet(e, o[2])
        elif name == "Post":
            e.u8(o[1])

            def item(it):
                kinds = ["Sio", "Pong", "Ping", "Noop", "Close", "Binary", "Text"]
                e.variant(kinds.index(it[0]), len(kinds))
                if it[0] == "Sio":
                    sio_packet(e, it[1])
                elif it[0] == "Binary":
                    e.vec(it[1], e.u8)
                elif it[0] == "Text":
                    e.string(it[1])

            e.vec(o[2], item)
        elif name == "ProbeStep":
            e.u8(o[1]).variant(["Ping", "Upgrade", "Other"].index(o[2]), 3)
        elif name == "WsText":
            e.u8(o[1]).string(o[2])
        elif name == "End":
            e.u8(o[1]).variant(["Closed", "Error", "Backpressure"].index(o[2]), 3)
        elif name == "Advance":
            kind, v = o[1]
            ms = ["Small", "Seconds", "NextDeadline", "Long"]
            e.variant(ms.index(kind), 4)
            if kind in ("Small", "Seconds"):
                e.u8(v)
        elif name == "Store":
            e.u8(o[1]).variant(ANSWERS.index(o[2]), len(ANSWERS))
            if o[2] == "Document":
                e.option(None, None)
        elif name == "Wall":
            e.variant(1, 4).u16(o[1])  # Later(seconds)
        elif name == "Shutdown":
            pass
        elif name == "Api":
            path, post, token, body = o[1:]
            e.variant(["notifications", "broadcast", "notifications/", "other"].index(path), 4).bool(post)
            e.variant(1, 3).u8(token)
            J(e, body)
        else:
            raise ValueError(name)

    e.vec(ops, one, take_rest=True)
    return e.bytes()


def service_seeds():
    ws_chat = service((False, False, False, False), [
        ("OpenWs",),
        ("Sio", 0, ("connect", "/", ("username", "alice"))),
        ("Sio", 0, ("event", "/", "join", [("Join", "alice", "general")], True, [])),
        ("Store", 0, "Proper"),
        ("Sio", 0, ("event", "/", "send-message", [("Content", "general", "hello")], True, [])),
        ("Store", 0, "Proper"),
        ("Sio", 0, ("event", "/", "typing-start", [("Room", "general")], False, [])),
        ("Advance", ("Seconds", 1)),
        ("Sio", 0, ("event", "/", "leave-room", [("Str", "general")], True, [])),
    ])
    two_users = service((False, False, False, False), [
        ("OpenWs",),
        ("Sio", 0, ("connect", "/chat", None)),
        ("OpenWs",),
        ("Sio", 1, ("connect", "/chat", None)),
        ("Sio", 0, ("event", "/chat", "join-room", [("Str", "random")], True, [])),
        ("Store", 0, "Proper"),
        ("Sio", 1, ("event", "/chat", "join-room", [("Str", "random")], False, [])),
        ("Store", 0, "Failed"),
        ("Sio", 1, ("event", "/chat", "private-message", [("Private", ("seen", 0), "hello")], True, [])),
        ("Sio", 0, ("event", "/chat", "message", [("Any", "hello")], False, [[1, 2, 3]])),
    ])
    polling_upgrade = service((False, False, False, False), [
        ("OpenPolling",),
        ("Post", 0, [("Sio", ("connect", "/", None))]),
        ("Poll", 0),
        ("Poll", 0),
        ("Probe", 0),
        ("ProbeStep", 1, "Ping"),
        ("ProbeStep", 1, "Upgrade"),
        ("Sio", 0, ("event", "/", "join-room", [("Str", "general")], True, [])),
        ("Advance", ("Seconds", 3)),
        ("Pong", 0),
    ])
    documents = service((False, False, False, False), [
        ("OpenWs",),
        ("Sio", 0, ("connect", "/", None)),
        ("Sio", 0, ("event", "/", "join-document", [("Doc", "doc1")], True, [])),
        ("Store", 0, "Proper"),
        ("Sio", 0, ("event", "/", "text-change",
                    [("TextChange", "doc1", 0, [("insert", "hello")])], True, [])),
        ("Store", 0, "Proper"),
        ("Sio", 0, ("event", "/", "text-change",
                    [("TextChange", "doc1", 1, [("retain", 2), ("delete", 1), ("insert", "😀")])], True, [])),
        ("Sio", 0, ("event", "/", "cursor-move", [("Cursor", "doc1", 3)], False, [])),
        ("Sio", 0, ("event", "/", "selection-change", [("Selection", "doc1", {"position": 1})], False, [])),
        ("Sio", 0, ("event", "/", "leave-document", [("Doc", "doc1")], True, [])),
    ])
    authed = service((True, False, False, False), [
        ("OpenWs",),
        ("Sio", 0, ("connect", "/", ("token", 0))),
        ("Store", 0, "Proper"),
        ("OpenWs",),
        ("Sio", 1, ("connect", "/admin", ("token", 2))),
        ("Sio", 1, ("event", "/admin", "notify", [("Notify", "alice", "hello", "message")], True, [])),
        ("Store", 0, "Proper"),
        ("Sio", 0, ("event", "/", "notifications-read-all", [], True, [])),
        ("Store", 0, "Proper"),
        ("Api", "notifications", True, 2, {"userId": "alice", "title": "hello", "message": "hello"}),
        ("Store", 0, "Proper"),
        ("Sio", 1, ("event", "/admin", "stats", [], True, [])),
    ])
    recovery = service((False, True, False, False), [
        ("OpenWs",),
        ("Sio", 0, ("connect", "/", None)),
        ("Sio", 0, ("event", "/", "join-room", [("Str", "general")], False, [])),
        ("Store", 0, "Proper"),
        ("End", 0, "Error"),
        ("OpenWs",),
        ("Sio", 1, ("connect", "/", ("recover", 0))),
        ("Sio", 1, ("event", "/", "send-message", [("Content", "general", "hello")], True, [])),
        ("Store", 0, "Proper"),
    ])
    shutdown = service((False, False, True, True), [
        ("OpenWs",),
        ("OpenPolling",),
        ("Poll", 1),
        ("Sio", 0, ("connect", "/", None)),
        ("Advance", ("NextDeadline", 0)),
        ("Shutdown",),
        ("OpenWs",),
    ])
    typing = service((False, False, False, False), [
        ("OpenWs",),
        ("Sio", 0, ("connect", "/", ("username", "alice"))),
        ("OpenWs",),
        ("Sio", 1, ("connect", "/", ("username", "bob"))),
        ("Sio", 0, ("event", "/", "join-room", [("Str", "general")], False, [])),
        ("Sio", 1, ("event", "/", "join-room", [("Str", "general")], False, [])),
        ("Sio", 0, ("event", "/", "typing-start", [("Room", "general")], False, [])),
        ("Advance", ("Small", 200)),
        ("Sio", 0, ("event", "/", "typing-start", [("Room", "general")], False, [])),
        ("Advance", ("Seconds", 1)),
        ("Sio", 1, ("event", "/", "typing-start", [("Room", "general")], False, [])),
        ("Sio", 1, ("event", "/", "typing-stop", [("Room", "general")], False, [])),
    ])
    spam = [("Sio", 0, ("event", "/", "send-message", [("Content", "general", "hello")], True, []))] * 9
    rate_limit = service((False, False, False, False), [
        ("OpenWs",),
        ("Sio", 0, ("connect", "/", None)),
        ("Sio", 0, ("event", "/", "join-room", [("Str", "general")], False, [])),
    ] + spam)
    edit = ("Sio", 0, ("event", "/", "text-change", [("TextChange", "doc1", 0, [("insert", "a")])], True, []))
    stale = service((False, False, False, False), [
        ("OpenWs",),
        ("Sio", 0, ("connect", "/", None)),
        ("Sio", 0, ("event", "/", "join-document", [("Doc", "doc1")], True, [])),
        ("Store", 0, "Document"),
    ] + [edit, ("Store", 0, "Proper"), ("Advance", ("Seconds", 1)), ("Pong", 0)] * 5)
    kick = service((True, False, False, False), [
        ("OpenWs",),
        ("Sio", 0, ("connect", "/chat", ("token", 1))),
        ("OpenWs",),
        ("Sio", 1, ("connect", "/admin", ("token", 2))),
        ("Sio", 1, ("event", "/admin", "kick", [("Kick", "bob", "")], True, [])),
        ("Sio", 1, ("event", "/admin", "broadcast", [("Any", {"event": "hello", "data": 1})], True, [])),
    ])
    return {"typing_two_users": typing, "rate_limit": rate_limit, "stale_document": stale, "admin_kick": kick,
            "ws_chat": ws_chat, "two_users_private_binary": two_users, "polling_upgrade": polling_upgrade,
            "documents": documents, "authed_admin_api": authed, "recovery": recovery, "shutdown": shutdown}


# ---- socketio_packet, stream mode ----

def stream(msgs):
    e = E()
    kinds = ["Connect", "Disconnect", "Message", "MessageWithAck", "OtherEvent", "Ack"]
    nsps = ["Root", "Custom", "Unknown"]

    def msg(m):
        if m[0] == "Text":
            e.variant(0, 5).string(m[1])
        elif m[0] == "Binary":
            e.variant(1, 5).vec(m[1], e.u8)
        elif m[0] == "Packet":
            _, kind, nsp, ack, args, atts = m
            e.variant(2, 5).variant(kinds.index(kind), 6).variant(nsps.index(nsp), 3)
            e.option(ack, e.u16)
            e.vec(args, lambda a: J(e, a))
            e.vec(atts, lambda b: e.vec(b, e.u8))
        elif m[0] == "Announce":
            _, n, nsp = m
            e.variant(3, 5).u8(n).variant(nsps.index(nsp), 3).vec([], None)
        elif m[0] == "Control":
            e.variant(4, 5).variant(["Ping", "Pong", "Noop", "Upgrade", "Close"].index(m[1]), 5)

    e.vec(msgs, msg, take_rest=True)
    return b"~" + e.bytes()


def stream_seeds():
    return {
        "stream_binary_echo": stream([
            ("Packet", "Connect", "Root", None, [], []),
            ("Packet", "Message", "Root", None, ["hello"], [[1, 2, 3], [4]]),
            ("Packet", "MessageWithAck", "Root", 7, [1], [[9]]),
        ]),
        "stream_custom_nsp": stream([
            ("Packet", "Connect", "Custom", None, [{"token": "abc"}], []),
            ("Text", '42/custom,["message",1]'),
            ("Text", '451-/custom,["message",{"_placeholder":true,"num":0}]'),
            ("Binary", [0xde, 0xad]),
            ("Packet", "Disconnect", "Custom", None, [], []),
        ]),
        "stream_text_while_binary_due": stream([
            ("Packet", "Connect", "Root", None, [], []),
            ("Announce", 2, "Root"),
            ("Control", "Ping"),
        ]),
        "stream_unannounced_binary": stream([("Text", "40"), ("Binary", [1])]),
    }


# ---- ot ----

CH = ["A", "B", "Space", "E", "Emoji", "Cjk"]


def ot(doc, raw, a, b, pos, edits):
    e = E()

    def ch(c):
        e.variant(CH.index(c), len(CH))

    def small(o):
        kind, v = o
        if kind == "retain":
            e.variant(0, 3).u8(v)
        elif kind == "delete":
            e.variant(1, 3).u8(v)
        else:
            e.variant(2, 3).vec(v, ch)

    e.vec(doc, ch)
    e.vec(raw, lambda o: DeltaOp(e, o))
    e.vec(a, small)
    e.vec(b, small)
    e.u8(pos)

    def edit(ed):
        behind, ops, cursor = ed
        e.u8(behind).vec(ops, small)
        e.option(cursor, lambda c: e.u8(c[0]).u8(c[1]))

    e.vec(edits, edit, take_rest=True)
    return e.bytes()


def ot_seeds():
    doc = ["A", "B", "Emoji", "E", "Space", "A"]
    return {
        "concurrent_inserts": ot(doc, [("retain", 1), ("insert", "hello")],
                                 [("retain", 1), ("insert", ["A"])], [("retain", 1), ("insert", ["B"])], 1, []),
        "overlapping_deletes": ot(doc, [("retain", 2), ("delete", 2)],
                                  [("retain", 1), ("delete", 3)], [("retain", 2), ("delete", 3)], 4, []),
        "emoji_boundaries": ot(doc, [("retain", 4), ("insert", "😀")],
                               [("retain", 2), ("delete", 2), ("insert", ["Emoji"])],
                               [("retain", 4), ("insert", ["Cjk"])], 3,
                               []),
        "late_edits": ot(["A", "B", "A"], [], [("insert", ["B"])], [("delete", 1)], 0, [
            (0, [("insert", ["A"])], (0, 2)),
            (1, [("retain", 3), ("insert", ["B"])], (1, 3)),
            (2, [("delete", 2)], None),
            (0, [("retain", 1), ("insert", ["Emoji"])], (0, 9)),
        ]),
    }


# ---- token, tamper and sign modes ----

def token_seeds():
    def tamper(which, edits):
        e = E()
        e.bool(which)
        names = ["Flip", "Insert", "Remove", "Truncate", "Swap", "Replace", "ReplaceJson"]

        def edit(ed):
            e.variant(names.index(ed[0]), len(names))
            if ed[0] == "Flip":
                e.u16(ed[1]).u8(ed[2])
            elif ed[0] == "Swap":
                e.u8(ed[1]).u8(ed[2])
            elif ed[0] == "Replace":
                e.u8(ed[1]).string(ed[2])
            elif ed[0] == "Truncate":
                e.u16(ed[1])

        e.vec(edits, edit, take_rest=True)
        return b"1" + e.bytes()

    return {
        "tamper_flip_payload": tamper(False, [("Flip", 50, 1)]),
        "tamper_flip_signature": tamper(True, [("Flip", 140, 3)]),
        "tamper_swap_segments": tamper(False, [("Swap", 0, 1)]),
        "tamper_replace_header": tamper(False, [("Replace", 0, "eyJhbGciOiJub25lIn0")]),
        "tamper_truncate": tamper(False, [("Truncate", 120)]),
    }


# ---- snapshot_restore (fuzz_targets/snapshot_restore.rs, the script mode) ----

SNAP_OPS = ["Open", "Connect", "Join", "Leave", "Send", "Typing", "Private", "JoinDoc", "Edit", "Cursor", "Raw",
            "Poll", "Upgrade", "Pong", "Drop", "Advance", "Store", "Swap"]
# The fields of each operation, in order: "u8", "bool", "u16" or "str".
SNAP_FIELDS = {
    "Open": ["bool"], "Connect": ["u8", "bool", "bool"], "Join": ["u8", "u8"], "Leave": ["u8", "u8"],
    "Send": ["u8", "u8", "bool"], "Typing": ["u8", "u8", "bool"], "Private": ["u8", "u8"], "JoinDoc": ["u8", "bool"],
    "Edit": ["u8", "u8", "bool", "u8"], "Cursor": ["u8", "u8"], "Raw": ["u8", "str"], "Poll": ["u8"],
    "Upgrade": ["u8", "bool"], "Pong": ["u8"], "Drop": ["u8", "bool"], "Advance": ["u16"], "Store": ["u8", "bool"],
    "Swap": [],
}


def snapshot_script(recovery, ops, seed=3):
    """Mode byte 1 (a script), then `Script { seed, recovery, ops }`."""
    e = E()
    e.u8(1).u8(seed).bool(recovery)

    def one(o):
        name, args = o[0], o[1:]
        e.variant(SNAP_OPS.index(name), len(SNAP_OPS))
        kinds = SNAP_FIELDS[name]
        assert len(kinds) == len(args), o
        for kind, v in zip(kinds, args):
            {"u8": e.u8, "bool": e.bool, "u16": e.u16, "str": e.string}[kind](v)

    e.vec(ops, one, take_rest=True)
    return e.bytes()


def snapshot_seeds():
    return {
        "script_ws_chat": snapshot_script(False, [
            ("Open", False), ("Connect", 0, False, False), ("Join", 0, 0), ("Store", 0, False),
            ("Send", 0, 0, True), ("Swap",), ("Store", 0, False), ("Open", False), ("Connect", 1, True, False),
            ("Join", 1, 0), ("Store", 0, False), ("Send", 1, 0, True), ("Store", 0, False), ("Typing", 0, 0, True),
            ("Swap",), ("Advance", 1000), ("Leave", 0, 0), ("Private", 1, 0),
        ]),
        "script_polling_upgrade": snapshot_script(False, [
            ("Open", True), ("Connect", 0, False, False), ("Poll", 0), ("Join", 0, 1), ("Store", 0, False),
            ("Poll", 0), ("Swap",), ("Send", 0, 1, True), ("Store", 0, False), ("Poll", 0), ("Upgrade", 0, False),
            ("Swap",), ("Upgrade", 0, True), ("Send", 0, 1, True), ("Store", 0, False), ("Advance", 2500),
        ]),
        "script_documents": snapshot_script(False, [
            ("Open", False), ("Connect", 0, False, False), ("Open", False), ("Connect", 1, False, False),
            ("JoinDoc", 0, True), ("JoinDoc", 1, True), ("Store", 0, False), ("Edit", 0, 0, False, 0),
            ("Swap",), ("Edit", 1, 1, False, 1), ("Store", 0, False), ("Store", 0, False), ("Cursor", 1, 2),
            ("Edit", 0, 1, True, 0), ("Swap",), ("Store", 0, True),
        ]),
        "script_recovery": snapshot_script(True, [
            ("Open", False), ("Connect", 0, False, False), ("Join", 0, 2), ("Store", 0, False),
            ("Drop", 0, True), ("Open", False), ("Connect", 1, False, False), ("Join", 1, 2), ("Store", 0, False),
            ("Send", 1, 2, False), ("Store", 0, False), ("Swap",), ("Open", False), ("Connect", 2, False, True),
            ("Send", 2, 2, True), ("Store", 0, False),
        ]),
        "script_pending_store": snapshot_script(False, [
            ("Open", True), ("Connect", 0, True, False), ("Poll", 0), ("Join", 0, 0), ("Send", 0, 0, True),
            ("Poll", 0), ("Swap",), ("Store", 0, False), ("Store", 0, True), ("Poll", 0), ("Poll", 0),
            ("Raw", 0, "42[\"typing-start\",{\"room\":\"r\"}]"), ("Swap",), ("Advance", 800),
        ]),
    }


def main():
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
    for target, seeds in [("service", service_seeds()), ("socketio_packet", stream_seeds()),
                          ("ot", ot_seeds()), ("token", token_seeds()),
                          ("snapshot_restore", snapshot_seeds())]:
        os.makedirs(os.path.join(root, target), exist_ok=True)
        for name, data in seeds.items():
            with open(os.path.join(root, target, name), "wb") as f:
                f.write(data)
            print(f"{target}/{name}: {len(data)} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
