'use strict';
// Shared harness for the Switchyard end-to-end suite.
//
// * startServer() launches the real `switchyard` binary on a free loopback
//   port, configured purely through environment variables, in a scratch cwd,
//   and resolves once `GET /up` answers 200.
// * server.sdk() gives a `pusher` (server SDK v5) instance pointed at it: the
//   app backend's role (triggers, channel queries, auth signatures).
// * server.client() gives a real `pusher-js` v8 client whose channel
//   authorization and user authentication are signed in-process by the SDK.
// * Everything started is torn down by server.stop() (clients first).
// * startRedis() runs a redis-server of the suite's own on a free port (no
//   persistence; missing redis-server = an error, never a skip);
//   startCluster({nodes: 2}) runs nodes with ADAPTER_DRIVER=redis on it,
//   sharing the app and a key prefix unique to that cluster.

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const PusherClient = require('pusher-js');
const PusherServer = require('pusher');

const E2E_DIR = path.resolve(__dirname, '..');

const APP = Object.freeze({
  id: 'e2e-app',
  key: 'e2e-key',
  secret: 'e2e-secret',
});

// 32 random-looking bytes, base64; used by the SDK to derive per-channel
// shared secrets for private-encrypted-* channels. The server never sees it.
const ENCRYPTION_MASTER_KEY_BASE64 = 'c3dpdGNoeWFyZC1lMmUtbWFzdGVyLWtleS0zMmJ5dGU=';

const DEFAULT_TIMEOUT = 5000;

function binaryPath() {
  const configured = process.env.SWITCHYARD_BIN || '../../target/debug/switchyard';
  return path.resolve(E2E_DIR, configured);
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function httpGetStatus(port, urlPath) {
  return new Promise((resolve) => {
    const req = http.get(
      { host: '127.0.0.1', port, path: urlPath, agent: false, timeout: 1000 },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode));
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => resolve(null));
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Resolve when `fn()` is truthy, polling every 20 ms; reject after `ms`.
 * `label` may be a function, called for the message (to show the last value).
 */
async function waitUntil(fn, label, ms = DEFAULT_TIMEOUT) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) {
      const what = typeof label === 'function' ? label() : label;
      throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    }
    await sleep(20);
  }
}

/**
 * Wait for one `event` on anything with pusher-js's bind/unbind (a channel,
 * `client.connection`, `client.user`, an Echo-less Dispatcher).
 * Resolves with {data, metadata}.
 */
function waitEvent(target, event, label, ms = DEFAULT_TIMEOUT) {
  return new Promise((resolve, reject) => {
    const handler = (data, metadata) => {
      clearTimeout(timer);
      target.unbind(event, handler);
      resolve({ data, metadata });
    };
    const timer = setTimeout(() => {
      target.unbind(event, handler);
      reject(new Error(`timed out after ${ms} ms waiting for '${event}' (${label || target.name || ''})`));
    }, ms);
    target.bind(event, handler);
  });
}

/** Collect every occurrence of `event` on `target` into an array. */
function record(target, event) {
  const seen = [];
  target.bind(event, (data, metadata) => seen.push({ data, metadata }));
  return seen;
}

/** Wait until the pusher-js client is connected; fail fast on terminal states. */
function waitConnected(client, ms = DEFAULT_TIMEOUT) {
  if (client.connection.state === 'connected') return Promise.resolve(client.connection.socket_id);
  return new Promise((resolve, reject) => {
    const onChange = ({ current }) => {
      if (current === 'connected') {
        done();
        resolve(client.connection.socket_id);
      } else if (current === 'failed') {
        done();
        reject(new Error(`pusher-js connection went to '${current}'`));
      }
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`pusher-js client not connected after ${ms} ms (state ${client.connection.state})`));
    }, ms);
    const done = () => {
      clearTimeout(timer);
      client.connection.unbind('state_change', onChange);
    };
    client.connection.bind('state_change', onChange);
  });
}

/** Wait until the connection reaches `state` (e.g. 'disconnected'). */
function waitState(client, state, ms = DEFAULT_TIMEOUT) {
  return waitUntil(() => client.connection.state === state, `connection state '${state}'`, ms);
}

/**
 * Subscribe and resolve with the channel once the server confirmed it
 * (pusher:subscription_succeeded); reject on pusher:subscription_error.
 * `beforeSubscribe(channel)` runs synchronously right after subscribe() and
 * before any frame can arrive — use it to bind handlers for events that come
 * immediately after subscription_succeeded (cache channels).
 */
