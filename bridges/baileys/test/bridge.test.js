import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer } from 'node:http';

import { forwardEvents, serialize, sign } from '../index.js';

const SECRET = 'test-secret-não-use-em-produção';

// A local receiver: records each request, verifies its signature, answers from `statuses`.
async function receiver(statuses = []) {
  const received = [];
  const server = createServer((req, res) => {
    const chunks = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      const expected = Buffer.from(
        'sha256=' + createHmac('sha256', SECRET).update(raw).digest('hex'),
      );
      const given = Buffer.from(req.headers['x-wacanon-signature'] ?? '');
      received.push({
        raw,
        headers: req.headers,
        signatureValid: given.length === expected.length && timingSafeEqual(given, expected),
      });
      res.statusCode = statuses[received.length - 1] ?? 200;
      res.end('ok');
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${server.address().port}/webhooks/baileys`;
  return { url, received, close: () => new Promise((resolve) => server.close(resolve)) };
}

function fakeSocket() {
  return { ev: new EventEmitter() };
}

test('forwards an event as signed {event, session, data, sent_at} JSON', async () => {
  const server = await receiver();
  const sock = fakeSocket();
  const bridge = forwardEvents(sock, { url: server.url, secret: SECRET, session: 'loja-centro' });
  const data = {
    type: 'notify',
    messages: [{ key: { remoteJid: '5511987654321@s.whatsapp.net', fromMe: false, id: '3EB0C4A1' },
      messageTimestamp: 1767225600, pushName: 'Ana', message: { conversation: 'Oi! 👟' } }],
  };
  const before = Date.now();
  sock.ev.emit('messages.upsert', data);
  await bridge.flush();
  bridge.stop();
  await server.close();

  assert.equal(server.received.length, 1);
  const [request] = server.received;
  assert.ok(request.signatureValid);
  assert.equal(request.headers['content-type'], 'application/json');
  const body = JSON.parse(request.raw.toString('utf8'));
  assert.deepEqual(Object.keys(body).sort(), ['data', 'event', 'sent_at', 'session']);
  assert.equal(body.event, 'messages.upsert');
  assert.equal(body.session, 'loja-centro');
  assert.deepEqual(body.data, data);
  assert.ok(body.sent_at >= before && body.sent_at <= Date.now());
});

test('Long objects, Buffers, Dates and BigInts serialize as JSON', () => {
  const long = { low: 1996641467, high: 411, unsigned: false };
  const body = serialize('messages.reaction', 's1', {
    senderTimestampMs: long,
    mediaKey: Buffer.from([1, 2, 255]),
    date: new Date(Date.UTC(2026, 0, 1)),
    big: 1767228200123n,
  }, 1767228200999);
  const parsed = JSON.parse(body);
  assert.deepEqual(parsed.data.senderTimestampMs, long);
  assert.deepEqual(parsed.data.mediaKey, { type: 'Buffer', data: [1, 2, 255] });
  assert.equal(parsed.data.date, '2026-01-01T00:00:00.000Z');
  assert.equal(parsed.data.big, '1767228200123');
  assert.equal(parsed.sent_at, 1767228200999);
  assert.equal(sign(body, 'k'), 'sha256=' + createHmac('sha256', 'k').update(body).digest('hex'));
});

test('a 500 is retried with the same bytes; a 400 is not', async () => {
  const server = await receiver([500, 200, 400]);
  const sock = fakeSocket();
  const errors = [];
  const bridge = forwardEvents(sock, {
    url: server.url, secret: SECRET, session: 's1', backoffMs: 5,
    onError: (error) => errors.push(error.message),
  });
  sock.ev.emit('call', [{ id: 'CALL1', from: '5511987654321@s.whatsapp.net', status: 'offer' }]);
  sock.ev.emit('connection.update', { connection: 'open' });
  await bridge.flush();
  bridge.stop();
  await server.close();

  assert.equal(server.received.length, 3);
  assert.deepEqual(server.received[0].raw, server.received[1].raw);
  assert.ok(server.received.every((r) => r.signatureValid));
  assert.equal(JSON.parse(server.received[2].raw).event, 'connection.update');
  assert.equal(errors.length, 1);
  assert.match(errors[0], /HTTP 400/);
});

test('network errors are retried a bounded number of times, never thrown', async () => {
  const sock = fakeSocket();
  const errors = [];
  let calls = 0;
  const failingFetch = async () => {
    calls += 1;
    throw new TypeError('fetch failed');
  };
  const bridge = forwardEvents(sock, {
    url: 'http://127.0.0.1:9/unreachable', secret: SECRET, session: 's1',
    fetch: failingFetch, retries: 2, backoffMs: 1, onError: (error) => errors.push(error),
  });
  assert.doesNotThrow(() => sock.ev.emit('messages.update', [{ key: { id: 'X' }, update: { status: 3 } }]));
  await bridge.flush();
  bridge.stop();
  assert.equal(calls, 3);
  assert.equal(errors.length, 1);
  assert.match(errors[0].message, /fetch failed/);
});

test('unlisted events are not forwarded, unserializable data is reported, stop() unsubscribes', async () => {
  const server = await receiver();
  const sock = fakeSocket();
  const errors = [];
  const bridge = forwardEvents(sock, {
    url: server.url, secret: SECRET, session: 's1', onError: (error) => errors.push(error.message),
  });
  sock.ev.emit('presence.update', { id: 'x@s.whatsapp.net', presences: {} });
  const circular = { id: 'c' };
  circular.self = circular;
  assert.doesNotThrow(() => sock.ev.emit('contacts.update', [circular]));
  bridge.stop();
  sock.ev.emit('messages.upsert', { type: 'notify', messages: [] });
  await bridge.flush();
  await server.close();

  assert.equal(server.received.length, 0);
  assert.equal(errors.length, 1);
  assert.match(errors[0], /cannot serialize/);
  assert.equal(sock.ev.listenerCount('messages.upsert'), 0);
});

test('missing url, secret or session is refused up front', () => {
  assert.throws(() => forwardEvents(fakeSocket(), { url: 'http://x', secret: SECRET }), TypeError);
});
