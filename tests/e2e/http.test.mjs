// HTTP side of `linkspeed serve`: the speed test page and its assets, caching
// headers, HEAD, 404 and 405 responses, /healthz and /ws without an upgrade.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';

import {
  collectSocket,
  connectTcp,
  getHealth,
  httpRequest,
  openWebSocket,
  parseHttpResponseHead,
  rawHttpExchange,
  rawHttpUntilClose,
  sleep,
  startServer,
  waitFor,
  withTimeout,
} from './helpers.mjs';

const JAVASCRIPT_TYPE = /^(text|application)\/javascript\b/;

// Returns the local asset paths that an HTML page links with src= or href=.
function linkedAssets(html) {
  const assets = new Set();
  for (const match of html.matchAll(/\b(?:src|href)\s*=\s*["']([^"'#?]+)/g)) {
    const target = match[1];
    if (/^[a-z]+:/i.test(target) || target.startsWith('//')) {
      continue;
    }
    if (/\.(js|css)$/.test(target)) {
      assets.add(target.startsWith('/') ? target : `/${target}`);
    }
  }
  return [...assets];
}

test('pages are served at / and /classic', async (t) => {
  const server = await startServer(t, ['--workers', '1']);

  for (const pagePath of ['/', '/classic']) {
    const response = await httpRequest(server.port, { path: pagePath });
    assert.equal(response.status, 200, `GET ${pagePath}`);
    assert.match(response.headers['content-type'], /^text\/html\b/, `Content-Type of ${pagePath}`);
    assert.ok(response.headers.etag, `ETag of ${pagePath}`);
    assert.match(response.headers['cache-control'] ?? '', /no-cache/, `Cache-Control of ${pagePath}`);
    assert.match(response.body.toString('utf8'), /<html/i, `body of ${pagePath}`);
  }

  const root = await httpRequest(server.port, { path: '/' });
  const index = await httpRequest(server.port, { path: '/index.html' });
  const classic = await httpRequest(server.port, { path: '/classic' });
  const classicHtml = await httpRequest(server.port, { path: '/classic.html' });
  assert.deepEqual(root.body, index.body, '/ serves index.html');
  assert.deepEqual(classic.body, classicHtml.body, '/classic serves classic.html');
  assert.notDeepEqual(root.body, classic.body, '/ and /classic serve different pages');
  assert.match(root.body.toString('utf8'), /src="\/app\.js"/, '/ loads the main page script');
  assert.match(classic.body.toString('utf8'), /src="\/classic\.js"/, '/classic loads the classic script');

  await server.stopAndCheck();
});

test('page assets have their content types', async (t) => {
  const server = await startServer(t, ['--workers', '1']);

  const assets = new Set(['/classic.js', '/style.css']);
  for (const pagePath of ['/', '/classic']) {
    const page = await httpRequest(server.port, { path: pagePath });
    const pageAssets = linkedAssets(page.body.toString('utf8'));
    assert.ok(pageAssets.some((asset) => asset.endsWith('.js')), `${pagePath} links a script: ${pageAssets}`);
    assert.ok(pageAssets.some((asset) => asset.endsWith('.css')), `${pagePath} links a stylesheet: ${pageAssets}`);
    pageAssets.forEach((asset) => assets.add(asset));
  }

  for (const asset of assets) {
    const response = await httpRequest(server.port, { path: asset });
    assert.equal(response.status, 200, `GET ${asset}`);
    assert.ok(response.body.length > 0, `body of ${asset}`);
    assert.ok(response.headers.etag, `ETag of ${asset}`);
    if (asset.endsWith('.js')) {
      assert.match(response.headers['content-type'], JAVASCRIPT_TYPE, `Content-Type of ${asset}`);
    } else {
      assert.match(response.headers['content-type'], /^text\/css\b/, `Content-Type of ${asset}`);
    }
  }

  const html = await httpRequest(server.port, { path: '/classic.html' });
  assert.equal(html.status, 200, 'GET /classic.html');
  assert.match(html.headers['content-type'], /^text\/html\b/);

  const icon = await httpRequest(server.port, { path: '/favicon.svg' });
  assert.equal(icon.status, 200, 'GET /favicon.svg');
  assert.match(icon.headers['content-type'], /^image\/svg\+xml\b/);

  await server.stopAndCheck();
});

test('If-None-Match with the ETag returns 304', async (t) => {
  const server = await startServer(t, ['--workers', '1']);

  for (const assetPath of ['/', '/classic', '/classic.js', '/style.css']) {
    const first = await httpRequest(server.port, { path: assetPath });
    const etag = first.headers.etag;
    assert.ok(etag, `ETag of ${assetPath}`);

    const cached = await httpRequest(server.port, { path: assetPath, headers: { 'If-None-Match': etag } });
    assert.equal(cached.status, 304, `GET ${assetPath} with If-None-Match: ${etag}`);
    assert.equal(cached.body.length, 0, `304 body of ${assetPath}`);
    assert.equal(cached.headers.etag, etag, `ETag of the 304 for ${assetPath}`);

    const changed = await httpRequest(server.port, { path: assetPath, headers: { 'If-None-Match': '"not-the-etag"' } });
    assert.equal(changed.status, 200, `GET ${assetPath} with another ETag`);
    assert.deepEqual(changed.body, first.body, `body of ${assetPath} with another ETag`);
  }

  const page = await httpRequest(server.port, { path: '/' });
  const script = await httpRequest(server.port, { path: '/classic.js' });
  assert.notEqual(page.headers.etag, script.headers.etag, 'different files have different ETags');

  await server.stopAndCheck();
});

test('HEAD returns headers without a body', async (t) => {
  const server = await startServer(t, ['--workers', '1']);

  for (const headPath of ['/', '/classic', '/classic.js', '/healthz']) {
    const get = await httpRequest(server.port, { path: headPath });
    const data = await rawHttpUntilClose(server.port,
      `HEAD ${headPath} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);
    const response = parseHttpResponseHead(data);
    assert.ok(response, `HEAD ${headPath} got no complete response: ${data.toString('latin1')}`);
    assert.equal(response.status, 200, `HEAD ${headPath}: ${response.statusLine}`);
    assert.equal(response.headers['content-type'], get.headers['content-type'], `Content-Type of HEAD ${headPath}`);
    assert.equal(response.body.length, 0, `HEAD ${headPath} sent a body: ${response.body.toString('latin1').slice(0, 80)}`);
    if (headPath !== '/healthz') {
      assert.equal(response.headers.etag, get.headers.etag, `ETag of HEAD ${headPath}`);
      if (response.headers['content-length'] !== undefined) {
        assert.equal(Number(response.headers['content-length']), get.body.length, `Content-Length of HEAD ${headPath}`);
      }
    }
  }

  await server.stopAndCheck();
});

test('unknown path returns 404 with a short body', async (t) => {
  const server = await startServer(t, ['--workers', '1']);

  for (const unknownPath of ['/nope', '/classic.js.bak', '/ws/extra', '/healthz/x']) {
    const response = await httpRequest(server.port, { path: unknownPath });
    assert.equal(response.status, 404, `GET ${unknownPath}`);
    assert.ok(response.body.length < 512, `404 body of ${unknownPath} is ${response.body.length} bytes`);
  }
  const response = await httpRequest(server.port, { path: '/nope' });
  assert.match(response.headers['content-type'] ?? '', /^text\//, 'Content-Type of the 404');

  await server.stopAndCheck();
});

test('path traversal never leaves the web root', async (t) => {
  const server = await startServer(t, ['--workers', '1']);

  const attempts = [
    '/../../../../etc/passwd',
    '/..%2f..%2f..%2f..%2fetc%2fpasswd',
    '/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd',
    '/....//....//etc/passwd',
    '/./classic.html/../../../../etc/passwd',
  ];
  for (const attempt of attempts) {
    const response = await rawHttpExchange(server.port,
      `GET ${attempt} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);
    const text = response.data.toString('latin1');
    assert.doesNotMatch(text, /root:.*:0:0:/, `GET ${attempt} returned /etc/passwd`);
    if (response.status !== null) {
      assert.ok([400, 403, 404].includes(response.status), `GET ${attempt} returned ${response.statusLine}`);
    }
  }

  const health = await httpRequest(server.port, { path: '/healthz' });
  assert.equal(health.status, 200, 'server still serves after the attempts');

  await server.stopAndCheck();
});

test('other methods return 405 with Allow', async (t) => {
  const server = await startServer(t, ['--workers', '1']);

  for (const method of ['POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']) {
    for (const targetPath of ['/', '/classic', '/healthz', '/classic.js']) {
      const body = method === 'OPTIONS' ? undefined : 'x=1';
      const headers = body ? { 'Content-Type': 'application/x-www-form-urlencoded', 'Content-Length': '3' } : {};
      const response = await httpRequest(server.port, { method, path: targetPath, headers, body });
      assert.equal(response.status, 405, `${method} ${targetPath}`);
      assert.equal(response.headers.allow, 'GET, HEAD', `Allow header of ${method} ${targetPath}`);
      assert.ok(response.body.length < 512, `405 body of ${method} ${targetPath} is ${response.body.length} bytes`);
    }
  }

  const health = await httpRequest(server.port, { path: '/healthz' });
  assert.equal(health.status, 200, 'server still serves GET after the 405s');

  await server.stopAndCheck();
});

test('/healthz returns status JSON', async (t) => {
  const server = await startServer(t, ['--workers', '2']);

  const response = await httpRequest(server.port, { path: '/healthz' });
  assert.equal(response.status, 200);
  assert.match(response.headers['content-type'], /^application\/json\b/);
  const health = JSON.parse(response.body.toString('utf8'));
  assert.equal(health.status, 'ok');
  assert.equal(health.version, '0.1.0');
  assert.equal(typeof health.uptime_s, 'number');
  assert.ok(health.uptime_s >= 0, `uptime_s is ${health.uptime_s}`);
  assert.ok(health.uptime_s < 60, `uptime_s is ${health.uptime_s}`);
  assert.ok(Number.isInteger(health.connections), `connections is ${health.connections}`);
  assert.ok(Number.isInteger(health.transfers), `transfers is ${health.transfers}`);
  assert.equal(health.connections, 0, 'no connection other than the one asking');
  assert.equal(health.transfers, 0);

  await sleep(300);
  const later = await getHealth(server.port);
  assert.ok(later.uptime_s >= health.uptime_s + 0.2, `uptime_s went from ${health.uptime_s} to ${later.uptime_s} in 300 ms`);

  await server.stopAndCheck();
});

test('/healthz counts connections across workers', async (t) => {
  const server = await startServer(t, ['--workers', '2']);

  const sockets = [];
  for (let i = 0; i < 3; i++) {
    sockets.push(await openWebSocket(server.port));
  }
  const health = await waitFor(async () => {
    const value = await getHealth(server.port);
    return value.connections === 3 ? value : false;
  }, { timeoutMs: 3000, message: 'connections to be 3 with three open WebSockets' });
  assert.equal(health.transfers, 0, 'idle WebSockets are not transfers');

  for (const ws of sockets) {
    ws.close(1000);
  }
  await waitFor(async () => (await getHealth(server.port)).connections === 0,
    { timeoutMs: 3000, message: 'connections to return to 0' });

  await server.stopAndCheck();
});

test('WebSocket endpoints without upgrade return 400', async (t) => {
  const server = await startServer(t, ['--workers', '1']);

  for (const path of ['/ws', '/api/v1/latency', '/ndt/v7/download', '/ndt/v7/upload']) {
    const response = await httpRequest(server.port, { path });
    assert.equal(response.status, 400, `GET ${path}`);
    assert.match(response.body.toString(), /WebSocket upgrade/, `GET ${path}: body`);
    const post = await httpRequest(server.port, { method: 'POST', path });
    assert.equal(post.status, 405, `POST ${path}`);
  }

  const health = await httpRequest(server.port, { path: '/healthz' });
  assert.equal(health.status, 200);

  await server.stopAndCheck();
});

test('--web-root serves files from a directory', async (t) => {
  const webRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'linkspeed-web-'));
  t.after(() => fs.rmSync(webRoot, { recursive: true, force: true }));
  fs.writeFileSync(path.join(webRoot, 'index.html'), '<!doctype html><html><title>custom main</title></html>\n');
  fs.writeFileSync(path.join(webRoot, 'classic.html'), '<!doctype html><html><title>custom root</title></html>\n');
  fs.writeFileSync(path.join(webRoot, 'classic.js'), 'console.log("custom");\n');
  fs.writeFileSync(path.join(webRoot, 'style.css'), 'body { color: red; }\n');
  fs.writeFileSync(path.join(webRoot, 'notes.txt'), 'plain text\n');

  const server = await startServer(t, ['--workers', '1', '--web-root', webRoot]);

  const page = await httpRequest(server.port, { path: '/' });
  assert.equal(page.status, 200);
  assert.match(page.body.toString('utf8'), /custom main/);
  assert.match(page.headers['content-type'], /^text\/html\b/);

  const classic = await httpRequest(server.port, { path: '/classic' });
  assert.equal(classic.status, 200);
  assert.match(classic.body.toString('utf8'), /custom root/);
  assert.match(classic.headers['content-type'], /^text\/html\b/);

  const script = await httpRequest(server.port, { path: '/classic.js' });
  assert.equal(script.body.toString('utf8'), 'console.log("custom");\n');
  assert.match(script.headers['content-type'], JAVASCRIPT_TYPE);

  const text = await httpRequest(server.port, { path: '/notes.txt' });
  assert.equal(text.status, 200);
  assert.match(text.headers['content-type'], /^text\/plain\b/);

  const missing = await httpRequest(server.port, { path: '/favicon.svg' });
  assert.equal(missing.status, 404, 'files of the embedded web/ are not served from another root');

  await server.stopAndCheck();
});

