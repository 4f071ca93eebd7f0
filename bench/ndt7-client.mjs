// Runs M-Lab's JavaScript ndt7 client (@m-lab/ndt7) once, download or upload,
// against a server, and prints the last measurements and this process's CPU time
// as JSON. Called by bench/ndt7.mjs.
//
// Usage: node --experimental-websocket bench/ndt7-client.mjs HOST:PORT download|upload
// Node 20 has a global WebSocket only behind --experimental-websocket, and the
// `web-worker` package provides Worker on top of worker_threads.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const [server, direction] = process.argv.slice(2);
if (!server || !['download', 'upload'].includes(direction)) {
  console.error('usage: node --experimental-websocket bench/ndt7-client.mjs HOST:PORT download|upload');
  process.exit(2);
}
globalThis.Worker = (await import('web-worker')).default;
const ndt7 = require('@m-lab/ndt7');
const config = {
  server,
  protocol: 'ws',
  mlabDataPolicyInapplicable: true,
  downloadworkerfile: require.resolve('@m-lab/ndt7/src/ndt7-download-worker.js'),
  uploadworkerfile: require.resolve('@m-lab/ndt7/src/ndt7-upload-worker.js'),
  metadata: { client_name: 'linkspeed-bench' },
};
const output = { errors: [] };
const callbacks = {
  error: (error) => output.errors.push(String(error)),
  downloadComplete: (data) => {
    output.complete = data;
  },
  uploadComplete: (data) => {
    output.complete = data;
  },
};
const urlPromise = ndt7.discoverServerURLs(config, callbacks);
const cpuBefore = process.cpuUsage();
output.code = direction === 'download'
  ? await ndt7.downloadTest(config, callbacks, urlPromise)
  : await ndt7.uploadTest(config, callbacks, urlPromise);
// process.cpuUsage() counts every thread of the process, the test's worker included.
const cpu = process.cpuUsage(cpuBefore);
output.client_cpu_s = (cpu.user + cpu.system) / 1e6;
process.stdout.write(JSON.stringify(output));
// Worker threads the library terminated may still hold the event loop.
process.exit(0);
