// Shared helpers of bench/page.mjs and bench/ndt7.mjs: starting linkspeed on a
// free loopback port, medians, CPU time from /proc, and the machine description.
import { execFileSync, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';

const CLOCK_TICKS_PER_SECOND = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }));

/**
 * Starts `linkspeed serve` with `args` and resolves to { process, port, log } once it
 * logs "listening on 127.0.0.1:PORT". Rejects after 10 s or when the process exits.
 */
export function startLinkspeed(binary, args, prefix = []) {
  const command = [...prefix, binary, 'serve', ...args];
  const child = spawn(command[0], command.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`linkspeed did not log "listening on 127.0.0.1:PORT" within 10 s:\n${log}`));
    }, 10_000);
    child.stderr.on('data', (chunk) => {
      log += chunk;
      const match = /listening on 127\.0\.0\.1:(\d+)/.exec(log);
      if (match) {
        clearTimeout(timer);
        resolve({ process: child, port: Number(match[1]), log: () => log });
      }
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`linkspeed exited with ${code ?? signal} before listening:\n${log}`));
    });
  });
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

/**
 * Returns the CPU seconds of process `pid` and all its descendants (linkspeed's
 * workers are child processes, whose time reaches the parent's cutime only
 * after they exit).
 */
export function cpuSeconds(pid) {
  const stats = readdirSync('/proc').filter((name) => /^\d+$/.test(name)).map(readStat).filter(Boolean);
  const tree = new Set([pid]);
  let total = 0;
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
  for (const stat of stats) {
    if (tree.has(stat.pid)) {
      total += stat.ticks;
    }
  }
  return total / CLOCK_TICKS_PER_SECOND;
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
