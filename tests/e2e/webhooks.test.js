'use strict';
// Webhooks checked by the `pusher` server SDK's own validator: a real HTTP
// receiver gets what pusher-js activity causes, and `pusher.webhook()`
// accepts the signature and reads every event type — as a Node backend
// (or Laravel, with the same algorithm in pusher-php-server) would.

const http = require('node:http');
const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const { PusherServer, startServer, subscribe, unique, waitEvent, waitUntil } = require('./lib/harness');

/** An HTTP receiver on a free loopback port that keeps every request. */
function startReceiver() {
  const requests = [];
  const srv = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      requests.push({ headers: req.headers, rawBody: Buffer.concat(chunks).toString('utf8') });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
    });
  });
  return new Promise((resolve) => {
    srv.listen(0, '127.0.0.1', () => {
      resolve({
        url: `http://127.0.0.1:${srv.address().port}/pusher/webhook`,
        requests,
        close: () => new Promise((r) => srv.close(r)),
      });
    });
  });
}

describe('webhooks, validated by the pusher SDK', { timeout: 30000 }, () => {
  let server;
  let receiver;

  before(async () => {
    receiver = await startReceiver();
    const hooks = [
      {
        url: receiver.url,
        event_types: [
          'channel_occupied',
          'channel_vacated',
          'member_added',
          'member_removed',
          'client_event',
          'cache_miss',
          'subscription_count',
        ],
      },
    ];
    server = await startServer({
      SOCKUDO_DEFAULT_APP_WEBHOOKS: JSON.stringify(hooks),
      WEBHOOK_LEAVE_GRACE_MS: '0',
    });
  });
  afterEach(() => server && server.disconnectClients());
  after(async () => {
    if (server) await server.stop();
    if (receiver) await receiver.close();
  });

  /** Every event of every request, each request checked by the SDK. */
  function events(sdk) {
    return receiver.requests.flatMap((r) => {
      const hook = sdk.webhook(r);
      assert.ok(hook.isValid(), `signature refused for ${r.rawBody}`);
      assert.ok(hook.getTime() instanceof Date);
      return hook.getEvents();
    });
  }

  it('every event type arrives signed, in Pusher\'s shape', async () => {
    const sdk = server.sdk();
    const presence = unique('presence-hook-');
    const priv = unique('private-hook-');
    const cache = unique('cache-hook-');

    const ada = await server.connectedClient({ presence: { user_id: 'ada', user_info: { n: 1 } } });
    const bob = await server.connectedClient({ presence: { user_id: 'bob', user_info: { n: 2 } } });
    await subscribe(ada, presence);
    const chAda = await subscribe(ada, priv);
    const chBob = await subscribe(bob, priv);
    const typed = waitEvent(chBob, 'client-typing');
    chAda.trigger('client-typing', { who: 'ada' });
    await typed;
    let missed;
    await subscribe(ada, cache, { beforeSubscribe: (ch) => (missed = waitEvent(ch, 'pusher:cache_miss')) });
    await missed;
    ada.unsubscribe(presence);

    const find = (name, channel) => events(sdk).filter((e) => e.name === name && e.channel === channel);
    await waitUntil(
      () =>
        find('channel_vacated', presence).length === 1 &&
        find('client_event', priv).length === 1 &&
        find('cache_miss', cache).length === 1 &&
        find('subscription_count', priv).some((e) => e.subscription_count === 2),
      'webhook events',
      5000,
    );
    assert.deepEqual(find('member_added', presence), [{ name: 'member_added', channel: presence, user_id: 'ada' }]);
    assert.deepEqual(find('member_removed', presence), [{ name: 'member_removed', channel: presence, user_id: 'ada' }]);
    assert.deepEqual(find('channel_occupied', presence), [{ name: 'channel_occupied', channel: presence }]);
    const [client] = find('client_event', priv);
    assert.equal(client.event, 'client-typing');
    assert.deepEqual(JSON.parse(client.data), { who: 'ada' });
    assert.equal(client.socket_id, ada.connection.socket_id);

    // The validator is real: another secret refuses the same requests.
    const wrong = new PusherServer({ appId: server.app.id, key: server.app.key, secret: 'not-the-secret' });
    assert.ok(receiver.requests.length > 0);
    for (const r of receiver.requests) assert.equal(wrong.webhook(r).isValid(), false);
  });
});
