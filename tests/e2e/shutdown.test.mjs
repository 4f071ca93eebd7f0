// Shutdown on SIGTERM and SIGINT: no new connections, running transfers get
// --shutdown-grace seconds to finish, then a summary line and exit status 0.

import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';

import {
  assertNoSanitizerReport,
  getHealth,
  MiB,
  openRecordedWebSocket,
  sleep,
  spawnLinkspeed,
  startServer,
  waitFor,
  withTimeout,
} from './helpers.mjs';

const SUMMARY_LINE = /(stopped|summary)/i;

// Tries a new connection and a request. Resolves with the HTTP status line
// if the server responded within timeoutMs, or with how the attempt failed.
function tryNewRequest(port, timeoutMs = 1500) {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let data = '';
    const timer = setTimeout(() => finish('no response'), timeoutMs);
    const finish = (outcome) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(outcome);
    };
    socket.on('connect', () => socket.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n'));
    socket.on('data', (chunk) => {
      data += chunk.toString('latin1');
      if (data.includes('\r\n')) {
        finish(data.split('\r\n')[0]);
      }
    });
    socket.on('error', (error) => finish(error.code));
    socket.on('close', () => finish(data ? data.split('\r\n')[0] : 'closed'));
  });
}

// Starts a transfer on a paused client and waits until /healthz counts it.
async function startPausedTransfer(port) {
  const { ws, recorder } = await openRecordedWebSocket(port, { maxPayload: 512 * MiB });
  ws.pause();
  ws.send('go');
  await waitFor(async () => (await getHealth(port)).transfers === 1,
    { timeoutMs: 5000, message: 'the paused transfer to be counted' });
  return { ws, recorder };
}

test('SIGTERM lets a running transfer finish', async (t) => {
  const payloadSize = 64 * MiB;
  const server = await startServer(t, ['--workers', '2', '--payload-size', String(payloadSize),
    '--fragment-size', '65536', '--shutdown-grace', '5']);
  const { ws, recorder } = await startPausedTransfer(server.port);

  server.signal('SIGTERM');
  const signalTime = performance.now();
  await server.waitForLog(/SIGTERM/, 3000);
  // The workers stop accepting once the signal reaches them, shortly after the log line.
  await sleep(200);

  const newRequest = await tryNewRequest(server.port);
  assert.doesNotMatch(newRequest, /^HTTP\/1\.1 200/, 'a new request after SIGTERM is not served');
  assert.equal(server.exitStatus, null, 'server waits for the running transfer');

  ws.resume();
  const [message] = await recorder.waitForMessages(1, 5000);
  assert.equal(message.data.length, payloadSize, 'the running transfer completes');

  const status = await server.waitForExit(8000);
  const elapsedMs = performance.now() - signalTime;
  assert.ok(status, `server still ran ${Math.round(elapsedMs)} ms after SIGTERM; stderr:\n${server.stderr}`);
  assert.equal(status.code, 0, `exit status; stderr:\n${server.stderr}`);
  assert.ok(elapsedMs < 7000, `server exited ${Math.round(elapsedMs)} ms after SIGTERM with a 5 s grace`);
  const afterSignal = server.stderr.slice(server.stderr.indexOf('SIGTERM'));
  assert.match(afterSignal, SUMMARY_LINE, `summary line after SIGTERM:\n${server.stderr}`);
  assertNoSanitizerReport(server.stderr);
});

test('SIGTERM ends a stuck transfer after the grace', async (t) => {
  const server = await startServer(t, ['--workers', '1', '--payload-size', String(256 * MiB),
    '--fragment-size', '65536', '--shutdown-grace', '1']);
  const { ws } = await startPausedTransfer(server.port);

  // The paused client never reads the rest, so only the grace ends the transfer.
  const { status, elapsedMs } = await server.terminate(10_000);
  ws.terminate();
  assert.ok(status, `server did not exit within 10 s of SIGTERM with a 1 s grace; stderr:\n${server.stderr}`);
  assert.equal(status.code, 0, `exit status; stderr:\n${server.stderr}`);
  assert.ok(elapsedMs >= 800, `server exited ${Math.round(elapsedMs)} ms after SIGTERM, before the 1 s grace`);
  assert.ok(elapsedMs <= 4000, `server exited ${Math.round(elapsedMs)} ms after SIGTERM with a 1 s grace`);
  assert.match(server.stderr, SUMMARY_LINE);
  assertNoSanitizerReport(server.stderr);
});

