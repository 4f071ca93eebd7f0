// Opens N WebSocket connections to a /ws URL with the `ws` package and keeps them open
// and idle, for the server memory benchmark. The clients send no messages, but ws sends a
// pong for each of the server's pings by itself, so the server keeps them.
//
// Usage: node bench/ws-idle-clients.mjs URL [--connections 1000] [--batch 100]
// Prints one JSON line once every connection is open or has failed:
//   {"open":N,"failed":F,"first_error":"..."}
// then keeps the connections open until standard input closes, and prints
//   {"open":M,"closed_by_server":K}
// before it closes them and exits. The caller needs `ulimit -n` above N.
import { parseArgs } from 'node:util';
import WebSocket from 'ws';

const { values: options, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    connections: { type: 'string', default: '1000' },
    batch: { type: 'string', default: '100' },
  },
});
const url = positionals[0];
const connectionCount = Number(options.connections);
const batchSize = Number(options.batch);
if (positionals.length !== 1 || !/^wss?:\/\//.test(url)) {
  console.error('usage: node bench/ws-idle-clients.mjs ws://HOST:PORT/ws [--connections N] [--batch N]');
  process.exit(2);
}
if (!Number.isInteger(connectionCount) || connectionCount < 1 || connectionCount > 100000) {
  console.error(`ws-idle-clients: invalid --connections "${options.connections}": expected an integer in 1..100000`);
  process.exit(2);
}
if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > 10000) {
  console.error(`ws-idle-clients: invalid --batch "${options.batch}": expected an integer in 1..10000`);
  process.exit(2);
}
const OPEN_TIMEOUT_MS = 10_000;

const sockets = [];
let closedByServer = 0;
let holding = true;

/** Opens one connection and resolves to null once it is open, or to the error message. */
function openOne() {
  return new Promise((resolve) => {
    const socket = new WebSocket(url, { handshakeTimeout: OPEN_TIMEOUT_MS, perMessageDeflate: false });
    socket.once('open', () => {
      sockets.push(socket);
      socket.once('close', () => {
        if (holding) {
          closedByServer++;
        }
      });
      resolve(null);
    });
    // An error after the open is followed by a close, which the listener above counts.
    socket.on('error', (error) => resolve(error.message));
  });
}

let failed = 0;
let firstError = '';
// Batches bound the handshakes in flight, so that a small listen backlog is not overrun.
for (let started = 0; started < connectionCount; started += batchSize) {
  const count = Math.min(batchSize, connectionCount - started);
  const errors = await Promise.all(Array.from({ length: count }, openOne));
  for (const error of errors) {
    if (error !== null) {
      failed++;
      firstError ||= error;
    }
  }
}
process.stdout.write(`${JSON.stringify({ open: sockets.length, failed, first_error: firstError })}\n`);

process.stdin.resume();
process.stdin.on('end', () => {
  const open = sockets.filter((socket) => socket.readyState === WebSocket.OPEN).length;
  process.stdout.write(`${JSON.stringify({ open, closed_by_server: closedByServer })}\n`);
  holding = false;
  for (const socket of sockets) {
    socket.terminate();
  }
  process.exit(0);
});
