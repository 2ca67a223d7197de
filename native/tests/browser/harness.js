'use strict';
// What the browser tests share: the parlor binary on a loopback port serving the built web
// app (--static), tokens from `parlor keygen`/`parlor token`, Chromium pages that may reach
// nothing but 127.0.0.1, and screenshots of each step in target/screenshots/.

const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { chromium } = require('playwright-core');

const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');
const PARLOR_BIN = process.env.PARLOR_BIN || path.join(REPO_ROOT, 'target', 'release', 'parlor');
const DIST = process.env.PARLOR_WEB_DIST || path.join(REPO_ROOT, 'native', 'web', 'dist');
const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const SCREENSHOTS = path.join(REPO_ROOT, 'target', 'screenshots');
const TIMEOUT = 10_000;

const tempDirs = [];
function tempDir(prefix) {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  tempDirs.push(d);
  return d;
}
process.on('exit', () => {
  for (const d of tempDirs) fs.rmSync(d, { recursive: true, force: true });
});

/** PARLOR_COMPONENT runs the logic from the WebAssembly component, as native/tests/js does. */
const componentArgs = () => (process.env.PARLOR_COMPONENT ? ['--component', process.env.PARLOR_COMPONENT] : []);

/**
 * `parlor serve --static DIST` on `listen` (a free port by default) and its own store;
 * resolves once it printed its listening line: {proc, url, port, stop()}.
 */
function startParlor({ listen = '127.0.0.1:0', dataDir, args = [] } = {}) {
  if (!fs.existsSync(PARLOR_BIN)) throw new Error(`binary not found: ${PARLOR_BIN} (build it, or set PARLOR_BIN)`);
  if (!fs.existsSync(path.join(DIST, 'index.html'))) {
    throw new Error(`${DIST}/index.html missing: npm --prefix native/web ci && npm --prefix native/web run build`);
  }
  const argv = ['serve', '--listen', listen, '--static', DIST, '--data-dir', dataDir, ...componentArgs(), ...args];
  const proc = spawn(PARLOR_BIN, argv, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RUST_LOG: 'warn' } });
  let stderr = '';
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (d) => { stderr = (stderr + d).slice(-16384); });
  const exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`parlor did not start in time:\n${stderr}`)), 30_000);
    proc.stdout.setEncoding('utf8');
    proc.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/parlor listening on (http:\/\/127\.0\.0\.1:(\d+))/);
      if (!m) return;
      clearTimeout(timer);
      resolve({
        proc,
        url: m[1],
        port: Number(m[2]),
        logs: () => stderr,
        async stop() {
          if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
          return exited;
        },
      });
    });
    exited.then((info) => {
      clearTimeout(timer);
      reject(new Error(`parlor exited early ${JSON.stringify(info)}:\n${stderr}`));
    });
  });
}

/** A key pair from `parlor keygen`, and a function minting tokens with `parlor token`. */
function keys() {
  const dir = tempDir('parlor-browser-keys-');
  execFileSync(PARLOR_BIN, ['keygen', '--out', dir]);
  const keyPath = path.join(dir, 'parlor.key');
  return {
    pubPath: path.join(dir, 'parlor.pub'),
    token(sub, name, { admin = false } = {}) {
      const args = ['token', '--key', keyPath, '--sub', sub, '--name', name, '--ttl', '1h'];
      if (admin) args.push('--admin');
      return execFileSync(PARLOR_BIN, args, { encoding: 'utf8' }).trim();
    },
  };
}

async function launch() {
  return chromium.launch({ executablePath: CHROMIUM, args: ['--disable-gpu', '--no-first-run'] });
}

/** A new browser context (a user of its own) whose pages reach only 127.0.0.1. */
async function userContext(browser) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 760 } });
  context.setDefaultTimeout(TIMEOUT);
  await context.route('**/*', (route) => {
    const url = new URL(route.request().url());
    if (url.hostname === '127.0.0.1' || url.protocol === 'data:') return route.continue();
    return route.abort('blockedbyclient');
  });
  // WebSockets do not go through route(): those to anywhere else are closed here.
  await context.routeWebSocket((url) => url.hostname !== '127.0.0.1', (ws) => ws.close());
  return context;
}

let shot = 0;
/** Writes `name` as a numbered PNG of each page into target/screenshots/ and prints the paths. */
async function screenshot(name, pages) {
  fs.mkdirSync(SCREENSHOTS, { recursive: true });
  shot += 1;
  const suffix = process.env.PARLOR_COMPONENT ? '-component' : '';
  for (const [who, page] of Object.entries(pages)) {
    const file = path.join(SCREENSHOTS, `${String(shot).padStart(2, '0')}-${name}-${who}${suffix}.png`);
    await page.screenshot({ path: file });
    console.log(`screenshot: ${file}`);
  }
}

/** Polls `fn` until it returns a truthy value (or throws after `ms`). */
async function waitUntil(fn, what, ms = TIMEOUT) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

module.exports = { startParlor, keys, launch, userContext, screenshot, waitUntil, tempDir, TIMEOUT };
