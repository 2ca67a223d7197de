'use strict';
// Notifications and the producer side (DESIGN.md §4): `/admin` notify / stats / kick / broadcast,
// POST /api/notifications and /api/broadcast with an admin Bearer token, live `notification`,
// `pending-notifications` (newest first, up to 50, read flags) on every authenticated connect,
// `notification-read` / `notifications-read-all`; dev mode refuses the producer API.

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

const T = 5000;
const keys = (o) => Object.keys(o).sort();

function assertNotification(n, { title, message, read = false } = {}) {
  assert.ok(n && typeof n === 'object', `a notification object: ${JSON.stringify(n)}`);
  assert.deepEqual(keys(n), ['createdAt', 'id', 'message', 'read', 'title'], JSON.stringify(n));
  assert.ok(typeof n.id === 'string' || Number.isSafeInteger(n.id), `id: ${JSON.stringify(n.id)}`);
  if (title !== undefined) assert.equal(n.title, title);
  if (message !== undefined) assert.equal(n.message, message);
  assert.equal(n.read, read);
  h.assertRecentIso(n.createdAt);
}

describe('room service: notifications and producers', { timeout: 120_000 }, () => {
  let key;
  let other;
  let server;
  let dev;
  let adminToken;
  before(async () => {
    key = await h.keygen();
    other = await h.joseKeyPair();
    [server, dev] = await Promise.all([
      h.startRoomServer(['--auth-key', key.pubPath]),
      h.startRoomServer([]),
    ]);
    adminToken = await h.cliToken(key.keyPath, { sub: 'ops', name: 'Ops', admin: true });
  });
  after(async () => {
    h.closeAllClients();
    if (server) await server.stopAndCheck();
    if (dev) await dev.stopAndCheck();
  });
  afterEach(() => h.closeAllClients());

  const userToken = (sub, name = sub) => h.joseToken(key.privatePem, { sub, name });

  async function post(base, path, body, token, { raw, auth } = {}) {
    const headers = { 'content-type': 'application/json' };
    if (auth !== undefined) headers.authorization = auth;
    else if (token) headers.authorization = `Bearer ${token}`;
    const res = await h.fetch(`${base}${path}`, { method: 'POST', headers, body: raw !== undefined ? raw : JSON.stringify(body) });
    const text = await res.text();
    let json;
    try { json = JSON.parse(text); } catch { json = undefined; }
    return { status: res.status, json, text };
  }

  /** Connect as `sub`; resolves with {s, rec, pending} (pending = the pending-notifications array). */
  async function user(sub, { nsp = '', name = sub, opts = {} } = {}) {
    const s = h.client(`${server.url}${nsp}`, { auth: { token: await userToken(sub, name) }, ...opts });
    const rec = h.recorder(s);
    await h.waitConnect(s, T);
    const pending = await rec.waitWhere('pending-notifications', () => true, T);
    assert.ok(Array.isArray(pending), `pending-notifications is an array: ${JSON.stringify(pending)}`);
    return { s, rec, pending };
  }

  async function admin() {
    const s = await h.connect(`${server.url}/admin`, { auth: { token: adminToken } }, T);
    return { s, rec: h.recorder(s) };
  }

  async function notifyHttp(userId, title, message) {
    const r = await post(server.url, '/api/notifications', { userId, title, message }, adminToken);
    assert.equal(r.status, 201, `POST /api/notifications: ${r.status} ${r.text}`);
    assertNotification(r.json, { title, message });
    return r.json;
  }

  it('/admin notify: ack {success, notification}; online tabs get it live; offline users at connect', async () => {
    const bob = h.unique('bob');
    const tab1 = await user(bob);
    const tab2 = await user(bob, { opts: { transports: ['websocket'] } });
    const other = await user(h.unique('other'));
    const ad = await admin();
    const res = await h.call(ad.s, 'notify', { userId: bob, title: 'Hello', message: 'Welcome, Bob' });
    assert.deepEqual(keys(res), ['notification', 'success'], JSON.stringify(res));
    assert.equal(res.success, true);
    assertNotification(res.notification, { title: 'Hello', message: 'Welcome, Bob' });
    for (const tab of [tab1, tab2]) {
      const live = await tab.rec.waitWhere('notification', () => true, T);
      assert.deepEqual(live, res.notification);
    }
    await h.sync(other.s);
    assert.equal(other.rec.events('notification').length, 0, 'only the addressed user gets it');

    // an offline user gets it when they connect
    const carol = h.unique('carol');
    const res2 = await h.call(ad.s, 'notify', { userId: carol, title: 'While you were out', message: 'news' });
    assert.equal(res2.success, true);
    const c = await user(carol);
    assert.deepEqual(c.pending, [res2.notification]);
    // and Bob sees his one in pending at his next connect, unread
    const tab3 = await user(bob);
    assert.deepEqual(tab3.pending, [res.notification]);

    // validation
    for (const [what, body] of [['no userId', { title: 't', message: 'm' }], ['no title', { userId: bob, message: 'm' }],
      ['no message', { userId: bob, title: 't' }], ['userId a number', { userId: 5, title: 't', message: 'm' }],
      ['not an object', 'hello']]) {
      const r = await h.call(ad.s, 'notify', body);
      assert.equal(r && r.code, 'VALIDATION', `${what}: ${JSON.stringify(r)}`);
      assert.equal(typeof r.error, 'string');
    }
  });

  it('POST /api/notifications: 201 with the stored notification, delivered live', async () => {
    const dana = h.unique('dana');
    const d = await user(dana);
    const n = await notifyHttp(dana, 'Invoice', 'Your invoice is ready');
    assert.deepEqual(await d.rec.waitWhere('notification', () => true, T), n);
    const again = await user(dana);
    assert.deepEqual(again.pending, [n]);
  });

  it('POST /api/notifications: 401 without or with a bad token, 403 without admin, 400 for a bad body', async () => {
    const body = { userId: 'someone', title: 't', message: 'm' };
    const expired = await h.joseToken(key.privatePem, { sub: 'ops', name: 'Ops', admin: true, exp: Math.floor(Date.now() / 1000) - 60 });
    const foreign = await h.joseToken(other.privatePem, { sub: 'ops', name: 'Ops', admin: true });
    for (const [what, opts] of [
      ['no Authorization', {}],
      ['garbage bearer', { auth: 'Bearer not-a-token' }],
      ['Basic auth', { auth: 'Basic b3BzOm9wcw==' }],
      ['bearer without a token', { auth: 'Bearer ' }],
      ['expired admin token', { auth: `Bearer ${expired}` }],
      ['admin token signed by another key', { auth: `Bearer ${foreign}` }],
    ]) {
      const r = await post(server.url, '/api/notifications', body, null, opts);
      assert.equal(r.status, 401, `${what}: ${r.status} ${r.text}`);
    }
    const plain = await h.cliToken(key.keyPath, { sub: 'someone', name: 'Someone' });
    const r403 = await post(server.url, '/api/notifications', body, plain);
    assert.equal(r403.status, 403, `valid token without admin: ${r403.status} ${r403.text}`);

    for (const [what, b, raw] of [
      ['not JSON', undefined, '{"userId": '],
      ['empty body', undefined, ''],
      ['an array', [body]],
      ['{}', {}],
      ['no userId', { title: 't', message: 'm' }],
      ['no title', { userId: 'u', message: 'm' }],
      ['no message', { userId: 'u', title: 't' }],
      ['userId a number', { userId: 7, title: 't', message: 'm' }],
      ['title an object', { userId: 'u', title: { t: 1 }, message: 'm' }],
    ]) {
      const r = await post(server.url, '/api/notifications', b, adminToken, { raw });
      assert.equal(r.status, 400, `${what}: ${r.status} ${r.text}`);
      assert.ok(r.json && typeof r.json.error === 'string' && typeof r.json.code === 'string',
        `${what}: body {error, code}, got ${r.text}`);
    }
  });

  it('pending-notifications: newest first, at most 50, on / and /chat', async () => {
    const eve = h.unique('eve');
    const made = [];
    for (let i = 0; i < 55; i++) made.push(await notifyHttp(eve, `t${i}`, `m${i}`));
    assert.equal(new Set(made.map((n) => n.id)).size, 55, 'notification ids are unique');
    for (const nsp of ['', '/chat']) {
      const e = await user(eve, { nsp });
      assert.equal(e.pending.length, 50, nsp || '/');
      assert.deepEqual(e.pending.map((n) => n.title), made.slice(5).reverse().map((n) => n.title), 'newest first');
      assert.deepEqual(e.pending, made.slice(5).reverse());
    }
  });

  it('notification-read marks one (ack after durable); notifications-read-all marks all; flags stick', async () => {
    const fay = h.unique('fay');
    const n1 = await notifyHttp(fay, 'one', '1');
    const n2 = await notifyHttp(fay, 'two', '2');
    const n3 = await notifyHttp(fay, 'three', '3');
    const f = await user(fay);
    assert.deepEqual(f.pending.map((n) => n.id), [n3.id, n2.id, n1.id]);
    assert.deepEqual(await h.call(f.s, 'notification-read', n2.id), { success: true });
    // unknown id, and another user's notification → NOT_FOUND
    const gus = h.unique('gus');
    const ng = await notifyHttp(gus, 'gus only', 'g');
    for (const [what, id] of [['unknown', typeof n1.id === 'number' ? 987654321 : 'no-such-notification'], ["another user's", ng.id]]) {
      const r = await h.call(f.s, 'notification-read', id);
      assert.equal(r && r.code, 'NOT_FOUND', `${what}: ${JSON.stringify(r)}`);
      assert.equal(typeof r.error, 'string');
    }
    const g = await user(gus);
    assert.deepEqual(g.pending.map((n) => n.read), [false], "Gus's notification is still unread");

    const f2 = await user(fay);
    assert.deepEqual(f2.pending.map((n) => [n.id, n.read]), [[n3.id, false], [n2.id, true], [n1.id, false]]);
    assert.deepEqual(await h.call(f2.s, 'notifications-read-all'), { success: true });
    const f3 = await user(fay);
    assert.deepEqual(f3.pending.map((n) => [n.id, n.read]), [[n3.id, true], [n2.id, true], [n1.id, true]]);
    // read-all with nothing left unread still succeeds; a new one arrives unread
    assert.deepEqual(await h.call(f3.s, 'notifications-read-all'), { success: true });
    const n4 = await notifyHttp(fay, 'four', '4');
    assert.deepEqual(await f3.rec.waitWhere('notification', () => true, T), n4);
    const f4 = await user(fay);
    assert.deepEqual(f4.pending.map((n) => [n.id, n.read]), [[n4.id, false], [n3.id, true], [n2.id, true], [n1.id, true]]);
  });

  it('POST /api/broadcast: to a chat room on / and /chat, or to everyone; 401/403/400', async () => {
    const room = h.unique('bc');
    const inRoot = await user(h.unique('u1'));
    const inChat = await user(h.unique('u2'), { nsp: '/chat' });
    const outside = await user(h.unique('u3'));
    await h.call(inRoot.s, 'join-room', room);
    await h.call(inChat.s, 'join-room', room);
    await h.call(outside.s, 'join-room', h.unique('elsewhere'));

    const r = await post(server.url, '/api/broadcast', { room, event: 'announcement', data: { text: 'room only', n: 1 } }, adminToken);
    assert.equal(r.status, 200, `${r.status} ${r.text}`);
    assert.deepEqual(r.json, { success: true });
    for (const x of [inRoot, inChat]) {
      assert.deepEqual(await x.rec.waitWhere('announcement', () => true, T), { text: 'room only', n: 1 });
    }
    await h.sync(outside.s);
    assert.equal(outside.rec.events('announcement').length, 0, 'not to sockets outside the room');

    const r2 = await post(server.url, '/api/broadcast', { event: 'everyone', data: 'hi all' }, adminToken);
    assert.equal(r2.status, 200, `${r2.status} ${r2.text}`);
    for (const x of [inRoot, inChat, outside]) assert.equal(await x.rec.waitWhere('everyone', () => true, T), 'hi all');

    const plain = await userToken(h.unique('nonadmin'));
    assert.equal((await post(server.url, '/api/broadcast', { event: 'x', data: 1 }, null)).status, 401);
    assert.equal((await post(server.url, '/api/broadcast', { event: 'x', data: 1 }, plain)).status, 403);
    for (const [what, b] of [['no event', { data: 1 }], ['event a number', { event: 5, data: 1 }], ['room a number', { room: 5, event: 'x', data: 1 }]]) {
      const rb = await post(server.url, '/api/broadcast', b, adminToken);
      assert.equal(rb.status, 400, `${what}: ${rb.status} ${rb.text}`);
    }
  });

  it('/admin broadcast, stats and kick', async () => {
    const ad = await admin();
    const room = h.unique('adm');
    const m1 = await user(h.unique('member'));
    await h.call(m1.s, 'join-room', room);
    ad.s.emit('broadcast', { room, event: 'from-admin', data: { ok: 1 } });
    assert.deepEqual(await m1.rec.waitWhere('from-admin', () => true, T), { ok: 1 });

    const stats = await h.call(ad.s, 'stats');
    assert.ok(stats && typeof stats === 'object' && !Array.isArray(stats), `stats: ${JSON.stringify(stats)}`);
    assert.ok(!('error' in stats), JSON.stringify(stats));
    assert.ok(Object.values(stats).some((v) => typeof v === 'number' || (v && typeof v === 'object')),
      `stats has counts: ${JSON.stringify(stats)}`);

    const mal = h.unique('mallory');
    const tab1 = await user(mal);
    const tab2 = await user(mal, { opts: { transports: ['polling'] } });
    const bystander = await user(h.unique('bystander'));
    const gone = [h.waitDisconnect(tab1.s, T), h.waitDisconnect(tab2.s, T)];
    const res = await h.call(ad.s, 'kick', { userId: mal });
    assert.deepEqual(res, { success: true, kicked: 2 });
    assert.deepEqual(await Promise.all(gone), ['io server disconnect', 'io server disconnect']);
    assert.ok(bystander.s.connected);

    const one = await user(h.unique('single'));
    const other = await user(h.unique('single2'));
    const g1 = h.waitDisconnect(one.s, T);
    assert.deepEqual(await h.call(ad.s, 'kick', { socketId: one.s.id }), { success: true, kicked: 1 });
    assert.equal(await g1, 'io server disconnect');
    await h.sync(other.s);
    assert.ok(other.s.connected);
    assert.deepEqual(await h.call(ad.s, 'kick', { userId: h.unique('nobody') }), { success: true, kicked: 0 });
  });

  it('dev mode refuses the producer API with 401', async () => {
    const t = await h.joseToken(key.privatePem, { sub: 'ops', name: 'Ops', admin: true });
    for (const [path, body] of [['/api/notifications', { userId: 'u', title: 't', message: 'm' }],
      ['/api/broadcast', { event: 'x', data: 1 }]]) {
      for (const tok of [null, t]) {
        const r = await post(dev.url, path, body, tok);
        assert.equal(r.status, 401, `${path} ${tok ? 'with' : 'without'} a token: ${r.status} ${r.text}`);
      }
    }
  });
});
