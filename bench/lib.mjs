// Shared helpers of the benchmarks in bench/: starting servers on free loopback ports,
// running clients, medians, CPU time and memory from /proc, and the machine description.
import { execFileSync, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';

const CLOCK_TICKS_PER_SECOND = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }));
const LISTENING_PATTERN = /listening on 127\.0\.0\.1:(\d+)/;

/**
 * Starts `command` and resolves to { process, port, log } once its stderr contains
 * "listening on 127.0.0.1:PORT", as linkspeed and bench/ws-node-server.mjs log it.
 * Rejects after 10 s or when the process exits first.
 */
export function startListeningServer(command, name) {
  const child = spawn(command[0], command.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${name} did not log "listening on 127.0.0.1:PORT" within 10 s:\n${log}`));
    }, 10_000);
    child.stderr.on('data', (chunk) => {
      log += chunk;
      const match = LISTENING_PATTERN.exec(log);
      if (match) {
        clearTimeout(timer);
        resolve({ process: child, port: Number(match[1]), log: () => log });
      }
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited with ${code ?? signal} before listening:\n${log}`));
    });
  });
}

/** Starts `linkspeed serve` with `args`, as startListeningServer does. */
export function startLinkspeed(binary, args, prefix = []) {
  return startListeningServer([...prefix, binary, 'serve', ...args], 'linkspeed');
}

/** Runs `command` and resolves to its stdout. Rejects on a non-zero exit, and kills it after timeoutMs. */
export function runCommand(command, timeoutMs) {
  return new Promise((resolve, reject) => {
    const child = spawn(command[0], command.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => {
      stdout += chunk;
    });
    child.stderr.on('data', (chunk) => {
      stderr += chunk;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(new Error(`${command.join(' ')} failed to start: ${error.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) {
        resolve(stdout);
      } else {
        reject(new Error(`${command.join(' ')} exited with ${code ?? signal}:\n${stderr}${stdout.slice(0, 2000)}`));
      }
    });
  });
}

/**
 * Starts `iperf3 -s` on a random port of 127.0.0.1 and resolves to { process, port }. It
 * tries up to 8 ports, because iperf3 has no "any free port" option.
 */
export async function startIperf3(binary, prefix = []) {
  for (let attempt = 0; attempt < 8; attempt++) {
    const port = 20000 + Math.floor(Math.random() * 40000);
    const command = [...prefix, binary, '-s', '-B', '127.0.0.1', '-p', String(port), '--forceflush'];
    const child = spawn(command[0], command.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    const listening = await new Promise((resolve) => {
      let log = '';
      const timer = setTimeout(() => resolve(false), 10_000);
      child.stdout.on('data', (chunk) => {
        log += chunk;
        if (log.includes(`Server listening on ${port}`)) {
          clearTimeout(timer);
          resolve(true);
        }
      });
      child.on('exit', () => {
        clearTimeout(timer);
        resolve(false);
      });
    });
    if (listening) {
      return { process: child, port };
    }
    await stopProcess(child, 2000);
  }
  throw new Error('iperf3 -s failed to listen on 8 random ports');
}

/** Sends SIGTERM to `child` and resolves when it exits. A child still running after `graceMs` gets SIGKILL. */
export function stopProcess(child, graceMs = 7000) {
  if (child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve();
  }
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

export function median(values) {
  const sorted = values.filter((value) => Number.isFinite(value)).sort((a, b) => a - b);
  if (sorted.length === 0) {
    return NaN;
  }
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

/** Returns the pid, the ppid and utime + stime + cutime + cstime in clock ticks, or null once the process is gone. */
function readStat(pid) {
  let stat;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // Fields after the command name, which is in brackets and may contain spaces.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = [11, 12, 13, 14].reduce((sum, index) => sum + Number(fields[index]), 0);
  return { pid: Number(pid), ppid: Number(fields[1]), ticks };
}

/** Returns the PIDs of process `pid` and all its descendants, found through the ppid of /proc/PID/stat. */
export function processTree(pid) {
  const stats = readdirSync('/proc').filter((name) => /^\d+$/.test(name)).map(readStat).filter(Boolean);
  const tree = new Set([pid]);
  // /proc lists parents before children only by chance, so repeat until no process joins.
  let grew = true;
  while (grew) {
    grew = false;
    for (const stat of stats) {
      if (!tree.has(stat.pid) && tree.has(stat.ppid)) {
        tree.add(stat.pid);
        grew = true;
      }
    }
  }
  return [...tree];
}

/**
 * Returns the CPU seconds of process `pid` and all its descendants (linkspeed's
 * workers are child processes, whose time reaches the parent's cutime only
 * after they exit).
 */
export function cpuSeconds(pid) {
  let total = 0;
  for (const member of processTree(pid)) {
    total += readStat(member)?.ticks ?? 0;
  }
  return total / CLOCK_TICKS_PER_SECOND;
}

/** Returns the value in KiB of the "NAME:   N kB" line of a /proc file, or 0 when the line or file is missing. */
function readKibLine(file, name) {
  let text;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return 0;
  }
  const match = new RegExp(`^${name}:\\s+(\\d+) kB$`, 'm').exec(text);
  return match ? Number(match[1]) : 0;
}

/**
 * Returns { rss_bytes, pss_bytes, processes } summed over process `pid` and its
 * descendants: VmRSS of /proc/PID/status and Pss of /proc/PID/smaps_rollup. RSS counts a
 * page shared by several processes (linkspeed's payload, inherited by every worker) once
 * in each of them; PSS divides it among them.
 */
export function memoryOfTree(pid) {
  const pids = processTree(pid);
  let rssKib = 0;
  let pssKib = 0;
  for (const member of pids) {
    rssKib += readKibLine(`/proc/${member}/status`, 'VmRSS');
    pssKib += readKibLine(`/proc/${member}/smaps_rollup`, 'Pss');
  }
  return { rss_bytes: rssKib * 1024, pss_bytes: pssKib * 1024, processes: pids.length };
}

/** Returns Jain's fairness index (sum x)^2 / (n * sum x^2) of `values`: 1 when all are equal, 1/n when one has everything. */
export function jainIndex(values) {
  const sum = values.reduce((total, value) => total + value, 0);
  const sumOfSquares = values.reduce((total, value) => total + value * value, 0);
  return sumOfSquares > 0 ? (sum * sum) / (values.length * sumOfSquares) : NaN;
}

export function loadAverage() {
  return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
}

export function machineDescription() {
  const cpus = os.cpus();
  return `${cpus.length} CPUs, ${cpus[0]?.model ?? 'unknown CPU'}, ${os.type()} ${os.release()}`;
}

export function utcMinute() {
  return `${new Date().toISOString().slice(0, 16)}Z`;
}

export function gbit(bps) {
  return Number.isFinite(bps) ? (bps / 1e9).toFixed(2) : 'n/a';
}

/** Returns the ratio a / b as text, such as "0.934 (target >= 0.9, met)" when a minimum target is given. */
export function ratioText(a, b, minimum) {
  if (!Number.isFinite(a) || !Number.isFinite(b) || b === 0) {
    return 'n/a';
  }
  const ratio = a / b;
  if (minimum === undefined) {
    return ratio.toFixed(3);
  }
  return `${ratio.toFixed(3)} (target >= ${minimum}, ${ratio >= minimum ? 'met' : 'not met'})`;
}
