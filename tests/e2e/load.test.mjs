// Many clients at once, and clients that vanish in the middle of a transfer.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  getHealth,
  MiB,
  OPCODE,
  openRecordedWebSocket,
  RawWebSocket,
  startServer,
  waitFor,
  waitForIdleServer,
} from './helpers.mjs';

const CLIENT_COUNT = 24;
const REQUESTS_PER_CLIENT = 2;

test('concurrent clients each get exact payloads', async (t) => {
  const server = await startServer(t, ['--workers', '2', '--payload-size', String(MiB), '--fragment-size', '65536']);

  const clients = await Promise.all(Array.from({ length: CLIENT_COUNT }, () => openRecordedWebSocket(server.port)));
  for (const { ws } of clients) {
    for (let i = 0; i < REQUESTS_PER_CLIENT; i++) {
      ws.send('go');
    }
  }

  const results = await Promise.all(clients.map(({ recorder }) => recorder.waitForMessages(REQUESTS_PER_CLIENT, 60_000)));
  for (const [index, messages] of results.entries()) {
    for (const message of messages) {
      assert.equal(message.isBinary, true, `client ${index}`);
      assert.equal(message.data.length, MiB, `payload size for client ${index}`);
    }
  }
  for (const [index, { recorder }] of clients.entries()) {
    assert.equal(recorder.messages.length, REQUESTS_PER_CLIENT, `message count for client ${index}`);
  }

  const busy = await getHealth(server.port);
  assert.equal(busy.connections, CLIENT_COUNT, 'every client is counted while connected');

  for (const { ws } of clients) {
    ws.close(1000);
  }
  await Promise.all(clients.map(({ recorder }) => recorder.waitForClose()));
  await waitForIdleServer(server.port);

  await server.stopAndCheck();
});

test('healthz counts a running transfer', async (t) => {
  const server = await startServer(t, ['--workers', '2', '--payload-size', String(256 * MiB), '--fragment-size', '65536']);
  const { ws, recorder } = await openRecordedWebSocket(server.port);

  // A paused client keeps the 256 MiB transfer running.
  ws.pause();
  ws.send('go');
  const health = await waitFor(async () => {
    const value = await getHealth(server.port);
    return value.transfers === 1 ? value : false;
  }, { timeoutMs: 5000, message: 'transfers to be 1 while the paused client receives' });
  assert.equal(health.connections, 1);

  ws.terminate();
  await recorder.waitForClose();
  await waitForIdleServer(server.port);
  await server.stopAndCheck();
});

test('vanished clients do not disturb others', async (t) => {
  const payloadSize = 16 * MiB;
  const server = await startServer(t, ['--workers', '2', '--payload-size', String(payloadSize), '--fragment-size', '65536']);

  const steady = await Promise.all(Array.from({ length: 4 }, () => openRecordedWebSocket(server.port)));
  for (const { ws } of steady) {
    ws.send('first');
    ws.send('second');
  }

  // Each vanishing client destroys its socket after part of a payload has arrived.
  const vanishing = [];
  for (let i = 0; i < 6; i++) {
    const client = await RawWebSocket.connect(server.port);
    const cutoff = (i + 1) * 256 * 1024;
    client.socket.on('data', () => {
      if (client.bytesReceived >= cutoff) {
        client.socket.destroy();
      }
    });
    client.send(OPCODE.text, 'go');
    client.send(OPCODE.text, 'go');
    vanishing.push(client);
  }

  await waitFor(() => vanishing.every((client) => client.closed), { timeoutMs: 10_000, message: 'vanishing clients to close' });
  for (const [index, client] of vanishing.entries()) {
    assert.ok(client.bytesReceived < payloadSize, `vanishing client ${index} received the whole payload before vanishing`);
  }

  const results = await Promise.all(steady.map(({ recorder }) => recorder.waitForMessages(2, 60_000)));
  for (const [index, messages] of results.entries()) {
    assert.equal(messages[0].data.length, payloadSize, `first payload of steady client ${index}`);
    assert.equal(messages[1].data.length, payloadSize, `second payload of steady client ${index}`);
  }

  for (const { ws } of steady) {
    ws.close(1000);
  }
  await waitForIdleServer(server.port);

  await server.stopAndCheck();
});

test('reset clients are removed from counts', async (t) => {
  const server = await startServer(t, ['--workers', '2', '--payload-size', String(64 * MiB), '--fragment-size', '65536']);

  for (let round = 0; round < 3; round++) {
    const clients = [];
    for (let i = 0; i < 5; i++) {
      const client = await RawWebSocket.connect(server.port);
      client.socket.pause();
      client.send(OPCODE.text, 'go');
      clients.push(client);
    }
    await waitFor(async () => (await getHealth(server.port)).transfers === 5,
      { timeoutMs: 5000, message: `5 running transfers in round ${round}` });

    // resetAndDestroy sends a TCP RST, so the server gets an error on its next write.
    for (const client of clients) {
      client.socket.resetAndDestroy();
    }
    await waitForIdleServer(server.port);
  }

  await server.stopAndCheck();
});
