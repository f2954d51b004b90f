// autobahn-js authentication against a router started with the users of
// tests/interop/test_js_clients.py (AUTH_CONFIG: anonymous off; joe/s3cret and the salted
// salty/pepper in role backend, which may use com.allowed.*):
//
//   node tests/js/autobahn_auth.js --url ws://127.0.0.1:PORT/ws --serializer json|msgpack|cbor
//
// Ticket, WAMP-CRA, salted WAMP-CRA and cryptosign joins (authid/authrole/authmethod in WELCOME), wrong
// ticket, wrong CRA secret, unknown user and anonymous are refused with the expected ABORT
// reason, and the role's permissions apply to the authenticated session.

import { createRequire } from 'node:module';
import { assert, main, option, rejects, step, unique } from './lib.js';
import { autobahn, JoinFailed, leave, open } from './autobahn_session.js';

const require = createRequire(import.meta.url);
const url = option('url');
const serializerName = option('serializer', 'json');
const WAIT_MS = 5000;

/** onchallenge for ticket and wampcra (salted when the CHALLENGE carries a salt). */
function answer(secret, seen) {
  return (session, method, extra) => {
    seen.push({ method, extra });
    if (method === 'ticket') {
      return secret;
    }
    if (method === 'wampcra') {
      assert.equal(typeof extra.challenge, 'string', 'CHALLENGE.extra.challenge is a string');
      const key = extra.salt
        ? autobahn.auth_cra.derive_key(secret, extra.salt, extra.iterations, extra.keylen)
        : secret;
      return autobahn.auth_cra.sign(key, extra.challenge);
    }
    throw new Error(`unexpected auth method ${method}`);
  };
}

function login(authmethods, authid, secret, seen = []) {
  return open(url, serializerName, { authmethods, authid, onchallenge: answer(secret, seen) });
}

async function refused(what, promise) {
  const error = await rejects(WAIT_MS * 2, what, promise);
  assert.ok(error instanceof JoinFailed, `${what}: JoinFailed expected, got ${error && error.stack}`);
  return error.reason;
}

main(async () => {
  await step(`ticket (${serializerName})`, async () => {
    const seen = [];
    const s = await login(['ticket'], 'joe', 's3cret', seen);
    assert.deepEqual(seen.map((c) => c.method), ['ticket']);
    assert.equal(s.details.authid, 'joe');
    assert.equal(s.details.authrole, 'backend');
    assert.equal(s.details.authmethod, 'ticket');
    await leave(s);
  });

  await step('wampcra', async () => {
    const seen = [];
    const s = await login(['wampcra'], 'joe', 's3cret', seen);
    assert.deepEqual(seen.map((c) => c.method), ['wampcra']);
    const fields = JSON.parse(seen[0].extra.challenge);
    assert.equal(fields.authid, 'joe', 'challenge names the authid');
    assert.equal(fields.authmethod, 'wampcra');
    assert.equal(s.details.authid, 'joe');
    assert.equal(s.details.authrole, 'backend');
    assert.equal(s.details.authmethod, 'wampcra');
    assert.equal(fields.session, s.session.id, 'challenge names the session id WELCOME gives');
    await leave(s);
  });

  await step('wampcra salted (PBKDF2 key derivation)', async () => {
    const seen = [];
    const s = await login(['wampcra'], 'salty', 'pepper', seen);
    const { extra } = seen[0];
    assert.deepEqual([extra.salt, extra.iterations, extra.keylen], ['salt123', 100, 32]);
    assert.equal(s.details.authid, 'salty');
    assert.equal(s.details.authmethod, 'wampcra');
    await leave(s);
  });

  await step('client offers several methods; the router picks one the user has', async () => {
    const seen = [];
    const s = await login(['wampcra', 'ticket'], 'joe', 's3cret', seen);
    assert.equal(seen.length, 1);
    assert.ok(['wampcra', 'ticket'].includes(s.details.authmethod));
    assert.equal(s.details.authmethod, seen[0].method);
    await leave(s);
  });

  await step('a bad password is refused (ticket and wampcra)', async () => {
    assert.equal(await refused('wrong ticket', login(['ticket'], 'joe', 'wrong')), 'wamp.error.not_authorized');
    assert.equal(await refused('wrong wampcra secret', login(['wampcra'], 'joe', 's3cre')), 'wamp.error.not_authorized');
    assert.equal(await refused('wrong salted secret', login(['wampcra'], 'salty', 'salt')), 'wamp.error.not_authorized');
    assert.equal(await refused('unknown user', login(['ticket'], 'nobody', 's3cret')), 'wamp.error.not_authorized');
  });

  await step('cryptosign (Ed25519, tweetnacl): by authid, by public key, wrong key refused', async () => {
    const nacl = require('tweetnacl'); // autobahn-js's own Ed25519 dependency
    const key = nacl.sign.keyPair.fromSeed(Uint8Array.from({ length: 32 }, (_, i) => i));
    const pubkey = autobahn.auth_cryptosign.public_key(key);
    const seen = [];
    const sign = (session, method, extra) => {
      seen.push(method);
      assert.equal(method, 'cryptosign');
      assert.match(extra.challenge, /^[0-9a-f]{64}$/, 'a 32-byte hex challenge');
      return autobahn.auth_cryptosign.sign_challenge(key, extra);
    };
    const s = await open(url, serializerName, { authmethods: ['cryptosign'], authid: 'signer',
      authextra: { pubkey }, onchallenge: sign });
    assert.deepEqual(seen, ['cryptosign']);
    assert.equal(s.details.authid, 'signer');
    assert.equal(s.details.authmethod, 'cryptosign');
    await leave(s);
    const byKey = await open(url, serializerName, { authmethods: ['cryptosign'], authextra: { pubkey },
      onchallenge: sign });
    assert.equal(byKey.details.authid, 'signer');
    await leave(byKey);
    const other = nacl.sign.keyPair.fromSeed(new Uint8Array(32));
    const wrongSigner = (session, method, extra) => autobahn.auth_cryptosign.sign_challenge(other, extra);
    assert.equal(await refused('signature by another key', open(url, serializerName, {
      authmethods: ['cryptosign'], authid: 'signer', authextra: { pubkey }, onchallenge: wrongSigner })),
    'wamp.error.not_authorized');
  });

  await step('anonymous is refused when the config turns it off', async () => {
    assert.equal(await refused('anonymous join', open(url, serializerName)), 'wamp.error.no_auth_method');
  });

  await step('the role permissions apply', async () => {
    const s = await login(['ticket'], 'joe', 's3cret');
    const ns = unique('com.allowed.js');
    const publication = await s.session.publish(`${ns}.topic`, ['ok'], {}, { acknowledge: true });
    assert.ok(Number.isInteger(publication.id));
    const denied = await rejects(WAIT_MS, 'publish outside the role', s.session.publish('com.other.topic', [], {}, { acknowledge: true }));
    assert.equal(denied.error, 'wamp.error.not_authorized', JSON.stringify(denied));
    const deniedCall = await rejects(WAIT_MS, 'register outside the role', s.session.register('com.other.proc', () => 1));
    assert.equal(deniedCall.error, 'wamp.error.not_authorized', JSON.stringify(deniedCall));
    assert.equal(s.closed, null, 'a denied action must not end the session');
    await leave(s);
  });
});
