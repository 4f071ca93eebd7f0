// WebSocket protocol rules on /ws: ping and close echo, and the close codes
// for binary messages (1003), invalid UTF-8 (1007), too many queued requests
// (1008) and messages over --ws-max-message (1009).

import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  closePayload,
  KiB,
  MiB,
  OPCODE,
  openRecordedWebSocket,
  RawWebSocket,
  sleep,
  startServer,
  waitForIdleServer,
  withTimeout,
} from './helpers.mjs';

const SMALL_PAYLOAD_ARGS = ['--payload-size', String(64 * KiB), '--fragment-size', '4096'];

// Asserts that the server still serves a fresh /ws client after a test
// closed or broke another connection.
async function assertStillServes(port, payloadSize) {
  const { ws, recorder } = await openRecordedWebSocket(port);
  ws.send('go');
  const [message] = await recorder.waitForMessages(1);
  assert.equal(message.data.length, payloadSize, 'a fresh client still gets a full payload');
  ws.close(1000);
  await recorder.waitForClose();
}

test('client ping returns pong with same payload', async (t) => {
  const server = await startServer(t, ['--workers', '1', ...SMALL_PAYLOAD_ARGS]);
  const { ws } = await openRecordedWebSocket(server.port);

  for (const payload of [Buffer.from('abc123'), Buffer.alloc(0), Buffer.from([0, 255, 1, 254]), Buffer.alloc(125, 7)]) {
    const pong = new Promise((resolve) => ws.once('pong', resolve));
    ws.ping(payload);
    const data = await withTimeout(pong, 3000);
    assert.ok(data, `no pong within 3 s for a ping of ${payload.length} bytes`);
    assert.deepEqual(data, payload, `pong payload for a ping of ${payload.length} bytes`);
  }

  ws.close(1000);
  await server.stopAndCheck();
});

test('client ping during a transfer gets a pong', async (t) => {
  const server = await startServer(t, ['--workers', '1', '--payload-size', String(64 * MiB),
    '--fragment-size', '65536']);
  const { ws, recorder } = await openRecordedWebSocket(server.port);

  ws.send('go');
  await sleep(50);
  const pong = new Promise((resolve) => ws.once('pong', () => resolve(recorder.messages.length)));
  ws.ping('mid-transfer');
  const messagesBeforePong = await withTimeout(pong, 10_000);
  assert.notEqual(messagesBeforePong, null, 'no pong within 10 s');
  const [message] = await recorder.waitForMessages(1, 30_000);
  assert.equal(message.data.length, 64 * MiB);

  ws.close(1000);
  await recorder.waitForClose();
  await server.stopAndCheck();
});

test('client close code is echoed', async (t) => {
  const server = await startServer(t, ['--workers', '1', ...SMALL_PAYLOAD_ARGS]);

  for (const code of [1000, 4000, 1001, 4999]) {
    const { ws, recorder } = await openRecordedWebSocket(server.port);
    ws.close(code, 'bye');
    const close = await recorder.waitForClose(5000);
    assert.equal(close.code, code, `server replied to close ${code} with ${close.code}`);
  }

  // Raw client: the close frame must come back with the same code, and the
  // server must then close the TCP connection.
  const client = await RawWebSocket.connect(server.port);
  client.send(OPCODE.close, closePayload(4000, 'done'));
  assert.equal(await client.waitForCloseCode(), 4000);
  await client.waitUntil(() => client.closed, 3000, 'the server to close TCP after the close handshake');

  await waitForIdleServer(server.port);
  await server.stopAndCheck();
});

test('client close during a transfer is echoed', async (t) => {
  const server = await startServer(t, ['--workers', '1', '--payload-size', String(32 * MiB),
    '--fragment-size', '65536']);
  const { ws, recorder } = await openRecordedWebSocket(server.port);

  ws.send('go');
  await sleep(20);
  ws.close(4000);
  const close = await recorder.waitForClose(10_000);
  assert.equal(close.code, 4000);

  await waitForIdleServer(server.port);
  await server.stopAndCheck();
});

test('binary message closes with 1003', async (t) => {
  const server = await startServer(t, ['--workers', '1', ...SMALL_PAYLOAD_ARGS]);

  const { ws, recorder } = await openRecordedWebSocket(server.port);
  ws.send(Buffer.from('go'));
  const close = await recorder.waitForClose(5000);
  assert.equal(close.code, 1003);
  assert.equal(recorder.messages.length, 0, 'no payload for a binary message');

  const empty = await openRecordedWebSocket(server.port);
  empty.ws.send(Buffer.alloc(0));
  assert.equal((await empty.recorder.waitForClose(5000)).code, 1003, 'empty binary message');

  await assertStillServes(server.port, 64 * KiB);
  await server.stopAndCheck();
});

