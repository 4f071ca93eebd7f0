// Heartbeat on /ws: the server pings every --heartbeat-interval and drops a
// client that shows no sign of life for --client-timeout.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  getHealth,
  KiB,
  median,
  MiB,
  OPCODE,
  openRecordedWebSocket,
  RawWebSocket,
  sleep,
  startServer,
  waitFor,
  waitForIdleServer,
} from './helpers.mjs';

const HEARTBEAT_ARGS = ['--heartbeat-interval', '0.3', '--client-timeout', '1'];

test('server pings every heartbeat interval', async (t) => {
  const server = await startServer(t, ['--workers', '1', ...HEARTBEAT_ARGS]);
  const { ws, recorder } = await openRecordedWebSocket(server.port);

  await sleep(2500);
  const times = recorder.pingTimes;
  assert.ok(times.length >= 5, `${times.length} pings in 2.5 s with a 0.3 s interval`);
  assert.ok(times.length <= 12, `${times.length} pings in 2.5 s with a 0.3 s interval`);
  assert.ok(times[0] - recorder.openedAt < 1000, `first ping came ${Math.round(times[0] - recorder.openedAt)} ms after open`);

  const intervals = times.slice(1).map((time, i) => time - times[i]);
  const typical = median(intervals);
  assert.ok(typical >= 200, `median ping interval is ${Math.round(typical)} ms, expected about 300`);
  assert.ok(typical <= 450, `median ping interval is ${Math.round(typical)} ms, expected about 300`);
  for (const interval of intervals) {
    assert.ok(interval >= 100, `ping interval of ${Math.round(interval)} ms`);
    assert.ok(interval <= 900, `ping interval of ${Math.round(interval)} ms`);
  }

  ws.close(1000);
  await recorder.waitForClose();
  await server.stopAndCheck();
});

test('client sending pongs stays connected', async (t) => {
  const server = await startServer(t, ['--workers', '1', ...HEARTBEAT_ARGS, '--payload-size', String(64 * KiB)]);
  const { ws, recorder } = await openRecordedWebSocket(server.port);

  // 3.5 client timeouts without any message from the client except pongs.
  await sleep(3500);
  assert.equal(recorder.closeInfo, null, `connection closed: ${JSON.stringify(recorder.closeInfo)}`);
  assert.ok(recorder.pingTimes.length >= 5, `${recorder.pingTimes.length} pings in 3.5 s`);

  ws.send('go');
  const [message] = await recorder.waitForMessages(1);
  assert.equal(message.data.length, 64 * KiB);

  ws.close(1000);
  await recorder.waitForClose();
  await server.stopAndCheck();
});

test('client without pongs is dropped after client timeout', async (t) => {
  const server = await startServer(t, ['--workers', '1', ...HEARTBEAT_ARGS]);
  const { recorder } = await openRecordedWebSocket(server.port, { autoPong: false });

  const close = await recorder.waitForClose(6000);
  const elapsedMs = close.time - recorder.openedAt;
  assert.ok(elapsedMs >= 900, `dropped ${Math.round(elapsedMs)} ms after open with a 1 s client timeout`);
  assert.ok(elapsedMs <= 2500, `dropped ${Math.round(elapsedMs)} ms after open with a 1 s client timeout`);
  assert.equal(close.code, 1006, 'dropped without a close frame');
  assert.ok(recorder.pingTimes.length >= 2, `${recorder.pingTimes.length} pings before the drop`);

  await waitForIdleServer(server.port);
  await server.stopAndCheck();
});

test('silent raw client is dropped across workers', async (t) => {
  const server = await startServer(t, ['--workers', '2', ...HEARTBEAT_ARGS]);

  const silent = [];
  for (let i = 0; i < 4; i++) {
    silent.push(await RawWebSocket.connect(server.port));
  }
  const ponging = await RawWebSocket.connect(server.port, { autoPong: true });
  const start = performance.now();

  await waitFor(() => silent.every((client) => client.closed), { timeoutMs: 4000, message: 'all silent clients to be dropped' });
  const elapsedMs = performance.now() - start;
  assert.ok(elapsedMs >= 800, `silent clients dropped after ${Math.round(elapsedMs)} ms`);
  for (const client of silent) {
    const close = client.frames.find((frame) => frame.opcode === OPCODE.close);
    assert.equal(close, undefined, 'dropped without a close frame');
  }
  assert.equal(ponging.closed, false, 'the client that sends pongs stays connected');

  const health = await getHealth(server.port);
  assert.equal(health.connections, 1, 'only the client sending pongs is still connected');

  ponging.destroy();
  await waitForIdleServer(server.port);
  await server.stopAndCheck();
});

test('slow reader sending pongs gets whole payload', async (t) => {
  const payloadSize = 12 * MiB;
  const server = await startServer(t, ['--workers', '1', ...HEARTBEAT_ARGS,
    '--payload-size', String(payloadSize), '--fragment-size', '65536']);
  const client = await RawWebSocket.connect(server.port, { autoPong: true });

  // Reads at about 4 MiB/s, so the payload takes about 3 s: three client timeouts.
  const bytesPerMs = (4 * MiB) / 1000;
  const start = performance.now();
  client.socket.on('data', () => {
    const aheadMs = client.bytesReceived / bytesPerMs - (performance.now() - start);
    if (aheadMs > 0 && !client.socket.isPaused()) {
      client.socket.pause();
      setTimeout(() => client.socket.resume(), aheadMs);
    }
  });

  client.send(OPCODE.text, 'go');
  const frames = await client.waitForMessageFrames(20_000);
  const elapsedMs = performance.now() - start;
  const total = frames.reduce((sum, frame) => sum + frame.payload.length, 0);
  assert.equal(total, payloadSize);
  assert.ok(elapsedMs > 2000, `transfer took only ${Math.round(elapsedMs)} ms, the reader was not slow`);
  assert.equal(client.closed, false);

  client.destroy();
  await waitForIdleServer(server.port);
  await server.stopAndCheck();
});
