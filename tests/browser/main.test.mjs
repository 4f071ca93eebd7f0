// Browser tests of the main speed test page at / (web/index.html and its modules)
// against a real linkspeed server on 127.0.0.1, in Debian's Chromium. The latency figures
// must be numbers when the server accepts a WebSocket at /api/v1/latency, and
// "unavailable" when it does not. Playwright is attached, so the speeds here do not show
// the page's real throughput. The checks cover what the page shows and publishes.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import WebSocket from 'ws';

import { launchChromium, relativeLuminance, screenshotPath, startServer } from './helpers.mjs';

const DESKTOP_VIEWPORT = { width: 1280, height: 800 };
const PHONE_VIEWPORT = { width: 375, height: 740 };

// Each direction runs at most DURATION_S seconds, and latency probes add about 1 s.
const DURATION_S = 4;
const RUN_TIMEOUT_MS = 60_000;
const TEST_TIMEOUT_MS = 120_000;
const SETUP_TIMEOUT_MS = 30_000;
// Time that the page gets to start a test by itself before ?autostart=0 counts as obeyed.
const AUTOSTART_WAIT_MS = 1500;

// Size of the Blob that the page posts to /__up. The server confirms whole requests only.
// The first upload request of each stream posts 64 KiB (web/measure.js).
const UPLOAD_FIRST_BYTES = 64 * 1024;
const MAX_PLAUSIBLE_BPS = 1e12;
const MAX_PLAUSIBLE_LATENCY_MS = 1000;

const FIGURE_NAMES = [
  'download_bps',
  'upload_bps',
  'latency_ms',
  'jitter_ms',
  'loaded_latency_download_ms',
  'loaded_latency_upload_ms',
  'bytes_received',
  'bytes_sent',
  'streams',
];
const LATENCY_FIGURES = ['latency_ms', 'jitter_ms', 'loaded_latency_download_ms', 'loaded_latency_upload_ms'];

let browser = null;
let server = null;
let latencyEndpointExists = false;

/** Resolves true when the server completes a WebSocket handshake at /api/v1/latency. */
function probeLatencyEndpoint(port) {
  return new Promise((resolve) => {
    const socket = new WebSocket(`ws://127.0.0.1:${port}/api/v1/latency`);
    const timer = setTimeout(() => {
      socket.terminate();
      resolve(false);
    }, 3000);
    socket.once('open', () => {
      clearTimeout(timer);
      socket.close(1000);
      resolve(true);
    });
    socket.once('error', () => {
      clearTimeout(timer);
      resolve(false);
    });
  });
}

before(
  async () => {
    browser = await launchChromium();
    server = await startServer({ workers: 2 });
    latencyEndpointExists = await probeLatencyEndpoint(server.port);
  },
  { timeout: SETUP_TIMEOUT_MS },
);

after(
  async () => {
    await browser?.close();
    if (server) {
      const { code, signal } = await server.stop();
      assert.equal(code, 0, `linkspeed exit code after SIGTERM (signal ${signal})\n${server.logTail()}`);
    }
  },
  { timeout: SETUP_TIMEOUT_MS },
);

/**
 * Opens a page in a fresh browser context and records its requests, console errors and
 * uncaught exceptions. The context closes when the test ends.
 */
async function openPage(t, pathname, contextOptions) {
  const context = await browser.newContext(contextOptions);
  t.after(() => context.close());
  const page = await context.newPage();

  const record = { requests: [], problems: [] };
  page.on('request', (request) => record.requests.push(request.url()));
  page.on('console', (message) => {
    if (message.type() === 'error') {
      record.problems.push(`console error: ${message.text()}`);
    }
  });
  page.on('pageerror', (error) => record.problems.push(`uncaught exception: ${error.message}`));

  const response = await page.goto(server.origin + pathname);
  assert.equal(response.status(), 200, `status of GET ${pathname}`);
  assert.match(response.headers()['content-type'] ?? '', /^text\/html/, `Content-Type of ${pathname}`);
  return { page, record };
}

/** Waits until #results reports a finished run (complete, error or stopped). */
async function waitForRunEnd(page) {
  try {
    await page.waitForSelector('#results:is([data-state="complete"], [data-state="error"], [data-state="stopped"])', {
      timeout: RUN_TIMEOUT_MS,
    });
  } catch (error) {
    const status = await page.locator('#status').innerText();
    error.message += `\nPage status: ${status}\nServer log:\n${server.logTail()}`;
    throw error;
  }
}

