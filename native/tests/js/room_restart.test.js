'use strict';
// Durability (DESIGN.md §6): whatever was acked survives a SIGKILL and a restart on the same
// --data-dir: chat history (newest messages, send order, ids unique across restarts),
// notifications with their read marks, documents (content and version).

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

const T = 5000;

describe('room service: durability across restarts', { timeout: 120_000 }, () => {
  let key;
  const servers = new Set();
  before(async () => { key = await h.keygen(); });
  afterEach(async () => {
    h.closeAllClients();
    for (const s of servers) await s.stop({ signal: 'SIGKILL' });
    servers.clear();
  });
  after(() => h.closeAllClients());

  async function start(dataDir, extra = []) {
    const s = await h.startRoomServer(['--auth-key', key.pubPath, '--rate-limit', '100000', ...extra], { dataDir });
    servers.add(s);
    return s;
  }
  async function kill(s) {
    h.closeAllClients();
    const r = await s.stop({ signal: 'SIGKILL' });
    servers.delete(s);
    assert.equal(r.signal, 'SIGKILL');
  }
  async function term(s) {
    h.closeAllClients();
    await s.stopAndCheck();
    servers.delete(s);
  }
  const tokenFor = (sub, name = sub) => h.joseToken(key.privatePem, { sub, name });
  async function connectAs(url, sub) {
    const s = h.client(url, { auth: { token: await tokenFor(sub) } });
    const rec = h.recorder(s);
    await h.waitConnect(s, T);
    const pending = await rec.waitWhere('pending-notifications', () => true, T);
    return { s, rec, pending };
  }
  async function roomInfo(url, sub, room) {
    const c = await connectAs(url, sub);
    c.s.emit('join', { username: sub, room });
    return c.rec.waitWhere('room-info', () => true, T);
  }

  it('chat history: acked messages survive SIGKILL; newest 50 in send order; ids unique across restarts', async () => {
    const dataDir = h.tempDir('parlor-data-');
    const room = 'persist-room';
    let s = await start(dataDir);
    const a = await connectAs(s.url, 'ann');
    await h.call(a.s, 'join-room', room);
    // pipelined: all 60 in flight at once, the kill right after the last ack
    const acks = await Promise.all(Array.from({ length: 60 }, (_, i) =>
      h.callWithin(15_000, a.s, 'send-message', { content: `before ${i}`, room })));
    acks.forEach((r, i) => assert.equal(r && r.success, true, `message ${i}: ${JSON.stringify(r)}`));
    const infoBefore = await roomInfo(s.url, 'bob', room);
    assert.deepEqual(infoBefore.recentMessages.map((m) => m.content), Array.from({ length: 50 }, (_, i) => `before ${i + 10}`));
    // the same room on /chat holds something else
    const c = h.client(`${s.url}/chat`, { auth: { token: await tokenFor('cid') } });
    await h.waitConnect(c, T);
    await h.call(c, 'join-room', room);
    assert.equal((await h.call(c, 'send-message', { content: 'on /chat', room })).success, true);
    await kill(s);

    s = await start(dataDir);
    const info = await roomInfo(s.url, 'dee', room);
    assert.deepEqual(info.recentMessages, infoBefore.recentMessages, 'the same 50 messages, same ids, timestamps and order');
    const oldIds = new Set(acks.map((r) => r.id));
    const a2 = await connectAs(s.url, 'ann');
    await h.call(a2.s, 'join-room', room);
    const after1 = [];
    for (let i = 0; i < 5; i++) {
      const r = await h.call(a2.s, 'send-message', { content: `after ${i}`, room });
      assert.equal(r.success, true);
      assert.ok(!oldIds.has(r.id), `id ${r.id} was used before the restart`);
      after1.push(r.id);
    }
    const c2 = h.client(`${s.url}/chat`, { auth: { token: await tokenFor('cid') } });
    const rc2 = h.recorder(c2);
    await h.waitConnect(c2, T);
    c2.emit('join', { username: 'cid', room });
    const chatInfo = await rc2.waitWhere('room-info', () => true, T);
    assert.deepEqual(chatInfo.recentMessages.map((m) => m.content), ['on /chat']);

    // a clean restart too
    await term(s);
    s = await start(dataDir);
    const info2 = await roomInfo(s.url, 'eve', room);
    assert.deepEqual(info2.recentMessages.map((m) => m.content),
      [...Array.from({ length: 45 }, (_, i) => `before ${i + 15}`), ...Array.from({ length: 5 }, (_, i) => `after ${i}`)]);
    assert.deepEqual(info2.recentMessages.slice(45).map((m) => m.id), after1);
    await term(s);
  });

  it('notifications and read marks survive SIGKILL', async () => {
    const dataDir = h.tempDir('parlor-data-');
    let s = await start(dataDir);
    const admin = await h.cliToken(key.keyPath, { sub: 'ops', name: 'Ops', admin: true });
    const made = [];
    for (const title of ['one', 'two', 'three']) {
      const res = await h.fetch(`${s.url}/api/notifications`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${admin}` },
        body: JSON.stringify({ userId: 'nina', title, message: `${title}!` }),
      });
      assert.equal(res.status, 201, await res.clone().text());
      made.push(await res.json());
    }
    const n = await connectAs(s.url, 'nina');
    assert.deepEqual(n.pending.map((x) => x.id), [made[2].id, made[1].id, made[0].id]);
    assert.deepEqual(await h.call(n.s, 'notification-read', made[0].id), { success: true });
    // one for an offline user, through /admin
    const ad = await h.connect(`${s.url}/admin`, { auth: { token: admin } }, T);
    const viaAdmin = await h.call(ad, 'notify', { userId: 'otto', title: 'offline', message: 'stored' });
    assert.equal(viaAdmin.success, true);
    await kill(s);

    s = await start(dataDir);
    const n2 = await connectAs(s.url, 'nina');
    assert.deepEqual(n2.pending.map((x) => [x.title, x.read]), [['three', false], ['two', false], ['one', true]]);
    assert.deepEqual(n2.pending.map((x) => x.id), [made[2].id, made[1].id, made[0].id]);
    assert.deepEqual(n2.pending[1], made[1], 'the stored notification is unchanged');
    const o = await connectAs(s.url, 'otto');
    assert.deepEqual(o.pending, [viaAdmin.notification]);

    assert.deepEqual(await h.call(n2.s, 'notifications-read-all'), { success: true });
    await kill(s);
    s = await start(dataDir);
    const n3 = await connectAs(s.url, 'nina');
    assert.deepEqual(n3.pending.map((x) => x.read), [true, true, true]);
    await term(s);
  });

  it('documents (content and version) survive SIGKILL', async () => {
    const dataDir = h.tempDir('parlor-data-');
    const docId = 'persist-doc';
    let s = await start(dataDir);
    const a = await connectAs(s.url, 'ann');
    const b = await connectAs(s.url, 'bob');
    for (const x of [a, b]) x.s.emit('join-document', docId);
    await a.rec.waitFor('document-state', 1, T);
    await b.rec.waitFor('document-state', 1, T);
    let v = (await h.call(a.s, 'text-change', { docId, delta: [{ insert: 'Hello \u{1F600} world' }], version: 0 })).version;
    assert.equal(v, 1);
    v = (await h.call(b.s, 'text-change', { docId, delta: [{ retain: 6 }, { delete: 2 }, { insert: 'big' }], version: v })).version;
    // and one based on an older version (transformed)
    v = (await h.call(a.s, 'text-change', { docId, delta: [{ retain: 14 }, { insert: '!' }], version: 1 })).version;
    assert.equal(v, 3);
    a.s.emit('join-document', docId);
    const [, st] = await a.rec.waitFor('document-state', 2, T);
    const before = st.args[0];
    assert.equal(before.content, 'Hello big world!');
    await kill(s);

    s = await start(dataDir);
    const c = await connectAs(s.url, 'cid');
    c.s.emit('join-document', docId);
    const after1 = await c.rec.waitWhere('document-state', () => true, T);
    assert.equal(after1.content, before.content);
    assert.equal(after1.version, before.version);
    assert.deepEqual(await h.call(c.s, 'text-change', { docId, delta: [{ insert: '> ' }], version: after1.version }),
      { version: before.version + 1 });
    await term(s);
    s = await start(dataDir);
    const d = await connectAs(s.url, 'dee');
    d.s.emit('join-document', docId);
    const after2 = await d.rec.waitWhere('document-state', () => true, T);
    assert.equal(after2.content, '> Hello big world!');
    assert.equal(after2.version, before.version + 1);
    await term(s);
  });
});
