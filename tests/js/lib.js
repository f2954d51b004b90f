// Shared helpers for the JavaScript interop scripts: command-line options, bounded waits,
// assertions that exit non-zero with a message, and a WebSocket for autobahn-js on Node
// versions that have no global one.
//
// Every script is `node tests/js/<name>.js --option value ...`; options may also come from
// the environment as FOX_<OPTION> (`--ws-url` = FOX_WS_URL). A script prints one `ok <step>`
// line per passed step and exits 0, or prints `FAIL <step>: <reason>` and exits 1. A whole
// script is bounded by --deadline-ms (default 60 s); every wait inside it has its own bound.

import assert from 'node:assert/strict';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

export { assert };

/** Parses `--name value` pairs; falls back to FOX_NAME in the environment, then `fallback`. */
export function option(name, fallback) {
  const flag = `--${name}`;
  const index = process.argv.indexOf(flag);
  if (index >= 0 && index + 1 < process.argv.length) {
    return process.argv[index + 1];
  }
  const env = process.env[`FOX_${name.toUpperCase().replace(/-/g, '_')}`];
  if (env !== undefined && env !== '') {
    return env;
  }
  if (fallback === undefined) {
    fail('options', `missing --${name} (or FOX_${name.toUpperCase().replace(/-/g, '_')})`);
  }
  return fallback;
}

let currentStep = 'start';

function fail(step, reason) {
  process.stdout.write(`FAIL ${step}: ${reason}\n`);
  process.exit(1);
}

function describe(error) {
  if (error instanceof Error) {
    // WAMP client errors carry the URI and payload as own fields (errorUri, argsList, ...).
    const fields = Object.entries(error).filter(([k]) => !['stack', 'message'].includes(k));
    const extra = fields.length ? ` ${safeJson(Object.fromEntries(fields))}` : '';
    return `${error.name}: ${error.message}${extra}\n${error.stack || ''}`;
  }
  return safeJson(error);
}

function safeJson(error) {
  try {
    return JSON.stringify(error, (key, value) => (typeof value === 'bigint' ? `${value}n` : value));
  } catch {
    return String(error);
  }
}

const failures = [];

/**
 * Runs one named step, bounded by `ms` (default 20 s) on top of the bounds of the waits
 * inside it. A failing step ends the script with exit code 1, unless it is `independent`
 * (it uses fresh connections and leaves nothing behind): then its failure is recorded, the
 * script goes on, and exits 1 at the end.
 */
export async function step(name, body, { ms = 20000, independent = false } = {}) {
  currentStep = name;
  const started = Date.now();
  try {
    await within(ms, `step "${name}" to finish`, body());
  } catch (error) {
    if (!independent) throw error;
    failures.push(name);
    process.stdout.write(`FAIL ${name}: ${describe(error)}\n`);
    return;
  }
  process.stdout.write(`ok ${name} (${Date.now() - started} ms)\n`);
}

/** Runs a script's body under a deadline and exits 0 when it returns, 1 on any failure. */
export function main(body) {
  const deadlineMs = Number(option('deadline-ms', '60000'));
  const timer = setTimeout(() => fail(currentStep, `script deadline of ${deadlineMs} ms passed`), deadlineMs);
  process.on('unhandledRejection', (error) => fail(currentStep, `unhandled rejection: ${describe(error)}`));
  process.on('uncaughtException', (error) => fail(currentStep, `uncaught exception: ${describe(error)}`));
  body().then(
    () => {
      clearTimeout(timer);
      if (failures.length > 0) {
        process.stdout.write(`${failures.length} step(s) failed: ${failures.join('; ')}\n`);
        process.exit(1);
      }
      process.stdout.write('all steps passed\n');
      // Client libraries keep timers and sockets (reconnect logic); the verdict is final.
      process.exit(0);
    },
    (error) => fail(currentStep, describe(error)),
  );
}

/** Resolves with `promise`, or rejects after `ms` naming `what`. */
export function within(ms, what, promise) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Expects `promise` to reject within `ms`; returns the rejection reason. */
export async function rejects(ms, what, promise) {
  let outcome;
  try {
    outcome = { value: await within(ms, what, promise) };
  } catch (error) {
    if (error instanceof Error && error.message.startsWith('timed out after')) {
      throw error;
    }
    return error;
  }
  throw new Error(`${what}: expected a failure, got ${describe(outcome.value)}`);
}

/**
 * An inbox of items pushed by callbacks; `next(ms, what)` awaits the next one with a bound.
 * Absence is never checked by waiting out a window: the scripts send a sentinel that must
 * arrive first (or next) instead, relying on per-connection ordering.
 */
export class Inbox {
  constructor() {
    this.items = [];
    this.waiters = [];
  }

  push(item) {
    const waiter = this.waiters.shift();
    if (waiter) {
      waiter(item);
    } else {
      this.items.push(item);
    }
  }

  get pusher() {
    return (item) => this.push(item);
  }

  next(ms, what) {
    if (this.items.length > 0) {
      return Promise.resolve(this.items.shift());
    }
    let resolver;
    const promise = new Promise((resolve) => {
      resolver = resolve;
      this.waiters.push(resolve);
    });
    return within(ms, what, promise).catch((error) => {
      this.waiters = this.waiters.filter((waiter) => waiter !== resolver);
      throw error;
    });
  }
}

/** A unique suffix so topics of different runs never meet in retained state. */
export function unique(prefix) {
  return `${prefix}${process.pid}x${Date.now().toString(36)}`;
}

/** Byte-wise equality of two byte sequences (Buffer, Uint8Array, ArrayBuffer). */
export function sameBytes(actual, expected) {
  const a = actual instanceof ArrayBuffer ? new Uint8Array(actual) : actual;
  if (!(a instanceof Uint8Array)) {
    return false;
  }
  return Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(expected)) === 0;
}

/**
 * autobahn-js 26 uses the global WebSocket (browsers, Node >= 22; Node 20 with
 * --experimental-websocket). On an older Node without one, `ws` stands in; the script says
 * which implementation it used.
 */
export function ensureGlobalWebSocket() {
  if (typeof globalThis.WebSocket === 'function') {
    process.stdout.write(`websocket: Node ${process.version} built-in WebSocket\n`);
    return 'native';
  }
  globalThis.WebSocket = require('ws');
  process.stdout.write(`websocket: Node ${process.version} has none; using the ws package\n`);
  return 'ws';
}
