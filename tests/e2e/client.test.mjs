// `linkspeed test`, the command-line client, against the real server and
// against mock servers on loopback: every output mode (plain lines, a terminal
// through `script`, --json checked against docs/result.schema.json, --csv,
// --quiet), every flag, the exit codes 0, 1 and 2, and the failures that must
// name what failed and the URL.

import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import dns from 'node:dns/promises';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';

import Ajv2020 from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';

import {
  BINARY,
  REPO_ROOT,
  assertNoSanitizerReport,
  runLinkspeed,
  sleep,
  spawnLinkspeed,
  startServer,
} from './helpers.mjs';
import {
  MOCK_SERVER_NAME,
  start404Server,
  startClosingServer,
  startProxy,
  startStallingServer,
  unusedPort,
} from './mock-servers.mjs';

const SCHEMA = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'docs', 'result.schema.json'), 'utf8'));
const ajv = new Ajv2020({ strict: true, allErrors: true });
addFormats(ajv);
const validateOutput = ajv.compile(SCHEMA);

// Sanitizer builds run several times slower.
const SLOW = process.env.LINKSPEED_SLOW === '1';
const RUN_TIMEOUT_MS = SLOW ? 90_000 : 45_000;
const RATE_PATTERN = /[\d.]+ (?:Mbit|Gbit)\/s/;
const MiB = 1024 * 1024;

// Runs `linkspeed test ARGS` to completion and checks that it left no sanitizer report.
async function runClient(t, args, { timeoutMs = RUN_TIMEOUT_MS } = {}) {
  const result = await runLinkspeed(t, ['test', ...args], { timeoutMs });
  assertNoSanitizerReport(result.stderr);
  return result;
}

function describeRun(result) {
  return `exit ${result.code}; stdout:\n${result.stdout}\nstderr:\n${result.stderr}`;
}

function assertSchemaValid(object) {
  const valid = validateOutput(object);
  assert.ok(valid, `output does not match docs/result.schema.json: ${ajv.errorsText(validateOutput.errors)}\n${JSON.stringify(object, null, 2)}`);
}

// Parses --json output: exactly one line with one object that matches the schema.
function parseJsonOutput(result) {
  const lines = result.stdout.split('\n').filter((line) => line !== '');
  assert.equal(lines.length, 1, `--json wrote ${lines.length} lines; ${describeRun(result)}`);
  const object = JSON.parse(lines[0]);
  assertSchemaValid(object);
  assert.equal(object.exit_code, result.code, 'exit_code in the JSON is the process exit code');
  return object;
}

async function runJson(t, args, options) {
  const result = await runClient(t, [...args, '--json'], options);
  return { result, output: parseJsonOutput(result) };
}

// Splits one CSV line by RFC 4180: quoted fields may contain commas and doubled quotes.
function parseCsvLine(line) {
  const fields = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (quoted) {
      if (c === '"' && line[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') {
        quoted = false;
      } else {
        field += c;
      }
    } else if (c === '"') {
      quoted = true;
    } else if (c === ',') {
      fields.push(field);
      field = '';
    } else {
      field += c;
    }
  }
  fields.push(field);
  return fields;
}

// The CSV columns that the schema implies: the result's fields in order, each
// field of a nested object as parent_field.
function csvColumnsFromSchema() {
  const columns = [];
  for (const [name, property] of Object.entries(SCHEMA.$defs.result.properties)) {
    let nested = null;
    if (property.$ref === '#/$defs/tcp_summary') {
      nested = SCHEMA.$defs.tcp_summary.properties;
    } else if (name === 'error') {
      nested = SCHEMA.$defs.error.properties;
    }
    if (nested) {
      columns.push(...Object.keys(nested).map((key) => `${name}_${key}`));
    } else {
      columns.push(name);
    }
  }
  return columns;
}

function serverUrl(server) {
  return `http://127.0.0.1:${server.port}`;
}

let tlsDir;

before(() => {
  tlsDir = fs.mkdtempSync(path.join(os.tmpdir(), 'linkspeed-client-tls-'));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes',
    '-keyout', path.join(tlsDir, 'key.pem'), '-out', path.join(tlsDir, 'cert.pem'), '-days', '2',
    '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'], { stdio: 'ignore' });
});

after(() => {
  fs.rmSync(tlsDir, { recursive: true, force: true });
});

test('test --help lists every flag', async (t) => {
  const result = await runClient(t, ['--help']);
  assert.equal(result.code, 0, describeRun(result));
  for (const flag of ['--streams', '--duration', '--timeout', '--no-latency', '--no-download', '--no-upload',
    '--no-early-stop', '--ndt7', '--legacy', '-4', '-6', '--insecure', '--json', '--csv', '--csv-header', '--quiet']) {
    assert.ok(result.stdout.includes(flag), `help mentions ${flag}`);
  }
});

test('linkspeed --help names the test command', async (t) => {
  const result = await runLinkspeed(t, ['--help']);
  assert.equal(result.code, 0, describeRun(result));
  assert.match(result.stdout, /^\s+test\s/m);
});

