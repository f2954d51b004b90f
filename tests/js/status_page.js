// The admin listener's status page (GET /) in a real browser: Debian's Chromium
// (/usr/bin/chromium) driven by playwright-core, with a fresh profile. Run by
// tests/interop/test_status_page.py, which talks to it over stdin / stdout:
//
//   1. the script opens the page (typing the token into its dialog with --token), waits
//      until it shows live numbers (--expect-mode live: from the event stream; polling: the
//      fallback, with --block-events yes making every /api/v1/events request fail), and
//      prints `ready {"messages_in": N, ...}`;
//   2. the test makes traffic and writes `published <count> <authid>` on stdin;
//   3. the script waits until the page's messages-in total grew by at least <count>, its
//      messages-in rate was above 0, and a session row for <authid> is shown; it checks the
//      chart canvas was drawn (pixels of the "in" line's colour), takes a screenshot
//      (--screenshot), and prints `result {...}`.
//   With --cluster-members N (the page of a cluster entry), before the screenshot: the
//   script waits until the members table shows N nodes, every ndb and sync node up and one
//   sync leader, prints `members {...}`, reads `killed <node>` on stdin, and waits until the
//   page shows that node without a link and another leader.
//
// Chromium's own errors on the page (console errors, CSP violations, uncaught exceptions)
// fail the script. Usage:
//   node tests/js/status_page.js --url http://127.0.0.1:8090/ --screenshot /tmp/page.png \
//     [--token T] [--block-events yes] [--expect-mode live|polling] [--cluster-members N]

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

import { chromium } from 'playwright-core';

import { assert, main, option, step, within } from './lib.js';

const CHROMIUM = option('chromium', '/usr/bin/chromium');
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];
const VIEWPORT = { width: 1280, height: 800 };
const WAIT_MS = 20000;

const url = option('url');
const screenshot = option('screenshot');
const token = option('token', '');
const blockEvents = option('block-events', 'no') === 'yes';
const expectMode = option('expect-mode', blockEvents ? 'polling' : 'live');
const clusterMembers = Number(option('cluster-members', '0'));

/** The next line on stdin (the test's message), within `ms`. */
function stdinLines() {
  const lines = [];
  const waiters = [];
  createInterface({ input: process.stdin }).on('line', (line) => {
    const waiter = waiters.shift();
    if (waiter) waiter(line); else lines.push(line);
  });
  return (ms, what) => within(ms, what, new Promise((resolve) => {
    if (lines.length > 0) resolve(lines.shift()); else waiters.push(resolve);
  }));
}

/** What the page shows now: the raw numbers behind its tiles, its mode, its session rows. */
function readPage(page) {
  return page.evaluate(() => {
    const number = (id) => Number(document.getElementById(id).dataset.value);
    return {
      mode: document.getElementById('conn-state').dataset.mode,
      messages_in: number('msgs-in'),
      messages_out: number('msgs-out'),
      rate_in: number('rate-in'),
      sessions: number('sessions'),
      connections: number('connections'),
      version: document.getElementById('version').textContent,
      cluster: document.getElementById('cluster').textContent,
      authids: [...document.querySelectorAll('#sessions-body tr[data-authid]')].map((row) => row.dataset.authid),
    };
  });
}

/** The cluster members table: its rows (node, role, health, leader) and the leader. */
function readMembers(page) {
  return page.evaluate(() => {
    const rows = [...document.querySelectorAll('#members-body tr[data-node]')].map((row) => ({
      node: Number(row.dataset.node), role: row.dataset.role, health: row.dataset.health,
      leader: row.dataset.leader === 'true',
    }));
    const leaders = rows.filter((row) => row.leader).map((row) => row.node);
    return {
      shown: !document.getElementById('members-card').hidden,
      note: document.getElementById('cluster-note').textContent,
      leaders, rows,
    };
  });
}

/** Pixels of the chart canvas: drawn at all, and of the "in" line's colour (#2563eb). */
function canvasPixels(page) {
  return page.evaluate(() => {
    const canvas = document.getElementById('chart');
    const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    let drawn = 0, inColour = 0;
    for (let i = 0; i < data.length; i += 4) {
      if (data[i + 3] === 0) continue;
      drawn += 1;
      const [r, g, b] = [data[i], data[i + 1], data[i + 2]];
      if (Math.abs(r - 0x25) < 24 && Math.abs(g - 0x63) < 24 && Math.abs(b - 0xeb) < 24 && data[i + 3] > 200) inColour += 1;
    }
    return { width: canvas.width, height: canvas.height, drawn, in_colour: inColour };
  });
}

