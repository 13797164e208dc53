'use strict';
// HTTP API through the pusher SDK: channel queries, triggerBatch, trigger
// with info, and signature failures.

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const { startServer, subscribe, unique, waitEvent, waitUntil, record, json, requestError } = require('./lib/harness');

describe('HTTP API via the pusher SDK', { timeout: 30000 }, () => {
  let server;
  let sdk;

  before(async () => {
    server = await startServer();
    sdk = server.sdk();
  });
  afterEach(() => server && server.disconnectClients());
  after(async () => server && server.stop());

  it('GET /channels with filter_by_prefix + info=user_count, and without filters', async () => {
    const room = unique('presence-q-');
    const pub = unique('q-public-');
    const a = await server.connectedClient({ presence: { user_id: 'qa' } });
    const b = await server.connectedClient({ presence: { user_id: 'qb' } });
    const b2 = await server.connectedClient({ presence: { user_id: 'qb' } });
    await subscribe(a, room);
    await subscribe(b, room);
    await subscribe(b2, room);
    await subscribe(a, pub);

    const presence = await json(
      sdk.get({ path: '/channels', params: { filter_by_prefix: 'presence-', info: 'user_count' } }),
    );
    assert.deepEqual(presence.channels[room], { user_count: 2 });
    assert.equal(presence.channels[pub], undefined, 'filter_by_prefix must exclude other channels');
    for (const n of Object.keys(presence.channels)) assert.ok(n.startsWith('presence-'), n);

    const all = await json(sdk.get({ path: '/channels' }));
    assert.ok(all.channels[room], `missing ${room} in ${JSON.stringify(all)}`);
    assert.deepEqual(all.channels[pub], {});

    const prefixed = await json(sdk.get({ path: '/channels', params: { filter_by_prefix: 'q-public-' } }));
    assert.deepEqual(Object.keys(prefixed.channels).filter((n) => n === pub), [pub]);
    assert.equal(prefixed.channels[room], undefined);
  });

  it('GET /channels with user_count but no presence- prefix is a 400', async () => {
    const err = await requestError(sdk.get({ path: '/channels', params: { info: 'user_count' } }));
    assert.equal(err.status, 400);
  });

  it('GET /channels/{name} with info, occupied and unoccupied; vacated after disconnect', async () => {
    const pub = unique('q-info-');
    const room = unique('presence-q-info-');
    const a = await server.connectedClient({ presence: { user_id: 'i1' } });
    const b = await server.connectedClient({ presence: { user_id: 'i2' } });
    await subscribe(a, pub);
    await subscribe(b, pub);
    await subscribe(a, room);
    await subscribe(b, room);

    const pubInfo = await json(sdk.get({ path: `/channels/${pub}`, params: { info: 'subscription_count' } }));
    assert.deepEqual(pubInfo, { occupied: true, subscription_count: 2 });

    const roomInfo = await json(sdk.get({ path: `/channels/${room}`, params: { info: 'user_count' } }));
    assert.equal(roomInfo.occupied, true);
    assert.equal(roomInfo.user_count, 2);

    const plain = await json(sdk.get({ path: `/channels/${pub}` }));
    assert.equal(plain.occupied, true);

    const none = await json(sdk.get({ path: `/channels/${unique('q-nobody-')}` }));
    assert.equal(none.occupied, false);

    a.disconnect();
    b.disconnect();
    await waitUntil(
      async () => (await json(sdk.get({ path: `/channels/${pub}` }))).occupied === false,
      'channel vacated after both clients disconnected',
    );
  });

  it('triggerBatch delivers every item to its channel', async () => {
    const c1 = unique('batch-a-');
    const c2 = unique('private-batch-b-');
    const client = await server.connectedClient();
    const ch1 = await subscribe(client, c1);
    const ch2 = await subscribe(client, c2);
    const gotA = waitEvent(ch1, 'e1');
    const gotB = waitEvent(ch2, 'e2');
    const gotA2 = record(ch1, 'e3');
    const res = await sdk.triggerBatch([
      { channel: c1, name: 'e1', data: { n: 1 } },
      { channel: c2, name: 'e2', data: { n: 2 } },
      { channel: c1, name: 'e3', data: 'plain string' },
    ]);
    assert.equal(res.status, 200);
    assert.deepEqual(JSON.parse(await res.text()), {});
    assert.deepEqual((await gotA).data, { n: 1 });
    assert.deepEqual((await gotB).data, { n: 2 });
    await waitUntil(() => gotA2.length === 1, 'third batch item');
    assert.equal(gotA2[0].data, 'plain string');
  });

  it('triggerBatch with info returns per-item attributes in order', async () => {
    const room = unique('presence-batch-');
    const pub = unique('batch-info-');
    const a = await server.connectedClient({ presence: { user_id: 'b1' } });
    await subscribe(a, room);
    await subscribe(a, pub);
    const body = await json(
      sdk.triggerBatch([
        { channel: room, name: 'x', data: {}, info: 'user_count' },
        { channel: pub, name: 'y', data: {}, info: 'subscription_count' },
      ]),
    );
    assert.equal(body.batch.length, 2);
    assert.equal(body.batch[0].user_count, 1);
    assert.equal(body.batch[1].subscription_count, 1);
  });

  it('trigger to several channels with info=user_count,subscription_count', async () => {
    const room = unique('presence-trig-');
    const a = await server.connectedClient({ presence: { user_id: 't1' } });
    const b = await server.connectedClient({ presence: { user_id: 't2' } });
    const chA = await subscribe(a, room);
    await subscribe(b, room);
    const got = waitEvent(chA, 'hello');
    const body = await json(sdk.trigger([room], 'hello', { hi: true }, { info: 'user_count,subscription_count' }));
    assert.deepEqual(body, { channels: { [room]: { user_count: 2, subscription_count: 2 } } });
    assert.deepEqual((await got).data, { hi: true });
  });

  it('trigger to many channels at once reaches each', async () => {
    const names = [unique('multi-'), unique('multi-'), unique('multi-')];
    const client = await server.connectedClient();
    const chans = [];
    for (const n of names) chans.push(await subscribe(client, n));
    const waits = chans.map((c) => waitEvent(c, 'fanout'));
    await sdk.trigger(names, 'fanout', { all: 3 });
    for (const w of waits) assert.deepEqual((await w).data, { all: 3 });
  });

  it('a wrong secret gets 401 and an unknown app id gets 404', async () => {
    const bad = server.sdk({ secret: 'wrong' });
    const e1 = await requestError(bad.trigger(unique('x-'), 'e', {}));
    assert.equal(e1.status, 401);
    const e2 = await requestError(bad.get({ path: '/channels' }));
    assert.equal(e2.status, 401);
    const other = server.sdk({ appId: 'no-such-app' });
    const e3 = await requestError(other.get({ path: '/channels' }));
    assert.equal(e3.status, 404, e3.body);
  });

  it('error bodies are Sockudo-shaped JSON', async () => {
    const bad = server.sdk({ secret: 'wrong' });
    const err = await requestError(bad.get({ path: '/channels' }));
    const body = JSON.parse(err.body);
    assert.equal(body.status, 401);
    assert.equal(typeof body.error, 'string');
    assert.equal(body.code, 'auth_failed');
  });
});
