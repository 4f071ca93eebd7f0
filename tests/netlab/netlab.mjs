// A rate-limited link between network namespaces for the accuracy tests, and the processes
// that run in them: the linkspeed server, iperf3, the page client (page-client.mjs) and
// the command-line client (`linkspeed test`).
//
// Topology: server namespace -- router namespace -- client namespace, two veth pairs, and
// a tbf qdisc on each egress interface of the router. The router is needed because a tbf
// on the sender's own interface never builds a deep queue: TCP small queues (TSQ) caps the
// bytes one socket keeps in its local qdisc to about 1 ms at its pacing rate. Measured on
// a 2-core VM with kernel 6.18, cubic at 50 Mbit/s with tbf `latency 200ms`: 17 ms median
// loaded latency with the tbf in the server namespace, 98 to 137 ms behind a router.

import { execFile, spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BINARY = process.env.LINKSPEED_BIN || path.join(REPO_ROOT, 'build', 'linkspeed');
const PAGE_CLIENT = path.join(REPO_ROOT, 'tests', 'netlab', 'page-client.mjs');

// Private addresses, configured inside the namespaces only.
export const SERVER_ADDRESS = '10.201.1.1';
const SERVER_ROUTER_ADDRESS = '10.201.1.254';
const CLIENT_ADDRESS = '10.201.2.1';
const CLIENT_ROUTER_ADDRESS = '10.201.2.254';
const PREFIX_LENGTH = 24;

export const SERVER_PORT = 8080;
const IPERF_PORT = 5201;

const COMMAND_TIMEOUT_MS = 10_000;
const START_TIMEOUT_MS = 10_000;
// The server lets running transfers finish for --shutdown-grace (default 5 s) after SIGTERM.
const STOP_TIMEOUT_MS = 10_000;
const IPERF_SECONDS = 5;
// iperf3 leaves the first second (slow start) out of its figures, as the page leaves out
// its ramp-up.
const IPERF_OMIT_SECONDS = 1;
const IPERF_TIMEOUT_MS = 30_000;
// The page client measures idle latency and then each direction for at most 10 s.
const PAGE_CLIENT_TIMEOUT_MS = 60_000;
// `linkspeed test` measures idle latency and then each direction for at most --duration.
const CLI_TIMEOUT_MS = 60_000;

/** Formats a rate in bit/s as Mbit/s with one decimal. */
export function mbit(bps) {
  return `${(bps / 1e6).toFixed(1)} Mbit/s`;
}

/** Runs a command and resolves with its stdout; rejects with its stderr when it fails or times out. */
function run(command, args, timeoutMs = COMMAND_TIMEOUT_MS) {
  return new Promise((resolve, reject) => {
    execFile(command, args, { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error) {
        const reason = error.killed ? `timed out after ${timeoutMs} ms` : `failed (${error.code})`;
        reject(new Error(`${command} ${args.join(' ')} ${reason}: ${stderr.trim()}`));
        return;
      }
      resolve(stdout);
    });
  });
}

/**
 * Returns why this process cannot build a lab (not root, or `ip netns add` fails), or
 * null when it can.
 */
export async function labUnavailableReason() {
  if (process.getuid() !== 0) {
    return `netlab tests need root to create network namespaces (running as uid ${process.getuid()})`;
  }
  const probe = `lsnl${process.pid}p`;
  try {
    await run('ip', ['netns', 'add', probe]);
  } catch (error) {
    return `netlab tests need network namespaces, but ip netns add failed: ${error.message}`;
  }
  await run('ip', ['netns', 'del', probe]);
  return null;
}

