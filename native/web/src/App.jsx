// The demo page: sign-in, then rooms, private messages, notifications and a shared
// document over one socket. Sign-in and joined rooms are kept in sessionStorage, so a
// reload signs in again and rejoins (and the server sends each room's history).
import { useCallback, useEffect, useRef, useState } from 'react';
import { connectSocket, disconnectSocket, socket, tokenClaims } from './socket.js';
import { useConnection, useDocument, useNotifications, usePrivateMessages, useRooms, useSocketEvent } from './hooks.js';

const SESSION_KEY = 'parlor-demo-session';
const ROOMS_KEY = 'parlor-demo-rooms';

const load = (key, fallback) => {
  try { return JSON.parse(sessionStorage.getItem(key)) ?? fallback; } catch { return fallback; }
};

export default function App() {
  const [session, setSession] = useState(() => load(SESSION_KEY, null));
  const signIn = (s) => { sessionStorage.setItem(SESSION_KEY, JSON.stringify(s)); setSession(s); };
  const signOut = () => {
    sessionStorage.removeItem(SESSION_KEY);
    sessionStorage.removeItem(ROOMS_KEY);
    disconnectSocket();
    setSession(null);
  };
  if (!session) return <SignIn onSignIn={signIn} />;
  return <Workspace session={session} onSignOut={signOut} />;
}

function SignIn({ onSignIn }) {
  const [name, setName] = useState('');
  const [token, setToken] = useState('');
  const submitName = (e) => { e.preventDefault(); if (name.trim()) onSignIn({ username: name.trim() }); };
  const submitToken = (e) => {
    e.preventDefault();
    const claims = tokenClaims(token.trim());
    if (claims) onSignIn({ token: token.trim(), username: claims.name || claims.sub, userId: claims.sub });
  };
  return (
    <main className="signin">
      <h1>parlor</h1>
      <form onSubmit={submitName} data-testid="signin-name-form">
        <h2>Dev mode: a name</h2>
        <p className="hint">A server started without <code>--auth-key</code> lets anyone in; the user is the tab.</p>
        <input data-testid="signin-name" value={name} onChange={(e) => setName(e.target.value)} placeholder="alice" maxLength={64} />
        <button type="submit" data-testid="signin-name-submit">Enter</button>
      </form>
      <form onSubmit={submitToken} data-testid="signin-token-form">
        <h2>With a token</h2>
        <p className="hint">
          With <code>parlor serve --auth-key keys/parlor.pub</code>, paste a token from{' '}
          <code>parlor token --key keys/parlor.key --sub alice --name Alice --ttl 1h</code>.
        </p>
        <textarea data-testid="signin-token" value={token} onChange={(e) => setToken(e.target.value)} rows={3} placeholder="eyJ..." />
        <button type="submit" data-testid="signin-token-submit" disabled={!tokenClaims(token.trim())}>Sign in</button>
      </form>
    </main>
  );
}

function Workspace({ session, onSignOut }) {
  const [errors, setErrors] = useState([]);
  const onError = useCallback((text) => {
    setErrors((list) => [...list.slice(-4), { id: `${Date.now()}-${Math.random()}`, text }]);
  }, []);
  const conn = useConnection();
  const me = useCallback(() => session.userId || socket.id, [session.userId]);

  useEffect(() => {
    connectSocket(session);
    return () => disconnectSocket();
  }, [session]);
  useSocketEvent('error', (err) => onError(`${err?.code || 'ERROR'}: ${err?.message || JSON.stringify(err)}`));
  useSocketEvent('connect_error', (err) => {
    // While the client retries, the badge says so; a refusal (auth) ends the retries.
    if (socket.active) return;
    const hint = err.message === 'Authentication required' ? ' (this server needs a token: sign out and paste one)' : '';
    onError(`connect: ${err.message}${hint}`);
  });

  const rooms = useRooms({ username: session.username, me, onError, initialRooms: load(ROOMS_KEY, []) });
  useEffect(() => { sessionStorage.setItem(ROOMS_KEY, JSON.stringify(Object.keys(rooms.rooms))); }, [rooms.rooms]);
  const pms = usePrivateMessages({ onError });
  const notes = useNotifications({ onError });
  const doc = useDocument({ onError });
  const [pmTo, setPmTo] = useState('');

  return (
    <div className="app">
      <header>
        <strong>parlor</strong>
        <span data-testid="me">{session.username}{session.userId ? ` (${session.userId})` : ''}</span>
        <ConnectionBadge conn={conn} />
        <span className="spacer" />
        <Bell notes={notes} />
        <button onClick={onSignOut} data-testid="signout">Sign out</button>
      </header>
      <Errors errors={errors} onDismiss={(id) => setErrors((l) => l.filter((e) => e.id !== id))} />
      <div className="columns">
        <Rooms rooms={rooms} me={me} onPick={setPmTo} />
        <div className="side">
          <PrivateMessages pms={pms} to={pmTo} setTo={setPmTo} />
          <Document doc={doc} />
        </div>
      </div>
    </div>
  );
}

