// The shopper's cart. A guest gets a guest cart (its cart_token comes back once and goes with every request
// as X-Cart-Token); at sign-in the guest cart is claimed (POST /carts/{id}/claim), which merges it into the
// user's open cart, and from then on the bearer token opens it. Which cart is "ours" is remembered in local
// storage: one guest cart, and one cart per user of this browser.

import { ApiError, api, currentUser, events, store, uuid } from './api.js';

const GUEST_KEY = 'mercato.cart.guest';
const userKey = (id) => `mercato.cart.user.${id}`;

let cart = null; // the last cart the API answered, or null

function ref() {
  const user = currentUser();
  return user ? store.get(userKey(user.id)) : store.get(GUEST_KEY);
}

function setRef(value) {
  const user = currentUser();
  store.set(user ? userKey(user.id) : GUEST_KEY, value);
}

function opts(r) {
  // A guest cart is opened by its token; a user's cart by the bearer token.
  return r?.token ? { cartToken: r.token, auth: false } : {};
}

function publish(next) {
  cart = next;
  events.dispatchEvent(new CustomEvent('cart', { detail: cart }));
  return cart;
}

export function current() {
  return cart;
}

export function itemCount(c = cart) {
  return c?.items?.reduce((n, line) => n + line.quantity, 0) ?? 0;
}

function forget() {
  setRef(null);
  return publish(null);
}

// The cart as the API has it now; null when there is none (yet).
export async function load() {
  const r = ref();
  if (!r) return publish(null);
  try {
    const c = await api.get(`/carts/${r.id}`, opts(r));
    if (c.status !== 'open') return forget(); // checked out, or merged into another cart
    return publish(c);
  } catch (e) {
    if (e instanceof ApiError && (e.status === 404 || e.status === 403)) return forget();
    throw e;
  }
}

async function ensure() {
  const r = ref();
  if (r) return r;
  const c = await api.post('/carts', undefined, { idempotencyKey: uuid() });
  const next = currentUser() ? { id: c.id } : { id: c.id, token: c.cart_token };
  setRef(next);
  publish(c);
  return next;
}

// Runs a change of the cart; when the remembered cart is gone or closed, starts a new one and tries once more.
async function change(run) {
  let r = await ensure();
  try {
    return publish(await run(r));
  } catch (e) {
    const closed = e instanceof ApiError && (e.status === 404 || (e.status === 409 && e.code !== 'insufficient_stock'));
    if (!closed) throw e;
    const still = await load().catch(() => null);
    if (still) throw e; // the cart is fine: the refusal was about this change
    r = await ensure();
    return publish(await run(r));
  }
}

export function add(productId, quantity) {
  return change((r) =>
    api.post(`/carts/${r.id}/items`, { product_id: productId, quantity }, { ...opts(r), idempotencyKey: uuid() }));
}

export function setQuantity(productId, quantity) {
  return change((r) => api.patch(`/carts/${r.id}/items/${productId}`, { quantity }, opts(r)));
}

export function remove(productId) {
  return change((r) => api.del(`/carts/${r.id}/items/${productId}`, opts(r)));
}

// After sign-in: the guest cart (if any) merges into the user's open cart. Answers the lines the user's cart
// could not take in full (CartAdjustment), or [].
export async function claimGuestCart() {
  const guest = store.get(GUEST_KEY);
  if (!guest || !currentUser()) return [];
  store.set(GUEST_KEY, null);
  const mine = store.get(userKey(currentUser().id));
  try {
    const c = await api.post(`/carts/${guest.id}/claim`, undefined, { cartToken: guest.token, idempotencyKey: uuid() });
    setRef({ id: c.id });
    publish(c);
    return c.adjustments || [];
  } catch (e) {
    // Gone, merged already, or not ours: keep the user's own cart.
    if (!mine) setRef(null);
    if (e instanceof ApiError && e.status >= 400 && e.status < 500) return [];
    throw e;
  }
}

// Places the order: Idempotency-Key (required; the same key for a retry of the same attempt) and If-Match with
// the cart's version (412 when the cart changed meanwhile).
export async function checkout(body, idempotencyKey) {
  const r = ref();
  if (!r || !cart) throw new ApiError(409, { detail: 'The cart is empty.' });
  const order = await api.post(`/carts/${r.id}/checkout`, body, { idempotencyKey, ifMatch: cart.version });
  forget();
  return order;
}

export function signedOut() {
  return publish(null);
}