/** A child process in a namespace, with its output collected and a promise of its exit. */
class LabProcess {
  constructor(child, name) {
    this.child = child;
    this.name = name;
    this.output = '';
    this.exitStatus = null;
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (text) => {
      this.output += text;
    });
    child.stderr.on('data', (text) => {
      this.output += text;
    });
    this.exited = new Promise((resolve) => {
      child.on('close', (code, signal) => {
        this.exitStatus = { code, signal };
        resolve(this.exitStatus);
      });
    });
  }

  /** Resolves once the output matches pattern; rejects when the process exits first or after timeoutMs. */
  async waitForOutput(pattern, timeoutMs) {
    const deadline = performance.now() + timeoutMs;
    while (!pattern.test(this.output)) {
      if (this.exitStatus) {
        throw new Error(`${this.name} exited (${JSON.stringify(this.exitStatus)}) before printing ${pattern}:\n${this.output}`);
      }
      if (performance.now() > deadline) {
        throw new Error(`${this.name} did not print ${pattern} within ${timeoutMs} ms:\n${this.output}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /** Sends SIGTERM, then SIGKILL when the process is still running after STOP_TIMEOUT_MS. */
  async stop() {
    if (this.exitStatus) {
      return this.exitStatus;
    }
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), STOP_TIMEOUT_MS);
    const status = await this.exited;
    clearTimeout(timer);
    return status;
  }
}

/** Three network namespaces (server, router, client) and the processes started in them. */
export class Lab {
  constructor() {
    const prefix = `lsnl${process.pid}`;
    this.server = `${prefix}s`;
    this.router = `${prefix}r`;
    this.client = `${prefix}c`;
    this.processes = new Set();
  }

  async create() {
    for (const namespace of [this.server, this.router, this.client]) {
      await run('ip', ['netns', 'add', namespace]);
    }
    await run('ip', ['link', 'add', 'eth0', 'netns', this.server, 'type', 'veth',
      'peer', 'name', 'to-server', 'netns', this.router]);
    await run('ip', ['link', 'add', 'eth0', 'netns', this.client, 'type', 'veth',
      'peer', 'name', 'to-client', 'netns', this.router]);
    const addresses = [
      [this.server, 'eth0', SERVER_ADDRESS],
      [this.router, 'to-server', SERVER_ROUTER_ADDRESS],
      [this.client, 'eth0', CLIENT_ADDRESS],
      [this.router, 'to-client', CLIENT_ROUTER_ADDRESS],
    ];
    for (const [namespace, device, address] of addresses) {
      await run('ip', ['-n', namespace, 'addr', 'add', `${address}/${PREFIX_LENGTH}`, 'dev', device]);
      await run('ip', ['-n', namespace, 'link', 'set', device, 'up']);
    }
    for (const namespace of [this.server, this.router, this.client]) {
      await run('ip', ['-n', namespace, 'link', 'set', 'lo', 'up']);
    }
    await run('ip', ['-n', this.server, 'route', 'add', 'default', 'via', SERVER_ROUTER_ADDRESS]);
    await run('ip', ['-n', this.client, 'route', 'add', 'default', 'via', CLIENT_ROUTER_ADDRESS]);
    await run('ip', ['netns', 'exec', this.router, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
  }

  /**
   * Shapes both directions with `tbf rate R burst B latency L` on the router: to-client
   * carries downloads, to-server uploads.
   */
  async shape(rateMbit, burst, latencyMs) {
    for (const device of ['to-client', 'to-server']) {
      await run('ip', ['netns', 'exec', this.router, 'tc', 'qdisc', 'replace', 'dev', device, 'root',
        'tbf', 'rate', `${rateMbit}mbit`, 'burst', burst, 'latency', `${latencyMs}ms`]);
    }
  }

  /** Returns the default TCP congestion control of the server namespace. */
  async defaultCongestionControl() {
    const output = await run('ip', ['netns', 'exec', this.server, 'sysctl', '-n', 'net.ipv4.tcp_congestion_control']);
    return output.trim();
  }

  spawnIn(namespace, name, command, args) {
    const child = spawn('ip', ['netns', 'exec', namespace, command, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    const labProcess = new LabProcess(child, name);
    this.processes.add(labProcess);
    labProcess.exited.then(() => this.processes.delete(labProcess));
    return labProcess;
  }

  /** Starts `linkspeed serve` in the server namespace and resolves once it listens. */
  async startServer(congestion) {
    const server = this.spawnIn(this.server, 'linkspeed', BINARY, ['serve',
      '--listen', `${SERVER_ADDRESS}:${SERVER_PORT}`, '--workers', '1', '--congestion', congestion]);
    await server.waitForOutput(/listening on /, START_TIMEOUT_MS);
    return server;
  }

  /** Starts `iperf3 -s` in the server namespace and resolves once it listens. */
  async startIperfServer() {
    const server = this.spawnIn(this.server, 'iperf3 -s', 'iperf3',
      ['-s', '--forceflush', '-B', SERVER_ADDRESS, '-p', String(IPERF_PORT)]);
    await server.waitForOutput(/Server listening/, START_TIMEOUT_MS);
    return server;
  }

  /**
   * Runs iperf3 -c from the client namespace with `streams` parallel streams for `seconds`,
   * the first `omitSeconds` left out, and returns the receiver's rate in bit/s.
   */
  async iperfReceiverBps(direction, { seconds = IPERF_SECONDS, omitSeconds = IPERF_OMIT_SECONDS, streams = 1 } = {}) {
    const args = ['-c', SERVER_ADDRESS, '-p', String(IPERF_PORT), '-t', String(seconds),
      '-O', String(omitSeconds), '-P', String(streams), '-J'];
    if (direction === 'download') {
      args.push('-R');
    }
    const report = JSON.parse(await run('ip', ['netns', 'exec', this.client, 'iperf3', ...args], IPERF_TIMEOUT_MS));
    return report.end.sum_received.bits_per_second;
  }

  /** Runs the page client from the client namespace and returns its figures (see page-client.mjs). */
  async runPageClient(directions) {
    const output = await run('ip', ['netns', 'exec', this.client, process.execPath, PAGE_CLIENT,
      `http://${SERVER_ADDRESS}:${SERVER_PORT}/`, directions.join(',')], PAGE_CLIENT_TIMEOUT_MS);
    return JSON.parse(output);
  }

  /**
   * Runs `linkspeed test URL --json ...args` from the client namespace and returns its JSON
   * object; rejects with the command's stderr and stdout when it exits non-zero.
   */
  async runCli(args) {
    const output = await run('ip', ['netns', 'exec', this.client, BINARY, 'test',
      `http://${SERVER_ADDRESS}:${SERVER_PORT}`, '--json', ...args], CLI_TIMEOUT_MS);
    return JSON.parse(output);
  }

  /** Stops every process started here and deletes the namespaces; safe after a partial create(). */
  async destroy() {
    await Promise.all([...this.processes].map((labProcess) => labProcess.stop()));
    const failures = [];
    for (const namespace of [this.client, this.router, this.server]) {
      try {
        await run('ip', ['netns', 'del', namespace]);
      } catch (error) {
        if (!/No such file/.test(error.message)) {
          failures.push(error.message);
        }
      }
    }
    if (failures.length > 0) {
      throw new Error(`removing the lab's namespaces failed: ${failures.join('; ')}`);
    }
  }
}
