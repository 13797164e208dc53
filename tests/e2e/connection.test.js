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

describe('connection behaviour', { timeout: 30000 }, () => {
  it('heartbeat: pusher-js answers server pings and the socket survives ACTIVITY_TIMEOUT + PONG_TIMEOUT', async () => {
    const s = await server({ ACTIVITY_TIMEOUT: '1', PONG_TIMEOUT: '1' });
    // pongTimeout 500 ms: pusher-js drops the socket if the server does not
    // answer its pusher:ping promptly.
    const client = await s.connectedClient({ pusherOptions: { pongTimeout: 500 } });
    const socketId = client.connection.socket_id;
    // pusher-js takes min(server activity_timeout, its own) as its idle interval.
    assert.equal(client.connection.activityTimeout, 1000);
    // Whichever side's 1 s idle timer fires first pings: the server's
    // pusher:ping (pusher-js answers pusher:pong) or pusher-js's pusher:ping
    // (the server answers pusher:pong). Either way the socket must survive.
    const pings = record(client.connection, 'message');
    const states = record(client.connection, 'state_change');
    await sleep(3500);
    assert.ok(
      pings.some((m) => m.data.event === 'pusher:ping' || m.data.event === 'pusher:pong'),
      'expected heartbeat traffic',
    );
    assert.equal(client.connection.state, 'connected');
    assert.equal(client.connection.socket_id, socketId, 'socket must not have been replaced');
    assert.deepEqual(states, []);
    const ch = await subscribe(client, unique('hb-'));
    const got = waitEvent(ch, 'alive');
    await s.sdk().trigger(ch.name, 'alive', {});
    await got;
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
    await sleep(150);
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
    await sleep(500);
    assert.equal(good.connection.state, 'connected');
    assert.equal(good.user.user_data && good.user.user_data.id, id);
    s.disconnectClients();
  });
});