test('invalid UTF-8 text closes with 1007', async (t) => {
  const server = await startServer(t, ['--workers', '1', ...SMALL_PAYLOAD_ARGS]);

  const invalidTexts = {
    'bytes ff fe': Buffer.from([0x67, 0x6f, 0xff, 0xfe]),
    'overlong slash': Buffer.from([0xc0, 0xaf]),
    'truncated sequence': Buffer.from([0x61, 0xe2, 0x82]),
    'UTF-16 surrogate': Buffer.from([0xed, 0xa0, 0x80]),
    'code point over U+10FFFF': Buffer.from([0xf4, 0x90, 0x80, 0x80]),
  };
  for (const [name, bytes] of Object.entries(invalidTexts)) {
    const { ws, recorder } = await openRecordedWebSocket(server.port);
    ws.send(bytes, { binary: false });
    const close = await recorder.waitForClose(5000);
    assert.equal(close.code, 1007, `text with ${name}`);
    assert.equal(recorder.messages.length, 0, `no payload for text with ${name}`);
  }

  await assertStillServes(server.port, 64 * KiB);
  await server.stopAndCheck();
});

test('UTF-8 split across fragments is valid', async (t) => {
  const server = await startServer(t, ['--workers', '1', ...SMALL_PAYLOAD_ARGS]);
  const client = await RawWebSocket.connect(server.port);

  // "hé" with the two bytes of "é" (c3 a9) in different frames.
  client.send(OPCODE.text, Buffer.from([0x68, 0xc3]), { fin: false });
  client.send(OPCODE.continuation, Buffer.from([0xa9]), { fin: true });
  const frames = await client.waitForMessageFrames();
  const total = frames.reduce((sum, frame) => sum + frame.payload.length, 0);
  assert.equal(total, 64 * KiB);
  assert.equal(client.frames.some((frame) => frame.opcode === OPCODE.close), false, 'no close frame');

  client.destroy();
  await server.stopAndCheck();
});

test('invalid UTF-8 in a later fragment closes with 1007', async (t) => {
  const server = await startServer(t, ['--workers', '1', ...SMALL_PAYLOAD_ARGS]);
  const client = await RawWebSocket.connect(server.port);

  client.send(OPCODE.text, Buffer.from('valid start '), { fin: false });
  client.send(OPCODE.continuation, Buffer.from([0xff]), { fin: true });
  assert.equal(await client.waitForCloseCode(), 1007);

  client.destroy();
  await assertStillServes(server.port, 64 * KiB);
  await server.stopAndCheck();
});

test('text over --ws-max-message closes with 1009', async (t) => {
  const server = await startServer(t, ['--workers', '1', ...SMALL_PAYLOAD_ARGS, '--ws-max-message', '1024']);

  const atLimit = await openRecordedWebSocket(server.port);
  atLimit.ws.send('a'.repeat(1024));
  const [message] = await atLimit.recorder.waitForMessages(1);
  assert.equal(message.data.length, 64 * KiB, 'a text of exactly --ws-max-message bytes is a request');
  atLimit.ws.close(1000);
  await atLimit.recorder.waitForClose();

  const overLimit = await openRecordedWebSocket(server.port);
  overLimit.ws.send('a'.repeat(1025));
  const close = await overLimit.recorder.waitForClose(5000);
  assert.equal(close.code, 1009);
  assert.equal(overLimit.recorder.messages.length, 0, 'no payload for a text over the limit');

  await assertStillServes(server.port, 64 * KiB);
  await server.stopAndCheck();
});

test('oversized frame header closes with 1009', async (t) => {
  const server = await startServer(t, ['--workers', '1', ...SMALL_PAYLOAD_ARGS]);

  // A frame that declares 1 MiB with the default --ws-max-message of 64 KiB.
  // Only the first 1000 bytes are sent: the server must not wait for the rest.
  const declared = await RawWebSocket.connect(server.port);
  declared.send(OPCODE.text, Buffer.alloc(1000, 0x61), { declaredLength: MiB });
  assert.equal(await declared.waitForCloseCode(), 1009, 'frame declaring 1 MiB');
  declared.destroy();

  // A declared length near 2^63 must not overflow a size check.
  const huge = await RawWebSocket.connect(server.port);
  huge.send(OPCODE.text, Buffer.alloc(10, 0x61), { declaredLength: 2 ** 53 });
  assert.equal(await huge.waitForCloseCode(), 1009, 'frame declaring 2^53 bytes');
  huge.destroy();

  await assertStillServes(server.port, 64 * KiB);
  await server.stopAndCheck();
});

