'use strict';
// Graceful shutdown as pusher-js sees it (README "Operations"): SIGTERM sends
// every socket pusher:error + close 4200, "reconnect immediately", and
// pusher-js reconnects at once to another node behind the load balancer,
// resubscribing its channels there.
//
// The load balancer is a TCP forwarder in this file. Two nodes behind one
// address are needed: pusher-js retries at once, and a connection refused
// would hold it in its 15 s transport timeout (the strategy ignores an early
// failure), so the replacement must already be listening.

const { describe, it, after } = require('node:test');
const assert = require('node:assert/strict');
const net = require('node:net');
const { startServer, subscribe, unique, waitEvent, waitUntil, record, json, errorCode } = require('./lib/harness');

/** A TCP forwarder on a free port; new connections go to `target`. */
function startBalancer(target) {
  const sockets = new Set();
  const server = net.createServer((client) => {
    const upstream = net.connect(target, '127.0.0.1');
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  return new Promise((resolve, reject) => {
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      resolve({
        port: server.address().port,
        /** Send new connections to `port` (the open ones stay where they are). */
        route(port) {
          target = port;
        },
        close() {
          for (const s of sockets) s.destroy();
          return new Promise((r) => server.close(r));
        },
      });
    });
  });
}

const cleanup = [];
after(async () => {
  for (const fn of cleanup.reverse()) await fn();
});

describe('graceful shutdown', { timeout: 30000 }, () => {
  it('4200: pusher-js reconnects at once to the next node and resubscribes there', async () => {
    const a = await startServer({ SHUTDOWN_GRACE_PERIOD: '5' });
    cleanup.push(() => a.stop());
    const b = await startServer();
    cleanup.push(() => b.stop());
    const lb = await startBalancer(a.port);
    cleanup.push(() => lb.close());

    const client = await a.connectedClient({ pusherOptions: { wsPort: lb.port } });
    const first = client.connection.socket_id;
    assert.ok(a.output().includes(first), 'connected to node A');
    const name = unique('failover-');
    const ch = await subscribe(client, name);
    const states = [];
    client.connection.bind('state_change', ({ current }) => states.push({ current, at: Date.now() }));
    const errors = record(client.connection, 'error');
    const told = waitEvent(client.connection, 'error', '4200');

    // The balancer takes A out of rotation; A is told to stop.
    lb.route(b.port);
    a.signal('SIGTERM');
    const { data } = await told;
    const toldAt = Date.now();
    assert.equal(errorCode(data), 4200, JSON.stringify(data));

    await waitUntil(
      () => client.connection.state === 'connected' && client.connection.socket_id !== first,
      'pusher-js to reconnect',
    );
    const second = client.connection.socket_id;
    assert.ok(b.output().includes(second), 'reconnected to node B');
    // Straight back to connecting: 4200 is "retry now", unlike 4100's
    // back-off (1 s before connecting); never unavailable or disconnected.
    assert.deepEqual(
      states.map((s) => s.current),
      ['connecting', 'connected'],
    );
    const waited = states[0].at - toldAt;
    assert.ok(waited < 800, `pusher-js began reconnecting ${waited} ms after the 4200 (back-off is 1000 ms)`);
    // pusher-js reports the 4200 frame and the 4200 close; nothing else.
    const codes = errors.map((e) => errorCode(e.data));
    assert.ok(codes.length > 0 && codes.every((c) => c === 4200), `errors on the way: ${codes}`);

    // A drained and exited cleanly.
    const exit = await a.waitExit(8000);
    assert.equal(exit.code, 0, JSON.stringify(exit));

    // The channel was resubscribed on B: B counts it and delivers B's events.
    const sdkB = b.sdk();
    await waitUntil(async () => {
      const info = await json(sdkB.get({ path: `/channels/${name}`, params: { info: 'subscription_count' } }));
      return info.subscription_count === 1;
    }, 'the channel to be occupied on node B');
    const got = waitEvent(ch, 'after-failover');
    await sdkB.trigger(name, 'after-failover', { node: 'B' });
    assert.deepEqual((await got).data, { node: 'B' });
    client.disconnect();
  });
});