test('plain output: phase lines then summary', async (t) => {
  const server = await startServer(t, ['--name', 'lab-test']);
  const result = await runClient(t, [serverUrl(server), '--duration', '2']);

  assert.equal(result.code, 0, describeRun(result));
  assert.match(result.stdout, /^latency\s+[\d.]+ ms \(min [\d.]+ ms, jitter [\d.]+ ms, 10 probes, 0 lost\)$/m);
  assert.match(result.stdout, new RegExp(`^download\\s+${RATE_PATTERN.source} \\(\\d+ streams?, `, 'm'));
  assert.match(result.stdout, new RegExp(`^upload\\s+${RATE_PATTERN.source} \\(\\d+ streams?, `, 'm'));
  assert.match(result.stdout, new RegExp(`^Server\\s+lab-test at ${serverUrl(server)}$`, 'm'));
  assert.match(result.stdout, /^Client IP\s+127\.0\.0\.1$/m);
  assert.match(result.stdout, /^Idle latency\s+[\d.]+ (?:ms|µs)/m);
  assert.match(result.stdout, new RegExp(`^Download\\s+${RATE_PATTERN.source}`, 'm'));
  assert.match(result.stdout, new RegExp(`^Upload\\s+${RATE_PATTERN.source}`, 'm'));
  assert.ok(!result.stdout.includes('\x1b'), 'no terminal control sequences on stdout');
  assert.ok(!result.stderr.includes('\x1b'), 'no live progress line when stderr is not a terminal');
  await server.stopAndCheck();
});

test('--json: one object matching the schema', async (t) => {
  const server = await startServer(t, ['--name', 'lab-test']);
  const before = Date.now();
  const { result, output } = await runJson(t, [serverUrl(server), '--duration', '2']);

  assert.equal(result.code, 0, describeRun(result));
  assert.equal(result.stderr, '', 'nothing on stderr');
  assert.equal(output.error, null);
  assert.equal(output.url, serverUrl(server));
  assert.equal(output.method, 'bulk');
  assert.equal(output.server, 'lab-test');
  assert.equal(output.client_ip, '127.0.0.1');
  assert.ok(Math.abs(Date.parse(output.timestamp) - before) < 5000, `timestamp ${output.timestamp} is the start`);
  assert.ok(output.download_bps > 1e6, `download_bps ${output.download_bps}`);
  assert.ok(output.upload_bps > 1e6, `upload_bps ${output.upload_bps}`);
  assert.equal(output.latency_source, 'websocket');
  assert.ok(output.latency_ms > 0, `latency_ms ${output.latency_ms}`);
  assert.ok(output.latency_min_ms <= output.latency_ms, 'min latency at most the median');
  assert.ok(output.jitter_ms >= 0, `jitter_ms ${output.jitter_ms}`);
  assert.equal(output.latency_samples, 10);
  assert.ok(output.loaded_latency_download_ms > 0, `loaded_latency_download_ms ${output.loaded_latency_download_ms}`);
  assert.ok(output.loaded_latency_upload_ms > 0, `loaded_latency_upload_ms ${output.loaded_latency_upload_ms}`);
  assert.ok(output.bytes_received > 0, 'bytes_received');
  assert.ok(output.bytes_sent > 0, 'bytes_sent');
  assert.ok(output.upload_server_bytes > 0, 'upload_server_bytes');
  assert.ok(output.streams >= 1, `streams ${output.streams}`);
  assert.ok(output.streams <= 16, `streams ${output.streams}`);
  assert.ok(output.download_duration_ms <= 2500, `download_duration_ms ${output.download_duration_ms} within --duration 2`);
  assert.ok(output.upload_duration_ms <= 2500 + 2000, `upload_duration_ms ${output.upload_duration_ms}`);
  assert.ok(output.download_stable_window_ms <= output.download_duration_ms, 'stable window inside the phase');
  assert.ok(output.tcp_download.connections >= 1, 'tcp_download.connections');
  assert.ok(output.tcp_download.bytes_received >= output.bytes_received, 'kernel bytes at least the payload bytes');
  assert.ok(output.tcp_upload.bytes_acked > 0, 'tcp_upload.bytes_acked');
  assert.deepEqual(output.notes, []);
  await server.stopAndCheck();
});

test('--csv-header and --csv: JSON fields in order', async (t) => {
  const server = await startServer(t);
  const args = [serverUrl(server), '--no-latency', '--no-upload', '--duration', '1'];
  const columns = csvColumnsFromSchema();

  const withHeader = await runClient(t, [...args, '--csv-header']);
  assert.equal(withHeader.code, 0, describeRun(withHeader));
  const lines = withHeader.stdout.split('\n').filter((line) => line !== '');
  assert.equal(lines.length, 2, `header and one line; ${describeRun(withHeader)}`);
  assert.deepEqual(parseCsvLine(lines[0]), columns);
  const values = parseCsvLine(lines[1]);
  assert.equal(values.length, columns.length, 'one value per column');
  const row = Object.fromEntries(columns.map((name, i) => [name, values[i]]));
  assert.equal(row.exit_code, '0');
  assert.equal(row.url, serverUrl(server));
  assert.ok(Number(row.download_bps) > 1e6, `download_bps ${row.download_bps}`);
  assert.equal(row.upload_bps, '', 'a figure not measured is an empty cell');
  assert.equal(row.latency_source, 'none');
  assert.ok(Number(row.tcp_download_connections) >= 1, 'nested fields are flattened');

  const withoutHeader = await runClient(t, [...args, '--csv']);
  assert.equal(withoutHeader.code, 0, describeRun(withoutHeader));
  const csvLines = withoutHeader.stdout.split('\n').filter((line) => line !== '');
  assert.equal(csvLines.length, 1, `one line; ${describeRun(withoutHeader)}`);
  assert.equal(parseCsvLine(csvLines[0]).length, columns.length);
  await server.stopAndCheck();
});

