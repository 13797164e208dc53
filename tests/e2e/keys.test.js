'use strict';
// Credentials made by `openssl rand -base64` contain `/`, `+` and `=`.
// pusher-js puts the key in the WebSocket path unescaped, and the `pusher`
// SDK sends the query string it signed without escaping it, so `+` arrives
// as a space once decoded. Both must work end to end (issue 15).

const { describe, it, after } = require('node:test');
const assert = require('node:assert/strict');
const { startServer, subscribe, unique, waitEvent, json } = require('./lib/harness');

const servers = [];
after(async () => {
  await Promise.all(servers.map((s) => s.stop()));
});

// Every character base64 adds to the alphabet, in both key and secret.
const KEYS = [
  { key: 'b64/Key+with=', secret: 'c2VjcmV0/with+plus==' },
  { key: 'Zm9v+YmFy/YmF6==', secret: 'QUJD/REVG+R0hJ/SktM' },
];

describe('base64 credentials', { timeout: 30000 }, () => {
  for (const creds of KEYS) {
    it(`key ${creds.key}: pusher-js connects and subscribes, the pusher SDK publishes and queries`, async () => {
      const server = await startServer({
        SOCKUDO_DEFAULT_APP_ID: 'b64-app',
        SOCKUDO_DEFAULT_APP_KEY: creds.key,
        SOCKUDO_DEFAULT_APP_SECRET: creds.secret,
      });
      servers.push(server);
      assert.equal(server.app.key, creds.key);
      const sdk = server.sdk();

      const client = await server.connectedClient({ presence: { user_id: 'u1', user_info: { n: 1 } } });
      const priv = unique('private-b64-');
      const room = unique('presence-b64-');
      const channel = await subscribe(client, priv);
      await subscribe(client, room);

      const got = waitEvent(channel, 'shipped', `event on ${priv}`);
      const res = await sdk.trigger(priv, 'shipped', { ok: true });
      assert.equal(res.status, 200);
      assert.deepEqual((await got).data, { ok: true });

      const info = await json(sdk.get({ path: `/channels/${room}`, params: { info: 'user_count' } }));
      assert.equal(info.occupied, true);
      assert.equal(info.user_count, 1);

      const list = await json(
        sdk.get({ path: '/channels', params: { filter_by_prefix: 'presence-', info: 'user_count' } }),
      );
      assert.deepEqual(list.channels[room], { user_count: 1 });
    });
  }
});
