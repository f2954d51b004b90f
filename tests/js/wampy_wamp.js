// wampy.js against foxrouter's WAMP gate over WebSocket, one serializer per run:
//
//   node tests/js/wampy_wamp.js --url ws://127.0.0.1:PORT/ws --serializer json|msgpack|cbor
//
// Join, pub/sub (wampy always asks for acknowledge: publication ids integers and
// increasing), publisher exclusion by default, prefix/wildcard subscriptions with
// details.topic, RPC with argsList/argsDict, progressive call results, an application error
// with URI/args/kwargs, call cancel in modes skip, kill and killnowait against a wampy callee
// (which announces no call_canceling, so no INTERRUPT may reach it), and binary payloads for
// msgpack/cbor (wampy's JSON serializer has no binary convention).

import { createRequire } from 'node:module';

import { assert, Inbox, main, option, rejects, sameBytes, step, unique, within } from './lib.js';

const require = createRequire(import.meta.url);
const { Wampy } = require('wampy');
const { JsonSerializer } = require('wampy/JsonSerializer.js');
const { MsgpackSerializer } = require('wampy/MsgpackSerializer.js');
const { CborSerializer } = require('wampy/CborSerializer.js');
const WebSocket = require('ws');

const url = option('url');
const serializerName = option('serializer', 'json');
const WAIT_MS = 5000;

/** Drops `undefined` members of plain objects, recursively (what JSON.stringify does). */
function withoutUndefined(value) {
  if (Array.isArray(value)) return value.map(withoutUndefined);
  if (value && Object.getPrototypeOf(value) === Object.prototype) {
    return Object.fromEntries(Object.entries(value)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => [k, withoutUndefined(v)]));
  }
  return value;
}

/**
 * wampy 8 puts unset options into messages as `undefined` (SUBSCRIBE Options
 * {match: undefined, get_retained: undefined}): cbor-x encodes CBOR `undefined` (0xf7) and
 * msgpackr its private ext type 0 (d4 00 00). foxrouter reads both as an unset option, so
 * wampy's serializers are used as they are. --raw-wampy-serializer no drops the `undefined`
 * members before encoding instead (what JSON does), to tell a router problem from this one.
 */
function makeSerializer() {
  const serializer = { json: () => new JsonSerializer(), msgpack: () => new MsgpackSerializer(),
    cbor: () => new CborSerializer() }[serializerName];
  if (!serializer) throw new Error(`unknown serializer ${serializerName}`);
  const instance = serializer();
  if (option('raw-wampy-serializer', 'yes') === 'yes') return instance;
  const encode = instance.encode.bind(instance);
  instance.encode = (data) => encode(withoutUndefined(data));
  return instance;
}

/**
 * WAMP ids are integers up to 2^53. msgpackr (wampy's MsgPack) decodes every uint64 as a
 * BigInt by default, and an id above 2^32 can only be a uint64 on the wire: accept a BigInt
 * in range and compare as a Number.
 */
function idValue(value, what) {
  const number = typeof value === 'bigint' ? Number(value) : value;
  assert.ok(Number.isInteger(number) && number >= 1 && number <= 2 ** 53, `${what}: ${typeof value} ${value}`);
  return number;
}

/** A joined wampy client; `problems` collects onClose/onError so steps can assert none. */
async function connect() {
  const problems = [];
  const client = new Wampy(url, {
    ws: WebSocket,
    realm: 'realm1',
    serializer: makeSerializer(),
    autoReconnect: false,
    onClose: () => problems.push('closed'),
    onError: (error) => problems.push(`error: ${error && (error.stack || error.message || error)}`),
  });
  await within(WAIT_MS, 'wampy connect', client.connect());
  return { client, problems };
}

function assertHealthy(...peers) {
  for (const peer of peers) {
    assert.deepEqual(peer.problems, [], 'wampy client closed or failed');
  }
}

