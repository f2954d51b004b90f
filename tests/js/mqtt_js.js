// MQTT.js (npm `mqtt` 5.x) against foxrouter's MQTT gate, one protocol version and one
// transport per run:
//
//   node tests/js/mqtt_js.js --url mqtt://127.0.0.1:PORT | ws://127.0.0.1:PORT/mqtt --version 4|5
//   node tests/js/mqtt_js.js --url mqtts://localhost:PORT | wss://localhost:PORT/mqtt --ca CA.pem ...
//
// With --ca, the server certificate is verified against that CA (and its name against the
// URL's host).
//
// Connect, SUBSCRIBE at QoS 0/1/2 (granted QoS), PUBLISH at each QoS with the delivered QoS
// = min(publish, subscription), + and # filters, retained replay and clearing, the will of
// a client whose socket is destroyed (and no will after a clean DISCONNECT), a persistent
// session (3.1.1 clean: false / 5 session expiry) that receives at QoS 1 and 2 what was
// published while it was away, and for MQTT 5: user properties, response topic,
// correlation data, content type and payload format passed through, the fox-id
// property (asked for on SUBSCRIBE), and topic aliases both ways.

import { createRequire } from 'node:module';

import { assert, Inbox, main, option, step, unique, within } from './lib.js';

const require = createRequire(import.meta.url);
const mqtt = require('mqtt');

const url = option('url');
const version = Number(option('version', '5'));
const WAIT_MS = 5000;
const v5 = version === 5;
const caFile = option('ca', '');
const tls = caFile ? { ca: require('node:fs').readFileSync(caFile), rejectUnauthorized: true } : {};

/**
 * Connects and resolves once CONNACK is in, with every message already routed into
 * `client.inbox` (attached before the connection opens, so messages a resumed session is
 * sent right after CONNACK are not missed). `client.connack` is the CONNACK packet.
 */
function connect(clientId, options = {}) {
  const client = mqtt.connect(url, {
    protocolVersion: version,
    clientId,
    reconnectPeriod: 0,
    connectTimeout: WAIT_MS,
    ...tls,
    ...options,
  });
  client.inbox = new Inbox();
  client.problems = [];
  client.on('message', (topic, payload, packet) => client.inbox.push({ topic, payload, packet }));
  client.on('error', (error) => client.problems.push(String(error)));
  const connected = new Promise((resolve, reject) => {
    client.once('connect', (connack) => {
      client.connack = connack;
      resolve(client);
    });
    client.once('error', reject);
    client.once('close', () => reject(new Error(`connection closed before CONNACK (${clientId})`)));
  });
  return within(WAIT_MS, `CONNACK for ${clientId}`, connected);
}

async function end(client) {
  await within(WAIT_MS, 'client end', client.endAsync());
}

async function nextMessage(client, what) {
  return client.inbox.next(WAIT_MS, what);
}

/** Publishes a sentinel on `topic` (which `client` subscribes) and checks nothing else came first. */
async function expectOnlySentinel(client, publisher, topic, what) {
  const marker = `sentinel-${Math.random()}`;
  await publisher.publishAsync(topic, marker, { qos: 1 });
  const got = await nextMessage(client, `sentinel for ${what}`);
  assert.equal(`${got.topic} ${got.payload}`, `${topic} ${marker}`, `${what}: something arrived before the sentinel`);
}

