// Download and upload throughput over the bulk HTTP endpoints: GET /__down?bytes=N
// streamed with fetch and discarded, POST /__up of a random Blob with XHR (fetch reports
// no upload progress). Parallel streams are added while the rate still grows, the ramp-up
// is left out, and the test stops once the rate is stable. Download counts the bytes that
// reach the page; upload counts the bytes the server confirms, request by request.

import { MAX_STREAMS } from './settings.js';

export const WINDOW_MS = 500;
// One stream is added per ramp step while the rate of the last step grew by more than this.
const RAMP_STEP_MS = 1000;
const RAMP_GROWTH = 0.1;
// The rate counts as stable when the last STABLE_WINDOWS windows are within this of their mean.
const STABLE_WINDOWS = 3;
const STABLE_TOLERANCE = 0.05;
export const MIN_DURATION_MS = 4000;
const TICK_MS = 100;

// Each download request is for 256 MiB, and a stream sends the next request when one ends.
const DOWNLOAD_REQUEST_BYTES = 256 * 1024 * 1024;
// Upload requests are sized to last about UPLOAD_REQUEST_MS at the stream's last rate, so
// that the server's confirmations, one per request, are fine-grained enough to compute
// the rate of a window from them. 8 MiB XHR POSTs on 6 streams reached 4.7 to 5.7 Gbit/s
// in headless Chromium 156 on a 2-core VM over loopback.
const UPLOAD_REQUEST_MS = 250;
// A request is at most this many times the stream's last one, because a small request that
// fits in the socket buffers finishes at once and shows nothing of the link's rate.
const UPLOAD_MAX_GROWTH = 4;
const UPLOAD_FIRST_BYTES = 64 * 1024;
const UPLOAD_MIN_BYTES = 64 * 1024;
const UPLOAD_MAX_BYTES = 8 * 1024 * 1024;
// When a phase ends, running upload requests get this long to finish and be confirmed.
const UPLOAD_DRAIN_MS = 2000;
// crypto.getRandomValues fills at most 65,536 bytes per call.
const RANDOM_FILL_BYTES = 64 * 1024;

let uploadBlob = null;

/** Returns one Blob of UPLOAD_MAX_BYTES random bytes, made on first use. Requests send slices of it. */
function randomBlob() {
  if (uploadBlob === null) {
    const bytes = new Uint8Array(UPLOAD_MAX_BYTES);
    for (let offset = 0; offset < bytes.length; offset += RANDOM_FILL_BYTES) {
      crypto.getRandomValues(bytes.subarray(offset, offset + RANDOM_FILL_BYTES));
    }
    uploadBlob = new Blob([bytes], { type: 'application/octet-stream' });
  }
  return uploadBlob;
}

/** Runs download requests one after another on one stream until the signal aborts. */
async function runDownloadStream(counter, stopSignal, abortSignal) {
  while (!stopSignal.aborted) {
    const response = await fetch(`/__down?bytes=${DOWNLOAD_REQUEST_BYTES}`, {
      cache: 'no-store',
      signal: abortSignal,
    });
    if (!response.ok) {
      throw new Error(`GET /__down returned HTTP ${response.status}`);
    }
    const reader = response.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) {
        break;
      }
      counter.add(value.byteLength);
    }
  }
}

/**
 * Sends one upload request with XHR. Progress events feed the live rate. When the response
 * arrives, the request's span and the byte count it confirmed go to counter.confirm().
 * Resolves with the number of bytes the server confirmed, or 0 if the request was aborted.
 */
function uploadOnce(counter, abortSignal, body) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    let reportedBytes = 0;
    let startedAt = 0;
    const onAbort = () => xhr.abort();

    xhr.open('POST', '/__up');
    xhr.responseType = 'json';
    xhr.upload.onprogress = (event) => {
      counter.add(event.loaded - reportedBytes);
      reportedBytes = event.loaded;
    };
    xhr.onload = () => {
      abortSignal.removeEventListener('abort', onAbort);
      if (xhr.status !== 200) {
        reject(new Error(`POST /__up returned HTTP ${xhr.status}`));
        return;
      }
      counter.add(body.size - reportedBytes);
      const confirmedBytes = xhr.response?.bytes ?? 0;
      counter.confirm({ start: startedAt, end: performance.now(), bytes: confirmedBytes });
      resolve(confirmedBytes);
    };
    xhr.onerror = () => {
      abortSignal.removeEventListener('abort', onAbort);
      reject(new Error('POST /__up failed: network error'));
    };
    xhr.onabort = () => {
      abortSignal.removeEventListener('abort', onAbort);
      resolve(0);
    };
    abortSignal.addEventListener('abort', onAbort);
    startedAt = performance.now();
    xhr.send(body);
  });
}

