// HTTPS and WSS with --tls-cert and --tls-key, and the ALPN choice between HTTP/1.1 and
// HTTP/2, against a certificate that the test makes with openssl.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http2 from 'node:http2';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { before, test } from 'node:test';

import { WebSocket, runLinkspeed, startServer } from './helpers.mjs';

let certFile;
let keyFile;

before(() => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'linkspeed-tls-'));
  certFile = path.join(dir, 'cert.pem');
  keyFile = path.join(dir, 'key.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile,
    '-out', certFile, '-days', '2', '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'], { stdio: 'ignore' });
});

function httpsGet(port, requestPath) {
  return new Promise((resolve, reject) => {
    https.get({ host: '127.0.0.1', port, path: requestPath, ca: fs.readFileSync(certFile),
      agent: false }, (response) => {
      const chunks = [];
      response.on('data', (chunk) => chunks.push(chunk));
      response.on('end', () => resolve({ status: response.statusCode, body: Buffer.concat(chunks),
        alpn: response.socket.alpnProtocol }));
    }).on('error', reject);
  });
}

function negotiatedProtocol(port) {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, ca: fs.readFileSync(certFile),
      servername: 'localhost', ALPNProtocols: ['h2', 'http/1.1'] }, () => {
      resolve(socket.alpnProtocol);
      socket.end();
    });
    socket.on('error', reject);
  });
}

test('HTTPS and WSS serve the same routes', async (t) => {
  const server = await startServer(t, ['--workers', '2', '--tls-cert', certFile, '--tls-key', keyFile]);

  assert.equal(await negotiatedProtocol(server.port), 'http/1.1', 'ALPN without --http2');
  const health = await httpsGet(server.port, '/healthz');
  assert.equal(health.status, 200);
  assert.equal(JSON.parse(health.body.toString()).status, 'ok');

  const down = await httpsGet(server.port, `/__down?bytes=${3 * 1024 * 1024 + 5}`);
  assert.equal(down.status, 200);
  assert.equal(down.body.length, 3 * 1024 * 1024 + 5);

  const page = await httpsGet(server.port, '/');
  assert.equal(page.status, 200);
  assert.match(page.body.toString(), /<html/i);

  const payloadBytes = await new Promise((resolve, reject) => {
    const ws = new WebSocket(`wss://127.0.0.1:${server.port}/ws`, { ca: fs.readFileSync(certFile) });
    ws.on('open', () => ws.send('go'));
    ws.on('message', (data, isBinary) => {
      ws.close(1000);
      resolve(isBinary ? data.length : -1);
    });
    ws.on('error', reject);
  });
  assert.equal(payloadBytes, 10 * 1024 * 1024, 'one /ws payload over WSS');

  await server.stopAndCheck();
});

test('--http2 offers HTTP/2 by ALPN', async (t) => {
  // A payload of odd size in small fragments makes HTTP/2 frames cross fragment ends.
  const server = await startServer(t, ['--workers', '1', '--tls-cert', certFile, '--tls-key', keyFile,
    '--http2', '--payload-size', '100000', '--fragment-size', '65536']);

  assert.equal(await negotiatedProtocol(server.port), 'h2', 'ALPN with --http2');
  const client = http2.connect(`https://127.0.0.1:${server.port}`, { ca: fs.readFileSync(certFile),
    servername: 'localhost' });
  const fetchH2 = (requestPath) => new Promise((resolve, reject) => {
    const stream = client.request({ ':path': requestPath });
    const chunks = [];
    let status = 0;
    stream.on('response', (headers) => { status = headers[':status']; });
    stream.on('data', (chunk) => chunks.push(chunk));
    stream.on('end', () => resolve({ status, body: Buffer.concat(chunks) }));
    stream.on('error', reject);
  });

  const h2 = await fetchH2('/__down?bytes=333333');
  assert.equal(h2.status, 200);
  assert.equal(h2.body.length, 333333, 'exact length over HTTP/2');
  const h1 = await httpsGet(server.port, '/__down?bytes=333333');
  assert.ok(h1.body.equals(h2.body), 'HTTP/2 sends the same payload bytes as HTTP/1.1');
  const big = await fetchH2(`/__down?bytes=${64 * 1024 * 1024}`);
  assert.equal(big.body.length, 64 * 1024 * 1024, 'a download larger than the flow-control window');
  client.close();

  await server.stopAndCheck();
});

test('TLS flags are checked at start', async (t) => {
  const cases = [
    [['--tls-cert', certFile], /--tls-cert and --tls-key must be given together/],
    [['--tls-cert', certFile, '--tls-key', '/nonexistent/key.pem'], /--tls-key: cannot read/],
    [['--tls-cert', keyFile, '--tls-key', certFile], /cannot load the certificate chain of --tls-cert/],
    [['--http2=maybe'], /--http2: invalid value "maybe"; expected true or false/],
  ];
  for (const [args, message] of cases) {
    const result = await runLinkspeed(t, ['serve', '--listen', '127.0.0.1:0', ...args]);
    assert.equal(result.code, 2, `${args.join(' ')}: exit status`);
    assert.match(result.stderr, message, `${args.join(' ')}: message`);
  }
});
