'use strict';
// The room service's chat (DESIGN.md §4), dev mode (no --auth-key): join / room-info / user-joined /
// room-users-update, join-room, send-message with validation and errors, leave-room, disconnect,
// history for late joiners, the separation of / and /chat, and who the user is without a token.
//
// "Did not receive" is checked with h.sync(socket): a side-effect-free round trip on that socket
// after the action under test has been answered, so anything the action sent it has arrived.

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

const T = 5000;
const byId = (users) => [...users].sort((x, y) => (x.id < y.id ? -1 : x.id > y.id ? 1 : 0));
const keys = (o) => Object.keys(o).sort();

function assertError(reply, code, what) {
  assert.ok(reply && typeof reply === 'object', `${what}: an error object, got ${JSON.stringify(reply)}`);
  assert.deepEqual(keys(reply), ['code', 'error'], `${what}: {error, code}, got ${JSON.stringify(reply)}`);
  assert.equal(reply.code, code, `${what}: code ${code}, got ${JSON.stringify(reply)}`);
  assert.equal(typeof reply.error, 'string');
  assert.ok(reply.error.length > 0);
}

describe('room service: chat (dev mode)', { timeout: 120_000 }, () => {
  let server;
  before(async () => { server = await h.startRoomServer(); });
  after(async () => {
    h.closeAllClients();
    if (server) await server.stopAndCheck();
  });
  afterEach(() => h.closeAllClients());

  async function joined(nsp, username, room, opts = {}) {
    const s = await h.connect(`${server.url}${nsp}`, opts);
    const rec = h.recorder(s);
    s.emit('join', { username, room });
    const [ev] = await rec.waitFor('room-info', 1, T);
    return { s, rec, info: ev.args[0], user: { id: s.id, username } };
  }

  for (const nsp of ['', '/chat']) {
    const label = nsp || '/';

    it(`join: room-info to the joiner, user-joined to the others, room-users-update to the room (${label})`, async () => {
      const room = h.unique('join');
      const a = await joined(nsp, 'Ann', room);
      assert.deepEqual(a.info, { room, users: [a.user], recentMessages: [] });

      const b = await joined(nsp, 'Bob', room, { transports: ['websocket'] });
      assert.equal(b.info.room, room);
      assert.deepEqual(byId(b.info.users), byId([a.user, b.user]));
      assert.deepEqual(b.info.recentMessages, []);

      const uj = await a.rec.waitWhere('user-joined', () => true, T);
      assert.deepEqual(uj, { user: b.user, message: 'Bob joined the chat' });
      const both = (users) => Array.isArray(users) && users.length === 2;
      assert.deepEqual(byId(await a.rec.waitWhere('room-users-update', both, T, 'two users')), byId([a.user, b.user]));
      assert.deepEqual(byId(await b.rec.waitWhere('room-users-update', both, T, 'two users')), byId([a.user, b.user]));

      await h.sync(b.s);
      assert.equal(b.rec.events('user-joined').length, 0, 'the joiner does not get its own user-joined');
      assert.equal(a.rec.events('user-joined').length, 1);
    });

    it(`join and join-room are idempotent: room-info again, no second user-joined, listed once (${label})`, async () => {
      const room = h.unique('idem');
      const a = await joined(nsp, 'Ann', room);
      const b = await joined(nsp, 'Bob', room);
      await a.rec.waitFor('user-joined', 1, T);
      await h.sync(a.s);
      await h.sync(b.s);
      const updatesA = a.rec.events('room-users-update').length;
      const updatesB = b.rec.events('room-users-update').length;

      a.s.emit('join', { username: 'Ann', room });
      const infos = await a.rec.waitFor('room-info', 2, T);
      assert.deepEqual(byId(infos[1].args[0].users), byId([a.user, b.user]), 'Ann listed once after re-join');
      const viaJoinRoom = await h.call(a.s, 'join-room', room);
      assert.deepEqual(byId(viaJoinRoom.users), byId([a.user, b.user]), 'join-room after join lists Ann once');
      const viaJoinRoom2 = await h.call(b.s, 'join-room', room);
      assert.deepEqual(byId(viaJoinRoom2.users), byId([a.user, b.user]));

      await h.sync(a.s);
      await h.sync(b.s);
      assert.equal(b.rec.events('user-joined').length, 0, `Bob got no user-joined for Ann's re-join`);
      assert.equal(a.rec.events('user-joined').length, 1, 'Ann got one user-joined (Bob) only');
      assert.equal(a.rec.events('room-users-update').length, updatesA, 'no room-users-update when nothing changed');
      assert.equal(b.rec.events('room-users-update').length, updatesB, 'no room-users-update when nothing changed');
    });

    it(`send-message: new-message to the room incl. sender, trimmed, ack {success, id} (${label})`, async () => {
      const room = h.unique('send');
      const a = await joined(nsp, 'Ann', room);
      const b = await joined(nsp, 'Bob', room, { transports: ['polling'] });
      const outsider = await h.connect(`${server.url}${nsp}`);
      const ro = h.recorder(outsider);

      const res = await h.call(a.s, 'send-message', { content: '  hello there \n', room });
      assert.deepEqual(keys(res), ['id', 'success'], JSON.stringify(res));
      assert.equal(res.success, true);
      assert.equal(typeof res.id, 'string');
      assert.ok(res.id.length > 0);

      const ma = await a.rec.waitWhere('new-message', (m) => m && m.id === res.id, T, `id ${res.id}`);
      const mb = await b.rec.waitWhere('new-message', (m) => m && m.id === res.id, T, `id ${res.id}`);
      assert.deepEqual(keys(ma), ['content', 'id', 'room', 'sender', 'timestamp']);
      assert.deepEqual(ma, { id: res.id, content: 'hello there', sender: a.user, timestamp: ma.timestamp, room });
      h.assertRecentIso(ma.timestamp);
      assert.deepEqual(mb, ma);

      // without an ack (the tutorial's client)
      a.s.emit('send-message', { content: 'no ack', room });
      const m2 = await b.rec.waitWhere('new-message', (m) => m && m.content === 'no ack', T);
      assert.notEqual(m2.id, res.id, 'message ids are unique');
      assert.deepEqual(m2.sender, a.user);

      await h.sync(outsider);
      assert.equal(ro.events('new-message').length, 0, 'a socket outside the room gets nothing');
    });

    it(`send-message validation: 1..=1000 UTF-16 units after trim, field types (${label})`, async () => {
      const room = h.unique('valid');
      const a = await joined(nsp, 'Ann', room);
      const b = await joined(nsp, 'Bob', room);
      const emoji = '\u{1F600}'; // 2 UTF-16 code units
      const bad = [
        ['empty', { content: '', room }],
        ['whitespace only', { content: ' \n\t  ', room }],
        ['1001 units', { content: 'a'.repeat(1001), room }],
        ['500 emoji + 1 (1001 units)', { content: emoji.repeat(500) + 'a', room }],
        ['content a number', { content: 42, room }],
        ['content null', { content: null, room }],
        ['content an object', { content: { text: 'hi' }, room }],
        ['no content', { room }],
        ['no room', { content: 'hello' }],
        ['room a number', { content: 'hello', room: 7 }],
        ['room empty', { content: 'hello', room: '' }],
        ['room 129 units', { content: 'hello', room: 'r'.repeat(129) }],
        ['payload a string', 'hello'],
        ['payload null', null],
        ['payload an array', [room, 'hello']],
      ];
      for (const [what, payload] of bad) {
        assertError(await h.call(a.s, 'send-message', payload), 'VALIDATION', what);
      }
      const good = [
        ['1000 units', 'a'.repeat(1000), 'a'.repeat(1000)],
        ['500 emoji (1000 units)', emoji.repeat(500), emoji.repeat(500)],
        ['1000 units after trim', `  ${'b'.repeat(1000)}\n `, 'b'.repeat(1000)],
        ['one char', 'x', 'x'],
      ];
      for (const [what, content, stored] of good) {
        const res = await h.call(a.s, 'send-message', { content, room });
        assert.equal(res && res.success, true, `${what}: ${JSON.stringify(res)}`);
        const m = await b.rec.waitWhere('new-message', (x) => x && x.id === res.id, T, what);
        assert.equal(m.content, stored, what);
      }
      await h.sync(b.s);
      assert.equal(b.rec.events('new-message').length, good.length, 'invalid messages were not delivered');
    });

    it(`errors without an ack arrive as an error event {message, code} (${label})`, async () => {
      const room = h.unique('errev');
      const a = await joined(nsp, 'Ann', room);
      a.s.emit('send-message', { content: '   ', room });
      const e1 = await a.rec.waitWhere('error', () => true, T);
      assert.deepEqual(keys(e1), ['code', 'message'], JSON.stringify(e1));
      assert.equal(e1.code, 'VALIDATION');
      assert.equal(typeof e1.message, 'string');
      a.s.emit('send-message', { content: 'hi', room: h.unique('elsewhere') });
      const e2 = await a.rec.waitWhere('error', (e) => e && e.code === 'NOT_IN_ROOM', T, 'NOT_IN_ROOM');
      assert.equal(typeof e2.message, 'string');
      // join with a bad username / room
      a.s.emit('join', { username: 'u'.repeat(65), room });
      await a.rec.waitFor('error', 3, T);
      assert.equal(a.rec.events('error')[2].args[0].code, 'VALIDATION', 'username of 65 units');
      a.s.emit('join', { username: 'Ann', room: '' });
      await a.rec.waitFor('error', 4, T);
      assert.equal(a.rec.events('error')[3].args[0].code, 'VALIDATION', 'empty room');
      a.s.emit('join', { username: '\u{1F600}'.repeat(32) + 'a', room });
      await a.rec.waitFor('error', 5, T);
      assert.equal(a.rec.events('error')[4].args[0].code, 'VALIDATION', 'username of 65 UTF-16 units');
      a.s.emit('join', { username: '\u{1F600}'.repeat(32), room });
      await a.rec.waitFor('room-info', 2, T); // 64 units is fine
      assert.equal(a.rec.events('room-info').length, 2, 'invalid joins sent no room-info');
    });

    it(`send-message to a room not joined → NOT_IN_ROOM (${label})`, async () => {
      const room = h.unique('nir');
      await joined(nsp, 'Ann', room);
      const c = await h.connect(`${server.url}${nsp}`);
      assertError(await h.call(c, 'send-message', { content: 'hi', room }), 'NOT_IN_ROOM', 'existing room, not a member');
      assertError(await h.call(c, 'send-message', { content: 'hi', room: h.unique('nobody') }), 'NOT_IN_ROOM', 'unknown room');
    });

    it(`join-room: ack {users}, room-users-update; invalid rooms → VALIDATION (${label})`, async () => {
      const room = h.unique('jr');
      const a = await h.connect(`${server.url}${nsp}`);
      const ra = h.recorder(a);
      const r1 = await h.call(a, 'join-room', room);
      assert.deepEqual(r1, { users: [{ id: a.id, username: a.id }] }, 'dev mode without a name: username is the socket id');
      const b = await h.connect(`${server.url}${nsp}`, { auth: { username: 'Zed' } });
      const r2 = await h.call(b, 'join-room', room);
      assert.deepEqual(byId(r2.users), byId([{ id: a.id, username: a.id }, { id: b.id, username: 'Zed' }]),
        'auth.username names a dev-mode user');
      const upd = await ra.waitWhere('room-users-update', (u) => Array.isArray(u) && u.length === 2, T);
      assert.deepEqual(byId(upd), byId(r2.users));

      const emoji = '\u{1F600}';
      for (const [what, r] of [['empty', ''], ['129 units', 'x'.repeat(129)], ['64 emoji + 1', emoji.repeat(64) + 'x'],
        ['a number', 42], ['null', null], ['an object', { room }], ['an array', [room]]]) {
        assertError(await h.call(a, 'join-room', r), 'VALIDATION', `join-room ${what}`);
      }
      for (const [what, r] of [['128 units', 'y'.repeat(128)], ['64 emoji', emoji.repeat(64)]]) {
        const res = await h.call(a, 'join-room', r);
        assert.ok(res && Array.isArray(res.users), `join-room ${what}: ${JSON.stringify(res)}`);
      }
    });

    it(`leave-room (room): user-left to the others, ack {success:true}, then NOT_IN_ROOM (${label})`, async () => {
      const room = h.unique('leave');
      const a = await joined(nsp, 'Ann', room);
      const b = await joined(nsp, 'Bob', room);
      const c = await joined(nsp, 'Cid', room);
      const res = await h.call(a.s, 'leave-room', room);
      assert.deepEqual(res, { success: true });
      for (const x of [b, c]) {
        const left = await x.rec.waitWhere('user-left', () => true, T);
        assert.deepEqual(left, { user: a.user, message: 'Ann left the chat' });
        const users = await x.rec.waitWhere('room-users-update',
          (u) => Array.isArray(u) && u.length === 2 && !u.some((v) => v.id === a.s.id), T, 'Ann gone');
        assert.deepEqual(byId(users), byId([b.user, c.user]));
      }
      await h.sync(a.s);
      assert.equal(a.rec.events('user-left').length, 0, 'the leaver does not get user-left');
      assertError(await h.call(a.s, 'send-message', { content: 'still here?', room }), 'NOT_IN_ROOM', 'after leaving');
      assertError(await h.call(a.s, 'leave-room', room), 'NOT_IN_ROOM', 'leaving again');
      // b's later join-room lists no stale Ann
      const r = await h.call(b.s, 'join-room', room);
      assert.deepEqual(byId(r.users), byId([b.user, c.user]));
    });

    it(`leave-room without a room leaves every chat room of the socket (${label})`, async () => {
      const r1 = h.unique('all1');
      const r2 = h.unique('all2');
      const a = await joined(nsp, 'Ann', r1);
      a.s.emit('join', { username: 'Ann', room: r2 });
      await a.rec.waitFor('room-info', 2, T);
      const b = await joined(nsp, 'Bob', r1);
      b.s.emit('join', { username: 'Bob', room: r2 });
      await b.rec.waitFor('room-info', 2, T);

      const res = await h.callWithin(T, a.s, 'leave-room'); // ack as the only argument
      assert.deepEqual(res, { success: true });
      const lefts = await b.rec.waitFor('user-left', 2, T);
      for (const e of lefts) assert.deepEqual(e.args[0], { user: a.user, message: 'Ann left the chat' });
      for (const r of [r1, r2]) {
        assertError(await h.call(a.s, 'send-message', { content: 'x', room: r }), 'NOT_IN_ROOM', `after leave-room(): ${r}`);
      }

      // the tutorial's client: emit('leave-room') with nothing at all
      const c = await joined(nsp, 'Cid', r1);
      c.s.emit('leave-room');
      const left = await b.rec.waitWhere('user-left', (l) => l && l.user && l.user.id === c.s.id, T, 'Cid left');
      assert.equal(left.message, 'Cid left the chat');
    });

    it(`disconnect: user-left and room-users-update to the room, no stale user (${label})`, async () => {
      const room = h.unique('disc');
      const a = await joined(nsp, 'Ann', room);
      const b = await joined(nsp, 'Bob', room, { transports: ['websocket'] });
      const c = await joined(nsp, 'Cid', room);
      a.s.disconnect(); // a clean Socket.IO disconnect
      assert.deepEqual(await c.rec.waitWhere('user-left', (l) => l && l.user.id === a.user.id, T),
        { user: a.user, message: 'Ann left the chat' });
      b.s.io.engine.close(); // the transport goes away without a DISCONNECT packet
      assert.deepEqual(await c.rec.waitWhere('user-left', (l) => l && l.user.id === b.user.id, T),
        { user: b.user, message: 'Bob left the chat' });
      await c.rec.waitWhere('room-users-update', (u) => Array.isArray(u) && u.length === 1, T, 'only Cid left');
      const d = await joined(nsp, 'Dee', room);
      assert.deepEqual(byId(d.info.users), byId([c.user, d.user]), 'no stale users after disconnects');
    });

    it(`room-info has the last 50 messages, oldest first (${label})`, async () => {
      const room = h.unique('hist');
      const a = await joined(nsp, 'Ann', room);
      const sent = [];
      for (let i = 0; i < 55; i++) {
        const res = await h.call(a.s, 'send-message', { content: `m${i}`, room });
        assert.equal(res && res.success, true, `message ${i}: ${JSON.stringify(res)}`);
        sent.push(res.id);
      }
      assert.equal(new Set(sent).size, 55, 'ids are unique');
      const late = await joined(nsp, 'Late', room);
      const msgs = late.info.recentMessages;
      assert.equal(msgs.length, 50);
      assert.deepEqual(msgs.map((m) => m.content), Array.from({ length: 50 }, (_, i) => `m${i + 5}`));
      assert.deepEqual(msgs.map((m) => m.id), sent.slice(5));
      for (const m of msgs) {
        assert.deepEqual(keys(m), ['content', 'id', 'room', 'sender', 'timestamp']);
        assert.equal(m.room, room);
        assert.deepEqual(m.sender, a.user);
        h.assertRecentIso(m.timestamp);
      }
      const ts = msgs.map((m) => Date.parse(m.timestamp));
      for (let i = 1; i < ts.length; i++) assert.ok(ts[i] >= ts[i - 1], 'timestamps do not go backwards');
      // the sender's own later join sees the same
      a.s.emit('join', { username: 'Ann', room });
      const infos = await a.rec.waitFor('room-info', 2, T);
      assert.deepEqual(infos[1].args[0].recentMessages.map((m) => m.id), sent.slice(5));
    });
  }

  it('/ and /chat are separate: rooms, presence and history', async () => {
    const room = h.unique('sep');
    const a = await joined('', 'Ann', room);
    const res = await h.call(a.s, 'send-message', { content: 'on root', room });
    assert.equal(res.success, true);
    const b = await joined('/chat', 'Bob', room);
    assert.deepEqual(b.info, { room, users: [b.user], recentMessages: [] });
    const res2 = await h.call(b.s, 'send-message', { content: 'on chat', room });
    assert.equal(res2.success, true);
    await b.rec.waitWhere('new-message', (m) => m && m.id === res2.id, T);
    await h.sync(a.s);
    assert.equal(a.rec.events('user-joined').length, 0, 'no user-joined across namespaces');
    assert.deepEqual(a.rec.payloads('new-message').map((m) => m.content), ['on root']);
    const late = await joined('', 'Late', room);
    assert.deepEqual(late.info.recentMessages.map((m) => m.content), ['on root']);
    assert.deepEqual(byId(late.info.users), byId([a.user, late.user]));
  });

  it('one connection multiplexing / and /chat keeps them apart', async () => {
    const room = h.unique('mux');
    const root = await h.connect(`${server.url}/`, { forceNew: true });
    const chat = root.io.socket('/chat');
    await h.waitConnect(chat, T); // Manager.socket() connects by itself (autoConnect)
    const rr = h.recorder(root);
    const rc = h.recorder(chat);
    root.emit('join', { username: 'RootAnn', room });
    chat.emit('join', { username: 'ChatAnn', room });
    const [ir] = await rr.waitFor('room-info', 1, T);
    const [ic] = await rc.waitFor('room-info', 1, T);
    assert.deepEqual(ir.args[0].users, [{ id: root.id, username: 'RootAnn' }]);
    assert.deepEqual(ic.args[0].users, [{ id: chat.id, username: 'ChatAnn' }]);
    chat.disconnect();
  });
});
