// Hooks over the one socket: events, the connection state, chat rooms, private messages,
// notifications and a collaborative document. Each hook owns its listeners and removes
// them on unmount; everything that must survive a reconnect is re-sent on `connect`.
import { useCallback, useEffect, useRef, useState } from 'react';
import { request, socket } from './socket.js';
import { apply, diff, transform, transformPosition } from './ot.js';

/** Calls `handler` for every `event` (the latest handler, without re-subscribing). */
export function useSocketEvent(event, handler) {
  const saved = useRef(handler);
  useEffect(() => { saved.current = handler; }, [handler]);
  useEffect(() => {
    const h = (...args) => saved.current(...args);
    socket.on(event, h);
    return () => { socket.off(event, h); };
  }, [event]);
}

/** Like useSocketEvent, for the Manager's events (reconnect attempts live there). */
function useManagerEvent(event, handler) {
  const saved = useRef(handler);
  useEffect(() => { saved.current = handler; }, [handler]);
  useEffect(() => {
    const h = (...args) => saved.current(...args);
    socket.io.on(event, h);
    return () => { socket.io.off(event, h); };
  }, [event]);
}

/**
 * `connecting` | `connected` | `reconnecting` (with the attempt count) | `offline`, the
 * socket id, and the last connect error's message.
 */
export function useConnection() {
  const [state, setState] = useState({ status: socket.connected ? 'connected' : 'connecting', attempt: 0, id: socket.id, error: null });
  useSocketEvent('connect', () => setState({ status: 'connected', attempt: 0, id: socket.id, error: null }));
  useSocketEvent('disconnect', (reason) => {
    // A disconnect the client asked for is not retried; every other one is.
    const retrying = socket.active;
    setState((s) => ({ ...s, status: retrying ? 'reconnecting' : 'offline', id: null, reason }));
  });
  useSocketEvent('connect_error', (err) => {
    setState((s) => ({ ...s, status: socket.active ? s.status : 'offline', error: err.message }));
  });
  useManagerEvent('reconnect_attempt', (attempt) => setState((s) => ({ ...s, status: 'reconnecting', attempt })));
  useManagerEvent('reconnect_failed', () => setState((s) => ({ ...s, status: 'offline' })));
  return state;
}

/**
 * Chat rooms: several joined at once, each with its users, messages (history on join) and
 * who is typing. Joined rooms are joined again on every connect (a restart, a new tab after
 * a reload), as the tutorial's client does.
 */
export function useRooms({ username, me, onError, initialRooms = [] }) {
  const [rooms, setRooms] = useState(() => Object.fromEntries(initialRooms.map((r) => [r, emptyRoom()])));
  const joined = useRef(new Set(initialRooms));
  const refresh = useRef(null);

  const update = useCallback((room, fn) => {
    setRooms((all) => (all[room] ? { ...all, [room]: fn(all[room]) } : all));
  }, []);

  const joinOne = useCallback(async (room) => {
    const res = await request('join', { username, room });
    if (res && res.error) {
      onError(`join ${room}: ${res.code}: ${res.error}`);
      joined.current.delete(room);
      setRooms((all) => { const { [room]: _gone, ...rest } = all; return rest; });
    }
  }, [username, onError]);

  const join = useCallback((room) => {
    if (joined.current.has(room)) return;
    joined.current.add(room);
    setRooms((all) => ({ ...all, [room]: emptyRoom() }));
    if (socket.connected) joinOne(room);
  }, [joinOne]);

  const leave = useCallback(async (room) => {
    joined.current.delete(room);
    setRooms((all) => { const { [room]: _gone, ...rest } = all; return rest; });
    if (socket.connected) {
      const res = await request('leave-room', room);
      if (res && res.error) onError(`leave ${room}: ${res.code}: ${res.error}`);
    }
  }, [onError]);

  // `room-users-update`, `user-joined`, `user-left` and `user-typing` do not say which room
  // they are about: the user lists are asked again (`join-room` is idempotent and its ack
  // carries the room's users) whenever one of them comes.
  const refreshUsers = useCallback(() => {
    clearTimeout(refresh.current);
    refresh.current = setTimeout(() => {
      for (const room of joined.current) {
        request('join-room', room).then((res) => {
          if (res && Array.isArray(res.users)) update(room, (r) => ({ ...r, users: res.users }));
        });
      }
    }, 30);
  }, [update]);
  useEffect(() => () => clearTimeout(refresh.current), []);

  useSocketEvent('connect', () => { for (const room of joined.current) joinOne(room); });
  useSocketEvent('room-info', ({ room, users, recentMessages }) => {
    update(room, (r) => ({ ...r, joined: true, users, messages: mergeMessages(recentMessages, r.messages), typing: {} }));
  });
  useSocketEvent('room-users-update', refreshUsers);
  useSocketEvent('user-joined', refreshUsers);
  useSocketEvent('user-left', ({ user }) => {
    setRooms((all) => mapRooms(all, (r) => ({ ...r, typing: without(r.typing, user.id) })));
    refreshUsers();
  });
  useSocketEvent('new-message', (msg) => {
    if (!msg || typeof msg.room !== 'string') return;
    update(msg.room, (r) => ({
      ...r,
      messages: mergeMessages(r.messages, [msg]),
      typing: msg.sender ? without(r.typing, msg.sender.id) : r.typing,
    }));
  });
  // Shown in each joined room the typer is in (the event names no room).
  useSocketEvent('user-typing', ({ user, isTyping }) => {
    if (!user || user.id === me()) return;
    setRooms((all) => mapRooms(all, (r) => {
      const member = r.users.some((u) => u.id === user.id);
      if (isTyping && member) return { ...r, typing: { ...r.typing, [user.id]: user } };
      return user.id in r.typing ? { ...r, typing: without(r.typing, user.id) } : r;
    }));
  });

  const send = useCallback((room, content) => request('send-message', { room, content }), []);
  const typing = useCallback((room, on) => { socket.emit(on ? 'typing-start' : 'typing-stop', { room }); }, []);
  return { rooms, join, leave, send, typing };
}

