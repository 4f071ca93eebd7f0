// Connection limits: --max-connections rejects with 503 and
// --max-transfers-per-ip rejects the WebSocket upgrade with 429, also when
// connections are spread over several workers.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  collectSocket,
  connectTcp,
  expectUpgradeRejected,
  getHealth,
  httpRequest,
  openRecordedWebSocket,
  openWebSocket,
  sleep,
  startServer,
  waitFor,
  withTimeout,
} from './helpers.mjs';

// Opens a connection over the limit and resolves with everything the server
// sent before closing it. The server may respond at once or after a request,
// so the request is only sent if nothing arrived within 300 ms.
async function connectOverLimit(port) {
  const socket = await connectTcp(port);
  const collector = collectSocket(socket);
  await withTimeout(collector.closed, 300);
  if (collector.data.length === 0 && !socket.destroyed) {
    socket.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n');
  }
  const result = await withTimeout(collector.closed, 5000);
  socket.destroy();
  assert.ok(result, 'server kept the connection over --max-connections open for 5 s');
  return result;
}

async function checkMaxConnections(t, workers) {
  const server = await startServer(t, ['--workers', String(workers), '--max-connections', '5', '--payload-size', '1000']);

  const idle = [];
  for (let i = 0; i < 4; i++) {
    const socket = await connectTcp(server.port);
    collectSocket(socket);
    idle.push(socket);
  }
  await waitFor(async () => (await getHealth(server.port)).connections === 4,
    { timeoutMs: 3000, message: '4 idle connections to be counted' });
  const fifth = await connectTcp(server.port);
  collectSocket(fifth);
  idle.push(fifth);
  await sleep(200);

  for (let attempt = 0; attempt < 3; attempt++) {
    const rejected = await connectOverLimit(server.port);
    const text = rejected.data.toString('latin1');
    assert.match(text, /^HTTP\/1\.1 503 /, `connection over the limit (attempt ${attempt}) got ${JSON.stringify(text.slice(0, 80))}` +
      (rejected.error ? ` and ${rejected.error.code}` : ''));
  }
  for (const [index, socket] of idle.entries()) {
    assert.equal(socket.destroyed, false, `idle connection ${index} within the limit stays open`);
  }

  // Closing one connection makes room for a new one.
  idle.shift().destroy();
  const health = await waitFor(async () => {
    const response = await httpRequest(server.port, { path: '/healthz' }).catch(() => null);
    return response?.status === 200 ? JSON.parse(response.body) : false;
  }, { timeoutMs: 3000, intervalMs: 100, message: '/healthz to return 200 after one connection closed' });
  assert.equal(health.connections, 4);

  for (const socket of idle) {
    socket.destroy();
  }
  const { ws, recorder } = await waitFor(() => openRecordedWebSocket(server.port).catch(() => null),
    { timeoutMs: 3000, intervalMs: 100, message: 'a WebSocket to open after the idle connections closed' });
  ws.send('go');
  const [message] = await recorder.waitForMessages(1);
  assert.equal(message.data.length, 1000);
  ws.close(1000);
  await recorder.waitForClose();

  await server.stopAndCheck();
}

test('--max-connections returns 503 with one worker', async (t) => {
  await checkMaxConnections(t, 1);
});

test('--max-connections returns 503 across two workers', async (t) => {
  await checkMaxConnections(t, 2);
});

async function checkMaxTransfersPerIp(t, workers) {
  const server = await startServer(t, ['--workers', String(workers), '--max-transfers-per-ip', '3', '--payload-size', '1000']);

  const open = [];
  for (let i = 0; i < 3; i++) {
    open.push(await openRecordedWebSocket(server.port));
  }
  for (let attempt = 0; attempt < 3; attempt++) {
    const status = await expectUpgradeRejected(server.port);
    assert.equal(status, 429, `upgrade over the limit (attempt ${attempt})`);
  }

  // Plain HTTP is not limited by the per-IP WebSocket count. The rejected upgrades'
  // connections may still be closing in the other worker, so the count is awaited.
  const health = await waitFor(async () => {
    const current = await getHealth(server.port);
    return current.connections === 3 ? current : null;
  }, { timeoutMs: 3000, intervalMs: 50, message: '/healthz to count the 3 open connections' });
  assert.equal(health.connections, 3);

  // The open clients keep working.
  for (const { ws, recorder } of open) {
    ws.send('go');
    const [message] = await recorder.waitForMessages(1);
    assert.equal(message.data.length, 1000);
  }

  // Closing one WebSocket makes room for a new one.
  const closing = open.shift();
  closing.ws.close(1000);
  await closing.recorder.waitForClose();
  const replacement = await waitFor(() => openWebSocket(server.port).catch(() => null),
    { timeoutMs: 3000, intervalMs: 100, message: 'a WebSocket to open after one closed' });
  assert.equal(await expectUpgradeRejected(server.port), 429, 'the limit applies again with 3 open');

  replacement.close(1000);
  for (const { ws } of open) {
    ws.close(1000);
  }
  await server.stopAndCheck();
}

test('--max-transfers-per-ip returns 429 with one worker', async (t) => {
  await checkMaxTransfersPerIp(t, 1);
});

test('--max-transfers-per-ip returns 429 across two workers', async (t) => {
  await checkMaxTransfersPerIp(t, 2);
});

test('--max-transfers-per-ip counts each address apart', async (t) => {
  const server = await startServer(t, ['--workers', '2', '--max-transfers-per-ip', '2', '--payload-size', '1000'],
    { listen: ['127.0.0.1:0', '[::1]:0'] });
  const v6Match = await server.waitForLog(/listening on \[::1\]:(\d+)/);
  const v6Port = Number(v6Match[1]);

  const v4Clients = [await openWebSocket(server.port), await openWebSocket(server.port)];
  assert.equal(await expectUpgradeRejected(server.port), 429, 'third upgrade from 127.0.0.1');

  const v6Clients = [
    await openWebSocket(v6Port, {}, { host: '::1' }),
    await openWebSocket(v6Port, {}, { host: '::1' }),
  ];
  assert.equal(await expectUpgradeRejected(v6Port, {}, { host: '::1' }), 429, 'third upgrade from ::1');

  for (const ws of [...v4Clients, ...v6Clients]) {
    ws.close(1000);
  }
  await server.stopAndCheck();
});
