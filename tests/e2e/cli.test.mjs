// Command line and environment: --help, --version, LINKSPEED_* variables and
// the exit status 2 for invalid flag values.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  httpRequest,
  openRecordedWebSocket,
  runLinkspeed,
  spawnLinkspeed,
  startServer,
} from './helpers.mjs';

test('--help exits 0 and names serve', async (t) => {
  const result = await runLinkspeed(t, ['--help']);
  assert.equal(result.code, 0, `stderr: ${result.stderr}`);
  assert.match(result.stdout + result.stderr, /\bserve\b/);
});

test('serve --help exits 0 and lists the flags', async (t) => {
  const result = await runLinkspeed(t, ['serve', '--help']);
  assert.equal(result.code, 0, `stderr: ${result.stderr}`);
  const text = result.stdout + result.stderr;
  for (const flag of ['--listen', '--workers', '--payload-size', '--fragment-size', '--heartbeat-interval',
    '--client-timeout', '--max-connections', '--max-transfers-per-ip', '--max-queued-requests', '--ws-max-message',
    '--handshake-timeout', '--idle-timeout', '--shutdown-grace', '--log-level', '--web-root']) {
    assert.ok(text.includes(flag), `serve --help output mentions ${flag}`);
  }
  assert.ok(text.includes('LINKSPEED_PAYLOAD_SIZE'), 'serve --help output names the environment variables');
});

test('--version prints 0.1.0', async (t) => {
  const result = await runLinkspeed(t, ['--version']);
  assert.equal(result.code, 0, `stderr: ${result.stderr}`);
  assert.match(result.stdout + result.stderr, /0\.1\.0/);
});

// Each case: arguments after `serve --listen 127.0.0.1:0`, and the flag name the message must contain.
const INVALID_FLAG_VALUES = [
  [['--workers', '0'], 'workers'],
  [['--workers', '65'], 'workers'],
  [['--workers', 'two'], 'workers'],
  [['--payload-size', 'abc'], 'payload-size'],
  [['--payload-size', '0'], 'payload-size'],
  [['--payload-size', '1073741825'], 'payload-size'],
  [['--payload-size', '-5'], 'payload-size'],
  [['--payload-size', '10MiB'], 'payload-size'],
  [['--payload-size', '99999999999999999999999'], 'payload-size'],
  [['--fragment-size', '4095'], 'fragment-size'],
  [['--fragment-size', '16777217'], 'fragment-size'],
  [['--heartbeat-interval', '0.01'], 'heartbeat-interval'],
  [['--heartbeat-interval', 'nan'], 'heartbeat-interval'],
  [['--client-timeout', '0.05'], 'client-timeout'],
  [['--client-timeout', '3601'], 'client-timeout'],
  [['--max-connections', '0'], 'max-connections'],
  [['--max-transfers-per-ip', '0'], 'max-transfers-per-ip'],
  [['--max-queued-requests', '1025'], 'max-queued-requests'],
  [['--ws-max-message', '0'], 'ws-max-message'],
  [['--handshake-timeout', '0'], 'handshake-timeout'],
  [['--idle-timeout', '0'], 'idle-timeout'],
  [['--shutdown-grace', '601'], 'shutdown-grace'],
  [['--shutdown-grace', '-1'], 'shutdown-grace'],
  [['--log-level', 'verbose'], 'log-level'],
  [['--listen', 'not-an-address'], 'listen'],
  [['--listen', '127.0.0.1:70000'], 'listen'],
  [['--name', 'lab\r\nX-Injected: 1'], 'name'],
  [['--name', 'lab\x1b[31m'], 'name'],
  [['--name', 'lab\u009b31m'], 'U+009B'],
  [['--name', '\u202elab'], 'U+202E'],
];

test('invalid flag values exit 2 naming the flag', async (t) => {
  const results = await Promise.all(INVALID_FLAG_VALUES.map(async ([args, flag]) => {
    const result = await runLinkspeed(t, ['serve', '--listen', '127.0.0.1:0', ...args]);
    return { args, flag, result };
  }));
  for (const { args, flag, result } of results) {
    const flagArgs = args.join(' ');
    assert.equal(result.code, 2, `${flagArgs} exited with ${result.code}; stderr: ${result.stderr}`);
    assert.ok(result.stderr.includes(flag), `message for ${flagArgs} names ${flag}: ${result.stderr}`);
  }
});

test('invalid value message states the range', async (t) => {
  const workers = await runLinkspeed(t, ['serve', '--listen', '127.0.0.1:0', '--workers', '0']);
  assert.equal(workers.code, 2);
  assert.match(workers.stderr, /\b1\b.*\b64\b/, `message for --workers 0 states 1..64: ${workers.stderr}`);

  const payload = await runLinkspeed(t, ['serve', '--listen', '127.0.0.1:0', '--payload-size', 'abc']);
  assert.equal(payload.code, 2);
  assert.match(payload.stderr, /abc/, `message for --payload-size abc shows the value: ${payload.stderr}`);
  assert.match(payload.stderr, /1073741824/, `message for --payload-size abc states the maximum: ${payload.stderr}`);
});

