// Latency probes over the WebSocket echo at /api/v1/latency: the server echoes every
// short text message at once, so the time from send to echo is one round trip.

const LATENCY_PATH = '/api/v1/latency';
const OPEN_TIMEOUT_MS = 3000;
const ECHO_TIMEOUT_MS = 2000;

/** Returns the ws: or wss: URL of a path on the host that served this page. */
function webSocketUrl(path) {
  const url = new URL(path, window.location.href);
  url.protocol = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
  return url.href;
}

/** Returns the median of a non-empty list of numbers. */
export function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

/** Returns the mean absolute difference of consecutive samples, or null below 2 samples. */
export function jitter(samples) {
  if (samples.length < 2) {
    return null;
  }
  let total = 0;
  for (let i = 1; i < samples.length; i++) {
    total += Math.abs(samples[i] - samples[i - 1]);
  }
  return total / (samples.length - 1);
}

/** Summarizes round-trip samples in ms as { median_ms, min_ms, jitter_ms, samples }. */
export function summarize(samples) {
  if (samples.length === 0) {
    return null;
  }
  return {
    median_ms: median(samples),
    min_ms: Math.min(...samples),
    jitter_ms: jitter(samples),
    samples: samples.length,
  };
}

/**
 * One WebSocket connection to the echo endpoint. open() rejects when the endpoint is
 * missing or does not connect within OPEN_TIMEOUT_MS.
 */
export class LatencyProbe {
  constructor() {
    this.socket = null;
    this.sequence = 0;
    this.pending = null;
  }

  open() {
    return new Promise((resolve, reject) => {
      let socket;
      try {
        socket = new WebSocket(webSocketUrl(LATENCY_PATH));
      } catch (error) {
        reject(error);
        return;
      }
      const timer = setTimeout(() => {
        socket.close();
        reject(new Error(`${LATENCY_PATH} did not connect within ${OPEN_TIMEOUT_MS} ms`));
      }, OPEN_TIMEOUT_MS);
      socket.addEventListener('open', () => {
        clearTimeout(timer);
        this.socket = socket;
        resolve();
      });
      socket.addEventListener('close', (event) => {
        clearTimeout(timer);
        this.failPending(new Error(`${LATENCY_PATH} closed (code ${event.code})`));
        reject(new Error(`${LATENCY_PATH} is not available (close code ${event.code})`));
      });
      socket.addEventListener('message', (event) => this.receive(event.data));
    });
  }

  receive(data) {
    if (this.pending && data === this.pending.message) {
      const roundTripMs = performance.now() - this.pending.sentAt;
      clearTimeout(this.pending.timer);
      this.pending.resolve(roundTripMs);
      this.pending = null;
    }
  }

  failPending(error) {
    if (this.pending) {
      clearTimeout(this.pending.timer);
      this.pending.reject(error);
      this.pending = null;
    }
  }

  /** Sends one short text message and resolves with the round-trip time in ms. */
  ping() {
    if (!this.socket || this.socket.readyState !== WebSocket.OPEN) {
      return Promise.reject(new Error(`${LATENCY_PATH} is not open`));
    }
    this.sequence += 1;
    const message = `ping ${this.sequence}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending = null;
        reject(new Error(`no echo from ${LATENCY_PATH} within ${ECHO_TIMEOUT_MS} ms`));
      }, ECHO_TIMEOUT_MS);
      this.pending = { message, resolve, reject, timer, sentAt: performance.now() };
      this.socket.send(message);
    });
  }

  close() {
    this.failPending(new Error('probe closed'));
    if (this.socket) {
      this.socket.close(1000);
      this.socket = null;
    }
  }
}

/** Opens a probe connection, sends one warm-up message, and returns the open probe. */
export async function openWarmProbe() {
  const probe = new LatencyProbe();
  await probe.open();
  await probe.ping();
  return probe;
}

/** Measures idle latency: count round trips one after another, gapMs apart. */
export async function measureIdle(count, gapMs) {
  const probe = await openWarmProbe();
  const samples = [];
  try {
    for (let i = 0; i < count; i++) {
      samples.push(await probe.ping());
      await new Promise((resolve) => setTimeout(resolve, gapMs));
    }
  } finally {
    probe.close();
  }
  return { ...summarize(samples), sample_list_ms: samples };
}

/**
 * Probes latency every intervalMs on its own connection while a transfer runs. stop()
 * resolves with the summary, or null when no probe came back.
 */
export function startLoadedProbes(probe, intervalMs) {
  const samples = [];
  let running = true;

  const loop = (async () => {
    while (running) {
      try {
        samples.push(await probe.ping());
      } catch {
        // A lost echo under load is not a round trip, so the summary counts only echoes.
      }
      await new Promise((resolve) => setTimeout(resolve, intervalMs));
    }
  })();

  return {
    samples,
    async stop() {
      running = false;
      probe.close();
      await loop;
      return summarize(samples);
    },
  };
}