/** Every cursor of `cursors` moved by `delta`. */
const shiftCursors = (cursors, delta) =>
  Object.fromEntries(Object.entries(cursors).map(([k, c]) => [k, { ...c, position: transformPosition(delta, c.position) }]));

const emptyRoom = () => ({ joined: false, users: [], messages: [], typing: {} });
const without = (obj, key) => { if (!(key in obj)) return obj; const { [key]: _x, ...rest } = obj; return rest; };
const mapRooms = (all, fn) => Object.fromEntries(Object.entries(all).map(([k, v]) => [k, fn(v)]));

/** Both lists, each message once (by id), in send order (history first). */
function mergeMessages(first, then) {
  const seen = new Set();
  const out = [];
  for (const m of [...first, ...then]) {
    if (!m || seen.has(m.id)) continue;
    seen.add(m.id);
    out.push(m);
  }
  return out;
}

/** Private messages, grouped by the other user's id; one's own are kept locally. */
export function usePrivateMessages({ onError }) {
  const [threads, setThreads] = useState({});
  const add = (id, entry) => setThreads((t) => ({ ...t, [id]: [...(t[id] || []), entry] }));
  useSocketEvent('private-message', ({ from, sender, content, timestamp }) => {
    const id = sender ? sender.id : from;
    add(id, { mine: false, name: sender ? sender.username : from, from, content, timestamp });
  });
  const send = useCallback(async (to, content) => {
    const res = await request('private-message', { to, content });
    if (res && res.success) {
      add(to, { mine: true, name: 'me', content, timestamp: new Date().toISOString() });
    } else {
      onError(`private message to ${to}: ${res.code}: ${res.error}`);
    }
    return res;
  }, [onError]);
  return { threads, send };
}

/** The user's notifications (newest first), from `pending-notifications` and pushes. */
export function useNotifications({ onError }) {
  const [items, setItems] = useState([]);
  useSocketEvent('pending-notifications', (list) => {
    if (Array.isArray(list)) setItems([...list].sort((a, b) => String(b.createdAt).localeCompare(String(a.createdAt))));
  });
  useSocketEvent('notification', (n) => {
    setItems((list) => [n, ...list.filter((x) => x.id !== n.id)]);
    // A system notification too, where the user allowed them.
    if (typeof Notification !== 'undefined' && Notification.permission === 'granted') {
      try { new Notification(n.title, { body: n.message, tag: String(n.id) }); } catch { /* not in this context */ }
    }
  });
  const markRead = useCallback(async (id) => {
    const res = await request('notification-read', id);
    if (res && res.success) setItems((list) => list.map((n) => (n.id === id ? { ...n, read: true } : n)));
    else onError(`mark read: ${res.code}: ${res.error}`);
  }, [onError]);
  const markAllRead = useCallback(async () => {
    const res = await request('notifications-read-all');
    if (res && res.success) setItems((list) => list.map((n) => ({ ...n, read: true })));
    else onError(`mark all read: ${res.code}: ${res.error}`);
  }, [onError]);
  return { items, unread: items.filter((n) => !n.read).length, markRead, markAllRead };
}

