// autobahn-js against foxrouter's WAMP gate over WebSocket, one serializer per run:
//
//   node tests/js/autobahn_wamp.js --url ws://127.0.0.1:PORT/ws --serializer json|msgpack|cbor
//
// Pub/sub with acknowledge (PUBLISHED ids integers, strictly increasing, equal to the EVENT's
// publication id), exclude_me by default, publisher/caller disclosure, event retention,
// prefix and wildcard subscriptions with details.topic, RPC with args/kwargs and a pattern
// registration, progressive call results,
// an application error with URI/args/kwargs, no_such_procedure, call cancel (mode kill),
// binary payloads (Buffer) across serializers, including the JSON "\0" + base64 convention
// as seen on the wire by a plain JSON session, and Uint8Array payloads (last: fresh sessions).

import { assert, Inbox, main, option, rejects, sameBytes, step, unique, within } from './lib.js';
import { autobahn, leave, open, whileOpen } from './autobahn_session.js';

const url = option('url');
const serializerName = option('serializer', 'json');
const WAIT_MS = 5000;
const ID_MAX = 2 ** 53;

function assertId(value, what) {
  assert.ok(Number.isInteger(value), `${what} must be an integer, got ${typeof value} ${value}`);
  assert.ok(value >= 1 && value <= ID_MAX, `${what} must be in [1, 2^53], got ${value}`);
}

function assertAlive(...wrappers) {
  for (const w of wrappers) {
    assert.equal(w.closed, null, `session closed unexpectedly: ${JSON.stringify(w.closed)}`);
  }
}

