// One topic space, JavaScript clients on both sides: autobahn-js (WAMP over WebSocket) and
// MQTT.js (TCP or WebSocket, 3.1.1 or 5).
//
//   node tests/js/mqtt_wamp_cross.js --wamp-url ws://127.0.0.1:PORT/ws \
//        --mqtt-url mqtt://127.0.0.1:PORT | ws://127.0.0.1:PORT/mqtt --version 4|5 \
//        [--serializer json|msgpack|cbor]
//
// An autobahn-js subscriber on `<ns>.a.b` receives an MQTT publish to `<ns>/a/b` (JSON payload
// as the decoded value, other bytes as binary), with a PUBLISHED-style integer publication id;
// a wildcard WAMP subscription sees MQTT topics; an MQTT subscriber on `<ns>/#` receives WAMP
// publications as JSON; an MQTT retained message is what WAMP get_retained replays.

import { createRequire } from 'node:module';

import { assert, Inbox, main, option, sameBytes, step, unique, within } from './lib.js';
import { leave, open } from './autobahn_session.js';

const require = createRequire(import.meta.url);
const mqtt = require('mqtt');

const wampUrl = option('wamp-url');
const mqttUrl = option('mqtt-url');
const version = Number(option('version', '5'));
const serializerName = option('serializer', 'json');
const WAIT_MS = 5000;

function connectMqtt(clientId) {
  const client = mqtt.connect(mqttUrl, { protocolVersion: version, clientId, reconnectPeriod: 0, connectTimeout: WAIT_MS });
  client.inbox = new Inbox();
  client.on('message', (topic, payload, packet) => client.inbox.push({ topic, payload, packet }));
  return within(WAIT_MS, 'MQTT CONNACK', new Promise((resolve, reject) => {
    client.once('connect', () => resolve(client));
    client.once('error', reject);
  }));
}

main(async () => {
  const id = unique('jsx');
  const wampNs = `js.cross.${id}`;
  const mqttNs = `js/cross/${id}`;
  let w;
  let m;

  await step(`connect autobahn-js (${serializerName}) and MQTT.js ${version === 5 ? '5' : '3.1.1'} over ${mqttUrl.split(':')[0]}`, async () => {
    w = await open(wampUrl, serializerName);
    m = await connectMqtt(unique('jscross'));
  });

  await step('MQTT publish to a/b reaches the autobahn-js subscriber on a.b', async () => {
    const events = new Inbox();
    await w.session.subscribe(`${wampNs}.a.b`, (args, kwargs, details) => events.push({ args, kwargs, details }));
    await m.publishAsync(`${mqttNs}/a/b`, JSON.stringify({ temp: 21.5, tags: ['x'] }), { qos: 1 });
    const json = await events.next(WAIT_MS, 'event for the JSON MQTT payload');
    assert.deepEqual(json.args, [{ temp: 21.5, tags: ['x'] }], 'a JSON payload arrives as its decoded value');
    assert.ok(Number.isInteger(json.details.publication) && json.details.publication >= 1, 'publication id');
    const bytes = Buffer.from([0xff, 0x00, 0x62, 0x69, 0x6e]);
    await m.publishAsync(`${mqttNs}/a/b`, bytes, { qos: 0 });
    const binary = await events.next(WAIT_MS, 'event for the binary MQTT payload');
    assert.ok(sameBytes(binary.args[0], bytes), `a non-JSON payload arrives as bytes: ${JSON.stringify(binary.args)}`);
    assert.ok(binary.details.publication > json.details.publication, 'ids increase across messages');
  });

  await step('a WAMP wildcard subscription sees MQTT topics with details.topic', async () => {
    const events = new Inbox();
    await w.session.subscribe(`${wampNs}.room..temp`, (args, kwargs, details) => events.push({ args, details }),
      { match: 'wildcard' });
    await m.publishAsync(`${mqttNs}/room/kitchen/hum`, '1', { qos: 1 });
    await m.publishAsync(`${mqttNs}/room/kitchen/temp`, '2', { qos: 1 });
    const got = await events.next(WAIT_MS, 'wildcard event');
    assert.deepEqual(got.args, [2]);
    assert.equal(got.details.topic, `${wampNs}.room.kitchen.temp`);
  });

  await step('WAMP publications reach an MQTT subscriber as JSON', async () => {
    await m.subscribeAsync(`${mqttNs}/w2m/#`, { qos: 1 });
    await w.session.publish(`${wampNs}.w2m.one`, ['hi'], {}, { acknowledge: true });
    await w.session.publish(`${wampNs}.w2m.many`, [1, 2], { k: true }, { acknowledge: true });
    const one = await m.inbox.next(WAIT_MS, 'MQTT message for w2m.one');
    assert.equal(one.topic, `${mqttNs}/w2m/one`);
    assert.equal(one.payload.toString(), '"hi"');
    const many = await m.inbox.next(WAIT_MS, 'MQTT message for w2m.many');
    assert.equal(many.topic, `${mqttNs}/w2m/many`);
    assert.deepEqual(JSON.parse(many.payload.toString()), { args: [1, 2], kwargs: { k: true } });
  });

  await step('an MQTT retained message is what WAMP get_retained replays', async () => {
    await m.publishAsync(`${mqttNs}/state`, JSON.stringify({ on: true }), { qos: 1, retain: true });
    const events = new Inbox();
    await w.session.subscribe(`${wampNs}.state`, (args, kwargs, details) => events.push({ args, details }),
      { get_retained: true });
    const replay = await events.next(WAIT_MS, 'retained replay');
    assert.deepEqual(replay.args, [{ on: true }]);
    assert.equal(replay.details.retained, true, 'EVENT.Details.retained');
    await m.publishAsync(`${mqttNs}/state`, '', { qos: 1, retain: true });
  });

  await step('disconnect', async () => {
    await leave(w);
    await within(WAIT_MS, 'MQTT end', m.endAsync());
  });
});
