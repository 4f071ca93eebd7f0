// The ndt7 endpoints /ndt/v7/download and /ndt/v7/upload: handshake checks,
// the download's message sizes, the measurements, the upload's byte count,
// the 10 s test time and the 15 s limit for clients that go silent.
// The slow tests run concurrently, each against its own server.

import assert from 'node:assert/strict';
import { describe, it, test } from 'node:test';

import {
  MessageRecorder,
  MiB,
  RawWebSocket,
  WebSocket,
  expectUpgradeRejected,
  rawHttpExchange,
  startServer,
  upgradeRequest,
  waitForIdleServer,
} from './helpers.mjs';

const SUBPROTOCOL = 'net.measurementlab.ndt.v7';
const DOWNLOAD = '/ndt/v7/download';
const UPLOAD = '/ndt/v7/upload';
const KiB = 1024;

// Members of TCPInfo that ndt-server sends and ndt7 clients read.
const TCP_INFO_MEMBERS = ['BusyTime', 'BytesAcked', 'BytesReceived', 'BytesSent', 'BytesRetrans',
  'ElapsedTime', 'MinRTT', 'RTT', 'RTTVar', 'RWndLimited', 'SndBufLimited'];
const BBR_INFO_MEMBERS = ['BW', 'MinRTT', 'PacingGain', 'CwndGain', 'ElapsedTime'];

