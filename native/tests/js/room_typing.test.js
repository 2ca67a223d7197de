'use strict';
// Typing indicators (DESIGN.md §4): typing-start / typing-stop → user-typing to the others in the
// room, never to the typer; the server ends a typing state itself after --typing-timeout and on
// send-message, leave-room and disconnect; a repeated typing-start does not re-broadcast.

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

const T = 5000;

describe('room service: typing', { timeout: 120_000 }, () => {
  let fast; // --typing-timeout 300
  let slow; // --typing-timeout 10000: any isTyping:false within T comes from an action, not expiry
  before(async () => {
    [fast, slow] = await Promise.all([
      h.startRoomServer(['--typing-timeout', '300']),
      h.startRoomServer(['--typing-timeout', '10000']),
    ]);
  });
  after(async () => {
    h.closeAllClients();
    if (fast) await fast.stopAndCheck();
    if (slow) await slow.stopAndCheck();
  });
  afterEach(() => h.closeAllClients());

  async function joined(server, username, room, nsp = '') {
    const s = await h.connect(`${server.url}${nsp}`);
    const rec = h.recorder(s);
    s.emit('join', { username, room });
    await rec.waitFor('room-info', 1, T);
    return { s, rec, user: { id: s.id, username } };
  }

  const typing = (x) => x.rec.payloads('user-typing');
  const waitTyping = (x, user, isTyping, what) => x.rec.waitWhere('user-typing',
    (p) => p && p.user && p.user.id === user.id && p.isTyping === isTyping, T, what || `${user.username} isTyping:${isTyping}`);

  it('typing-start / typing-stop reach the others in the room, never the typer; no re-broadcast', async () => {
    const room = h.unique('typ');
    const a = await joined(slow, 'Ann', room);
    const b = await joined(slow, 'Bob', room);
    const c = await joined(slow, 'Cid', room);
    const other = await joined(slow, 'Out', h.unique('other'));

    a.s.emit('typing-start', { room });
    for (const x of [b, c]) {
      const p = await waitTyping(x, a.user, true);
      assert.deepEqual(p.user, a.user);
      assert.equal(p.isTyping, true);
    }
    a.s.emit('typing-start', { room }); // already typing
    a.s.emit('typing-start', { room });
    await h.sync(a.s);
    a.s.emit('typing-stop', { room });
    for (const x of [b, c]) await waitTyping(x, a.user, false);
    await Promise.all([a, b, c, other].map((x) => h.sync(x.s)));
    for (const x of [b, c]) {
      assert.deepEqual(typing(x).map((p) => p.isTyping), [true, false],
        `${x.user.username}: one true (repeats not re-broadcast) then one false`);
    }
    assert.deepEqual(typing(a), [], 'the typer gets no user-typing');
    assert.deepEqual(typing(other), [], 'another room gets no user-typing');
  });

  it('the server ends typing after --typing-timeout; the typer is not told', async () => {
    const room = h.unique('expire');
    const a = await joined(fast, 'Ann', room);
    const b = await joined(fast, 'Bob', room);
    a.s.emit('typing-start', { room });
    await waitTyping(b, a.user, true);
    const t0 = Date.now();
    await waitTyping(b, a.user, false, 'expiry');
    const elapsed = Date.now() - t0;
    assert.ok(elapsed >= 150, `expired after ${elapsed} ms, expected about 300`);
    await h.sync(a.s);
    assert.deepEqual(typing(a), [], 'expiry is never sent to the typer');

    // typing again after the expiry is a new typing state
    a.s.emit('typing-start', { room });
    await b.rec.waitFor('user-typing', 3, T);
    assert.equal(typing(b)[2].isTyping, true);
    await b.rec.waitFor('user-typing', 4, T);
    assert.equal(typing(b)[3].isTyping, false);
  });

  it('a typing-start keeps refreshing the expiry', async () => {
    const room = h.unique('refresh');
    const a = await joined(fast, 'Ann', room);
    const b = await joined(fast, 'Bob', room);
    a.s.emit('typing-start', { room });
    await waitTyping(b, a.user, true);
    const t0 = Date.now();
    // keep typing for ~600 ms (two timeouts) with a start every 100 ms
    for (let i = 0; i < 6; i++) {
      await h.sleep(100);
      a.s.emit('typing-start', { room });
    }
    await h.sync(a.s);
    await h.sync(b.s);
    assert.deepEqual(typing(b).map((p) => p.isTyping), [true],
      `still typing after ${Date.now() - t0} ms of repeated typing-start`);
    await waitTyping(b, a.user, false, 'expiry after the last start');
  });

  it('send-message ends typing: the others get isTyping:false', async () => {
    const room = h.unique('send');
    const a = await joined(slow, 'Ann', room);
    const b = await joined(slow, 'Bob', room);
    a.s.emit('typing-start', { room });
    await waitTyping(b, a.user, true);
    const res = await h.call(a.s, 'send-message', { content: 'done typing', room });
    assert.equal(res.success, true);
    await waitTyping(b, a.user, false, 'isTyping:false after send-message');
    await b.rec.waitWhere('new-message', (m) => m && m.id === res.id, T);
    await h.sync(a.s);
    assert.deepEqual(typing(a), []);
  });

  it('leave-room ends typing', async () => {
    const room = h.unique('leave');
    const a = await joined(slow, 'Ann', room);
    const b = await joined(slow, 'Bob', room);
    a.s.emit('typing-start', { room });
    await waitTyping(b, a.user, true);
    a.s.emit('leave-room', room);
    await waitTyping(b, a.user, false, 'isTyping:false after leave-room');
    await b.rec.waitWhere('user-left', (l) => l && l.user && l.user.id === a.user.id, T);
  });

  it('disconnect ends typing', async () => {
    const room = h.unique('disc');
    const a = await joined(slow, 'Ann', room);
    const b = await joined(slow, 'Bob', room);
    a.s.emit('typing-start', { room });
    await waitTyping(b, a.user, true);
    a.s.io.engine.close();
    await waitTyping(b, a.user, false, 'isTyping:false after disconnect');
    await b.rec.waitWhere('user-left', (l) => l && l.user && l.user.id === a.user.id, T);
  });

  it('typing on /chat stays on /chat', async () => {
    const room = h.unique('nsp');
    const a = await joined(slow, 'Ann', room, '/chat');
    const b = await joined(slow, 'Bob', room, '/chat');
    const root = await joined(slow, 'Root', room, '');
    a.s.emit('typing-start', { room });
    await waitTyping(b, a.user, true);
    a.s.emit('typing-stop', { room });
    await waitTyping(b, a.user, false);
    await h.sync(root.s);
    assert.deepEqual(typing(root), []);
  });
});
