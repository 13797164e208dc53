'use strict';
// Presence channels with pusher-js + the pusher SDK: roster, member_added /
// member_removed, multi-socket users, client events with user_id, and the
// HTTP users / channel endpoints.

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const { startServer, subscribe, unique, waitEvent, waitUntil, record, json, requestError } = require('./lib/harness');

function roster(channel) {
  const out = {};
  channel.members.each((m) => {
    out[m.id] = m.info;
  });
  return out;
}

async function subscriptionCount(sdk, name) {
  const info = await json(sdk.get({ path: `/channels/${name}`, params: { info: 'subscription_count' } }));
  return info.subscription_count;
}

/** Publish a marker on `channel` and wait until it arrives there. */
async function roundTrip(sdk, channel) {
  const event = unique('marker-');
  const got = waitEvent(channel, event);
  await sdk.trigger(channel.name, event, {});
  await got;
}

async function userIds(sdk, name) {
  const body = await json(sdk.get({ path: `/channels/${name}/users` }));
  return body.users.map((u) => u.id).sort();
}

describe('presence channels', { timeout: 30000 }, () => {
  let server;
  let sdk;

  before(async () => {
    server = await startServer();
    sdk = server.sdk();
  });
  afterEach(() => server && server.disconnectClients());
  after(async () => server && server.stop());

  it('roster, member_added, member_removed and /users across two clients', async () => {
    const name = unique('presence-e2e-room-');
    const ada = await server.connectedClient({ presence: { user_id: '1', user_info: { name: 'Ada' } } });
    const chAda = await subscribe(ada, name);
    assert.equal(chAda.members.count, 1);
    assert.equal(chAda.members.me.id, '1');
    assert.deepEqual(chAda.members.me.info, { name: 'Ada' });
    assert.deepEqual(await userIds(sdk, name), ['1']);

    const added = waitEvent(chAda, 'pusher:member_added');
    const bob = await server.connectedClient({ presence: { user_id: '2', user_info: { name: 'Bob' } } });
    const chBob = await subscribe(bob, name);
    // The joiner gets the full roster including itself.
    assert.equal(chBob.members.count, 2);
    assert.equal(chBob.members.me.id, '2');
    assert.deepEqual(roster(chBob), { 1: { name: 'Ada' }, 2: { name: 'Bob' } });
    // The existing member is told about the newcomer.
    const { data: member } = await added;
    assert.equal(member.id, '2');
    assert.deepEqual(member.info, { name: 'Bob' });
    assert.equal(chAda.members.count, 2);

    assert.deepEqual(await userIds(sdk, name), ['1', '2']);
    const info = await json(sdk.get({ path: `/channels/${name}`, params: { info: 'user_count' } }));
    assert.equal(info.occupied, true);
    assert.equal(info.user_count, 2);

    const removed = waitEvent(chAda, 'pusher:member_removed');
    bob.disconnect();
    const { data: gone } = await removed;
    assert.equal(gone.id, '2');
    assert.equal(chAda.members.count, 1);
    await waitUntil(async () => (await userIds(sdk, name)).join() === '1', '/users to drop user 2');
  });

  it('a user with two sockets counts once: one member_added, member_removed only after the last socket', async () => {
    const name = unique('presence-e2e-multi-');
    const watcher = await server.connectedClient({ presence: { user_id: 'watcher' } });
    const chW = await subscribe(watcher, name);
    const added = record(chW, 'pusher:member_added');
    const removed = record(chW, 'pusher:member_removed');

    const tab1 = await server.connectedClient({ presence: { user_id: 'u7', user_info: { tab: 1 } } });
    await subscribe(tab1, name);
    await waitUntil(() => added.length === 1, 'member_added for u7');
    const tab2 = await server.connectedClient({ presence: { user_id: 'u7', user_info: { tab: 2 } } });
    const ch2 = await subscribe(tab2, name);
    assert.equal(ch2.members.count, 2, 'roster counts distinct users');
    assert.deepEqual(await userIds(sdk, name), ['u7', 'watcher']);
    const info = await json(sdk.get({ path: `/channels/${name}`, params: { info: 'user_count' } }));
    assert.equal(info.user_count, 2);

    tab1.disconnect();
    // Barrier 1: the server has processed the disconnect (its socket left
    // the channel: watcher + tab2 remain).
    await waitUntil(
      async () => (await subscriptionCount(sdk, name)) === 2,
      'the server to drop tab1 from the channel',
    );
    // Barrier 2: an event published now reaches the watcher after anything
    // the disconnect produced (one channel, delivered in order).
    await roundTrip(sdk, chW);
    assert.equal(removed.length, 0, 'u7 still has a socket in the channel');
    tab2.disconnect();
    await waitUntil(() => removed.length === 1, 'member_removed after last socket');
    await roundTrip(sdk, chW);
    assert.equal(added.length, 1, 'exactly one member_added for u7');
    assert.equal(removed.length, 1);
    assert.equal(removed[0].data.id, 'u7');
    assert.equal(chW.members.count, 1);
  });

  it('numeric user_id is normalised to a string', async () => {
    const name = unique('presence-e2e-num-');
    const a = await server.connectedClient({ presence: { user_id: 1001, user_info: { n: 1 } } });
    const ch = await subscribe(a, name);
    assert.deepEqual(Object.keys(roster(ch)), ['1001']);
    assert.deepEqual(await userIds(sdk, name), ['1001']);
  });

  it('client events on presence channels carry the sender user_id', async () => {
    const name = unique('presence-e2e-chat-');
    const a = await server.connectedClient({ presence: { user_id: 'alice' } });
    const b = await server.connectedClient({ presence: { user_id: 'bob' } });
    const chA = await subscribe(a, name);
    const chB = await subscribe(b, name);
    const echoed = record(chA, 'client-msg');
    const got = waitEvent(chB, 'client-msg');
    chA.trigger('client-msg', { text: 'hello' });
    const { data, metadata } = await got;
    assert.deepEqual(data, { text: 'hello' });
    assert.equal(metadata && metadata.user_id, 'alice');
    // b has it, so the server has broadcast it; an event published now
    // reaches a after any echo would have.
    await roundTrip(sdk, chA);
    assert.deepEqual(echoed, []);
  });

  it('/users on a non-presence channel is a 400', async () => {
    const err = await requestError(sdk.get({ path: '/channels/e2e-not-presence/users' }));
    assert.equal(err.status, 400);
  });
});
