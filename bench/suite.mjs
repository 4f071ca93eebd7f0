// Benchmark suite: linkspeed against iperf3 (the practical limit), nginx sending a file
// and a Node.js server with the `ws` package, on loopback, each part for a fixed time.
// For every part it measures Gbit/s and the server's CPU seconds per GB, and compares
// them with iperf3 for the same number of streams and direction. It also measures the
// server's memory with idle /ws clients connected and the fairness of many concurrent
// downloads. Prints the summary and writes a Markdown section with the figures and the
// method.
//
// Usage: node bench/suite.mjs --bin BUILD/linkspeed [--rounds 1] [--duration 10]
//        [--iperf3 iperf3] [--nginx /usr/sbin/nginx] [--cc cc] [--server-cpu 0]
//        [--client-cpu 1] [--idle-clients 1000] [--fair-streams 50] [--output FILE]
// The process needs `ulimit -n` above --idle-clients plus a few hundred.
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, closeSync, fsyncSync, mkdirSync, mkdtempSync, openSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import {
  cpuSeconds, gbit, jainIndex, loadAverage, median, memoryOfTree, runCommand, startIperf3, startLinkspeed,
  startListeningServer, stopProcess,
} from './lib.mjs';

const benchDir = path.dirname(fileURLToPath(import.meta.url));
const { values: options } = parseArgs({
  options: {
    bin: { type: 'string', default: process.env.LINKSPEED_BIN },
    rounds: { type: 'string', default: '1' },
    duration: { type: 'string', default: '10' },
    iperf3: { type: 'string', default: process.env.IPERF3 ?? 'iperf3' },
    nginx: { type: 'string', default: process.env.NGINX ?? '/usr/sbin/nginx' },
    cc: { type: 'string', default: process.env.CC ?? 'cc' },
    'server-cpu': { type: 'string', default: '0' },
    'client-cpu': { type: 'string', default: '1' },
    'idle-clients': { type: 'string', default: '1000' },
    'fair-streams': { type: 'string', default: '50' },
    output: { type: 'string' },
  },
});

/** Returns option `name` as an integer in min..max, or exits with status 2 and a message. */
function integerOption(name, min, max) {
  const value = Number(options[name]);
  if (!/^\d+$/.test(options[name]) || value < min || value > max) {
    console.error(`bench/suite.mjs: invalid --${name} "${options[name]}": expected an integer in ${min}..${max}`);
    process.exit(2);
  }
  return value;
}

if (!options.bin) {
  console.error('bench/suite.mjs: missing --bin (or LINKSPEED_BIN): the linkspeed binary to test');
  process.exit(2);
}
const rounds = integerOption('rounds', 1, 20);
const durationS = integerOption('duration', 2, 60);
const idleClients = integerOption('idle-clients', 1, 20000);
const fairStreams = integerOption('fair-streams', 2, 128);
const serverCpu = integerOption('server-cpu', 0, 4095);
const clientCpu = integerOption('client-cpu', 0, 4095);

// Size of every /__down request, of the file nginx serves and of every /__up body. It is
// linkspeed's default --max-download-bytes and --max-upload-bytes.
const REQUEST_BYTES = 1073741824;
// iperf3 -l: the size of each write and read, equal to linkspeed's /ws fragment size and
// its largest ndt7 message. iperf3's own default for TCP is 128 KiB.
const IPERF3_LENGTH_BYTES = 1048576;
// The ndt7 server ends a test after 10 s, whatever --duration sets.
const NDT7_DURATION_S = 10;
// Idle clients are held past linkspeed's --client-timeout (10 s by default), so the
// figure is for clients that the server keeps, not for ones it is about to drop.
const IDLE_HOLD_S = 12;
const MEMORY_TARGET_BYTES = 100e6;
const CLIENT_TIMEOUT_MS = (Math.max(durationS, NDT7_DURATION_S) + 30) * 1000;

const pin = os.cpus().length >= 2 && serverCpu !== clientCpu
  && serverCpu < os.cpus().length && clientCpu < os.cpus().length;
const serverPrefix = pin ? ['taskset', '-c', String(serverCpu)] : [];
const clientPrefix = pin ? ['taskset', '-c', String(clientCpu)] : [];
requireLinkspeedTest();

/** Compiles the benchmark clients into workDir and returns their paths. */
async function buildClients(workDir) {
  const curlFlags = execFileSync('pkg-config', ['--cflags', '--libs', 'libcurl'], { encoding: 'utf8' })
    .trim().split(/\s+/).filter(Boolean);
  const clients = {
    wsread: path.join(workDir, 'wsread'),
    httpread: path.join(workDir, 'httpread'),
  };
  await runCommand([options.cc, '-O2', '-o', clients.wsread, path.join(benchDir, 'wsread.c')], 60_000);
  await runCommand([options.cc, '-O2', '-o', clients.httpread, path.join(benchDir, 'httpread.c'), ...curlFlags],
    60_000);
  return clients;
}

