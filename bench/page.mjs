// Page benchmark: headless Chromium, started without a debugging connection, runs
// linkspeed's page at / and a bare one-connection page (the browser's ceiling) on
// loopback, in alternation. Both pages POST their figures to a collector on
// another loopback port. Writes a Markdown section with the medians.
//
// Usage: node bench/page.mjs --bin BUILD/linkspeed [--rounds 3] [--duration 10]
//        [--chromium /usr/bin/chromium] [--output FILE]
import { execFileSync, spawn } from 'node:child_process';
import { copyFileSync, cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import {
  gbit, loadAverage, machineDescription, median, ratioText, startLinkspeed, stopProcess, utcMinute,
} from './lib.mjs';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { values: options } = parseArgs({
  options: {
    bin: { type: 'string', default: process.env.LINKSPEED_BIN },
    rounds: { type: 'string', default: '3' },
    duration: { type: 'string', default: '10' },
    chromium: { type: 'string', default: '/usr/bin/chromium' },
    output: { type: 'string' },
  },
});
const rounds = Number(options.rounds);
const durationS = Number(options.duration);
if (!options.bin) {
  console.error('bench/page.mjs: missing --bin (or LINKSPEED_BIN): the linkspeed binary to test');
  process.exit(2);
}
if (!Number.isInteger(rounds) || rounds < 1 || rounds > 20) {
  console.error(`bench/page.mjs: invalid --rounds "${options.rounds}": expected an integer in 1..20`);
  process.exit(2);
}
if (!Number.isInteger(durationS) || durationS < 2 || durationS > 30) {
  console.error(`bench/page.mjs: invalid --duration "${options.duration}": expected an integer in 2..30 (the page's range)`);
  process.exit(2);
}
// Latency probes, two phases of at most durationS each, and Chromium's start.
const RUN_TIMEOUT_MS = (2 * durationS + 60) * 1000;
const CHROMIUM_FLAGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

/** Copies web/ into a temporary web root with the report script and the ceiling page added. */
function makeWebRoot(workDir) {
  const webRoot = path.join(workDir, 'web');
  cpSync(path.join(repoRoot, 'web'), webRoot, { recursive: true });
  copyFileSync(path.join(repoRoot, 'bench/page/report.js'), path.join(webRoot, 'bench-report.js'));
  copyFileSync(path.join(repoRoot, 'bench/page/ceiling.html'), path.join(webRoot, 'bench-ceiling.html'));
  copyFileSync(path.join(repoRoot, 'bench/page/ceiling.js'), path.join(webRoot, 'bench-ceiling.js'));
  const indexPath = path.join(webRoot, 'index.html');
  const index = readFileSync(indexPath, 'utf8');
  if (!index.includes('</head>')) {
    throw new Error(`${indexPath} has no </head> to insert the report script before`);
  }
  writeFileSync(indexPath, index.replace('</head>', '  <script src="/bench-report.js"></script>\n</head>'));
  return webRoot;
}

/** Starts the collector: each POST body is one JSON report, handed to the waiting run. */
function startCollector() {
  let waiting = null;
  const server = http.createServer((request, response) => {
    let body = '';
    request.setEncoding('utf8');
    request.on('data', (chunk) => {
      body += chunk;
    });
    request.on('end', () => {
      response.writeHead(204, { 'Access-Control-Allow-Origin': '*' });
      response.end();
      if (request.method !== 'POST' || !waiting) {
        return;
      }
      try {
        waiting(JSON.parse(body));
      } catch (error) {
        console.error(`bench/page.mjs: invalid report from the page: ${error.message}: ${body.slice(0, 200)}`);
      }
    });
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      resolve({
        server,
        url: `http://127.0.0.1:${server.address().port}/result`,
        nextReport: () => new Promise((resolveReport) => {
          waiting = resolveReport;
        }),
      });
    });
  });
}

/**
 * Sends SIGTERM to the process group that `child` leads and waits up to 5 s for the
 * group to be gone, then sends SIGKILL to what is left.
 */