test('keep-alive connection closes after idle timeout', async (t) => {
  const server = await startServer(t, ['--workers', '1', '--idle-timeout', '1']);

  const socket = await connectTcp(server.port);
  const collector = collectSocket(socket);
  const request = 'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n';
  socket.write(request);
  await waitFor(() => collector.data.toString('latin1').includes('"status"'),
    { timeoutMs: 3000, message: 'the first keep-alive response' });

  // A second request on the same connection is served too.
  socket.write(request);
  await waitFor(() => collector.data.toString('latin1').split('HTTP/1.1 200').length === 3,
    { timeoutMs: 3000, message: 'the second keep-alive response' });
  const idleSince = performance.now();

  const result = await withTimeout(collector.closed, 6000);
  socket.destroy();
  assert.ok(result, 'idle keep-alive connection still open 6 s after the last response with a 1 s idle timeout');
  const idleMs = performance.now() - idleSince;
  assert.ok(idleMs >= 800, `closed ${Math.round(idleMs)} ms after the last response`);
  assert.ok(idleMs <= 4000, `closed ${Math.round(idleMs)} ms after the last response`);

  await server.stopAndCheck();
});

test('pipelined requests with bodies keep the worker serving', async (t) => {
  const server = await startServer(t, ['--workers', '1']);

  // libwebsockets 4.1.6 mishandles a body pipelined behind another request; the server
  // answers what it can, closes that connection and must keep serving others.
  const cases = {
    'GET then POST with a body': [
      'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n',
      'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc',
    ],
    'POST with a body then GET': [
      'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc',
      'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n',
    ],
    'two POSTs then GET': [
      'POST /nope HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab',
      'POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab',
      'GET / HTTP/1.1\r\nHost: x\r\n\r\n',
    ],
  };
  for (const [name, requests] of Object.entries(cases)) {
    const socket = await connectTcp(server.port);
    const collector = collectSocket(socket);
    socket.write(requests.join(''));
    await withTimeout(collector.closed, 1000);
    socket.destroy();
    const data = collector.data.toString('latin1');
    const statuses = [...data.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((match) => Number(match[1]));
    assert.ok(statuses.length >= 2, `${name}: expected at least 2 responses, got ${JSON.stringify(statuses)}`);
    assert.ok(statuses.every((status) => [200, 404, 405].includes(status)), `${name}: ${statuses}`);

    const started = Date.now();
    const health = await getHealth(server.port);
    assert.equal(health.status, 'ok', `${name}: /healthz after the pipelined requests`);
    assert.ok(Date.now() - started < 1000, `${name}: /healthz took ${Date.now() - started} ms`);
  }

  await server.stopAndCheck();
});

test('/api/v1/info reports server and client', async (t) => {
  const named = await startServer(t, ['--workers', '1', '--name', 'lab-7'], { listen: ['127.0.0.1:0'] });
  const response = await httpRequest(named.port, { path: '/api/v1/info' });
  assert.equal(response.status, 200);
  assert.equal(response.headers['content-type'], 'application/json');
  assert.equal(response.headers['cache-control'], 'no-store');
  const info = JSON.parse(response.body.toString());
  assert.deepEqual(Object.keys(info).sort(), ['client_ip', 'server_name', 'version']);
  assert.equal(info.client_ip, '127.0.0.1');
  assert.equal(info.server_name, 'lab-7');
  assert.match(info.version, /^\d+\.\d+\.\d+$/);
  const post = await httpRequest(named.port, { method: 'POST', path: '/api/v1/info' });
  assert.equal(post.status, 405);
  await named.stopAndCheck();

  // Without --name the server reports its host name.
  const unnamed = await startServer(t, ['--workers', '1']);
  const defaultInfo = JSON.parse((await httpRequest(unnamed.port, { path: '/api/v1/info' })).body.toString());
  assert.equal(defaultInfo.server_name, os.hostname());
  await unnamed.stopAndCheck();
});
