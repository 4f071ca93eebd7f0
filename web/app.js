// Main speed test page: idle latency, then download and upload with latency under load,
// one big live number, a live chart and the final figures. The final figures are also
// published as window.linkspeedResult and as data-* attributes of #results (units in the
// names: _bps, _ms, bytes_) for scripts and tests.

import { SpeedChart } from './chart.js';
import { measureIdle, openWarmProbe, startLoadedProbes } from './latency.js';
import { measureThroughput, recentRate } from './measure.js';
import { applyQuery, loadSettings, normalizeSettings, saveSettings, TEST_NAMES } from './settings.js';

const IDLE_PROBE_COUNT = 10;
const IDLE_PROBE_GAP_MS = 50;
const LOADED_PROBE_INTERVAL_MS = 200;
// The live number is the rate over the last second.
const LIVE_RATE_SPAN_MS = 1000;
const UNAVAILABLE = 'unavailable';
const SKIPPED = 'skipped';
const NOT_PROVIDED = '—';
// Filled from /api/v1/info when the page loads.
let serverInfo = null;

const elements = {
  phase: document.getElementById('phase'),
  speedValue: document.getElementById('speed-value'),
  speedUnit: document.getElementById('speed-unit'),
  status: document.getElementById('status'),
  start: document.getElementById('start'),
  results: document.getElementById('results'),
  footer: document.getElementById('footer'),
  settingsForm: document.getElementById('settings-form'),
  settingsStatus: document.getElementById('settings-status'),
};
const resultCells = {
  download: document.getElementById('result-download'),
  upload: document.getElementById('result-upload'),
  latency: document.getElementById('result-latency'),
  jitter: document.getElementById('result-jitter'),
  loadedDownload: document.getElementById('result-loaded-download'),
  loadedUpload: document.getElementById('result-loaded-upload'),
  bytesReceived: document.getElementById('result-bytes-received'),
  bytesSent: document.getElementById('result-bytes-sent'),
  streams: document.getElementById('result-streams'),
  clientIp: document.getElementById('result-client-ip'),
  server: document.getElementById('result-server'),
};

let settings = applyQuery(loadSettings(), window.location.search);
const chart = new SpeedChart(document.getElementById('chart'), settings.duration_s);
let runController = null;

/** Splits a rate in bit/s into a shown value and its unit (Mbit/s below 1 Gbit/s). */
function formatSpeed(bps) {
  const useGbit = bps >= 1e9;
  const value = bps / (useGbit ? 1e9 : 1e6);
  let text;
  if (value >= 100) {
    text = value.toFixed(0);
  } else if (value >= 10) {
    text = value.toFixed(1);
  } else {
    text = value.toFixed(2);
  }
  return { text, unit: useGbit ? 'Gbit/s' : 'Mbit/s' };
}

function formatSpeedText(bps) {
  const { text, unit } = formatSpeed(bps);
  return `${text} ${unit}`;
}

function formatMs(milliseconds) {
  if (milliseconds >= 100) {
    return `${milliseconds.toFixed(0)} ms`;
  }
  return `${milliseconds.toFixed(milliseconds >= 10 ? 1 : 2)} ms`;
}

/** Formats a byte count in decimal units (1 MB = 10^6 bytes, 1 GB = 10^9 bytes). */
function formatBytes(bytes) {
  if (bytes >= 1e9) {
    return `${(bytes / 1e9).toFixed(2)} GB`;
  }
  return `${(bytes / 1e6).toFixed(1)} MB`;
}

function showSpeed(bps) {
  const { text, unit } = formatSpeed(bps);
  elements.speedValue.textContent = text;
  elements.speedUnit.textContent = unit;
}

function setStatus(text) {
  elements.status.textContent = text;
}

function setButton(running) {
  elements.start.textContent = running ? 'Stop' : 'Start';
  elements.start.setAttribute('aria-pressed', String(running));
}

