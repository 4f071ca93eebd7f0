// ndt7 benchmark: M-Lab's JavaScript ndt7 client and bench/ndt7bench.c (a C
// client) against linkspeed's /ndt/v7/download and /ndt/v7/upload, compared with
// iperf3 on loopback in the same run (iperf3 -R for download, plain iperf3 for
// upload, one stream each). Writes a Markdown section with the medians.
//
// Usage: node bench/ndt7.mjs --bin BUILD/linkspeed [--rounds 3] [--iperf3 iperf3]
//        [--iperf3-length 1048576] [--cc cc] [--server-cpu 0] [--client-cpu 1] [--output FILE]
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import {
  cpuSeconds, gbit, loadAverage, machineDescription, median, ratioText, runCommand, startIperf3, startLinkspeed,
  stopProcess, utcMinute,
} from './lib.mjs';

const benchDir = path.dirname(fileURLToPath(import.meta.url));
const { values: options } = parseArgs({
  options: {
    bin: { type: 'string', default: process.env.LINKSPEED_BIN },
    rounds: { type: 'string', default: '3' },
    iperf3: { type: 'string', default: process.env.IPERF3 ?? 'iperf3' },
    // iperf3 -l. The default is linkspeed's largest ndt7 download message and bench/run.sh's default.
    'iperf3-length': { type: 'string', default: '1048576' },
    cc: { type: 'string', default: process.env.CC ?? 'cc' },
    'server-cpu': { type: 'string', default: '0' },
    'client-cpu': { type: 'string', default: '1' },
    output: { type: 'string' },
  },
});
const rounds = Number(options.rounds);
const iperf3Length = Number(options['iperf3-length']);
if (!options.bin) {
  console.error('bench/ndt7.mjs: missing --bin (or LINKSPEED_BIN): the linkspeed binary to test');
  process.exit(2);
}
if (!Number.isInteger(rounds) || rounds < 1 || rounds > 20) {
  console.error(`bench/ndt7.mjs: invalid --rounds "${options.rounds}": expected an integer in 1..20`);
  process.exit(2);
}
if (!Number.isInteger(iperf3Length) || iperf3Length < 0 || iperf3Length > 134217728) {
  console.error(`bench/ndt7.mjs: invalid --iperf3-length "${options['iperf3-length']}": expected bytes in 0..134217728 (0: iperf3's default)`);
  process.exit(2);
}
const iperf3LengthArgs = iperf3Length > 0 ? ['-l', String(iperf3Length)] : [];
// ndt7 fixes the test length at 10 s on the server, so iperf3 runs as long.
const DURATION_S = 10;
const CLIENT_TIMEOUT_MS = 40_000;
const pin = os.cpus().length >= 2 && options['server-cpu'] !== options['client-cpu'];
const serverPrefix = pin ? ['taskset', '-c', options['server-cpu']] : [];
const clientPrefix = pin ? ['taskset', '-c', options['client-cpu']] : [];

/** Runs one iperf3 client for DURATION_S and returns the receiver's rate and the server's CPU seconds. */
async function runIperf3(iperf3, reverse) {
  const before = cpuSeconds(iperf3.process.pid);
  const args = ['-c', '127.0.0.1', '-p', String(iperf3.port), '-t', String(DURATION_S), ...iperf3LengthArgs, '-J'];
  const stdout = await runCommand([...clientPrefix, options.iperf3, ...args, ...(reverse ? ['-R'] : [])],
    (DURATION_S + 30) * 1000);
  const result = JSON.parse(stdout);
  return { bps: result.end.sum_received.bits_per_second, server_cpu_s: cpuSeconds(iperf3.process.pid) - before };
}

/**
 * Runs the ndt7 client once. The receiver's rate is the client's own figure for
 * a download and the server's AppInfo (bytes read over elapsed time) for an upload.
 */
