'use strict';
// Two nodes as one (ADAPTER_DRIVER=redis on a redis-server of the suite's
// own): real clients connected to node A, the app backend (`pusher` SDK)
// talking to node B, and the other way round. A client must not be able to
// tell which node it landed on.
//
// A node learns another's changes a moment later (the relay latency); where a
// step on one node depends on a change made on the other, the test first
// waits until that change is visible there, as a real client would a moment
// later. "Nothing more arrived" is checked after a barrier: a later event on
// the same path that did arrive (events reach a node in publish order).

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const { isDeepStrictEqual } = require('node:util');
const {
  json,
  record,
  sleep,
  startCluster,
  subscribe,
  unique,
  waitEvent,
  waitState,
  waitUntil,
  errorCode,
  subscribed,
} = require('./lib/harness');

/** The user ids `/channels/{name}/users` of `sdk`'s node lists, sorted. */
async function userIds(sdk, name) {
  const body = await json(sdk.get({ path: `/channels/${name}/users` }));
  return body.users.map((u) => u.id).sort();
}

/** Wait until `sdk`'s node lists exactly `want` as the users of `name`. */
async function waitUsers(sdk, name, want, label) {
  let last;
  await waitUntil(
    async () => {
      last = await userIds(sdk, name);
      return last.join() === want.join();
    },
    () => `${label}: users of ${name} to be [${want}] (last [${last}])`,
  );
}

/** Wait until `sdk`'s node answers `/channels/{name}?info=…` with `want`. */
async function waitChannelInfo(sdk, name, info, want, label) {
  let last;
  await waitUntil(
    async () => {
      last = await json(sdk.get({ path: `/channels/${name}`, params: { info } }));
      return isDeepStrictEqual(last, want);
    },
    () => `${label}: ${name}?info=${info} to be ${JSON.stringify(want)} (last ${JSON.stringify(last)})`,
  );
}

/** pusher-js's members of a presence channel: {id: info}. */
function roster(channel) {
  const out = {};
  channel.members.each((m) => {
    out[m.id] = m.info;
  });
  return out;
}

/** signin() and wait until pusher-js is subscribed to #server-to-user-<id>. */
async function signedIn(client, id) {
  client.signin();
  await waitUntil(
    () => client.user.user_data && client.user.serverToUserChannel && client.user.serverToUserChannel.subscribed,
    `signin + #server-to-user-${id} subscription`,
  );
}

