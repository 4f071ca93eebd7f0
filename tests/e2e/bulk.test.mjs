// Bulk HTTP endpoints: GET /__down?bytes=N and POST /__up, their headers, limits and
// refusals, checked with Node's HTTP client against the real server.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import zlib from 'node:zlib';
import { test } from 'node:test';

import {
  KiB,
  MiB,
  collectSocket,
  connectTcp,
  countDistinctBytes,
  getHealth,
  httpRequest,
  openRecordedWebSocket,
  parseHttpResponseHead,
  sleep,
  startServer,
  waitFor,
  waitForIdleServer,
  withTimeout,
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

test('/__down repeats the first MiB of the payload, which differs from the rest', async (t) => {
  // The default payload: 10 MiB in 1 MiB fragments; the /ws message sends all of it.
  const server = await startServer(t, ['--workers', '1']);
  const body = (await httpRequest(server.port, { path: `/__down?bytes=${3 * MiB}` })).body;
  const first = body.subarray(0, MiB);

  assert.equal(body.length, 3 * MiB);
  assert.ok(first.equals(body.subarray(MiB, 2 * MiB)), 'second MiB repeats the first');
  assert.ok(first.equals(body.subarray(2 * MiB)), 'third MiB repeats the first');
  assert.ok(zlib.deflateSync(first).length > 0.99 * MiB, 'the repeated MiB is incompressible');

  const { ws, recorder } = await openRecordedWebSocket(server.port);
  ws.send('go');
  const [{ data: message }] = await recorder.waitForMessages(1, 20_000);
  ws.close();
  assert.equal(message.length, 10 * MiB);
  assert.ok(message.subarray(0, MiB).equals(first), '/ws sends the same first MiB');
  assert.ok(!message.subarray(MiB, 2 * MiB).equals(first), '/ws goes on with other bytes');
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

test('/__up rejects oversized bodies', async (t) => {
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

// Chunked request bodies (Transfer-Encoding: chunked), which the server decodes itself.

const CHUNKED_UP_HEAD = 'POST /__up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n';

// Encodes `body` in the chunked transfer coding, in chunks of at most chunkBytes.
function encodeChunked(body, chunkBytes, { extension = '', trailer = '' } = {}) {
  const parts = [];
  for (let offset = 0; offset < body.length; offset += chunkBytes) {
    const chunk = body.subarray(offset, offset + chunkBytes);
    parts.push(Buffer.from(`${chunk.length.toString(16)}${extension}\r\n`), chunk, Buffer.from('\r\n'));
  }
  parts.push(Buffer.from(`0${extension}\r\n${trailer}\r\n`));
  return Buffer.concat(parts);
}

// Writes `pieces` on one connection, delayMs apart, and resolves with all the server sent
// until it closed the connection. Fails if it stays open for timeoutMs after the last piece.
async function sendPieces(port, pieces, { delayMs = 0, timeoutMs = 5000 } = {}) {
  const socket = await connectTcp(port);
  socket.setNoDelay(true);
  const collector = collectSocket(socket);
  for (const piece of pieces) {
    if (socket.destroyed) {
      break;
    }
    socket.write(piece);
    if (delayMs > 0) {
      await sleep(delayMs);
    }
  }
  const result = await withTimeout(collector.closed, timeoutMs);
  socket.destroy();
  assert.ok(result, `server kept the connection open for ${timeoutMs} ms`);
  return result.data;
}

// Parses the first response in raw bytes received from the server.
function firstResponse(data, label) {
  const head = parseHttpResponseHead(data);
  assert.ok(head, `${label}: no complete response in ${JSON.stringify(data.toString('latin1'))}`);
  return { ...head, text: head.body.toString('latin1') };
}

// Uploads totalBytes to POST /__up with node:http's chunked encoding, one chunk per write of
// writeBytes, and resolves with the status, headers, JSON result and the socket used.
// With `ca`, the upload goes over HTTPS to a server with that certificate.
function uploadChunked(port, totalBytes, { writeBytes = MiB, agent = false, headers = {}, ca } = {}) {
  return new Promise((resolve, reject) => {
    const client = ca ? https : http;
    const request = client.request({ host: '127.0.0.1', port, method: 'POST', path: '/__up', agent, ca,
      headers: { 'Transfer-Encoding': 'chunked', ...headers } }, (response) => {
      const chunks = [];
      response.on('data', (chunk) => chunks.push(chunk));
      response.on('error', reject);
      response.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        resolve({ status: response.statusCode, headers: response.headers, text,
          result: response.statusCode === 200 ? JSON.parse(text) : null, socket: response.socket });
      });
    });
    request.on('error', reject);
    request.setTimeout(20_000, () => request.destroy(new Error(`upload of ${totalBytes} bytes timed out`)));
    const piece = Buffer.alloc(Math.max(1, Math.min(writeBytes, totalBytes)), 0x5a);
    let sent = 0;
    const writeRest = () => {
      while (sent < totalBytes) {
        const n = Math.min(piece.length, totalBytes - sent);
        sent += n;
        if (!request.write(piece.subarray(0, n))) {
          request.once('drain', writeRest);
          return;
        }
      }
      request.end();
    };
    if (headers.Expect) {
      request.on('continue', writeRest);
    } else {
      writeRest();
    }
  });
}

test('/__up counts chunked bodies', async (t) => {
  const server = await startServer(t, ['--workers', '2']);

  for (const bytes of [0, 1, 64 * KiB + 3, 5 * MiB + 1, 64 * MiB]) {
    const response = await uploadChunked(server.port, bytes);
    assert.equal(response.status, 200, `${bytes} bytes: ${response.text}`);
    assert.equal(response.result.bytes, bytes, `${bytes} bytes: counted`);
    assert.equal(typeof response.result.duration_ms, 'number');
    assert.match(response.headers['server-timing'] ?? '', /^app;dur=\d+\.\d{3}$/, 'server-timing');
    assert.equal(response.headers.connection, 'close', `${bytes} bytes: connection ends`);
    assertCorsHeaders(response, `${bytes} bytes`);
  }

  // Small chunks, and a client that waits for 100 Continue before it sends the body.
  const small = await uploadChunked(server.port, 100 * KiB + 7, { writeBytes: 1000 });
  assert.equal(small.result.bytes, 100 * KiB + 7, '1000-byte chunks');
  const started = performance.now();
  const continued = await uploadChunked(server.port, 2 * MiB, { headers: { Expect: '100-continue' } });
  assert.equal(continued.result.bytes, 2 * MiB, 'after 100 Continue');
  assert.ok(performance.now() - started < 900, 'the body was not held back waiting for 100 Continue');

  await waitForIdleServer(server.port);
  await server.stopAndCheck();
});

test('/__up reads chunked bodies past 100 MiB', async (t) => {
  // libwebsockets 4.1.6 delivers at most 100 MiB of a body without Content-Length. Over
  // plain HTTP the server reads the rest from the socket itself.
  const server = await startServer(t, ['--workers', '1']);

  const bytes = 160 * MiB + 5;
  const response = await uploadChunked(server.port, bytes);
  assert.equal(response.status, 200, response.text);
  assert.equal(response.result.bytes, bytes);

  await waitForIdleServer(server.port);
  await server.stopAndCheck();
});

test('chunked body split across TCP writes', async (t) => {
  const server = await startServer(t, ['--workers', '1']);

  // Every byte in its own write: size lines, extensions, CRLFs and trailers all split.
  const small = encodeChunked(Buffer.from('hello, chunked world'), 7,
    { extension: ';name="a;b"', trailer: 'X-Checksum: 1234\r\n' });
  const pieces = [CHUNKED_UP_HEAD, ...[...small].map((byte) => Buffer.from([byte]))];
  const byteByByte = firstResponse(await sendPieces(server.port, pieces, { delayMs: 2 }), 'byte by byte');
  assert.equal(byteByByte.status, 200, byteByByte.text);
  assert.equal(JSON.parse(byteByByte.text).bytes, 20, 'byte by byte');

  // Larger chunks cut at odd places, the first cut inside the first size line.
  const body = Buffer.alloc(300_000, 0x61);
  const stream = encodeChunked(body, 100_000);
  const cuts = [2, 5, 50_000, 100_006, 100_007, 200_011, stream.length - 3, stream.length];
  const parts = [Buffer.from(CHUNKED_UP_HEAD)];
  cuts.reduce((start, end) => {
    parts.push(stream.subarray(start, end));
    return end;
  }, 0);
  const split = firstResponse(await sendPieces(server.port, parts, { delayMs: 20 }), 'odd cuts');
  assert.equal(split.status, 200, split.text);
  assert.equal(JSON.parse(split.text).bytes, 300_000, 'odd cuts');

  // The head and the whole body in one write.
  const whole = firstResponse(await sendPieces(server.port, [CHUNKED_UP_HEAD + stream.toString('latin1')]), 'one write');
  assert.equal(JSON.parse(whole.text).bytes, 300_000, 'one write');

  await server.stopAndCheck();
});

test('malformed chunked bodies get 400', async (t) => {
  const server = await startServer(t, ['--workers', '1']);

  const cases = [
    ['size not hexadecimal', 'zz\r\nhello\r\n0\r\n\r\n', /not a hexadecimal number/],
    ['no size', ';ext\r\nhello\r\n0\r\n\r\n', /not a hexadecimal number/],
    ['data longer than its size', '5\r\nhelloX\r\n0\r\n\r\n', /not followed by CRLF/],
    ['LF without CR after data', '5\r\nhello\n0\r\n\r\n', /not followed by CRLF/],
    ['bare LF in size line', '5\nhello\r\n0\r\n\r\n', /does not end in CRLF/],
    ['size over 64 bits', '10000000000000000\r\n', /does not fit in 64 bits/],
    ['size line over 4096 bytes', `5;${'x'.repeat(5000)}\r\nhello\r\n0\r\n\r\n`, /longer than 4096 bytes/],
    ['trailer field without colon', '0\r\nnot a field\r\n\r\n', /without ':'/],
    ['trailer section over 16384 bytes', `0\r\n${'X-A: 1\r\n'.repeat(3000)}\r\n`, /longer than 16384 bytes/],
  ];
  for (const [name, body, reason] of cases) {
    const response = firstResponse(await sendPieces(server.port, [CHUNKED_UP_HEAD + body]), name);
    assert.equal(response.status, 400, `${name}: ${response.text}`);
    assert.match(response.text, /^invalid chunked request body: /, name);
    assert.match(response.text, reason, name);
    assert.equal(response.headers.connection, 'close', `${name}: connection ends`);
    assertCorsHeaders(response, name);
  }
  assert.match(server.stderr, /POST \/__up rejected with 400: chunk size is not a hexadecimal number/,
    'the reason is logged');

  assert.equal((await getHealth(server.port)).transfers, 0, 'no transfer left running');
  await server.stopAndCheck();
});

test('conflicting transfer codings rejected', async (t) => {
  const server = await startServer(t, ['--workers', '1']);
  const body = '5\r\nhello\r\n0\r\n\r\n';

  const cases = [
    ['Content-Length as well', 'Content-Length: 5\r\nTransfer-Encoding: chunked', 400,
      /both Content-Length and Transfer-Encoding/],
    ['chunked not last', 'Transfer-Encoding: chunked, gzip', 400, /must end in chunked/],
    ['chunked twice', 'Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked', 400, /more than once/],
    ['another coding first', 'Transfer-Encoding: gzip, chunked', 501, /other than chunked/],
  ];
  for (const [name, headers, status, reason] of cases) {
    const request = `POST /__up HTTP/1.1\r\nHost: x\r\n${headers}\r\n\r\n${body}`;
    const response = firstResponse(await sendPieces(server.port, [request]), name);
    assert.equal(response.status, status, `${name}: ${response.text}`);
    assert.match(response.text, reason, name);
    assert.equal(response.headers.connection, 'close', `${name}: connection ends`);
  }

  const http10 = firstResponse(await sendPieces(server.port,
    [`POST /__up HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n${body}`]), 'HTTP/1.0');
  assert.equal(http10.status, 400, 'HTTP/1.0 with Transfer-Encoding');

  // Case and whitespace around the coding do not matter.
  const spaced = firstResponse(await sendPieces(server.port,
    [`POST /__up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:  Chunked \r\n\r\n${body}`]), 'Chunked');
  assert.equal(spaced.status, 200, spaced.text);
  assert.equal(JSON.parse(spaced.text).bytes, 5);

  await server.stopAndCheck();
});

test('chunked /__up over the cap gets 413', async (t) => {
  const server = await startServer(t, ['--workers', '1', '--max-upload-bytes', String(MiB)]);

  // A size line that announces more than the cap gets its 413 before any of its data.
  const announced = firstResponse(await sendPieces(server.port,
    [`${CHUNKED_UP_HEAD}${(MiB + 1).toString(16)}\r\n`]), 'one chunk over the cap');
  assert.equal(announced.status, 413, announced.text);
  assert.match(announced.text, /--max-upload-bytes/);
  assert.equal(announced.headers.connection, 'close');

  // Chunks that add up to one byte over, the second announced after the first one's data.
  const half = Buffer.alloc(MiB / 2, 0x62);
  const adding = firstResponse(await sendPieces(server.port, [CHUNKED_UP_HEAD,
    Buffer.concat([Buffer.from(`${half.length.toString(16)}\r\n`), half, Buffer.from('\r\n')]),
    `${(MiB / 2 + 1).toString(16)}\r\n`], { delayMs: 50 }), 'chunks over the cap');
  assert.equal(adding.status, 413, adding.text);

  const atCap = await uploadChunked(server.port, MiB, { writeBytes: 300 * KiB });
  assert.equal(atCap.status, 200, atCap.text);
  assert.equal(atCap.result.bytes, MiB, 'a body of exactly the cap');

  await waitForIdleServer(server.port);
  await server.stopAndCheck();
});

test('chunked upload ends its connection', async (t) => {
  // libwebsockets 4.1.6 would read the next request on the connection as more body, so the
  // response to a chunked upload closes the connection, and a client's next request goes
  // on a new one.
  const server = await startServer(t, ['--workers', '1']);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

  const first = await uploadChunked(server.port, MiB, { agent });
  assert.equal(first.result.bytes, MiB, 'chunked upload');
  assert.equal(first.headers.connection, 'close');
  const second = await httpRequest(server.port, { method: 'POST', path: '/__up', body: Buffer.alloc(KiB) });
  assert.equal(JSON.parse(second.body.toString()).bytes, KiB, 'next upload with Content-Length');
  const third = await uploadChunked(server.port, 3 * MiB, { agent });
  assert.equal(third.result.bytes, 3 * MiB, 'next chunked upload with the same agent');
  assert.notEqual(third.socket, first.socket, 'the agent opened a new connection');
  agent.destroy();

  // A request pipelined behind a chunked body gets no response, because the connection
  // closes.
  const data = await sendPieces(server.port,
    [`${CHUNKED_UP_HEAD}3\r\nabc\r\n0\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n`]);
  const statuses = [...data.toString('latin1').matchAll(/HTTP\/1\.1 (\d{3})/g)].map((match) => match[1]);
  assert.deepEqual(statuses, ['200'], 'only the upload gets a response');
  assert.equal(JSON.parse(firstResponse(data, 'pipelined').text).bytes, 3);

  await waitForIdleServer(server.port);
  await server.stopAndCheck();
});

test('chunked upload behind a pipelined request', async (t) => {
  // libwebsockets 4.1.6 passes the head of a request pipelined behind another one to the
  // body callback. The server skips it and still counts the body.
  const server = await startServer(t, ['--workers', '1']);

  for (const size of [8, 3 * MiB]) {
    const stream = encodeChunked(Buffer.alloc(size, 0x63), 64 * KiB);
    const data = await sendPieces(server.port,
      [Buffer.concat([Buffer.from(`GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n${CHUNKED_UP_HEAD}`), stream])]);
    const text = data.toString('latin1');
    const statuses = [...text.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((match) => match[1]);
    assert.deepEqual(statuses, ['200', '200'], `${size} bytes: a response to each request`);
    assert.match(text, new RegExp(`\\{"bytes":${size},`), `${size} bytes: counted`);
  }

  await server.stopAndCheck();
});

test('stalled chunked body times out', async (t) => {
  const server = await startServer(t, ['--workers', '1', '--handshake-timeout', '1']);

  // The second piece arrives after the first was read, so the server is reading the
  // socket itself when the client stops.
  const socket = await connectTcp(server.port);
  const collector = collectSocket(socket);
  socket.write(`${CHUNKED_UP_HEAD}10\r\nabc`);
  await sleep(300);
  socket.write('def');
  const stalledAt = performance.now();
  assert.equal((await getHealth(server.port)).transfers, 1, 'the upload counts as a transfer');
  const closed = await withTimeout(collector.closed, 5000);
  socket.destroy();
  assert.ok(closed, 'the server closed the stalled upload');
  const waitedMs = performance.now() - stalledAt;
  assert.ok(waitedMs > 800, `closed ${Math.round(waitedMs)} ms after the client stopped, before the timeout`);
  assert.ok(waitedMs < 3500, `closed ${Math.round(waitedMs)} ms after the client stopped`);
  assert.equal(closed.data.length, 0, 'no answer to an unfinished body');
  await waitForIdleServer(server.port);

  // A client that goes away mid-body gives its slot back at once.
  const abandoned = await connectTcp(server.port);
  abandoned.write(`${CHUNKED_UP_HEAD}100000\r\n${'x'.repeat(1000)}`);
  await sleep(100);
  abandoned.write('y'.repeat(1000));
  await waitFor(async () => (await getHealth(server.port)).transfers === 1, { message: 'upload running' });
  abandoned.destroy();
  await waitForIdleServer(server.port, 2000);

  await server.stopAndCheck();
});

test('chunked bodies on other routes', async (t) => {
  const server = await startServer(t, ['--workers', '1']);

  // A route that takes no body reads it, drops it and responds as it would without one.
  const post = firstResponse(await sendPieces(server.port,
    ['POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n']), 'POST /');
  assert.equal(post.status, 405);
  assert.equal(post.headers.connection, 'close');
  const wrongMethod = firstResponse(await sendPieces(server.port,
    ['PUT /__up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n']), 'PUT /__up');
  assert.equal(wrongMethod.status, 405);
  assert.equal(wrongMethod.headers.allow, 'POST, OPTIONS');

  const big = encodeChunked(Buffer.alloc(MiB + 1, 0x64), 64 * KiB);
  const tooBig = firstResponse(await sendPieces(server.port,
    [Buffer.concat([Buffer.from('POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n'), big])]),
  'over 1 MiB');
  assert.equal(tooBig.status, 413, tooBig.text);

  // lws reads no body for GET, so the response comes at once and the connection closes.
  const get = firstResponse(await sendPieces(server.port,
    ['GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n']), 'GET');
  assert.equal(get.status, 200);
  assert.equal(get.headers.connection, 'close');

  assert.equal((await getHealth(server.port)).status, 'ok', 'still serving');
  await server.stopAndCheck();
});

test('chunked /__up over TLS', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'linkspeed-bulk-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const certFile = path.join(dir, 'cert.pem');
  const keyFile = path.join(dir, 'key.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile,
    '-out', certFile, '-days', '2', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1'],
  { stdio: 'ignore' });
  const ca = fs.readFileSync(certFile);
  const server = await startServer(t, ['--workers', '1', '--tls-cert', certFile, '--tls-key', keyFile]);

  const small = await uploadChunked(server.port, 3 * MiB + 1, { ca });
  assert.equal(small.status, 200, small.text);
  assert.equal(small.result.bytes, 3 * MiB + 1);

  // Only libwebsockets can read a TLS connection, and it delivers at most 100 MiB of a body
  // without Content-Length, framing included. The client sends exactly that much of an
  // unfinished body, so the server has read all of it when it responds.
  const socket = tls.connect({ host: '127.0.0.1', port: server.port, ca });
  await new Promise((resolve, reject) => {
    socket.once('secureConnect', resolve);
    socket.once('error', reject);
  });
  const collector = collectSocket(socket);
  socket.write(CHUNKED_UP_HEAD);
  const chunk = Buffer.concat([Buffer.from(`${MiB.toString(16)}\r\n`), Buffer.alloc(MiB, 0x65),
    Buffer.from('\r\n')]);
  for (let left = 100 * MiB; left > 0; left -= chunk.length) {
    if (!socket.write(chunk.subarray(0, Math.min(left, chunk.length)))) {
      await new Promise((resolve) => socket.once('drain', resolve));
    }
  }
  const closed = await withTimeout(collector.closed, 10_000);
  socket.destroy();
  assert.ok(closed, 'the server answered and closed the connection');
  const over = firstResponse(closed.data, 'over 100 MiB');
  assert.equal(over.status, 413, over.text);
  assert.match(over.text, /over 104857600 bytes with its framing.*Content-Length/);

  await server.stopAndCheck();
});
