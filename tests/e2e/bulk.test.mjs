// Bulk HTTP endpoints: GET /__down?bytes=N and POST /__up, their headers, limits and
// refusals, checked with Node's HTTP client against the real server.

import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import zlib from 'node:zlib';
import { test } from 'node:test';

import {
  KiB,
  MiB,
  countDistinctBytes,
  getHealth,
  httpRequest,
  sleep,
  startServer,
  waitFor,
  waitForIdleServer,
} from './helpers.mjs';

const CORS_HEADERS = {
  'cache-control': 'no-store',
  'access-control-allow-origin': '*',
  'timing-allow-origin': '*',
  'access-control-expose-headers': 'server-timing',
};

function assertCorsHeaders(response, what) {
  for (const [name, value] of Object.entries(CORS_HEADERS)) {
    assert.equal(response.headers[name], value, `${what}: header ${name}`);
  }
}

test('/__down sends exactly N random bytes', async (t) => {
  // A small payload in small fragments makes N span several passes over the payload.
  const server = await startServer(t, ['--workers', '1', '--payload-size', String(64 * KiB),
    '--fragment-size', String(16 * KiB)]);

  for (const bytes of [1, 16 * KiB, 16 * KiB + 1, 64 * KiB, 3.5 * 64 * KiB + 7, 8 * MiB]) {
    const response = await httpRequest(server.port, { path: `/__down?bytes=${bytes}` });
    assert.equal(response.status, 200, `bytes=${bytes}`);
    assert.equal(response.headers['content-length'], String(bytes), `bytes=${bytes}: Content-Length`);
    assert.equal(response.body.length, bytes, `bytes=${bytes}: body length`);
    assert.equal(response.headers['content-type'], 'application/octet-stream');
    assert.equal(response.headers['content-encoding'], undefined, 'never compressed');
    assertCorsHeaders(response, `bytes=${bytes}`);
  }

  const sample = (await httpRequest(server.port, { path: `/__down?bytes=${MiB}` })).body;
  assert.equal(countDistinctBytes(sample), 256, 'all byte values occur');
  assert.ok(zlib.deflateSync(sample.subarray(0, 64 * KiB)).length > 0.99 * 64 * KiB, 'incompressible');

  const empty = await httpRequest(server.port, { path: '/__down?bytes=0' });
  assert.equal(empty.status, 200);
  assert.equal(empty.body.length, 0);

  const head = await httpRequest(server.port, { method: 'HEAD', path: '/__down?bytes=12345' });
  assert.equal(head.status, 200);
  assert.equal(head.headers['content-length'], '12345');
  assert.equal(head.body.length, 0, 'HEAD has no body');

  await waitForIdleServer(server.port);
  await server.stopAndCheck();
});

test('/__down rejects invalid byte counts', async (t) => {
  const server = await startServer(t, ['--workers', '1', '--max-download-bytes', '1000']);

  for (const query of ['', '?bytes=', '?bytes=-1', '?bytes=abc', '?bytes=12x', '?bytes=1001',
    '?bytes=99999999999999999999999', '?other=5']) {
    const response = await httpRequest(server.port, { path: `/__down${query}` });
    assert.equal(response.status, 400, `/__down${query}`);
    assert.match(response.body.toString(), /--max-download-bytes/, `/__down${query}: message`);
  }
  const atLimit = await httpRequest(server.port, { path: '/__down?bytes=1000' });
  assert.equal(atLimit.status, 200);
  assert.equal(atLimit.body.length, 1000);

  await server.stopAndCheck();
});

test('/__up counts the whole body', async (t) => {
  const server = await startServer(t, ['--workers', '2']);

  for (const bytes of [0, 1, 64 * KiB, 5 * MiB + 3, 48 * MiB]) {
    const response = await httpRequest(server.port, {
      method: 'POST', path: '/__up', body: Buffer.alloc(bytes, 0x5a),
    });
    assert.equal(response.status, 200, `${bytes} bytes`);
    const result = JSON.parse(response.body.toString());
    assert.equal(result.bytes, bytes, `${bytes} bytes: counted`);
    assert.equal(typeof result.duration_ms, 'number');
    assert.match(response.headers['server-timing'] ?? '', /^app;dur=\d+\.\d{3}$/, 'server-timing');
    assertCorsHeaders(response, `${bytes} bytes`);
  }

  await waitForIdleServer(server.port);
  await server.stopAndCheck();
});

