'use strict';
// Cluster mode (`--redis`): parlor nodes on the local Redis (a prefix of their own per run), real
// socket.io-client on each. A room's broadcasts (messages, typing) reach its members on the other
// nodes; members of other rooms get nothing; presence is the cluster's (a user with tabs on two
// nodes is one user, a SIGKILLed node's users leave when its heartbeat expires); with Redis
// unreachable a node still starts and serves its local clients.
//
// History, notifications and read marks are in Redis, so any node reads what another wrote.
// In progress (issue 14): documents are still per node.

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

const T = 5000;
const REDIS = process.env.PARLOR_TEST_REDIS || 'redis://127.0.0.1:6379/0';

describe('cluster mode: rooms across nodes over Redis', { timeout: 120_000 }, () => {
  const prefix = `parlor-test-${process.pid}-${Date.now()}`;
  let one;
  let two;
  before(async () => {
    const node = (id) => ['--redis', REDIS, '--cluster-prefix', prefix, '--node-id', id];
    one = await h.startRoomServer(node('one'));
    two = await h.startRoomServer(node('two'));
  });
  after(async () => {
    h.closeAllClients();
    if (one) await one.stopAndCheck();
    if (two) await two.stopAndCheck();
  });
  afterEach(() => h.closeAllClients());

  async function joined(server, username, room) {
    const s = await h.connect(server.url, { transports: ['websocket'] });
    const rec = h.recorder(s);
    s.emit('join', { username, room });
    await rec.waitFor('room-info', 1, T);
    return { s, rec };
  }

  /** Sends until the other node has it: the nodes' subscriptions are set up as they join. */
  async function untilCrossed(send, rec, event, ms = T) {
    const deadline = Date.now() + ms;
    for (;;) {
      await send();
      try {
        return await rec.waitFor(event, 1, 300);
      } catch (e) {
        if (Date.now() > deadline) throw e;
      }
    }
  }

  it('a message to a room reaches its members on the other node, once, and nobody else', async () => {
    const room = h.unique('lobby');
    const ann = await joined(one, 'Ann', room);
    const bob = await joined(two, 'Bob', room);
    const eve = await joined(two, 'Eve', h.unique('elsewhere'));
    const [first] = await untilCrossed(
      () => h.callWithin(T, ann.s, 'send-message', { room, content: 'hello across' }),
      bob.rec,
      'new-message',
    );
    assert.equal(first.args[0].content, 'hello across');
    assert.equal(first.args[0].sender.username, 'Ann');
    // One more, to count exactly: each message arrives once.
    const before = bob.rec.events('new-message').length;
    const reply = await h.callWithin(T, ann.s, 'send-message', { room, content: 'second' });
    assert.equal(reply.success, true);
    await bob.rec.waitFor('new-message', before + 1, T);
    await h.sync(bob.s);
    await h.sync(eve.s);
    assert.equal(bob.rec.events('new-message').length, before + 1, 'delivered once');
    assert.deepEqual(eve.rec.events('new-message'), [], 'a member of another room on the same node gets nothing');

    // Both nodes count it in /metrics, and say they are healthy.
    const metric = (text, name) => {
      const line = text.split('\n').find((l) => l.startsWith(`${name} `));
      return line === undefined ? undefined : Number(line.split(' ')[1]);
    };
    const m1 = await (await h.fetch(`${one.url}/metrics`)).text();
    const m2 = await (await h.fetch(`${two.url}/metrics`)).text();
    assert.equal(metric(m1, 'parlor_cluster_link_up'), 1, m1);
    assert.ok(metric(m1, 'parlor_cluster_published_total') >= 2, m1);
    assert.ok(metric(m2, 'parlor_cluster_delivered_total') >= 2, m2);
    assert.equal(metric(m2, 'parlor_cluster_live_nodes'), 1, 'node two knows node one');
    assert.equal(await (await h.fetch(`${one.url}/healthz`)).text(), 'ok');
    // Latencies: the link's round trips to Redis, the store's writes (in Redis here).
    assert.ok(metric(m1, 'parlor_cluster_redis_round_trip_seconds_count') >= 1, m1);
    assert.ok(metric(m1, 'parlor_store_request_seconds_count{kind="write"}') >= 2, m1);
  });

  it('typing and presence events of a room cross nodes too', async () => {
    const room = h.unique('typing');
    const ann = await joined(one, 'Ann', room);
    const bob = await joined(two, 'Bob', room);
    const [typing] = await untilCrossed(() => ann.s.emit('typing-start', { room }), bob.rec, 'user-typing');
    assert.equal(typing.args[0].user.username, 'Ann');
    assert.equal(typing.args[0].isTyping, true);
    const cat = await joined(one, 'Cat', room);
    const joinedEv = await bob.rec.waitWhere('user-joined', (e) => e.user && e.user.username === 'Cat', T);
    assert.equal(joinedEv.user.id, cat.s.id);
  });
});