main(async () => {
  const ns = unique('js.ab.');
  let pub;
  let sub;

  await step(`join two sessions (${serializerName})`, async () => {
    pub = await open(url, serializerName);
    sub = await open(url, serializerName);
    assert.equal(pub.details.transport.protocol, `wamp.2.${serializerName === 'json' ? 'json' : serializerName}`);
    assertId(pub.session.id, 'session id');
    assert.notEqual(pub.session.id, sub.session.id);
    assert.equal(pub.details.realm, 'realm1');
    assert.equal(pub.details.authmethod, 'anonymous');
    assert.ok(pub.details.roles.broker, 'WELCOME announces the broker role');
    assert.ok(pub.details.roles.dealer, 'WELCOME announces the dealer role');
  });

  await step('publish with acknowledge: integer, increasing ids; event matches', async () => {
    const topic = `${ns}.plain`;
    const events = new Inbox();
    await sub.session.subscribe(topic, (args, kwargs, details) => events.push({ args, kwargs, details }));
    let previous = 0;
    for (let i = 0; i < 5; i += 1) {
      const publication = await within(WAIT_MS, 'PUBLISHED', pub.session.publish(
        topic, [i, `text ${i}`, { nested: [1, 2, { deep: true }] }, null], { k: i, list: [] }, { acknowledge: true }));
      assertId(publication.id, 'PUBLISHED.Publication');
      assert.ok(publication.id > previous, `publication ids must increase: ${previous} then ${publication.id}`);
      previous = publication.id;
      const event = await events.next(WAIT_MS, `event ${i}`);
      assert.deepEqual(event.args, [i, `text ${i}`, { nested: [1, 2, { deep: true }] }, null]);
      assert.deepEqual(event.kwargs, { k: i, list: [] });
      assert.equal(event.details.publication, publication.id, 'EVENT publication id = PUBLISHED id');
      assert.equal(event.details.topic, topic, 'details.topic');
    }
    // Without acknowledge the publish still arrives.
    pub.session.publish(topic, ['no-ack']);
    const event = await events.next(WAIT_MS, 'unacknowledged event');
    assert.deepEqual(event.args, ['no-ack']);
    assert.ok(event.details.publication > previous, 'unacknowledged publication id increases too');
    assertAlive(pub, sub);
  });

  await step('exclude_me is the default; exclude_me false delivers to self', async () => {
    const topic = `${ns}.self`;
    const mine = new Inbox();
    const theirs = new Inbox();
    await pub.session.subscribe(topic, (args) => mine.push(args));
    await sub.session.subscribe(topic, (args) => theirs.push(args));
    await pub.session.publish(topic, ['excluded'], {}, { acknowledge: true });
    await pub.session.publish(topic, ['included'], {}, { acknowledge: true, exclude_me: false });
    assert.deepEqual(await theirs.next(WAIT_MS, 'other subscriber event 1'), ['excluded']);
    assert.deepEqual(await theirs.next(WAIT_MS, 'other subscriber event 2'), ['included']);
    // The publisher's own events arrive in publish order: the first it sees must be 'included'.
    assert.deepEqual(await mine.next(WAIT_MS, 'own event with exclude_me false'), ['included'],
      'the publisher received its own event although exclude_me defaults to true');
  });

  await step('publisher disclosure and event retention (retain / get_retained)', async () => {
    const topic = `${ns}.retained`;
    const disclosed = new Inbox();
    await sub.session.subscribe(`${ns}.disclosed`, (args, kwargs, details) => disclosed.push(details));
    await pub.session.publish(`${ns}.disclosed`, [1], {}, { acknowledge: true, disclose_me: true });
    const details = await disclosed.next(WAIT_MS, 'disclosed event');
    assert.equal(details.publisher, pub.session.id, 'EVENT.Details.publisher with disclose_me');
    await pub.session.publish(topic, ['state 1'], {}, { acknowledge: true, retain: true });
    await pub.session.publish(topic, ['state 2'], { v: 2 }, { acknowledge: true, retain: true });
    const replay = new Inbox();
    await sub.session.subscribe(topic, (args, kwargs, d) => replay.push({ args, kwargs, details: d }), { get_retained: true });
    const retained = await replay.next(WAIT_MS, 'retained event');
    assert.deepEqual([retained.args, retained.kwargs], [['state 2'], { v: 2 }], 'the last retained event is replayed');
    assert.equal(retained.details.retained, true, 'EVENT.Details.retained');
    await pub.session.publish(topic, ['live'], {}, { acknowledge: true });
    const live = await replay.next(WAIT_MS, 'live event after the retained one');
    assert.deepEqual(live.args, ['live'], 'only one retained event, then live events');
    assert.equal(live.details.retained, false);
  });

  await step('prefix and wildcard subscriptions report details.topic', async () => {
    const prefix = new Inbox();
    const wildcard = new Inbox();
    const exact = new Inbox();
    const prefixSub = await sub.session.subscribe(`${ns}.pfx`, (args, kwargs, details) => prefix.push({ args, details }),
      { match: 'prefix' });
    const wildcardSub = await sub.session.subscribe(`${ns}.wc..temp`, (args, kwargs, details) =>
      wildcard.push({ args, details }), { match: 'wildcard' });
    await sub.session.subscribe(`${ns}.sentinel`, (args) => exact.push(args));
    assertId(prefixSub.id, 'prefix subscription id');
    assert.notEqual(prefixSub.id, wildcardSub.id);
    const ack = { acknowledge: true };
    await pub.session.publish(`${ns}.pfx.a.b`, ['p1'], {}, ack);
    await pub.session.publish(`${ns}.pfx`, ['p0'], {}, ack);
    // WAMP prefix matching is on the URI string: `pfx-low` matches `pfx`, `pf` does not.
    await pub.session.publish(`${ns}.pfx-low`, ['p2'], {}, ack);
    await pub.session.publish(`${ns}.pf`, ['p-no'], {}, ack);
    await pub.session.publish(`${ns}.wc.kitchen.temp`, ['w1'], {}, ack);
    await pub.session.publish(`${ns}.wc.kitchen.hum`, ['w-no'], {}, ack);
    await pub.session.publish(`${ns}.wc.a.b.temp`, ['w-no2'], {}, ack);
    await pub.session.publish(`${ns}.sentinel`, ['end'], {}, ack);
    assert.deepEqual(await exact.next(WAIT_MS, 'sentinel'), ['end']);
    const p1 = await prefix.next(WAIT_MS, 'prefix event 1');
    assert.deepEqual(p1.args, ['p1']);
    assert.equal(p1.details.topic, `${ns}.pfx.a.b`);
    const p0 = await prefix.next(WAIT_MS, 'prefix event 2');
    assert.deepEqual(p0.args, ['p0']);
    assert.equal(p0.details.topic, `${ns}.pfx`);
    const p2 = await prefix.next(WAIT_MS, 'prefix event 3');
    assert.deepEqual(p2.args, ['p2']);
    assert.equal(p2.details.topic, `${ns}.pfx-low`);
    const w1 = await wildcard.next(WAIT_MS, 'wildcard event');
    assert.deepEqual(w1.args, ['w1']);
    assert.equal(w1.details.topic, `${ns}.wc.kitchen.temp`);
    // The sentinel came after every other publish on the same session: nothing else is due.
    assert.equal(prefix.items.length, 0, `prefix subscription got extra events: ${JSON.stringify(prefix.items)}`);
    assert.equal(wildcard.items.length, 0, `wildcard subscription got extra events: ${JSON.stringify(wildcard.items)}`);
    await sub.session.unsubscribe(prefixSub);
    await pub.session.publish(`${ns}.pfx.after`, ['gone'], {}, ack);
    await pub.session.publish(`${ns}.sentinel`, ['end2'], {}, ack);
    assert.deepEqual(await exact.next(WAIT_MS, 'sentinel 2'), ['end2']);
    assert.equal(prefix.items.length, 0, 'no event after unsubscribe');
  });

  await step('RPC with args and kwargs; pattern registration gives details.procedure', async () => {
    await sub.session.register(`${ns}.add`, (args, kwargs) =>
      new autobahn.Result([args[0] + args[1]], { sum: args[0] + args[1], echo: kwargs }));
    const result = await within(WAIT_MS, 'CALL add', pub.session.call(`${ns}.add`, [2, 3], { tag: 'x', n: [1, { a: null }] }));
    assert.ok(result instanceof autobahn.Result, `complex result expected, got ${JSON.stringify(result)}`);
    assert.deepEqual(result.args, [5]);
    assert.deepEqual(result.kwargs, { sum: 5, echo: { tag: 'x', n: [1, { a: null }] } });
    // A single positional result comes back as the bare value.
    await sub.session.register(`${ns}.single`, () => 'one');
    assert.equal(await within(WAIT_MS, 'CALL single', pub.session.call(`${ns}.single`)), 'one');
    const callers = new Inbox();
    await sub.session.register(`${ns}.whoami`, (args, kwargs, details) => { callers.push(details.caller); return null; });
    await within(WAIT_MS, 'CALL whoami', pub.session.call(`${ns}.whoami`, [], {}, { disclose_me: true }));
    assert.equal(await callers.next(WAIT_MS, 'invocation of whoami'), pub.session.id, 'INVOCATION.Details.caller with disclose_me');
    const invocations = new Inbox();
    await sub.session.register(`${ns}.pattern`, (args, kwargs, details) => {
      invocations.push(details.procedure);
      return args[0];
    }, { match: 'prefix' });
    assert.equal(await within(WAIT_MS, 'CALL pattern', pub.session.call(`${ns}.pattern.x.y`, ['px'])), 'px');
    assert.equal(await invocations.next(WAIT_MS, 'invocation'), `${ns}.pattern.x.y`);
    const missing = await rejects(WAIT_MS, 'CALL of an unregistered procedure', pub.session.call(`${ns}.nobody`));
    assert.equal(missing.error, 'wamp.error.no_such_procedure', JSON.stringify(missing));
  });

  await step('progressive call results (receive_progress)', async () => {
    const seenOptions = new Inbox();
    await sub.session.register(`${ns}.progress`, async (args, kwargs, details) => {
      seenOptions.push(typeof details.progress === 'function');
      if (details.progress) {
        for (let i = 0; i < args[0]; i += 1) {
          details.progress([i], { step: i });
        }
      }
      return new autobahn.Result(['done'], { total: args[0] });
    });
    const progress = [];
    const call = pub.session.call(`${ns}.progress`, [3], {}, { receive_progress: true });
    assert.equal(typeof call.then, 'function');
    const result = await within(WAIT_MS, 'final progressive result',
      call.then((value) => value, (error) => { throw error; }, (update) => progress.push(update)));
    assert.equal(await seenOptions.next(WAIT_MS, 'invocation'), true, 'INVOCATION.Details.receive_progress set');
    assert.deepEqual(progress.map((p) => [p.args, p.kwargs]),
      [[[0], { step: 0 }], [[1], { step: 1 }], [[2], { step: 2 }]], 'three progressive results in order');
    assert.deepEqual([result.args, result.kwargs], [['done'], { total: 3 }]);
    // Without receive_progress the callee is not offered progress.
    const plain = await within(WAIT_MS, 'non-progressive call', pub.session.call(`${ns}.progress`, [2]));
    assert.equal(await seenOptions.next(WAIT_MS, 'invocation 2'), false,
      'INVOCATION must not carry receive_progress when the caller did not ask');
    assert.deepEqual([plain.args, plain.kwargs], [['done'], { total: 2 }]);
  });

  await step('an application error reaches the caller with URI, args and kwargs', async () => {
    await sub.session.register(`${ns}.fail`, (args) => {
      throw new autobahn.Error('com.example.error.bad_input', ['bad', args[0]], { code: 42, why: 'testing' });
    });
    const error = await rejects(WAIT_MS, 'CALL fail', pub.session.call(`${ns}.fail`, ['x']));
    assert.ok(error instanceof autobahn.Error, `autobahn.Error expected, got ${JSON.stringify(error)}`);
    assert.equal(error.error, 'com.example.error.bad_input');
    assert.deepEqual(error.args, ['bad', 'x']);
    assert.deepEqual(error.kwargs, { code: 42, why: 'testing' });
    assertAlive(pub, sub);
  });

  await step('call cancel (mode kill) on a callee without call_canceling', async () => {
    // autobahn-js supports CANCEL as a caller; as a callee it does not announce
    // call_canceling and has no INTERRUPT handler. WAMP (Advanced Profile, Call Canceling):
    // "If the callee does not support call canceling, then behavior is skip": the caller
    // gets ERROR wamp.error.canceled at once, the callee gets no INTERRUPT and its late
    // YIELD is discarded. Only mode kill is usable from autobahn-js: for skip/killnowait it
    // drops the request locally and then treats the router's ERROR as a protocol violation.
    const started = new Inbox();
    let finish;
    const gate = new Promise((resolve) => { finish = resolve; });
    await sub.session.register(`${ns}.slow`, async (args) => {
      started.push(args[0]);
      await gate;
      return 'late';
    });
    const call = pub.session.call(`${ns}.slow`, ['c1']);
    const outcome = call.then((value) => ({ value }), (error) => ({ error }));
    assert.equal(await started.next(WAIT_MS, 'INVOCATION of the slow procedure'), 'c1');
    call.cancel({ mode: 'kill' });
    const { value, error } = await within(WAIT_MS, 'the canceled call to end', outcome);
    assert.equal(value, undefined, `canceled call returned a result: ${JSON.stringify(value)}`);
    assert.ok(error instanceof autobahn.Error, `autobahn.Error expected, got ${JSON.stringify(error)}`);
    assert.equal(error.error, 'wamp.error.canceled');
    finish();
    // The late YIELD is discarded: both sessions stay up and the callee still serves calls.
    await sub.session.register(`${ns}.ping`, () => 'pong');
    assert.equal(await within(WAIT_MS, 'call after cancel', pub.session.call(`${ns}.ping`)), 'pong');
    assertAlive(pub, sub);
  });

  await step('binary payloads (Buffer) round-trip and cross serializers', async () => {
    const topic = `${ns}.bin`;
    const bytes = Buffer.from([0, 1, 2, 127, 128, 254, 255]);
    const events = new Inbox();
    const raw = new Inbox();
    // A JSON session without the binary reviver sees the wire form: "\0" + base64.
    const observer = await open(url, 'json-raw');
    await observer.session.subscribe(topic, (args) => raw.push(args));
    await sub.session.subscribe(topic, (args, kwargs) => events.push({ args, kwargs }));
    await pub.session.publish(topic, [bytes], { blob: bytes }, { acknowledge: true });
    const event = await events.next(WAIT_MS, 'binary event');
    assert.ok(sameBytes(event.args[0], bytes), `args[0] bytes differ: ${JSON.stringify(event.args[0])}`);
    assert.ok(sameBytes(event.kwargs.blob, bytes), `kwargs.blob bytes differ: ${JSON.stringify(event.kwargs.blob)}`);
    const wire = await raw.next(WAIT_MS, 'binary event on the raw JSON session');
    assert.equal(wire[0], `\0${bytes.toString('base64')}`, 'JSON carries bytes as "\\0" + base64');
    // The JSON convention from a plain JSON publisher reaches this serializer as bytes.
    await observer.session.publish(topic, [`\0${bytes.toString('base64')}`], {}, { acknowledge: true, exclude_me: true });
    const fromJson = await events.next(WAIT_MS, 'event from the raw JSON publisher');
    assert.ok(sameBytes(fromJson.args[0], bytes), `"\\0"+base64 from JSON did not arrive as bytes: ${JSON.stringify(fromJson.args[0])}`);
    // RPC echo of bytes, both ways.
    await sub.session.register(`${ns}.echo`, (args, kwargs) => new autobahn.Result(args, kwargs));
    const echoed = await within(WAIT_MS, 'binary echo', pub.session.call(`${ns}.echo`, [bytes, Buffer.alloc(0)], { b: bytes }));
    assert.ok(sameBytes(echoed.args[0], bytes), 'echoed args[0]');
    assert.ok(sameBytes(echoed.args[1], Buffer.alloc(0)), `echoed empty bytes: ${JSON.stringify(echoed.args[1])}`);
    assert.ok(sameBytes(echoed.kwargs.b, bytes), 'echoed kwargs.b');
    await leave(observer);
    assertAlive(pub, sub);
  });

  await step('Uint8Array payloads (what a browser has) round-trip', async () => {
    // In a browser there is no Buffer: binary data is a Uint8Array. autobahn-js's CBOR
    // serializer (node-cbor) encodes a Uint8Array that is not a Buffer as tag 64 (RFC 8746,
    // "uint8 typed array") around a byte string; msgpack5 encodes it as bin; the JSON
    // replacer above turns it into "\0" + base64. Fresh sessions, so a failure here cannot
    // hide the steps before it.
    const topic = `${ns}.typed`;
    const sender = await open(url, serializerName);
    const receiver = await open(url, serializerName);
    const observer = await open(url, 'json-raw');
    const events = new Inbox();
    const raw = new Inbox();
    await receiver.session.subscribe(topic, (args, kwargs) => events.push({ args, kwargs }));
    await observer.session.subscribe(topic, (args) => raw.push(args));
    const typed = new Uint8Array([9, 8, 7, 0, 255]);
    const publication = await whileOpen(sender, WAIT_MS, 'PUBLISHED for a Uint8Array payload',
      sender.session.publish(topic, [typed], { t: typed }, { acknowledge: true }));
    assertId(publication.id, 'PUBLISHED.Publication');
    const typedEvent = await events.next(WAIT_MS, 'Uint8Array event');
    assert.ok(sameBytes(typedEvent.args[0], typed), `Uint8Array bytes differ: ${JSON.stringify(typedEvent.args[0])}`);
    assert.ok(sameBytes(typedEvent.kwargs.t, typed), `Uint8Array kwargs bytes differ: ${JSON.stringify(typedEvent.kwargs.t)}`);
    assert.equal((await raw.next(WAIT_MS, 'Uint8Array on raw JSON'))[0], `\0${Buffer.from(typed).toString('base64')}`);
    await sender.session.register(`${ns}.typed.echo`, (args) => args[0]);
    const echoed = await within(WAIT_MS, 'Uint8Array echo', receiver.session.call(`${ns}.typed.echo`, [typed]));
    assert.ok(sameBytes(echoed, typed), `echoed Uint8Array differs: ${JSON.stringify(echoed)}`);
    assertAlive(sender, receiver, observer);
    await leave(sender);
    await leave(receiver);
    await leave(observer);
  }, { independent: true });

  await step('leave cleanly', async () => {
    await leave(pub);
    await leave(sub);
    assert.equal(pub.closed.reason, 'closed', `clean close expected, got ${JSON.stringify(pub.closed)}`);
    assert.equal(pub.closed.details.reason, 'wamp.close.goodbye_and_out');
  });
});