test('--quiet writes only the summary', async (t) => {
  const server = await startServer(t);
  const result = await runClient(t, [serverUrl(server), '--quiet', '--no-upload', '--duration', '1']);

  assert.equal(result.code, 0, describeRun(result));
  assert.match(result.stdout, /^Server\s/, 'stdout starts with the summary');
  assert.doesNotMatch(result.stdout, /^download\s/m, 'no phase lines');
  assert.equal(result.stderr, '');
  await server.stopAndCheck();
});

test('terminal: live progress line, then summary', async (t) => {
  const server = await startServer(t);
  const command = [BINARY, 'test', serverUrl(server), '--duration', '2'].map(shellQuote).join(' ');
  const result = await runOnTerminal(t, command);

  assert.equal(result.code, 0, describeRun(result));
  assert.ok(result.stdout.includes('\r\x1b[K'), 'the line is redrawn in place');
  assert.match(result.stdout, new RegExp(`download\\s+${RATE_PATTERN.source}\\s+[\\d.]+ s\\s+[\\d.]+ (?:kB|MB|GB)\\s+\\d+ streams?`),
    'live line: phase, rate, elapsed, bytes, streams');
  assert.match(result.stdout, new RegExp(`upload\\s+${RATE_PATTERN.source}\\s+[\\d.]+ s\\s+[\\d.]+ (?:kB|MB|GB)\\s+\\d+ streams?`));
  assert.match(result.stdout, new RegExp(`Download\\s+${RATE_PATTERN.source}`), 'summary');
  await server.stopAndCheck();
});

test('terminal: live line fits a narrow window', async (t) => {
  const server = await startServer(t);
  const command = [BINARY, 'test', serverUrl(server), '--duration', '1', '--no-upload'].map(shellQuote).join(' ');
  const result = await runOnTerminal(t, `stty cols 40 && ${command}`);

  assert.equal(result.code, 0, describeRun(result));
  // Each redraw starts with "\r ESC[K". A live line is what follows up to the next redraw;
  // a finished phase's line ends with a line break and may wrap.
  const liveLines = result.stdout.split('\r\x1b[K').slice(1).filter((part) => !part.includes('\n'));
  assert.ok(liveLines.some((line) => line.startsWith('download')), JSON.stringify(result.stdout));
  for (const line of liveLines) {
    assert.ok(line.length <= 39, `live line of ${line.length} characters: ${JSON.stringify(line)}`);
  }
  await server.stopAndCheck();
});

// Runs `command` on a pseudo-terminal with script(1) from util-linux (-e: its
// exit code is the command's) and resolves with everything the terminal showed.
async function runOnTerminal(t, command) {
  const child = spawn('script', ['-qec', command, '/dev/null'], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => child.kill('SIGKILL'));
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stdout.on('data', (text) => {
    stdout += text;
  });
  child.stderr.on('data', (text) => {
    stderr += text;
  });
  const code = await new Promise((resolve) => child.on('close', resolve));
  assertNoSanitizerReport(stdout);
  return { code, stdout, stderr };
}

function shellQuote(text) {
  return `'${text.replaceAll("'", "'\\''")}'`;
}

test('--streams N fixes the stream count', async (t) => {
  const server = await startServer(t);
  const { result, output } = await runJson(t, [serverUrl(server), '--streams', '3', '--no-latency', '--duration', '1']);

  assert.equal(result.code, 0, describeRun(result));
  assert.equal(output.download_streams, 3);
  assert.equal(output.upload_streams, 3);
  assert.equal(output.tcp_download.connections, 3);
  await server.stopAndCheck();
});

test('--duration bounds each direction', async (t) => {
  const server = await startServer(t);
  const { result, output } = await runJson(t, [serverUrl(server), '--streams', 'auto', '--no-latency', '--duration', '1']);

  assert.equal(result.code, 0, describeRun(result));
  assert.ok(output.download_duration_ms >= 900, `download_duration_ms ${output.download_duration_ms} for --duration 1`);
  assert.ok(output.download_duration_ms <= 1600, `download_duration_ms ${output.download_duration_ms} for --duration 1`);
  // Upload requests in flight at the stop get up to 2 s to be confirmed by the server.
  assert.ok(output.upload_duration_ms <= 3600, `upload_duration_ms ${output.upload_duration_ms}`);
  await server.stopAndCheck();
});

