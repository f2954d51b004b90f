// Opening autobahn-js sessions for the scripts: one serializer per connection, no retries,
// a bounded join, and a record of an unexpected close so a step can assert the session
// survived.

import { createRequire } from 'node:module';

import { ensureGlobalWebSocket, within } from './lib.js';

const require = createRequire(import.meta.url);

ensureGlobalWebSocket();
// AUTOBAHN_TRACE=<file> in the environment makes autobahn-js append every WAMP message it
// sends and receives to that file (the pytest wrapper prints it when a script fails).
export const autobahn = require('autobahn');

/**
 * JSON replacer/reviver for the WAMP spec's binary convention: a byte string travels in JSON
 * as a string starting with "\0" followed by the base64 of the bytes. autobahn-js's
 * JSONSerializer takes them as constructor arguments; it has no built-in binary support.
 */
export function binaryReplacer(key, value) {
  if (value instanceof Uint8Array) {
    return `\0${Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64')}`;
  }
  if (value && value.type === 'Buffer' && Array.isArray(value.data)) {
    // Buffer.prototype.toJSON ran before the replacer saw it.
    return `\0${Buffer.from(value.data).toString('base64')}`;
  }
  return value;
}

export function binaryReviver(key, value) {
  if (typeof value === 'string' && value.startsWith('\0')) {
    return Buffer.from(value.slice(1), 'base64');
  }
  return value;
}

/** A fresh serializer instance: json (with the binary convention), json-raw, msgpack, cbor. */
export function serializer(name) {
  const { serializer: s } = autobahn;
  switch (name) {
    case 'json':
      return new s.JSONSerializer(binaryReplacer, binaryReviver);
    case 'json-raw':
      return new s.JSONSerializer();
    case 'msgpack':
      if (!s.MsgpackSerializer) throw new Error('autobahn-js has no msgpack serializer (msgpack5 missing)');
      return new s.MsgpackSerializer();
    case 'cbor':
      if (!s.CBORSerializer) throw new Error('autobahn-js has no cbor serializer (cbor missing)');
      return new s.CBORSerializer();
    default:
      throw new Error(`unknown serializer ${name}`);
  }
}

/** Why a join failed: the ABORT reason URI autobahn-js reports (details.reason). */
export class JoinFailed extends Error {
  constructor(reason, details) {
    super(`join failed: ${reason} ${JSON.stringify(details)}`);
    this.reason = details && details.reason;
    this.closeReason = reason;
    this.details = details;
  }
}

/**
 * Joins `realm` at `url`; resolves with { connection, session, details, closed } where
 * `closed` is null while the connection lives and { reason, details } after it ended.
 */
export function open(url, serializerName, options = {}) {
  const wrapper = { connection: null, session: null, details: null, closed: null, onClose: [] };
  const joined = new Promise((resolve, reject) => {
    const connection = new autobahn.Connection({
      url,
      realm: 'realm1',
      serializers: [serializer(serializerName)],
      max_retries: 0,
      retry_if_unreachable: false,
      ...options,
    });
    wrapper.connection = connection;
    connection.onopen = (session, details) => {
      wrapper.session = session;
      wrapper.details = details;
      resolve(wrapper);
    };
    connection.onclose = (reason, details) => {
      wrapper.closed = { reason, details };
      for (const callback of wrapper.onClose) callback(wrapper.closed);
      reject(new JoinFailed(reason, details));
      return true; // no retry
    };
    connection.open();
  });
  return within(10000, `autobahn join (${serializerName}) at ${url}`, joined);
}

/** Resolves when the wrapper's connection has closed (bounded). */
export function closedOf(wrapper, ms, what) {
  if (wrapper.closed) return Promise.resolve(wrapper.closed);
  return within(ms, what, new Promise((resolve) => wrapper.onClose.push(resolve)));
}

/**
 * Like `within`, but fails at once, with the close reason (e.g. an ABORT from the router),
 * if the session's connection closes before `promise` settles.
 */
export function whileOpen(wrapper, ms, what, promise) {
  const closed = new Promise((_, reject) => {
    const report = (c) => reject(new Error(`${what}: the connection closed first: ${JSON.stringify(c)}`));
    if (wrapper.closed) report(wrapper.closed);
    else wrapper.onClose.push(report);
  });
  closed.catch(() => {});
  return within(ms, what, Promise.race([promise, closed]));
}

/** Leaves cleanly and waits for the close. */
export async function leave(wrapper) {
  if (wrapper.closed) return;
  const closed = closedOf(wrapper, 5000, 'connection close after leave');
  wrapper.connection.close();
  await closed;
}
