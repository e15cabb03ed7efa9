// Live updates over the node's WebSocket, GET /api/v1/ws (API.md "Live updates"):
//   client → server  {"op":"subscribe","topic":"stock","product_ids":[...]}  (stock and price of those products)
//                    {"op":"subscribe","topic":"orders"}                      (own orders; needs a token)
//                    {"op":"unsubscribe",...}, {"op":"ping"}
//   server → client  {"type":"stock"|"price"|"order"|"pong"|"error", ...}
// The current value of each item comes first, then its changes in version order; older or repeated versions
// are dropped here as well, so a reconnect never shows an older value.
//
// One socket per page, opened when the first subscription is made (with ?access_token= when signed in) and
// re-subscribed after every reconnect. When it cannot be opened — the node has no WebSocket endpoint, a proxy
// refuses the upgrade — the state becomes 'unavailable' and the views poll the REST API instead (poll()); the
// socket keeps being retried with backoff and takes over again once it opens.

import { currentSession, events } from './api.js';

const PING_MS = 25_000;
const MAX_BACKOFF_MS = 60_000;
export const POLL_MS = 5_000;

class Live extends EventTarget {
  constructor() {
    super();
    this.state = 'idle'; // idle, connecting, live, unavailable
    this.ws = null;
    this.subs = new Map(); // key → { message, refs }
    this.versions = new Map(); // "stock:<id>" → last version shown
    this.failures = 0;
    this.retryTimer = null;
    this.pingTimer = null;
    this.token = null;
    events.addEventListener('session', () => {
      const token = currentSession()?.access_token ?? null;
      if (token !== this.token && this.subs.size > 0) this.reconnect();
    });
  }

  setState(state, detail = '') {
    if (this.state === state && !detail) return;
    this.state = state;
    this.dispatchEvent(new CustomEvent('state', { detail: { state, detail } }));
  }

  url() {
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    this.token = currentSession()?.access_token ?? null;
    const q = this.token ? `?access_token=${encodeURIComponent(this.token)}` : '';
    return `${proto}//${location.host}/api/v1/ws${q}`;
  }

  connect() {
    if (this.ws || this.subs.size === 0) return;
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    if (this.state !== 'unavailable') this.setState('connecting');
    let ws;
    try {
      ws = new WebSocket(this.url());
    } catch {
      this.failures += 1;
      this.failed();
      return;
    }
    this.ws = ws;
    let opened = false;
    ws.addEventListener('open', () => {
      opened = true;
      this.failures = 0;
      this.setState('live');
      for (const sub of this.subs.values()) this.send(sub.message);
      this.pingTimer = setInterval(() => this.send({ op: 'ping' }), PING_MS);
    });
    ws.addEventListener('message', (e) => this.receive(e.data));
    ws.addEventListener('close', () => {
      clearInterval(this.pingTimer);
      if (this.ws === ws) this.ws = null;
      else return; // replaced on purpose (reconnect)
      if (!opened) this.failures += 1;
      this.failed();
    });
  }

  failed() {
    this.ws = null;
    this.setState('unavailable');
    if (this.subs.size === 0) return;
    const wait = Math.min(MAX_BACKOFF_MS, 1000 * 2 ** Math.min(this.failures, 6));
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.connect(), wait);
  }

  reconnect() {
    const old = this.ws;
    this.ws = null;
    if (old) old.close(1000, 'reconnecting');
    this.failures = 0;
    this.connect();
  }

  send(message) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
  }

  receive(data) {
    let m;
    try {
      m = JSON.parse(data);
    } catch {
      return;
    }
    if (!m || typeof m.type !== 'string') return;
    if (m.type === 'stock' || m.type === 'price' || m.type === 'order') {
      const id = m.type === 'order' ? m.order_id : m.product_id;
      const key = `${m.type}:${id}`;
      const last = this.versions.get(key);
      if (typeof m.version === 'number') {
        if (last !== undefined && m.version <= last) return;
        this.versions.set(key, m.version);
      }
      this.dispatchEvent(new CustomEvent(m.type, { detail: m }));
    } else if (m.type === 'error') {
      this.dispatchEvent(new CustomEvent('server-error', { detail: m }));
    }
  }

  // Counted subscriptions: two views of one product share one server subscription.
  // A new subscription forgets the versions of its items, so their current value (sent first) is shown again.
  subscribe(key, message, forget) {
    const sub = this.subs.get(key);
    if (sub) {
      sub.refs += 1;
    } else {
      for (const k of [...this.versions.keys()]) if (forget(k)) this.versions.delete(k);
      this.subs.set(key, { message, refs: 1 });
      this.send(message);
    }
    this.connect();
    return () => {
      const s = this.subs.get(key);
      if (!s) return;
      s.refs -= 1;
      if (s.refs === 0) {
        this.subs.delete(key);
        this.send({ ...message, op: 'unsubscribe' });
      }
    };
  }

  subscribeStock(productIds) {
    const ids = [...new Set(productIds)].sort();
    if (ids.length === 0) return () => {};
    const mine = new Set(ids);
    return this.subscribe(`stock:${ids.join(',')}`, { op: 'subscribe', topic: 'stock', product_ids: ids }, (k) =>
      mine.has(k.slice(k.indexOf(':') + 1)) && !k.startsWith('order:'));
  }

  subscribeOrders() {
    return this.subscribe('orders', { op: 'subscribe', topic: 'orders' }, (k) => k.startsWith('order:'));
  }

  // Runs `fn` every POLL_MS while the socket is not live (and once as soon as it stops being live).
  poll(fn) {
    let stopped = false;
    const tick = () => {
      if (!stopped && this.state !== 'live' && this.state !== 'connecting') fn();
    };
    const timer = setInterval(tick, POLL_MS);
    const onState = () => tick();
    this.addEventListener('state', onState);
    return () => {
      stopped = true;
      clearInterval(timer);
      this.removeEventListener('state', onState);
    };
  }

  describe() {
    switch (this.state) {
      case 'live':
        return 'live';
      case 'connecting':
        return 'connecting…';
      case 'unavailable':
        return `live updates unavailable — refreshing every ${POLL_MS / 1000} s`;
      default:
        return 'idle';
    }
  }
}

export const live = new Live();