test('--no-early-stop runs each direction for the whole --duration', async (t) => {
  const server = await startServer(t);
  // A loopback rate is stable long before 5 s; the default stops at the 4 s minimum.
  const { result, output } = await runJson(t, [serverUrl(server), '--streams', '1', '--no-latency',
    '--duration', '5', '--no-early-stop']);

  assert.equal(result.code, 0, describeRun(result));
  for (const direction of ['download', 'upload']) {
    const duration = output[`${direction}_duration_ms`];
    assert.ok(duration >= 4950, `${direction}_duration_ms ${duration} for --duration 5`);
    assert.ok(output[`${direction}_stable_window_ms`] >= 3000,
      `${direction}_stable_window_ms ${output[`${direction}_stable_window_ms`]}`);
  }
  await server.stopAndCheck();
});

test('--no-download, --no-upload and --no-latency skip their phase', async (t) => {
  const server = await startServer(t);
  const url = serverUrl(server);

  const noDownload = await runJson(t, [url, '--no-download', '--duration', '1']);
  assert.equal(noDownload.result.code, 0, describeRun(noDownload.result));
  assert.equal(noDownload.output.download_bps, null);
  assert.equal(noDownload.output.bytes_received, null);
  assert.ok(noDownload.output.upload_bps > 0, 'upload ran');

  const noUpload = await runJson(t, [url, '--no-upload', '--duration', '1']);
  assert.equal(noUpload.result.code, 0, describeRun(noUpload.result));
  assert.equal(noUpload.output.upload_bps, null);
  assert.equal(noUpload.output.loaded_latency_upload_ms, null);
  assert.ok(noUpload.output.download_bps > 0, 'download ran');

  const noLatency = await runJson(t, [url, '--no-latency', '--no-upload', '--duration', '1']);
  assert.equal(noLatency.result.code, 0, describeRun(noLatency.result));
  assert.equal(noLatency.output.latency_ms, null);
  assert.equal(noLatency.output.latency_source, 'none');
  assert.equal(noLatency.output.loaded_latency_download_ms, null);
  assert.deepEqual(noLatency.output.notes, [], 'a skipped phase is no fallback');

  const latencyOnly = await runJson(t, [url, '--no-download', '--no-upload']);
  assert.equal(latencyOnly.result.code, 0, describeRun(latencyOnly.result));
  assert.equal(latencyOnly.output.latency_source, 'websocket');
  assert.equal(latencyOnly.output.streams, null);
  await server.stopAndCheck();
});

// Each case: arguments after `test`, and the text the message must contain.
const USAGE_ERRORS = [
  [['--streams', '0'], '--streams'],
  [['--streams', '17'], '--streams'],
  [['--streams', 'many'], '--streams'],
  [['--streams'], '--streams'],
  [['--duration', '0.5'], '--duration'],
  [['--duration', '61'], '--duration'],
  [['--duration', 'ten'], '--duration'],
  [['--duration', '0x10'], '--duration'],
  [['--timeout', '0'], '--timeout'],
  [['--timeout', 'nan'], '--timeout'],
  [['--timeout', '601'], '--timeout'],
  [['--bogus'], '--bogus'],
  [['-x'], '-x'],
  [['--json=yes'], '--json'],
  [['--ndt7', '--legacy'], '--legacy'],
  [['--ndt7', '--streams', '2'], '--ndt7'],
  [['--ndt7', '--duration', '5'], '--ndt7'],
  [['--legacy', '--streams', '2'], '--legacy'],
  [['--legacy', '--duration', '5'], '--legacy'],
  [['--ndt7', '--no-early-stop'], '--no-early-stop'],
  [['--legacy', '--no-early-stop'], '--no-early-stop'],
  [['--legacy', '--no-download'], '--no-download'],
  [['-4', '-6'], '-6'],
  [['--no-latency', '--no-download', '--no-upload'], 'nothing to measure'],
  [['http://127.0.0.1:1', 'http://127.0.0.1:2'], 'http://127.0.0.1:2'],
];

test('invalid flags exit 2 naming the flag', async (t) => {
  for (const [args, expected] of USAGE_ERRORS) {
    const result = await runClient(t, args, { timeoutMs: 5000 });
    const label = args.join(' ');
    assert.equal(result.code, 2, `${label}: ${describeRun(result)}`);
    assert.ok(result.stderr.includes(expected), `message for ${label} names ${expected}: ${result.stderr}`);
    assert.equal(result.stdout, '', `${label}: nothing on stdout`);
  }
});

// Each case: the URL, and a word the message must contain besides the URL.
const INVALID_URLS = [
  ['ftp://127.0.0.1:8080', 'scheme'],
  ['localhost:8080', 'scheme'],
  ['http://', 'host'],
  ['http://:8080', 'host'],
  ['http://127.0.0.1:99999', 'port'],
  ['http://127.0.0.1:0', 'port'],
  ['http://127.0.0.1:8080x', 'port'],
  ['http://127.0.0.1:8080/?bytes=1', 'quer'],
  ['http://user:secret@127.0.0.1:8080', 'user'],
  ['http://bad host/', 'byte 0x20 at offset 10; percent-encode'],
  ['http://127.0.0.1:8080/caf\u00e9', 'byte 0xc3 at offset 25; percent-encode'],
];

