// Runs the measurements of the page at / from Node: idle latency, then each requested
// direction with latency probes beside it, as web/app.js runs them. The measuring code is
// the page's own (web/measure.js, web/latency.js) on the globals of browser-globals.mjs.
//
//   node tests/netlab/page-client.mjs PAGE_URL [download,upload]
//
// Prints one JSON object on stdout: { idle, download, upload }, each direction with
// bps, streams, duration_ms, stable_window_ms, bytes, server_confirmed_bytes, error and
// loaded (the summary of the loaded-latency probes, or null) and loaded_samples_ms.

import { installBrowserGlobals } from './browser-globals.mjs';

// The same values as the constants of web/app.js, which cannot be imported into Node
// because it reads the page's DOM when it loads.
const IDLE_PROBE_COUNT = 10;
const IDLE_PROBE_GAP_MS = 50;
const LOADED_PROBE_INTERVAL_MS = 200;

const [pageUrl, directionList = 'download,upload'] = process.argv.slice(2);
if (!pageUrl) {
  console.error('usage: node page-client.mjs PAGE_URL [download,upload]');
  process.exit(2);
}
const directions = directionList.split(',');
for (const direction of directions) {
  if (direction !== 'download' && direction !== 'upload') {
    console.error(`invalid direction "${direction}": expected download or upload`);
    process.exit(2);
  }
}

installBrowserGlobals(pageUrl);
const { measureThroughput } = await import('../../web/measure.js');
const { measureIdle, openWarmProbe, startLoadedProbes } = await import('../../web/latency.js');
const { DEFAULT_SETTINGS } = await import('../../web/settings.js');

const result = { idle: await measureIdle(IDLE_PROBE_COUNT, IDLE_PROBE_GAP_MS) };
for (const direction of directions) {
  const loadedProbes = startLoadedProbes(await openWarmProbe(), LOADED_PROBE_INTERVAL_MS);
  const measured = await measureThroughput(direction, {
    streams: DEFAULT_SETTINGS.streams,
    maxDurationMs: DEFAULT_SETTINGS.duration_s * 1000,
  });
  const loaded = await loadedProbes.stop();
  result[direction] = {
    ...measured,
    error: measured.error?.message ?? null,
    loaded,
    loaded_samples_ms: loadedProbes.samples,
  };
}

console.log(JSON.stringify(result));
// The keep-alive connections of fetch and of the upload agent would keep Node running.
process.exit(0);
