'use strict';
// User authentication with pusher-js's signin() + the SDK's
// authenticateUser(), sendToUser() and terminateUserConnections(), and
// Sockudo's force_reconnect endpoint (through the SDK's signed post()).

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const { startServer, unique, waitEvent, waitUntil, waitState, record, sleep, errorCode } = require('./lib/harness');

/** signin() and wait until pusher-js is subscribed to #server-to-user-<id>. */
async function signedIn(client, id) {
  client.signin();
  await waitUntil(
    () =>
      client.user.user_data &&
      client.user.serverToUserChannel &&
      client.user.serverToUserChannel.subscribed,
    `signin + #server-to-user-${id} subscription`,
  );
  assert.equal(client.user.user_data.id, id);
  assert.equal(client.user.serverToUserChannel.name, `#server-to-user-${id}`);
}

describe('user authentication', { timeout: 30000 }, () => {
  let server;
  let sdk;

  before(async () => {
    server = await startServer();
    sdk = server.sdk();
  });
  afterEach(() => server && server.disconnectClients());
  after(async () => server && server.stop());

  it('signin() succeeds and sendToUser reaches every socket of that user only', async () => {
    const id = unique('u-');
    const tab1 = await server.connectedClient({ user: { id, name: 'Ada' } });
    const tab2 = await server.connectedClient({ user: { id, name: 'Ada' } });
    const strangerId = unique('other-');
    const stranger = await server.connectedClient({ user: { id: strangerId } });
    await Promise.all([signedIn(tab1, id), signedIn(tab2, id), signedIn(stranger, strangerId)]);
    const strangerGot = record(stranger.user, 'notice');

    const got1 = waitEvent(tab1.user, 'notice', 'tab1 sendToUser');
    const got2 = waitEvent(tab2.user, 'notice', 'tab2 sendToUser');
    await sdk.sendToUser(id, 'notice', { text: 'hello user' });
    assert.deepEqual((await got1).data, { text: 'hello user' });
    assert.deepEqual((await got2).data, { text: 'hello user' });
    // Barrier: a later sendToUser to the stranger. The server delivers HTTP
    // publishes in publish order across channels (tests/http_api.rs::
    // events_arrive_in_publish_order_across_channels), so a stray 'notice'
    // would reach the stranger before this marker.
    const marker = waitEvent(stranger.user, 'marker', 'stranger marker');
    await sdk.sendToUser(strangerId, 'marker', {});
    await marker;
    assert.deepEqual(strangerGot, []);
  });

  it('signin_success carries the user_data string back and user_info survives', async () => {
    const id = unique('info-');
    const client = await server.connectedClient({ user: { id, user_info: { role: 'admin' } } });
    const raw = [];
    client.connection.bind('message', (ev) => {
      if (ev.event === 'pusher:signin_success') raw.push(ev.data);
    });
    await signedIn(client, id);
    assert.equal(raw.length, 1);
    assert.deepEqual(JSON.parse(raw[0].user_data), { id, user_info: { role: 'admin' } });
  });

  it('forged signin is refused with pusher:error 4009 and the socket stays open', async () => {
    const id = unique('forged-');
    const client = await server.connectedClient({ user: { id }, backend: server.sdk({ secret: 'wrong' }) });
    const socketId = client.connection.socket_id;
    const states = record(client.connection, 'state_change');
    const err = waitEvent(client.connection, 'error', 'forged signin');
    client.signin();
    const { data } = await err;
    assert.equal(errorCode(data), 4009, JSON.stringify(data));
    // Still usable, on the same socket: the subscription round trip comes
    // after the refusal, so a close that followed it would already have
    // reached pusher-js (and changed its state or socket id).
    const ch = client.subscribe(unique('after-forged-signin-'));
    await waitEvent(ch, 'pusher:subscription_succeeded');
    assert.equal(client.connection.state, 'connected');
    assert.equal(client.connection.socket_id, socketId);
    assert.deepEqual(states, []);
    assert.equal(client.user.user_data, null);
  });

  it('terminateUserConnections disconnects all of that user\'s sockets (4009, no reconnect) and no one else', async () => {
    const id = unique('term-');
    const a = await server.connectedClient({ user: { id } });
    const b = await server.connectedClient({ user: { id } });
    const otherId = unique('keep-');
    const other = await server.connectedClient({ user: { id: otherId } });
    await Promise.all([signedIn(a, id), signedIn(b, id), signedIn(other, otherId)]);

    const errA = waitEvent(a.connection, 'error', 'terminated socket a');
    const statesA = record(a.connection, 'state_change');
    await sdk.terminateUserConnections(id);
    const { data } = await errA;
    assert.equal(errorCode(data), 4009, JSON.stringify(data));
    await waitState(a, 'disconnected');
    await waitState(b, 'disconnected');
    // 4000-4099 is "refused" for pusher-js: it must not come back on its own.
    // Time is the subject here: watch longer than pusher-js's longest
    // automatic retry delay (the 1 s 41xx back-off) for a reconnect; the
    // sendToUser below is the positive marker that delivery works.
    await sleep(1500);
    assert.equal(a.connection.state, 'disconnected');
    assert.equal(b.connection.state, 'disconnected');
    assert.ok(
      !statesA.some((s) => s.data.current === 'connecting'),
      `pusher-js reconnected: ${JSON.stringify(statesA.map((s) => s.data.current))}`,
    );
    assert.equal(other.connection.state, 'connected');
    // The unaffected user still receives.
    const got = waitEvent(other.user, 'still-here');
    await sdk.sendToUser(otherId, 'still-here', { ok: true });
    assert.deepEqual((await got).data, { ok: true });
  });

  it('force_reconnect closes the user\'s sockets with 4200: pusher-js reconnects at once and signs in again', async () => {
    const id = unique('again-');
    const client = await server.connectedClient({ user: { id } });
    const otherId = unique('stay-');
    const other = await server.connectedClient({ user: { id: otherId } });
    await Promise.all([signedIn(client, id), signedIn(other, otherId)]);
    const before = client.connection.socket_id;
    const otherSocket = other.connection.socket_id;

    const err = waitEvent(client.connection, 'error', 'force_reconnect error');
    const res = await sdk.post({ path: `/users/${encodeURIComponent(id)}/force_reconnect`, body: {} });
    assert.equal(res.status, 200);
    const { data } = await err;
    assert.equal(errorCode(data), 4200, JSON.stringify(data));
    // 4200-4299 means "reconnect immediately" to pusher-js.
    await waitUntil(
      () => client.connection.state === 'connected' && client.connection.socket_id !== before,
      'reconnected with a new socket',
    );
    await signedIn(client, id);
    const got = waitEvent(client.user, 'welcome-back', 'sendToUser after reconnect');
    await sdk.sendToUser(id, 'welcome-back', { ok: true });
    assert.deepEqual((await got).data, { ok: true });
    // Nobody else was touched.
    assert.equal(other.connection.state, 'connected');
    assert.equal(other.connection.socket_id, otherSocket);
  });
});