/** Polls `read` every 200 ms until `done(value)`, within `ms`; returns the last value. */
async function until(ms, what, read, done) {
  const deadline = Date.now() + ms;
  let value;
  for (;;) {
    value = await read();
    if (done(value)) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}: ${JSON.stringify(value)}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

main(async () => {
  const nextLine = stdinLines();
  const profile = mkdtempSync(join(tmpdir(), 'foxrouter-chromium-'));
  let context;
  const problems = [];
  try {
    await step('launch chromium', async () => {
      context = await chromium.launchPersistentContext(profile, {
        executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true, viewport: VIEWPORT,
      });
    });
    const page = context.pages()[0] || await context.newPage();
    // Chromium logs the failed requests the test causes: the blocked event stream, and the
    // 401 that makes the page ask for its token. Any other console error is a problem.
    const expected = [];
    if (blockEvents) expected.push('net::ERR_FAILED');
    if (token !== '') expected.push('status of 401');
    page.on('console', (message) => {
      const text = message.text();
      if (message.type() === 'error' && !expected.some((known) => text.includes(known))) {
        problems.push(`console: ${text}`);
      }
    });
    page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
    if (blockEvents) {
      await page.route('**/api/v1/events*', (route) => route.abort('failed'));
    }

    await step('open the page', async () => {
      const response = await page.goto(url, { waitUntil: 'load' });
      assert.equal(response.status(), 200);
      assert.match(response.headers()['content-security-policy'] || '', /script-src 'sha256-/);
    });
    if (token !== '') {
      await step('type the token into the dialog', async () => {
        await page.waitForSelector('#token-dialog.open', { timeout: WAIT_MS });
        await page.fill('#token-input', token);
        await page.click('#token-submit');
      });
    }
    let before;
    await step(`live numbers (${expectMode})`, async () => {
      before = await until(WAIT_MS, `the page in mode ${expectMode} with a version and a rate`,
        () => readPage(page),
        (shown) => shown.mode === expectMode && shown.version !== '–' && Number.isFinite(shown.rate_in));
    });
    process.stdout.write(`ready ${JSON.stringify(before)}\n`);

    let published;
    await step('the test publishes', async () => {
      const line = await nextLine(WAIT_MS, 'a `published <count> <authid>` line on stdin');
      const [word, count, authid] = line.trim().split(/\s+/);
      assert.equal(word, 'published', line);
      published = { count: Number(count), authid };
    }, { ms: WAIT_MS + 1000 });

    let after;
    let rateSeen = 0;
    await step('the page shows the traffic and the session', async () => {
      after = await until(WAIT_MS, 'the messages, a rate above 0 and the session row',
        async () => {
          const shown = await readPage(page);
          rateSeen = Math.max(rateSeen, shown.rate_in);
          return shown;
        },
        (shown) => shown.messages_in >= before.messages_in + published.count
          && rateSeen > 0 && shown.authids.includes(published.authid));
      assert.equal(after.mode, expectMode);
    }, { ms: WAIT_MS + 1000 });

    let pixels;
    await step('the chart is drawn', async () => {
      pixels = await canvasPixels(page);
      assert.ok(pixels.drawn > 1000, `canvas nearly blank: ${JSON.stringify(pixels)}`);
      assert.ok(pixels.in_colour > 20, `no "in" line on the canvas: ${JSON.stringify(pixels)}`);
    });

    let members = null, afterKill = null;
    if (clusterMembers > 0) {
      const peersUp = (shown) => shown.rows.filter((row) => row.role !== 'entry').every((row) => row.health === 'up');
      await step('the cluster members: every ndb and sync node up, one leader', async () => {
        members = await until(WAIT_MS, `${clusterMembers} members, all up, one leader`, () => readMembers(page),
          (shown) => shown.shown && shown.rows.length === clusterMembers && peersUp(shown) && shown.leaders.length === 1);
      }, { ms: WAIT_MS + 1000 });
      process.stdout.write(`members ${JSON.stringify(members)}\n`);
      let killed;
      await step('the test kills a node', async () => {
        const line = await nextLine(WAIT_MS, 'a `killed <node>` line on stdin');
        const [word, node] = line.trim().split(/\s+/);
        assert.equal(word, 'killed', line);
        killed = Number(node);
      }, { ms: WAIT_MS + 1000 });
      await step('the page shows the node without a link and another leader', async () => {
        afterKill = await until(WAIT_MS, `node ${killed} down and a new leader`, () => readMembers(page),
          (shown) => shown.rows.some((row) => row.node === killed && row.health === 'down')
            && shown.leaders.length === 1 && shown.leaders[0] !== killed);
      }, { ms: WAIT_MS + 1000 });
    }

    await step('screenshot', async () => {
      await page.screenshot({ path: screenshot, fullPage: true });
    });

    await step('no error in the page', async () => {
      assert.deepEqual(problems, []);
    });
    const result = { before, after, published, rate_seen: rateSeen, canvas: pixels, members, after_kill: afterKill };
    process.stdout.write(`result ${JSON.stringify(result)}\n`);
  } finally {
    if (context) await context.close().catch(() => {});
    rmSync(profile, { recursive: true, force: true });
  }
});