describe('cluster mode: presence is the cluster\'s', { timeout: 120_000 }, () => {
  const prefix = `parlor-presence-${process.pid}-${Date.now()}`;
  let keys;
  const nodes = [];
  before(async () => {
    keys = await h.keygen();
    for (const id of ['p1', 'p2', 'p3']) {
      nodes.push(
        await h.startRoomServer(['--auth-key', keys.pubPath, '--redis', REDIS, '--cluster-prefix', prefix, '--node-id', id]),
      );
    }
    // Every node knows the others (they answer a newcomer's heartbeat at once).
    await h.waitUntil(async () => {
      for (const n of nodes) {
        const text = await (await h.fetch(`${n.url}/metrics`)).text();
        if (!text.includes('parlor_cluster_live_nodes 2')) return false;
      }
      return true;
    }, 'every node knows the other two', T);
  });
  after(async () => {
    h.closeAllClients();
    for (const n of nodes) await n.stop();
  });

  async function tab(server, sub, name) {
    const token = await h.cliToken(keys.keyPath, { sub, name });
    // The recorder listens before the CONNECT is answered: `pending-notifications` may
    // come in the same read as it.
    const s = h.client(server.url, { transports: ['websocket'], auth: { token } });
    const rec = h.recorder(s);
    await h.waitConnect(s, T);
    return { s, rec };
  }

  // Sorted: across nodes the order comes from each joining node's clock, which a fast test
  // can tie or see a millisecond apart.
  const ids = (users) => users.map((u) => u.id).sort();
  const lastUsers = (rec) => ids(rec.events('room-users-update').at(-1).args[0]);

  it('users on three nodes see one list; a user\'s tabs on two nodes are one user; user-left comes with the last tab', async () => {
    const room = h.unique('presence');
    const ann = await tab(nodes[0], 'ann', 'Ann');
    const first = await h.callWithin(T, ann.s, 'join-room', room);
    assert.deepEqual(ids(first.users), ['ann']);
    const bob = await tab(nodes[1], 'bob', 'Bob');
    // The ack waits for every live node's answer: Ann of node p1 is in it.
    const second = await h.callWithin(T, bob.s, 'join-room', room);
    assert.deepEqual(ids(second.users), ['ann', 'bob']);
    assert.equal(second.missingNodes, undefined, 'every node answered');
    const [joinedEv] = await ann.rec.waitFor('user-joined', 1, T);
    assert.equal(joinedEv.args[0].user.id, 'bob');
    // Ann's second tab on node p3: nobody hears a second Ann.
    const ann2 = await tab(nodes[2], 'ann', 'Ann');
    const third = await h.callWithin(T, ann2.s, 'join-room', room);
    assert.deepEqual(ids(third.users), ['ann', 'bob'], 'listed once');
    // Her first tab leaves: she is still there (p3 holds her).
    await h.callWithin(T, ann.s, 'leave-room', room);
    await h.sync(bob.s);
    await h.sleep(200);
    assert.deepEqual(bob.rec.events('user-joined').map((e) => e.args[0].user.id), []);
    assert.deepEqual(bob.rec.events('user-left'), []);
    assert.deepEqual(lastUsers(bob.rec), ['ann', 'bob']);
    // The last one goes: Bob hears it once, on another node.
    await h.callWithin(T, ann2.s, 'leave-room', room);
    const [left] = await bob.rec.waitFor('user-left', 1, T);
    assert.equal(left.args[0].user.id, 'ann');
    await h.sleep(200);
    assert.equal(bob.rec.events('user-left').length, 1);
    assert.deepEqual(lastUsers(bob.rec), ['bob']);
  });

  it('a private message finds its recipient on another node; /admin stats and kick cover every node', async () => {
    const ann = await tab(nodes[0], 'ann', 'Ann');
    const dan = await tab(nodes[1], 'dan', 'Dan');
    const dan2 = await tab(nodes[2], 'dan', 'Dan');
    const reply = await h.callWithin(T, ann.s, 'private-message', { to: 'dan', content: 'psst' });
    assert.deepEqual(reply, { success: true });
    for (const t of [dan, dan2]) {
      const [pm] = await t.rec.waitFor('private-message', 1, T);
      assert.equal(pm.args[0].content, 'psst');
      assert.equal(pm.args[0].sender.id, 'ann');
    }
    const nobody = await h.callWithin(T, ann.s, 'private-message', { to: 'nobody', content: '?' });
    assert.equal(nobody.code, 'NOT_FOUND');

    const adminToken = await h.cliToken(keys.keyPath, { sub: 'root', name: 'Root', admin: true });
    const admin = await h.connect(`${nodes[0].url}/admin`, { transports: ['websocket'], auth: { token: adminToken } });
    const stats = await h.callWithin(T, admin, 'stats');
    assert.equal(stats.node, 'p1');
    assert.deepEqual(Object.keys(stats.nodes).sort(), ['p2', 'p3']);
    assert.deepEqual(stats.missingNodes, []);
    assert.ok(stats.clusterConnections >= 4, JSON.stringify(stats));
    const room = h.unique('admin-view');
    for (const t of [dan, dan2]) await h.callWithin(T, t.s, 'join-room', room);
    const listed = await h.callWithin(T, admin, 'sockets', { room });
    assert.deepEqual(listed.sockets.map((e) => `${e.user.id}@${e.node}`).sort(), ['dan@p2', 'dan@p3']);
    assert.deepEqual(listed.missingNodes, []);
    const rooms = await h.callWithin(T, admin, 'rooms', {});
    assert.deepEqual(rooms.rooms.find((r) => r.room === room), { room, sockets: 2 });
    const gone = Promise.all([dan, dan2].map((t) => h.once(t.s, 'disconnect')));
    const kick = await h.callWithin(T, admin, 'kick', { userId: 'dan' });
    assert.deepEqual(kick, { success: true, kicked: 2, missingNodes: [] });
    const reasons = await h.withTimeout(gone, T, 'both of dan\'s tabs disconnected');
    assert.deepEqual(reasons.map((r) => r[0]), ['io server disconnect', 'io server disconnect']);
  });

  it('history, notifications and read marks are the cluster\'s: written through one node, read through another', async () => {
    const room = h.unique('history');
    const ann = await tab(nodes[0], 'ann', 'Ann');
    ann.s.emit('join', { username: 'Ann', room });
    await ann.rec.waitFor('room-info', 1, T);
    const sent = await h.callWithin(T, ann.s, 'send-message', { room, content: 'kept in Redis' });
    assert.equal(sent.success, true);
    // Bob joins through another node: the history is the one Ann's node wrote.
    const bob = await tab(nodes[1], 'bob', 'Bob');
    bob.s.emit('join', { username: 'Bob', room });
    const [info] = await bob.rec.waitFor('room-info', 1, T);
    assert.deepEqual(info.args[0].recentMessages.map((m) => m.content), ['kept in Redis']);
    assert.deepEqual(ids(info.args[0].users), ['ann', 'bob']);

    // A notification posted to node p2 reaches the user's tab on p3 live, and is listed on
    // connect through p1; a read mark made through p1 shows through p3.
    const sub = h.unique('nora');
    const nora = await tab(nodes[2], sub, 'Nora');
    await nora.rec.waitFor('pending-notifications', 1, T);
    const adminToken = await h.cliToken(keys.keyPath, { sub: 'root', name: 'Root', admin: true });
    const res = await h.fetch(`${nodes[1].url}/api/notifications`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${adminToken}` },
      body: JSON.stringify({ userId: sub, title: 'Hello', message: 'from node p2' }),
    });
    assert.equal(res.status, 201);
    const stored = await res.json();
    const [live] = await nora.rec.waitFor('notification', 1, T);
    assert.equal(live.args[0].id, stored.id);
    const later = await tab(nodes[0], sub, 'Nora');
    const [pending] = await later.rec.waitFor('pending-notifications', 1, T);
    assert.deepEqual(pending.args[0].map((n) => [n.id, n.read]), [[stored.id, false]]);
    assert.deepEqual(await h.callWithin(T, later.s, 'notification-read', stored.id), { success: true });
    const third = await tab(nodes[2], sub, 'Nora');
    const [again] = await third.rec.waitFor('pending-notifications', 1, T);
    assert.deepEqual(again.args[0].map((n) => [n.id, n.read]), [[stored.id, true]]);
  });

  it('the users of a SIGKILLed node leave everyone\'s lists when its heartbeat expires', async () => {
    const room = h.unique('expiry');
    const ann = await tab(nodes[0], 'ann', 'Ann');
    const cat = await tab(nodes[2], 'cat', 'Cat');
    await h.callWithin(T, ann.s, 'join-room', room);
    const reply = await h.callWithin(T, cat.s, 'join-room', room);
    assert.deepEqual(ids(reply.users), ['ann', 'cat']);
    const killedAt = Date.now();
    nodes[2].proc.kill('SIGKILL');
    const [left] = await ann.rec.waitFor('user-left', 1, 15_000);
    const after = Date.now() - killedAt;
    assert.equal(left.args[0].user.id, 'cat');
    assert.deepEqual(lastUsers(ann.rec), ['ann']);
    // Not before the expiry (10 s after its last heartbeat, which was at most 3 s before).
    assert.ok(after >= 6_000 && after <= 14_000, `user-left ${after} ms after the kill`);
  });
});

describe('cluster mode: @socket.io/redis-emitter publishes into parlor', { timeout: 60_000 }, () => {
  const prefix = `parlor-emitter-${process.pid}-${Date.now()}`;
  const key = `emitter-${process.pid}-${Date.now()}`;
  const nodes = [];
  let redis;
  before(async () => {
    for (const id of ['e1', 'e2', 'e3']) {
      const args = ['--redis', REDIS, '--cluster-prefix', prefix, '--node-id', id, '--socketio-emitter-key', key];
      nodes.push(await h.startRoomServer(args));
    }
    const { createClient } = require('redis');
    redis = createClient({ url: REDIS });
    await redis.connect();
  });
  after(async () => {
    h.closeAllClients();
    if (redis) await redis.quit();
    for (const n of nodes) await n.stop();
  });

  const received = async (node) => {
    const text = await (await h.fetch(`${node.url}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith('parlor_cluster_emitter_received_total '));
    return Number(line.split(' ')[1]);
  };

  it('a room broadcast reaches the members on every node, a broadcast to all every socket; a node without members hears nothing of the room', async () => {
    const { Emitter } = require('@socket.io/redis-emitter');
    const emitter = new Emitter(redis, { key });
    const room = h.unique('news');
    const members = [];
    for (const node of nodes.slice(0, 2)) {
      const s = await h.connect(node.url, { transports: ['websocket'] });
      const rec = h.recorder(s);
      s.emit('join', { username: 'Reader', room });
      await rec.waitFor('room-info', 1, T);
      members.push({ s, rec });
    }
    const outsider = await h.connect(nodes[2].url, { transports: ['websocket'] });
    const outRec = h.recorder(outsider);
    // The nodes subscribe as their members join: publish until both have it.
    const deadline = Date.now() + T;
    let n = 0;
    while (members.some((m) => m.rec.events('announcement').length === 0)) {
      emitter.to(`chat:${room}`).emit('announcement', { n: n++, text: 'from a backend' }, Buffer.from([1, 2, 3]));
      await h.sleep(100);
      assert.ok(Date.now() < deadline, 'the emitter\'s broadcast reached both nodes');
    }
    const [first] = members[0].rec.events('announcement');
    assert.equal(first.args[0].text, 'from a backend');
    assert.deepEqual(h.normBin(first.args[1]), Buffer.from([1, 2, 3]), 'a Buffer arrives as binary');
    await h.sync(outsider);
    assert.deepEqual(outRec.events('announcement'), [], 'not a member');
    assert.equal(await received(nodes[2]), 0, 'node e3 has no member of the room: none of its traffic');

    emitter.emit('to-everyone', 'hello');
    for (const rec of [...members.map((m) => m.rec), outRec]) {
      const [all] = await rec.waitFor('to-everyone', 1, T);
      assert.equal(all.args[0], 'hello');
    }
  });
});

describe('cluster mode: Redis away', { timeout: 60_000 }, () => {
  let server;
  after(async () => {
    h.closeAllClients();
    if (server) await server.stopAndCheck();
  });

  it('a node whose Redis is unreachable starts and serves its own clients, and never acks a write Redis did not take', async () => {
    // A loopback port nobody listens on.
    server = await h.startRoomServer(['--redis', 'redis://127.0.0.1:1/0', '--cluster-prefix', `parlor-away-${process.pid}`]);
    const room = h.unique('local');
    const s = await h.connect(server.url, { transports: ['websocket'] });
    const rec = h.recorder(s);
    s.emit('join', { username: 'Solo', room });
    const [info] = await rec.waitFor('room-info', 1, T);
    assert.deepEqual(info.args[0].recentMessages, [], 'no history to show without Redis');
    const other = await h.connect(server.url, { transports: ['websocket'] });
    const otherRec = h.recorder(other);
    other.emit('join', { username: 'Duo', room });
    await otherRec.waitFor('room-info', 1, T);
    // Local traffic flows: typing reaches the other local member.
    s.emit('typing-start', { room });
    const [typing] = await otherRec.waitFor('user-typing', 1, T);
    assert.equal(typing.args[0].user.username, 'Solo');
    // A message needs Redis to be stored: the ack says it was not, nobody is told it was sent.
    const reply = await h.callWithin(T, s, 'send-message', { room, content: 'not stored' });
    assert.equal(reply.success, undefined, JSON.stringify(reply));
    assert.equal(reply.code, 'INTERNAL_ERROR');
    await h.sync(other);
    assert.deepEqual(otherRec.events('new-message'), []);
    const health = await h.fetch(`${server.url}/healthz`);
    assert.equal(health.status, 200, 'it still serves');
    assert.match(await health.text(), /^degraded/);
    const metrics = await (await h.fetch(`${server.url}/metrics`)).text();
    assert.ok(metrics.includes('parlor_cluster_link_up 0'), metrics);
  });
});