function ConnectionBadge({ conn }) {
  const label = conn.status === 'reconnecting'
    ? `reconnecting${conn.attempt ? ` (attempt ${conn.attempt})` : ''}`
    : conn.status;
  return (
    <span className={`badge ${conn.status}`} data-testid="connection-state" data-state={conn.status} title={conn.error || ''}>
      {label}
    </span>
  );
}

function Errors({ errors, onDismiss }) {
  if (!errors.length) return null;
  return (
    <ul className="errors" data-testid="errors">
      {errors.map((e) => (
        <li key={e.id} data-testid="error">
          {e.text} <button onClick={() => onDismiss(e.id)} aria-label="dismiss">×</button>
        </li>
      ))}
    </ul>
  );
}

function Rooms({ rooms, me, onPick }) {
  const [name, setName] = useState('lobby');
  const names = Object.keys(rooms.rooms);
  const [active, setActive] = useState(null);
  const current = active && rooms.rooms[active] ? active : names[0] || null;
  const join = (e) => {
    e.preventDefault();
    const room = name.trim();
    if (!room) return;
    rooms.join(room);
    setActive(room);
  };
  return (
    <section className="rooms">
      <form onSubmit={join} className="row">
        <input data-testid="room-name" value={name} onChange={(e) => setName(e.target.value)} maxLength={128} />
        <button type="submit" data-testid="room-join">Join</button>
      </form>
      <nav className="tabs">
        {names.map((r) => (
          <span key={r} className={r === current ? 'tab active' : 'tab'}>
            <button onClick={() => setActive(r)} data-testid={`room-tab-${r}`}>{r}</button>
            <button onClick={() => rooms.leave(r)} data-testid={`room-leave-${r}`} aria-label={`leave ${r}`}>×</button>
          </span>
        ))}
      </nav>
      {current && <Room key={current} name={current} room={rooms.rooms[current]} rooms={rooms} me={me} onPick={onPick} />}
    </section>
  );
}

function Room({ name, room, rooms, me, onPick }) {
  const [text, setText] = useState('');
  const [status, setStatus] = useState(null);
  const typingSince = useRef(0);
  const list = useRef(null);
  useEffect(() => { if (list.current) list.current.scrollTop = list.current.scrollHeight; }, [room.messages.length]);
  const onChange = (e) => {
    setText(e.target.value);
    // Started again every 2 s while keys come; the server ends it on send, or by itself
    // after its typing timeout when the keys stop.
    if (e.target.value && Date.now() - typingSince.current > 2000) {
      typingSince.current = Date.now();
      rooms.typing(name, true);
    }
    if (!e.target.value && typingSince.current) {
      typingSince.current = 0;
      rooms.typing(name, false);
    }
  };
  const send = async (e) => {
    e.preventDefault();
    const content = text;
    typingSince.current = 0;
    const res = await rooms.send(name, content);
    if (res && res.success) { setText(''); setStatus({ ok: true, text: `sent (${res.id})` }); }
    else setStatus({ ok: false, text: `${res.code}: ${res.error}` });
  };
  const typers = Object.values(room.typing);
  return (
    <div className="room" data-testid={`room-${name}`}>
      <div className="room-body">
        <ol className="messages" ref={list} data-testid="messages">
          {room.messages.map((m) => (
            <li key={m.id} data-testid="message">
              <span className="who">{m.sender?.username}</span>
              <span className="content">{m.content}</span>
              <time>{m.timestamp?.slice(11, 19)}</time>
            </li>
          ))}
        </ol>
        <aside>
          <h3>In {name} ({room.users.length})</h3>
          <ul data-testid="users">
            {room.users.map((u) => (
              <li key={u.id} data-testid="user" data-user-id={u.id}>
                {u.username}
                {u.id === me() ? ' (you)' : <button className="link" onClick={() => onPick(u.id)} data-testid={`pm-pick-${u.username}`}>message</button>}
              </li>
            ))}
          </ul>
        </aside>
      </div>
      <div className="typing" data-testid="typing">
        {typers.length ? `${typers.map((u) => u.username).join(', ')} ${typers.length > 1 ? 'are' : 'is'} typing...` : '\u00a0'}
      </div>
      <form onSubmit={send} className="row">
        <input data-testid="message-input" value={text} onChange={onChange} placeholder={room.joined ? `Message ${name}` : 'joining...'} />
        <button type="submit" data-testid="message-send">Send</button>
      </form>
      {status && <div className={status.ok ? 'ack ok' : 'ack fail'} data-testid="send-status">{status.text}</div>}
    </div>
  );
}