test('SIGTERM with zero grace exits promptly', async (t) => {
  const server = await startServer(t, ['--workers', '2', '--payload-size', String(256 * MiB),
    '--fragment-size', '65536', '--shutdown-grace', '0']);
  const { ws } = await startPausedTransfer(server.port);

  const { status, elapsedMs } = await server.terminate(10_000);
  ws.terminate();
  assert.ok(status, `server did not exit within 10 s of SIGTERM; stderr:\n${server.stderr}`);
  assert.equal(status.code, 0, `exit status; stderr:\n${server.stderr}`);
  assert.ok(elapsedMs <= 2000, `server exited ${Math.round(elapsedMs)} ms after SIGTERM with no grace`);
  assertNoSanitizerReport(server.stderr);
});

test('SIGTERM with only idle clients exits promptly', async (t) => {
  const server = await startServer(t, ['--workers', '2', '--shutdown-grace', '5']);
  const { ws, recorder } = await openRecordedWebSocket(server.port);

  const { status, elapsedMs } = await server.terminate(10_000);
  assert.ok(status, 'server did not exit within 10 s of SIGTERM');
  assert.equal(status.code, 0, `exit status; stderr:\n${server.stderr}`);
  assert.ok(elapsedMs <= 2500, `server exited ${Math.round(elapsedMs)} ms after SIGTERM with no running transfer`);
  const close = await withTimeout(recorder.waitForClose(3000).catch(() => null), 3000);
  assert.ok(close, 'idle WebSocket was closed when the server stopped');
  ws.terminate();
  assertNoSanitizerReport(server.stderr);
});

test('SIGINT stops the server with status 0', async (t) => {
  const server = await startServer(t, ['--workers', '2']);
  await getHealth(server.port);

  const { status } = await server.terminate(10_000, 'SIGINT');
  assert.ok(status, 'server did not exit within 10 s of SIGINT');
  assert.equal(status.code, 0, `exit status; stderr:\n${server.stderr}`);
  assert.match(server.stderr, /SIGINT/);
  assert.match(server.stderr, SUMMARY_LINE);
  assertNoSanitizerReport(server.stderr);
});

test('transfer started before SIGTERM is sent in full', async (t) => {
  // An unpaused client whose transfer is still running when the signal comes.
  const payloadSize = 128 * MiB;
  const server = await startServer(t, ['--workers', '1', '--payload-size', String(payloadSize),
    '--fragment-size', '65536', '--shutdown-grace', '10']);
  const { ws, recorder } = await openRecordedWebSocket(server.port, { maxPayload: 512 * MiB });

  ws.send('go');
  await sleep(30);
  server.signal('SIGTERM');
  const [message] = await recorder.waitForMessages(1, 20_000);
  assert.equal(message.data.length, payloadSize);

  const status = await server.waitForExit(10_000);
  assert.ok(status, 'server did not exit after the transfer finished');
  assert.equal(status.code, 0);
  assertNoSanitizerReport(server.stderr);
});

test('SIGTERM right after the listening line exits 0', async (t) => {
  // A supervisor may stop the server as soon as it reports that it listens.
  // With no connection open, the server has nothing to wait for.
  for (let attempt = 0; attempt < 10; attempt++) {
    const server = spawnLinkspeed(t, ['serve', '--listen', '127.0.0.1:0', '--workers', '2']);
    await server.waitForLog(/listening on 127\.0\.0\.1:(\d+)/);
    const { status, elapsedMs } = await server.terminate(3000);
    assert.ok(status, `attempt ${attempt}: idle server still ran 3 s after SIGTERM; stderr:\n${server.stderr}`);
    assert.equal(status.signal, null, `attempt ${attempt}: server was killed by ${status.signal}; stderr:\n${server.stderr}`);
    assert.equal(status.code, 0, `attempt ${attempt}: exit status; stderr:\n${server.stderr}`);
    assert.ok(elapsedMs < 2000, `attempt ${attempt}: idle server took ${Math.round(elapsedMs)} ms to exit`);
    assert.doesNotMatch(server.stderr, /killed by signal|killing them/, `attempt ${attempt}: workers were killed`);
  }
});