/** Returns the size of the next upload request of a stream whose last one moved bytes in ms. */
export function nextUploadBytes(lastBytes, lastMs) {
  if (!(lastBytes > 0)) {
    return UPLOAD_FIRST_BYTES;
  }
  const grownBytes = lastBytes * UPLOAD_MAX_GROWTH;
  const targetBytes = lastMs > 0 ? Math.min((lastBytes * UPLOAD_REQUEST_MS) / lastMs, grownBytes) : grownBytes;
  return Math.min(UPLOAD_MAX_BYTES, Math.max(UPLOAD_MIN_BYTES, Math.round(targetBytes)));
}

/** Runs upload requests one after another on one stream until stopSignal aborts. */
async function runUploadStream(counter, stopSignal, abortSignal) {
  const blob = randomBlob();
  let size = UPLOAD_FIRST_BYTES;
  while (!stopSignal.aborted) {
    const startedAt = performance.now();
    const confirmedBytes = await uploadOnce(counter, abortSignal, blob.slice(0, size));
    size = nextUploadBytes(confirmedBytes, performance.now() - startedAt);
  }
}

/**
 * Returns the bytes of confirmed requests ({ start, end, bytes }) that fall within
 * [from, to], each request's bytes spread evenly over its span.
 */
export function bytesWithin(requests, from, to) {
  let total = 0;
  for (const request of requests) {
    const overlap = Math.min(request.end, to) - Math.max(request.start, from);
    if (overlap <= 0) {
      continue;
    }
    const span = request.end - request.start;
    total += span > 0 ? (request.bytes * overlap) / span : request.bytes;
  }
  return total;
}

/** Returns the rate in bit/s of bytes over milliseconds, or 0 for an empty span. */
function bitsPerSecond(bytes, milliseconds) {
  return milliseconds > 0 ? (bytes * 8 * 1000) / milliseconds : 0;
}

/** Returns true when the last STABLE_WINDOWS window rates are within STABLE_TOLERANCE of their mean. */
function isStable(windowRates) {
  if (windowRates.length < STABLE_WINDOWS) {
    return false;
  }
  const last = windowRates.slice(-STABLE_WINDOWS);
  const mean = last.reduce((sum, rate) => sum + rate, 0) / last.length;
  return mean > 0 && last.every((rate) => Math.abs(rate - mean) <= STABLE_TOLERANCE * mean);
}

/**
 * Measures one direction ('download' or 'upload'). options: { streams: 'auto' | 1..6,
 * maxDurationMs, signal, onTick(progress) }. Resolves with
 * { bps, bytes, streams, duration_ms, stable_window_ms, server_confirmed_bytes, error }.
 */