test('invalid URLs exit 2 naming the URL', async (t) => {
  for (const [url, expected] of INVALID_URLS) {
    const result = await runClient(t, [url], { timeoutMs: 5000 });
    assert.equal(result.code, 2, `${url}: ${describeRun(result)}`);
    assert.ok(result.stderr.includes(`"${url}"`), `message names ${url}: ${result.stderr}`);
    assert.ok(result.stderr.includes(expected), `message for ${url} says ${expected}: ${result.stderr}`);
  }
});

test('-4 or -6 against an address of the other family exits 2', async (t) => {
  const v4 = await runClient(t, ['-6', 'http://127.0.0.1:8080'], { timeoutMs: 5000 });
  assert.equal(v4.code, 2, describeRun(v4));
  assert.match(v4.stderr, /-6 .*http:\/\/127\.0\.0\.1:8080/);
  const v6 = await runClient(t, ['-4', 'http://[::1]:8080'], { timeoutMs: 5000 });
  assert.equal(v6.code, 2, describeRun(v6));
  assert.match(v6.stderr, /-4 .*http:\/\/\[::1\]:8080/);
});

test('usage error under --json is one JSON object', async (t) => {
  const { result, output } = await runJson(t, ['--streams', '99']);

  assert.equal(result.code, 2, describeRun(result));
  assert.equal(result.stderr, '', 'nothing on stderr');
  assert.equal(output.error.phase, 'usage');
  assert.match(output.error.message, /--streams/);
  const conflict = await runJson(t, ['--csv']);
  assert.equal(conflict.result.code, 2);
  assert.match(conflict.output.error.message, /--json and --csv/);
  const headerConflict = await runJson(t, ['--csv-header']);
  assert.equal(headerConflict.result.code, 2);
  assert.match(headerConflict.output.error.message, /--json and --csv-header/);
  const badUrl = await runJson(t, ['gopher://127.0.0.1']);
  assert.equal(badUrl.result.code, 2);
  assert.match(badUrl.output.error.message, /gopher:\/\/127\.0\.0\.1/);
});

test('connection refused: exit 1 naming the URL', async (t) => {
  const port = await unusedPort();
  const url = `http://127.0.0.1:${port}`;

  const text = await runClient(t, [url]);
  assert.equal(text.code, 1, describeRun(text));
  assert.ok(text.stderr.includes(url), `message names ${url}: ${text.stderr}`);
  assert.match(text.stderr, /connect/i, 'message says the connection failed');
  assert.equal(text.stdout, '', 'no summary when no phase completed');

  const json = await runJson(t, [url]);
  assert.equal(json.result.code, 1);
  assert.equal(json.output.error.phase, 'info');
  assert.ok(json.output.error.message.includes(url), json.output.error.message);
  assert.equal(json.output.download_bps, null);

  const csv = await runClient(t, [url, '--csv-header']);
  assert.equal(csv.code, 1, describeRun(csv));
  const [header, line] = csv.stdout.split('\n');
  const row = Object.fromEntries(parseCsvLine(header).map((name, i) => [name, parseCsvLine(line)[i]]));
  assert.equal(row.exit_code, '1');
  assert.equal(row.error_phase, 'info');
  assert.ok(row.error_message.includes(url), row.error_message);
  assert.ok(csv.stderr.includes(url), 'the error is on stderr too');
});

test('server closing mid-download: exit 1 naming /__down', async (t) => {
  const port = await startClosingServer(t);
  const url = `http://127.0.0.1:${port}`;

  const text = await runClient(t, [url, '--duration', '2', '--no-latency']);
  assert.equal(text.code, 1, describeRun(text));
  assert.ok(text.stderr.includes(`${url}/__down`), `message names ${url}/__down: ${text.stderr}`);

  const { result, output } = await runJson(t, [url, '--duration', '2']);
  assert.equal(result.code, 1, describeRun(result));
  assert.equal(output.error.phase, 'download');
  assert.ok(output.error.message.includes(url), output.error.message);
  assert.equal(output.error.status, null, 'no HTTP status explains a closed connection');
  assert.equal(output.server, MOCK_SERVER_NAME, 'what completed before the failure is kept');
  assert.equal(output.download_bps, null);
  assert.equal(output.upload_bps, null, 'the run stops at the first failed phase');
});

test('stalled server: exit 1 after --timeout', async (t) => {
  const port = await startStallingServer(t);
  const url = `http://127.0.0.1:${port}`;
  const start = performance.now();

  const result = await runClient(t, [url, '--timeout', '1']);
  const elapsedMs = performance.now() - start;
  assert.equal(result.code, 1, describeRun(result));
  assert.ok(result.stderr.includes(url), `message names ${url}: ${result.stderr}`);
  assert.match(result.stderr, /timed out/i);
  assert.ok(elapsedMs < (SLOW ? 10_000 : 4000), `gave up after ${Math.round(elapsedMs)} ms with --timeout 1`);
});

