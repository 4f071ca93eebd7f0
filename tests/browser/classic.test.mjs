// Browser tests of the classic speed test page (web/classic.html) against a real
// linkspeed server on 127.0.0.1, in Debian's Chromium. Run them with
// `node --test tests/browser/`. The server binary comes from LINKSPEED_BIN
// (default <repo>/build/linkspeed).

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import {
  launchChromium,
  parseRgb,
  relativeLuminance,
  screenshotPath,
  startServer,
} from './helpers.mjs';

// Server default --payload-size, and the number of transfers that the page runs.
const PAYLOAD_BYTES = 10 * 1024 * 1024;
const TRANSFER_COUNT = 10;

const DESKTOP_VIEWPORT = { width: 1280, height: 800 };
const PHONE_VIEWPORT = { width: 375, height: 740 };

const RUN_TIMEOUT_MS = 60_000;
const TEST_TIMEOUT_MS = 90_000;
const SETUP_TIMEOUT_MS = 30_000;

// The page's rating thresholds for the average speed in MB/s.
const BAD_BELOW_MBPS = 10;
const GOOD_ABOVE_MBPS = 50;

let browser = null;
let server = null;

before(
  async () => {
    browser = await launchChromium();
    server = await startServer();
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

/** Returns the rating that the page must give an average speed in MB/s. */
function expectedRating(megabytesPerSecond) {
  if (megabytesPerSecond < BAD_BELOW_MBPS) {
    return 'bad';
  }
  if (megabytesPerSecond > GOOD_ABOVE_MBPS) {
    return 'good';
  }
  return 'plain';
}

/**
 * Opens a page in a fresh browser context and records its requests, WebSocket URLs,
 * console errors and uncaught exceptions. The context closes when the test ends.
 * initScript, if given, is { script, argument } for page.addInitScript.
 */
async function openPage(t, origin, pathname, contextOptions, initScript = null) {
  const context = await browser.newContext(contextOptions);
  t.after(() => context.close());
  const page = await context.newPage();
  if (initScript) {
    await page.addInitScript(initScript.script, initScript.argument);
  }

  const record = { requests: [], webSockets: [], problems: [] };
  page.on('request', (request) => record.requests.push(request.url()));
  page.on('websocket', (webSocket) => record.webSockets.push(webSocket.url()));
  page.on('console', (message) => {
    if (message.type() === 'error') {
      record.problems.push(`console error: ${message.text()}`);
    }
  });
  page.on('pageerror', (error) => record.problems.push(`uncaught exception: ${error.message}`));

  const response = await page.goto(origin + pathname);
  assert.equal(response.status(), 200, `status of GET ${pathname}`);
  assert.match(response.headers()['content-type'] ?? '', /^text\/html/, `Content-Type of ${pathname}`);
  return { page, record };
}

/**
 * Records the Start button's text and disabled state at every change, and its state
 * when the first transfer line appears in the log.
 */
async function watchStartButton(page) {
  await page.evaluate(() => {
    const button = document.getElementById('start');
    const log = document.getElementById('log');
    const readButton = () => ({ text: button.textContent, disabled: button.disabled });

    window.buttonStates = [];
    window.buttonAtFirstTransfer = null;
    new MutationObserver(() => window.buttonStates.push(readButton())).observe(button, {
      attributes: true,
      childList: true,
      characterData: true,
      subtree: true,
    });
    new MutationObserver(() => {
      if (window.buttonAtFirstTransfer === null && log.querySelector('[data-transfer]')) {
        window.buttonAtFirstTransfer = readButton();
      }
    }).observe(log, { childList: true });
  });
}

/** Waits until the page shows the average line or logs an error. */
async function waitForRunEnd(page, serverForLog) {
  try {
    await page.waitForSelector('#average:not([hidden]), #log .error', { timeout: RUN_TIMEOUT_MS });
  } catch (error) {
    const log = await page.locator('#log').innerText();
    error.message += `\nPage log:\n${log}\nServer log:\n${serverForLog.logTail()}`;
    throw error;
  }
}

/** Reads everything the assertions need from the page after a run. */
async function readPageState(page) {
  return page.evaluate(() => {
    const button = document.getElementById('start');
    const average = document.getElementById('average');
    const root = document.documentElement;
    const transferLines = [...document.querySelectorAll('#log [data-transfer]')];

    return {
      button: { text: button.textContent, disabled: button.disabled },
      focusedId: document.activeElement ? document.activeElement.id : null,
      buttonStates: window.buttonStates,
      buttonAtFirstTransfer: window.buttonAtFirstTransfer,
      transfers: transferLines.map((line) => ({
        text: line.textContent,
        index: Number(line.dataset.transfer),
        bytes: Number(line.dataset.bytes),
        milliseconds: Number(line.dataset.ms),
      })),
      errors: [...document.querySelectorAll('#log .error')].map((line) => line.textContent),
      log: document.getElementById('log').innerText,
      average: average.hidden
        ? null
        : {
            text: average.textContent,
            classes: [...average.classList],
            bytes: Number(average.dataset.bytes),
            seconds: Number(average.dataset.seconds),
            mbps: Number(average.dataset.mbps),
            mbitps: Number(average.dataset.mbitps),
            colour: getComputedStyle(average).color,
          },
      bodyColour: getComputedStyle(document.body).color,
      bodyBackground: getComputedStyle(document.body).backgroundColor,
      scrollWidth: root.scrollWidth,
      clientWidth: root.clientWidth,
    };
  });
}

/** Asserts the button history and final state of a run that ended, with or without an error. */
function assertButtonCycle(state) {
  assert.deepEqual(
    state.buttonStates[0],
    { text: 'Running', disabled: true },
    'first change of the Start button after the click',
  );
  assert.deepEqual(state.button, { text: 'Start', disabled: false }, 'Start button after the run');
  assert.deepEqual(
    state.buttonStates,
    [
      { text: 'Running', disabled: true },
      { text: 'Start', disabled: false },
    ],
    'Start button changes during the run',
  );
}

/** Asserts the transfer lines, the average line and its rating after a successful run. */
function assertCompletedRun(state) {
  assert.deepEqual(state.errors, [], `errors in the log:\n${state.log}`);
  assertButtonCycle(state);
  assert.deepEqual(
    state.buttonAtFirstTransfer,
    { text: 'Running', disabled: true },
    'Start button when the first transfer was logged',
  );

  assert.equal(state.transfers.length, TRANSFER_COUNT, `transfer lines in the log:\n${state.log}`);
  state.transfers.forEach((transfer, position) => {
    const index = position + 1;
    assert.equal(transfer.index, index, `data-transfer of line ${index}`);
    assert.equal(transfer.bytes, PAYLOAD_BYTES, `data-bytes of transfer ${index}`);
    assert.ok(transfer.milliseconds > 0, `data-ms of transfer ${index} is ${transfer.milliseconds}`);
    assert.match(
      transfer.text,
      new RegExp(`^Transfer ${index}/${TRANSFER_COUNT}: 10\\.49 MB \\(10 MiB\\) in \\d+\\.\\d ms \\(`),
      `text of transfer ${index}`,
    );
  });

  const average = state.average;
  assert.ok(average, `average line is hidden; log:\n${state.log}`);
  assert.equal(average.bytes, TRANSFER_COUNT * PAYLOAD_BYTES, 'data-bytes of the average');
  assert.ok(average.seconds > 0, `data-seconds is ${average.seconds}`);
  assert.ok(average.mbps > 0, `data-mbps is ${average.mbps}`);

  const totalMilliseconds = state.transfers.reduce((sum, transfer) => sum + transfer.milliseconds, 0);
  assert.ok(
    Math.abs(average.seconds - totalMilliseconds / 1000) <= 1e-9 * average.seconds + 1e-6,
    `data-seconds ${average.seconds} differs from the sum of transfer times ${totalMilliseconds} ms`,
  );
  const expectedMbps = average.bytes / average.seconds / 1e6;
  assert.ok(
    Math.abs(average.mbps - expectedMbps) <= 1e-9 * expectedMbps,
    `data-mbps ${average.mbps} differs from data-bytes / data-seconds / 10^6 = ${expectedMbps}`,
  );
  assert.ok(
    Math.abs(average.mbitps - 8 * average.mbps) <= 1e-9 * average.mbitps,
    `data-mbitps ${average.mbitps} is not 8 x data-mbps ${average.mbps}`,
  );

  const match = /^Average: ([\d.]+) MB\/s \(([\d.]+) Mbit\/s\) over 10 transfers of 10\.49 MB \(10 MiB\)$/.exec(
    average.text,
  );
  assert.ok(match, `average text "${average.text}"`);
  // The page shows one decimal, or two significant digits below 1 MB/s.
  assert.ok(Math.abs(Number(match[1]) - average.mbps) <= 0.05 + 1e-9, `shown MB/s in "${average.text}"`);
  assert.ok(Math.abs(Number(match[2]) - average.mbitps) <= 0.05 + 1e-9, `shown Mbit/s in "${average.text}"`);

  assertRating(state, expectedRating(average.mbps));
}

/** Asserts the average line's rating class and that its colour matches the rating. */
function assertRating(state, rating) {
  const average = state.average;
  const ratingClasses = average.classes.filter((name) => name.startsWith('rating-'));
  assert.deepEqual(ratingClasses, [`rating-${rating}`], `rating classes at ${average.mbps} MB/s`);

  const colour = parseRgb(average.colour);
  assert.ok(colour, `average colour "${average.colour}"`);
  if (rating === 'bad') {
    assert.ok(colour.red > colour.green + 60, `bad rating colour ${average.colour} is not red`);
  } else if (rating === 'good') {
    assert.ok(colour.green > colour.red + 60, `good rating colour ${average.colour} is not green`);
  } else {
    assert.equal(average.colour, state.bodyColour, 'plain rating uses the text colour');
  }
}

/** Asserts that the page loaded only same-origin resources and logged no errors. */
function assertCleanPage(record, origin) {
  assert.deepEqual(record.problems, [], 'console errors and uncaught exceptions');
  for (const url of record.requests) {
    assert.ok(url.startsWith(`${origin}/`), `request to another origin: ${url}`);
  }
  const webSocketUrl = origin.replace(/^http:/, 'ws:') + '/ws';
  assert.deepEqual(record.webSockets, [webSocketUrl], 'WebSocket URLs opened by the page');
}

/**
 * Runs in the page before its scripts: delays every WebSocket "message" event by
 * delayMilliseconds, so that each transfer the page measures takes at least that long.
 * page.routeWebSocket would relay each payload through Playwright's protocol, which
 * took about 2 s per 10 MiB with playwright-core 1.65.2, too slow for the plain rating.
 */
function delayWebSocketMessages(delayMilliseconds) {
  const NativeWebSocket = window.WebSocket;
  const delayedEvents = new WeakSet();
  window.WebSocket = class DelayedWebSocket extends NativeWebSocket {
    constructor(...args) {
      super(...args);
      // Registered first, so it runs before the page's own listeners.
      this.addEventListener('message', (event) => {
        if (delayedEvents.has(event)) {
          return;
        }
        event.stopImmediatePropagation();
        setTimeout(() => {
          const copy = new MessageEvent('message', { data: event.data, origin: event.origin });
          delayedEvents.add(copy);
          this.dispatchEvent(copy);
        }, delayMilliseconds);
      });
    }
  };
}

/**
 * Runs in the page before its scripts: replaces the requestNumber-th message that the
 * page sends on a WebSocket with a binary message.
 */
function sendBinaryRequest(requestNumber) {
  const nativeSend = WebSocket.prototype.send;
  let sentCount = 0;
  WebSocket.prototype.send = function sendWithBinaryRequest(data) {
    sentCount += 1;
    return nativeSend.call(this, sentCount === requestNumber ? new Uint8Array([1, 2, 3]) : data);
  };
}

describe('classic page', () => {
  test('runs at /classic on desktop', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const { page, record } = await openPage(t, server.origin, '/classic', {
      viewport: DESKTOP_VIEWPORT,
      colorScheme: 'light',
    });
    await watchStartButton(page);

    await page.click('#start');
    await waitForRunEnd(page, server);
    const state = await readPageState(page);
    await page.screenshot({ path: await screenshotPath('classic-desktop-light.png'), fullPage: true });

    assertCompletedRun(state);
    assertCleanPage(record, server.origin);
    assert.ok(
      relativeLuminance(state.bodyBackground) > 0.8,
      `light scheme background ${state.bodyBackground} is not light`,
    );
  });

  test('runs at /classic on phone in dark mode', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const { page, record } = await openPage(t, server.origin, '/classic', { viewport: PHONE_VIEWPORT });
    await page.emulateMedia({ colorScheme: 'dark' });
    await watchStartButton(page);

    await page.click('#start');
    await waitForRunEnd(page, server);
    const state = await readPageState(page);
    await page.screenshot({ path: await screenshotPath('classic-phone-dark.png'), fullPage: true });

    assertCompletedRun(state);
    assertCleanPage(record, server.origin);
    assert.ok(
      state.scrollWidth <= state.clientWidth,
      `page scrolls horizontally: scrollWidth ${state.scrollWidth} > clientWidth ${state.clientWidth}`,
    );
    assert.ok(
      relativeLuminance(state.bodyBackground) < 0.05,
      `dark scheme background ${state.bodyBackground} is not dark`,
    );
    assert.ok(relativeLuminance(state.bodyColour) > 0.6, `dark scheme text ${state.bodyColour} is not light`);
  });

  test('Start works from the keyboard', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const { page } = await openPage(t, server.origin, '/classic', { viewport: DESKTOP_VIEWPORT });
    await watchStartButton(page);

    await page.keyboard.press('Tab');
    const focus = await page.evaluate(() => {
      const element = document.activeElement;
      const style = getComputedStyle(element);
      return { id: element.id, outlineStyle: style.outlineStyle, outlineWidth: style.outlineWidth };
    });
    assert.equal(focus.id, 'start', 'first Tab stop');
    assert.notEqual(focus.outlineStyle, 'none', 'focused Start button has an outline');
    assert.ok(parseFloat(focus.outlineWidth) >= 2, `focus outline width ${focus.outlineWidth}`);

    await page.keyboard.press('Enter');
    await waitForRunEnd(page, server);
    const state = await readPageState(page);

    assertCompletedRun(state);
    assert.equal(state.focusedId, 'start', 'focus returns to Start after the run');
  });

  test('rates below 10 MB/s as bad', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    // 10 MiB in at least 1.2 s is at most 8.7 MB/s.
    const { page } = await openPage(t, server.origin, '/classic', { viewport: DESKTOP_VIEWPORT }, {
      script: delayWebSocketMessages,
      argument: 1200,
    });
    await watchStartButton(page);

    await page.click('#start');
    // Each transfer takes over a second here, which leaves time for a picture of a running test.
    await page.waitForSelector('#log [data-transfer]', { timeout: RUN_TIMEOUT_MS });
    await page.screenshot({ path: await screenshotPath('classic-running.png'), fullPage: true });
    await waitForRunEnd(page, server);
    const state = await readPageState(page);
    await page.screenshot({ path: await screenshotPath('classic-rating-bad.png'), fullPage: true });

    assertCompletedRun(state);
    assertRating(state, 'bad');
  });

  test('rates 10 to 50 MB/s as plain', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    // 10 MiB in at least 0.4 s is at most 26.2 MB/s. The rating stays plain as long as
    // a transfer without the delay takes under 0.65 s on average.
    const { page } = await openPage(t, server.origin, '/classic', { viewport: DESKTOP_VIEWPORT }, {
      script: delayWebSocketMessages,
      argument: 400,
    });
    await watchStartButton(page);

    await page.click('#start');
    await waitForRunEnd(page, server);
    const state = await readPageState(page);
    await page.screenshot({ path: await screenshotPath('classic-rating-plain.png'), fullPage: true });

    assertCompletedRun(state);
    assertRating(state, 'plain');
  });

  test('logs early close as error', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    // The 4th request goes to the server as a binary message, and the server must close
    // the connection with code 1003 (unsupported data) in response.
    const { page } = await openPage(t, server.origin, '/classic', { viewport: DESKTOP_VIEWPORT }, {
      script: sendBinaryRequest,
      argument: 4,
    });
    await watchStartButton(page);

    await page.click('#start');
    await waitForRunEnd(page, server);
    const state = await readPageState(page);
    await page.screenshot({ path: await screenshotPath('classic-error-closed.png'), fullPage: true });

    assert.equal(state.transfers.length, 3, `transfer lines before the close:\n${state.log}`);
    assert.equal(state.errors.length, 1, `error lines:\n${state.log}`);
    assert.match(state.errors[0], /^Error: Transfer 4\/10: connection closed before the payload arrived/);
    assert.match(state.errors[0], /close code 1003/);
    assert.equal(state.average, null, 'average line after a failed run');
    assertButtonCycle(state);
  });

  test('logs refused connection as error', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const ownServer = await startServer();
    t.after(() => ownServer.stop());
    const { page } = await openPage(t, ownServer.origin, '/classic', { viewport: DESKTOP_VIEWPORT });
    await ownServer.stop();
    await watchStartButton(page);

    await page.click('#start');
    await waitForRunEnd(page, ownServer);
    const state = await readPageState(page);

    assert.equal(state.transfers.length, 0, `transfer lines:\n${state.log}`);
    assert.equal(state.errors.length, 1, `error lines:\n${state.log}`);
    const webSocketUrl = `ws://127.0.0.1:${ownServer.port}/ws`;
    assert.equal(
      state.errors[0],
      `Error: Could not connect to ${webSocketUrl} (close code 1006). ` +
        'Check that the server is running and reachable.',
    );
    assert.equal(state.average, null, 'average line after a failed run');
    assertButtonCycle(state);
  });
});
