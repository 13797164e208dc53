'use strict';
// Watchlist events with real pusher-js: `pusher.user.watchlist.bind('online'
// | 'offline', …)` fires for the users in the signed-in user's watchlist
// (user_data.watchlist, signed by the pusher SDK's authenticateUser).

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const { startServer, waitUntil } = require('./lib/harness');

describe('watchlist events', { timeout: 30000 }, () => {
  let server;

  before(async () => {
    server = await startServer({ SOCKUDO_DEFAULT_APP_ENABLE_WATCHLIST_EVENTS: 'true' });
  });
  afterEach(() => server && server.disconnectClients());
  after(async () => server && server.stop());

  /** A connected client signed in as `id` watching `watchlist`, recording its watchlist events. */
  async function signedIn(id, watchlist = []) {
    const client = await server.connectedClient({ user: { id, user_info: {}, watchlist } });
    const seen = [];
    client.user.watchlist.bind('online', (e) => seen.push(['online', [...e.user_ids].sort()]));
    client.user.watchlist.bind('offline', (e) => seen.push(['offline', [...e.user_ids].sort()]));
    client.signin();
    await client.user.signinDonePromise;
    return { client, seen };
  }

  it('online right after sign-in, then arrivals and departures of watched users', async () => {
    const bob = await signedIn('bob');
    const ada = await signedIn('ada', ['bob', 'carl']);
    await waitUntil(() => ada.seen.length === 1, 'the initial online list');
    assert.deepEqual(ada.seen, [['online', ['bob']]]);

    const carl = await signedIn('carl');
    await waitUntil(() => ada.seen.length === 2, 'carl online');
    assert.deepEqual(ada.seen[1], ['online', ['carl']]);

    bob.client.disconnect();
    await waitUntil(() => ada.seen.length === 3, 'bob offline');
    assert.deepEqual(ada.seen[2], ['offline', ['bob']]);
    // Nobody watches ada or carl here: they hear nothing.
    assert.deepEqual(carl.seen, []);
  });
});
