// Shared tools for the black-box tests: starting and stopping a real
// `linkspeed serve` process, plain HTTP requests, WebSocket clients from the
// `ws` package, and a raw WebSocket client that reads and writes single frames.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';

export { sleep, WebSocket };

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BINARY = process.env.LINKSPEED_BIN || path.join(REPO_ROOT, 'build', 'linkspeed');

export const KiB = 1024;
export const MiB = 1024 * 1024;

// Text that AddressSanitizer, LeakSanitizer and UBSan print in their reports.
const SANITIZER_REPORT = /runtime error|AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer/;

const START_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 10_000;
const REQUEST_TIMEOUT_MS = 10_000;

// Copies the test runner's environment without LINKSPEED_* variables, so that a
// developer's settings never change what a test starts.
function serverEnvironment(extra = {}) {
  const env = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (!name.startsWith('LINKSPEED_')) {
      env[name] = value;
    }
  }
  return { ...env, ...extra };
}

// A running `linkspeed` child process with its output collected.
export class ServerProcess {
  constructor(child) {
    this.child = child;
    this.spawnedAt = performance.now();
    this.stdout = '';
    this.stderr = '';
    this.exitStatus = null;
    this.logWaiters = [];
    // 'close' comes after 'exit' once stdout and stderr have ended, so the
    // output is complete when exitStatus is set.
    this.exited = new Promise((resolve) => {
      child.on('close', (code, signal) => {
        this.exitStatus = { code, signal };
        resolve(this.exitStatus);
        this.checkLogWaiters();
      });
    });
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (text) => {
      this.stdout += text;
    });
    child.stderr.on('data', (text) => {
      this.stderr += text;
      this.checkLogWaiters();
    });
  }

  checkLogWaiters() {
    for (const waiter of [...this.logWaiters]) {
      const match = this.stderr.match(waiter.pattern);
      if (match) {
        waiter.resolve(match);
      } else if (this.exitStatus) {
        waiter.reject(new Error(
          `server exited (${JSON.stringify(this.exitStatus)}) before logging ${waiter.pattern}; stderr:\n${this.stderr}`));
      }
    }
  }

  // Resolves with the first match of `pattern` in stderr.
  waitForLog(pattern, timeoutMs = START_TIMEOUT_MS) {
    return new Promise((resolve, reject) => {
      const waiter = { pattern };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${pattern} in stderr:\n${this.stderr}`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.logWaiters = this.logWaiters.filter((w) => w !== waiter);
      };
      waiter.resolve = (match) => {
        done();
        resolve(match);
      };
      waiter.reject = (error) => {
        done();
        reject(error);
      };
      this.logWaiters.push(waiter);
      this.checkLogWaiters();
    });
  }

  // Resolves with { code, signal } or with null if the process still runs after timeoutMs.
  async waitForExit(timeoutMs) {
    let timer;
    const timeout = new Promise((resolve) => {
      timer = setTimeout(() => resolve(null), timeoutMs);
    });
    const status = await Promise.race([this.exited, timeout]);
    clearTimeout(timer);
    return status;
  }

  signal(name) {
    if (!this.exitStatus) {
      this.child.kill(name);
    }
  }

  // Sends SIGTERM and resolves with the exit status and the time to exit in ms.
  async terminate(timeoutMs = STOP_TIMEOUT_MS, signalName = 'SIGTERM') {
    const start = performance.now();
    this.signal(signalName);
    const status = await this.waitForExit(timeoutMs);
    return { status, elapsedMs: performance.now() - start };
  }

  // Stops the server with SIGTERM and asserts a clean exit: code 0 and no
  // sanitizer report in stderr.
  async stopAndCheck(timeoutMs = STOP_TIMEOUT_MS) {
    const { status } = await this.terminate(timeoutMs);
    assert.ok(status, `server did not exit within ${timeoutMs} ms of SIGTERM; stderr:\n${this.stderr}`);
    assertNoSanitizerReport(this.stderr);
    assertDurationsWithin(this.stderr, performance.now() - this.spawnedAt);
    assert.equal(status.signal, null, `server was killed by ${status.signal}; stderr:\n${this.stderr}`);
    assert.equal(status.code, 0, `server exited with code ${status.code}; stderr:\n${this.stderr}`);
  }

  // Kills the process if a test ended before stopping it.
  kill() {
    if (!this.exitStatus) {
      this.child.kill('SIGKILL');
    }
  }
}

export function assertNoSanitizerReport(stderr) {
  const match = stderr.match(SANITIZER_REPORT);
  assert.equal(match, null, `sanitizer report in server stderr:\n${stderr}`);
}

// Asserts that no access or session log line reports a duration longer than
// the server has been running, which would show an unset start time.
export function assertDurationsWithin(stderr, lifetimeMs) {
  for (const line of stderr.split('\n')) {
    const match = line.match(/ (?:http|ws): .* (\d+(?:\.\d+)?) ms\b/);
    if (match) {
      assert.ok(Number(match[1]) <= lifetimeMs + 1000,
        `log line reports ${match[1]} ms but the server ran ${Math.round(lifetimeMs)} ms: ${line}`);
    }
  }
}

// Spawns the binary with raw arguments and no listen address of its own.
// Registers a kill with the test context so that no process outlives the test.
export function spawnLinkspeed(t, args, { env = {} } = {}) {
  const child = spawn(BINARY, args, {
    env: serverEnvironment(env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const server = new ServerProcess(child);
  child.on('error', (error) => {
    server.stderr += `\nspawn ${BINARY} failed: ${error.message}\n`;
    server.exitStatus = { code: null, signal: null, error };
    server.checkLogWaiters();
  });
  t.after(() => server.kill());
  return server;
}

// Starts `linkspeed serve` on 127.0.0.1 with a free port, waits for the
// "listening on" log line and returns the process with its `port` set.
// `listen` replaces the default listen addresses; `env` adds variables.
export async function startServer(t, args = [], { env = {}, listen = ['127.0.0.1:0'] } = {}) {
  const listenArgs = listen.flatMap((address) => ['--listen', address]);
  const server = spawnLinkspeed(t, ['serve', ...listenArgs, ...args], { env });
  const match = await server.waitForLog(/listening on 127\.0\.0\.1:(\d+)/);
  server.port = Number(match[1]);
  return server;
}

// Runs the binary to completion and resolves with { code, signal, stdout, stderr }.
// Fails if it still runs after timeoutMs, which for an invalid flag means the
// server started instead of rejecting it.
export async function runLinkspeed(t, args, { env = {}, timeoutMs = 5000 } = {}) {
  const server = spawnLinkspeed(t, args, { env });
  const status = await server.waitForExit(timeoutMs);
  server.kill();
  assert.ok(status, `linkspeed ${args.join(' ')} still ran after ${timeoutMs} ms; stderr:\n${server.stderr}`);
  return { ...status, stdout: server.stdout, stderr: server.stderr };
}

// Sends one HTTP/1.1 request on a new connection (Connection: close) and
// resolves with { status, headers, body }.
export function httpRequest(port, { method = 'GET', path: requestPath = '/', headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const request = http.request({
      host: '127.0.0.1',
      port,
      method,
      path: requestPath,
      headers: { Connection: 'close', ...headers },
      agent: false,
    }, (response) => {
      const chunks = [];
      response.on('data', (chunk) => chunks.push(chunk));
      response.on('error', reject);
      response.on('end', () => resolve({
        status: response.statusCode,
        headers: response.headers,
        body: Buffer.concat(chunks),
      }));
    });
    request.setTimeout(REQUEST_TIMEOUT_MS, () => {
      request.destroy(new Error(`${method} ${requestPath} timed out after ${REQUEST_TIMEOUT_MS} ms`));
    });
    request.on('error', reject);
    request.end(body);
  });
}

export async function getHealth(port) {
  const response = await httpRequest(port, { path: '/healthz' });
  assert.equal(response.status, 200, `GET /healthz returned ${response.status}: ${response.body}`);
  return JSON.parse(response.body.toString('utf8'));
}

// Polls `check` until it returns a truthy value and resolves with that value.
// Rejects with `message` and the last value seen after timeoutMs.
export async function waitFor(check, { timeoutMs = 5000, intervalMs = 50, message = 'condition' } = {}) {
  const deadline = performance.now() + timeoutMs;
  let last;
  for (;;) {
    last = await check();
    if (last) {
      return last;
    }
    if (performance.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${message}; last value: ${JSON.stringify(last)}`);
    }
    await sleep(intervalMs);
  }
}

