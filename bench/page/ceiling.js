// The browser's own ceiling on one connection, for bench/page.mjs: streamed
// GET /__down requests read with a reader that drops the chunks, then POST /__up
// requests of one Blob, each one after another for the "duration" query parameter
// in seconds. The figures go to the collector URL in the "report" parameter.
'use strict';

// linkspeed's default --max-download-bytes. One request for the whole duration would
// need more than that, so the reader runs 1 GiB requests one after another.
const DOWNLOAD_BYTES = 2 ** 30;
const UPLOAD_BLOB_BYTES = 64 * 2 ** 20;
// crypto.getRandomValues fills at most 65,536 bytes per call.
const RANDOM_CHUNK_BYTES = 65536;

/** Reads GET /__down requests one after another for durationMs and returns the bytes and the elapsed time. */
async function measureDownload(durationMs) {
  const start = performance.now();
  let bytes = 0;
  let elapsedMs = 0;
  while (elapsedMs < durationMs) {
    const response = await fetch(`/__down?bytes=${DOWNLOAD_BYTES}`, { cache: 'no-store' });
    if (!response.ok) {
      throw new Error(`GET /__down failed with HTTP ${response.status}`);
    }
    const reader = response.body.getReader();
    while (elapsedMs < durationMs) {
      let chunk;
      try {
        chunk = await reader.read();
      } catch (error) {
        throw new Error(`${error} after ${bytes} bytes in ${Math.round(elapsedMs)} ms`);
      }
      if (chunk.done) {
        break;
      }
      bytes += chunk.value.byteLength;
      elapsedMs = performance.now() - start;
    }
    await reader.cancel();
  }
  return { bytes, duration_ms: elapsedMs, bps: (bytes * 8) / (elapsedMs / 1000) };
}

function randomBlob(size) {
  const data = new Uint8Array(size);
  for (let offset = 0; offset < size; offset += RANDOM_CHUNK_BYTES) {
    crypto.getRandomValues(data.subarray(offset, offset + RANDOM_CHUNK_BYTES));
  }
  return new Blob([data]);
}

/** Sends POST /__up requests one after another until durationMs has passed; counts the bytes the server reports. */
async function measureUpload(durationMs) {
  const blob = randomBlob(UPLOAD_BLOB_BYTES);
  const start = performance.now();
  let bytes = 0;
  let elapsedMs = 0;
  while (elapsedMs < durationMs) {
    const response = await fetch('/__up', { method: 'POST', body: blob, cache: 'no-store' });
    if (!response.ok) {
      throw new Error(`POST /__up failed with HTTP ${response.status}`);
    }
    bytes += (await response.json()).bytes;
    elapsedMs = performance.now() - start;
  }
  return { bytes, duration_ms: elapsedMs, bps: (bytes * 8) / (elapsedMs / 1000) };
}

async function main() {
  const params = new URLSearchParams(window.location.search);
  const durationMs = Number(params.get('duration') || 10) * 1000;
  const report = { kind: 'ceiling', errors: [] };
  try {
    report.download = await measureDownload(durationMs);
  } catch (error) {
    report.errors.push(`download: ${error}`);
  }
  try {
    report.upload = await measureUpload(durationMs);
  } catch (error) {
    report.errors.push(`upload: ${error}`);
  }
  document.getElementById('status').textContent = JSON.stringify(report);
  await fetch(params.get('report'), { method: 'POST', mode: 'no-cors', body: JSON.stringify(report) });
}

main();
