// Forwards a Baileys socket's events to wacanon as signed JSON webhooks.
//
// Each event is POSTed once serialized — {"event", "session", "data", "sent_at"} — with
// `X-Wacanon-Signature: sha256=<hex HMAC-SHA256 of the raw body>`. A retry resends the
// exact same bytes (same sent_at), so wacanon sees a redelivery, not a new event.
// Delivery is in event order, retried with exponential backoff on network errors,
// 429 and 5xx (bounded), and never throws into the socket: failures go to onError.

import { createHmac } from 'node:crypto';

/** The Baileys events wacanon normalizes; anything else would only be ignored there. */
export const DEFAULT_EVENTS = Object.freeze([
  'messages.upsert',
  'messages.update',
  'message-receipt.update',
  'messages.reaction',
  'messages.delete',
  'group-participants.update',
  'groups.update',
  'groups.upsert',
  'contacts.upsert',
  'contacts.update',
  'connection.update',
  'call',
]);

/** `sha256=<hex>` HMAC of the exact body bytes (string bodies are UTF-8). */
export function sign(body, secret) {
  return 'sha256=' + createHmac('sha256', secret).update(body).digest('hex');
}

// JSON.stringify keeps Baileys' values as they are (Long → {low, high, unsigned},
// Buffer → {"type": "Buffer", "data": [...]}, Date → ISO text); only BigInt, which it
// refuses, is written as a decimal string.
function replacer(_key, value) {
  return typeof value === 'bigint' ? value.toString() : value;
}

/** The POST body for one event. */
export function serialize(event, session, data, sentAt = Date.now()) {
  return JSON.stringify({ event, session, data, sent_at: sentAt }, replacer);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const retryable = (status) => status === 408 || status === 429 || status >= 500;

/**
 * Subscribe to `sock.ev` and forward every listed event to `url`.
 *
 * Returns `{ stop, flush }`: `stop()` unsubscribes; `flush()` resolves when every event
 * received so far has been delivered or given up on.
 */
export function forwardEvents(sock, options) {
  const {
    url,
    secret,
    session,
    events = DEFAULT_EVENTS,
    fetch = globalThis.fetch,
    onError = (error) => console.error('[wacanon-bridge]', error.message),
    retries = 5,
    backoffMs = 500,
    maxBackoffMs = 30_000,
    timeoutMs = 10_000,
  } = options ?? {};
  if (!url || !secret || !session) {
    throw new TypeError('forwardEvents needs url, secret and session');
  }

  const report = (error, event) => {
    try {
      onError(error, event);
    } catch {
      // a faulty onError must not take the socket down either
    }
  };

  async function post(body) {
    const response = await fetch(url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-Wacanon-Signature': sign(body, secret) },
      body,
      signal: AbortSignal.timeout(timeoutMs),
    });
    await response.arrayBuffer().catch(() => undefined); // free the connection
    return response.status;
  }

  async function deliver(event, body) {
    for (let attempt = 0; ; attempt += 1) {
      let failure;
      try {
        const status = await post(body);
        if (status < 300) return;
        failure = new Error(`${event}: HTTP ${status} from ${url}`);
        if (!retryable(status)) return report(failure, event);
      } catch (error) {
        failure = new Error(`${event}: ${error?.message ?? error}`, { cause: error });
      }
      if (attempt >= retries) return report(failure, event);
      const delay = Math.min(maxBackoffMs, backoffMs * 2 ** attempt);
      await sleep(delay / 2 + Math.random() * (delay / 2));
    }
  }

  let queue = Promise.resolve();
  const listeners = events.map((event) => {
    const listener = (data) => {
      let body;
      try {
        body = serialize(event, session, data);
      } catch (error) {
        return report(new Error(`${event}: cannot serialize: ${error.message}`), event);
      }
      queue = queue.then(() => deliver(event, body)).catch((error) => report(error, event));
    };
    sock.ev.on(event, listener);
    return [event, listener];
  });

  return {
    stop() {
      for (const [event, listener] of listeners) sock.ev.off(event, listener);
    },
    flush() {
      return queue;
    },
  };
}
