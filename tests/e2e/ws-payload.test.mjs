// Payloads on /ws: the server replies to each text message with one binary
// message of --payload-size random bytes, sent as fragments of --fragment-size.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import zlib from 'node:zlib';

import {
  countDistinctBytes,
  MiB,
  OPCODE,
  openRecordedWebSocket,
  RawWebSocket,
  sleep,
  startServer,
  waitForIdleServer,
} from './helpers.mjs';

const SMALL_PAYLOAD_ARGS = ['--payload-size', String(MiB), '--fragment-size', '65536'];

test('text message returns one payload-size binary message', async (t) => {
  const server = await startServer(t, ['--workers', '1', ...SMALL_PAYLOAD_ARGS]);
  const { ws, recorder } = await openRecordedWebSocket(server.port);

  ws.send('go');
  const [message] = await recorder.waitForMessages(1);
  assert.equal(message.isBinary, true);
  assert.equal(message.data.length, MiB);

  // No second message may follow a single request.
  await sleep(300);
  assert.equal(recorder.messages.length, 1);

  ws.close(1000);
  await recorder.waitForClose();
  await server.stopAndCheck();
});

test('payload bytes are random', async (t) => {
  const server = await startServer(t, ['--workers', '1', ...SMALL_PAYLOAD_ARGS]);
  const { ws, recorder } = await openRecordedWebSocket(server.port);

  ws.send('go');
  const [message] = await recorder.waitForMessages(1);
  const payload = message.data;

  assert.equal(countDistinctBytes(payload), 256, 'every byte value occurs in 1 MiB of random data');
  const compressed = zlib.deflateSync(payload);
  const ratio = compressed.length / payload.length;
  assert.ok(ratio > 0.99, `deflate compresses the payload to ${ratio.toFixed(4)} of its size`);
  const firstHalf = payload.subarray(0, MiB / 2);
  const secondHalf = payload.subarray(MiB / 2);
  assert.notDeepEqual(firstHalf, secondHalf, 'payload is not one block repeated');

  ws.close(1000);
  await recorder.waitForClose();
  await server.stopAndCheck();
});

test('any text content is a request', async (t) => {
  const server = await startServer(t, ['--workers', '1', '--payload-size', '5000']);
  const { ws, recorder } = await openRecordedWebSocket(server.port);

  const requests = ['', 'x', 'start', '{"type":"download"}', 'héllo ✓ 😀', 'a'.repeat(1000)];
  for (const request of requests) {
    ws.send(request);
  }
  const messages = await recorder.waitForMessages(requests.length);
  for (const [index, message] of messages.entries()) {
    assert.equal(message.isBinary, true, `reply to request ${index}`);
    assert.equal(message.data.length, 5000, `reply to request ${index}`);
  }

  ws.close(1000);
  await recorder.waitForClose();
  await server.stopAndCheck();
});

test('queued requests each get full payloads', async (t) => {
  const server = await startServer(t, ['--workers', '1', ...SMALL_PAYLOAD_ARGS]);
  const { ws, recorder } = await openRecordedWebSocket(server.port);

  for (let i = 0; i < 5; i++) {
    ws.send(`request ${i}`);
  }
  const messages = await recorder.waitForMessages(5, 20_000);
  for (const [index, message] of messages.entries()) {
    assert.equal(message.isBinary, true, `reply ${index}`);
    assert.equal(message.data.length, MiB, `size of reply ${index}`);
  }
  await sleep(300);
  assert.equal(recorder.messages.length, 5, 'exactly one reply per request');

  // A request after the queue has drained gets a payload too.
  ws.send('again');
  const sixth = await recorder.waitForMessages(6);
  assert.equal(sixth[5].data.length, MiB);

  ws.close(1000);
  await recorder.waitForClose();
  await server.stopAndCheck();
});

test('payload is sent as fragment-size frames', async (t) => {
  const payloadSize = 100_000;
  const fragmentSize = 4096;
  const server = await startServer(t, ['--workers', '1', '--payload-size', String(payloadSize),
    '--fragment-size', String(fragmentSize)]);
  const client = await RawWebSocket.connect(server.port);

  client.send(OPCODE.text, 'go');
  const frames = await client.waitForMessageFrames();

  const expectedCount = Math.ceil(payloadSize / fragmentSize);
  assert.equal(frames.length, expectedCount, 'frame count');
  assert.equal(frames[0].opcode, OPCODE.binary, 'first frame is binary');
  for (const [index, frame] of frames.entries()) {
    assert.equal(frame.masked, false, `frame ${index} from the server is unmasked`);
    assert.equal(frame.rsv, 0, `frame ${index} has no RSV bits`);
    if (index > 0) {
      assert.equal(frame.opcode, OPCODE.continuation, `frame ${index} is a continuation`);
    }
    if (index < frames.length - 1) {
      assert.equal(frame.fin, false, `frame ${index} has FIN clear`);
      assert.equal(frame.payload.length, fragmentSize, `length of frame ${index}`);
    }
  }
  assert.equal(frames.at(-1).fin, true, 'last frame has FIN set');
  const total = frames.reduce((sum, frame) => sum + frame.payload.length, 0);
  assert.equal(total, payloadSize, 'sum of the frame lengths');

  client.send(OPCODE.close, Buffer.from([0x03, 0xe8]));
  await client.waitForFrame(OPCODE.close);
  client.destroy();
  await server.stopAndCheck();
});

test('defaults send 10 MiB in 1 MiB fragments', async (t) => {
  const server = await startServer(t);
  const client = await RawWebSocket.connect(server.port);

  client.send(OPCODE.text, 'go');
  const frames = await client.waitForMessageFrames(30_000);

  assert.equal(frames.length, 10, 'frame count');
  for (const [index, frame] of frames.entries()) {
    assert.equal(frame.payload.length, MiB, `length of frame ${index}`);
  }
  assert.equal(countDistinctBytes(frames[0].payload), 256);

  client.destroy();
  await waitForIdleServer(server.port);
  await server.stopAndCheck();
});

test('payload of one byte', async (t) => {
  const server = await startServer(t, ['--workers', '1', '--payload-size', '1']);
  const { ws, recorder } = await openRecordedWebSocket(server.port);

  ws.send('go');
  ws.send('go');
  const messages = await recorder.waitForMessages(2);
  assert.equal(messages[0].data.length, 1);
  assert.equal(messages[1].data.length, 1);

  ws.close(1000);
  await recorder.waitForClose();
  await server.stopAndCheck();
});

test('permessage-deflate offer still gets exact payloads', async (t) => {
  const server = await startServer(t, ['--workers', '1', ...SMALL_PAYLOAD_ARGS]);
  const { ws, recorder } = await openRecordedWebSocket(server.port, { perMessageDeflate: true });

  ws.send('go');
  const [message] = await recorder.waitForMessages(1);
  assert.equal(message.data.length, MiB);

  ws.close(1000);
  await recorder.waitForClose();
  await server.stopAndCheck();
});