/** Returns the text of a loaded-latency cell: the median and the bufferbloat beside it. */
function loadedLatencyText(loadedMs, idleMs) {
  if (loadedMs === null) {
    return UNAVAILABLE;
  }
  if (idleMs === null) {
    return formatMs(loadedMs);
  }
  const bloatMs = loadedMs - idleMs;
  return `${formatMs(loadedMs)} (bufferbloat ${bloatMs >= 0 ? '+' : '−'}${formatMs(Math.abs(bloatMs))})`;
}

/** Returns a fresh result with every figure null until measured. */
function emptyResult() {
  return {
    state: 'running',
    latency_status: 'pending',
    download_bps: null,
    upload_bps: null,
    latency_ms: null,
    latency_min_ms: null,
    jitter_ms: null,
    loaded_latency_download_ms: null,
    loaded_latency_upload_ms: null,
    bufferbloat_download_ms: null,
    bufferbloat_upload_ms: null,
    bytes_received: 0,
    bytes_sent: 0,
    upload_server_bytes: 0,
    streams: null,
    streams_download: null,
    streams_upload: null,
    download_duration_ms: null,
    upload_duration_ms: null,
    client_ip: null,
    server_name: null,
    errors: [],
  };
}

/**
 * Writes every figure to window.linkspeedResult and to data-* attributes of #results.
 * A figure that was not measured is "unavailable" (latency endpoint missing), "skipped"
 * (turned off in the settings) or empty (not measured yet).
 */
function publish(result, skipped) {
  window.linkspeedResult = { ...result, errors: [...result.errors] };
  const dataset = elements.results.dataset;
  for (const [key, value] of Object.entries(result)) {
    if (key === 'errors') {
      continue;
    }
    let text = value === null ? '' : String(value);
    if (value === null && skipped.has(key)) {
      text = SKIPPED;
    } else if (value === null && isLatencyKey(key) && result.latency_status === UNAVAILABLE) {
      text = UNAVAILABLE;
    }
    dataset[key] = text;
  }
}

function isLatencyKey(key) {
  return key.includes('latency_') || key.startsWith('jitter') || key.startsWith('bufferbloat');
}

/** Returns the set of result keys that the settings turned off. */
function skippedKeys(tests) {
  const keys = new Set();
  if (!tests.latency) {
    ['latency_ms', 'latency_min_ms', 'jitter_ms', 'loaded_latency_download_ms', 'loaded_latency_upload_ms',
      'bufferbloat_download_ms', 'bufferbloat_upload_ms'].forEach((key) => keys.add(key));
  }
  if (!tests.download) {
    ['download_bps', 'streams_download', 'download_duration_ms', 'loaded_latency_download_ms',
      'bufferbloat_download_ms'].forEach((key) => keys.add(key));
  }
  if (!tests.upload) {
    ['upload_bps', 'streams_upload', 'upload_duration_ms', 'loaded_latency_upload_ms',
      'bufferbloat_upload_ms'].forEach((key) => keys.add(key));
  }
  return keys;
}

function showResultCells(result, tests) {
  const latencyText = (value) => {
    if (!tests.latency) {
      return SKIPPED;
    }
    return value === null ? UNAVAILABLE : formatMs(value);
  };
  const loadedText = (direction, loadedMs) => {
    if (!tests.latency || !tests[direction]) {
      return SKIPPED;
    }
    return loadedLatencyText(loadedMs, result.latency_ms);
  };

  resultCells.download.textContent = tests.download ? formatSpeedText(result.download_bps ?? 0) : SKIPPED;
  resultCells.upload.textContent = tests.upload ? formatSpeedText(result.upload_bps ?? 0) : SKIPPED;
  resultCells.latency.textContent = latencyText(result.latency_ms);
  resultCells.jitter.textContent = latencyText(result.jitter_ms);
  resultCells.loadedDownload.textContent = loadedText('download', result.loaded_latency_download_ms);
  resultCells.loadedUpload.textContent = loadedText('upload', result.loaded_latency_upload_ms);
  resultCells.bytesReceived.textContent = formatBytes(result.bytes_received);
  resultCells.bytesSent.textContent = formatBytes(result.bytes_sent);
  const streamParts = [];
  if (result.streams_download !== null) {
    streamParts.push(`${result.streams_download} down`);
  }
  if (result.streams_upload !== null) {
    streamParts.push(`${result.streams_upload} up`);
  }
  resultCells.streams.textContent = streamParts.length > 0 ? streamParts.join(', ') : NOT_PROVIDED;
  // NOTE: the server does not report the client's address or its own name yet.
  resultCells.clientIp.textContent = result.client_ip ?? NOT_PROVIDED;
  resultCells.server.textContent = result.server_name ?? NOT_PROVIDED;
}