test('/__up answers Expect: 100-continue', async (t) => {
  const server = await startServer(t, ['--workers', '1']);

  const started = performance.now();
  const result = await new Promise((resolve, reject) => {
    const request = http.request({
      host: '127.0.0.1', port: server.port, method: 'POST', path: '/__up', agent: false,
      headers: { Expect: '100-continue', 'Content-Length': String(2 * MiB) },
    }, (response) => {
      const chunks = [];
      response.on('data', (chunk) => chunks.push(chunk));
      response.on('end', () => resolve({ status: response.statusCode, body: Buffer.concat(chunks) }));
    });
    request.on('continue', () => request.end(Buffer.alloc(2 * MiB, 1)));
    request.on('error', reject);
    request.setTimeout(5000, () => request.destroy(new Error('no 100 Continue within 5 s')));
  });
  assert.equal(result.status, 200);
  assert.equal(JSON.parse(result.body.toString()).bytes, 2 * MiB);
  assert.ok(performance.now() - started < 900, 'the body was not held back waiting for 100 Continue');

  await server.stopAndCheck();
});

test('/__up sequential requests keep the connection', async (t) => {
  const server = await startServer(t, ['--workers', '1']);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const sockets = new Set();

  for (let i = 0; i < 5; i++) {
    const body = Buffer.alloc(MiB + i, 7);
    const result = await new Promise((resolve, reject) => {
      const request = http.request({ host: '127.0.0.1', port: server.port, method: 'POST',
        path: '/__up', agent }, (response) => {
        sockets.add(response.socket);
        const chunks = [];
        response.on('data', (chunk) => chunks.push(chunk));
        response.on('end', () => resolve(JSON.parse(Buffer.concat(chunks).toString())));
      });
      request.on('error', reject);
      request.end(body);
    });
    assert.equal(result.bytes, MiB + i, `request ${i}`);
  }
  assert.equal(sockets.size, 1, 'all five requests used one connection');
  agent.destroy();

  await server.stopAndCheck();
});

test('/__up rejects oversized and chunked bodies', async (t) => {
  const server = await startServer(t, ['--workers', '1', '--max-upload-bytes', String(MiB)]);

  // With Expect: 100-continue the client waits for the verdict, so the 413 cannot be lost
  // to a reset while the client is still sending the body the server will not read.
  const over = await new Promise((resolve, reject) => {
    const request = http.request({ host: '127.0.0.1', port: server.port, method: 'POST',
      path: '/__up', agent: false,
      headers: { Expect: '100-continue', 'Content-Length': String(MiB + 1) } }, (response) => {
      const chunks = [];
      response.on('data', (chunk) => chunks.push(chunk));
      response.on('end', () => resolve({ status: response.statusCode, body: Buffer.concat(chunks) }));
    });
    request.on('continue', () => reject(new Error('server sent 100 Continue for an oversized body')));
    request.on('error', reject);
  });
  assert.equal(over.status, 413, 'body over --max-upload-bytes');
  assert.match(over.body.toString(), /--max-upload-bytes/);
  const atLimit = await httpRequest(server.port, { method: 'POST', path: '/__up', body: Buffer.alloc(MiB) });
  assert.equal(atLimit.status, 200);

  const chunked = await new Promise((resolve, reject) => {
    const request = http.request({ host: '127.0.0.1', port: server.port, method: 'POST',
      path: '/__up', agent: false, headers: { 'Transfer-Encoding': 'chunked' } }, (response) => {
      const chunks = [];
      response.on('data', (chunk) => chunks.push(chunk));
      response.on('end', () => resolve({ status: response.statusCode, body: Buffer.concat(chunks) }));
    });
    request.on('error', reject);
    request.write('hello');
    request.end();
  });
  assert.equal(chunked.status, 411, 'chunked body');

  assert.equal((await getHealth(server.port)).status, 'ok', 'still serving');
  await server.stopAndCheck();
});

