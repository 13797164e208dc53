'use strict';
// Connection-level behaviour as pusher-js sees it, each with its own server
// configuration: heartbeats, connection quota, client events disabled,
// required user authentication.

const { describe, it, after } = require('node:test');
const assert = require('node:assert/strict');
const {
  startServer,
  subscribe,
  unique,
  waitEvent,
  waitUntil,
  waitState,
  record,
  sleep,
  errorCode,
  json,
} = require('./lib/harness');

const servers = [];
async function server(env) {
  const s = await startServer(env);
  servers.push(s);
  return s;
}
after(async () => {
  await Promise.all(servers.map((s) => s.stop()));
});

describe('connection behaviour', { timeout: 60000 }, () => {
  it('heartbeat: the server pings an idle pusher-js, pusher-js answers, and the socket survives PONG_TIMEOUT', async () => {
    const s = await server({ ACTIVITY_TIMEOUT: '1', PONG_TIMEOUT: '2' });
    const client = await s.connectedClient();
    const socketId = client.connection.socket_id;
    // pusher-js takes min(server activity_timeout, its own) as its idle interval.
    assert.equal(client.connection.activityTimeout, 1000);
    const ch = await subscribe(client, unique('hb-'));
    // Pings on this socket only: a 4201 would make pusher-js reconnect.
    const serverPings = [];
    client.connection.bind('message', (m) => {
      if (m.event === 'pusher:ping' && client.connection.socket_id === socketId) serverPings.push(m);
    });
    const states = record(client.connection, 'state_change');
    const errors = record(client.connection, 'error');
    // pusher-js restarts its own 1 s idle timer on every frame it receives,
    // so with an event every 200 ms it never pings. It sends nothing, so the
    // server sees it idle and pings it. After a ping the server waits for an
    // answer (PONG_TIMEOUT) and pings again only once it got one (otherwise
    // it closes with 4201): a second ping on the same socket proves
    // pusher-js answered the first.
    const sdk = s.sdk();
    let pumping = true;
    const pump = (async () => {
      while (pumping) {
        await sdk.trigger(ch.name, 'tick', {});
        await sleep(200);
      }
    })();
    try {
      await waitUntil(() => {
        assert.deepEqual(errors, [], 'no 4201 (or any error) while waiting');
        return serverPings.length >= 2;
      }, 'two pusher:ping from the server on the same socket', 15000);
    } finally {
      pumping = false;
      await pump;
    }
    assert.equal(client.connection.state, 'connected');
    assert.equal(client.connection.socket_id, socketId, 'socket must not have been replaced');
    assert.deepEqual(states, []);
    s.disconnectClients();
  });

  it('heartbeat: the server answers pusher-js pings (pusher:pong), so pusher-js keeps its socket', async () => {
    // The server would ping only after 120 s; pusher-js pings after 1 s idle.
    const s = await server({});
    const client = await s.connectedClient({ pusherOptions: { activityTimeout: 1000 } });
    const socketId = client.connection.socket_id;
    assert.equal(client.connection.activityTimeout, 1000);
    const pongs = [];
    client.connection.bind('message', (m) => {
      if (m.event === 'pusher:pong') pongs.push(m);
    });
    const states = record(client.connection, 'state_change');
    // The server never sends pusher:pong unasked: each is the answer to a
    // pusher:ping, and pusher-js pings again only after that answer (without
    // one it drops the socket after its pongTimeout and reconnects).
    await waitUntil(() => {
      assert.deepEqual(states, [], 'pusher-js kept its socket while waiting');
      return pongs.length >= 2;
    }, 'two pusher:pong from the server', 15000);
    assert.equal(client.connection.state, 'connected');
    assert.equal(client.connection.socket_id, socketId, 'socket must not have been replaced');
    assert.deepEqual(states, []);
    s.disconnectClients();
  });

  it('over max_connections: pusher:error 4004, pusher-js gives up (disconnected)', async () => {
    const s = await server({ SOCKUDO_DEFAULT_APP_MAX_CONNECTIONS: '2' });
    await s.connectedClient();
    await s.connectedClient();
    const third = s.client();
    const { data } = await waitEvent(third.connection, 'error', 'third connection');
    assert.equal(errorCode(data), 4004, JSON.stringify(data));
    await waitState(third, 'disconnected');
    s.disconnectClients();
    // Quota is released when sockets go away.
    await waitUntil(async () => {
      const c = s.client();
      try {
        await waitState(c, 'connected', 1000);
        return true;
      } catch (_) {
        return false;
      } finally {
        c.disconnect();
      }
    }, 'a slot to free up');
  });

  it('slow consumer 4100: pusher-js reports it, reconnects only after its 1 s back-off, and resubscribes', async () => {
    // pusher-js 8.x maps close codes in Protocol.getCloseAction
    // (node_modules/pusher-js/src/core/connection/protocol/protocol.ts):
    // 4000 tls_only, 4001-4099 'refused' (disconnect, no reconnect),
    // 4100-4199 'backoff', 4200-4299 'retry'. ConnectionManager's error
    // callbacks (src/core/connection/connection_manager.ts,
    // buildErrorCallbacks) turn 'backoff' into retryIn(1000), which emits
    // 'connecting_in' (1 s) and calls connect() - the move to 'connecting' -
    // when that 1000 ms timer fires; 'retry' is retryIn(0). Contrast:
    // shutdown.test.js "4200: pusher-js reconnects at once…" (< 800 ms).
    //
    // README "Slow consumers": one frame larger than the whole
    // WEBSOCKET_MAX_BYTES closes the socket with pusher:error + close 4100.
    const s = await server({ WEBSOCKET_MAX_BYTES: '2048' });
    const sdk = s.sdk();
    const client = await s.connectedClient();
    const first = client.connection.socket_id;
    const name = unique('slow-');
    const ch = await subscribe(client, name);
    const states = [];
    client.connection.bind('state_change', ({ current }) => states.push({ current, at: Date.now() }));
    const connectingIn = record(client.connection, 'connecting_in');
    const errors = [];
    client.connection.bind('error', (e) => errors.push({ code: errorCode(e), at: Date.now() }));
    const big = record(ch, 'big');

    await sdk.trigger(name, 'big', { blob: 'x'.repeat(4096) });
    await waitUntil(() => errors.length > 0, 'the 4100 error');
    const closedAt = errors[0].at;
    assert.equal(errors[0].code, 4100, JSON.stringify(errors));

    await waitUntil(
      () => client.connection.state === 'connected' && client.connection.socket_id !== first,
      'pusher-js to reconnect after the back-off',
      10000,
    );
    // It stayed 'connected' (no socket) through the back-off, then went
    // straight to connecting and connected: never unavailable/disconnected.
    assert.deepEqual(
      states.map((x) => x.current),
      ['connecting', 'connected'],
    );
    // The timer starts at the close, which comes after the pusher:error
    // frame we timed: so the wait is at least ~1000 ms minus timer jitter.
    const waited = states[0].at - closedAt;
    assert.ok(waited >= 900, `pusher-js began reconnecting ${waited} ms after the 4100 (back-off is 1000 ms)`);
    // connecting_in reports the delay in seconds: the 41xx back-off, 1 s.
    assert.ok(connectingIn.length > 0 && connectingIn.every((c) => c.data === 1), JSON.stringify(connectingIn));
    // Only the 4100 (frame and close) was reported; the oversized event never arrived.
    assert.ok(errors.every((e) => e.code === 4100), JSON.stringify(errors));
    assert.deepEqual(big, []);

    // The new socket resubscribed the channel and gets events that fit.
    await waitUntil(async () => {
      const info = await json(sdk.get({ path: `/channels/${name}`, params: { info: 'subscription_count' } }));
      return info.subscription_count === 1;
    }, 'the channel to be resubscribed');
    const small = waitEvent(ch, 'small');
    await sdk.trigger(name, 'small', { ok: true });
    assert.deepEqual((await small).data, { ok: true });
    s.disconnectClients();
  });

  it('client events disabled for the app: pusher:error 4301, nothing delivered', async () => {
    const s = await server({ SOCKUDO_DEFAULT_APP_ENABLE_CLIENT_MESSAGES: 'false' });
    const a = await s.connectedClient();
    const b = await s.connectedClient();
    const name = unique('private-noclient-');
    const chA = await subscribe(a, name);
    const chB = await subscribe(b, name);
    const delivered = record(chB, 'client-x');
    const err = waitEvent(a.connection, 'error');
    chA.trigger('client-x', { a: 1 });
    assert.equal(errorCode((await err).data), 4301);
    // Barrier: an event published after the refusal reaches b after anything
    // the refused one could have become (one channel, delivered in order).
    const marker = waitEvent(chB, 'marker');
    await s.sdk().trigger(name, 'marker', {});
    await marker;
    assert.deepEqual(delivered, []);
    assert.equal(a.connection.state, 'connected');
    s.disconnectClients();
  });

  it('user authentication required: unsigned socket is closed 4009 after the timeout, signed-in one stays', async () => {
    const s = await server({
      SOCKUDO_DEFAULT_APP_ENABLE_USER_AUTHENTICATION: 'true',
      USER_AUTHENTICATION_TIMEOUT: '1',
    });
    const id = unique('req-');
    const good = await s.connectedClient({ user: { id } });
    good.signin();
    const lazy = await s.connectedClient();
    const { data } = await waitEvent(lazy.connection, 'error', 'sign-in timeout', 4000);
    assert.equal(errorCode(data), 4009, JSON.stringify(data));
    await waitState(lazy, 'disconnected');
    // good connected before lazy, so its deadline has passed too: a round
    // trip now proves it is still served.
    const ch = await subscribe(good, unique('signed-'));
    const got = waitEvent(ch, 'still-here');
    await s.sdk().trigger(ch.name, 'still-here', {});
    await got;
    assert.equal(good.connection.state, 'connected');
    assert.equal(good.user.user_data && good.user.user_data.id, id);
    s.disconnectClients();
  });
});