/** Exits with a message unless the binary has the `test` command, the command-line client. */
function requireLinkspeedTest() {
  try {
    execFileSync(options.bin, ['test', '--help'], { stdio: 'ignore', timeout: 10_000 });
  } catch {
    console.error(`bench/suite.mjs: ${options.bin} test --help failed: the suite needs a linkspeed with the test command`);
    process.exit(1);
  }
}

/** Writes `bytes` random bytes to `file` and flushes them to disk, so that no writeback runs during the measurements. */
function makeRandomFile(file, bytes) {
  const chunkBytes = 16 * 1048576;
  const fd = openSync(file, 'w', 0o644);
  try {
    for (let written = 0; written < bytes; written += chunkBytes) {
      writeSync(fd, randomBytes(Math.min(chunkBytes, bytes - written)));
    }
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Resolves to a TCP port of 127.0.0.1 that was free a moment ago. */
function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Resolves to true once 127.0.0.1:port accepts a connection, or to false when `child` exits or 10 s pass. */
async function waitForPort(port, child) {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline && child.exitCode === null && child.signalCode === null) {
    const connected = await new Promise((resolve) => {
      const socket = net.connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (connected) {
      return true;
    }
    await sleep(100);
  }
  return false;
}

function nginxConfig(root, port) {
  return `daemon off;
worker_processes 1;
pid ${root}/nginx.pid;
error_log ${root}/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    default_type application/octet-stream;
    client_body_temp_path ${root}/temp/body;
    proxy_temp_path ${root}/temp/proxy;
    fastcgi_temp_path ${root}/temp/fastcgi;
    uwsgi_temp_path ${root}/temp/uwsgi;
    scgi_temp_path ${root}/temp/scgi;
    server {
        listen 127.0.0.1:${port};
        root ${root}/www;
    }
}
`;
}

/**
 * Starts nginx in the foreground with a configuration in workDir/nginx that serves
 * workDir/nginx/www, and resolves to { process, port }. nginx takes no port 0, so it
 * tries up to 8 free ports.
 */
async function startNginx(workDir) {
  const root = path.join(workDir, 'nginx');
  mkdirSync(path.join(root, 'temp'), { recursive: true });
  for (let attempt = 0; attempt < 8; attempt++) {
    const port = await freePort();
    const configFile = path.join(root, 'nginx.conf');
    writeFileSync(configFile, nginxConfig(root, port));
    const command = [...serverPrefix, options.nginx, '-e', path.join(root, 'error.log'), '-p', root, '-c', configFile];
    const child = spawn(command[0], command.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    child.stderr.on('data', (chunk) => {
      log += chunk;
    });
    if (await waitForPort(port, child)) {
      return { process: child, port };
    }
    await stopProcess(child, 2000);
    if (!log.includes('Address already in use')) {
      throw new Error(`nginx did not start on 127.0.0.1:${port}:\n${log}`);
    }
  }
  throw new Error('nginx failed to listen on 8 free ports');
}

// ---- Clients. Each resolves to { bps, bytes, client_cpu_s, stream_bps }: bps is the
// receiver's rate and bytes what the server sent or received, for its CPU per GB.

async function runIperf3(iperf3, streams, reverse) {
  const args = ['-c', '127.0.0.1', '-p', String(iperf3.port), '-t', String(durationS), '-P', String(streams),
    '-l', String(IPERF3_LENGTH_BYTES), '-J', ...(reverse ? ['-R'] : [])];
  const result = JSON.parse(await runCommand([...clientPrefix, options.iperf3, ...args], CLIENT_TIMEOUT_MS));
  const { end } = result;
  return {
    bps: end.sum_received.bits_per_second,
    bytes: reverse ? end.sum_sent.bytes : end.sum_received.bytes,
    client_cpu_s: (end.cpu_utilization_percent.host_total / 100) * end.sum_received.seconds,
    stream_bps: end.streams.map((stream) => stream.receiver.bits_per_second),
  };
}

async function runHttpread(clients, url, streams, { uploadBytes, unpinned } = {}) {
  const args = ['--streams', String(streams), '--duration', String(durationS),
    ...(uploadBytes ? ['--upload-bytes', String(uploadBytes)] : []), url];
  const prefix = unpinned ? [] : clientPrefix;
  const result = JSON.parse(await runCommand([...prefix, clients.httpread, ...args], CLIENT_TIMEOUT_MS));
  return {
    bps: result.gbit_per_s * 1e9,
    bytes: result.bytes,
    client_cpu_s: result.cpu_s,
    stream_bps: result.stream_bytes.map((bytes) => (bytes * 8) / result.duration_s),
  };
}

async function runWsread(clients, port) {
  const command = [...clientPrefix, clients.wsread, '--json', '--duration', String(durationS),
    `ws://127.0.0.1:${port}/ws`];
  const result = JSON.parse(await runCommand(command, CLIENT_TIMEOUT_MS));
  // total_payload_bytes includes the rest of the message in flight at the deadline,
  // which the server sent but the rate leaves out.
  return { bps: result.gbit_per_s * 1e9, bytes: result.total_payload_bytes };
}

/**
 * Runs `linkspeed test --json --no-latency` with `args` against the server on `port`.
 * The rate is the client's own figure, over its stable window; for an upload the
 * server's count when the JSON has it (ndt7). `detail` gives the rate over the whole
 * transfer, which is what iperf3 reports.
 */
async function runLinkspeedTest(port, args, direction) {
  const command = [...clientPrefix, options.bin, 'test', '--json', '--no-latency', ...args,
    `http://127.0.0.1:${port}`];
  const result = JSON.parse(await runCommand(command, CLIENT_TIMEOUT_MS));
  if (result.error) {
    throw new Error(`linkspeed test reported an error: ${JSON.stringify(result.error)}`);
  }
  if (direction === 'download') {
    const wholeBps = (result.bytes_received * 8) / (result.download_duration_ms / 1e3);
    return {
      bps: result.download_bps,
      bytes: result.bytes_received,
      detail: `${gbit(wholeBps)} Gbit/s over ${Math.round(result.download_duration_ms)} ms, `
        + `${Math.round(result.download_stable_window_ms)} ms stable window`,
    };
  }
  const bytes = result.upload_server_bytes ?? result.bytes_sent;
  const wholeBps = (bytes * 8) / (result.upload_duration_ms / 1e3);
  return {
    bps: result.upload_server_bps ?? result.upload_bps,
    bytes,
    detail: `${gbit(wholeBps)} Gbit/s over ${Math.round(result.upload_duration_ms)} ms, `
      + `${Math.round(result.upload_stable_window_ms)} ms stable window`,
  };
}

// ---- Memory with idle clients

/** Resolves to the next line of `lines` (an async iterator), or rejects after timeoutMs. */
async function nextLine(lines, timeoutMs, what) {
  let timer;
  const timeout = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)), timeoutMs);
  });
  try {
    const { value, done } = await Promise.race([lines.next(), timeout]);
    if (done) {
      throw new Error(`bench/ws-idle-clients.mjs exited before it reported ${what}`);
    }
    return JSON.parse(value);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Measures the memory of the server `server` (its process tree) before and while
 * idleClients WebSocket clients are connected to its /ws, held for IDLE_HOLD_S.
 * `healthUrl`, when given, is read while they are held to check the server's own count.
 */
async function measureIdleMemory(server, healthUrl) {
  await sleep(1000);
  const idle = memoryOfTree(server.process.pid);
  const script = path.join(benchDir, 'ws-idle-clients.mjs');
  const clients = spawn(process.execPath, [script, `ws://127.0.0.1:${server.port}/ws`,
    '--connections', String(idleClients)], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  clients.stderr.on('data', (chunk) => {
    stderr += chunk;
  });
  const lines = readline.createInterface({ input: clients.stdout })[Symbol.asyncIterator]();
  try {
    const opened = await nextLine(lines, 120_000, 'the open connections');
    if (opened.open !== idleClients) {
      throw new Error(`${opened.open} of ${idleClients} connections opened, ${opened.failed} failed; `
        + `first error: ${opened.first_error}`);
    }
    await sleep(IDLE_HOLD_S * 1000);
    const loaded = memoryOfTree(server.process.pid);
    let serverConnections;
    if (healthUrl) {
      serverConnections = (await (await fetch(healthUrl)).json()).connections;
    }
    clients.stdin.end();
    const closing = await nextLine(lines, 30_000, 'the connections still open');
    return {
      idle, loaded, kept: closing.open, closed_by_server: closing.closed_by_server, server_connections: serverConnections,
    };
  } catch (error) {
    error.message += stderr ? `\nws-idle-clients: ${stderr}` : '';
    throw error;
  } finally {
    await stopProcess(clients, 5000);
  }
}

// ---- The run

/** Runs one part and returns its row, with the server's CPU time and the load average at its start. */
async function runPart(round, part) {
  const load = loadAverage().split(' ')[0];
  console.error(`Round ${round} of ${rounds}: ${part.label}, ${part.streams} stream(s), load ${load}`);
  const before = cpuSeconds(part.server().process.pid);
  try {
    const result = await part.run();
    const serverCpuS = cpuSeconds(part.server().process.pid) - before;
    const row = {
      round, key: part.key, load, ...result, server_cpu_s: serverCpuS, cpu_s_per_gb: serverCpuS / (result.bytes / 1e9),
    };
    if (result.stream_bps && part.fairness) {
      row.jain = jainIndex(result.stream_bps);
    }
    console.error(`  ${gbit(row.bps)} Gbit/s, ${row.cpu_s_per_gb.toFixed(3)} server CPU s per GB`
      + `${row.jain !== undefined ? `, Jain's index ${row.jain.toFixed(4)}` : ''}`);
    return row;
  } catch (error) {
    console.error(`  failed: ${error.message}`);
    return { round, key: part.key, load, error: error.message.split('\n').slice(0, 3).join(' ') };
  }
}

async function main() {
  const workDir = mkdtempSync(path.join(os.tmpdir(), 'linkspeed-suite-'));
  // nginx's worker runs as an unprivileged user when nginx is started as root, and reads the file from here.
  chmodSync(workDir, 0o755);
  const started = [];
  const servers = {};
  const rows = [];
  const memory = [];
  try {
    const clients = await buildClients(workDir);
    const transfersPerIp = String(Math.max(idleClients, fairStreams) + 16);
    servers.iperf3 = await startIperf3(options.iperf3, serverPrefix);
    started.push(servers.iperf3);
    servers.linkspeed = await startLinkspeed(options.bin, ['--listen', '127.0.0.1:0', '--workers', '1',
      '--max-transfers-per-ip', transfersPerIp], serverPrefix);
    started.push(servers.linkspeed);
    servers.node = await startListeningServer([...serverPrefix, process.execPath,
      path.join(benchDir, 'ws-node-server.mjs'), '--port', '0'], 'ws-node-server');
    started.push(servers.node);

    mkdirSync(path.join(workDir, 'nginx', 'www'), { recursive: true });
    console.error(`Writing the ${REQUEST_BYTES}-byte random file that nginx serves`);
    makeRandomFile(path.join(workDir, 'nginx', 'www', 'file.bin'), REQUEST_BYTES);
    servers.nginx = await startNginx(workDir);
    started.push(servers.nginx);

    const base = (server) => `http://127.0.0.1:${server.port}`;
    const downUrl = () => `${base(servers.linkspeed)}/__down?bytes=${REQUEST_BYTES}`;
    const fileUrl = () => `${base(servers.nginx)}/file.bin`;
    const linkspeedDown = (streams) => runLinkspeedTest(servers.linkspeed.port,
      ['--no-upload', '--streams', String(streams), '--duration', String(durationS), '--no-early-stop'],
      'download');
    const linkspeedUp = () => runLinkspeedTest(servers.linkspeed.port,
      ['--no-download', '--streams', '1', '--duration', String(durationS), '--no-early-stop'], 'upload');
    const linkspeedNdt7 = (direction) => runLinkspeedTest(servers.linkspeed.port,
      ['--ndt7', direction === 'download' ? '--no-upload' : '--no-download'], direction);
    const linkspeedClient = '`linkspeed test`';

    const parts = [
      { key: 'iperf3-down-1', label: 'iperf3 -R', streams: 1, client: 'iperf3', server: () => servers.iperf3,
        run: () => runIperf3(servers.iperf3, 1, true) },
      { key: 'linkspeed-down-1', label: 'linkspeed /__down', streams: 1, client: linkspeedClient,
        reference: 'iperf3-down-1', server: () => servers.linkspeed, run: () => linkspeedDown(1) },
      { key: 'nginx-down-1', label: 'nginx, 1 GiB file', streams: 1, client: 'httpread (libcurl)',
        reference: 'iperf3-down-1', server: () => servers.nginx, run: () => runHttpread(clients, fileUrl(), 1) },
      { key: 'linkspeed-ws', label: 'linkspeed /ws', streams: 1, client: 'wsread', reference: 'iperf3-down-1',
        server: () => servers.linkspeed, run: () => runWsread(clients, servers.linkspeed.port) },
      { key: 'node-ws', label: 'Node.js ws, /ws', streams: 1, client: 'wsread', reference: 'iperf3-down-1',
        server: () => servers.node, run: () => runWsread(clients, servers.node.port) },
      { key: 'linkspeed-ndt7-down', label: 'linkspeed ndt7 download', streams: 1,
        client: '`linkspeed test --ndt7`', reference: 'iperf3-down-1',
        server: () => servers.linkspeed, run: () => linkspeedNdt7('download') },
      { key: 'iperf3-down-4', label: 'iperf3 -R', streams: 4, client: 'iperf3', server: () => servers.iperf3,
        run: () => runIperf3(servers.iperf3, 4, true) },
      { key: 'linkspeed-down-4', label: 'linkspeed /__down', streams: 4, client: linkspeedClient,
        reference: 'iperf3-down-4', server: () => servers.linkspeed, run: () => linkspeedDown(4) },
      { key: 'nginx-down-4', label: 'nginx, 1 GiB file', streams: 4, client: 'httpread (libcurl)',
        reference: 'iperf3-down-4', server: () => servers.nginx, run: () => runHttpread(clients, fileUrl(), 4) },
      { key: 'iperf3-up-1', label: 'iperf3 (client sends)', streams: 1, client: 'iperf3', direction: 'upload',
        server: () => servers.iperf3, run: () => runIperf3(servers.iperf3, 1, false) },
      { key: 'linkspeed-up-1', label: 'linkspeed /__up', streams: 1, client: linkspeedClient, direction: 'upload',
        reference: 'iperf3-up-1', server: () => servers.linkspeed, run: () => linkspeedUp() },
      { key: 'linkspeed-ndt7-up', label: 'linkspeed ndt7 upload', streams: 1, direction: 'upload',
        client: '`linkspeed test --ndt7`', reference: 'iperf3-up-1',
        server: () => servers.linkspeed, run: () => linkspeedNdt7('upload') },
      { key: 'iperf3-fair', label: 'iperf3 -R', streams: fairStreams, client: 'iperf3', fairness: true,
        server: () => servers.iperf3, run: () => runIperf3(servers.iperf3, fairStreams, true) },
      { key: 'linkspeed-fair-1', label: 'linkspeed /__down, 1 worker', streams: fairStreams,
        client: 'httpread (libcurl)', fairness: true, server: () => servers.linkspeed,
        run: () => runHttpread(clients, downUrl(), fairStreams) },
      { key: 'linkspeed-fair-2', label: 'linkspeed /__down, 2 workers, not pinned', streams: fairStreams,
        client: 'httpread (libcurl)', fairness: true, server: () => servers.linkspeedMemory,
        run: () => runHttpread(clients, `${base(servers.linkspeedMemory)}/__down?bytes=${REQUEST_BYTES}`, fairStreams,
          { unpinned: true }) },
    ];

    const separateServerKey = 'linkspeed-fair-2';
    for (let round = 1; round <= rounds; round++) {
      for (const part of parts.filter((entry) => entry.key !== separateServerKey)) {
        rows.push(await runPart(round, part));
      }
      // A fresh server with two workers, so that its memory figures start from a server
      // that has moved no data. Its fairness part runs after the memory part.
      servers.linkspeedMemory = await startLinkspeed(options.bin, ['--listen', '127.0.0.1:0', '--workers', '2',
        '--max-transfers-per-ip', transfersPerIp]);
      started.push(servers.linkspeedMemory);
      memory.push(await runMemoryPart(round, 'linkspeed', servers.linkspeedMemory,
        `${base(servers.linkspeedMemory)}/healthz`));
      rows.push(await runPart(round, parts.find((entry) => entry.key === separateServerKey)));
      await stopProcess(servers.linkspeedMemory.process);

      const nodeForMemory = await startListeningServer([process.execPath, path.join(benchDir, 'ws-node-server.mjs'),
        '--port', '0'], 'ws-node-server');
      started.push(nodeForMemory);
      memory.push(await runMemoryPart(round, 'node', nodeForMemory));
      await stopProcess(nodeForMemory.process);
    }

    const report = formatReport(parts, rows, memory);
    process.stdout.write(`\n${report.summary}\n`);
    if (options.output) {
      writeFileSync(options.output, report.markdown);
    }
    const failures = rows.filter((row) => row.error).length + memory.filter((entry) => entry.error).length;
    if (failures > 0) {
      console.error(`bench/suite.mjs: ${failures} part(s) failed, see the report`);
      process.exitCode = 1;
    }
  } finally {
    for (const server of started.reverse()) {
      await stopProcess(server.process);
    }
    rmSync(workDir, { recursive: true, force: true });
  }
}

async function runMemoryPart(round, serverName, server, healthUrl) {
  console.error(`Round ${round} of ${rounds}: ${serverName} memory with ${idleClients} idle /ws clients`);
  try {
    const result = await measureIdleMemory(server, healthUrl);
    console.error(`  RSS ${(result.idle.rss_bytes / 1e6).toFixed(1)} MB idle, `
      + `${(result.loaded.rss_bytes / 1e6).toFixed(1)} MB with the clients; ${result.kept} kept`);
    return { round, server: serverName, ...result };
  } catch (error) {
    console.error(`  failed: ${error.message}`);
    return { round, server: serverName, error: error.message.split('\n').slice(0, 3).join(' ') };
  }
}

// ---- Report

const megabytes = (bytes) => (Number.isFinite(bytes) ? (bytes / 1e6).toFixed(1) : 'n/a');
const fixed = (value, digits) => (Number.isFinite(value) ? value.toFixed(digits) : 'n/a');
/** Returns "met", "not met", or "not measured" when `ok` is undefined. */
function verdict(ok) {
  if (ok === undefined) {
    return 'not measured';
  }
  return ok ? 'met' : 'not met';
}

function formatReport(parts, rows, memory) {
  const medianOf = (key, field) => median(rows.filter((row) => row.key === key && !row.error).map((row) => row[field]));
  const figures = new Map(parts.map((part) => [part.key, {
    bps: medianOf(part.key, 'bps'), cpuPerGb: medianOf(part.key, 'cpu_s_per_gb'), jain: medianOf(part.key, 'jain'),
  }]));
  const ratio = (a, b) => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? a / b : NaN);
  const throughputParts = parts.filter((part) => !part.fairness);

  const summaryRows = throughputParts.map((part) => {
    const own = figures.get(part.key);
    const reference = part.reference ? figures.get(part.reference) : undefined;
    return `| ${part.label} | ${part.direction ?? 'download'} | ${part.streams} | ${part.client} | ${gbit(own.bps)} | `
      + `${fixed(own.cpuPerGb, 3)} | ${reference ? fixed(ratio(own.bps, reference.bps), 3) : '(reference)'} | `
      + `${reference ? fixed(ratio(own.cpuPerGb, reference.cpuPerGb), 3) : '(reference)'} |`;
  });
  const summaryTable = `| part | direction | streams | client | Gbit/s | server CPU s per GB | Gbit/s / iperf3 | CPU per GB / iperf3 |
|---|---|---|---|---|---|---|---|
${summaryRows.join('\n')}`;

  const linkspeedMemory = memory.filter((entry) => entry.server === 'linkspeed' && !entry.error);
  const loadedRss = median(linkspeedMemory.map((entry) => entry.loaded.rss_bytes));
  const throughputTarget = (streams) => {
    const value = ratio(figures.get(`linkspeed-down-${streams}`).bps, figures.get(`iperf3-down-${streams}`).bps);
    return `| linkspeed /__down, ${streams} stream${streams > 1 ? 's' : ''}: at least 0.95 of iperf3 -R -P ${streams} `
      + `| ${fixed(value, 3)} | ${verdict(Number.isFinite(value) ? value >= 0.95 : undefined)} |`;
  };
  const cpuTarget = (streams) => {
    const value = ratio(figures.get(`linkspeed-down-${streams}`).cpuPerGb, figures.get(`iperf3-down-${streams}`).cpuPerGb);
    return `| linkspeed /__down, ${streams} stream${streams > 1 ? 's' : ''}: server CPU per GB at most 1.1 times iperf3's `
      + `| ${fixed(value, 3)} | ${verdict(Number.isFinite(value) ? value <= 1.1 : undefined)} |`;
  };
  const wsRatio = ratio(figures.get('linkspeed-ws').bps, figures.get('node-ws').bps);
  const wsCpuRatio = ratio(figures.get('linkspeed-ws').cpuPerGb, figures.get('node-ws').cpuPerGb);
  const targetsTable = `| target | measured | result |
|---|---|---|
${throughputTarget(1)}
${throughputTarget(4)}
${cpuTarget(1)}
${cpuTarget(4)}
| linkspeed /ws ahead of the Node.js ws server: Gbit/s ratio above 1 | ${fixed(wsRatio, 3)} | ${verdict(Number.isFinite(wsRatio) ? wsRatio > 1 : undefined)} |
| linkspeed /ws ahead of the Node.js ws server: CPU per GB ratio below 1 | ${fixed(wsCpuRatio, 3)} | ${verdict(Number.isFinite(wsCpuRatio) ? wsCpuRatio < 1 : undefined)} |
| linkspeed RSS with ${idleClients} idle /ws clients below ${MEMORY_TARGET_BYTES / 1e6} MB | ${megabytes(loadedRss)} MB | ${verdict(Number.isFinite(loadedRss) ? loadedRss < MEMORY_TARGET_BYTES : undefined)} |`;

  const memoryRows = ['linkspeed', 'node'].map((server) => {
    const entries = memory.filter((entry) => entry.server === server && !entry.error);
    const pick = (fn) => median(entries.map(fn));
    const perConnection = pick((entry) => (entry.loaded.rss_bytes - entry.idle.rss_bytes) / idleClients);
    return `| ${server === 'linkspeed' ? 'linkspeed, 2 workers' : 'Node.js ws server'} | `
      + `${entries[0]?.loaded.processes ?? 'n/a'} | ${megabytes(pick((entry) => entry.idle.rss_bytes))} | `
      + `${megabytes(pick((entry) => entry.loaded.rss_bytes))} | ${megabytes(pick((entry) => entry.idle.pss_bytes))} | `
      + `${megabytes(pick((entry) => entry.loaded.pss_bytes))} | ${fixed(perConnection / 1e3, 1)} | `
      + `${entries.map((entry) => (entry.server_connections === undefined ? `${entry.kept}`
        : `${entry.kept} (/healthz: ${entry.server_connections})`)).join(', ') || 'n/a'} |`;
  });
  const memoryTable = `| server | processes | RSS idle, MB | RSS with clients, MB | PSS idle, MB | PSS with clients, MB | RSS per client, KB | clients still open at the end |
|---|---|---|---|---|---|---|---|
${memoryRows.join('\n')}`;

  const fairnessRows = parts.filter((part) => part.fairness).map((part) => {
    const own = figures.get(part.key);
    const done = rows.filter((row) => row.key === part.key && !row.error);
    const slowest = median(done.map((row) => Math.min(...row.stream_bps)));
    const fastest = median(done.map((row) => Math.max(...row.stream_bps)));
    return `| ${part.label} | ${part.streams} | ${gbit(own.bps)} | ${fixed(own.jain, 4)} | ${gbit(slowest)} / ${gbit(fastest)} |`;
  });
  const fairnessTable = `| server | streams | total Gbit/s | Jain's index | slowest / fastest stream, Gbit/s |
|---|---|---|---|---|
${fairnessRows.join('\n')}`;

  const labels = new Map(parts.map((part) => [part.key, `${part.label}, ${part.streams} stream${part.streams > 1 ? 's' : ''}`]));
  const roundRows = rows.map((row) => (row.error
    ? `| ${row.round} | ${labels.get(row.key)} | failed | | | | | ${row.load} | ${row.error.replaceAll('|', '\\|')} |`
    : `| ${row.round} | ${labels.get(row.key)} | ${gbit(row.bps)} | ${fixed(row.bytes / 1e9, 2)} | `
      + `${fixed(row.server_cpu_s, 2)} | ${fixed(row.cpu_s_per_gb, 3)} | ${row.client_cpu_s === undefined ? "" : fixed(row.client_cpu_s, 2)} | ${row.load} | `
      + `${row.detail ?? ''} |`));
  const memoryFailures = memory.filter((entry) => entry.error)
    .map((entry) => `- Round ${entry.round}, ${entry.server} memory: failed: ${entry.error}`);

  const summary = `${summaryTable}\n\n${targetsTable}\n\n${fairnessTable}\n\n${memoryTable}\n`;
  const markdown = `## linkspeed against iperf3, nginx and a Node.js server

Written by \`bench/suite.mjs\`.

### Throughput and server CPU

1 Gbit = 10^9 bit, 1 GB = 10^9 bytes and 1 MB = 10^6 bytes. Each figure is the median of
${rounds} round${rounds === 1 ? '' : 's'}; the ratios divide the medians by those of iperf3 with the
same number of streams and direction.

${summaryTable}

### Targets

${targetsTable}

### Fairness of ${fairStreams} concurrent downloads

Jain's index over the streams' rates, (sum x)^2 / (n * sum x^2): 1 when every stream gets
the same rate, 1/n when one gets everything.

${fairnessTable}

### Memory with ${idleClients} idle /ws clients

Summed over the server's processes (linkspeed's parent and workers); the median over the rounds.

${memoryTable}
${memoryFailures.length ? `\n${memoryFailures.join('\n')}\n` : ''}
### Rounds

| round | part | Gbit/s | GB moved | server CPU s | CPU s per GB | client CPU s | load (1 min) | note |
|---|---|---|---|---|---|---|---|---|
${roundRows.join('\n')}

${formatMethod()}`;
  return { summary, markdown };
}

function formatMethod() {
  const pinning = pin
    ? `Every server runs on CPU ${serverCpu} and every client on CPU ${clientCpu} (\`taskset -c\`), except
  where a row says "not pinned" and in the memory test.`
    : 'Servers and clients are not pinned to CPUs.';
  return `### Method

- Every part runs for ${durationS} s over 127.0.0.1, except ndt7, whose server ends a test
  after ${NDT7_DURATION_S} s. The parts run one after another in the order of the rounds table.
  ${pinning}
- iperf3: \`iperf3 -s\` and \`iperf3 -c 127.0.0.1 -t ${durationS} -P N -l ${IPERF3_LENGTH_BYTES} -J\`, with \`-R\` so
  that the server sends. iperf3 3.12 runs every stream in one thread. The rate is the
  receiver's over the whole run, \`end.sum_received.bits_per_second\`.
- linkspeed: \`linkspeed serve --listen 127.0.0.1:0 --workers 1\` with
  \`--max-transfers-per-ip\` raised above the number of clients. One worker is one
  thread, like iperf3 3.12.
- linkspeed /__down and /__up: \`linkspeed test --json --no-latency --no-upload --streams N
  --duration ${durationS} --no-early-stop\`, and \`--no-download --streams 1\` for the upload,
  so that each runs the whole ${durationS} s as iperf3 does. The rate is its \`download_bps\` or
  \`upload_bps\`, over the stable window that docs/methodology.md describes (the first
  second, the ramp-up, left out); the rounds table also gives the rate over the whole
  transfer.
- linkspeed ndt7: \`linkspeed test --json --no-latency --ndt7\` with \`--no-upload\` or
  \`--no-download\`. The download rate is the client's \`download_bps\`, the upload rate
  the server's figure, \`upload_server_bps\`.
- linkspeed /ws and the Node.js server: \`bench/wsread.c\` sends a text message, reads
  the 10485760-byte binary message, and sends the next one, for ${durationS} s.
- nginx: Debian's nginx with \`worker_processes 1\`, \`sendfile on\` and \`tcp_nopush on\` as in
  Debian's default configuration, serving a ${REQUEST_BYTES}-byte random file made once per run
  (written and flushed to disk before the parts start, so it is in the page cache).
  \`bench/httpread.c\` reads it, a libcurl client (multi interface, one connection per
  stream) that GETs the file one request after another on each stream for ${durationS} s.
  linkspeed and iperf3 send one buffer again and again: linkspeed the first 1 MiB of its
  payload (all 10 MiB over /ws), iperf3 one of 1 MiB. nginx sends a 1 GiB file, so its bytes
  are not in the CPU cache.
- Node.js: \`bench/ws-node-server.mjs\`, the /ws protocol with the \`ws\` package: every text
  message gets one 10485760-byte binary message from one random buffer.
- Client CPU (rounds table, where the client reports it): a figure close to the part's
  duration means that the client, a single thread, set the rate rather than the server.
- Server CPU: utime + stime + cutime + cstime from \`/proc/PID/stat\` of the server and all
  its descendants (nginx's and linkspeed's workers), read before and after each part, in
  clock ticks (10 ms). CPU per GB divides it by the bytes the server sent (or received, for
  uploads): iperf3's own count, and for the others what the client received or the
  server counted.
- Fairness: ${fairStreams} streams at once for ${durationS} s, read by \`bench/httpread.c\` with
  \`/__down?bytes=${REQUEST_BYTES}\` requests one after another on each stream, because
  \`linkspeed test\` reports no per-stream figures and takes at most 16 streams. A
  stream's rate is its bytes over the whole time. iperf3 -R -P ${fairStreams} is the reference.
  The last row uses a separate server with \`--workers 2\`, with neither server nor client
  pinned, so the split of connections between the workers counts.
- Memory: a fresh \`linkspeed serve --workers 2\` and a fresh Node.js server, not pinned.
  \`bench/ws-idle-clients.mjs\` opens ${idleClients} WebSocket connections to \`/ws\` with the \`ws\`
  package, in batches of 100, and keeps them open for ${IDLE_HOLD_S} s without sending messages
  (\`ws\` sends a pong for each of the server's pings). RSS is VmRSS of
  \`/proc/PID/status\` and PSS the Pss of \`/proc/PID/smaps_rollup\`, summed over the
  server's processes, read before the clients connect and at the end of the hold. RSS counts the 10 MiB payload once in every
  process that maps it, and PSS divides it among them.
`;
}

main().catch((error) => {
  console.error(`bench/suite.mjs: ${error.stack ?? error}`);
  process.exit(1);
});