/** Reads the published result, the data-* attributes and what the page shows. */
async function readPageState(page) {
  return page.evaluate(() => {
    const root = document.documentElement;
    const cells = {};
    for (const cell of document.querySelectorAll('#results dd')) {
      cells[cell.id] = cell.textContent;
    }
    return {
      result: window.linkspeedResult,
      dataset: { ...document.getElementById('results').dataset },
      speedValue: document.getElementById('speed-value').textContent,
      speedUnit: document.getElementById('speed-unit').textContent,
      status: document.getElementById('status').textContent,
      button: document.getElementById('start').textContent,
      cells,
      chartLines: document.querySelectorAll('#chart polyline').length,
      bodyColour: getComputedStyle(document.body).color,
      bodyBackground: getComputedStyle(document.body).backgroundColor,
      scrollWidth: root.scrollWidth,
      clientWidth: root.clientWidth,
    };
  });
}

/** Returns the console problems other than the expected failure of a missing latency endpoint. */
function unexpectedProblems(record) {
  return record.problems.filter(
    (problem) => latencyEndpointExists || !problem.includes('/api/v1/latency'),
  );
}

/** Asserts every figure of a completed run with both directions and latency turned on. */
function assertCompletedRun(state) {
  const { result, dataset } = state;
  assert.ok(result, 'window.linkspeedResult is set');
  assert.equal(result.state, 'complete', `result state; status: ${state.status}; errors: ${result.errors}`);
  assert.equal(dataset.state, 'complete', 'data-state of #results');
  assert.deepEqual(result.errors, [], 'errors of the run');

  for (const name of FIGURE_NAMES) {
    assert.ok(name in result, `linkspeedResult.${name} exists`);
    assert.ok(name in dataset, `data-${name} exists on #results`);
  }

  for (const name of ['download_bps', 'upload_bps']) {
    assert.equal(typeof result[name], 'number', `${name} is a number`);
    assert.ok(result[name] > 0, `${name} is ${result[name]}`);
    assert.ok(result[name] < MAX_PLAUSIBLE_BPS, `${name} is ${result[name]}`);
    assert.equal(Number(dataset[name]), result[name], `data-${name}`);
  }

  for (const name of ['streams', 'streams_download', 'streams_upload']) {
    assert.ok(Number.isInteger(result[name]), `${name} is ${result[name]}`);
    assert.ok(result[name] >= 1, `${name} is ${result[name]}`);
    assert.ok(result[name] <= 6, `${name} is ${result[name]}`);
  }
  assert.equal(result.streams, Math.max(result.streams_download, result.streams_upload), 'streams is the larger count');
  assert.equal(Number(dataset.streams), result.streams, 'data-streams');

  for (const name of ['bytes_received', 'bytes_sent']) {
    assert.ok(Number.isInteger(result[name]), `${name} is ${result[name]}`);
    assert.ok(result[name] > 0, `${name} is ${result[name]}`);
    assert.equal(Number(dataset[name]), result[name], `data-${name}`);
  }
  assert.ok(result.upload_server_bytes > 0, `the server confirmed ${result.upload_server_bytes} upload bytes`);
  assert.ok(result.upload_server_bytes >= UPLOAD_FIRST_BYTES, 'the server confirmed at least the first request');
  assert.ok(result.bytes_sent >= result.upload_server_bytes, 'bytes_sent covers the bytes that the server confirmed');

  for (const name of ['download_duration_ms', 'upload_duration_ms']) {
    assert.ok(result[name] > 0, `${name} is ${result[name]}`);
    assert.ok(result[name] <= DURATION_S * 1000 + 1000, `${name} ${result[name]} exceeds ${DURATION_S} s`);
  }

  assertLatencyFigures(result, dataset, state.cells);

  assert.match(state.speedValue, /^\d+(\.\d+)?$/, 'big number');
  assert.ok(Number(state.speedValue) > 0, `big number ${state.speedValue}`);
  assert.match(state.speedUnit, /^(Mbit|Gbit)\/s$/, 'unit beside the big number');
  assert.match(state.cells['result-download'], /^\d+(\.\d+)? (Mbit|Gbit)\/s$/, 'Download cell');
  assert.match(state.cells['result-upload'], /^\d+(\.\d+)? (Mbit|Gbit)\/s$/, 'Upload cell');
  assert.match(state.cells['result-bytes-received'], /^\d+(\.\d+)? (MB|GB)$/, 'Data received cell');
  assert.match(state.cells['result-bytes-sent'], /^\d+(\.\d+)? (MB|GB)$/, 'Data sent cell');
  assert.match(state.cells['result-streams'], /^\d down, \d up$/, 'Streams cell');
  assert.equal(result.client_ip, '127.0.0.1', 'client IP from /api/v1/info');
  assert.equal(state.cells['result-client-ip'], '127.0.0.1', 'Your IP address cell');
  assert.equal(typeof result.server_name, 'string', 'server name from /api/v1/info');
  assert.ok(result.server_name.length > 0, 'server name is not empty');
  assert.equal(state.cells['result-server'], result.server_name, 'Server cell');
  assert.match(state.status, /^Done: download .* upload /, 'closing status line');
  assert.equal(state.button, 'Start', 'button after the run');
  assert.equal(state.chartLines, 2, 'chart lines (download and upload)');
}