async function stopProcessGroup(child) {
  const signalGroup = (signal) => {
    try {
      process.kill(-child.pid, signal);
      return true;
    } catch {
      return false; // ESRCH: no process of the group is left.
    }
  };
  signalGroup('SIGTERM');
  for (let attempt = 0; attempt < 50; attempt++) {
    if (!signalGroup(0)) {
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  signalGroup('SIGKILL');
  await stopProcess(child, 1000);
}

/** Opens `url` in a fresh headless Chromium and resolves to the first report it posts. */
async function runInChromium(url, collector, workDir) {
  const profileDir = mkdtempSync(path.join(workDir, 'chromium-profile-'));
  const reportPromise = collector.nextReport();
  // Chromium gets its own process group, so that stopping it also stops its helper processes.
  const chromium = spawn(options.chromium, [...CHROMIUM_FLAGS, `--user-data-dir=${profileDir}`, url], {
    stdio: ['ignore', 'ignore', 'ignore'],
    detached: true,
  });
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no report from ${url} within ${RUN_TIMEOUT_MS / 1000} s`)), RUN_TIMEOUT_MS);
  });
  const exited = new Promise((_, reject) => {
    chromium.on('exit', (code, signal) => reject(new Error(`chromium exited with ${code ?? signal} before reporting`)));
  });
  try {
    return await Promise.race([reportPromise, timeout, exited]);
  } finally {
    clearTimeout(timer);
    await stopProcessGroup(chromium);
    rmSync(profileDir, { recursive: true, force: true, maxRetries: 10, retryDelay: 200 });
  }
}

async function main() {
  const workDir = mkdtempSync(path.join(os.tmpdir(), 'linkspeed-page-bench-'));
  const webRoot = makeWebRoot(workDir);
  const collector = await startCollector();
  const serverArgs = ['--listen', '127.0.0.1:0', '--workers', '2', '--web-root', webRoot];
  const linkspeed = await startLinkspeed(options.bin, serverArgs);

  const origin = `http://127.0.0.1:${linkspeed.port}`;
  const report = encodeURIComponent(collector.url);
  const loadBefore = loadAverage();
  const rows = [];

  try {
    for (let round = 1; round <= rounds; round++) {
      console.error(`Round ${round} of ${rounds}: page /, load ${loadAverage()}`);
      const page = await runInChromium(`${origin}/?duration=${durationS}&autostart=1&report=${report}`, collector, workDir);
      const result = page.result;
      if (result.state !== 'complete') {
        throw new Error(`page ended in state "${result.state}": ${JSON.stringify(result.errors)}`);
      }
      rows.push({
        round, kind: 'page', download_bps: result.download_bps, upload_bps: result.upload_bps,
        detail: `${result.streams_download} / ${result.streams_upload} streams, ${Math.round(result.download_duration_ms)} / ${Math.round(result.upload_duration_ms)} ms`,
      });
      console.error(`Round ${round} of ${rounds}: ceiling, load ${loadAverage()}`);
      const ceiling = await runInChromium(`${origin}/bench-ceiling.html?duration=${durationS}&report=${report}`, collector, workDir);
      if (ceiling.errors.length > 0) {
        const logPath = path.join(os.tmpdir(), 'linkspeed-page-bench-server.log');
        writeFileSync(logPath, linkspeed.log());
        throw new Error(`ceiling page failed: ${ceiling.errors.join('; ')}. The server's log is in ${logPath}`);
      }
      rows.push({
        round, kind: 'ceiling', download_bps: ceiling.download.bps, upload_bps: ceiling.upload.bps,
        detail: `1 / 1 streams, ${Math.round(ceiling.download.duration_ms)} / ${Math.round(ceiling.upload.duration_ms)} ms`,
      });
      for (const row of rows.slice(-2)) {
        console.error(`  ${row.kind}: download ${gbit(row.download_bps)} Gbit/s, upload ${gbit(row.upload_bps)} Gbit/s`);
      }
    }
  } finally {
    await stopProcess(linkspeed.process);
    collector.server.close();
    rmSync(workDir, { recursive: true, force: true });
  }

  const loadAfter = loadAverage();
  const section = formatSection(rows, loadBefore, loadAfter);
  if (options.output) {
    writeFileSync(options.output, section);
  } else {
    process.stdout.write(section);
  }
}

function formatSection(rows, loadBefore, loadAfter) {
  const pick = (kind, key) => median(rows.filter((row) => row.kind === kind).map((row) => row[key]));
  const page = { download: pick('page', 'download_bps'), upload: pick('page', 'upload_bps') };
  const ceiling = { download: pick('ceiling', 'download_bps'), upload: pick('ceiling', 'upload_bps') };
  const chromiumVersion = readChromiumVersion();
  const roundTable = rows.map((row) => `| ${row.round} | ${row.kind} | ${gbit(row.download_bps)} | ${gbit(row.upload_bps)} | ${row.detail} |`).join('\n');
  return `## Page in Chromium against the browser's ceiling

Download and upload as linkspeed's page at \`/\` measures them in headless
Chromium, compared with what the same browser moves over one HTTP connection.
Written by \`bench/page.mjs\`.

- Date: ${utcMinute()}
- Machine: ${machineDescription()}
- Load average before and after the runs: ${loadBefore} and ${loadAfter} (1, 5 and 15 minutes)
- Browser: ${chromiumVersion}

| | ceiling, 1 connection | page \`/\` | ratio (page / ceiling) |
|---|---|---|---|
| download, Gbit/s (median) | ${gbit(ceiling.download)} | ${gbit(page.download)} | ${ratioText(page.download, ceiling.download, 0.9)} |
| upload, Gbit/s (median) | ${gbit(ceiling.upload)} | ${gbit(page.upload)} | ${ratioText(page.upload, ceiling.upload)} |

The figures are medians of ${rounds} round${rounds === 1 ? '' : 's'}; 1 Gbit = 10^9 bit.

| round | page | download, Gbit/s | upload, Gbit/s | streams and duration (download / upload) |
|---|---|---|---|---|
${roundTable}

### Method

- Server: \`linkspeed serve --listen 127.0.0.1:0 --workers 2 --web-root DIR\`.
  DIR is a copy of \`web/\` whose \`index.html\` also loads \`bench/page/report.js\`,
  plus the ceiling page \`bench/page/ceiling.html\` and \`ceiling.js\`.
- Browser: \`${options.chromium} ${CHROMIUM_FLAGS.join(' ')} --user-data-dir=TMP URL\`,
  a fresh profile for every run and no debugging connection, because an attached
  debugger slows Chromium's transfers. Each round runs the page first and the
  ceiling second; nothing is pinned to a CPU, and the browser, the server (2
  workers) and the collector share the machine's cores.
- Page: \`/?duration=${durationS}&autostart=1\` with the default settings (streams
  added while the rate grows, up to 6). Its figures are \`download_bps\` and
  \`upload_bps\` of \`window.linkspeedResult\` (see docs/methodology.md), which
  \`report.js\` POSTs to a collector on another loopback port once the test ends.
- Ceiling, download: \`fetch('/__down?bytes=1073741824')\` requests one after
  another on one connection, each body read with \`getReader()\` and dropped, for
  ${durationS} s; the bytes over the time from the first request to the last chunk
  counted. The page at \`/\` runs 256 MiB requests per stream the same way. One
  request for the whole time would need more than linkspeed's default
  \`--max-download-bytes\` of 1 GiB.
- Ceiling, upload: \`fetch\` POSTs of one 64 MiB random Blob to \`/__up\`, one after
  another for ${durationS} s; the bytes the server reports over the elapsed time.
  The page's upload counts bytes as XHR reports them sent, over its stable window,
  so the upload ratio is for the record only.
- Target: the page's download reaches at least 0.9 of the ceiling.
`;
}

/** Returns the first line of `chromium --version`; Debian's wrapper script may print shell warnings on stderr. */
function readChromiumVersion() {
  try {
    return execFileSync(options.chromium, ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
      .trim().split('\n')[0];
  } catch (error) {
    return `unknown (${options.chromium} --version failed: ${error.message})`;
  }
}

main().catch((error) => {
  console.error(`bench/page.mjs: ${error.stack ?? error}`);
  process.exit(1);
});