describe('two nodes on Redis', { timeout: 45000 }, () => {
  let cluster;
  let A;
  let B;
  let sdkA;
  let sdkB;
  let Echo;
  const echos = [];

  /** Laravel Echo (pusher broadcaster) on a pusher-js client of `node`. */
  function echo(node, clientOpts) {
    const e = new Echo({ broadcaster: 'pusher', client: node.client(clientOpts), withoutInterceptors: true });
    echos.push(e);
    return e;
  }

  before(async () => {
    ({ default: Echo } = await import('laravel-echo'));
    cluster = await startCluster({ nodes: 2 });
    [A, B] = cluster.nodes;
    sdkA = A.sdk();
    sdkB = B.sdk();
  });
  afterEach(() => {
    for (const e of echos.splice(0)) e.disconnect();
    for (const n of cluster ? cluster.nodes : []) n.disconnectClients();
  });
  after(async () => cluster && cluster.stop());

  it('pusher-js and Echo on A, the SDK publishing on B: every event arrives once, in order', async () => {
    const name = unique('cluster-news-');
    const js = await A.connectedClient();
    const jsChannel = await subscribe(js, name);
    const jsGot = record(jsChannel, 'news');
    const e = echo(A);
    const echoGot = [];
    await subscribed(e.channel(name).listen('.news', (d) => echoGot.push(d)));
    // A client on B too: B's own clients are served as before.
    const onB = await B.connectedClient();
    const bGot = record(await subscribe(onB, name), 'news');
    // And a private channel, through the batch endpoint.
    const privateName = unique('private-cluster-orders-');
    const paid = [];
    await subscribed(e.private(privateName.slice('private-'.length)).listen('.paid', (d) => paid.push(d)));

    await sdkB.trigger(name, 'news', { n: 1 });
    await sdkB.triggerBatch([
      { channel: name, name: 'news', data: { n: 2 } },
      { channel: privateName, name: 'paid', data: { total: 9.5 } },
    ]);
    await sdkB.trigger(name, 'news', { n: 3 });
    await waitUntil(() => jsGot.length >= 3 && echoGot.length >= 3 && bGot.length >= 3, 'three events everywhere');
    await waitUntil(() => paid.length >= 1, 'the private event on A');
    // Barrier: a marker after them; a second copy of anything would be in before it.
    const marker = waitEvent(jsChannel, 'marker');
    await sdkB.trigger(name, 'marker', {});
    await marker;
    assert.deepEqual(
      jsGot.map((x) => x.data),
      [{ n: 1 }, { n: 2 }, { n: 3 }],
    );
    assert.deepEqual(echoGot, [{ n: 1 }, { n: 2 }, { n: 3 }]);
    assert.deepEqual(
      bGot.map((x) => x.data),
      [{ n: 1 }, { n: 2 }, { n: 3 }],
    );
    assert.deepEqual(paid, [{ total: 9.5 }]);
  });

  it('socket_id exclusion across nodes: the A client named by the B publish is skipped, the others are not', async () => {
    const name = unique('cluster-others-');
    const me = echo(A);
    const mine = [];
    await subscribed(me.channel(name).listen('.saved', (d) => mine.push(d)));
    const otherA = await A.connectedClient();
    const otherAGot = record(await subscribe(otherA, name), 'saved');
    const otherB = await B.connectedClient();
    const otherBGot = record(await subscribe(otherB, name), 'saved');

    await sdkB.trigger(name, 'saved', { id: 1 }, { socket_id: me.socketId() });
    await waitUntil(() => otherAGot.length === 1 && otherBGot.length === 1, 'the others receive');
    // Barrier: a later event to everyone; 'saved' #1 would be in before it.
    await sdkB.trigger(name, 'saved', { id: 2 });
    await waitUntil(() => mine.length >= 1, 'the later event reaches the excluded client');
    assert.deepEqual(mine, [{ id: 2 }]);
    await waitUntil(() => otherAGot.length === 2 && otherBGot.length === 2, 'the others get both');
  });

  it('client events from a B client reach A clients (pusher-js and Echo whisper), not the sender', async () => {
    const name = unique('private-cluster-chat-');
    const sender = await B.connectedClient();
    const senderChannel = await subscribe(sender, name);
    const echoed = record(senderChannel, 'client-typing');
    const acks = record(senderChannel, 'client-ack');
    const peer = await A.connectedClient();
    const peerChannel = await subscribe(peer, name);
    const heard = record(peerChannel, 'client-typing');
    const e = echo(A);
    const whispers = [];
    const echoChannel = e.private(name.slice('private-'.length)).listenForWhisper('typing', (d) => whispers.push(d));
    await subscribed(echoChannel);

    assert.equal(senderChannel.trigger('client-typing', { who: 'b' }), true);
    await waitUntil(() => heard.length === 1 && whispers.length === 1, 'the client event on A');
    assert.deepEqual(heard[0].data, { who: 'b' });
    // pusher-js gives the sender's user_id only on presence channels.
    assert.deepEqual(whispers, [{ who: 'b' }]);
    // Barrier: A whispers back on the same channel; a copy of 'typing' for
    // the sender would have been in before this.
    echoChannel.whisper('ack', {});
    await waitUntil(() => acks.length === 1, 'ack from A reaches the sender on B');
    assert.deepEqual(echoed, []);
    assert.equal(heard.length, 1);
  });

  it('presence over both nodes: here / joining / leaving once per user, a user leaves with its last socket', async () => {
    const room = unique('cluster-room-');
    const channel = `presence-${room}`;
    const ada = echo(A, { presence: { user_id: '1', user_info: { name: 'Ada' } } });
    const here = [];
    const joining = [];
    const leaving = [];
    const markers = [];
    ada
      .join(room)
      .here((users) => here.push(users))
      .joining((u) => joining.push(u))
      .leaving((u) => leaving.push(u))
      .listen('.marker', (d) => markers.push(d));
    await waitUntil(() => here.length === 1, 'here() for Ada');
    assert.deepEqual(here[0], [{ name: 'Ada' }]);
    await waitUsers(sdkB, channel, ['1'], 'B knows Ada');

    // Bob joins on B: his roster has Ada (from A); Ada hears of him once.
    const bobB = await B.connectedClient({ presence: { user_id: '2', user_info: { name: 'Bob' } } });
    const bobBChannel = await subscribe(bobB, channel);
    assert.deepEqual(roster(bobBChannel), { 1: { name: 'Ada' }, 2: { name: 'Bob' } });
    assert.equal(bobBChannel.members.me.id, '2');
    await waitUntil(() => joining.length === 1, 'joining() for Bob');
    assert.deepEqual(joining[0], { name: 'Bob' });

    // Bob's second socket, on A: not news to anyone.
    const bobBAdded = record(bobBChannel, 'pusher:member_added');
    const bobA = await A.connectedClient({ presence: { user_id: '2', user_info: { name: 'Bob' } } });
    const bobAChannel = await subscribe(bobA, channel);
    assert.deepEqual(roster(bobAChannel), { 1: { name: 'Ada' }, 2: { name: 'Bob' } });
    await waitChannelInfo(sdkB, channel, 'user_count,subscription_count', {
      occupied: true,
      user_count: 2,
      subscription_count: 3,
    }, 'B counts Bob on A');

    // Bob closes his B socket: still on A, so nobody is told.
    bobB.disconnect();
    await waitChannelInfo(sdkA, channel, 'user_count,subscription_count', {
      occupied: true,
      user_count: 2,
      subscription_count: 2,
    }, 'A saw the B socket go');
    // Barrier: A has applied the change; a member_removed would be queued
    // before this marker published through A.
    await sdkA.trigger(channel, 'marker', { n: 1 });
    await waitUntil(() => markers.length === 1, 'marker 1');
    assert.deepEqual(leaving, []);

    // Cy joins on B: Ada is told once.
    const cyB = await B.connectedClient({ presence: { user_id: '3', user_info: { name: 'Cy' } } });
    const cyChannel = await subscribe(cyB, channel);
    assert.deepEqual(Object.keys(roster(cyChannel)).sort(), ['1', '2', '3']);
    const cyRemoved = record(cyChannel, 'pusher:member_removed');
    await waitUntil(() => joining.length === 2, 'joining() for Cy');
    assert.deepEqual(joining[1], { name: 'Cy' });

    // Bob's last socket (on A) goes: he leaves, told once on A and once on B.
    bobA.disconnect();
    await waitUntil(() => leaving.length === 1, 'leaving() for Bob');
    assert.deepEqual(leaving[0], { name: 'Bob' });
    await waitUntil(() => cyRemoved.length === 1, 'member_removed for Bob on B');
    assert.equal(cyRemoved[0].data.id, '2');
    await waitUsers(sdkA, channel, ['1', '3'], 'A after Bob left');
    await waitUsers(sdkB, channel, ['1', '3'], 'B after Bob left');
    const cyMarkers = record(cyChannel, 'marker');
    await sdkB.trigger(channel, 'marker', { n: 2 });
    await waitUntil(() => markers.length === 2 && cyMarkers.length === 1, 'marker 2 on both nodes');
    assert.equal(leaving.length, 1);
    assert.equal(joining.length, 2);
    assert.equal(cyRemoved.length, 1);
    assert.deepEqual(bobBAdded, []);
    assert.equal(here.length, 1);
  });

  it('the channel API of either node reports the cluster: /channels, /channels/{name}, /users', async () => {
    const p = unique('cluster-api-');
    const room = `presence-${p}room`;
    const a1 = await A.connectedClient({ presence: { user_id: 'ada', user_info: {} } });
    const b1 = await B.connectedClient({ presence: { user_id: 'bob', user_info: {} } });
    const b2 = await B.connectedClient({ presence: { user_id: 'ada', user_info: {} } });
    await Promise.all([
      subscribe(a1, `${p}orders`),
      subscribe(b1, `${p}orders`),
      subscribe(b2, `${p}news`),
      subscribe(a1, room),
      subscribe(b1, room),
      subscribe(b2, room),
    ]);

    for (const [label, sdk] of [
      ['A', sdkA],
      ['B', sdkB],
    ]) {
      let last;
      await waitUntil(
        async () => {
          last = await json(sdk.get({ path: '/channels', params: { filter_by_prefix: p, info: 'subscription_count' } }));
          return isDeepStrictEqual(last, {
            channels: { [`${p}orders`]: { subscription_count: 2 }, [`${p}news`]: { subscription_count: 1 } },
          });
        },
        () => `${label}: /channels with both nodes' channels (last ${JSON.stringify(last)})`,
      );
      const presence = await json(
        sdk.get({ path: '/channels', params: { filter_by_prefix: `presence-${p}`, info: 'user_count' } }),
      );
      assert.deepEqual(presence, { channels: { [room]: { user_count: 2 } } }, label);
      await waitChannelInfo(
        sdk,
        room,
        'user_count,subscription_count',
        { occupied: true, user_count: 2, subscription_count: 3 },
        label,
      );
      await waitChannelInfo(sdk, `${p}orders`, 'subscription_count', { occupied: true, subscription_count: 2 }, label);
      assert.deepEqual(await userIds(sdk, room), ['ada', 'bob'], label);
    }

    // Everyone on B goes: both nodes see it.
    b1.disconnect();
    b2.disconnect();
    for (const [label, sdk] of [
      ['A', sdkA],
      ['B', sdkB],
    ]) {
      await waitChannelInfo(sdk, `${p}news`, 'subscription_count', { occupied: false, subscription_count: 0 }, label);
      await waitChannelInfo(sdk, `${p}orders`, 'subscription_count', { occupied: true, subscription_count: 1 }, label);
      await waitUsers(sdk, room, ['ada'], label);
    }
  });

  it('sendToUser and terminateUserConnections through B reach the user signed in on A', async () => {
    const id = unique('cluster-user-');
    const onA = await A.connectedClient({ user: { id, name: 'Ada' } });
    const otherId = unique('cluster-other-');
    const other = await A.connectedClient({ user: { id: otherId } });
    await Promise.all([signedIn(onA, id), signedIn(other, otherId)]);
    const otherGot = record(other.user, 'notice');

    const got = waitEvent(onA.user, 'notice', 'sendToUser via B');
    await sdkB.sendToUser(id, 'notice', { text: 'hello from B' });
    assert.deepEqual((await got).data, { text: 'hello from B' });

    const err = waitEvent(onA.connection, 'error', 'terminated via B');
    await sdkB.terminateUserConnections(id);
    assert.equal(errorCode((await err).data), 4009);
    await waitState(onA, 'disconnected');
    // No reconnect (4009 is "refused" for pusher-js): watched for longer
    // than pusher-js's shortest retry delay.
    await sleep(1200);
    assert.equal(onA.connection.state, 'disconnected');
    // The other user is untouched and got nothing of the first one's.
    assert.equal(other.connection.state, 'connected');
    const marker = waitEvent(other.user, 'marker');
    await sdkB.sendToUser(otherId, 'marker', {});
    await marker;
    assert.deepEqual(otherGot, []);
  });

  it('a cache channel replays on A an event published through B', async () => {
    const name = unique('cache-cluster-');
    // Nobody anywhere is subscribed to it.
    await sdkB.trigger(name, 'price', { v: 1 });
    await sdkB.trigger(name, 'price', { v: 2 });
    // B's events reach A in publish order: once this marker arrived on A, A
    // has stored the cached event.
    const watcher = await A.connectedClient();
    const markerChannel = await subscribe(watcher, unique('cluster-marker-'));
    const marker = waitEvent(markerChannel, 'm');
    await sdkB.trigger(markerChannel.name, 'm', {});
    await marker;

    const late = await A.connectedClient();
    let prices;
    let misses;
    const channel = await subscribe(late, name, {
      beforeSubscribe: (ch) => {
        prices = record(ch, 'price');
        misses = record(ch, 'pusher:cache_miss');
      },
    });
    await waitUntil(() => prices.length >= 1, 'cached event on A');
    // Barrier: a live event after it, through B.
    await sdkB.trigger(name, 'price', { v: 3 });
    await waitUntil(() => prices.some((x) => x.data.v === 3), 'live event after the cached one');
    assert.deepEqual(
      prices.map((x) => x.data),
      [{ v: 2 }, { v: 3 }],
    );
    assert.equal(misses.length, 0);
    assert.equal(channel.subscribed, true);
  });
});
