'use strict';
// Tokens and auth (DESIGN.md §4, §5): `parlor keygen` / `parlor token`, tokens minted with jose,
// CONNECT errors "Authentication required" / "Invalid token", the user from the token, several
// tabs of one user in presence, `/admin` needing admin:true ("Unauthorized"), dev mode.

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const h = require('./helpers');

const T = 5000;
const now = () => Math.floor(Date.now() / 1000);
const byId = (users) => [...users].sort((x, y) => (x.id < y.id ? -1 : x.id > y.id ? 1 : 0));
const b64json = (part) => JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
const enc = (obj) => Buffer.from(JSON.stringify(obj)).toString('base64url');

describe('room service: tokens and auth', { timeout: 120_000 }, () => {
  let keys; // parlor keygen
  let other; // a second key pair, made by jose, that the server does not know
  let server; // --auth-key keys.pubPath
  let dev; // no key
  before(async () => {
    keys = await h.keygen();
    other = await h.joseKeyPair();
    [server, dev] = await Promise.all([
      h.startRoomServer(['--auth-key', keys.pubPath]),
      h.startRoomServer([]),
    ]);
  });
  after(async () => {
    h.closeAllClients();
    if (server) await server.stopAndCheck();
    if (dev) await dev.stopAndCheck();
  });
  afterEach(() => h.closeAllClients());

  const token = (sub, name, extra = {}) => h.joseToken(keys.privatePem, { sub, name, ...extra });

  it('parlor keygen writes a PKCS#8 private key and an SPKI public key (PEM, Ed25519)', () => {
    assert.match(keys.privatePem, /^-----BEGIN PRIVATE KEY-----\r?\n/);
    assert.match(keys.publicPem, /^-----BEGIN PUBLIC KEY-----\r?\n/);
    const priv = crypto.createPrivateKey(keys.privatePem);
    const pub = crypto.createPublicKey(keys.publicPem);
    assert.equal(priv.asymmetricKeyType, 'ed25519');
    assert.equal(pub.asymmetricKeyType, 'ed25519');
    assert.equal(crypto.createPublicKey(priv).export({ type: 'spki', format: 'pem' }),
      pub.export({ type: 'spki', format: 'pem' }), 'parlor.pub is the public half of parlor.key');
    assert.equal(fs.statSync(keys.keyPath).mode & 0o077, 0, 'parlor.key is readable by its owner only');
  });

  it('parlor token prints an EdDSA JWT that jose verifies, with sub, name, exp and admin', async () => {
    const j = await h.jose();
    const pub = await j.importSPKI(keys.publicPem, 'EdDSA');
    const t1 = await h.cliToken(keys.keyPath, { sub: 'alice', name: 'Alice', ttl: '1h' });
    const v1 = await j.jwtVerify(t1, pub);
    assert.equal(v1.protectedHeader.alg, 'EdDSA');
    assert.equal(v1.payload.sub, 'alice');
    assert.equal(v1.payload.name, 'Alice');
    assert.ok(Math.abs(v1.payload.exp - (now() + 3600)) <= 120, `exp ≈ now + 1h: ${v1.payload.exp}`);
    assert.notEqual(v1.payload.admin, true);

    const t2 = await h.cliToken(keys.keyPath, { sub: 'root', name: 'Root', ttl: '30m', admin: true });
    const v2 = await j.jwtVerify(t2, pub);
    assert.equal(v2.payload.admin, true);
    assert.ok(Math.abs(v2.payload.exp - (now() + 1800)) <= 120, `exp ≈ now + 30m: ${v2.payload.exp}`);

    // and plain node crypto agrees (Ed25519 over "header.payload")
    const [hd, pl, sig] = t1.split('.');
    assert.ok(crypto.verify(null, Buffer.from(`${hd}.${pl}`), crypto.createPublicKey(keys.publicPem),
      Buffer.from(sig, 'base64url')));
  });

  for (const nsp of ['', '/chat']) {
    const label = nsp || '/';

    it(`no token → connect_error "Authentication required" (${label})`, async () => {
      for (const opts of [{}, { auth: {} }, { auth: { username: 'sneaky' } }]) {
        const err = await h.connectError(`${server.url}${nsp}`, opts, T);
        assert.equal(err.message, 'Authentication required', JSON.stringify(opts));
      }
    });

    it(`bad, expired, not-yet-valid, forged and wrong-key tokens → "Invalid token" (${label})`, async () => {
      const good = await token('mallory', 'Mallory');
      const [hd, pl, sig] = good.split('.');
      const payload = b64json(pl);
      const cases = [
        ['garbage', 'not-a-token'],
        ['three garbage parts', 'abc.def.ghi'],
        ['expired (jose)', await token('mallory', 'Mallory', { exp: now() - 3600 })],
        ['expired a second ago', await token('mallory', 'Mallory', { exp: now() - 1 })],
        ['nbf in the future', await token('mallory', 'Mallory', { nbf: now() + 3600 })],
        ['signed by another key', await h.joseToken(other.privatePem, { sub: 'mallory', name: 'Mallory' })],
        ['payload changed, signature kept', `${hd}.${enc({ ...payload, admin: true })}.${sig}`],
        ['signature of another token', `${hd}.${pl}.${(await token('eve', 'Eve')).split('.')[2]}`],
        ['alg none', `${enc({ alg: 'none', typ: 'JWT' })}.${pl}.`],
        ['alg HS256 header on an EdDSA signature', `${enc({ alg: 'HS256', typ: 'JWT' })}.${pl}.${sig}`],
        ['truncated signature', `${hd}.${pl}.${sig.slice(0, -4)}`],
      ];
      for (const [what, t] of cases) {
        const err = await h.connectError(`${server.url}${nsp}`, { auth: { token: t } }, T);
        assert.equal(err.message, 'Invalid token', what);
      }
      // the good one does connect
      await h.connect(`${server.url}${nsp}`, { auth: { token: good } }, T);
    });

    it(`valid tokens from parlor token and jose: user {id: sub, username: name}, pending-notifications (${label})`, async () => {
      const room = h.unique('authed');
      const sub1 = h.unique('cli');
      const sub2 = h.unique('jose');
      const cli = await h.cliToken(keys.keyPath, { sub: sub1, name: 'Cli User' });
      const jt = await token(sub2, 'Jose User');
      const a = h.client(`${server.url}${nsp}`, { auth: { token: cli } });
      const ra = h.recorder(a);
      const b = h.client(`${server.url}${nsp}`, { auth: { token: jt }, transports: ['websocket'] });
      const rb = h.recorder(b);
      await h.waitConnect(a, T);
      await h.waitConnect(b, T);
      for (const r of [ra, rb]) {
        const pending = await r.waitWhere('pending-notifications', () => true, T);
        assert.deepEqual(pending, [], 'a new user has no notifications, and still gets the (empty) list');
      }
      const ua = { id: sub1, username: 'Cli User' };
      const ub = { id: sub2, username: 'Jose User' };
      assert.deepEqual(await h.call(a, 'join-room', room), { users: [ua] });
      // with a token the name comes from the token, not from join
      b.emit('join', { username: 'Someone Else', room });
      const info = await rb.waitWhere('room-info', () => true, T);
      assert.deepEqual(byId(info.users), byId([ua, ub]));
      assert.deepEqual((await ra.waitWhere('user-joined', () => true, T)).user, ub);
      const res = await h.call(a, 'send-message', { content: 'signed in', room });
      const m = await rb.waitWhere('new-message', (x) => x && x.id === res.id, T);
      assert.deepEqual(m.sender, ua);
    });
  }

  it('a key pair made by jose works as --auth-key; tokens of other keys are refused', async () => {
    const s2 = await h.startRoomServer(['--auth-key', other.pubPath]);
    try {
      const t = await h.joseToken(other.privatePem, { sub: 'josie', name: 'Josie' });
      const a = await h.connect(s2.url, { auth: { token: t } }, T);
      assert.deepEqual(await h.call(a, 'join-room', h.unique('jk')), { users: [{ id: 'josie', username: 'Josie' }] });
      const wrong = await h.cliToken(keys.keyPath, { sub: 'josie', name: 'Josie' });
      assert.equal((await h.connectError(s2.url, { auth: { token: wrong } }, T)).message, 'Invalid token');
      h.closeAllClients();
    } finally {
      await s2.stopAndCheck();
    }
  });

  it('several tabs of one user: listed once, one user-joined, user-left only when the last tab goes', async () => {
    const room = h.unique('tabs');
    const sub = h.unique('carol');
    const carol = { id: sub, username: 'Carol' };
    const dave = { id: h.unique('dave'), username: 'Dave' };
    const tc = await token(sub, 'Carol');
    const obs = await h.connect(server.url, { auth: { token: await token(dave.id, 'Dave') } }, T);
    const ro = h.recorder(obs);
    obs.emit('join', { username: 'Dave', room });
    await ro.waitFor('room-info', 1, T);

    // tab 1 multiplexes / and /chat over one connection, so a round trip on /chat proves that
    // the server has handled tab 1's earlier packets on /
    const tab1 = await h.connect(server.url, { auth: { token: tc } }, T);
    const tab1chat = tab1.io.socket('/chat', { auth: { token: tc } });
    await h.waitConnect(tab1chat, T); // autoConnect
    const r1 = h.recorder(tab1);
    tab1.emit('join', { username: 'Carol', room });
    const info1 = await r1.waitFor('room-info', 1, T);
    assert.deepEqual(byId(info1[0].args[0].users), byId([carol, dave]));
    assert.deepEqual((await ro.waitWhere('user-joined', () => true, T)).user, carol);
    await ro.waitWhere('room-users-update', (u) => Array.isArray(u) && u.length === 2, T);
    await h.sync(obs);
    const updates = ro.events('room-users-update').length;

    const tab2 = await h.connect(server.url, { auth: { token: tc } }, T);
    const r2 = h.recorder(tab2);
    tab2.emit('join', { username: 'Carol', room });
    const info2 = await r2.waitFor('room-info', 1, T);
    assert.deepEqual(byId(info2[0].args[0].users), byId([carol, dave]), 'Carol listed once with two tabs');
    assert.deepEqual(byId((await h.call(obs, 'join-room', room)).users), byId([carol, dave]));
    await h.sync(obs);
    assert.equal(ro.events('user-joined').length, 1, 'no second user-joined for a second tab');
    assert.equal(ro.events('room-users-update').length, updates, 'the list did not change');

    // tab 1 goes away: Carol is still there
    tab1.disconnect();
    await h.sync(tab1chat);
    await h.sync(obs);
    assert.equal(ro.events('user-left').length, 0, 'no user-left while another tab is in the room');
    assert.deepEqual(byId((await h.call(obs, 'join-room', room)).users), byId([carol, dave]));

    // the last tab goes: now Carol left
    tab2.disconnect();
    const left = await ro.waitWhere('user-left', () => true, T);
    assert.deepEqual(left, { user: carol, message: 'Carol left the chat' });
    await ro.waitWhere('room-users-update', (u) => Array.isArray(u) && u.length === 1 && u[0].id === dave.id, T);
  });

  it('leave-room of one tab keeps the user while another tab stays in the room', async () => {
    const room = h.unique('tabsleave');
    const sub = h.unique('erin');
    const te = await token(sub, 'Erin');
    const obs = await h.connect(server.url, { auth: { token: await token(h.unique('obs'), 'Obs') } }, T);
    const ro = h.recorder(obs);
    await h.call(obs, 'join-room', room);
    const tab1 = await h.connect(server.url, { auth: { token: te } }, T);
    const tab2 = await h.connect(server.url, { auth: { token: te } }, T);
    await h.call(tab1, 'join-room', room);
    await h.call(tab2, 'join-room', room);
    assert.deepEqual(await h.call(tab1, 'leave-room', room), { success: true });
    await h.sync(obs);
    assert.equal(ro.events('user-left').length, 0, 'Erin still has a tab in the room');
    assert.deepEqual(await h.call(tab2, 'leave-room', room), { success: true });
    const left = await ro.waitWhere('user-left', () => true, T);
    assert.deepEqual(left, { user: { id: sub, username: 'Erin' }, message: 'Erin left the chat' });
  });

  it('/admin needs a token with admin:true', async () => {
    const url = `${server.url}/admin`;
    const noToken = await h.connectError(url, {}, T);
    assert.ok(['Unauthorized', 'Authentication required'].includes(noToken.message), noToken.message);
    for (const [what, t] of [
      ['no admin claim', await token('u1', 'U1')],
      ['admin:false', await token('u2', 'U2', { admin: false })],
      ['parlor token without --admin', await h.cliToken(keys.keyPath, { sub: 'u4', name: 'U4' })],
    ]) {
      const err = await h.connectError(url, { auth: { token: t } }, T);
      assert.equal(err.message, 'Unauthorized', what);
    }
    // a mistyped claim: not an admin, whether the token as a whole is refused or not
    const stringy = await h.connectError(url, { auth: { token: await token('u3', 'U3', { admin: 'true' }) } }, T);
    assert.ok(['Unauthorized', 'Invalid token'].includes(stringy.message), `admin:"true" (a string): ${stringy.message}`);
    const forged = await h.joseToken(other.privatePem, { sub: 'x', name: 'X', admin: true });
    const ef = await h.connectError(url, { auth: { token: forged } }, T);
    assert.ok(['Unauthorized', 'Invalid token'].includes(ef.message), `admin token of another key: ${ef.message}`);

    await h.connect(url, { auth: { token: await h.cliToken(keys.keyPath, { sub: 'root', name: 'Root', admin: true }) } }, T);
    await h.connect(url, { auth: { token: await token('root2', 'Root Two', { admin: true }) } }, T);
  });

  it('dev mode: anyone connects to / and /chat; /admin is always refused', async () => {
    const a = await h.connect(dev.url, {}, T);
    const b = await h.connect(`${dev.url}/chat`, { auth: { token: 'whatever' } }, T);
    assert.ok(a.connected && b.connected);
    for (const auth of [undefined, { token: 'x' }, { token: await token('root', 'Root', { admin: true }) }]) {
      const err = await h.connectError(`${dev.url}/admin`, auth ? { auth } : {}, T);
      assert.equal(err.message, 'Unauthorized', JSON.stringify(auth));
    }
  });
});
