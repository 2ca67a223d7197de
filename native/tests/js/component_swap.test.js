'use strict';
// Live swap of the WebAssembly component (`parlor serve --component`): clients connected and in
// rooms, a document open, messages in flight; the component is swapped by POST /admin/reload and
// by SIGHUP mid-traffic. Nobody is disconnected, presence, history and the document are intact,
// acks in flight arrive, and events keep flowing. A file the host cannot load is refused and the
// running instance keeps going.
//
// Runs only in component mode (PARLOR_COMPONENT=/path/parlor_edge.wasm, as .ci/run's second pass
// sets it); PARLOR_TEST_SPIN_COMPONENT (another build of the component) makes the swap move
// the state into different code.

const { describe, it, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const h = require('./helpers');

const T = 5000;
const component = h.componentFile();

describe('component live swap', { timeout: 120_000, skip: component ? false : 'PARLOR_COMPONENT not set' }, () => {
  afterEach(() => h.closeAllClients());
  let server;
  after(async () => { if (server) await server.stopAndCheck(); });

  it('swaps the component mid-traffic without dropping a client or losing state', async () => {
    const keys = await h.keygen();
    const dir = h.tempDir('parlor-component-');
    const wasm = path.join(dir, 'parlor_edge.wasm');
    fs.copyFileSync(component, wasm);
    // A high chat rate limit: the traffic below sends far more than 100 messages a minute.
    server = await h.startRoomServer(['--auth-key', keys.pubPath, '--component', wasm, '--rate-limit', '1000000']);
    const [annToken, bobToken, adminToken, userToken] = await Promise.all([
      h.cliToken(keys.keyPath, { sub: 'ann', name: 'Ann' }),
      h.cliToken(keys.keyPath, { sub: 'bob', name: 'Bob' }),
      h.cliToken(keys.keyPath, { sub: 'ops', name: 'Ops', admin: true }),
      h.cliToken(keys.keyPath, { sub: 'eve', name: 'Eve' }),
    ]);
    const reload = (token) => h.fetch(`${server.url}/admin/reload`, {
      method: 'POST', headers: token ? { authorization: `Bearer ${token}` } : {},
    });

    const ann = await h.connect(server.url, { transports: ['websocket'], auth: { token: annToken } });
    // Bob long-polls: the swap must not disturb a pending poll either.
    const bob = await h.connect(server.url, { transports: ['polling'], auth: { token: bobToken } });
    const ids = [ann.id, bob.id];
    const disconnects = [];
    for (const s of [ann, bob]) s.on('disconnect', (reason) => disconnects.push(reason));
    const rb = h.recorder(bob);
    const ra = h.recorder(ann);

    const room = h.unique('swap');
    const docId = h.unique('doc');
    assert.ok((await h.call(ann, 'join-room', room)).users);
    const users = (await h.call(bob, 'join-room', room)).users.map((u) => u.id).sort();
    assert.deepEqual(users, ['ann', 'bob']);
    const before = await h.call(ann, 'send-message', { content: 'before the swap', room });
    assert.equal(before.success, true);
    ann.emit('join-document', docId);
    await ra.waitWhere('document-state', (st) => st.version === 0, T);
    const v1 = await h.call(ann, 'text-change', { docId, delta: [{ insert: 'hello' }], version: 0 });
    assert.equal(v1.version, 1);
    bob.emit('join-document', docId);
    const bobState = await rb.waitWhere('document-state', () => true, T);
    assert.deepEqual([bobState.content, bobState.version], ['hello', 1]);

    // Traffic: Ann sends a message every 10 ms, each waiting for its durable ack.
    let sent = 0;
    let acked = 0;
    let stop = false;
    const failures = [];
    const traffic = (async () => {
      while (!stop) {
        sent += 1;
        const n = sent;
        h.call(ann, 'send-message', { content: `m${n}`, room })
          .then((r) => { if (r && r.success) acked += 1; else failures.push(r); })
          .catch((e) => failures.push(e.message));
        await h.sleep(10);
      }
    })();
    try {
      await h.waitUntil(() => acked >= 20, 'traffic before the swap');

      // Refusals: no token, a non-admin token.
      assert.equal((await reload()).status, 401);
      assert.equal((await reload(userToken)).status, 403);

      // Swap 1: the same file, over HTTP.
      let r = await reload(adminToken);
      let body = await r.json();
      assert.equal(r.status, 200, JSON.stringify(body));
      assert.equal(body.reloaded, true);
      assert.match(body.mounts[0].message, /bytes of state moved/);
      let mark = acked;
      await h.waitUntil(() => acked >= mark + 20, 'traffic after the first swap');

      // Swap 2: a different build of the component (if there is one), by SIGHUP.
      if (process.env.PARLOR_TEST_SPIN_COMPONENT && fs.existsSync(process.env.PARLOR_TEST_SPIN_COMPONENT)) {
        fs.copyFileSync(process.env.PARLOR_TEST_SPIN_COMPONENT, wasm);
      }
      const reloads = (server.logs().match(/component reloaded from/g) || []).length;
      server.proc.kill('SIGHUP');
      await h.waitUntil(() => (server.logs().match(/component reloaded from/g) || []).length > reloads,
        'the SIGHUP reload in the log');
      mark = acked;
      await h.waitUntil(() => acked >= mark + 20, 'traffic after the SIGHUP swap');

      // A file that is not a component: refused, the running instance keeps going.
      fs.writeFileSync(wasm, 'not a component');
      r = await reload(adminToken);
      body = await r.json();
      assert.equal(r.status, 409, JSON.stringify(body));
      assert.equal(body.reloaded, false);
      assert.match(body.mounts[0].error, /not a loadable component/);
      assert.match(server.logs(), /component reload REFUSED/);
      mark = acked;
      await h.waitUntil(() => acked >= mark + 20, 'traffic after the refused swap');

    } finally {
      stop = true;
    }
    await traffic;
    await h.waitUntil(() => acked + failures.length === sent, 'every ack in flight');
    assert.deepEqual(failures, [], 'every message acked as stored');

    // Nobody noticed: same sockets, no disconnect, everything Ann sent reached Bob in order.
    assert.deepEqual(disconnects, []);
    assert.deepEqual([ann.id, bob.id], ids);
    assert.ok(ann.connected && bob.connected);
    const expected = ['before the swap', ...Array.from({ length: sent }, (_, i) => `m${i + 1}`)];
    await h.waitUntil(() => rb.payloads('new-message').length >= expected.length, 'Bob to see every message');
    assert.deepEqual(rb.payloads('new-message').map((m) => m.content), expected);

    // Presence: joining again lists both users once.
    const again = (await h.call(bob, 'join-room', room)).users.map((u) => u.id).sort();
    assert.deepEqual(again, ['ann', 'bob']);
    // The document carries on from version 1, and Ann sees Bob's edit.
    const v2 = await h.call(bob, 'text-change', { docId, delta: [{ retain: 5 }, { insert: ' world' }], version: 1 });
    assert.equal(v2.version, 2);
    const seen = await ra.waitWhere('text-change', (p) => p.version === 2, T);
    assert.deepEqual(seen.delta, [{ retain: 5 }, { insert: ' world' }]);
    // History: a newcomer's room-info has the newest messages, in send order.
    const carol = await h.connect(server.url, { auth: { token: await h.cliToken(keys.keyPath, { sub: 'carol', name: 'Carol' }) } });
    const rc = h.recorder(carol);
    carol.emit('join', { username: 'Carol', room });
    const info = await rc.waitWhere('room-info', () => true, T);
    const recent = info.recentMessages.map((m) => m.content);
    assert.deepEqual(recent, expected.slice(-recent.length));
    assert.ok(recent.length > 0);
    carol.emit('join-document', docId);
    const carolState = await rc.waitWhere('document-state', () => true, T);
    assert.deepEqual([carolState.content, carolState.version], ['hello world', 2]);
    assert.match(server.logs(), /no connection closed/);
  });
});