test('bulk routes answer preflight and wrong methods', async (t) => {
  const server = await startServer(t, ['--workers', '1']);

  const cases = [
    ['/__down', 'GET, HEAD, OPTIONS', ['POST', 'PUT', 'DELETE', 'PATCH']],
    ['/__up', 'POST, OPTIONS', ['GET', 'HEAD', 'PUT', 'DELETE', 'PATCH']],
  ];
  for (const [path, allowed, wrong] of cases) {
    const preflight = await httpRequest(server.port, { method: 'OPTIONS', path,
      headers: { Origin: 'https://example.test', 'Access-Control-Request-Method': 'POST' } });
    assert.equal(preflight.status, 204, `${path} OPTIONS`);
    assert.equal(preflight.headers['access-control-allow-methods'], allowed);
    assertCorsHeaders(preflight, `${path} OPTIONS`);
    for (const method of wrong) {
      const response = await httpRequest(server.port, { method, path: `${path}?bytes=10` });
      assert.equal(response.status, 405, `${method} ${path}`);
      assert.equal(response.headers.allow, allowed, `${method} ${path}: Allow`);
    }
  }

  await server.stopAndCheck();
});

test('bulk transfers count toward per-address limit', async (t) => {
  const server = await startServer(t, ['--workers', '2', '--max-transfers-per-ip', '2']);

  // Two downloads that the client does not read stay open and hold both slots.
  const stalled = [];
  for (let i = 0; i < 2; i++) {
    const socket = net.connect(server.port, '127.0.0.1');
    socket.write(`GET /__down?bytes=${512 * MiB} HTTP/1.1\r\nHost: x\r\n\r\n`);
    socket.pause();
    stalled.push(socket);
  }
  await waitFor(async () => (await getHealth(server.port)).transfers === 2,
    { message: 'two downloads running' });

  const rejected = await httpRequest(server.port, { path: '/__down?bytes=10' });
  assert.equal(rejected.status, 429, 'third download');
  const rejectedUpload = await httpRequest(server.port, { method: 'POST', path: '/__up', body: 'abc' });
  assert.equal(rejectedUpload.status, 429, 'upload while two downloads run');

  // Clients that vanish mid-transfer give their slots back.
  for (const socket of stalled) socket.destroy();
  await waitForIdleServer(server.port);
  const after = await httpRequest(server.port, { path: '/__down?bytes=10' });
  assert.equal(after.status, 200, 'download after the others ended');

  await sleep(50);
  await server.stopAndCheck();
});

test('/__down keeps a slow reader past the timeout', async (t) => {
  // The download lasts several times --handshake-timeout; progress must keep it alive,
  // while a reader that stops altogether is cut.
  const server = await startServer(t, ['--workers', '1', '--handshake-timeout', '1']);
  const bytes = 12 * MiB;

  const received = await new Promise((resolve, reject) => {
    const request = http.get({ host: '127.0.0.1', port: server.port, path: `/__down?bytes=${bytes}`,
      agent: false }, (response) => {
      let count = 0;
      let sincePause = 0;
      response.on('data', (chunk) => {
        count += chunk.length;
        sincePause += chunk.length;
        if (sincePause >= 256 * KiB) {
          sincePause = 0;
          response.pause();
          setTimeout(() => response.resume(), 60);
        }
      });
      response.on('end', () => resolve(count));
      response.on('error', reject);
    });
    request.on('error', reject);
  });
  assert.equal(received, bytes, 'the slow reader got every byte');

  const stalled = net.connect(server.port, '127.0.0.1');
  stalled.write(`GET /__down?bytes=${512 * MiB} HTTP/1.1\r\nHost: x\r\n\r\n`);
  stalled.pause();
  const started = performance.now();
  await waitFor(async () => (await getHealth(server.port)).transfers === 0 && performance.now() - started > 500,
    { timeoutMs: 6000, message: 'a reader that stopped to be cut' });
  stalled.destroy();

  await server.stopAndCheck();
});
