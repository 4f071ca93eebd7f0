// Shared setup for the browser tests: a linkspeed server on 127.0.0.1 and Debian's
// Chromium driven by playwright-core. Nothing here builds the server.

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const RESULTS_DIR = path.join(REPO_ROOT, 'test-results');
export const CHROMIUM_PATH = '/usr/bin/chromium';

const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

const LISTENING_PATTERN = /listening on 127\.0\.0\.1:(\d+)/;
const SERVER_START_TIMEOUT_MS = 10_000;
// The server lets running transfers finish for --shutdown-grace (default 5 s) after
// SIGTERM, so allow that plus a margin before killing it.
const SERVER_STOP_TIMEOUT_MS = 10_000;
const SERVER_LOG_TAIL_LINES = 40;

/** Returns the server binary path from LINKSPEED_BIN, or <repo>/build/linkspeed. */
export function linkspeedBinary() {
  return process.env.LINKSPEED_BIN || path.join(REPO_ROOT, 'build', 'linkspeed');
}

/**
 * Starts `linkspeed serve` on a free port of 127.0.0.1 with `workers` worker processes
 * (default 1) and resolves once it logs the port. Rejects with the server's log if it
 * exits or stays silent.
 */
export async function startServer({ workers = 1 } = {}) {
  const binary = linkspeedBinary();
  if (!existsSync(binary)) {
    throw new Error(
      `linkspeed binary not found at ${binary}. Build it with ` +
        '`cmake -S . -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build`, ' +
        'or set LINKSPEED_BIN to the binary.',
    );
  }

  const child = spawn(binary, ['serve', '--listen', '127.0.0.1:0', '--workers', String(workers)], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const logLines = [];
  const exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });

  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(new Error(`linkspeed did not log its port within ${SERVER_START_TIMEOUT_MS} ms.`));
    }, SERVER_START_TIMEOUT_MS);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(new Error(`Could not start ${binary}: ${error.message}`));
    });
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`linkspeed exited during start-up (code ${code}, signal ${signal}).`));
    });
    createInterface({ input: child.stderr }).on('line', (line) => {
      logLines.push(line);
      const match = LISTENING_PATTERN.exec(line);
      if (match) {
        clearTimeout(timer);
        resolve(Number(match[1]));
      }
    });
  }).catch((error) => {
    child.kill('SIGKILL');
    error.message += `\nServer log:\n${logLines.join('\n')}`;
    throw error;
  });

  return {
    port,
    origin: `http://127.0.0.1:${port}`,

    /** Returns the last lines that the server logged to stderr. */
    logTail() {
      return logLines.slice(-SERVER_LOG_TAIL_LINES).join('\n');
    },

    /** Sends SIGTERM and resolves with the exit code and signal; kills it on timeout. */
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) {
        return exited;
      }
      child.kill('SIGTERM');
      let timer;
      const timedOut = new Promise((resolve) => {
        timer = setTimeout(() => resolve(null), SERVER_STOP_TIMEOUT_MS);
      });
      const result = await Promise.race([exited, timedOut]);
      clearTimeout(timer);
      if (result === null) {
        child.kill('SIGKILL');
        await exited;
        throw new Error(`linkspeed did not exit within ${SERVER_STOP_TIMEOUT_MS} ms of SIGTERM and was killed.`);
      }
      return result;
    },
  };
}

/** Launches Debian's Chromium headless, or throws if it is not installed. */
export async function launchChromium() {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(
      `Chromium not found at ${CHROMIUM_PATH}. The browser tests need Debian's chromium ` +
        'package, which the project installer installs (apt-get install chromium).',
    );
  }
  return chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS });
}

/** Creates test-results/ if needed and returns the path for a screenshot file name. */
export async function screenshotPath(fileName) {
  await mkdir(RESULTS_DIR, { recursive: true });
  return path.join(RESULTS_DIR, fileName);
}

/**
 * Parses a CSS rgb()/rgba() colour into its red, green and blue channels (0..255).
 * Returns null for any other syntax.
 */
export function parseRgb(cssColour) {
  const match = /^rgba?\((\d+(?:\.\d+)?),\s*(\d+(?:\.\d+)?),\s*(\d+(?:\.\d+)?)/.exec(cssColour);
  if (!match) {
    return null;
  }
  return { red: Number(match[1]), green: Number(match[2]), blue: Number(match[3]) };
}

/** Returns the WCAG relative luminance (0 = black, 1 = white) of a CSS rgb() colour. */
export function relativeLuminance(cssColour) {
  const rgb = parseRgb(cssColour);
  if (!rgb) {
    throw new Error(`Expected an rgb() colour, got "${cssColour}".`);
  }
  const linear = (channel) => {
    const value = channel / 255;
    return value <= 0.03928 ? value / 12.92 : ((value + 0.055) / 1.055) ** 2.4;
  };
  return 0.2126 * linear(rgb.red) + 0.7152 * linear(rgb.green) + 0.0722 * linear(rgb.blue);
}