test('fragmented text over the limit closes with 1009', async (t) => {
  const server = await startServer(t, ['--workers', '1', ...SMALL_PAYLOAD_ARGS, '--ws-max-message', '65536']);

  // Each fragment is under the limit but the message is 120000 bytes.
  const client = await RawWebSocket.connect(server.port);
  client.send(OPCODE.text, Buffer.alloc(40_000, 0x61), { fin: false });
  client.send(OPCODE.continuation, Buffer.alloc(40_000, 0x62), { fin: false });
  client.send(OPCODE.continuation, Buffer.alloc(40_000, 0x63), { fin: true });
  assert.equal(await client.waitForCloseCode(), 1009);
  const dataFrames = client.frames.filter((frame) => frame.opcode < 8);
  assert.equal(dataFrames.length, 0, 'no payload for a message over the limit');
  client.destroy();

  await assertStillServes(server.port, 64 * KiB);
  await server.stopAndCheck();
});

test('unmasked client frame closes the connection', {
  todo: 'libwebsockets 4.1 accepts unmasked client frames and has no API to see the mask bit',
}, async (t) => {
  const server = await startServer(t, ['--workers', '1', ...SMALL_PAYLOAD_ARGS]);

  // RFC 6455 section 5.1: a server must close the connection on an unmasked client frame.
  const client = await RawWebSocket.connect(server.port);
  client.send(OPCODE.text, Buffer.from('go'), { mask: false });
  await client.waitUntil(() => client.closed || client.frames.some((frame) => frame.opcode === OPCODE.close),
    3000, 'the server to close after an unmasked text frame');
  const close = client.frames.find((frame) => frame.opcode === OPCODE.close);
  if (close && close.payload.length >= 2) {
    assert.equal(close.payload.readUInt16BE(0), 1002, 'close code after an unmasked text frame');
  }
  const payloadFrames = client.frames.filter((frame) => frame.opcode < 8);
  assert.equal(payloadFrames.length, 0, 'no payload for an unmasked request');
  client.destroy();

  await assertStillServes(server.port, 64 * KiB);
  await server.stopAndCheck();
});

test('invalid frames close with 1002', async (t) => {
  const server = await startServer(t, ['--workers', '1', ...SMALL_PAYLOAD_ARGS]);

  const cases = {
    'reserved opcode 3': (client) => client.send(3, Buffer.from('go')),
    'continuation without a start': (client) => client.send(OPCODE.continuation, Buffer.from('go')),
    'fragmented ping': (client) => client.send(OPCODE.ping, Buffer.from('p'), { fin: false }),
    'new text inside a fragmented text': (client) => {
      client.send(OPCODE.text, Buffer.from('a'), { fin: false });
      client.send(OPCODE.text, Buffer.from('b'));
    },
  };
  for (const [name, sendBadFrame] of Object.entries(cases)) {
    const client = await RawWebSocket.connect(server.port);
    sendBadFrame(client);
    assert.equal(await client.waitForCloseCode(3000), 1002, `close code after a ${name}`);
    const payloadFrames = client.frames.filter((frame) => frame.opcode < 8);
    assert.equal(payloadFrames.length, 0, `no payload after a ${name}`);
    client.destroy();
  }

  await assertStillServes(server.port, 64 * KiB);
  await server.stopAndCheck();
});

test('requests up to --max-queued-requests are served', async (t) => {
  const server = await startServer(t, ['--workers', '1', ...SMALL_PAYLOAD_ARGS, '--max-queued-requests', '4']);
  const { ws, recorder } = await openRecordedWebSocket(server.port);

  for (let i = 0; i < 4; i++) {
    ws.send(`request ${i}`);
  }
  const messages = await recorder.waitForMessages(4);
  for (const message of messages) {
    assert.equal(message.data.length, 64 * KiB);
  }
  await sleep(200);
  assert.equal(recorder.closeInfo, null, 'connection stays open');

  ws.close(1000);
  await recorder.waitForClose();
  await server.stopAndCheck();
});

test('too many queued requests close with 1008', async (t) => {
  const server = await startServer(t, ['--workers', '1', '--payload-size', String(64 * MiB),
    '--fragment-size', '65536', '--max-queued-requests', '2']);
  const { ws, recorder } = await openRecordedWebSocket(server.port);

  // The paused client cannot take the 64 MiB payload, so requests pile up.
  ws.pause();
  for (let i = 0; i < 10; i++) {
    ws.send(`request ${i}`);
  }
  await sleep(300);
  ws.resume();
  const close = await recorder.waitForClose(20_000);
  assert.equal(close.code, 1008);
  assert.ok(recorder.messages.length <= 3, `${recorder.messages.length} payloads arrived before the close`);

  await waitForIdleServer(server.port);
  await server.stopAndCheck();
});
