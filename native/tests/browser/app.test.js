'use strict';
// The demo web app (native/web, built into dist/) in headless Chromium, served by the real
// `parlor serve --static`: two users (browser contexts) with tokens chat, see presence and
// typing (ended by the server's expiry), get history after a reload, exchange private
// messages, get a notification pushed over HTTP and mark it read, edit one document at once
// and end with the same text, and ride out a server restart. With PARLOR_COMPONENT set, the
// server runs its logic from that WebAssembly component.

const { after, before, describe, it } = require('node:test');
const assert = require('node:assert/strict');
const { startParlor, keys, launch, userContext, screenshot, waitUntil, tempDir } = require('./harness.js');

/** Short, so the test sees the server end a typing state that the client never stopped. */
const TYPING_TIMEOUT_MS = 1500;

describe('demo web app in Chromium', { timeout: 180_000 }, () => {
  let server;
  let browser;
  let key;
  let dataDir;
  const ctx = {};
  const page = {};
  const serverArgs = () => ['--auth-key', key.pubPath, '--typing-timeout', String(TYPING_TIMEOUT_MS)];

  before(async () => {
    key = keys();
    dataDir = tempDir('parlor-browser-data-');
    server = await startParlor({ dataDir, args: serverArgs() });
    browser = await launch();
    for (const who of ['alice', 'bob']) {
      ctx[who] = await userContext(browser);
    }
    // Bob allows browser notifications; the page's Notification is wrapped to record them.
    await ctx.bob.grantPermissions(['notifications'], { origin: server.url });
    await ctx.bob.addInitScript(() => {
      const Real = window.Notification;
      window.shownNotifications = [];
      function Recording(title, options) {
        window.shownNotifications.push({ title, body: options && options.body });
        try { return new Real(title, options); } catch { return {}; }
      }
      Recording.requestPermission = (...args) => Real.requestPermission(...args);
      Object.defineProperty(Recording, 'permission', { get: () => Real.permission });
      window.Notification = Recording;
    });
    for (const who of ['alice', 'bob']) page[who] = await ctx[who].newPage();
  });

  after(async () => {
    if (browser) await browser.close();
    if (server) await server.stop();
  });

  const room = (who, name = 'lobby') => page[who].getByTestId(`room-${name}`);
  const usersOf = async (who, name = 'lobby') =>
    room(who, name).getByTestId('user').evaluateAll((els) => els.map((e) => e.textContent));
  const connected = (who) => page[who].getByTestId('connection-state').and(page[who].locator('[data-state="connected"]'));

  async function signIn(who, p, name) {
    await p.goto(`${server.url}/`);
    await p.getByTestId('signin-token').fill(key.token(who, name));
    await p.getByTestId('signin-token-submit').click();
    await connected(who).waitFor();
  }

  it('signs in with a token and joins a room; presence lists each user once, however many tabs', async () => {
    await signIn('alice', page.alice, 'Alice');
    await signIn('bob', page.bob, 'Bob');
    for (const who of ['alice', 'bob']) {
      await page[who].getByTestId('room-name').fill('lobby');
      await page[who].getByTestId('room-join').click();
    }
    await waitUntil(async () => (await usersOf('alice')).length === 2 && (await usersOf('bob')).length === 2,
      'both see two users in lobby');
    // A second tab of Alice's: still one Alice in the list.
    const tab = await ctx.alice.newPage();
    await tab.goto(`${server.url}/`);
    await tab.getByTestId('signin-token').fill(key.token('alice', 'Alice'));
    await tab.getByTestId('signin-token-submit').click();
    await tab.getByTestId('room-join').click();
    await tab.getByTestId('room-lobby').getByTestId('user').nth(1).waitFor();
    const names = await usersOf('bob');
    assert.deepEqual(names.map((n) => n.replace(/message$/, '').replace(' (you)', '')).sort(), ['Alice', 'Bob']);
    await screenshot('presence', { alice: page.alice, bob: page.bob, 'alice-tab2': tab });
    await tab.close();
    // Closing one of Alice's tabs does not make her leave.
    await room('bob').getByTestId('user').filter({ hasText: 'Alice' }).waitFor();
  });

  it('chats: a sent message is acked with its id and reaches the other user', async () => {
    await room('alice').getByTestId('message-input').fill('hello bob');
    await room('alice').getByTestId('message-send').click();
    await room('alice').getByTestId('send-status').filter({ hasText: /^sent \(/ }).waitFor();
    await room('bob').getByTestId('message').filter({ hasText: 'hello bob' }).waitFor();
    await room('bob').getByTestId('message-input').fill('hi alice');
    await room('bob').getByTestId('message-send').click();
    await room('alice').getByTestId('message').filter({ hasText: 'hi alice' }).waitFor();
    await screenshot('chat', { alice: page.alice, bob: page.bob });
  });

  it('shows typing, ended by the server when the typer stops (no typing-stop sent)', async () => {
    await room('alice').getByTestId('message-input').pressSequentially('I am wri');
    await room('bob').getByTestId('typing').filter({ hasText: 'Alice is typing...' }).waitFor();
    await screenshot('typing', { bob: page.bob });
    const started = Date.now();
    await waitUntil(async () => !(await room('bob').getByTestId('typing').textContent()).includes('is typing'),
      'the typing indicator is gone');
    const took = Date.now() - started;
    assert.equal(await room('alice').getByTestId('message-input').inputValue(), 'I am wri', 'the typer kept the draft');
    console.log(`typing indicator ended by the server after ${took} ms (timeout ${TYPING_TIMEOUT_MS} ms)`);
    await room('alice').getByTestId('message-input').fill('');
  });

  it('shows the history again after a reload', async () => {
    await page.bob.reload();
    await connected('bob').waitFor();
    await room('bob').getByTestId('message').filter({ hasText: 'hello bob' }).waitFor();
    await room('bob').getByTestId('message').filter({ hasText: 'hi alice' }).waitFor();
    await screenshot('history-after-reload', { bob: page.bob });
  });

  it('exchanges private messages', async () => {
    await room('alice').getByTestId('pm-pick-Bob').click();
    assert.equal(await page.alice.getByTestId('pm-to').inputValue(), 'bob');
    await page.alice.getByTestId('pm-input').fill('psst, bob');
    await page.alice.getByTestId('pm-send').click();
    await page.alice.getByTestId('pm-status').filter({ hasText: 'delivered' }).waitFor();
    await page.bob.getByTestId('pm').filter({ hasText: 'Alice: psst, bob' }).waitFor();
    await page.bob.getByTestId('pm-to').fill('alice');
    await page.bob.getByTestId('pm-input').fill('yes?');
    await page.bob.getByTestId('pm-send').click();
    await page.alice.getByTestId('pm').filter({ hasText: 'Bob: yes?' }).waitFor();
    // Nobody there: the ack's error code is shown.
    await page.bob.getByTestId('pm-to').fill('nobody');
    await page.bob.getByTestId('pm-input').fill('hello?');
    await page.bob.getByTestId('pm-send').click();
    await page.bob.getByTestId('pm-status').filter({ hasText: 'NOT_FOUND' }).waitFor();
    await screenshot('private-messages', { alice: page.alice, bob: page.bob });
  });

  it('receives a notification pushed over POST /api/notifications (also as a browser notification) and marks it read', async () => {
    const res = await fetch(`${server.url}/api/notifications`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key.token('ops', 'Ops', { admin: true })}`, 'content-type': 'application/json' },
      body: JSON.stringify({ userId: 'bob', title: 'Deploy', message: 'v2 is live' }),
      signal: AbortSignal.timeout(10_000),
    });
    assert.equal(res.status, 201, await res.text());
    await page.bob.getByTestId('unread-count').filter({ hasText: /^1$/ }).waitFor();
    await waitUntil(() => page.bob.evaluate(() => window.shownNotifications.some((n) => n.title === 'Deploy' && n.body === 'v2 is live')),
      'a browser notification shown (permission granted)');
    await page.bob.getByTestId('bell').click();
    const note = page.bob.getByTestId('notification').filter({ hasText: 'v2 is live' });
    await note.and(page.bob.locator('[data-read="false"]')).waitFor();
    await screenshot('notification', { bob: page.bob });
    await note.getByTestId('mark-read').click();
    await note.and(page.bob.locator('[data-read="true"]')).waitFor();
    await page.bob.getByTestId('unread-count').filter({ hasText: /^0$/ }).waitFor();
    // The read mark is durable: a reload gets it read from the server.
    await page.bob.reload();
    await connected('bob').waitFor();
    await page.bob.getByTestId('bell').click();
    await page.bob.getByTestId('notification').filter({ hasText: 'v2 is live' })
      .and(page.bob.locator('[data-read="true"]')).waitFor();
    await page.bob.getByTestId('unread-count').filter({ hasText: /^0$/ }).waitFor();
    await page.bob.getByTestId('bell').click();
  });

  it('edits one document at the same time and both end with the same text', async () => {
    for (const who of ['alice', 'bob']) {
      await page[who].getByTestId('doc-name').fill('plan');
      await page[who].getByTestId('doc-open').click();
      await page[who].locator('[data-testid="doc-text"][data-joined="true"]').waitFor();
    }
    const text = (who) => page[who].getByTestId('doc-text').inputValue();
    await page.alice.getByTestId('doc-text').pressSequentially('|');
    await waitUntil(async () => (await text('bob')) === '|', 'bob has the first edit');
    // Bob types at the start, Alice at the end, at the same time.
    await page.bob.getByTestId('doc-text').evaluate((el) => { el.focus(); el.setSelectionRange(0, 0); });
    await page.alice.getByTestId('doc-text').evaluate((el) => { el.focus(); el.setSelectionRange(el.value.length, el.value.length); });
    const aliceText = ' Alice was here';
    const bobText = 'Bob too ';
    await Promise.all([
      page.alice.getByTestId('doc-text').pressSequentially(aliceText, { delay: 15 }),
      page.bob.getByTestId('doc-text').pressSequentially(bobText, { delay: 15 }),
    ]);
    const expected = `${bobText}|${aliceText}`;
    await waitUntil(async () => (await text('alice')) === expected && (await text('bob')) === expected,
      `both read ${JSON.stringify(expected)}`, 15_000).catch(async (e) => {
      throw new Error(`${e.message}; alice: ${JSON.stringify(await text('alice'))}, bob: ${JSON.stringify(await text('bob'))}`);
    });
    const version = async (who) => page[who].getByTestId('doc-version').textContent();
    await waitUntil(async () => (await version('alice')) === (await version('bob')), 'both at the same version');
    // Each sees where the other's cursor is: Bob's after his words, Alice's at the end.
    const mirror = (who) => page[who].getByTestId('doc-mirror').textContent().catch(() => null);
    await waitUntil(async () => (await mirror('alice')) === `${bobText}Bob|${aliceText}`, "Bob's cursor at Alice's")
      .catch(async (e) => { throw new Error(`${e.message}: ${JSON.stringify(await mirror('alice'))}`); });
    await waitUntil(async () => (await mirror('bob')) === `${expected}Alice`, "Alice's cursor at Bob's")
      .catch(async (e) => { throw new Error(`${e.message}: ${JSON.stringify(await mirror('bob'))}`); });
    await screenshot('document', { alice: page.alice, bob: page.bob });
  });

  it('shows "reconnecting" while the server restarts, then carries on', async () => {
    const { port } = server;
    await server.stop();
    for (const who of ['alice', 'bob']) {
      await page[who].getByTestId('connection-state').filter({ hasText: /^reconnecting \(attempt \d+\)$/ }).waitFor();
    }
    await screenshot('reconnecting', { alice: page.alice, bob: page.bob });
    server = await startParlor({ listen: `127.0.0.1:${port}`, dataDir, args: serverArgs() });
    for (const who of ['alice', 'bob']) await connected(who).waitFor({ timeout: 15_000 });
    // Rooms and the document are joined again; history, chat and edits go on.
    await waitUntil(async () => (await usersOf('alice')).length === 2, 'alice sees both users again');
    await room('alice').getByTestId('message').filter({ hasText: 'hi alice' }).waitFor();
    await room('alice').getByTestId('message-input').fill('back again');
    await room('alice').getByTestId('message-send').click();
    await room('bob').getByTestId('message').filter({ hasText: 'back again' }).waitFor();
    await page.bob.locator('[data-testid="doc-text"][data-joined="true"]').waitFor();
    assert.equal(await page.bob.getByTestId('doc-text').inputValue(), 'Bob too | Alice was here', 'the document survived');
    await screenshot('after-restart', { alice: page.alice, bob: page.bob });
  });

  it('a token the server does not accept leaves the page offline with the reason shown', async () => {
    const stranger = keys();
    const p = await (await userContext(browser)).newPage();
    await p.goto(`${server.url}/`);
    await p.getByTestId('signin-token').fill(stranger.token('mallory', 'Mallory'));
    await p.getByTestId('signin-token-submit').click();
    await p.locator('[data-testid="connection-state"][data-state="offline"]').waitFor();
    await p.getByTestId('error').filter({ hasText: 'connect: Invalid token' }).waitFor();
    await screenshot('refused-token', { mallory: p });
  });
});

describe('demo web app: an edit the server finds stale', { timeout: 60_000 }, () => {
  it('answers STALE_VERSION by re-joining and ends with the server\'s text', async () => {
    // Any edit that must be transformed past another costs more than 1 step: STALE_VERSION.
    const server = await startParlor({ dataDir: tempDir('parlor-browser-stale-'), args: ['--document-transform-work', '1'] });
    const browser = await launch();
    try {
      const pages = {};
      // Bob's frames go through the test, which can hold his edits back.
      let hold = false;
      const held = [];
      const bobContext = await userContext(browser);
      await bobContext.routeWebSocket((url) => url.hostname === '127.0.0.1', (ws) => {
        const upstream = ws.connectToServer();
        ws.onMessage((m) => (hold && String(m).includes('"text-change"') ? held.push([upstream, m]) : upstream.send(m)));
        upstream.onMessage((m) => ws.send(m));
      });
      pages.alice = await (await userContext(browser)).newPage();
      pages.bob = await bobContext.newPage();
      for (const [who, p] of Object.entries(pages)) {
        await p.goto(`${server.url}/`);
        await p.getByTestId('signin-name').fill(who);
        await p.getByTestId('signin-name-submit').click();
        await p.getByTestId('doc-name').fill('stale');
        await p.getByTestId('doc-open').click();
        await p.locator('[data-testid="doc-text"][data-joined="true"]').waitFor();
      }
      const text = (who) => pages[who].getByTestId('doc-text').inputValue();
      const version = (who) => pages[who].getByTestId('doc-version').textContent();
      hold = true;
      await pages.bob.getByTestId('doc-text').pressSequentially('bob');
      await waitUntil(() => held.length > 0, "bob's edit held back");
      await pages.alice.getByTestId('doc-text').pressSequentially('alice');
      await waitUntil(async () => (await version('alice')) !== 'v0' && (await text('bob')) === 'alicebob',
        "alice's edit stored and shown to bob next to his unsent one");
      hold = false;
      for (const [upstream, m] of held.splice(0)) upstream.send(m);
      await pages.bob.getByTestId('error').filter({ hasText: 'STALE_VERSION' }).waitFor();
      await waitUntil(async () => (await text('bob')) === (await text('alice')) && (await text('alice')) === 'alice',
        "bob re-joined and has the server's text");
      await screenshot('stale-version', pages);
    } finally {
      await browser.close();
      await server.stop();
    }
  });
});

describe('demo web app in dev mode (no --auth-key)', { timeout: 60_000 }, () => {
  it('signs in with a name, chats and shows VALIDATION and RATE_LIMITED from the acks', async () => {
    const server = await startParlor({ dataDir: tempDir('parlor-browser-dev-'), args: ['--rate-limit', '3'] });
    const browser = await launch();
    try {
      const p = await (await userContext(browser)).newPage();
      await p.goto(`${server.url}/`);
      await p.getByTestId('signin-name').fill('carol');
      await p.getByTestId('signin-name-submit').click();
      await p.locator('[data-testid="connection-state"][data-state="connected"]').waitFor();
      await p.getByTestId('room-join').click();
      const lobby = p.getByTestId('room-lobby');
      await lobby.getByTestId('user').filter({ hasText: 'carol' }).waitFor();
      await lobby.getByTestId('message-input').fill('dev mode works');
      await lobby.getByTestId('message-send').click();
      await lobby.getByTestId('message').filter({ hasText: 'dev mode works' }).waitFor();
      // Whitespace only: the server refuses it, and the page says why.
      await lobby.getByTestId('message-input').fill('   ');
      await lobby.getByTestId('message-send').click();
      await lobby.getByTestId('send-status').filter({ hasText: 'VALIDATION' }).waitFor();
      // --rate-limit 3: the fourth message in the window is refused (the invalid one did not count).
      for (const text of ['two', 'three']) {
        await lobby.getByTestId('message-input').fill(text);
        await lobby.getByTestId('message-send').click();
        await lobby.getByTestId('message').filter({ hasText: text }).waitFor();
      }
      await lobby.getByTestId('message-input').fill('four');
      await lobby.getByTestId('message-send').click();
      await lobby.getByTestId('send-status').filter({ hasText: 'RATE_LIMITED: Rate limit exceeded' }).waitFor();
      await screenshot('dev-mode', { carol: p });
    } finally {
      await browser.close();
      await server.stop();
    }
  });
});