function clearResultCells() {
  for (const cell of Object.values(resultCells)) {
    cell.textContent = NOT_PROVIDED;
  }
}

/** Measures idle latency into result, or marks latency unavailable when the probes fail. */
async function runIdleLatency(result) {
  setStatus('Measuring idle latency…');
  try {
    const idle = await measureIdle(IDLE_PROBE_COUNT, IDLE_PROBE_GAP_MS);
    result.latency_ms = idle.median_ms;
    result.latency_min_ms = idle.min_ms;
    result.jitter_ms = idle.jitter_ms;
    result.latency_status = 'measured';
    resultCells.latency.textContent = formatMs(idle.median_ms);
    resultCells.jitter.textContent = idle.jitter_ms === null ? UNAVAILABLE : formatMs(idle.jitter_ms);
  } catch (error) {
    result.latency_status = UNAVAILABLE;
    resultCells.latency.textContent = UNAVAILABLE;
    resultCells.jitter.textContent = UNAVAILABLE;
    console.warn(`Latency unavailable: ${error.message}`);
  }
}

/** Runs one direction with latency probes beside it and stores its figures in result. */
async function runDirection(direction, result, signal) {
  const label = direction === 'download' ? 'Download' : 'Upload';
  elements.phase.textContent = `${label} speed`;
  elements.speedValue.textContent = '0.00';
  elements.speedUnit.textContent = 'Mbit/s';
  setStatus(`Measuring ${direction}…`);

  let loadedProbes = null;
  if (result.latency_status === 'measured') {
    try {
      loadedProbes = startLoadedProbes(await openWarmProbe(), LOADED_PROBE_INTERVAL_MS);
    } catch (error) {
      console.warn(`Latency under load unavailable: ${error.message}`);
    }
  }

  const measured = await measureThroughput(direction, {
    streams: settings.streams,
    maxDurationMs: settings.duration_s * 1000,
    signal,
    onTick: ({ elapsedMs, history, streams }) => {
      const bps = recentRate(history, LIVE_RATE_SPAN_MS);
      showSpeed(bps);
      chart.add(direction, elapsedMs / 1000, bps);
      setStatus(`Measuring ${direction}: ${streams} stream${streams === 1 ? '' : 's'}`);
    },
  });
  const loaded = loadedProbes ? await loadedProbes.stop() : null;

  if (measured.error) {
    result.errors.push(`${label} failed: ${measured.error.message}`);
  }
  showSpeed(measured.bps);
  const loadedMs = loaded ? loaded.median_ms : null;
  const bloatMs = loadedMs !== null && result.latency_ms !== null ? loadedMs - result.latency_ms : null;
  if (direction === 'download') {
    result.download_bps = measured.bps;
    result.bytes_received = measured.bytes;
    result.streams_download = measured.streams;
    result.download_duration_ms = measured.duration_ms;
    result.loaded_latency_download_ms = loadedMs;
    result.bufferbloat_download_ms = bloatMs;
    resultCells.download.textContent = formatSpeedText(measured.bps);
    resultCells.bytesReceived.textContent = formatBytes(measured.bytes);
  } else {
    result.upload_bps = measured.bps;
    result.bytes_sent = measured.bytes;
    result.upload_server_bytes = measured.server_confirmed_bytes;
    result.streams_upload = measured.streams;
    result.upload_duration_ms = measured.duration_ms;
    result.loaded_latency_upload_ms = loadedMs;
    result.bufferbloat_upload_ms = bloatMs;
    resultCells.upload.textContent = formatSpeedText(measured.bps);
    resultCells.bytesSent.textContent = formatBytes(measured.bytes);
  }
  result.streams = Math.max(result.streams_download ?? 0, result.streams_upload ?? 0) || null;
}