function PrivateMessages({ pms, to, setTo }) {
  const [text, setText] = useState('');
  const [status, setStatus] = useState(null);
  const send = async (e) => {
    e.preventDefault();
    if (!to) return;
    const res = await pms.send(to, text);
    if (res && res.success) { setText(''); setStatus({ ok: true, text: 'delivered' }); }
    else setStatus({ ok: false, text: `${res.code}: ${res.error}` });
  };
  const ids = Object.keys(pms.threads);
  return (
    <section className="pms" data-testid="pms">
      <h3>Private messages</h3>
      <ul className="threads">
        {ids.map((id) => (
          <li key={id} data-testid="pm-thread" data-user-id={id}>
            <button className="link" onClick={() => setTo(id)}>{pms.threads[id].find((m) => !m.mine)?.name || id}</button>
            <ol>
              {pms.threads[id].map((m, i) => (
                <li key={i} data-testid="pm" className={m.mine ? 'mine' : ''}><b>{m.name}:</b> {m.content}</li>
              ))}
            </ol>
          </li>
        ))}
      </ul>
      <form onSubmit={send} className="row">
        <input data-testid="pm-to" value={to} onChange={(e) => setTo(e.target.value)} placeholder="user id" />
        <input data-testid="pm-input" value={text} onChange={(e) => setText(e.target.value)} placeholder="message" />
        <button type="submit" data-testid="pm-send">Send</button>
      </form>
      {status && <div className={status.ok ? 'ack ok' : 'ack fail'} data-testid="pm-status">{status.text}</div>}
    </section>
  );
}

function Bell({ notes }) {
  const [open, setOpen] = useState(false);
  const [permission, setPermission] = useState(typeof Notification === 'undefined' ? 'unsupported' : Notification.permission);
  const ask = async () => {
    if (typeof Notification === 'undefined') return;
    setPermission(await Notification.requestPermission());
  };
  return (
    <div className="bell">
      <button onClick={() => setOpen(!open)} data-testid="bell" aria-label="notifications">
        <svg viewBox="0 0 24 24" width="18" height="18" aria-hidden="true">
          <path fill="currentColor" d="M12 22a2.5 2.5 0 0 0 2.45-2h-4.9A2.5 2.5 0 0 0 12 22zm7-6V11a7 7 0 0 0-5.5-6.84V3a1.5 1.5 0 0 0-3 0v1.16A7 7 0 0 0 5 11v5l-2 2v1h18v-1z" />
        </svg>{' '}
        <span className="count" data-testid="unread-count">{notes.unread}</span>
      </button>
      {open && (
        <div className="dropdown" data-testid="notifications">
          <div className="row">
            <button onClick={notes.markAllRead} data-testid="mark-all-read" disabled={!notes.unread}>Mark all read</button>
            {permission === 'default' && <button onClick={ask}>Enable browser notifications</button>}
          </div>
          {!notes.items.length && <p className="hint">No notifications.</p>}
          <ul>
            {notes.items.map((n) => (
              <li key={n.id} data-testid="notification" data-read={String(!!n.read)} className={n.read ? 'read' : 'unread'}>
                <b>{n.title}</b> {n.message}
                {!n.read && <button className="link" onClick={() => notes.markRead(n.id)} data-testid="mark-read">mark read</button>}
              </li>
            ))}
          </ul>
        </div>
      )}
    </div>
  );
}

function Document({ doc }) {
  const [name, setName] = useState('notes');
  const { view } = doc;
  const open = (e) => { e.preventDefault(); if (name.trim()) doc.open(name.trim()); };
  const report = (e) => doc.moveCursor(e.target.selectionStart);
  const cursors = Object.entries(view.cursors);
  return (
    <section className="doc" data-testid="document">
      <h3>Document {view.docId && <span data-testid="doc-version">v{view.version}</span>}</h3>
      <form onSubmit={open} className="row">
        <input data-testid="doc-name" value={name} onChange={(e) => setName(e.target.value)} maxLength={128} />
        <button type="submit" data-testid="doc-open">Open</button>
        {view.docId && <button type="button" onClick={doc.close}>Close</button>}
      </form>
      {view.docId && (
        <>
          <textarea
            ref={doc.textarea}
            data-testid="doc-text"
            data-joined={String(view.joined)}
            value={view.text}
            disabled={!view.joined}
            onChange={(e) => { doc.edit(e.target.value); report(e); }}
            onSelect={report}
            rows={8}
          />
          <Mirror text={view.text} cursors={cursors} />
        </>
      )}
    </section>
  );
}

/** The text with the other editors' cursors marked in it. */
function Mirror({ text, cursors }) {
  if (!cursors.length) return null;
  const sorted = [...cursors].sort((a, b) => a[1].position - b[1].position);
  const parts = [];
  let at = 0;
  for (const [id, c] of sorted) {
    const pos = Math.min(Math.max(0, c.position), text.length);
    parts.push(text.slice(at, pos));
    parts.push(<span key={id} className="cursor" data-testid="remote-cursor" data-user={c.user?.username}>{c.user?.username}</span>);
    at = pos;
  }
  parts.push(text.slice(at));
  return <pre className="mirror" data-testid="doc-mirror">{parts}</pre>;
}