async function runNdt7(linkspeed, direction) {
  const before = cpuSeconds(linkspeed.process.pid);
  const stdout = await runCommand([...clientPrefix, process.execPath, '--experimental-websocket',
    path.join(benchDir, 'ndt7-client.mjs'), `127.0.0.1:${linkspeed.port}`, direction], CLIENT_TIMEOUT_MS);
  const output = JSON.parse(stdout);
  if (output.errors.length > 0 || output.code !== 0 || !output.complete) {
    throw new Error(`ndt7 ${direction} failed: code ${output.code}, errors ${JSON.stringify(output.errors)}`);
  }
  const client = output.complete.LastClientMeasurement;
  const server = output.complete.LastServerMeasurement;
  const clientBps = client.MeanClientMbps * 1e6;
  const serverBps = (server.AppInfo.NumBytes * 8) / (server.AppInfo.ElapsedTime / 1e6);
  return {
    bps: direction === 'download' ? clientBps : serverBps,
    client_bps: clientBps,
    server_bps: serverBps,
    client_cpu_s: output.client_cpu_s,
    server_cpu_s: cpuSeconds(linkspeed.process.pid) - before,
  };
}

/** Runs bench/ndt7bench once and returns its rate; the server's last AppInfo gives its own figure. */
async function runNdt7bench(ndt7bench, linkspeed, direction) {
  const before = cpuSeconds(linkspeed.process.pid);
  const command = [...clientPrefix, ndt7bench, direction, '127.0.0.1', String(linkspeed.port)];
  const output = JSON.parse(await runCommand(command, CLIENT_TIMEOUT_MS));
  const server = JSON.parse(output.last_server_measurement);
  const clientBps = output.gbit_per_s * 1e9;
  const serverBps = (server.AppInfo.NumBytes * 8) / (server.AppInfo.ElapsedTime / 1e6);
  return {
    bps: direction === 'download' ? clientBps : serverBps,
    client_bps: clientBps,
    server_bps: serverBps,
    client_cpu_s: output.cpu_s,
    server_cpu_s: cpuSeconds(linkspeed.process.pid) - before,
  };
}

async function main() {
  const workDir = mkdtempSync(path.join(os.tmpdir(), 'linkspeed-ndt7-bench-'));
  const ndt7bench = path.join(workDir, 'ndt7bench');
  await runCommand([options.cc, '-O2', '-o', ndt7bench, path.join(benchDir, 'ndt7bench.c')], 60_000);
  const iperf3 = await startIperf3(options.iperf3, serverPrefix);
  const linkspeed = await startLinkspeed(options.bin, ['--listen', '127.0.0.1:0', '--workers', '1'], serverPrefix);
  const loadBefore = loadAverage();
  const rows = [];

  const steps = [
    ['iperf3', 'download', () => runIperf3(iperf3, true)],
    ['ndt7', 'download', () => runNdt7(linkspeed, 'download')],
    ['ndt7bench', 'download', () => runNdt7bench(ndt7bench, linkspeed, 'download')],
    ['iperf3', 'upload', () => runIperf3(iperf3, false)],
    ['ndt7', 'upload', () => runNdt7(linkspeed, 'upload')],
    ['ndt7bench', 'upload', () => runNdt7bench(ndt7bench, linkspeed, 'upload')],
  ];
  try {
    for (let round = 1; round <= rounds; round++) {
      for (const [tool, direction, run] of steps) {
        console.error(`Round ${round} of ${rounds}: ${tool} ${direction}, load ${loadAverage()}`);
        const row = { round, tool, direction, ...(await run()) };
        console.error(`  ${gbit(row.bps)} Gbit/s`);
        rows.push(row);
      }
    }
  } finally {
    await stopProcess(linkspeed.process);
    await stopProcess(iperf3.process);
    rmSync(workDir, { recursive: true, force: true });
  }

  const section = formatSection(rows, loadBefore, loadAverage());
  if (options.output) {
    writeFileSync(options.output, section);
  } else {
    process.stdout.write(section);
  }
}

