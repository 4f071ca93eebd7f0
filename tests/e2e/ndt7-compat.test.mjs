// Compatibility with M-Lab's JavaScript ndt7 client (@m-lab/ndt7 0.1.4): a
// download and an upload against linkspeed complete, and the client's and the
// server's rates agree within 5%.
//
// The client needs a global WebSocket and Worker. Node 20 has WebSocket only
// behind --experimental-websocket, so the test runs this same file in a child
// process with that flag; the child runs the client and prints its results as
// JSON on stdout. `web-worker` provides Worker on top of worker_threads.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const CHILD_SERVER_VARIABLE = 'LINKSPEED_NDT7_COMPAT_SERVER';
const CHILD_TIMEOUT_MS = 40_000;

// Runs download and upload with the ndt7 client against `server` (host:port).
async function runClient(server) {
  globalThis.Worker = (await import('web-worker')).default;
  const ndt7 = require('@m-lab/ndt7');
  const result = { errors: [] };
  result.code = await ndt7.test({
    server,
    protocol: 'ws',
    mlabDataPolicyInapplicable: true,
    downloadworkerfile: require.resolve('@m-lab/ndt7/src/ndt7-download-worker.js'),
    uploadworkerfile: require.resolve('@m-lab/ndt7/src/ndt7-upload-worker.js'),
    metadata: { client_name: 'linkspeed-compat-test' },
  }, {
    error: (error) => result.errors.push(String(error)),
    downloadComplete: (data) => {
      result.download = data;
    },
    uploadComplete: (data) => {
      result.upload = data;
    },
  });
  return result;
}

// Runs the client in a child process with --experimental-websocket.
function runClientProcess(port) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--experimental-websocket', fileURLToPath(import.meta.url)], {
      env: { ...process.env, [CHILD_SERVER_VARIABLE]: `127.0.0.1:${port}` },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => {
      stdout += chunk;
    });
    child.stderr.on('data', (chunk) => {
      stderr += chunk;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), CHILD_TIMEOUT_MS);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(stdout));
      } catch {
        reject(new Error(`ndt7 client exited with ${code ?? signal} and printed no result; stderr:\n${stderr}\nstdout:\n${stdout}`));
      }
    });
  });
}

// Mbit/s from a server measurement: bytes over microseconds.
function serverMbps(measurement) {
  return (measurement.AppInfo.NumBytes * 8) / measurement.AppInfo.ElapsedTime;
}

function assertMeasurementsPresent(complete, testName) {
  assert.ok(complete, `no ${testName}Complete callback`);
  const client = complete.LastClientMeasurement;
  const server = complete.LastServerMeasurement;
  assert.ok(client, `${testName}: no LastClientMeasurement`);
  assert.ok(server, `${testName}: no LastServerMeasurement`);
  assert.ok(Number.isFinite(client.MeanClientMbps) && client.MeanClientMbps > 0,
    `${testName}: client MeanClientMbps is ${client.MeanClientMbps}`);
  assert.ok(Number.isInteger(server.AppInfo?.NumBytes) && server.AppInfo.NumBytes > 0,
    `${testName}: server AppInfo.NumBytes is ${server.AppInfo?.NumBytes}`);
  assert.ok(Number.isInteger(server.AppInfo.ElapsedTime) && server.AppInfo.ElapsedTime > 0,
    `${testName}: server AppInfo.ElapsedTime is ${server.AppInfo.ElapsedTime}`);
  assert.equal(server.Test, testName);
}

function assertRatesAgree(complete, testName) {
  const client = complete.LastClientMeasurement.MeanClientMbps;
  const server = serverMbps(complete.LastServerMeasurement);
  const ratio = client / server;
  console.log(`ndt7 ${testName}: client ${client.toFixed(1)} Mbit/s, server ${server.toFixed(1)} Mbit/s`);
  assert.ok(ratio > 0.95 && ratio < 1.05,
    `${testName}: client ${client.toFixed(1)} Mbit/s and server ${server.toFixed(1)} Mbit/s differ by more than 5%`);
}

if (process.env[CHILD_SERVER_VARIABLE]) {
  const result = await runClient(process.env[CHILD_SERVER_VARIABLE]);
  process.stdout.write(JSON.stringify(result));
  // Worker threads the library terminated may still hold the event loop.
  process.exit(0);
} else {
  const { startServer } = await import('./helpers.mjs');

  test('ndt7-js client download and upload', async (t) => {
    const server = await startServer(t, ['--workers', '2']);
    const result = await runClientProcess(server.port);

    assert.deepEqual(result.errors, []);
    assert.equal(result.code, 0);
    assertMeasurementsPresent(result.download, 'download');
    assertMeasurementsPresent(result.upload, 'upload');
    assertRatesAgree(result.download, 'download');
    assertRatesAgree(result.upload, 'upload');
    await server.waitForLog(/ndt7 download ended: .*close 1000/);
    await server.waitForLog(/ndt7 upload ended: /);
    await server.stopAndCheck();
  });
}