function subscribe(client, name, { beforeSubscribe, ms = DEFAULT_TIMEOUT } = {}) {
  const channel = client.subscribe(name);
  if (beforeSubscribe) beforeSubscribe(channel);
  return new Promise((resolve, reject) => {
    const ok = (data) => {
      done();
      resolve(channel);
    };
    const err = (data) => {
      done();
      reject(new Error(`subscription to ${name} failed: ${JSON.stringify(data)}`));
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`no subscription_succeeded for ${name} after ${ms} ms`));
    }, ms);
    const done = () => {
      clearTimeout(timer);
      channel.unbind('pusher:subscription_succeeded', ok);
      channel.unbind('pusher:subscription_error', err);
    };
    channel.bind('pusher:subscription_succeeded', ok);
    channel.bind('pusher:subscription_error', err);
  });
}

function serverEnv(port, extra) {
  const env = {
    PATH: process.env.PATH,
    HOME: process.env.HOME || os.tmpdir(),
    RUST_BACKTRACE: '1',
    RUST_LOG: process.env.SWITCHYARD_E2E_RUST_LOG || 'info',
    HOST: '127.0.0.1',
    PORT: String(port),
    METRICS_ENABLED: 'false',
    RATE_LIMITER_ENABLED: 'false',
    SOCKUDO_DEFAULT_APP_ID: APP.id,
    SOCKUDO_DEFAULT_APP_KEY: APP.key,
    SOCKUDO_DEFAULT_APP_SECRET: APP.secret,
    SOCKUDO_DEFAULT_APP_ENABLE_CLIENT_MESSAGES: 'true',
    SOCKUDO_DEFAULT_APP_MAX_BACKEND_EVENTS_PER_SECOND: '0',
    SOCKUDO_DEFAULT_APP_MAX_CONNECTIONS: '1000',
  };
  return Object.assign(env, extra);
}

async function launch(extraEnv) {
  const bin = binaryPath();
  if (!fs.existsSync(bin)) {
    throw new Error(
      `switchyard binary not found at ${bin}; run \`cargo build\` first or set SWITCHYARD_BIN`,
    );
  }
  const port = await freePort();
  const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'switchyard-e2e-'));
  const proc = spawn(bin, [], {
    cwd,
    env: serverEnv(port, extraEnv),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const keep = (chunk) => {
    output += chunk.toString();
    if (output.length > 200000) output = output.slice(-100000);
  };
  proc.stdout.on('data', keep);
  proc.stderr.on('data', keep);
  let exited = null;
  const exitPromise = new Promise((resolve) => {
    proc.on('exit', (code, signal) => {
      exited = { code, signal };
      resolve(exited);
    });
    proc.on('error', (err) => {
      exited = { code: null, signal: null, error: err };
      resolve(exited);
    });
  });

  const deadline = Date.now() + 20000;
  for (;;) {
    if (exited) {
      fs.rmSync(cwd, { recursive: true, force: true });
      const why = exited.error ? exited.error.message : `code ${exited.code} signal ${exited.signal}`;
      const err = new Error(`switchyard exited before becoming ready (${why}); output:\n${output}`);
      err.retryable = true;
      throw err;
    }
    if ((await httpGetStatus(port, '/up')) === 200) break;
    if (Date.now() > deadline) {
      proc.kill('SIGKILL');
      await exitPromise;
      fs.rmSync(cwd, { recursive: true, force: true });
      throw new Error(`switchyard did not answer GET /up with 200 within 20 s; output:\n${output}`);
    }
    await sleep(50);
  }
  return { proc, port, cwd, exitPromise, output: () => output, exited: () => exited };
}

/**
 * Start a server. Returns a handle:
 *   port, app, sdk(opts), client(opts), stop(), output()
 */
async function startServer(extraEnv = {}) {
  let launched;
  for (let attempt = 1; ; attempt++) {
    try {
      launched = await launch(extraEnv);
      break;
    } catch (err) {
      // A free port can be taken between probing and binding; retry that.
      if (!err.retryable || attempt >= 3) throw err;
    }
  }
  const { proc, port, cwd, exitPromise } = launched;
  const clients = new Set();
  // The app the server serves: the harness app unless the test set its own.
  const app = Object.freeze({
    id: extraEnv.SOCKUDO_DEFAULT_APP_ID || APP.id,
    key: extraEnv.SOCKUDO_DEFAULT_APP_KEY || APP.key,
    secret: extraEnv.SOCKUDO_DEFAULT_APP_SECRET || APP.secret,
  });

  const handle = {
    port,
    app,
    output: launched.output,

    /** pusher (server SDK) pointed at this server. */
    sdk(opts = {}) {
      return new PusherServer({
        appId: app.id,
        key: app.key,
        secret: app.secret,
        host: '127.0.0.1',
        port: String(port),
        useTLS: false,
        timeout: 5000,
        encryptionMasterKeyBase64: ENCRYPTION_MASTER_KEY_BASE64,
        ...opts,
      });
    },

    /**
     * A real pusher-js client. Options:
     *   presence: {user_id, user_info} used for presence-* channel_data
     *   user: {id, ...} user_data for pusher.signin()
     *   backend: SDK instance used for signing (default: correct credentials)
     *   pusherOptions: extra pusher-js options
     */
    client(opts = {}) {
      const backend = opts.backend || handle.sdk();
      const client = new PusherClient(app.key, {
        cluster: 'mt1',
        wsHost: '127.0.0.1',
        wsPort: port,
        forceTLS: false,
        enabledTransports: ['ws'],
        disableStats: true,
        channelAuthorization: {
          customHandler: ({ socketId, channelName }, callback) => {
            try {
              const presenceData = channelName.startsWith('presence-') ? opts.presence : undefined;
              callback(null, backend.authorizeChannel(socketId, channelName, presenceData));
            } catch (err) {
              callback(err, null);
            }
          },
        },
        userAuthentication: {
          customHandler: ({ socketId }, callback) => {
            try {
              callback(null, backend.authenticateUser(socketId, opts.user));
            } catch (err) {
              callback(err, null);
            }
          },
        },
        ...(opts.pusherOptions || {}),
      });
      clients.add(client);
      return client;
    },

    /** client() + wait until connected. */
    async connectedClient(opts) {
      const c = handle.client(opts);
      await waitConnected(c);
      return c;
    },

    /** Disconnect every client created by this handle (idempotent). */
    disconnectClients() {
      for (const c of clients) {
        try {
          c.disconnect();
        } catch (_) {
          /* ignore */
        }
      }
      clients.clear();
    },

    /** Send the server process a signal (e.g. 'SIGTERM'). */
    signal(name) {
      proc.kill(name);
    },

    /** Resolve with {code, signal} once the process has exited; reject after `ms`. */
    waitExit(ms = DEFAULT_TIMEOUT) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`switchyard still running after ${ms} ms`)), ms);
        exitPromise.then((exited) => {
          clearTimeout(timer);
          resolve(exited);
        });
      });
    },

    async stop() {
      handle.disconnectClients();
      if (!launched.exited()) {
        proc.kill('SIGTERM');
        const killer = setTimeout(() => proc.kill('SIGKILL'), 3000);
        await exitPromise;
        clearTimeout(killer);
      }
      fs.rmSync(cwd, { recursive: true, force: true });
      if (process.env.SWITCHYARD_E2E_SHOW_LOG) process.stderr.write(launched.output());
    },
  };
  return handle;
}