main(async () => {
  const ns = unique('js.wampy.');
  let a;
  let b;

  await step(`connect two clients (${serializerName})`, async () => {
    a = await connect();
    b = await connect();
    const id = idValue(a.client.getSessionId(), 'session id');
    assert.notEqual(id, idValue(b.client.getSessionId(), 'session id'));
  });

  await step('publish/subscribe with args and kwargs; increasing publication ids', async () => {
    const topic = `${ns}.plain`;
    const events = new Inbox();
    const subscribed = await within(WAIT_MS, 'SUBSCRIBED', b.client.subscribe(topic, (e) => events.push(e)));
    idValue(subscribed.subscriptionId, 'subscription id');
    let previous = 0;
    for (let i = 0; i < 3; i += 1) {
      const published = await within(WAIT_MS, 'PUBLISHED',
        a.client.publish(topic, { argsList: [i, 'x', { n: [1] }], argsDict: { k: i } }));
      const id = idValue(published.publicationId, 'publication id');
      assert.ok(id > previous, `ids increase: ${previous} then ${id}`);
      previous = id;
      const event = await events.next(WAIT_MS, `event ${i}`);
      assert.deepEqual(event.argsList, [i, 'x', { n: [1] }]);
      assert.deepEqual(event.argsDict, { k: i });
    }
    // wampy's shorthand payloads: a single value, a dict.
    await a.client.publish(topic, 'single');
    assert.deepEqual((await events.next(WAIT_MS, 'single-value event')).argsList, ['single']);
    await a.client.publish(topic, { only: 'kwargs' });
    const dictEvent = await events.next(WAIT_MS, 'dict event');
    assert.deepEqual(dictEvent.argsDict, { only: 'kwargs' });
  });

  await step('the publisher is excluded by default', async () => {
    // wampy cannot send exclude_me: false (it only forwards a truthy exclude_me).
    const topic = `${ns}.self`;
    const mine = new Inbox();
    const theirs = new Inbox();
    await a.client.subscribe(topic, (e) => mine.push(e.argsList));
    await b.client.subscribe(topic, (e) => theirs.push(e.argsList));
    await a.client.publish(topic, ['from a']);
    assert.deepEqual(await theirs.next(WAIT_MS, 'b gets a\'s event'), ['from a']);
    await b.client.publish(topic, ['from b']);
    // a's events arrive in order; the first it sees must be b's.
    assert.deepEqual(await mine.next(WAIT_MS, 'a gets b\'s event'), ['from b'],
      'the publisher received its own event although exclude_me defaults to true');
  });

  await step('prefix and wildcard subscriptions with details.topic', async () => {
    const prefix = new Inbox();
    const wildcard = new Inbox();
    const exact = new Inbox();
    await b.client.subscribe(`${ns}.pfx`, (e) => prefix.push(e), { match: 'prefix' });
    await b.client.subscribe(`${ns}.wc..temp`, (e) => wildcard.push(e), { match: 'wildcard' });
    await b.client.subscribe(`${ns}.sentinel`, (e) => exact.push(e));
    await a.client.publish(`${ns}.pfx.a.b`, ['p1']);
    await a.client.publish(`${ns}.pf`, ['p-no']);
    await a.client.publish(`${ns}.wc.hall.temp`, ['w1']);
    await a.client.publish(`${ns}.wc.hall.hum`, ['w-no']);
    await a.client.publish(`${ns}.sentinel`, ['end']);
    assert.deepEqual((await exact.next(WAIT_MS, 'sentinel')).argsList, ['end']);
    const p1 = await prefix.next(WAIT_MS, 'prefix event');
    assert.deepEqual(p1.argsList, ['p1']);
    assert.equal(p1.details.topic, `${ns}.pfx.a.b`);
    const w1 = await wildcard.next(WAIT_MS, 'wildcard event');
    assert.deepEqual(w1.argsList, ['w1']);
    assert.equal(w1.details.topic, `${ns}.wc.hall.temp`);
    assert.equal(prefix.items.length + wildcard.items.length, 0,
      `extra pattern events: ${JSON.stringify([...prefix.items, ...wildcard.items])}`);
  });

  await step('RPC with argsList and argsDict; no_such_procedure', async () => {
    await within(WAIT_MS, 'REGISTERED', b.client.register(`${ns}.add`, ({ argsList, argsDict }) =>
      ({ argsList: [argsList[0] + argsList[1]], argsDict: { echo: argsDict } })));
    const result = await within(WAIT_MS, 'CALL add',
      a.client.call(`${ns}.add`, { argsList: [2, 40], argsDict: { tag: 't' } }));
    assert.deepEqual(result.argsList, [42]);
    assert.deepEqual(result.argsDict, { echo: { tag: 't' } });
    const missing = await rejects(WAIT_MS, 'CALL of an unregistered procedure', a.client.call(`${ns}.nobody`));
    assert.equal(missing.errorUri, 'wamp.error.no_such_procedure', String(missing));
  });

  await step('progressive call results', async () => {
    await b.client.register(`${ns}.progress`, ({ argsList, details, result_handler: send }) => {
      assert.equal(details.receive_progress, true, 'INVOCATION.Details.receive_progress');
      for (let i = 0; i < argsList[0]; i += 1) {
        send({ argsList: [i], options: { progress: true } });
      }
      return { argsList: ['done'] };
    });
    const progress = [];
    const result = await within(WAIT_MS, 'progressive call', a.client.call(`${ns}.progress`, [3],
      { progress_callback: (r) => progress.push(r.argsList) }));
    assert.deepEqual(progress, [[0], [1], [2]]);
    assert.deepEqual(result.argsList, ['done']);
    assertHealthy(a, b);
  });

  await step('an application error reaches the caller with URI, args and kwargs', async () => {
    await b.client.register(`${ns}.fail`, ({ argsList }) => {
      throw Object.assign(new Error('application error'), {
        error: 'com.example.error.bad_input', argsList: ['bad', argsList[0]], argsDict: { code: 42 },
      });
    });
    const error = await rejects(WAIT_MS, 'CALL fail', a.client.call(`${ns}.fail`, ['x']));
    assert.equal(error.name, 'CallError', String(error));
    assert.equal(error.errorUri, 'com.example.error.bad_input');
    assert.deepEqual(error.argsList, ['bad', 'x']);
    assert.deepEqual(error.argsDict, { code: 42 });
  });

  for (const mode of ['skip', 'kill', 'killnowait']) {
    await step(`call cancel, mode ${mode}, callee without call_canceling`, async () => {
      // WAMP Advanced Profile, Call Canceling: "If the callee does not support call
      // canceling, then behavior is skip": ERROR wamp.error.canceled to the caller at once,
      // no INTERRUPT to the callee (wampy treats INTERRUPT as a protocol violation), and
      // the callee's late YIELD is discarded.
      const started = new Inbox();
      let finish;
      const gate = new Promise((resolve) => { finish = resolve; });
      await b.client.register(`${ns}.slow.${mode}`, async ({ argsList }) => {
        started.push(argsList[0]);
        await gate;
        return 'late';
      });
      const call = a.client.call(`${ns}.slow.${mode}`, [mode]);
      const { reqId } = a.client.getOpStatus();
      const outcome = call.then((value) => ({ value }), (error) => ({ error }));
      assert.equal(await started.next(WAIT_MS, 'INVOCATION'), mode);
      assert.equal(a.client.cancel(reqId, { mode }), true);
      const { value, error } = await within(WAIT_MS, 'the canceled call to end', outcome);
      assert.equal(value, undefined, `canceled call returned ${JSON.stringify(value)}`);
      assert.equal(error && error.errorUri, 'wamp.error.canceled', String(error && (error.errorUri || error.stack || error)));
      finish();
      await b.client.register(`${ns}.ping.${mode}`, () => 'pong');
      const pong = await within(WAIT_MS, 'call after cancel', a.client.call(`${ns}.ping.${mode}`));
      assert.deepEqual(pong.argsList, ['pong']);
      assertHealthy(a, b);
    });
  }

  if (serializerName !== 'json') {
    await step('binary payloads (Buffer) round-trip', async () => {
      const topic = `${ns}.bin`;
      const bytes = Buffer.from([0, 1, 2, 127, 128, 255]);
      const events = new Inbox();
      await b.client.subscribe(topic, (e) => events.push(e));
      await a.client.publish(topic, { argsList: [bytes], argsDict: { blob: bytes } });
      const event = await events.next(WAIT_MS, 'binary event');
      assert.ok(sameBytes(event.argsList[0], bytes), `bytes differ: ${JSON.stringify(event.argsList[0])}`);
      assert.ok(sameBytes(event.argsDict.blob, bytes), `kwargs bytes differ: ${JSON.stringify(event.argsDict.blob)}`);
    });

    await step('binary echo through a wampy callee', async () => {
      // wampy decodes from a Uint8Array view, so cbor-x hands the callee its bytes as a
      // Uint8Array; returning them unchanged makes cbor-x send tag 64 (RFC 8746) in the YIELD.
      const caller = await connect();
      const callee = await connect();
      const bytes = Buffer.from([0, 1, 2, 127, 128, 255]);
      await callee.client.register(`${ns}.echo`, ({ argsList }) => ({ argsList }));
      const echoed = await within(WAIT_MS, 'binary echo', caller.client.call(`${ns}.echo`, { argsList: [bytes] }));
      assert.ok(sameBytes(echoed.argsList[0], bytes), `echoed bytes differ: ${JSON.stringify(echoed.argsList[0])}`);
      assertHealthy(caller, callee);
      await caller.client.disconnect();
      await callee.client.disconnect();
    }, { independent: true });

    await step('Uint8Array payloads (what a browser has) round-trip', async () => {
      // cbor-x encodes a Uint8Array that is not a Buffer as tag 64 (RFC 8746) around a
      // byte string; msgpackr encodes it as bin. Last, on fresh clients.
      const sender = await connect();
      const receiver = await connect();
      const topic = `${ns}.typed`;
      const typed = new Uint8Array([9, 8, 7, 0, 255]);
      const events = new Inbox();
      await receiver.client.subscribe(topic, (e) => events.push(e));
      await within(WAIT_MS, 'PUBLISHED for a Uint8Array payload', sender.client.publish(topic, [typed]));
      const event = await events.next(WAIT_MS, 'Uint8Array event');
      assert.ok(sameBytes(event.argsList[0], typed), `bytes differ: ${JSON.stringify(event.argsList[0])}`);
      assertHealthy(sender, receiver);
      await sender.client.disconnect();
      await receiver.client.disconnect();
    }, { independent: true });
  }

  await step('disconnect', async () => {
    assertHealthy(a, b);
    await within(WAIT_MS, 'disconnect a', a.client.disconnect());
    await within(WAIT_MS, 'disconnect b', b.client.disconnect());
  });
});