// Polls /healthz until both `connections` and `transfers` are 0.
export async function waitForIdleServer(port, timeoutMs = 5000) {
  return waitFor(async () => {
    const health = await getHealth(port);
    return health.connections === 0 && health.transfers === 0 ? health : false;
  }, { timeoutMs, intervalMs: 100, message: '/healthz connections and transfers to return to 0' });
}

// Opens a TCP connection to 127.0.0.1:port and resolves once it is connected.
export function connectTcp(port, host = '127.0.0.1') {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port });
    socket.once('connect', () => {
      socket.off('error', reject);
      resolve(socket);
    });
    socket.once('error', reject);
  });
}

// Collects everything a socket receives. `closed` resolves with
// { data, error, elapsedMs } when the peer closes or resets the connection.
export function collectSocket(socket) {
  const start = performance.now();
  const chunks = [];
  const collector = {
    get data() {
      return Buffer.concat(chunks);
    },
    closed: null,
  };
  collector.closed = new Promise((resolve) => {
    let error = null;
    socket.on('data', (chunk) => chunks.push(chunk));
    socket.on('error', (e) => {
      error = e;
    });
    socket.on('close', () => resolve({ data: Buffer.concat(chunks), error, elapsedMs: performance.now() - start }));
  });
  return collector;
}

