'use strict';
// Cluster mode (`--redis`): two parlor nodes on the local Redis (a prefix of their own per run),
// real socket.io-client on each. A room's broadcasts (messages, typing, presence events) reach its
// members on the other node; members of other rooms get nothing; with Redis unreachable a node
// still starts and serves its local clients.
//
// In progress (issue 14): presence lists, history, notifications and documents are still per node.

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

describe('cluster mode: Redis away', { timeout: 60_000 }, () => {
  let server;
  after(async () => {
    h.closeAllClients();
    if (server) await server.stopAndCheck();
  });

  it('a node whose Redis is unreachable starts and serves its own clients', async () => {
    // A loopback port nobody listens on.
    server = await h.startRoomServer(['--redis', 'redis://127.0.0.1:1/0', '--cluster-prefix', `parlor-away-${process.pid}`]);
    const room = h.unique('local');
    const s = await h.connect(server.url, { transports: ['websocket'] });
    const rec = h.recorder(s);
    s.emit('join', { username: 'Solo', room });
    await rec.waitFor('room-info', 1, T);
    const reply = await h.callWithin(T, s, 'send-message', { room, content: 'still here' });
    assert.equal(reply.success, true);
    const [msg] = await rec.waitFor('new-message', 1, T);
    assert.equal(msg.args[0].content, 'still here');
    const health = await h.fetch(`${server.url}/healthz`);
    assert.equal(health.status, 200, 'it still serves');
    assert.match(await health.text(), /^degraded/);
    const metrics = await (await h.fetch(`${server.url}/metrics`)).text();
    assert.ok(metrics.includes('parlor_cluster_link_up 0'), metrics);
  });
});