/** Asserts numbers when the latency endpoint exists, and "unavailable" everywhere when not. */
function assertLatencyFigures(result, dataset, cells) {
  const latencyCells = ['result-latency', 'result-jitter', 'result-loaded-download', 'result-loaded-upload'];
  if (!latencyEndpointExists) {
    assert.equal(result.latency_status, 'unavailable', 'latency_status without the endpoint');
    for (const name of LATENCY_FIGURES) {
      assert.equal(result[name], null, `${name} without the endpoint`);
      assert.equal(dataset[name], 'unavailable', `data-${name} without the endpoint`);
    }
    for (const id of latencyCells) {
      assert.equal(cells[id], 'unavailable', `#${id} without the endpoint`);
    }
    return;
  }

  assert.equal(result.latency_status, 'measured', 'latency_status with the endpoint');
  for (const name of LATENCY_FIGURES) {
    assert.equal(typeof result[name], 'number', `${name} is a number: ${result[name]}`);
    assert.ok(result[name] >= 0, `${name} is ${result[name]}`);
    assert.ok(result[name] < MAX_PLAUSIBLE_LATENCY_MS, `${name} is ${result[name]}`);
    assert.equal(Number(dataset[name]), result[name], `data-${name}`);
  }
  assert.ok(result.latency_ms > 0, `latency_ms is ${result.latency_ms}`);
  assert.ok(result.latency_min_ms <= result.latency_ms, 'minimum latency is at most the median');
  assert.ok(
    Math.abs(result.bufferbloat_download_ms - (result.loaded_latency_download_ms - result.latency_ms)) < 1e-9,
    'bufferbloat during download is loaded minus idle latency',
  );
  assert.ok(
    Math.abs(result.bufferbloat_upload_ms - (result.loaded_latency_upload_ms - result.latency_ms)) < 1e-9,
    'bufferbloat during upload is loaded minus idle latency',
  );
  for (const id of latencyCells) {
    assert.match(cells[id], /^\d+(\.\d+)? ms/, `#${id}`);
  }
}