// Resolves with the result of `promise`, or with `fallback` after timeoutMs.
export async function withTimeout(promise, timeoutMs, fallback = null) {
  let timer;
  const timeout = new Promise((resolve) => {
    timer = setTimeout(() => resolve(fallback), timeoutMs);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

// Parses the status line and headers of an HTTP response at the start of
// `data`. Returns null until the blank line after the headers has arrived.
export function parseHttpResponseHead(data) {
  const end = data.indexOf('\r\n\r\n');
  if (end < 0) {
    return null;
  }
  const lines = data.subarray(0, end).toString('latin1').split('\r\n');
  const statusMatch = lines[0].match(/^HTTP\/1\.[01] (\d{3})/);
  const headers = {};
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    if (colon > 0) {
      headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
  }
  return {
    statusLine: lines[0],
    status: statusMatch ? Number(statusMatch[1]) : null,
    headers,
    body: data.subarray(end + 4),
  };
}

// Writes `request` on a new connection and resolves with the parsed response
// head once it has arrived, or with { status: null, data, closed } if the
// server closed the connection or sent nothing within timeoutMs.
export async function rawHttpExchange(port, request, timeoutMs = 5000) {
  const socket = await connectTcp(port);
  const collector = collectSocket(socket);
  socket.write(request);
  const deadline = performance.now() + timeoutMs;
  let closed = false;
  collector.closed.then(() => {
    closed = true;
  });
  try {
    for (;;) {
      const head = parseHttpResponseHead(collector.data);
      if (head) {
        return { ...head, data: collector.data, closed };
      }
      if (closed || performance.now() > deadline) {
        return { status: null, data: collector.data, closed };
      }
      await sleep(20);
    }
  } finally {
    socket.destroy();
  }
}

// Opens a WebSocket to /ws with the `ws` package. Resolves once open, rejects
// with an error carrying `statusCode` if the server responded with another status.
export function openWebSocket(port, options = {}, { path: wsPath = '/ws', host = '127.0.0.1' } = {}) {
  return new Promise((resolve, reject) => {
    const url = host.includes(':') ? `ws://[${host}]:${port}${wsPath}` : `ws://${host}:${port}${wsPath}`;
    const ws = new WebSocket(url, { perMessageDeflate: false, handshakeTimeout: REQUEST_TIMEOUT_MS, ...options });
    ws.on('open', () => resolve(ws));
    ws.on('unexpected-response', (request, response) => {
      const error = new Error(`WebSocket upgrade rejected with HTTP ${response.statusCode}`);
      error.statusCode = response.statusCode;
      response.resume();
      request.destroy();
      reject(error);
    });
    ws.on('error', reject);
  });
}

// Resolves with the HTTP status that rejected a WebSocket upgrade, and fails
// the test if the upgrade succeeded.
export async function expectUpgradeRejected(port, options = {}, target = {}) {
  try {
    const ws = await openWebSocket(port, options, target);
    ws.terminate();
  } catch (error) {
    if (error.statusCode) {
      return error.statusCode;
    }
    throw error;
  }
  assert.fail('WebSocket upgrade succeeded but a rejection was expected');
}

// Records every message, ping and the close of a `ws` client so that tests
// can await them in order.
export class MessageRecorder {
  constructor(ws) {
    this.ws = ws;
    this.messages = [];
    this.pingTimes = [];
    this.waiters = [];
    this.closeInfo = null;
    this.openedAt = performance.now();
    ws.on('message', (data, isBinary) => {
      this.messages.push({ data, isBinary, time: performance.now() });
      this.notify();
    });
    ws.on('ping', () => {
      this.pingTimes.push(performance.now());
      this.notify();
    });
    ws.on('close', (code, reason) => {
      this.closeInfo = { code, reason: reason.toString(), time: performance.now() };
      this.notify();
    });
    ws.on('error', (error) => {
      this.error = error;
      this.notify();
    });
  }

  notify() {
    for (const waiter of [...this.waiters]) {
      waiter();
    }
  }

  // Resolves once `check()` is truthy, rejects after timeoutMs with `description`.
  waitUntil(check, timeoutMs, description) {
    return new Promise((resolve, reject) => {
      const waiter = () => {
        const value = check();
        if (value) {
          finish();
          resolve(value);
        }
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${description}; ` +
          `messages: ${this.messages.length}, close: ${JSON.stringify(this.closeInfo)}`));
      }, timeoutMs);
      const finish = () => {
        clearTimeout(timer);
        this.waiters = this.waiters.filter((w) => w !== waiter);
      };
      this.waiters.push(waiter);
      waiter();
    });
  }

  // Resolves with the first `count` messages. Fails early if the connection closes.
  async waitForMessages(count, timeoutMs = 10_000) {
    await this.waitUntil(() => this.messages.length >= count || this.closeInfo, timeoutMs, `${count} messages`);
    assert.ok(this.messages.length >= count,
      `connection closed after ${this.messages.length} of ${count} messages: ${JSON.stringify(this.closeInfo)}`);
    return this.messages.slice(0, count);
  }

  waitForClose(timeoutMs = 10_000) {
    return this.waitUntil(() => this.closeInfo, timeoutMs, 'the connection to close');
  }
}

// Opens a `ws` client and attaches a MessageRecorder to it.
export async function openRecordedWebSocket(port, options = {}, target = {}) {
  const ws = await openWebSocket(port, options, target);
  const recorder = new MessageRecorder(ws);
  return { ws, recorder };
}

export const OPCODE = { continuation: 0, text: 1, binary: 2, close: 8, ping: 9, pong: 10 };

// Builds one WebSocket frame. Client frames are masked unless mask is false.
export function encodeFrame(opcode, payload = Buffer.alloc(0), { fin = true, mask = true, declaredLength } = {}) {
  const data = Buffer.from(payload);
  const length = declaredLength ?? data.length;
  let header;
  if (length < 126) {
    header = Buffer.alloc(2);
    header[1] = length;
  } else if (length < 65536) {
    header = Buffer.alloc(4);
    header[1] = 126;
    header.writeUInt16BE(length, 2);
  } else {
    header = Buffer.alloc(10);
    header[1] = 127;
    header.writeBigUInt64BE(BigInt(length), 2);
  }
  header[0] = (fin ? 0x80 : 0) | opcode;
  if (!mask) {
    return Buffer.concat([header, data]);
  }
  header[1] |= 0x80;
  const key = crypto.randomBytes(4);
  const masked = Buffer.alloc(data.length);
  for (let i = 0; i < data.length; i++) {
    masked[i] = data[i] ^ key[i % 4];
  }
  return Buffer.concat([header, key, masked]);
}

export function closePayload(code, reason = '') {
  const payload = Buffer.alloc(2 + Buffer.byteLength(reason));
  payload.writeUInt16BE(code, 0);
  payload.write(reason, 2);
  return payload;
}

// Builds the request text of a WebSocket upgrade, with headers overridden or
// removed (a value of null removes the header).
export function upgradeRequest({ path: requestPath = '/ws', headers = {} } = {}) {
  const all = {
    Host: '127.0.0.1',
    Upgrade: 'websocket',
    Connection: 'Upgrade',
    'Sec-WebSocket-Key': crypto.randomBytes(16).toString('base64'),
    'Sec-WebSocket-Version': '13',
    ...headers,
  };
  const lines = [`GET ${requestPath} HTTP/1.1`];
  for (const [name, value] of Object.entries(all)) {
    if (value !== null) {
      lines.push(`${name}: ${value}`);
    }
  }
  return `${lines.join('\r\n')}\r\n\r\n`;
}

// A WebSocket client on a plain TCP socket that sends hand-made frames and
// records every frame the server sends, including each fragment.
export class RawWebSocket {
  constructor(socket, { autoPong = false } = {}) {
    this.socket = socket;
    this.autoPong = autoPong;
    this.pending = Buffer.alloc(0);
    this.frames = [];
    this.bytesReceived = 0;
    this.closed = false;
    this.waiters = [];
    socket.on('data', (chunk) => {
      this.bytesReceived += chunk.length;
      this.pending = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
      this.parseFrames();
      this.notify();
    });
    socket.on('error', (error) => {
      this.error = error;
    });
    socket.on('close', () => {
      this.closed = true;
      this.notify();
    });
  }

  // Connects, sends an upgrade request and resolves once the 101 response has arrived.
  // With autoPong, the client sends a pong for every ping from the server.
  static async connect(port, { path: requestPath = '/ws', headers = {}, timeoutMs = 5000, autoPong = false } = {}) {
    const socket = await connectTcp(port);
    const handshake = await new Promise((resolve, reject) => {
      let data = Buffer.alloc(0);
      const onData = (chunk) => {
        data = Buffer.concat([data, chunk]);
        const head = parseHttpResponseHead(data);
        if (head) {
          finish();
          resolve(head);
        }
      };
      const onClose = () => {
        finish();
        reject(new Error(`connection closed during the WebSocket handshake; received: ${data.toString('latin1')}`));
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`WebSocket handshake timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      const finish = () => {
        clearTimeout(timer);
        socket.off('data', onData);
        socket.off('close', onClose);
      };
      socket.on('data', onData);
      socket.on('close', onClose);
      socket.write(upgradeRequest({ path: requestPath, headers }));
    });
    assert.equal(handshake.status, 101, `upgrade rejected with: ${handshake.statusLine}`);
    const client = new RawWebSocket(socket, { autoPong });
    if (handshake.body.length) {
      socket.emit('data', handshake.body);
    }
    return client;
  }

  parseFrames() {
    for (;;) {
      const data = this.pending;
      if (data.length < 2) {
        return;
      }
      const fin = (data[0] & 0x80) !== 0;
      const rsv = (data[0] & 0x70) >> 4;
      const opcode = data[0] & 0x0f;
      const masked = (data[1] & 0x80) !== 0;
      let length = data[1] & 0x7f;
      let offset = 2;
      if (length === 126) {
        if (data.length < 4) {
          return;
        }
        length = data.readUInt16BE(2);
        offset = 4;
      } else if (length === 127) {
        if (data.length < 10) {
          return;
        }
        length = Number(data.readBigUInt64BE(2));
        offset = 10;
      }
      if (masked) {
        offset += 4;
      }
      if (data.length < offset + length) {
        return;
      }
      const payload = data.subarray(offset, offset + length);
      this.frames.push({ fin, rsv, opcode, masked, payload, time: performance.now() });
      this.pending = data.subarray(offset + length);
      if (opcode === OPCODE.ping && this.autoPong && !this.socket.destroyed) {
        this.send(OPCODE.pong, payload);
      }
    }
  }

  notify() {
    for (const waiter of [...this.waiters]) {
      waiter();
    }
  }

  waitUntil(check, timeoutMs, description) {
    return new Promise((resolve, reject) => {
      const waiter = () => {
        const value = check();
        if (value) {
          finish();
          resolve(value);
        } else if (this.closed) {
          finish();
          reject(new Error(`connection closed while waiting for ${description}; frames: ${this.describeFrames()}`));
        }
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${description}; frames: ${this.describeFrames()}`));
      }, timeoutMs);
      const finish = () => {
        clearTimeout(timer);
        this.waiters = this.waiters.filter((w) => w !== waiter);
      };
      this.waiters.push(waiter);
      waiter();
    });
  }

  describeFrames() {
    const lastFrames = this.frames.slice(-5).map((f) => `{opcode ${f.opcode}, fin ${f.fin}, ${f.payload.length} bytes}`);
    return `${this.frames.length} in total, last: ${lastFrames.join(', ')}`;
  }

  send(opcode, payload, options) {
    this.socket.write(encodeFrame(opcode, payload, options));
  }

  // Resolves with the first frame that has `opcode`.
  waitForFrame(opcode, timeoutMs = 5000) {
    return this.waitUntil(() => this.frames.find((frame) => frame.opcode === opcode), timeoutMs, `a frame with opcode ${opcode}`);
  }

  // Resolves with the status code of the server's close frame.
  async waitForCloseCode(timeoutMs = 5000) {
    const frame = await this.waitForFrame(OPCODE.close, timeoutMs);
    assert.ok(frame.payload.length >= 2, `close frame without a status code: ${frame.payload.toString('hex')}`);
    return frame.payload.readUInt16BE(0);
  }

  // Resolves with the data frames of the first complete message: a text or
  // binary frame and its continuation frames up to the one with FIN set.
  async waitForMessageFrames(timeoutMs = 10_000) {
    const dataFrames = () => this.frames.filter((frame) => frame.opcode < 8);
    await this.waitUntil(() => dataFrames().some((frame) => frame.fin), timeoutMs, 'a complete data message');
    const frames = dataFrames();
    return frames.slice(0, frames.findIndex((frame) => frame.fin) + 1);
  }

  destroy() {
    this.socket.destroy();
  }
}

// Returns how many distinct byte values occur in `data`.
export function countDistinctBytes(data) {
  const seen = new Uint8Array(256);
  for (const byte of data) {
    seen[byte] = 1;
  }
  return seen.reduce((sum, value) => sum + value, 0);
}

export function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

// Writes `request` on a new connection and resolves with everything received
// until the server closes it. Fails if the server keeps it open past timeoutMs.
export async function rawHttpUntilClose(port, request, timeoutMs = 5000) {
  const socket = await connectTcp(port);
  const collector = collectSocket(socket);
  socket.write(request);
  const result = await withTimeout(collector.closed, timeoutMs);
  socket.destroy();
  assert.ok(result, `server kept the connection open for ${timeoutMs} ms after: ${JSON.stringify(request)}`);
  return result.data;
}
