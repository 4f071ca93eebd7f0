// Servers on loopback that fail in the ways `linkspeed test` must report. One
// stalls, one returns 404 for everything and one closes connections
// mid-transfer. A proxy in front of the real server rejects chosen requests or
// WebSocket upgrades. Every server is closed, and every connection it holds
// destroyed, when the test ends.

import http from 'node:http';
import net from 'node:net';

// Listens on 127.0.0.1 with a free port and registers the cleanup with the
// test context. Resolves with the port.
function listenOnLoopback(t, server) {
  const sockets = new Set();
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  t.after(() => {
    for (const socket of sockets) {
      socket.destroy();
    }
    server.close();
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(server.address().port));
  });
}

// Resolves with a loopback port that nothing listens on: it was free a moment
// ago and was released at once.
export function unusedPort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

// Accepts connections and never sends a byte.
export function startStallingServer(t) {
  return listenOnLoopback(t, net.createServer(() => {}));
}

function rejectUpgrade(socket, status = 404, reason = 'Not Found') {
  socket.end(`HTTP/1.1 ${status} ${reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`);
}

// Responds with 404 to every request and every WebSocket upgrade.
export function start404Server(t) {
  const server = http.createServer((request, response) => {
    request.resume();
    response.writeHead(404, { 'Content-Type': 'text/plain' });
    response.end('not found\n');
  });
  server.on('upgrade', (request, socket) => rejectUpgrade(socket));
  return listenOnLoopback(t, server);
}

export const MOCK_SERVER_NAME = 'mock-server';

// Responds as GET /api/v1/info does, with `serverName` as the server's name.
function respondWithInfo(response, serverName) {
  response.writeHead(200, { 'Content-Type': 'application/json' });
  response.end(JSON.stringify({ version: '0.1.0', server_name: serverName, client_ip: '127.0.0.1' }));
}

// Serves /api/v1/info, rejects WebSocket upgrades with 404 (no latency
// endpoint), and on GET /__down sends the response head and `bytesBeforeClose`
// bytes of the body, then destroys the connection, or with `hangUp` false keeps
// it open without sending more.
export function startClosingServer(t, { bytesBeforeClose = 1024 * 1024, hangUp = true } = {}) {
  const server = http.createServer((request, response) => {
    request.resume();
    const path = new URL(request.url, 'http://mock').pathname;
    if (path === '/api/v1/info') {
      respondWithInfo(response, MOCK_SERVER_NAME);
      return;
    }
    if (path === '/__down') {
      const requested = new URL(request.url, 'http://mock').searchParams.get('bytes');
      response.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': requested });
      response.write(Buffer.alloc(bytesBeforeClose, 0x5a), () => {
        if (hangUp) {
          setTimeout(() => request.socket.destroy(), 100);
        }
      });
      return;
    }
    response.writeHead(404);
    response.end();
  });
  server.on('upgrade', (request, socket) => rejectUpgrade(socket));
  return listenOnLoopback(t, server);
}

// A reverse proxy on loopback in front of the real server at targetPort.
// `rejectRequest(request)` returns the HTTP status to respond with to a plain
// request, or null to forward it. `rejectUpgrade(request)` returns true to
// reject a WebSocket upgrade with 404, or an HTTP status to reject it with, instead of
// forwarding it. Forwarded upgrades are spliced byte for byte. With `serverName`, the
// proxy responds to /api/v1/info itself with that name, which the real server would reject.
export function startProxy(t, targetPort, {
  rejectRequest = () => null, rejectUpgrade: rejectsUpgrade = () => false, serverName = null,
} = {}) {
  const agent = new http.Agent({ keepAlive: true });
  t.after(() => agent.destroy());
  const server = http.createServer((request, response) => {
    if (serverName !== null && new URL(request.url, 'http://mock').pathname === '/api/v1/info') {
      request.resume();
      respondWithInfo(response, serverName);
      return;
    }
    const status = rejectRequest(request);
    if (status !== null) {
      request.resume();
      response.writeHead(status, { 'Content-Type': 'text/plain' });
      response.end(`rejected by the test proxy with ${status}\n`);
      return;
    }
    const upstream = http.request({
      host: '127.0.0.1',
      port: targetPort,
      method: request.method,
      path: request.url,
      headers: request.headers,
      agent,
    }, (upstreamResponse) => {
      response.writeHead(upstreamResponse.statusCode, upstreamResponse.headers);
      upstreamResponse.pipe(response);
    });
    upstream.on('error', () => response.destroy());
    response.on('close', () => upstream.destroy());
    request.pipe(upstream);
  });
  server.on('upgrade', (request, socket, head) => {
    const rejection = rejectsUpgrade(request);
    if (rejection === true) {
      rejectUpgrade(socket);
      return;
    }
    if (rejection) {
      rejectUpgrade(socket, rejection, 'Rejected');
      return;
    }
    const upstream = net.connect(targetPort, '127.0.0.1', () => {
      const lines = [`${request.method} ${request.url} HTTP/${request.httpVersion}`];
      for (let i = 0; i < request.rawHeaders.length; i += 2) {
        lines.push(`${request.rawHeaders[i]}: ${request.rawHeaders[i + 1]}`);
      }
      upstream.write(`${lines.join('\r\n')}\r\n\r\n`);
      upstream.write(head);
      upstream.pipe(socket);
      socket.pipe(upstream);
    });
    upstream.on('error', () => socket.destroy());
    socket.on('error', () => upstream.destroy());
    socket.on('close', () => upstream.destroy());
  });
  return listenOnLoopback(t, server);
}