// Opens an ndt7 WebSocket with the subprotocol and records what the server sends.
function openNdt7(port, path, { protocol = SUBPROTOCOL } = {}) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`, protocol, {
      perMessageDeflate: false,
      handshakeTimeout: 5000,
      maxPayload: 64 * MiB,
    });
    const recorder = new MessageRecorder(ws);
    ws.on('open', () => resolve({ ws, recorder }));
    ws.on('unexpected-response', (request, response) => {
      response.resume();
      request.destroy();
      reject(new Error(`upgrade rejected with HTTP ${response.statusCode}`));
    });
    ws.on('error', reject);
  });
}

// Sends an upgrade to `path` with `headers` and resolves with the response status.
async function upgradeStatus(port, path, headers = {}) {
  const response = await rawHttpExchange(port, upgradeRequest({ path, headers }));
  return response.status;
}

function measurementsOf(recorder) {
  return recorder.messages.filter((m) => !m.isBinary).map((m) => JSON.parse(m.data.toString('utf8')));
}

// The message sizes the specification's appendix gives, capped at 1 MiB.
function expectedSizes(count) {
  const sizes = [];
  let size = 8 * KiB;
  let total = 0;
  for (let i = 0; i < count; i++) {
    sizes.push(size);
    total += size;
    if (size < MiB && size <= total / 16) {
      size *= 2;
    }
  }
  return sizes;
}

function assertInteger(value, name) {
  assert.ok(Number.isInteger(value), `${name} is ${JSON.stringify(value)}, expected an integer`);
}

function assertMeasurementTypes(m, test) {
  const where = `measurement ${JSON.stringify(m).slice(0, 200)}`;
  assert.equal(typeof m.ConnectionInfo?.Client, 'string', `ConnectionInfo.Client in ${where}`);
  assert.equal(typeof m.ConnectionInfo.Server, 'string', `ConnectionInfo.Server in ${where}`);
  assert.match(m.ConnectionInfo.Client, /^127\.0\.0\.1:\d+$/);
  assert.match(m.ConnectionInfo.Server, /^127\.0\.0\.1:\d+$/);
  assert.ok(!Number.isNaN(Date.parse(m.ConnectionInfo.StartTime)), `StartTime in ${where}`);
  assert.equal(m.Origin, 'server');
  assert.equal(m.Test, test);
  assertInteger(m.AppInfo?.ElapsedTime, 'AppInfo.ElapsedTime');
  assertInteger(m.AppInfo.NumBytes, 'AppInfo.NumBytes');
  assert.equal(typeof m.TCPInfo, 'object', `TCPInfo in ${where}`);
  for (const name of TCP_INFO_MEMBERS) {
    assertInteger(m.TCPInfo[name], `TCPInfo.${name}`);
  }
  for (const [name, value] of Object.entries(m.TCPInfo)) {
    assertInteger(value, `TCPInfo.${name}`);
  }
  if (m.BBRInfo !== undefined) {
    for (const name of BBR_INFO_MEMBERS) {
      assertInteger(m.BBRInfo[name], `BBRInfo.${name}`);
    }
  }
}

// Server-side spacing of the measurements, all but the last one, which the end
// of the test sends at once.
function assertMeasurementSpacing(measurements) {
  const times = measurements.map((m) => m.AppInfo.ElapsedTime);
  for (let i = 1; i < times.length - 1; i++) {
    assert.ok(times[i] - times[i - 1] >= 25_000,
      `measurements ${i - 1} and ${i} are ${times[i] - times[i - 1]} µs apart, expected at least 25 ms`);
  }
  const meanGapUs = (times[times.length - 2] - times[0]) / (times.length - 2);
  assert.ok(meanGapUs > 125_000 && meanGapUs < 500_000, `mean gap ${meanGapUs} µs, expected about 250 ms`);
}

describe('ndt7 handshake', () => {
  it('no subprotocol gets 400', async (t) => {
    const server = await startServer(t, ['--workers', '1']);
    for (const path of [DOWNLOAD, UPLOAD]) {
      assert.equal(await expectUpgradeRejected(server.port, {}, { path }), 400, path);
    }
    await server.stopAndCheck();
  });

  it('other subprotocol gets 400', async (t) => {
    const server = await startServer(t, ['--workers', '1']);
    assert.equal(await upgradeStatus(server.port, DOWNLOAD, { 'Sec-WebSocket-Protocol': 'chat' }), 400);
    assert.equal(await upgradeStatus(server.port, DOWNLOAD,
      { 'Sec-WebSocket-Protocol': `linkspeed-legacy, ${SUBPROTOCOL}` }), 400);
    assert.equal(await upgradeStatus(server.port, '/ws', { 'Sec-WebSocket-Protocol': SUBPROTOCOL }), 400);
    await server.stopAndCheck();
  });

  it('subprotocol is echoed', async (t) => {
    const server = await startServer(t, ['--workers', '1']);
    const { ws } = await openNdt7(server.port, UPLOAD);
    assert.equal(ws.protocol, SUBPROTOCOL);
    ws.terminate();
    await server.stopAndCheck();
  });

  it('bad early_exit gets 400', async (t) => {
    const server = await startServer(t, ['--workers', '1']);
    const headers = { 'Sec-WebSocket-Protocol': SUBPROTOCOL };
    for (const query of ['early_exit=100', 'early_exit=', 'early_exit', 'a=1&early_exit=2500']) {
      assert.equal(await upgradeStatus(server.port, `${DOWNLOAD}?${query}`, headers), 400, query);
      assert.equal(await upgradeStatus(server.port, `${UPLOAD}?${query}`, headers), 400, query);
    }
    assert.equal(await upgradeStatus(server.port, `${UPLOAD}?early_exit=250`, headers), 101);
    await server.stopAndCheck();
  });

  it('query string over 4096 bytes gets 400', async (t) => {
    const server = await startServer(t, ['--workers', '1']);
    const headers = { 'Sec-WebSocket-Protocol': SUBPROTOCOL };
    assert.equal(await upgradeStatus(server.port, `${UPLOAD}?a=${'x'.repeat(4095)}`, headers), 400);
    assert.equal(await upgradeStatus(server.port, `${UPLOAD}?a=${'x'.repeat(4094)}`, headers), 101);
    await server.stopAndCheck();
  });

  it('metadata logged with escapes', async (t) => {
    const server = await startServer(t, ['--workers', '1']);
    const { ws } = await openNdt7(server.port, `${UPLOAD}?client_name=test&note=a%1Bb%7F`);
    await server.waitForLog(/ndt7: \S+ upload client metadata: client_name=test&note=a\\x1bb\\x7f\n/);
    ws.terminate();
    await server.stopAndCheck();
  });

  it('per-IP limit applies', async (t) => {
    const server = await startServer(t, ['--workers', '1', '--max-transfers-per-ip', '1']);
    const { ws } = await openNdt7(server.port, UPLOAD);
    const headers = { 'Sec-WebSocket-Protocol': SUBPROTOCOL };
    assert.equal(await upgradeStatus(server.port, DOWNLOAD, headers), 429);
    ws.terminate();
    await server.stopAndCheck();
  });

  it('non-ndt7 path with subprotocol gets 404', async (t) => {
    const server = await startServer(t, ['--workers', '1']);
    const headers = { 'Sec-WebSocket-Protocol': SUBPROTOCOL };
    assert.equal(await upgradeStatus(server.port, '/ndt/v7/other', headers), 404);
    await server.stopAndCheck();
  });
});

describe('ndt7 tests', { concurrency: true }, () => {
  it('download sizes, measurements, close', async (t) => {
    const server = await startServer(t, ['--workers', '1']);
    const { recorder } = await openNdt7(server.port, DOWNLOAD);
    const close = await recorder.waitForClose(13_000);

    const elapsedMs = close.time - recorder.openedAt;
    assert.equal(close.code, 1000);
    assert.ok(elapsedMs > 9500 && elapsedMs < 11_500, `download closed after ${elapsedMs} ms, expected about 10 s`);

    const sizes = recorder.messages.filter((m) => m.isBinary).map((m) => m.data.length);
    assert.ok(sizes.length > 100, `only ${sizes.length} binary messages`);
    assert.deepEqual(sizes, expectedSizes(sizes.length));
    assert.equal(Math.max(...sizes), MiB);

    const measurements = measurementsOf(recorder);
    assert.ok(measurements.length >= 20, `${measurements.length} measurements in 10 s, expected about 40`);
    for (const m of measurements) {
      assertMeasurementTypes(m, 'download');
    }
    assertMeasurementSpacing(measurements);
    assert.ok(recorder.pingTimes.length >= measurements.length - 1,
      `${recorder.pingTimes.length} pings for ${measurements.length} measurements`);
    const sent = sizes.reduce((sum, size) => sum + size, 0);
    assert.equal(measurements.at(-1).AppInfo.NumBytes, sent);

    const log = await server.waitForLog(/ndt7: \S+ ndt7 download ended: (\d+) bytes sent in (\d+) ms, ([\d.]+) Mbit\/s, MinRTT ([\d.]+) ms, close 1000 \(test complete\)/);
    assert.equal(Number(log[1]), sent);
    await waitForIdleServer(server.port);
    await server.stopAndCheck();
  });

  it('upload count equals bytes sent', async (t) => {
    const server = await startServer(t, ['--workers', '1']);
    const { ws, recorder } = await openNdt7(server.port, UPLOAD);
    // Message sizes from 1 KiB to the largest accepted, 16 MiB.
    const messageSizes = [KiB, 8 * KiB, 8 * KiB, MiB, 3 * MiB + 7, 16 * MiB];
    for (const size of messageSizes) {
      ws.send(Buffer.alloc(size, 0x41), { binary: true });
    }
    ws.send(JSON.stringify({ AppInfo: { ElapsedTime: 1, NumBytes: 1 } }));
    const sent = messageSizes.reduce((sum, size) => sum + size, 0);
    const close = await recorder.waitForClose(13_000);

    const elapsedMs = close.time - recorder.openedAt;
    assert.equal(close.code, 1000);
    assert.ok(elapsedMs > 9500 && elapsedMs < 11_500, `upload closed after ${elapsedMs} ms, expected about 10 s`);
    const measurements = measurementsOf(recorder);
    assert.ok(measurements.length >= 20, `${measurements.length} measurements in 10 s, expected about 40`);
    for (const m of measurements) {
      assertMeasurementTypes(m, 'upload');
    }
    assertMeasurementSpacing(measurements);
    assert.equal(measurements.at(-1).AppInfo.NumBytes, sent);
    assert.ok(measurements.at(-1).TCPInfo.BytesReceived >= sent);
    assert.equal(recorder.messages.filter((m) => m.isBinary).length, 0, 'server sent binary messages during an upload');
    await server.waitForLog(new RegExp(`ndt7 upload ended: ${sent} bytes received in \\d+ ms`));
    await server.stopAndCheck();
  });

  it('upload message over 16 MiB closes 1009', async (t) => {
    const server = await startServer(t, ['--workers', '1']);
    const { ws, recorder } = await openNdt7(server.port, UPLOAD);
    ws.send(Buffer.alloc(16 * MiB + 1), { binary: true });
    const close = await recorder.waitForClose(5000);
    assert.equal(close.code, 1009);
    await server.stopAndCheck();
  });

  it('binary message in download closes 1003', async (t) => {
    const server = await startServer(t, ['--workers', '1']);
    const { ws, recorder } = await openNdt7(server.port, DOWNLOAD);
    ws.send(Buffer.alloc(10), { binary: true });
    const close = await recorder.waitForClose(5000);
    assert.equal(close.code, 1003);
    await server.stopAndCheck();
  });

  it('silent clients dropped within 15 s', async (t) => {
    const server = await startServer(t, ['--workers', '1']);
    const headers = { 'Sec-WebSocket-Protocol': SUBPROTOCOL };
    const start = performance.now();
    // A download client that stops reading, and an upload client that never
    // answers the server's close frame.
    const reader = await RawWebSocket.connect(server.port, { path: DOWNLOAD, headers });
    reader.socket.pause();
    const uploader = await RawWebSocket.connect(server.port, { path: UPLOAD, headers });

    const download = await server.waitForLog(/ndt7 download ended: .*close (\d+) \((.*)\)/, 17_000);
    const downloadMs = performance.now() - start;
    const upload = await server.waitForLog(/ndt7 upload ended: .*close (\d+) \((.*)\)/, 17_000);
    const uploadMs = performance.now() - start;
    assert.equal(download[2], 'dropped: still open 15 s after the handshake');
    assert.ok(downloadMs > 14_000 && downloadMs < 16_500, `download dropped after ${downloadMs} ms`);
    assert.ok(uploadMs < 16_500, `upload dropped after ${uploadMs} ms`);
    reader.destroy();
    uploader.destroy();
    await waitForIdleServer(server.port);
    await server.stopAndCheck();
  });
});

// Not among the concurrent tests above: on two cores, parallel downloads could keep this
// one below the 250 MB it needs within 10 s.
test('early_exit=250 ends download early', async (t) => {
  const server = await startServer(t, ['--workers', '1']);
  const { recorder } = await openNdt7(server.port, `${DOWNLOAD}?early_exit=250`);
  const close = await recorder.waitForClose(13_000);
  assert.equal(close.code, 1000);
  const last = measurementsOf(recorder).at(-1);
  assert.ok(last.TCPInfo.BytesAcked >= 250_000_000, `closed at ${last.TCPInfo.BytesAcked} bytes acknowledged`);
  await server.waitForLog(/ndt7 download ended: .*close 1000 \(early exit: 250 MB acknowledged\)/);
  // Loopback moves 250 MB in well under 10 s.
  assert.ok(last.AppInfo.ElapsedTime < 9_000_000, `early exit after ${last.AppInfo.ElapsedTime} µs`);
  await server.stopAndCheck();
});

test('SIGTERM closes ndt7 with 1001 after grace', async (t) => {
  const server = await startServer(t, ['--workers', '1', '--shutdown-grace', '1']);
  const { recorder } = await openNdt7(server.port, DOWNLOAD);
  await recorder.waitUntil(() => measurementsOf(recorder).length > 0, 5000, 'a first measurement');
  const measurementsBefore = measurementsOf(recorder).length;
  const signalledAt = performance.now();
  server.signal('SIGTERM');

  const close = await recorder.waitForClose(5000);
  assert.equal(close.code, 1001);
  assert.equal(close.reason, 'server is stopping');
  const closedAfterMs = close.time - signalledAt;
  assert.ok(closedAfterMs >= 900, `closed ${Math.round(closedAfterMs)} ms after SIGTERM, before the 1 s grace`);
  assert.ok(closedAfterMs < 3000, `closed ${Math.round(closedAfterMs)} ms after SIGTERM`);
  assert.ok(measurementsOf(recorder).length > measurementsBefore, 'a last measurement came before the close');

  const status = await server.waitForExit(5000);
  assert.equal(status?.code, 0, `server exit status ${JSON.stringify(status)}`);
  await server.waitForLog(/ndt7 download ended: .*close 1001 \(server is stopping\)/);
});