/** Least time between two edits sent: edits share the chat rate limit (100 a minute). */
const EDIT_INTERVAL_MS = 300;
/** How long to wait after RATE_LIMITED before sending the waiting edits again. */
const RATE_LIMIT_BACKOFF_MS = 3000;
/** Least time between two cursor moves sent (they share the typing rate limit, 600 a minute). */
const CURSOR_INTERVAL_MS = 150;

/**
 * One collaborative document. The client keeps the text at the server version it knows
 * (`base`), at most one edit in flight, and the user's text; edits are the delta from
 * base (+ the edit in flight) to the user's text. A remote edit (already transformed by the
 * server to its head) is transformed past the edit in flight and the unsent changes, as the
 * server will transform them past it; so every client ends with the server's text.
 */
export function useDocument({ onError }) {
  const [view, setView] = useState({ docId: null, text: '', version: 0, cursors: {}, joined: false });
  const st = useRef({ docId: null, base: '', version: 0, inflight: null, local: '', joined: false, timer: null, lastSent: 0, hold: 0 });
  const textarea = useRef(null);
  const sendCursorRef = useRef(() => {});

  const publish = useCallback((extra = {}) => {
    const s = st.current;
    setView((v) => ({ ...v, ...extra, docId: s.docId, text: s.local, version: s.version, joined: s.joined }));
  }, []);

  const flush = useCallback(() => {
    const s = st.current;
    clearTimeout(s.timer);
    s.timer = null;
    if (!s.joined || s.inflight || !socket.connected) return;
    const shadow = s.base;
    if (s.local === shadow) return;
    const wait = Math.max(s.lastSent + EDIT_INTERVAL_MS, s.hold) - Date.now();
    if (wait > 0) { s.timer = setTimeout(flush, wait); return; }
    const delta = diff(shadow, s.local);
    // Remote edits transform the edit in flight (s.inflight changes): the ack is matched by
    // this number, and the base moves by the edit as transformed so far.
    const seq = (s.seq = (s.seq || 0) + 1);
    const docId = s.docId;
    s.inflight = delta;
    s.lastSent = Date.now();
    request('text-change', { docId, delta, version: s.version }).then((res) => {
      const cur = st.current;
      if (cur.docId !== docId || cur.seq !== seq || !cur.inflight) return;
      const sent = cur.inflight;
      cur.inflight = null;
      if (res && typeof res.version === 'number' && !res.error) {
        cur.base = apply(cur.base, sent);
        cur.version = res.version;
        publish();
        flush();
        sendCursorRef.current();
      } else if (res && res.code === 'RATE_LIMITED') {
        onError(`edit: RATE_LIMITED: ${res.error} (retrying)`);
        cur.hold = Date.now() + RATE_LIMIT_BACKOFF_MS;
        flush();
      } else {
        // STALE_VERSION (the server no longer has our base), VALIDATION, ...: the edit was
        // not applied; the document's current state comes back by joining it again.
        onError(`edit: ${res.code}: ${res.error}${res.code === 'STALE_VERSION' ? ' (re-joining)' : ''}`);
        rejoin();
      }
    });
  }, [publish, onError]); // eslint-disable-line react-hooks/exhaustive-deps

  const rejoin = useCallback(() => {
    const s = st.current;
    if (!s.docId) return;
    s.joined = false;
    s.inflight = null;
    socket.emit('join-document', s.docId);
    publish();
  }, [publish]);

  const open = useCallback((docId) => {
    const s = st.current;
    if (s.docId && s.docId !== docId) socket.emit('leave-document', s.docId);
    Object.assign(s, { docId, base: '', version: 0, inflight: null, local: '', joined: false });
    setView({ docId, text: '', version: 0, cursors: {}, joined: false });
    if (socket.connected) socket.emit('join-document', docId);
  }, []);

  const close = useCallback(() => {
    const s = st.current;
    if (s.docId) socket.emit('leave-document', s.docId);
    Object.assign(s, { docId: null, base: '', version: 0, inflight: null, local: '', joined: false });
    setView({ docId: null, text: '', version: 0, cursors: {}, joined: false });
  }, []);

  /** The user changed the text to `text`; the others' cursors move with the change. */
  const edit = useCallback((text) => {
    const s = st.current;
    const change = diff(s.local, text);
    s.local = text;
    publish({});
    setView((v) => ({ ...v, cursors: shiftCursors(v.cursors, change) }));
    flush();
  }, [publish, flush]);

  // The caret is sent when the server has every edit of ours (a position in a text it does
  // not have yet would land elsewhere), at most every CURSOR_INTERVAL_MS, and the last
  // position always goes out.
  const cursor = useRef({ pending: null, timer: null, last: 0 });
  const sendCursor = useCallback(() => {
    const c = cursor.current;
    const s = st.current;
    if (c.pending === null || !s.joined || s.inflight || s.local !== s.base || c.timer) return;
    const wait = c.last + CURSOR_INTERVAL_MS - Date.now();
    if (wait > 0) {
      c.timer = setTimeout(() => { c.timer = null; sendCursor(); }, wait);
      return;
    }
    socket.emit('cursor-move', { docId: s.docId, position: c.pending });
    c.pending = null;
    c.last = Date.now();
  }, []);
  sendCursorRef.current = sendCursor;
  const moveCursor = useCallback((position) => {
    cursor.current.pending = position;
    sendCursor();
  }, [sendCursor]);

  useSocketEvent('connect', () => { if (st.current.docId) rejoin(); });
  useSocketEvent('document-state', ({ content, version, cursors }) => {
    const s = st.current;
    if (!s.docId) return;
    Object.assign(s, { base: content, version, inflight: null, local: content, joined: true });
    const map = {};
    for (const [socketId, c] of cursors || []) if (socketId !== socket.id) map[socketId] = c;
    publish({ cursors: map });
  });
  useSocketEvent('text-change', ({ delta, version }) => {
    const s = st.current;
    if (!s.joined) return;
    const shadow = s.inflight ? apply(s.base, s.inflight) : s.base;
    let remote = delta;
    try {
      s.base = apply(s.base, delta);
    } catch {
      onError('edit: a remote edit did not fit this copy (re-joining)');
      rejoin();
      return;
    }
    s.version = version;
    if (s.inflight) {
      const inflight = transform(delta, s.inflight, true);
      remote = transform(s.inflight, delta, false);
      s.inflight = inflight;
    }
    const unsent = diff(shadow, s.local);
    const local = transform(unsent, remote, false);
    s.local = apply(s.local, local);
    // A caret waiting to be sent is a position in the text before this edit: it moves with
    // the edit too, or the others would be shown where it was (moving the textarea's
    // selection below fires no select event to report it again).
    const c = cursor.current;
    if (c.pending !== null) c.pending = transformPosition(local, c.pending, true);
    // Written to the textarea now, not at React's next render: a key pressed before that
    // render would otherwise be read from the old text and undo the remote edit.
    const el = textarea.current;
    if (el && el.value !== s.local) {
      const focused = document.activeElement === el;
      const [from, to] = [el.selectionStart, el.selectionEnd];
      el.value = s.local;
      if (focused) el.setSelectionRange(transformPosition(local, from, true), transformPosition(local, to, true));
    }
    setView((v) => ({
      ...v,
      text: s.local,
      version: s.version,
      cursors: shiftCursors(v.cursors, local),
    }));
  });
  // A position in the server's text: moved past our edit in flight and our unsent text,
  // as the server moves cursors when it applies them (an insert at a cursor moves it).
  useSocketEvent('cursor-update', ({ socketId, user, position }) => {
    const s = st.current;
    let pos = position;
    if (s.inflight) pos = transformPosition(s.inflight, pos, false);
    pos = transformPosition(diff(s.inflight ? apply(s.base, s.inflight) : s.base, s.local), pos, false);
    setView((v) => ({ ...v, cursors: { ...v.cursors, [socketId]: { user, position: pos } } }));
  });
  useSocketEvent('user-joined-document', ({ socketId, user }) => {
    setView((v) => ({ ...v, cursors: { ...v.cursors, [socketId]: { user, position: 0 } } }));
  });
  useSocketEvent('user-left-document', ({ socketId }) => {
    setView((v) => { const { [socketId]: _gone, ...rest } = v.cursors; return { ...v, cursors: rest }; });
  });
  useEffect(() => () => { clearTimeout(st.current.timer); clearTimeout(cursor.current.timer); }, []);

  return { view, open, close, edit, moveCursor, textarea };
}