/** Builds the closing status line from the final result. */
function summaryText(result, tests) {
  // A no-break space keeps each value beside its unit when the line wraps at phone width.
  const speedText = (bps) => formatSpeedText(bps ?? 0).replace(' ', '\u00a0');
  const parts = [];
  if (tests.download) {
    parts.push(`download ${speedText(result.download_bps)}`);
  }
  if (tests.upload) {
    parts.push(`upload ${speedText(result.upload_bps)}`);
  }
  if (tests.latency) {
    parts.push(result.latency_ms === null ? 'latency unavailable' : `latency ${formatMs(result.latency_ms)}`);
  }
  return `Done: ${parts.join(', ')}.`;
}

/** Runs the whole test with the current settings. A call while a test runs stops that test. */
async function runTest() {
  if (runController) {
    runController.abort();
    return;
  }
  const tests = { ...settings.tests };
  const skipped = skippedKeys(tests);
  const result = emptyResult();
  runController = new AbortController();
  const { signal } = runController;
  await serverInfoLoaded;
  result.client_ip = serverInfo?.client_ip ?? null;
  result.server_name = serverInfo?.server_name ?? null;

  setButton(true);
  clearResultCells();
  chart.reset(settings.duration_s);
  elements.results.dataset.state = 'running';
  publish(result, skipped);

  try {
    if (tests.latency) {
      await runIdleLatency(result);
    } else {
      result.latency_status = SKIPPED;
    }
    for (const direction of ['download', 'upload']) {
      if (tests[direction] && !signal.aborted) {
        await runDirection(direction, result, signal);
      }
    }
  } catch (error) {
    result.errors.push(error.message);
  }

  if (tests.download && result.download_bps !== null) {
    elements.phase.textContent = 'Download speed';
    showSpeed(result.download_bps);
  }
  showResultCells(result, tests);
  if (signal.aborted) {
    result.state = 'stopped';
    setStatus('Stopped. Press Start to run the test again.');
  } else if (result.errors.length > 0) {
    result.state = 'error';
    setStatus(`Error: ${result.errors.join('; ')}`);
  } else {
    result.state = 'complete';
    setStatus(summaryText(result, tests));
  }
  publish(result, skipped);
  runController = null;
  setButton(false);
}

/** Fills the settings form from the current settings. */
function fillSettingsForm() {
  const form = elements.settingsForm;
  form.elements.streams.value = String(settings.streams);
  form.elements.duration_s.value = String(settings.duration_s);
  form.elements.autostart.checked = settings.autostart;
  for (const name of TEST_NAMES) {
    form.elements[name].checked = settings.tests[name];
  }
}

function onSettingsSubmit(event) {
  event.preventDefault();
  const form = elements.settingsForm;
  const candidate = {
    streams: form.elements.streams.value,
    duration_s: Number(form.elements.duration_s.value),
    autostart: form.elements.autostart.checked,
    tests: Object.fromEntries(TEST_NAMES.map((name) => [name, form.elements[name].checked])),
  };
  settings = normalizeSettings(candidate);
  fillSettingsForm();
  const stored = saveSettings(settings);
  elements.settingsStatus.textContent = stored
    ? 'Saved. The next test uses these settings.'
    : 'This browser blocks localStorage: the settings apply until the page is reloaded.';
}

/**
 * Loads the server's name, version and the client address it observes from /api/v1/info, and
 * shows the version in the footer. The page works without it.
 */
async function loadServerInfo() {
  try {
    const response = await fetch('/api/v1/info', { cache: 'no-store' });
    const info = await response.json();
    serverInfo = info;
    if (typeof info.version === 'string') {
      elements.footer.textContent = `linkspeed ${info.version}`;
    }
  } catch {
    // The footer keeps the plain name, and the result cells show NOT_PROVIDED.
  }
}

elements.start.addEventListener('click', runTest);
elements.settingsForm.addEventListener('submit', onSettingsSubmit);
fillSettingsForm();
const serverInfoLoaded = loadServerInfo();
if (settings.autostart) {
  runTest();
} else {
  setStatus('Press Start to run the test.');
}
