'use strict';
// pusher-js (v8) + pusher (server SDK v5) against a real switchyard:
// public / private / forged auth / encrypted / cache channels, client events,
// socket_id exclusion.

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const {
  startServer,
  subscribe,
  unique,
  waitEvent,
  waitUntil,
  record,
  sleep,
  errorCode,
  PusherClient,
} = require('./lib/harness');

describe('channels with pusher-js and the pusher SDK', { timeout: 30000 }, () => {
  let server;
  let sdk;

  before(async () => {
    server = await startServer();
    sdk = server.sdk();
  });
  afterEach(() => server && server.disconnectClients());
  after(async () => server && server.stop());

  it('public channel receives pusher.trigger', async () => {
    const client = await server.connectedClient();
    assert.match(client.connection.socket_id, /^\d+\.\d+$/);
    const name = unique('e2e-public-');
    const channel = await subscribe(client, name);
    const got = waitEvent(channel, 'order-shipped');
    await sdk.trigger(name, 'order-shipped', { id: 7, text: 'caf\u00e9 \u2713' });
    const { data } = await got;
    assert.deepEqual(data, { id: 7, text: 'caf\u00e9 \u2713' });
  });

  it('private channel (authorized by the SDK) receives pusher.trigger', async () => {
    const client = await server.connectedClient();
    const name = unique('private-e2e-');
    const channel = await subscribe(client, name);
    const got = waitEvent(channel, 'paid');
    await sdk.trigger(name, 'paid', { amount: 42 });
    assert.deepEqual((await got).data, { amount: 42 });
  });

  it('forged channel auth is refused with pusher:subscription_error and the connection stays usable', async () => {
    const forger = server.sdk({ secret: 'not-the-secret' });
    const client = await server.connectedClient({ backend: forger });
    const errors = record(client.connection, 'error');
    const name = unique('private-forged-');
    const channel = client.subscribe(name);
    const events = record(channel, 'secret');
    const { data: err } = await waitEvent(channel, 'pusher:subscription_error');
    assert.equal(err.type, 'AuthError');
    assert.equal(err.status, 401);
    assert.equal(channel.subscribed, false);

    // Nothing published on the refused channel reaches this socket.
    await sdk.trigger(name, 'secret', { leaked: true });

    // Same socket is still connected and works for a public channel.
    assert.equal(client.connection.state, 'connected');
    const pub = await subscribe(client, unique('e2e-after-forged-'));
    const got = waitEvent(pub, 'ping-back');
    await sdk.trigger(pub.name, 'ping-back', { ok: true });
    assert.deepEqual((await got).data, { ok: true });
    assert.equal(client.connection.state, 'connected');
    assert.deepEqual(events, [], 'refused channel must not deliver events');
    // A channel-level failure is not a connection error.
    assert.deepEqual(
      errors.filter((e) => errorCode(e.data) >= 4000 && errorCode(e.data) < 4300),
      [],
    );
  });

  it('presence auth signed for another socket is refused', async () => {
    const a = await server.connectedClient();
    // Sign for a's socket id but present it from b's socket.
    const b = await server.connectedClient({
      pusherOptions: {
        channelAuthorization: {
          customHandler: ({ channelName }, cb) =>
            cb(null, sdk.authorizeChannel(a.connection.socket_id, channelName, { user_id: 'mallory' })),
        },
      },
    });
    const channel = b.subscribe(unique('presence-stolen-'));
    const { data: err } = await waitEvent(channel, 'pusher:subscription_error');
    assert.equal(err.type, 'AuthError');
    assert.equal(err.status, 401);
    assert.equal(b.connection.state, 'connected');
  });

  it('encrypted channel: SDK encrypts, server relays ciphertext, pusher-js decrypts', async () => {
    const client = await server.connectedClient();
    const name = unique('private-encrypted-e2e-');
    const raw = [];
    client.connection.bind('message', (ev) => {
      if (ev.channel === name && ev.event === 'secret-msg') raw.push(ev.data);
    });
    const channel = await subscribe(client, name);
    const got = waitEvent(channel, 'secret-msg');
    await sdk.trigger(name, 'secret-msg', { text: 'top secret', n: 1 });
    assert.deepEqual((await got).data, { text: 'top secret', n: 1 });
    // What crossed the wire is the SDK's {nonce, ciphertext} envelope.
    assert.equal(raw.length, 1);
    assert.equal(typeof raw[0].nonce, 'string');
    assert.equal(typeof raw[0].ciphertext, 'string');
    assert.ok(!JSON.stringify(raw[0]).includes('top secret'));
  });

  it('cache channel: the last event triggered before subscribing is delivered on subscribe', async () => {
    const name = unique('cache-e2e-');
    await sdk.trigger(name, 'price', { v: 1 });
    await sdk.trigger(name, 'price', { v: 2 });
    const client = await server.connectedClient();
    let prices;
    let misses;
    const channel = await subscribe(client, name, {
      beforeSubscribe: (ch) => {
        prices = record(ch, 'price');
        misses = record(ch, 'pusher:cache_miss');
      },
    });
    await waitUntil(() => prices.length >= 1, 'cached event');
    // Live events keep flowing after the cached one. The live v3 is also the
    // barrier: one channel's events arrive in order, so anything else replayed
    // on subscribe (v1, a second copy, a cache_miss) is in before it.
    await sdk.trigger(name, 'price', { v: 3 });
    await waitUntil(() => prices.some((p) => p.data.v === 3), 'live event after cache');
    assert.deepEqual(
      prices.map((p) => p.data),
      [{ v: 2 }, { v: 3 }],
    );
    assert.equal(misses.length, 0);
    assert.equal(channel.subscribed, true);
  });

  it('private-cache channel replays the cached event too', async () => {
    const name = unique('private-cache-e2e-');
    await sdk.trigger(name, 'state', { s: 'ready' });
    const client = await server.connectedClient();
    let states;
    await subscribe(client, name, { beforeSubscribe: (ch) => (states = record(ch, 'state')) });
    await waitUntil(() => states.length === 1, 'cached event on private-cache');
    assert.deepEqual(states[0].data, { s: 'ready' });
  });

  it('private-encrypted-cache channel replays the cached ciphertext and pusher-js decrypts it', async () => {
    const name = unique('private-encrypted-cache-e2e-');
    await sdk.trigger(name, 'doc', { body: 'cached secret' });
    const client = await server.connectedClient();
    let docs;
    await subscribe(client, name, { beforeSubscribe: (ch) => (docs = record(ch, 'doc')) });
    await waitUntil(() => docs.length === 1, 'cached encrypted event');
    assert.deepEqual(docs[0].data, { body: 'cached secret' });
  });

  it('invalid channel name gets pusher:subscription_error InvalidChannel/400, socket stays open', async () => {
    const client = await server.connectedClient();
    const bad = client.subscribe('e2e bad name!');
    const { data } = await waitEvent(bad, 'pusher:subscription_error');
    assert.equal(data.type, 'InvalidChannel');
    assert.equal(data.status, 400);
    assert.equal(client.connection.state, 'connected');
    await subscribe(client, unique('e2e-after-invalid-'));
  });

  it('cache channel with nothing cached sends pusher:cache_miss', async () => {
    const client = await server.connectedClient();
    const name = unique('cache-empty-');
    let misses;
    await subscribe(client, name, { beforeSubscribe: (ch) => (misses = record(ch, 'pusher:cache_miss')) });
    await waitUntil(() => misses.length === 1, 'pusher:cache_miss');
    // Barrier: a live event on the same channel arrives after any second
    // cache_miss would have.
    const marker = waitEvent(client.channel(name), 'marker');
    await sdk.trigger(name, 'marker', {});
    await marker;
    assert.equal(misses.length, 1);
  });

  it('client events reach the other subscriber and are not echoed to the sender', async () => {
    const a = await server.connectedClient();
    const b = await server.connectedClient();
    const name = unique('private-chat-');
    const chA = await subscribe(a, name);
    const chB = await subscribe(b, name);
    const echoed = record(chA, 'client-typing');
    const got = waitEvent(chB, 'client-typing');
    assert.equal(chA.trigger('client-typing', { who: 'a', text: 'hi' }), true);
    const { data } = await got;
    assert.deepEqual(data, { who: 'a', text: 'hi' });
    // Barrier: b answers on the same channel only after it got a's event, so
    // an echo of a's event to a would reach a before b's reply does.
    const back = waitEvent(chA, 'client-reply');
    chB.trigger('client-reply', { who: 'b' });
    assert.deepEqual((await back).data, { who: 'b' });
    assert.deepEqual(echoed, [], 'sender must not receive its own client event');
  });

  it('client event on a public channel is refused with pusher:error 4301 and not delivered', async () => {
    const a = await server.connectedClient();
    const b = await server.connectedClient();
    const name = unique('e2e-public-client-');
    const chA = await subscribe(a, name);
    const chB = await subscribe(b, name);
    const delivered = record(chB, 'client-nope');
    const err = waitEvent(a.connection, 'error');
    chA.trigger('client-nope', { x: 1 });
    const { data } = await err;
    assert.equal(data.type, 'PusherError');
    assert.equal(errorCode(data), 4301, JSON.stringify(data));
    // Barrier: an event published after the refusal reaches b after anything
    // the refused one could have become (one channel, delivered in order).
    const marker = waitEvent(chB, 'marker');
    await sdk.trigger(name, 'marker', {});
    await marker;
    assert.deepEqual(delivered, []);
    assert.equal(a.connection.state, 'connected');
  });

  it('trigger with socket_id excludes exactly that connection', async () => {
    const a = await server.connectedClient();
    const b = await server.connectedClient();
    const name = unique('e2e-exclude-');
    const chA = await subscribe(a, name);
    const chB = await subscribe(b, name);
    const gotA = record(chA, 'news');
    const gotB = waitEvent(chB, 'news');
    await sdk.trigger(name, 'news', { n: 1 }, { socket_id: a.connection.socket_id });
    assert.deepEqual((await gotB).data, { n: 1 });
    // A later event without exclusion reaches a, proving ordering: the
    // excluded one would have arrived before it.
    const later = waitEvent(chA, 'news2');
    await sdk.trigger(name, 'news2', { n: 2 });
    await later;
    assert.deepEqual(gotA, []);
  });

  it('unsubscribe stops delivery', async () => {
    const client = await server.connectedClient();
    const name = unique('e2e-unsub-');
    const channel = await subscribe(client, name);
    const seen = record(channel, 'tick');
    client.unsubscribe(name);
    // Give the unsubscribe frame a moment; then a public trigger on a
    // fresh channel acts as an ordering barrier.
    const barrier = await subscribe(client, unique('e2e-barrier-'));
    await sdk.trigger(name, 'tick', { t: 1 });
    const b = waitEvent(barrier, 'done');
    await sdk.trigger(barrier.name, 'done', {});
    await b;
    assert.deepEqual(seen, []);
  });

  it('unknown app key: refused with 4001 and pusher-js does not reconnect', async () => {
    // pusher:error 4001 during the handshake then close 4001: pusher-js maps
    // 4000-4099 to "refused", emits an error and settles in 'disconnected'.
    const bad = new PusherClient('no-such-key', {
      cluster: 'mt1',
      wsHost: '127.0.0.1',
      wsPort: server.port,
      forceTLS: false,
      enabledTransports: ['ws'],
    });
    const states = [];
    bad.connection.bind('state_change', ({ current }) => states.push(current));
    try {
      const { data } = await waitEvent(bad.connection, 'error', 'unknown key');
      assert.equal(errorCode(data), 4001, JSON.stringify(data));
      await waitUntil(() => bad.connection.state === 'disconnected', 'refused connection to settle');
      // Time is the subject here ("does not reconnect"): watch longer than
      // pusher-js's longest automatic retry delay (the 1 s 41xx back-off)
      // for a new attempt, which would show as a state change.
      const settled = states.slice();
      await sleep(1500);
      assert.equal(bad.connection.state, 'disconnected');
      assert.deepEqual(states, settled, 'no state change (no new attempt) after the refusal');
      assert.ok(!states.includes('connected'), `states: ${states}`);
    } finally {
      bad.disconnect();
    }
  });
});