describe('main page', () => {
  test('starts on load on desktop', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const { page, record } = await openPage(t, `/?duration=${DURATION_S}`, {
      viewport: DESKTOP_VIEWPORT,
      colorScheme: 'light',
    });
    assert.equal(await page.title(), 'linkspeed: speed test', '/ serves the main page');

    await page.waitForSelector('#results[data-state="running"]', { timeout: 5000 });
    await page.waitForFunction(() => Number(document.getElementById('speed-value').textContent) > 0, null, {
      timeout: RUN_TIMEOUT_MS,
    });
    await page.screenshot({ path: await screenshotPath('main-running.png'), fullPage: true });
    await waitForRunEnd(page);
    const state = await readPageState(page);
    await page.screenshot({ path: await screenshotPath('main-desktop-light.png'), fullPage: true });

    assertCompletedRun(state);
    assert.deepEqual(unexpectedProblems(record), [], 'console errors and uncaught exceptions');
    for (const url of record.requests) {
      assert.ok(url.startsWith(`${server.origin}/`), `request to another origin: ${url}`);
    }
    assert.ok(record.requests.some((url) => url.includes('/__down?bytes=')), 'page downloads from /__down');
    assert.ok(record.requests.some((url) => url.endsWith('/__up')), 'page uploads to /__up');
    assert.ok(relativeLuminance(state.bodyBackground) > 0.8, `light background ${state.bodyBackground}`);
  });

  test('fits a phone in dark mode', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const { page, record } = await openPage(t, `/?duration=${DURATION_S}`, {
      viewport: PHONE_VIEWPORT,
      colorScheme: 'dark',
    });
    await waitForRunEnd(page);
    const state = await readPageState(page);
    await page.screenshot({ path: await screenshotPath('main-phone-dark.png'), fullPage: true });

    assertCompletedRun(state);
    assert.deepEqual(unexpectedProblems(record), [], 'console errors and uncaught exceptions');
    assert.ok(
      state.scrollWidth <= state.clientWidth,
      `page scrolls horizontally: scrollWidth ${state.scrollWidth} > clientWidth ${state.clientWidth}`,
    );
    assert.ok(relativeLuminance(state.bodyBackground) < 0.05, `dark background ${state.bodyBackground}`);
    assert.ok(relativeLuminance(state.bodyColour) > 0.6, `dark scheme text ${state.bodyColour}`);
  });

  test('autostart=0 waits for Start', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const { page, record } = await openPage(t, `/?autostart=0&duration=${DURATION_S}`, {
      viewport: DESKTOP_VIEWPORT,
    });
    await page.waitForTimeout(AUTOSTART_WAIT_MS);

    const idle = await readPageState(page);
    assert.equal(idle.dataset.state, 'idle', 'data-state before Start');
    assert.equal(idle.result, undefined, 'no result before Start');
    assert.equal(idle.button, 'Start', 'button before Start');
    assert.equal(idle.status, 'Press Start to run the test.', 'status before Start');
    assert.ok(!record.requests.some((url) => url.includes('/__')), 'no transfer before Start');

    await page.focus('#start');
    await page.keyboard.press('Enter');
    await page.waitForSelector('#results[data-state="running"]', { timeout: 5000 });
    assert.equal(await page.locator('#start').textContent(), 'Stop', 'button while running');
    await waitForRunEnd(page);
    const state = await readPageState(page);

    assertCompletedRun(state);
    const focusedId = await page.evaluate(() => document.activeElement?.id);
    assert.equal(focusedId, 'start', 'focus stays on the button');
  });

  test('Stop ends a running test', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const { page } = await openPage(t, '/?autostart=0&duration=10&tests=download', {
      viewport: DESKTOP_VIEWPORT,
    });
    await page.click('#start');
    await page.waitForFunction(() => Number(document.getElementById('speed-value').textContent) > 0, null, {
      timeout: RUN_TIMEOUT_MS,
    });
    await page.click('#start');
    await waitForRunEnd(page);
    const state = await readPageState(page);

    assert.equal(state.result.state, 'stopped', 'result state after Stop');
    assert.ok(state.result.download_duration_ms < 10_000, `download ran ${state.result.download_duration_ms} ms`);
    assert.equal(state.button, 'Start', 'button after Stop');
  });

  test('settings persist in localStorage', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const { page } = await openPage(t, '/?autostart=0', { viewport: DESKTOP_VIEWPORT });

    await page.click('#settings summary');
    await page.selectOption('#setting-streams', '2');
    await page.fill('#setting-duration', '3');
    await page.uncheck('#settings-form input[name="latency"]');
    await page.uncheck('#setting-autostart');
    await page.click('#settings-save');
    assert.match(await page.locator('#settings-status').textContent(), /^Saved/, 'settings status after Save');

    const stored = await page.evaluate(() => JSON.parse(localStorage.getItem('linkspeed.settings')));
    assert.deepEqual(stored, {
      autostart: false,
      streams: 2,
      duration_s: 3,
      tests: { latency: false, download: true, upload: true },
    });

    await page.goto(`${server.origin}/`);
    await page.waitForTimeout(AUTOSTART_WAIT_MS);
    assert.equal(await page.locator('#results').getAttribute('data-state'), 'idle', 'stored autostart off');
    assert.equal(await page.locator('#setting-streams').inputValue(), '2', 'stored streams in the form');
    assert.equal(await page.locator('#setting-duration').inputValue(), '3', 'stored duration in the form');

    await page.click('#start');
    await waitForRunEnd(page);
    const state = await readPageState(page);
    assert.equal(state.result.state, 'complete', `result state; status: ${state.status}`);
    assert.equal(state.result.streams_download, 2, 'fixed download streams');
    assert.equal(state.result.streams_upload, 2, 'fixed upload streams');
    assert.ok(state.result.download_duration_ms <= 4000, `download ran ${state.result.download_duration_ms} ms`);
    assert.equal(state.result.latency_status, 'skipped', 'latency turned off');
    assert.equal(state.dataset.latency_ms, 'skipped', 'data-latency_ms when turned off');
    assert.equal(state.cells['result-latency'], 'skipped', 'Idle latency cell when turned off');
  });
});
