'use strict';
// Private messages (DESIGN.md §4): `private-message {to, content}` where `to` is a user id (every
// socket of that user) or a socket id → the target gets `private-message {from, sender, content,
// timestamp}`; ack {success:true}; nobody there → ack {error, code:"NOT_FOUND"}.

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

const T = 5000;
const keys = (o) => Object.keys(o).sort();

describe('room service: private messages', { timeout: 120_000 }, () => {
  let dev;
  let authed;
  let key;
  before(async () => {
    key = await h.keygen();
    [dev, authed] = await Promise.all([
      h.startRoomServer([]),
      h.startRoomServer(['--auth-key', key.pubPath]),
    ]);
  });
  after(async () => {
    h.closeAllClients();
    if (dev) await dev.stopAndCheck();
    if (authed) await authed.stopAndCheck();
  });
  afterEach(() => h.closeAllClients());

  async function named(url, username, opts = {}) {
    const s = await h.connect(url, opts, T);
    const rec = h.recorder(s);
    if (username) {
      s.emit('join', { username, room: h.unique('pm-home') });
      await rec.waitFor('room-info', 1, T);
    }
    return { s, rec };
  }

  it('dev mode: to a socket id; only the target gets it; ack {success:true}', async () => {
    const a = await named(dev.url, 'Ann');
    const b = await named(dev.url, 'Bob', { transports: ['polling'] });
    const c = await named(dev.url, 'Cid');
    const res = await h.call(a.s, 'private-message', { to: b.s.id, content: 'psst, Bob' });
    assert.deepEqual(res, { success: true });
    const pm = await b.rec.waitWhere('private-message', () => true, T);
    assert.deepEqual(keys(pm), ['content', 'from', 'sender', 'timestamp']);
    assert.equal(pm.from, a.s.id);
    assert.deepEqual(pm.sender, { id: a.s.id, username: 'Ann' });
    assert.equal(pm.content, 'psst, Bob');
    h.assertRecentIso(pm.timestamp);
    await h.sync(a.s);
    await h.sync(c.s);
    assert.equal(a.rec.events('private-message').length, 0, 'not echoed to the sender');
    assert.equal(c.rec.events('private-message').length, 0, 'nobody else gets it');

    // without an ack it is delivered all the same
    a.s.emit('private-message', { to: b.s.id, content: 'again' });
    await b.rec.waitWhere('private-message', (p) => p && p.content === 'again', T);
  });

  it('nobody there → ack {error, code:"NOT_FOUND"}; bad payloads → VALIDATION', async () => {
    const a = await named(dev.url, 'Ann');
    const b = await named(dev.url, 'Bob');
    const nf = await h.call(a.s, 'private-message', { to: 'no-such-user-or-socket', content: 'hello?' });
    assert.deepEqual(keys(nf), ['code', 'error']);
    assert.equal(nf.code, 'NOT_FOUND');
    assert.equal(typeof nf.error, 'string');
    // a socket that has gone
    const gone = await named(dev.url, 'Gone');
    const goneId = gone.s.id;
    gone.s.disconnect();
    await h.waitUntil(async () => (await h.call(a.s, 'private-message', { to: goneId, content: 'x' })).code === 'NOT_FOUND',
      'a disconnected socket id is NOT_FOUND', T, 100);

    for (const [what, payload] of [
      ['empty content', { to: b.s.id, content: '' }],
      ['whitespace content', { to: b.s.id, content: '   ' }],
      ['1001 units', { to: b.s.id, content: 'z'.repeat(1001) }],
      ['501 emoji', { to: b.s.id, content: '\u{1F600}'.repeat(501) }],
      ['content a number', { to: b.s.id, content: 5 }],
      ['no to', { content: 'hi' }],
      ['to a number', { to: 12, content: 'hi' }],
      ['to empty', { to: '', content: 'hi' }],
      ['payload a string', 'hi'],
    ]) {
      const r = await h.call(a.s, 'private-message', payload);
      assert.equal(r && r.code, 'VALIDATION', `${what}: ${JSON.stringify(r)}`);
      assert.equal(typeof r.error, 'string');
    }
    const ok = await h.call(a.s, 'private-message', { to: b.s.id, content: '\u{1F600}'.repeat(500) });
    assert.deepEqual(ok, { success: true }, '500 emoji = 1000 UTF-16 units is fine');
    await h.sync(b.s);
    assert.equal(b.rec.events('private-message').length, 1, 'only the valid one was delivered');
  });

  it('with tokens: to a user id reaches every tab of that user; to a socket id only that tab', async () => {
    const aliceId = h.unique('alice');
    const bobId = h.unique('bob');
    const ta = await h.cliToken(key.keyPath, { sub: aliceId, name: 'Alice' });
    const tb = await h.joseToken(key.privatePem, { sub: bobId, name: 'Bob' });
    const alice = await named(authed.url, null, { auth: { token: ta } });
    const bob1 = await named(authed.url, null, { auth: { token: tb } });
    const bob2 = await named(authed.url, null, { auth: { token: tb }, transports: ['websocket'] });
    const bobChat = await named(`${authed.url}/chat`, null, { auth: { token: tb } });

    assert.deepEqual(await h.call(alice.s, 'private-message', { to: bobId, content: 'hi Bob' }), { success: true });
    for (const tab of [bob1, bob2]) {
      const pm = await tab.rec.waitWhere('private-message', () => true, T);
      assert.deepEqual(pm.sender, { id: aliceId, username: 'Alice' });
      assert.equal(pm.from, alice.s.id);
      assert.equal(pm.content, 'hi Bob');
    }

    assert.deepEqual(await h.call(alice.s, 'private-message', { to: bob2.s.id, content: 'only tab 2' }), { success: true });
    await bob2.rec.waitWhere('private-message', (p) => p && p.content === 'only tab 2', T);
    await h.sync(bob1.s);
    assert.deepEqual(bob1.rec.payloads('private-message').map((p) => p.content), ['hi Bob']);
    await h.sync(bobChat.s);
    void bobChat; // whether /chat sockets of the user also get it is not part of the contract

    // a user id nobody is connected as
    const nf = await h.call(alice.s, 'private-message', { to: h.unique('offline'), content: 'anyone?' });
    assert.equal(nf.code, 'NOT_FOUND');
  });
});