main(async () => {
  const ns = unique(`js/mqtt${version}/`);
  const transport = url.startsWith('ws') ? 'ws' : 'tcp';
  let sub;
  let pub;

  await step(`connect MQTT ${v5 ? '5' : '3.1.1'} over ${transport}`, async () => {
    sub = await connect(unique('jssub'));
    pub = await connect(unique('jspub'));
    assert.equal(sub.connack.sessionPresent, false, 'a clean session is not present');
    if (v5) {
      assert.equal(sub.connack.reasonCode, 0, 'CONNACK reason code success');
    } else {
      assert.equal(sub.connack.returnCode, 0, 'CONNACK return code accepted');
    }
  });

  await step('subscribe at QoS 0, 1, 2: granted as asked', async () => {
    const grants = await within(WAIT_MS, 'SUBACK', sub.subscribeAsync({
      [`${ns}q0`]: { qos: 0 }, [`${ns}q1`]: { qos: 1 }, [`${ns}q2`]: { qos: 2 },
    }));
    const granted = Object.fromEntries(grants.map((g) => [g.topic, g.qos]));
    assert.deepEqual(granted, { [`${ns}q0`]: 0, [`${ns}q1`]: 1, [`${ns}q2`]: 2 });
  });

  await step('publish at each QoS; delivered at min(publish, subscription) QoS', async () => {
    for (const subQos of [0, 1, 2]) {
      for (const pubQos of [0, 1, 2]) {
        const topic = `${ns}q${subQos}`;
        const payload = `sub${subQos}-pub${pubQos}`;
        await within(WAIT_MS, `PUBLISH QoS ${pubQos} handshake`, pub.publishAsync(topic, payload, { qos: pubQos }));
        const got = await nextMessage(sub, payload);
        assert.equal(got.topic, topic);
        assert.equal(got.payload.toString(), payload);
        assert.equal(got.packet.qos, Math.min(subQos, pubQos), `delivered QoS for ${payload}`);
        assert.equal(got.packet.retain, false);
      }
    }
    // Binary payload bytes pass untouched.
    const bytes = Buffer.from([0, 255, 1, 254, 10, 13]);
    await pub.publishAsync(`${ns}q2`, bytes, { qos: 2 });
    const got = await nextMessage(sub, 'binary payload');
    assert.ok(got.payload.equals(bytes), `payload bytes differ: ${got.payload.toString('hex')}`);
  });

  await step('+ and # filters', async () => {
    await sub.subscribeAsync({ [`${ns}wild/+/temp`]: { qos: 1 }, [`${ns}deep/#`]: { qos: 1 } });
    await pub.publishAsync(`${ns}wild/kitchen/temp`, 'w1', { qos: 1 });
    await pub.publishAsync(`${ns}wild/kitchen/hum`, 'w-no', { qos: 1 });
    await pub.publishAsync(`${ns}deep/a/b/c`, 'd1', { qos: 1 });
    await pub.publishAsync(`${ns}deep`, 'd0', { qos: 1 }); // `x/#` matches `x` too
    const got = [];
    for (let i = 0; i < 3; i += 1) {
      const m = await nextMessage(sub, `wildcard message ${i}`);
      got.push(`${m.topic}=${m.payload}`);
    }
    assert.deepEqual(got, [`${ns}wild/kitchen/temp=w1`, `${ns}deep/a/b/c=d1`, `${ns}deep=d0`]);
    await expectOnlySentinel(sub, pub, `${ns}q1`, 'wildcard filters');
    await within(WAIT_MS, 'UNSUBACK', sub.unsubscribeAsync(`${ns}deep/#`));
    await pub.publishAsync(`${ns}deep/after`, 'gone', { qos: 1 });
    await expectOnlySentinel(sub, pub, `${ns}q1`, 'after UNSUBSCRIBE');
  });

  await step('retained message: replayed to a new subscriber, then cleared', async () => {
    const topic = `${ns}retained/state`;
    await pub.publishAsync(topic, 'on', { qos: 1, retain: true });
    const late = await connect(unique('jslate'));
    await late.subscribeAsync(topic, { qos: 1 });
    const replay = await nextMessage(late, 'retained replay');
    assert.equal(replay.topic, topic);
    assert.equal(replay.payload.toString(), 'on');
    assert.equal(replay.packet.retain, true, 'a replayed retained message has the RETAIN flag');
    // A live publish to a subscribed topic arrives with RETAIN 0 (3.1.1 §3.3.1.3; in 5 a
    // subscription without retain-as-published also clears it).
    await pub.publishAsync(topic, 'off', { qos: 1, retain: true });
    const live = await nextMessage(late, 'live retained publish');
    assert.equal(live.payload.toString(), 'off');
    assert.equal(live.packet.retain, false, 'a live message to an existing subscription has RETAIN 0');
    // Clear it: an empty retained payload.
    await pub.publishAsync(topic, '', { qos: 1, retain: true });
    const cleared = await nextMessage(late, 'the clearing publish');
    assert.equal(cleared.payload.length, 0);
    await end(late);
    const later = await connect(unique('jslater'));
    await later.subscribeAsync(topic, { qos: 1 });
    await expectOnlySentinel(later, pub, topic, 'cleared retained topic');
    await end(later);
  });

  await step('will: published when the socket is destroyed, not after DISCONNECT', async () => {
    const willTopic = `${ns}will/status`;
    await sub.subscribeAsync(willTopic, { qos: 1 });
    const will = { topic: willTopic, payload: Buffer.from('gone'), qos: 1, retain: false };
    if (v5) {
      // MQTT 5 §3.1.3.2: the Will Properties are sent with the Will Message.
      will.properties = { userProperties: { why: 'crash' }, contentType: 'text/plain', willDelayInterval: 0 };
    }
    const clean = await connect(unique('jswill1'), { will: { ...will, payload: Buffer.from('clean') } });
    await end(clean);
    const dying = await connect(unique('jswill2'), { will, keepalive: 60 });
    dying.stream.destroy();
    const got = await nextMessage(sub, 'the will');
    assert.equal(got.topic, willTopic);
    assert.equal(got.payload.toString(), 'gone', 'only the destroyed client\'s will, not the cleanly closed one');
    assert.equal(got.packet.qos, 1);
    if (v5) {
      const props = got.packet.properties || {};
      assert.equal(props.contentType, 'text/plain', `will properties: ${JSON.stringify(props)}`);
      assert.equal((props.userProperties || {}).why, 'crash', `will user properties: ${JSON.stringify(props)}`);
    }
  });

  await step('persistent session receives what was published while it was away', async () => {
    const clientId = unique('jspersist');
    const topic = `${ns}persist/+`;
    const sessionOptions = v5
      ? { clean: false, properties: { sessionExpiryInterval: 300 } }
      : { clean: false };
    const first = await connect(clientId, sessionOptions);
    await first.subscribeAsync(topic, { qos: 2 });
    await end(first);
    // docs/mqtt.md: QoS 0 messages are queued for an offline persistent session too.
    for (const qos of [0, 1, 2]) {
      await pub.publishAsync(`${ns}persist/q${qos}`, `while away ${qos}`, { qos });
    }
    const again = await connect(clientId, sessionOptions);
    assert.equal(again.connack.sessionPresent, true, 'CONNACK session present');
    const got = [];
    for (let i = 0; i < 3; i += 1) {
      const m = await nextMessage(again, `queued message ${i}`);
      got.push([m.topic, m.payload.toString(), m.packet.qos]);
    }
    assert.deepEqual(got, [[`${ns}persist/q0`, 'while away 0', 0], [`${ns}persist/q1`, 'while away 1', 1],
      [`${ns}persist/q2`, 'while away 2', 2]]);
    // The session continues live.
    await pub.publishAsync(`${ns}persist/live`, 'live', { qos: 1 });
    const live = await nextMessage(again, 'live message after resume');
    assert.equal(live.payload.toString(), 'live');
    await end(again);
    // A clean start discards the session.
    const fresh = await connect(clientId, v5 ? { clean: true } : { clean: true });
    assert.equal(fresh.connack.sessionPresent, false, 'clean start: no session present');
    await end(fresh);
  });

  if (v5) {
    await step('MQTT 5 properties pass through (user properties, response topic, correlation data)', async () => {
      const requestTopic = `${ns}rpc/request`;
      const responseTopic = `${ns}rpc/response`;
      // The permanent ID is opt-in: this subscription asks for it.
      await sub.subscribeAsync(requestTopic, { qos: 1, properties: { userProperties: { 'fox-id': 'true' } } });
      await pub.subscribeAsync(responseTopic, { qos: 1 });
      const correlationData = Buffer.from([1, 2, 3, 250]);
      await pub.publishAsync(requestTopic, '{"q":1}', {
        qos: 1,
        properties: {
          userProperties: { app: 'js-test', multi: ['a', 'b'] },
          responseTopic,
          correlationData,
          contentType: 'application/json',
          payloadFormatIndicator: true,
        },
      });
      const request = await nextMessage(sub, 'request with properties');
      const props = request.packet.properties || {};
      assert.equal(props.responseTopic, responseTopic);
      assert.ok(Buffer.from(props.correlationData || []).equals(correlationData), 'correlation data');
      assert.equal(props.contentType, 'application/json');
      assert.equal(props.payloadFormatIndicator, true);
      const user = props.userProperties || {};
      assert.equal(user.app, 'js-test');
      assert.deepEqual(user.multi, ['a', 'b'], 'repeated user property keeps both values in order');
      const foxId = Array.isArray(user['fox-id']) ? user['fox-id'][0] : user['fox-id'];
      assert.match(String(foxId), /^[1-9][0-9]*$/, `fox-id user property: ${JSON.stringify(user)}`);
      // Answer on the response topic with the correlation data, as a responder does.
      await sub.publishAsync(props.responseTopic, 'answer', { qos: 1, properties: { correlationData: props.correlationData } });
      const response = await nextMessage(pub, 'response');
      assert.equal(response.topic, responseTopic);
      assert.equal(response.payload.toString(), 'answer');
      assert.ok(Buffer.from(response.packet.properties.correlationData).equals(correlationData));
    });
  }

  if (v5) {
    await step('MQTT 5 topic aliases (MQTT.js autoAssignTopicAlias / topicAliasMaximum)', async () => {
      // The publisher lets MQTT.js assign aliases (the router's CONNACK Topic Alias Maximum
      // bounds them); the subscriber allows the router to send aliases to it.
      const aliasing = await connect(unique('jsalias'), { autoAssignTopicAlias: true });
      const maximum = aliasing.connack.properties && aliasing.connack.properties.topicAliasMaximum;
      assert.ok(maximum >= 1, `CONNACK Topic Alias Maximum: ${JSON.stringify(aliasing.connack.properties)}`);
      const receiver = await connect(unique('jsaliasrx'), { properties: { topicAliasMaximum: 10 } });
      const topic = `${ns}alias/a/rather/long/topic/name`;
      await receiver.subscribeAsync(topic, { qos: 1 });
      const sentAliases = [];
      aliasing.on('packetsend', (packet) => {
        if (packet.cmd === 'publish') sentAliases.push([packet.topic, packet.properties && packet.properties.topicAlias]);
      });
      const receivedAliases = [];
      for (let i = 0; i < 3; i += 1) {
        await aliasing.publishAsync(topic, `aliased ${i}`, { qos: 1 });
        const m = await nextMessage(receiver, `aliased message ${i}`);
        assert.equal(m.topic, topic, 'MQTT.js resolves the alias back to the topic');
        assert.equal(m.payload.toString(), `aliased ${i}`);
        receivedAliases.push(m.packet.properties && m.packet.properties.topicAlias);
      }
      // The publisher really used an alias with an empty topic after the first message.
      assert.equal(sentAliases.length, 3);
      assert.ok(sentAliases[1][1] >= 1 && sentAliases[1][0] === '', `aliases sent: ${JSON.stringify(sentAliases)}`);
      process.stdout.write(`info: aliases the router sent to the subscriber: ${JSON.stringify(receivedAliases)}\n`);
      assert.deepEqual(aliasing.problems, []);
      assert.deepEqual(receiver.problems, []);
      await end(aliasing);
      await end(receiver);
    }, { independent: true });
  }

  await step('disconnect cleanly', async () => {
    assert.deepEqual(sub.problems, []);
    assert.deepEqual(pub.problems, []);
    await end(sub);
    await end(pub);
  });
});