test('server that stops sending within --timeout: exit 1', async (t) => {
  // --timeout (10 s) is longer than the phase, so no stream fails: the empty window does.
  const cases = [
    [0, /no data received in 2\.\d s/],
    [1024 * 1024, /no data received in the last \d\.\d s of the phase, after 1048576 bytes/],
  ];
  for (const [bytes, expected] of cases) {
    const port = await startClosingServer(t, { bytesBeforeClose: bytes, hangUp: false });
    const { result, output } = await runJson(t, [`http://127.0.0.1:${port}`, '--no-upload', '--streams', '1',
      '--duration', '2']);
    assert.equal(result.code, 1, `${bytes} bytes: ${describeRun(result)}`);
    assert.equal(output.error.phase, 'download');
    assert.match(output.error.message, /^download: GET http:\/\/127\.0\.0\.1:\d+\/__down: /);
    assert.match(output.error.message, expected);
  }
});

test('404 everywhere: exit 1 naming HTTP 404', async (t) => {
  const port = await start404Server(t);
  const url = `http://127.0.0.1:${port}`;

  const text = await runClient(t, [url, '--duration', '2']);
  assert.equal(text.code, 1, describeRun(text));
  assert.ok(text.stderr.includes(url), `message names ${url}: ${text.stderr}`);
  assert.match(text.stderr, /404/);
  assert.match(text.stderr, /--ndt7/, 'the message names the likely fix');

  const { output } = await runJson(t, [url, '--duration', '2']);
  assert.equal(output.error.phase, 'download');
  assert.equal(output.error.status, 404);
  assert.equal(output.server, null, 'a 404 from /api/v1/info leaves the name unknown');
});

test('no latency endpoint: TCP_INFO fallback in every mode', async (t) => {
  const server = await startServer(t);
  const port = await startProxy(t, server.port, { rejectUpgrade: () => true });
  const url = `http://127.0.0.1:${port}`;

  const { result, output } = await runJson(t, [url, '--duration', '1']);
  assert.equal(result.code, 0, describeRun(result));
  assert.equal(output.latency_source, 'tcp_info');
  assert.ok(output.latency_ms > 0, `latency_ms ${output.latency_ms}`);
  assert.equal(output.jitter_ms, null);
  assert.equal(output.loaded_latency_download_ms, null);
  assert.ok(output.notes.some((note) => note.includes('TCP_INFO') && note.includes(url)), JSON.stringify(output.notes));

  const text = await runClient(t, [url, '--no-upload', '--duration', '1']);
  assert.equal(text.code, 0, describeRun(text));
  assert.match(text.stdout, /^latency\s+no latency endpoint/m, 'the phase line says so');
  assert.match(text.stdout, /^Idle latency\s+[\d.]+ (?:ms|µs) \(TCP min RTT of the transfers, from TCP_INFO\)$/m);
  assert.match(text.stdout, /^Note: .*TCP_INFO/m);

  const quiet = await runClient(t, [url, '--quiet', '--no-upload', '--duration', '1']);
  assert.match(quiet.stdout, /TCP_INFO/, '--quiet says so too');

  const csv = await runClient(t, [url, '--csv-header', '--no-upload', '--duration', '1']);
  const [header, line] = csv.stdout.split('\n');
  const row = Object.fromEntries(parseCsvLine(header).map((name, i) => [name, parseCsvLine(line)[i]]));
  assert.equal(row.latency_source, 'tcp_info');
  assert.match(row.notes, /TCP_INFO/);
  await server.stopAndCheck();
});

test('latency endpoint at its limit: note names the status', async (t) => {
  const server = await startServer(t);
  const port = await startProxy(t, server.port, { rejectUpgrade: () => 429 });
  const url = `http://127.0.0.1:${port}`;

  const { result, output } = await runJson(t, [url, '--no-upload', '--duration', '1']);
  assert.equal(result.code, 0, describeRun(result));
  assert.equal(output.latency_source, 'tcp_info');
  assert.ok(output.notes.some((note) => note.includes('with HTTP 429')), JSON.stringify(output.notes));
  await server.stopAndCheck();
});

test('streams refused at the per-address cap: note', async (t) => {
  const server = await startServer(t, ['--max-transfers-per-ip', '2']);
  const { result, output } = await runJson(t, [serverUrl(server), '--no-latency', '--no-upload', '--streams', '4',
    '--duration', '1']);
  assert.equal(result.code, 0, describeRun(result));
  assert.equal(output.download_streams, 2);
  assert.ok(output.notes.some((note) => /^2 of 4 download streams failed .*HTTP 429/.test(note)), JSON.stringify(output.notes));
  await server.stopAndCheck();
});

