// The legacy /ws protocol in Node.js with the `ws` package, as a typical JavaScript
// speed-test server would write it: the benchmark's reference for linkspeed's /ws.
// Every text message gets one binary message of --payload-size random bytes, made once at
// start and shared by every client, as linkspeed does. Like linkspeed, it pings every 5 s
// and closes a binary message from the client with 1003.
//
// Usage: node bench/ws-node-server.mjs [--port 0] [--payload-size 10485760]
// It logs "listening on 127.0.0.1:PORT" on stderr once it accepts connections, and stops
// on SIGTERM or SIGINT.
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { parseArgs } from 'node:util';
import { WebSocketServer } from 'ws';

const { values: options } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    'payload-size': { type: 'string', default: '10485760' },
  },
});
const port = Number(options.port);
const payloadSize = Number(options['payload-size']);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`ws-node-server: invalid --port "${options.port}": expected an integer in 0..65535`);
  process.exit(2);
}
if (!Number.isInteger(payloadSize) || payloadSize < 1 || payloadSize > 1073741824) {
  console.error(`ws-node-server: invalid --payload-size "${options['payload-size']}": expected bytes in 1..1073741824`);
  process.exit(2);
}
const HEARTBEAT_INTERVAL_MS = 5000;

const payload = randomBytes(payloadSize);
const server = http.createServer((request, response) => {
  response.writeHead(404, { 'Content-Type': 'text/plain' });
  response.end('not found\n');
});
// ws 8 leaves perMessageDeflate off for servers by default. Compressing random bytes would only cost CPU.
const wss = new WebSocketServer({ server, path: '/ws', maxPayload: 65536 });

wss.on('connection', (socket) => {
  socket.isAlive = true;
  socket.on('pong', () => {
    socket.isAlive = true;
  });
  socket.on('message', (data, isBinary) => {
    socket.isAlive = true;
    if (isBinary) {
      socket.close(1003, 'binary messages are not accepted');
      return;
    }
    socket.send(payload, { binary: true });
  });
  socket.on('error', (error) => console.error(`ws-node-server: connection error: ${error.message}`));
});

// The usual ws heartbeat: a client that sent no pong since the last ping is terminated.
const heartbeat = setInterval(() => {
  for (const socket of wss.clients) {
    if (!socket.isAlive) {
      socket.terminate();
      continue;
    }
    socket.isAlive = false;
    socket.ping();
  }
}, HEARTBEAT_INTERVAL_MS);

function stop(signal) {
  console.error(`ws-node-server: stopping on ${signal}`);
  clearInterval(heartbeat);
  for (const socket of wss.clients) {
    socket.terminate();
  }
  wss.close();
  server.close(() => process.exit(0));
}
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));

server.listen(port, '127.0.0.1', () => {
  console.error(`ws-node-server: listening on 127.0.0.1:${server.address().port}`);
});
