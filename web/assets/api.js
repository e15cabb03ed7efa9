// The storefront's way to the API (/api/v1, see openapi.yaml): JSON in and out, problem+json errors as
// ApiError, the bearer token of the signed-in user (refreshed once when it has expired), the guest cart's
// X-Cart-Token, Idempotency-Key and If-Match where the contract asks for them.

const BASE = '/api/v1';
const SESSION_KEY = 'mercato.session';

export const events = new EventTarget();

export class ApiError extends Error {
  constructor(status, problem, retryAfter) {
    const p = problem && typeof problem === 'object' ? problem : {};
    super(p.detail || p.title || `request failed (${status})`);
    this.status = status;
    this.code = p.code || (status === 0 ? 'network_error' : 'error');
    this.title = p.title || '';
    this.detail = p.detail || p.title || '';
    this.errors = Array.isArray(p.errors) ? p.errors : [];
    this.retrySafe = p.retry_safe === true;
    this.retryAfter = retryAfter;
  }
}

// Local storage that never throws (private windows, full quota).
export const store = {
  get(key) {
    try {
      const raw = localStorage.getItem(key);
      return raw == null ? null : JSON.parse(raw);
    } catch {
      return null;
    }
  },
  set(key, value) {
    try {
      if (value == null) localStorage.removeItem(key);
      else localStorage.setItem(key, JSON.stringify(value));
    } catch {
      /* storage unavailable: the state lives as long as the page */
    }
  },
};

// A random UUID also outside secure contexts (crypto.randomUUID needs https or localhost).
export function uuid() {
  if (globalThis.crypto?.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

// ---- session -----------------------------------------------------------------------------------

let session = store.get(SESSION_KEY);

export function currentSession() {
  return session;
}

export function currentUser() {
  return session?.user ?? null;
}

function setSession(next) {
  session = next;
  store.set(SESSION_KEY, next);
  events.dispatchEvent(new CustomEvent('session', { detail: next }));
}

// Another tab signed in or out.
window.addEventListener('storage', (e) => {
  if (e.key === SESSION_KEY) {
    session = store.get(SESSION_KEY);
    events.dispatchEvent(new CustomEvent('session', { detail: session }));
  }
});

function fromTokens(t) {
  return { access_token: t.access_token, refresh_token: t.refresh_token, user: t.user };
}

let refreshing = null;
// One refresh at a time: refresh tokens are single use (a second use would revoke the family).
async function refreshSession() {
  if (!session?.refresh_token) return false;
  if (!refreshing) {
    const token = session.refresh_token;
    refreshing = (async () => {
      try {
        const t = await request('POST', '/auth/refresh', { body: { refresh_token: token }, auth: false, retry: false });
        setSession(fromTokens(t));
        return true;
      } catch (e) {
        if (e.status === 401) {
          setSession(null);
          events.dispatchEvent(new CustomEvent('expired'));
        }
        return false;
      } finally {
        refreshing = null;
      }
    })();
  }
  return refreshing;
}

// ---- requests ----------------------------------------------------------------------------------

export async function request(method, path, opts = {}) {
  const { body, auth = true, cartToken, idempotencyKey, ifMatch, retry = true, query } = opts;
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const usedToken = auth && session?.access_token;
  if (usedToken) headers.Authorization = `Bearer ${session.access_token}`;
  if (cartToken) headers['X-Cart-Token'] = cartToken;
  if (idempotencyKey) headers['Idempotency-Key'] = idempotencyKey;
  if (ifMatch !== undefined && ifMatch !== null) headers['If-Match'] = `"${ifMatch}"`;
  let url = BASE + path;
  if (query) {
    const qs = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) {
      if (v !== undefined && v !== null && v !== '') qs.set(k, String(v));
    }
    const s = qs.toString();
    if (s) url += (url.includes('?') ? '&' : '?') + s;
  }

  let res;
  try {
    res = await fetch(url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
      credentials: 'omit',
    });
  } catch {
    throw new ApiError(0, { detail: 'The server cannot be reached. Is the node running?' });
  }

  if (res.status === 204 || res.status === 304) return null;
  const type = res.headers.get('Content-Type') || '';
  let payload = null;
  if (type.includes('json')) {
    try {
      payload = await res.json();
    } catch {
      payload = null;
    }
  }
  if (res.ok) return payload;

  if (res.status === 401 && usedToken && retry && payload?.code === 'invalid_token') {
    if (await refreshSession()) return request(method, path, { ...opts, retry: false });
  }
  const retryAfter = Number(res.headers.get('Retry-After')) || undefined;
  if (res.status === 429 && payload && !payload.detail) {
    payload.detail = `Too many requests; try again in ${retryAfter ?? 'a few'} seconds.`;
  }
  throw new ApiError(res.status, payload, retryAfter);
}

export const api = {
  get: (path, opts) => request('GET', path, opts),
  post: (path, body, opts = {}) => request('POST', path, { ...opts, body }),
  patch: (path, body, opts = {}) => request('PATCH', path, { ...opts, body }),
  del: (path, opts) => request('DELETE', path, opts),
};

// ---- accounts ----------------------------------------------------------------------------------

export async function login(email, password, totpCode) {
  const body = { email, password };
  if (totpCode) body.totp_code = totpCode;
  const t = await request('POST', '/auth/login', { body, auth: false });
  setSession(fromTokens(t));
  return t.user;
}

export async function register(name, email, password) {
  const t = await request('POST', '/auth/register', { body: { name, email, password }, auth: false, idempotencyKey: uuid() });
  setSession(fromTokens(t));
  return t.user;
}

export async function logout() {
  const token = session?.refresh_token;
  setSession(null);
  if (token) {
    try {
      await request('POST', '/auth/logout', { body: { refresh_token: token }, auth: false });
    } catch {
      /* the tokens are gone from this browser either way */
    }
  }
}

// ---- money and text ----------------------------------------------------------------------------

const formats = new Map();
export function money(m) {
  if (!m || typeof m.amount !== 'number') return '–';
  const currency = m.currency || 'USD';
  let f = formats.get(currency);
  if (!f) {
    try {
      f = new Intl.NumberFormat(undefined, { style: 'currency', currency });
    } catch {
      f = new Intl.NumberFormat(undefined, { style: 'currency', currency: 'USD' });
    }
    formats.set(currency, f);
  }
  const digits = f.resolvedOptions().maximumFractionDigits;
  return f.format(m.amount / 10 ** digits);
}

// A problem as one readable message; `names` maps product ids to names for per-line errors.
export function describeError(e, names = {}) {
  if (!(e instanceof ApiError)) return e?.message || String(e);
  let text = e.detail || e.message;
  if (e.errors.length) {
    const lines = e.errors.map((x) => {
      const id = (x.pointer || '').split('/').pop();
      // A product line by its name, a field by its path ("/shipping_address/city" → "shipping address city").
      const what = names[id] || (x.pointer || '').replace(/^\//, '').replace(/[/_]/g, ' ');
      return what ? `${what}: ${x.message}` : x.message;
    });
    text += ` (${lines.join('; ')})`;
  }
  return text;
}