test('one transfer per address: rates without loaded latency', async (t) => {
  const server = await startServer(t, ['--max-transfers-per-ip', '1']);

  for (const methodArgs of [[], ['--ndt7']]) {
    const { result, output } = await runJson(t, [serverUrl(server), ...methodArgs,
      ...(methodArgs.length ? [] : ['--streams', '1', '--duration', '1'])]);
    const methodName = methodArgs.length ? 'ndt7' : 'bulk';
    assert.equal(result.code, 0, `${methodName}: ${describeRun(result)}`);
    assert.ok(output.download_bps > 0, `${methodName}: download_bps ${output.download_bps}`);
    assert.ok(output.upload_bps > 0, `${methodName}: upload_bps ${output.upload_bps}`);
    assert.equal(output.loaded_latency_download_ms, null, methodName);
    assert.equal(output.loaded_latency_upload_ms, null, methodName);
    // The probes take the slot and the transfer is retried without them ("left out"), or
    // the probes are rejected themselves ("unavailable") while a closing connection keeps it.
    for (const direction of ['download', 'upload']) {
      const expected = new RegExp(`^latency under load during ${direction} (left out|unavailable): .*429`);
      assert.ok(output.notes.some((note) => expected.test(note)), `${methodName}: ${JSON.stringify(output.notes)}`);
    }
  }
  await server.stopAndCheck();
});

test('partial result: upload fails after download', async (t) => {
  const server = await startServer(t);
  const port = await startProxy(t, server.port, {
    rejectRequest: (request) => (request.url.startsWith('/__up') ? 500 : null),
  });
  const url = `http://127.0.0.1:${port}`;

  const { result, output } = await runJson(t, [url, '--duration', '1']);
  assert.equal(result.code, 1, describeRun(result));
  assert.ok(output.download_bps > 0, 'the download that completed is kept');
  assert.equal(output.upload_bps, null);
  assert.equal(output.error.phase, 'upload');
  assert.equal(output.error.status, 500);
  assert.ok(output.error.message.includes(`${url}/__up`), output.error.message);

  const text = await runClient(t, [url, '--duration', '1', '--no-latency']);
  assert.equal(text.code, 1, describeRun(text));
  assert.match(text.stdout, new RegExp(`^Download\\s+${RATE_PATTERN.source}`, 'm'));
  assert.match(text.stdout, /^Upload\s+failed$/m);
  assert.ok(text.stderr.includes(`${url}/__up`), text.stderr);
  await server.stopAndCheck();
});

test('SIGINT cancels the run with exit 1', async (t) => {
  const server = await startServer(t);
  const url = serverUrl(server);
  const client = spawnLinkspeed(t, ['test', url, '--json', '--no-latency', '--duration', '10']);

  await sleep(1500);
  client.signal('SIGINT');
  const status = await client.waitForExit(SLOW ? 10_000 : 3000);
  assert.ok(status, 'the client stopped after SIGINT');
  assert.equal(status.code, 1, describeRun({ code: status.code, ...client }));
  const output = parseJsonOutput({ code: status.code, stdout: client.stdout, stderr: client.stderr });
  assert.equal(output.error.phase, 'download');
  assert.match(output.error.message, /cancelled by SIGINT/);
  assert.ok(output.error.message.includes(url), output.error.message);
  await server.stopAndCheck();
});

test('SIGHUP cancels the run with exit 1', async (t) => {
  const server = await startServer(t);
  const client = spawnLinkspeed(t, ['test', serverUrl(server), '--json', '--no-latency', '--duration', '10']);

  await sleep(1500);
  client.signal('SIGHUP');
  const status = await client.waitForExit(SLOW ? 10_000 : 3000);
  assert.ok(status, 'the client stopped after SIGHUP');
  assert.equal(status.code, 1, describeRun({ code: status.code, ...client }));
  const output = parseJsonOutput({ code: status.code, stdout: client.stdout, stderr: client.stderr });
  assert.match(output.error.message, /cancelled by SIGHUP/);
  await server.stopAndCheck();
});

test('result that cannot be written: exit 1', async (t) => {
  const server = await startServer(t);
  const client = spawn(BINARY, ['test', serverUrl(server), '--json', '--no-latency', '--no-upload', '--duration', '1'],
    { stdio: ['ignore', fs.openSync('/dev/full', 'w'), 'pipe'] });
  let stderr = '';
  client.stderr.on('data', (chunk) => {
    stderr += chunk;
  });
  const code = await new Promise((resolve) => client.on('close', resolve));
  assert.equal(code, 1, stderr);
  assert.match(stderr, /writing the result to stdout failed/);
  assertNoSanitizerReport(stderr);
  await server.stopAndCheck();
});

