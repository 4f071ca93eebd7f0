// /api/v1/latency: the WebSocket echo used for idle and loaded latency probes.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { WebSocket, expectUpgradeRejected, openWebSocket, startServer, waitForIdleServer } from './helpers.mjs';

const LATENCY = { path: '/api/v1/latency' };

function nextMessage(ws) {
  return new Promise((resolve, reject) => {
    ws.once('message', (data, isBinary) => resolve({ data, isBinary }));
    ws.once('close', (code) => reject(new Error(`closed with ${code} before the echo`)));
  });
}

function closed(ws) {
  return new Promise((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
}

test('latency probes are echoed unchanged', async (t) => {
  const server = await startServer(t, ['--workers', '2']);
  const ws = await openWebSocket(server.port, {}, LATENCY);

  const rtts = [];
  for (let i = 0; i < 50; i++) {
    const started = performance.now();
    const text = `probe ${i} ${'x'.repeat(i)}`;
    ws.send(text);
    const echo = await nextMessage(ws);
    rtts.push(performance.now() - started);
    assert.equal(echo.isBinary, false, 'text probe gets a text echo');
    assert.equal(echo.data.toString(), text);
  }
  const binary = Buffer.from([0, 1, 2, 250, 255]);
  ws.send(binary);
  const echo = await nextMessage(ws);
  assert.equal(echo.isBinary, true, 'binary probe gets a binary echo');
  assert.deepEqual(Buffer.from(echo.data), binary);

  const largest = 'y'.repeat(256);
  ws.send(largest);
  assert.equal((await nextMessage(ws)).data.toString(), largest, 'a 256-byte probe is echoed');

  rtts.sort((a, b) => a - b);
  assert.ok(rtts[25] < 50, `median loopback round trip ${rtts[25].toFixed(2)} ms`);

  ws.close(1000);
  assert.equal((await closed(ws)).code, 1000);
  await waitForIdleServer(server.port);
  await server.stopAndCheck();
});

test('latency probe over 256 bytes closes with 1009', async (t) => {
  const server = await startServer(t, ['--workers', '1']);
  const ws = await openWebSocket(server.port, {}, LATENCY);

  ws.send('z'.repeat(257));
  assert.equal((await closed(ws)).code, 1009);
  await server.stopAndCheck();
});

test('latency probe rate and bursts', async (t) => {
  const server = await startServer(t, ['--workers', '1']);

  // Batches of 10 stay below the queue of 16 echoes, so only the rate limit can stop this
  // loop, and they go fast enough to pass 200 per second even on a slow build.
  const ws = await openWebSocket(server.port, {}, LATENCY);
  const ended = closed(ws);
  let echoed = 0;
  ws.on('message', () => echoed++);
  const started = performance.now();
  for (let batch = 0; batch < 100 && ws.readyState === WebSocket.OPEN; batch++) {
    const target = echoed + 10;
    for (let i = 0; i < 10; i++) ws.send('p');
    while (echoed < target && ws.readyState === WebSocket.OPEN) {
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
  }
  const result = await ended;
  const elapsedMs = performance.now() - started;
  assert.equal(result.code, 1008, `after ${echoed} echoes in ${elapsedMs.toFixed(0)} ms`);
  assert.ok(echoed >= 200, `${echoed} probes were echoed before the close`);

  // A burst larger than the queue of echoes waits in the socket and is echoed in order.
  const burst = await openWebSocket(server.port, {}, LATENCY);
  const echoes = [];
  const allEchoed = new Promise((resolve) => {
    burst.on('message', (data) => {
      echoes.push(data.toString());
      if (echoes.length === 100) resolve();
    });
  });
  for (let i = 0; i < 100; i++) burst.send(`b${i}`);
  await allEchoed;
  assert.deepEqual(echoes, Array.from({ length: 100 }, (_, i) => `b${i}`), 'burst of 100 probes');
  burst.close(1000);
  assert.equal((await closed(burst)).code, 1000);

  await server.stopAndCheck();
});

test('latency endpoint rejects subprotocols and idles out', async (t) => {
  const server = await startServer(t, ['--workers', '1', '--idle-timeout', '1']);

  assert.equal(await expectUpgradeRejected(server.port, {}, { path: '/api/v1/latency/x' }), 404);
  const status = await new Promise((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${server.port}/api/v1/latency`, 'some-protocol');
    ws.on('unexpected-response', (request, response) => resolve(response.statusCode));
    ws.on('open', () => resolve('open'));
    ws.on('error', () => {});
  });
  assert.equal(status, 400, 'a subprotocol on the latency endpoint');

  const ws = await openWebSocket(server.port, {}, LATENCY);
  const started = performance.now();
  await closed(ws);
  const idleMs = performance.now() - started;
  assert.ok(idleMs > 700, `idle probe connection closed after only ${idleMs.toFixed(0)} ms`);
  assert.ok(idleMs < 4000, `idle probe connection closed after ${idleMs.toFixed(0)} ms`);

  await server.stopAndCheck();
});