function formatSection(rows, loadBefore, loadAfter) {
  const pick = (tool, direction, key) => median(rows
    .filter((row) => row.tool === tool && row.direction === direction).map((row) => row[key]));
  const figures = {};
  for (const tool of ['iperf3', 'ndt7', 'ndt7bench']) {
    for (const direction of ['download', 'upload']) {
      figures[`${tool}_${direction}`] = pick(tool, direction, 'bps');
    }
  }
  const cpuText = (value) => (Number.isFinite(value) ? value.toFixed(2) : '');
  const roundTable = rows.map((row) => `| ${row.round} | ${row.tool} | ${row.direction} | ${gbit(row.bps)} | `
    + `${row.tool !== 'iperf3' ? `${gbit(row.client_bps)} / ${gbit(row.server_bps)}` : ''} | `
    + `${cpuText(row.client_cpu_s)} | ${cpuText(row.server_cpu_s)} |`).join('\n');
  const iperf3Version = execFileSync(options.iperf3, ['--version'], { encoding: 'utf8' }).split('\n')[0];
  const ndt7Version = JSON.parse(execFileSync(process.execPath, ['-p',
    "JSON.stringify(require('@m-lab/ndt7/package.json').version)"], { encoding: 'utf8', cwd: benchDir }));
  return `## ndt7 against iperf3

Single-connection ndt7 download and upload against linkspeed, measured with
M-Lab's JavaScript client in Node.js and with \`bench/ndt7bench.c\`, a C client,
compared with iperf3 in the same run.
Written by \`bench/ndt7.mjs\`.

- Date: ${utcMinute()}
- Machine: ${machineDescription()}
- Load average before and after the runs: ${loadBefore} and ${loadAfter} (1, 5 and 15 minutes)
- Client: @m-lab/ndt7 ${ndt7Version} in Node.js ${process.version}; ${iperf3Version}

| | iperf3 | ndt7, @m-lab/ndt7 | ratio (ndt7-js / iperf3) | ndt7, ndt7bench (C) | ratio (ndt7bench / iperf3) |
|---|---|---|---|---|---|
| download, Gbit/s (median) | ${gbit(figures.iperf3_download)} | ${gbit(figures.ndt7_download)} | ${ratioText(figures.ndt7_download, figures.iperf3_download, 0.9)} | ${gbit(figures.ndt7bench_download)} | ${ratioText(figures.ndt7bench_download, figures.iperf3_download, 0.9)} |
| upload, Gbit/s (median) | ${gbit(figures.iperf3_upload)} | ${gbit(figures.ndt7_upload)} | ${ratioText(figures.ndt7_upload, figures.iperf3_upload)} | ${gbit(figures.ndt7bench_upload)} | ${ratioText(figures.ndt7bench_upload, figures.iperf3_upload)} |

The figures are medians of ${rounds} round${rounds === 1 ? '' : 's'}; 1 Gbit = 10^9 bit.
Client CPU is the CPU time of the whole client process (for ndt7-js, Node.js
with its worker thread). Server CPU is that of linkspeed with its worker, or of iperf3.

| round | client | direction | Gbit/s | ndt7 client / server figure, Gbit/s | client CPU s | server CPU s |
|---|---|---|---|---|---|---|
${roundTable}

### Method

- A round runs iperf3 -R, the two ndt7 downloads, plain iperf3 and the two ndt7 uploads, each
  over one TCP connection on 127.0.0.1 for ${DURATION_S} s (ndt7's fixed length).
  ${pin ? `Both servers run on CPU ${options['server-cpu']} and both clients on CPU ${options['client-cpu']} (taskset -c).` : 'Servers and clients are not pinned.'}
- iperf3: \`iperf3 -s\` and \`iperf3 -c 127.0.0.1 -t ${DURATION_S}${iperf3LengthArgs.length ? ` -l ${iperf3Length}` : ''} -J\` with \`-R\`
  for download. ${iperf3Length > 0 ? `-l sets the size of each write and read, here ${iperf3Length} bytes (linkspeed's ndt7 download messages grow to 1 MiB). iperf3's own default is 128 KiB.` : "iperf3 writes and reads its default 128 KiB."}
  The figure is the receiver's, \`end.sum_received.bits_per_second\`.
- linkspeed: \`linkspeed serve --listen 127.0.0.1:0 --workers 1\`, other flags at
  their defaults.
- ndt7: \`bench/ndt7-client.mjs\` runs \`downloadTest\` or \`uploadTest\` of
  @m-lab/ndt7 with \`node --experimental-websocket\` (Node's built-in WebSocket)
  and the \`web-worker\` package. The figure is the receiver's: for download the
  client's \`MeanClientMbps\`, for upload the server's \`AppInfo.NumBytes\` over
  \`AppInfo.ElapsedTime\`.
- ndt7bench: \`bench/ndt7bench.c\` built with \`${options.cc} -O2\`. It reads
  with 1 MiB \`recv()\` calls and counts payload bytes until the server's close
  frame, and uploads 1 MiB binary messages until that close frame. The figure is
  the receiver's, as above.
- Target: the ndt7 download reaches at least 0.9 of iperf3 -R.
`;
}

main().catch((error) => {
  console.error(`bench/ndt7.mjs: ${error.stack ?? error}`);
  process.exit(1);
});