test('control characters from the server are escaped', async (t) => {
  const server = await startServer(t);
  const port = await startProxy(t, server.port, { serverName: 'lab\x1b[31m\r\nDownload 999 Gbit/s' });
  const url = `http://127.0.0.1:${port}`;
  const text = await runClient(t, [url, '--no-latency', '--no-upload', '--duration', '1']);
  assert.equal(text.code, 0, describeRun(text));
  assert.ok(!/[\x00-\x08\x0b-\x1f\x7f]/.test(text.stdout), `raw control characters in:\n${JSON.stringify(text.stdout)}`);
  assert.match(text.stdout, /^Server\s+lab\\x1b\[31m\\x0d\\x0aDownload 999 Gbit\/s at /m);

  const csv = await runClient(t, [url, '--csv', '--no-latency', '--no-upload', '--duration', '1']);
  assert.equal(csv.stdout.trimEnd().split('\n').length, 1, `--csv wrote one line: ${JSON.stringify(csv.stdout)}`);
  await server.stopAndCheck();
});

test('--insecure accepts a self-signed server', async (t) => {
  const server = await startServer(t, ['--tls-cert', path.join(tlsDir, 'cert.pem'), '--tls-key', path.join(tlsDir, 'key.pem')]);
  const url = `https://localhost:${server.port}`;

  const rejected = await runClient(t, [url, '--no-upload', '--duration', '1']);
  assert.equal(rejected.code, 1, describeRun(rejected));
  assert.ok(rejected.stderr.includes(url), `message names ${url}: ${rejected.stderr}`);
  assert.match(rejected.stderr, /certificate/);
  assert.match(rejected.stderr, /--insecure/, 'the message names the fix');

  const { result, output } = await runJson(t, [`wss://localhost:${server.port}/`, '--insecure', '--duration', '1']);
  assert.equal(result.code, 0, describeRun(result));
  assert.equal(output.url, url, 'wss becomes https');
  assert.equal(output.latency_source, 'websocket', 'latency probes over WSS');
  assert.ok(output.download_bps > 0);
  assert.ok(output.upload_bps > 0);
  await server.stopAndCheck();
});

test('-4 and -6 against a server on one family', async (t) => {
  const v4Server = await startServer(t);
  const v4 = await runJson(t, ['-4', `http://localhost:${v4Server.port}`, '--no-latency', '--no-upload', '--duration', '1']);
  assert.equal(v4.result.code, 0, describeRun(v4.result));
  assert.ok(v4.output.download_bps > 0);
  const v6Only = await runClient(t, ['-6', `http://localhost:${v4Server.port}`, '--no-latency', '--no-upload', '--duration', '1']);
  assert.equal(v6Only.code, 1, describeRun(v6Only));
  assert.ok(v6Only.stderr.includes(`http://localhost:${v4Server.port}`), v6Only.stderr);
  await v4Server.stopAndCheck();

  const v6Server = spawnLinkspeed(t, ['serve', '--listen', '[::1]:0']);
  const match = await v6Server.waitForLog(/listening on \[::1\]:(\d+)/);
  const v6 = await runJson(t, ['-6', `ws://[::1]:${match[1]}`, '--duration', '1']);
  assert.equal(v6.result.code, 0, describeRun(v6.result));
  assert.equal(v6.output.url, `http://[::1]:${match[1]}`);
  assert.equal(v6.output.client_ip, '::1');
  assert.ok(v6.output.upload_bps > 0);

  const addresses = await dns.lookup('localhost', { all: true });
  if (addresses.some((address) => address.family === 6)) {
    const v4Only = await runClient(t, ['-4', `http://localhost:${match[1]}`, '--no-latency', '--no-upload']);
    assert.equal(v4Only.code, 1, describeRun(v4Only));
    assert.ok(v4Only.stderr.includes(`http://localhost:${match[1]}`), v4Only.stderr);
  }
  await v6Server.stopAndCheck();
});

test('--legacy: 10 transfers over /ws', async (t) => {
  const server = await startServer(t);
  const { result, output } = await runJson(t, [serverUrl(server), '--legacy']);

  assert.equal(result.code, 0, describeRun(result));
  assert.equal(output.method, 'legacy');
  assert.equal(output.bytes_received, 10 * 10 * MiB);
  assert.ok(output.download_bps > 0);
  assert.equal(output.upload_bps, null);
  assert.equal(output.latency_source, 'websocket');
  assert.ok(output.notes.some((note) => note.includes('upload')), JSON.stringify(output.notes));
  await server.stopAndCheck();
});

test('--ndt7: download over the ndt7 endpoints', async (t) => {
  const server = await startServer(t);
  const { result, output } = await runJson(t, [serverUrl(server), '--ndt7', '--no-upload']);

  assert.equal(result.code, 0, describeRun(result));
  assert.equal(output.method, 'ndt7');
  assert.ok(output.download_bps > 0);
  assert.ok(output.download_server_bps > 0, 'the server measurement is reported');
  assert.ok(output.download_duration_ms >= 9000, `ndt7 runs its fixed 10 s: ${output.download_duration_ms}`);
  assert.equal(output.latency_source, 'websocket');
  assert.equal(output.streams, 1);
  await server.stopAndCheck();
});

test('--ndt7 without latency endpoint: server MinRTT', async (t) => {
  const server = await startServer(t);
  const port = await startProxy(t, server.port, {
    rejectUpgrade: (request) => request.url.startsWith('/api/v1/latency'),
  });
  const url = `http://127.0.0.1:${port}`;
  const { result, output } = await runJson(t, [url, '--ndt7', '--no-download']);

  assert.equal(result.code, 0, describeRun(result));
  assert.ok(output.upload_bps > 0);
  assert.equal(output.latency_source, 'server_tcp_info');
  assert.ok(output.latency_ms > 0, `latency_ms ${output.latency_ms}`);
  assert.ok(output.notes.some((note) => note.includes('MinRTT')), JSON.stringify(output.notes));
  await server.stopAndCheck();
});
