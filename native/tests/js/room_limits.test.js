'use strict';
// Rate limits (DESIGN.md §4): send-message, private-message, message and text-change share one
// bucket; typing-*, cursor-move and selection-change another. Refused → "Rate limit exceeded",
// RATE_LIMITED (ack or error event); events failing validation do not count; a client refused as
// many times as its limit within one window is disconnected. Per user with a token, per socket
// in dev mode.

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

const T = 5000;
const LIMITED = { error: 'Rate limit exceeded', code: 'RATE_LIMITED' };

describe('room service: rate limits', { timeout: 120_000 }, () => {
  let server; // dev mode, 5 per minute in each bucket
  let authed; // with a key, same limits
  let key;
  before(async () => {
    key = await h.keygen();
    const limits = ['--rate-limit', '5', '--typing-rate-limit', '5', '--rate-window', '60000'];
    [server, authed] = await Promise.all([
      h.startRoomServer(limits),
      h.startRoomServer(['--auth-key', key.pubPath, ...limits]),
    ]);
  });
  after(async () => {
    h.closeAllClients();
    if (server) await server.stopAndCheck();
    if (authed) await authed.stopAndCheck();
  });
  afterEach(() => h.closeAllClients());

  async function inRoom(url, room, opts = {}) {
    const s = await h.connect(url, opts, T);
    const rec = h.recorder(s);
    const r = await h.call(s, 'join-room', room);
    assert.ok(r && Array.isArray(r.users), JSON.stringify(r));
    return { s, rec };
  }
  const send = (s, room, content = 'hi') => h.call(s, 'send-message', { content, room });

  it('the 6th send-message within the window is refused; ack or error event', async () => {
    const room = h.unique('rl');
    const a = await inRoom(server.url, room);
    for (let i = 0; i < 5; i++) assert.equal((await send(a.s, room, `m${i}`)).success, true, `message ${i}`);
    assert.deepEqual(await send(a.s, room, 'one too many'), LIMITED);
    a.s.emit('send-message', { content: 'no ack', room });
    const e = await a.rec.waitWhere('error', () => true, T);
    assert.deepEqual(e, { message: 'Rate limit exceeded', code: 'RATE_LIMITED' });
    // another socket (dev mode: per socket) is not affected
    const b = await inRoom(server.url, room);
    assert.equal((await send(b.s, room)).success, true);
  });

  it('events that fail validation do not count', async () => {
    const room = h.unique('rlv');
    const a = await inRoom(server.url, room);
    for (let i = 0; i < 12; i++) {
      assert.equal((await send(a.s, room, '   ')).code, 'VALIDATION');
    }
    for (let i = 0; i < 5; i++) assert.equal((await send(a.s, room, `ok${i}`)).success, true, `message ${i} after invalid ones`);
    assert.deepEqual(await send(a.s, room), LIMITED);
  });

  it('send-message, private-message, message and text-change share one bucket', async () => {
    const room = h.unique('rls');
    const a = await inRoom(server.url, room);
    const b = await inRoom(server.url, room);
    assert.equal((await send(a.s, room)).success, true);
    assert.deepEqual(await h.call(a.s, 'private-message', { to: b.s.id, content: 'pm' }), { success: true });
    a.s.emit('message', { n: 1 });
    await a.rec.waitFor('message-received', 1, T);
    const docId = h.unique('rldoc');
    a.s.emit('join-document', docId);
    await a.rec.waitFor('document-state', 1, T);
    assert.deepEqual(await h.call(a.s, 'text-change', { docId, delta: [{ insert: 'x' }], version: 0 }), { version: 1 });
    assert.equal((await send(a.s, room)).success, true); // 5th
    assert.deepEqual(await h.call(a.s, 'private-message', { to: b.s.id, content: 'pm' }), LIMITED);
    const tc = await h.call(a.s, 'text-change', { docId, delta: [{ insert: 'y' }], version: 1 });
    assert.deepEqual(tc, LIMITED);
  });

  it('typing, cursor and selection events have their own bucket', async () => {
    const room = h.unique('rlt');
    const a = await inRoom(server.url, room);
    const b = await inRoom(server.url, room);
    for (let i = 0; i < 5; i++) assert.equal((await send(a.s, room)).success, true);
    assert.deepEqual(await send(a.s, room), LIMITED, 'chat bucket empty');
    // typing still works: start/stop alternately, each one broadcast
    for (let i = 0; i < 5; i++) a.s.emit(i % 2 === 0 ? 'typing-start' : 'typing-stop', { room });
    await b.rec.waitFor('user-typing', 5, T);
    a.s.emit('typing-stop', { room }); // 6th: refused (Ann is typing, so it would be broadcast)
    assert.deepEqual(await a.rec.waitWhere('error', (e) => e && e.code === 'RATE_LIMITED', T),
      { message: 'Rate limit exceeded', code: 'RATE_LIMITED' });
    await h.sync(a.s);
    await h.sync(b.s);
    assert.equal(b.rec.events('user-typing').length, 5, 'the refused typing-stop was not broadcast');

    // cursor-move and selection-change share the typing bucket
    const c = await inRoom(server.url, room);
    const docId = h.unique('rlc');
    const d = await h.connect(server.url, {}, T);
    const rd = h.recorder(d);
    for (const x of [c.s, d]) x.emit('join-document', docId);
    await c.rec.waitFor('document-state', 1, T);
    await rd.waitFor('document-state', 1, T);
    c.s.emit('typing-start', { room });
    c.s.emit('typing-stop', { room });
    c.s.emit('cursor-move', { docId, position: 0 });
    c.s.emit('selection-change', { docId, selection: { index: 0, length: 0 } });
    c.s.emit('cursor-move', { docId, position: 0 }); // 5th
    await rd.waitFor('cursor-update', 2, T);
    await rd.waitFor('selection-update', 1, T);
    c.s.emit('cursor-move', { docId, position: 0 }); // 6th
    const e2 = await c.rec.waitWhere('error', () => true, T);
    assert.deepEqual(e2, { message: 'Rate limit exceeded', code: 'RATE_LIMITED' });
    await h.sync(d);
    assert.equal(rd.events('cursor-update').length, 2);
    // ... and the chat bucket of c is untouched
    assert.equal((await send(c.s, room)).success, true);
  });

  it('a client that keeps sending past its limit is disconnected ("io server disconnect")', async () => {
    const room = h.unique('rld');
    const a = await inRoom(server.url, room);
    const bye = h.waitDisconnect(a.s, T);
    let disconnected = false;
    bye.then(() => { disconnected = true; }, () => {});
    const answers = [];
    for (let i = 0; i < 20 && !disconnected; i++) {
      const r = await Promise.race([send(a.s, room, `m${i}`), bye.then(() => 'disconnected')]);
      answers.push(r);
      if (r === 'disconnected') break;
    }
    assert.equal(await bye, 'io server disconnect');
    const ok = answers.filter((r) => r && r.success === true).length;
    const refused = answers.filter((r) => r && r.code === 'RATE_LIMITED').length;
    assert.equal(ok, 5, JSON.stringify(answers));
    assert.ok(refused >= 4 && refused <= 5, `refused ${refused} times before the disconnect: ${JSON.stringify(answers)}`);
    assert.ok(answers.slice(0, 9).every((r) => r !== 'disconnected'), `not disconnected before 4 refusals: ${JSON.stringify(answers)}`);
  });

  it('with a token the bucket is per user: tabs share it', async () => {
    const room = h.unique('rlu');
    const t = await h.cliToken(key.keyPath, { sub: h.unique('tabby'), name: 'Tabby' });
    const tab1 = await inRoom(authed.url, room, { auth: { token: t } });
    const tab2 = await inRoom(authed.url, room, { auth: { token: t } });
    for (let i = 0; i < 3; i++) assert.equal((await send(tab1.s, room)).success, true);
    for (let i = 0; i < 2; i++) assert.equal((await send(tab2.s, room)).success, true);
    assert.deepEqual(await send(tab2.s, room), LIMITED);
    assert.deepEqual(await send(tab1.s, room), LIMITED);
    const other = await inRoom(authed.url, room, { auth: { token: await h.cliToken(key.keyPath, { sub: h.unique('o'), name: 'O' }) } });
    assert.equal((await send(other.s, room)).success, true, 'another user is not affected');
  });

  it('the bucket refills over the window', async () => {
    const s2 = await h.startRoomServer(['--rate-limit', '2', '--rate-window', '1000']);
    try {
      const room = h.unique('rlr');
      const a = await inRoom(s2.url, room);
      assert.equal((await send(a.s, room)).success, true);
      assert.equal((await send(a.s, room)).success, true);
      assert.deepEqual(await send(a.s, room), LIMITED);
      await h.sleep(1100); // a full window: the bucket is full again
      assert.equal((await send(a.s, room)).success, true, 'allowed again after the window');
      h.closeAllClients();
    } finally {
      await s2.stopAndCheck();
    }
  });
});