export async function measureThroughput(direction, options) {
  const upload = direction === 'upload';
  const runStream = upload ? runUploadStream : runDownloadStream;
  // stopper ends the streams' loops; aborter also cuts the requests that are running.
  const stopper = new AbortController();
  const aborter = new AbortController();
  const abortOnOuterAbort = () => {
    stopper.abort();
    aborter.abort();
  };
  options.signal?.addEventListener('abort', abortOnOuterAbort);

  const counter = {
    bytes: 0,
    confirmedBytes: 0,
    requests: [],
    add(count) {
      this.bytes += count;
    },
    confirm(request) {
      this.confirmedBytes += request.bytes;
      this.requests.push(request);
    },
  };
  const streamErrors = [];
  const streamRuns = [];
  const startStream = () => {
    const run = runStream(counter, stopper.signal, aborter.signal).catch((error) => {
      if (!aborter.signal.aborted) {
        streamErrors.push(error);
      }
    });
    streamRuns.push(run);
  };

  const auto = options.streams === 'auto';
  const maxDurationMs = options.maxDurationMs;
  const minDurationMs = Math.min(MIN_DURATION_MS, maxDurationMs);
  const startedAt = performance.now();
  const history = [{ time: startedAt, bytes: 0 }];
  const windowRates = [];
  let windowStart = { time: startedAt, bytes: 0 };
  let rampStepStart = { time: startedAt, bytes: 0 };
  let previousStepRate = 0;
  let ramping = true;
  // Bytes and time at the start of the stable window, set when the ramp-up ends.
  let stableStart = null;
  let stableWindowsAtStart = 0;

  const initialStreams = auto ? 1 : options.streams;
  for (let i = 0; i < initialStreams; i++) {
    startStream();
  }

  await new Promise((resolve) => {
    const tick = () => {
      const now = performance.now();
      const elapsedMs = now - startedAt;
      const sample = { time: now, bytes: counter.bytes };
      history.push(sample);

      if (now - windowStart.time >= WINDOW_MS) {
        windowRates.push(bitsPerSecond(sample.bytes - windowStart.bytes, now - windowStart.time));
        windowStart = sample;
      }

      if (ramping && now - rampStepStart.time >= RAMP_STEP_MS) {
        const stepRate = bitsPerSecond(sample.bytes - rampStepStart.bytes, now - rampStepStart.time);
        const growing = stepRate > previousStepRate * (1 + RAMP_GROWTH);
        if (auto && growing && streamRuns.length < MAX_STREAMS) {
          startStream();
        } else {
          ramping = false;
          stableStart = sample;
          stableWindowsAtStart = windowRates.length;
        }
        previousStepRate = stepRate;
        rampStepStart = sample;
      }

      const stableWindows = windowRates.length - stableWindowsAtStart;
      const stableNow = !ramping && stableWindows >= STABLE_WINDOWS && isStable(windowRates);
      const allStreamsFailed = streamErrors.length === streamRuns.length;
      options.onTick?.({ elapsedMs, bytes: counter.bytes, history, streams: streamRuns.length });

      if (
        (stableNow && elapsedMs >= minDurationMs) ||
        elapsedMs >= maxDurationMs ||
        allStreamsFailed ||
        stopper.signal.aborted
      ) {
        resolve();
        return;
      }
      setTimeout(tick, TICK_MS);
    };
    setTimeout(tick, TICK_MS);
  });

  const endedAt = performance.now();
  const endBytes = counter.bytes;
  stopper.abort();
  if (upload) {
    // The requests running at the end are confirmed after it: wait for them (bounded).
    await Promise.race([Promise.all(streamRuns), new Promise((resolve) => setTimeout(resolve, UPLOAD_DRAIN_MS))]);
  }
  aborter.abort();
  options.signal?.removeEventListener('abort', abortOnOuterAbort);
  await Promise.all(streamRuns);

  // The ramp-up never ended when the maximum duration came first: then the stable window
  // is the time since the last stream was added, or the second half of the run if shorter.
  if (stableStart === null) {
    stableStart = rampStepStart;
  }
  if (endedAt - stableStart.time < WINDOW_MS) {
    stableStart = history.find((sample) => sample.time >= startedAt + (endedAt - startedAt) / 2);
  }
  const stableWindowMs = endedAt - stableStart.time;
  const stableBytes = upload
    ? bytesWithin(counter.requests, stableStart.time, endedAt)
    : endBytes - stableStart.bytes;
  return {
    bps: bitsPerSecond(stableBytes, stableWindowMs),
    bytes: counter.bytes,
    streams: streamRuns.length,
    duration_ms: endedAt - startedAt,
    stable_window_ms: stableWindowMs,
    server_confirmed_bytes: counter.confirmedBytes,
    error: streamErrors.length === streamRuns.length ? streamErrors[0] : null,
  };
}

/** Returns the rate in bit/s over the last spanMs of a history of { time, bytes } samples. */
export function recentRate(history, spanMs) {
  const last = history[history.length - 1];
  let first = history[0];
  for (let i = history.length - 1; i >= 0; i--) {
    first = history[i];
    if (last.time - history[i].time >= spanMs) {
      break;
    }
  }
  return bitsPerSecond(last.bytes - first.bytes, last.time - first.time);
}