test('missing flag value and unknown flag fail', async (t) => {
  const missing = await runLinkspeed(t, ['serve', '--listen', '127.0.0.1:0', '--workers']);
  assert.notEqual(missing.code, 0, 'missing value for --workers');
  assert.match(missing.stderr, /workers/);

  const unknown = await runLinkspeed(t, ['serve', '--listen', '127.0.0.1:0', '--no-such-flag', '1']);
  assert.notEqual(unknown.code, 0, 'unknown flag');
  assert.match(unknown.stderr, /no-such-flag/);

  const command = await runLinkspeed(t, ['serv']);
  assert.notEqual(command.code, 0, 'unknown command');
});

test('invalid environment value exits 2', async (t) => {
  const workers = await runLinkspeed(t, ['serve', '--listen', '127.0.0.1:0'], { env: { LINKSPEED_WORKERS: '0' } });
  assert.equal(workers.code, 2, `stderr: ${workers.stderr}`);
  assert.match(workers.stderr, /WORKERS|workers/);

  const payload = await runLinkspeed(t, ['serve', '--listen', '127.0.0.1:0'], { env: { LINKSPEED_PAYLOAD_SIZE: 'abc' } });
  assert.equal(payload.code, 2, `stderr: ${payload.stderr}`);
  assert.match(payload.stderr, /PAYLOAD_SIZE|payload-size/);
});

test('LINKSPEED_PAYLOAD_SIZE sets the payload size', async (t) => {
  const server = await startServer(t, ['--workers', '1'], { env: { LINKSPEED_PAYLOAD_SIZE: '300000' } });
  const { ws, recorder } = await openRecordedWebSocket(server.port);

  ws.send('go');
  const [message] = await recorder.waitForMessages(1);
  assert.equal(message.data.length, 300000);

  ws.close(1000);
  await recorder.waitForClose();
  await server.stopAndCheck();
});

test('flag overrides the environment', async (t) => {
  const server = await startServer(t, ['--workers', '1', '--payload-size', '2000'],
    { env: { LINKSPEED_PAYLOAD_SIZE: '300000' } });
  const { ws, recorder } = await openRecordedWebSocket(server.port);

  ws.send('go');
  const [message] = await recorder.waitForMessages(1);
  assert.equal(message.data.length, 2000);

  ws.close(1000);
  await recorder.waitForClose();
  await server.stopAndCheck();
});

test('LINKSPEED_LISTEN takes a comma-separated list', async (t) => {
  const server = spawnLinkspeed(t, ['serve', '--workers', '1', '--payload-size', '1000'],
    { env: { LINKSPEED_LISTEN: '127.0.0.1:0,[::1]:0' } });
  const v4 = await server.waitForLog(/listening on 127\.0\.0\.1:(\d+)/);
  const v6 = await server.waitForLog(/listening on \[::1\]:(\d+)/);
  assert.doesNotMatch(server.stderr, /listening on (0\.0\.0\.0|\[::\]):8080/, 'default addresses are not used');

  for (const [host, port] of [['127.0.0.1', Number(v4[1])], ['::1', Number(v6[1])]]) {
    const { ws, recorder } = await openRecordedWebSocket(port, {}, { host });
    ws.send('go');
    const [message] = await recorder.waitForMessages(1);
    assert.equal(message.data.length, 1000, `payload over ${host}`);
    ws.close(1000);
    await recorder.waitForClose();
  }

  await server.stopAndCheck();
});

test('LINKSPEED_LOG_LEVEL=debug keeps the listening line', async (t) => {
  const server = await startServer(t, ['--workers', '1'], { env: { LINKSPEED_LOG_LEVEL: 'debug' } });
  await httpRequest(server.port, { path: '/healthz' });
  assert.match(server.stderr, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z info +server: listening on 127\.0\.0\.1:\d+$/m,
    'log line format');
  await server.stopAndCheck();
});

test('access log records requests and sessions', async (t) => {
  const server = await startServer(t, ['--workers', '1', '--payload-size', '1000']);

  await httpRequest(server.port, { path: '/nope' });
  await server.waitForLog(/ http: .*127\.0\.0\.1.*GET \/nope .*\b404\b/, 3000);

  const { ws, recorder } = await openRecordedWebSocket(server.port);
  ws.send('one');
  ws.send('two');
  await recorder.waitForMessages(2);
  ws.close(4000);
  await recorder.waitForClose();
  await server.waitForLog(/ ws: .*127\.0\.0\.1.*\b4000\b/, 3000);

  await server.stopAndCheck();
});

test('healthcheck: 0 healthy, 1 unreachable, 2 usage', async (t) => {
  const server = await startServer(t);
  const url = `http://127.0.0.1:${server.port}`;
  const healthy = await runLinkspeed(t, ['healthcheck', `${url}/`]);
  assert.equal(healthy.code, 0, `stderr: ${healthy.stderr}`);

  await server.stopAndCheck();
  const down = await runLinkspeed(t, ['healthcheck', url]);
  assert.equal(down.code, 1);
  assert.ok(down.stderr.includes(`${url}/healthz`), down.stderr);

  for (const [args, expected] of [
    [['ftp://127.0.0.1'], 'ftp://127.0.0.1'],
    [['--bogus'], '--bogus'],
    [[url, url], 'at most one URL'],
  ]) {
    const result = await runLinkspeed(t, ['healthcheck', ...args]);
    assert.equal(result.code, 2, `healthcheck ${args.join(' ')}: ${result.stderr}`);
    assert.ok(result.stderr.includes(expected), result.stderr);
  }
});