// ---------------------------------------------------------------------------
// Clusters: several nodes on a redis-server of the suite's own.

/** How long redis-server may take to answer PING after it is started. */
const REDIS_READY_MS = 10000;

/** Send `PING` to 127.0.0.1:port; resolve true on `+PONG`. */
function redisPing(port) {
  return new Promise((resolve) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    let reply = '';
    const done = (ok) => {
      clearTimeout(timer);
      sock.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), 1000);
    sock.on('connect', () => sock.write('PING\r\n'));
    sock.on('data', (chunk) => {
      reply += chunk.toString();
      if (reply.includes('\r\n')) done(reply.startsWith('+PONG'));
    });
    sock.on('error', () => done(false));
  });
}

async function launchRedis(bin) {
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'switchyard-e2e-redis-'));
  // No persistence: nothing is written to `dir`, which only holds the log.
  const proc = spawn(
    bin,
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir],
    { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  const keep = (chunk) => {
    output += chunk.toString();
    if (output.length > 100000) output = output.slice(-50000);
  };
  proc.stdout.on('data', keep);
  proc.stderr.on('data', keep);
  let exited = null;
  const exitPromise = new Promise((resolve) => {
    proc.on('exit', (code, signal) => resolve((exited = { code, signal })));
    proc.on('error', (error) => resolve((exited = { code: null, signal: null, error })));
  });
  const cleanUp = () => fs.rmSync(dir, { recursive: true, force: true });
  const deadline = Date.now() + REDIS_READY_MS;
  for (;;) {
    if (exited) {
      cleanUp();
      if (exited.error && exited.error.code === 'ENOENT') {
        throw new Error(
          `redis-server not found (${bin}): the cluster tests need it, they are never skipped; ` +
            'install it (apt-get install -y redis-server) or set REDIS_SERVER_BIN',
        );
      }
      const why = exited.error ? exited.error.message : `code ${exited.code} signal ${exited.signal}`;
      const err = new Error(`redis-server exited before answering PING (${why}); output:\n${output}`);
      // A free port can be taken between probing and binding.
      err.retryable = !exited.error;
      throw err;
    }
    if (await redisPing(port)) break;
    if (Date.now() > deadline) {
      proc.kill('SIGKILL');
      await exitPromise;
      cleanUp();
      throw new Error(`redis-server did not answer PING within ${REDIS_READY_MS} ms; output:\n${output}`);
    }
    await sleep(20);
  }
  return {
    port,
    url: `redis://127.0.0.1:${port}/`,
    output: () => output,
    async stop() {
      if (!exited) {
        proc.kill('SIGKILL');
        await exitPromise;
      }
      cleanUp();
    },
  };
}

