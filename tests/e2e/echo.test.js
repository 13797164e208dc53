'use strict';
// Laravel Echo (v2, pusher broadcaster) on top of a real pusher-js client.
// Echo's channel API: channel(name) → name, private(name) → private-name,
// join(name) → presence-name, whisper(e) → client event `client-e`,
// listenForWhisper(e) → listens for `client-e`.

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const { startServer, subscribed, unique, waitUntil } = require('./lib/harness');

describe('Laravel Echo with pusher-js', { timeout: 30000 }, () => {
  let server;
  let sdk;
  let Echo;
  const echos = [];

  function echo(clientOpts) {
    const client = server.client(clientOpts);
    const e = new Echo({ broadcaster: 'pusher', client, withoutInterceptors: true });
    echos.push(e);
    return e;
  }

  before(async () => {
    ({ default: Echo } = await import('laravel-echo'));
    server = await startServer();
    sdk = server.sdk();
  });
  afterEach(() => {
    for (const e of echos.splice(0)) e.disconnect();
    if (server) server.disconnectClients();
  });
  after(async () => server && server.stop());

  it('channel().listen(".event") receives a server trigger', async () => {
    const e = echo();
    const name = unique('echo-public-');
    const got = [];
    const ch = e.channel(name).listen('.order.shipped', (data) => got.push(data));
    await subscribed(ch);
    await sdk.trigger(name, 'order.shipped', { order: { id: 5 } });
    await waitUntil(() => got.length === 1, 'Echo public listen');
    assert.deepEqual(got[0], { order: { id: 5 } });
  });

  it('listen() without a leading dot uses the App.Events namespace', async () => {
    const e = echo();
    const name = unique('echo-ns-');
    const got = [];
    const ch = e.channel(name).listen('OrderShipped', (data) => got.push(data));
    await subscribed(ch);
    await sdk.trigger(name, 'App\\Events\\OrderShipped', { ok: 1 });
    await waitUntil(() => got.length === 1, 'namespaced event');
    assert.deepEqual(got[0], { ok: 1 });
  });

  it('private().listen() receives on private-<name>', async () => {
    const e = echo();
    const name = unique('echo-orders-');
    const got = [];
    const ch = e.private(name).listen('.paid', (data) => got.push(data));
    await subscribed(ch);
    await sdk.trigger(`private-${name}`, 'paid', { total: 99.5 });
    await waitUntil(() => got.length === 1, 'Echo private listen');
    assert.deepEqual(got[0], { total: 99.5 });
  });

  it('private() with a forged signature reports error() and the connection keeps working', async () => {
    const e = echo({ backend: server.sdk({ secret: 'wrong' }) });
    const name = unique('echo-forged-');
    const err = await new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('no Echo error() callback')), 5000);
      e.private(name).error((x) => {
        clearTimeout(t);
        resolve(x);
      });
    });
    assert.equal(err.type, 'AuthError');
    assert.equal(err.status, 401);
    const got = [];
    const ok = e.channel(unique('echo-after-forged-')).listen('.x', (d) => got.push(d));
    await subscribed(ok);
    await sdk.trigger(ok.name, 'x', { y: 1 });
    await waitUntil(() => got.length === 1, 'public event after forged private');
    assert.equal(e.connector.pusher.connection.state, 'connected');
  });

  it('join(): here / joining / leaving', async () => {
    const name = unique('echo-room-');
    const e1 = echo({ presence: { user_id: '1', user_info: { id: 1, name: 'Ada' } } });
    const here1 = [];
    const joining = [];
    const leaving = [];
    e1.join(name)
      .here((users) => here1.push(users))
      .joining((u) => joining.push(u))
      .leaving((u) => leaving.push(u));
    await waitUntil(() => here1.length === 1, 'here() for first user');
    assert.deepEqual(here1[0], [{ id: 1, name: 'Ada' }]);

    const e2 = echo({ presence: { user_id: '2', user_info: { id: 2, name: 'Bob' } } });
    const here2 = [];
    e2.join(name).here((users) => here2.push(users));
    await waitUntil(() => here2.length === 1, 'here() for second user');
    assert.deepEqual(
      here2[0].slice().sort((a, b) => a.id - b.id),
      [
        { id: 1, name: 'Ada' },
        { id: 2, name: 'Bob' },
      ],
    );
    await waitUntil(() => joining.length === 1, 'joining()');
    assert.deepEqual(joining[0], { id: 2, name: 'Bob' });

    e2.leave(name);
    await waitUntil(() => leaving.length === 1, 'leaving()');
    assert.deepEqual(leaving[0], { id: 2, name: 'Bob' });
    assert.equal(joining.length, 1);
  });

  it('whisper() / listenForWhisper() on a private channel, not echoed to the whisperer', async () => {
    const name = unique('echo-chat-');
    const e1 = echo();
    const e2 = echo();
    const heard1 = [];
    const heard2 = [];
    const acks = [];
    const c1 = e1
      .private(name)
      .listenForWhisper('typing', (d) => heard1.push(d))
      .listenForWhisper('ack', (d) => acks.push(d));
    const c2 = e2.private(name).listenForWhisper('typing', (d) => heard2.push(d));
    await Promise.all([subscribed(c1), subscribed(c2)]);
    c1.whisper('typing', { name: 'Ada', typing: true });
    await waitUntil(() => heard2.length === 1, 'whisper delivered');
    assert.deepEqual(heard2[0], { name: 'Ada', typing: true });
    // Barrier: e2 whispers back on the same channel only after it heard e1,
    // so an echo of e1's whisper to e1 would arrive before this ack.
    c2.whisper('ack', {});
    await waitUntil(() => acks.length === 1, 'ack whisper back to the whisperer');
    assert.deepEqual(heard1, []);
  });

  it('whisper() on a presence channel', async () => {
    const name = unique('echo-presence-chat-');
    const e1 = echo({ presence: { user_id: 'a', user_info: { id: 'a' } } });
    const e2 = echo({ presence: { user_id: 'b', user_info: { id: 'b' } } });
    const heard = [];
    const here = [];
    const p1 = e1.join(name).here((u) => here.push(u));
    e2.join(name)
      .here((u) => here.push(u))
      .listenForWhisper('typing', (d) => heard.push(d));
    await waitUntil(() => here.length === 2, 'both joined');
    p1.whisper('typing', { who: 'a' });
    await waitUntil(() => heard.length === 1, 'presence whisper');
    assert.deepEqual(heard[0], { who: 'a' });
  });

  it('toOthers: a trigger with socket_id = echo.socketId() skips that client', async () => {
    const name = unique('echo-others-');
    const me = echo();
    const other = echo();
    const mine = [];
    const theirs = [];
    const c1 = me.channel(name).listen('.saved', (d) => mine.push(d));
    const c2 = other.channel(name).listen('.saved', (d) => theirs.push(d));
    await Promise.all([subscribed(c1), subscribed(c2)]);
    assert.match(me.socketId(), /^\d+\.\d+$/);
    await sdk.trigger(name, 'saved', { id: 1 }, { socket_id: me.socketId() });
    await waitUntil(() => theirs.length === 1, 'other client receives');
    await sdk.trigger(name, 'saved', { id: 2 });
    await waitUntil(() => mine.length === 1, 'later event reaches me');
    assert.deepEqual(mine, [{ id: 2 }]);
  });
});