/**
 * Start a redis-server of the suite's own on a free loopback port (never the
 * machine's shared 6379), without persistence. `REDIS_SERVER_BIN` names
 * another binary. A missing redis-server is an error, not a skip.
 * Returns {port, url, output(), stop()}.
 */
async function startRedis() {
  const bin = process.env.REDIS_SERVER_BIN || 'redis-server';
  for (let attempt = 1; ; attempt++) {
    try {
      return await launchRedis(bin);
    } catch (err) {
      if (!err.retryable || attempt >= 3) throw err;
    }
  }
}

/**
 * Start a cluster: `nodes` servers (startServer handles, same app) with
 * ADAPTER_DRIVER=redis on one redis-server and a key prefix unique to this
 * cluster. `redis` reuses a running startRedis() (then stop() leaves it
 * running); `env` is added to every node's environment.
 * Returns {nodes, redis, prefix, stop()}; stop() stops the nodes (their
 * clients first), then the redis-server it started.
 */
async function startCluster({ nodes = 2, env = {}, redis } = {}) {
  const ownRedis = !redis;
  const r = redis || (await startRedis());
  const prefix = `${unique('e2e-cluster-')}:`;
  const started = [];
  const stop = async () => {
    await Promise.all(started.map((n) => n.stop()));
    if (ownRedis) await r.stop();
  };
  try {
    for (let i = 0; i < nodes; i++) {
      started.push(
        await startServer({
          ADAPTER_DRIVER: 'redis',
          REDIS_URL: r.url,
          DATABASE_REDIS_KEY_PREFIX: prefix,
          INSTANCE_PROCESS_ID: `${prefix}node-${i + 1}`,
          ...env,
        }),
      );
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return { nodes: started, redis: r, prefix, stop };
}

/** Parse a `pusher` SDK fetch Response as JSON. */
async function json(responsePromise) {
  const res = await responsePromise;
  const text = await res.text();
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new Error(`expected JSON from ${res.url} (status ${res.status}), got: ${text}`);
  }
}

/** Await a promise expected to reject with the SDK's RequestError; return it. */
async function requestError(promise) {
  try {
    const res = await promise;
    throw new Error(`expected the request to fail, got HTTP ${res.status}: ${await res.text()}`);
  } catch (err) {
    if (err.name === 'PusherRequestError' || err.status !== undefined) return err;
    throw err;
  }
}

/**
 * The Pusher error code inside a pusher-js connection 'error' payload, which
 * comes in two shapes: {type:'PusherError', data:{code}} for a pusher:error
 * frame on an open connection, and {type:'WebSocketError', error:{type:
 * 'PusherError', data:{code}}} for one received during the handshake or a
 * close frame.
 */
function errorCode(err) {
  if (!err) return undefined;
  if (err.data && err.data.code !== undefined) return err.data.code;
  if (err.error) return errorCode(err.error);
  return undefined;
}

/** Laravel Echo: resolve when Echo reports the channel subscribed; reject on .error(). */
function subscribed(echoChannel, ms = 5000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`Echo channel ${echoChannel.name} not subscribed after ${ms} ms`)), ms);
    echoChannel.subscribed(() => {
      clearTimeout(timer);
      resolve(echoChannel);
    });
    echoChannel.error((err) => {
      clearTimeout(timer);
      reject(new Error(`Echo channel ${echoChannel.name} error: ${JSON.stringify(err)}`));
    });
  });
}

let seq = 0;
/** A channel/user name unique within this process. */
function unique(prefix) {
  seq += 1;
  return `${prefix}${process.pid}-${seq}`;
}

module.exports = {
  APP,
  ENCRYPTION_MASTER_KEY_BASE64,
  DEFAULT_TIMEOUT,
  errorCode,
  PusherClient,
  PusherServer,
  json,
  record,
  requestError,
  sleep,
  startCluster,
  startRedis,
  startServer,
  subscribe,
  subscribed,
  unique,
  waitConnected,
  waitEvent,
  waitState,
  waitUntil,
};
