// mercato demo storefront: a single page over the public API (/api/v1) and its live updates (/api/v1/ws).
// Views by location hash: #/ catalog and search, #/product/<id>, #/cart (and checkout), #/orders, #/login.

import { ApiError, api, currentUser, describeError, events, login, logout, money, register, uuid } from './api.js';
import * as cart from './cart.js';
import { flash, h, hashFor, parseHash, replace } from './dom.js';
import { POLL_MS, live } from './live.js';

const main = document.querySelector('main');
const PAGE_SIZE = 12;

// ---- chrome: header, notices, live status ------------------------------------------------------

function notify(text, kind = 'info') {
  const box = document.querySelector('[data-testid="notices"]');
  const note = h('div', { class: `notice ${kind}`, testid: 'notice', dataset: { kind } }, h('span', {}, text),
    h('button', { type: 'button', class: 'close', 'aria-label': 'Dismiss', testid: 'notice-close', onclick: () => note.remove() }, '×'));
  box.append(note);
  setTimeout(() => note.remove(), kind === 'error' ? 10_000 : 6_000);
}

function updateHeader() {
  const user = currentUser();
  const who = document.querySelector('[data-testid="nav-user"]');
  who.hidden = !user;
  who.textContent = user ? user.name || user.email : '';
  document.querySelector('[data-testid="nav-login"]').hidden = !!user;
  document.querySelector('[data-testid="logout"]').hidden = !user;
  document.querySelector('[data-testid="cart-count"]').textContent = String(cart.itemCount());
}

function liveIndicator() {
  const el = h('p', { class: 'live', testid: 'live-indicator', role: 'status' });
  const show = () => {
    el.dataset.state = live.state;
    replace(el, h('span', { class: 'dot' }), live.state === 'live' ? 'Live' : live.describe());
  };
  show();
  onLeave(listen(live, 'state', show));
  return el;
}

function listen(target, type, fn) {
  target.addEventListener(type, fn);
  return () => target.removeEventListener(type, fn);
}

// ---- router ------------------------------------------------------------------------------------

let leaving = [];
let renderSeq = 0;

function onLeave(fn) {
  leaving.push(fn);
}

const routes = [
  [/^\/$/, catalogView],
  [/^\/product\/([0-9a-fA-F-]{36})$/, productView],
  [/^\/cart$/, cartView],
  [/^\/orders$/, ordersView],
  [/^\/login$/, loginView],
];

async function render() {
  for (const fn of leaving.splice(0)) fn();
  const seq = ++renderSeq;
  const { path, params } = parseHash();
  if (path !== '/') document.querySelector('[data-testid="search-input"]').value = '';
  document.querySelectorAll('.nav a').forEach((a) => {
    a.classList.toggle('active', a.getAttribute('href') === `#${path}`);
  });
  const view = h('div', { class: 'view' });
  replace(main, view);
  const current = () => seq === renderSeq;
  for (const [pattern, fn] of routes) {
    const m = path.match(pattern);
    if (m) {
      try {
        await fn(view, { params, id: m[1], current });
      } catch (e) {
        if (current()) replace(view, errorPanel(e));
      }
      if (current()) main.dataset.view = fn.name;
      return;
    }
  }
  replace(view, h('section', { class: 'panel', testid: 'not-found' }, h('h1', {}, 'Nothing here'),
    h('p', {}, h('a', { href: '#/', testid: 'back-to-catalog' }, 'Back to the catalog'))));
  main.dataset.view = 'not-found';
}

function errorPanel(e) {
  return h('section', { class: 'panel error', testid: 'view-error' }, h('h1', {}, 'Something went wrong'),
    h('p', {}, describeError(e)), h('p', {}, h('a', { href: '#/', testid: 'back-to-catalog' }, 'Back to the catalog')));
}

// ---- product helpers ---------------------------------------------------------------------------

const TONES = ['graphite', 'sand', 'black', 'navy', 'white', 'forest', 'red'];

function tone(p) {
  const c = String(p.attributes?.color || '').toLowerCase();
  if (TONES.includes(c)) return c;
  let n = 0;
  for (const ch of p.sku || p.id) n = (n * 31 + ch.charCodeAt(0)) >>> 0;
  return TONES[n % TONES.length];
}

function initials(name) {
  const words = String(name || '?').split(/\s+/).filter((w) => /^\p{L}/u.test(w));
  return (words.length ? words : ['?']).slice(0, 2).map((w) => w[0].toUpperCase()).join('');
}

function thumb(p, large = false) {
  return h('div', { class: `thumb tone-${tone(p)}${large ? ' large' : ''}`, 'aria-hidden': 'true' },
    h('span', {}, initials(p.name)));
}

const STOCK_LABEL = { in_stock: 'In stock', low_stock: 'Low stock', out_of_stock: 'Out of stock' };

function stockStatus(available, threshold) {
  if (available <= 0) return 'out_of_stock';
  return available <= (threshold ?? 0) ? 'low_stock' : 'in_stock';
}

function priceBlock(p, testid) {
  const discounted = p.base_price && p.current_price && p.current_price.amount < p.base_price.amount;
  return h('span', { class: 'price' }, h('span', { class: 'now', testid }, money(p.current_price)),
    discounted ? h('s', { class: 'was' }, money(p.base_price)) : null);
}

// ---- catalog -----------------------------------------------------------------------------------

let categoriesCache = null;
async function categories() {
  if (!categoriesCache) {
    const tree = await api.get('/categories');
    const flat = [];
    const walk = (nodes, depth) => {
      for (const c of nodes || []) {
        flat.push({ id: c.id, name: c.name, depth });
        walk(c.children, depth + 1);
      }
    };
    walk(Array.isArray(tree) ? tree : tree?.data, 0);
    categoriesCache = flat;
  }
  return categoriesCache;
}

async function catalogView(view, { params, current }) {
  const q = params.get('q') || '';
  const category = params.get('category') || '';
  const inStock = params.get('in_stock') === 'true';
  const sort = params.get('sort') || (q ? 'relevance' : '-created_at');
  document.querySelector('[data-testid="search-input"]').value = q;

  const go = (changes) => {
    const next = { q, category, sort, in_stock: inStock ? 'true' : '', ...changes };
    if (next.sort === (next.q ? 'relevance' : '-created_at')) next.sort = '';
    location.hash = hashFor('/', next);
  };

  const cats = await categories().catch(() => []);
  if (!current()) return;
  const categorySelect = h('select', { id: 'f-category', testid: 'filter-category', onchange: (e) => go({ category: e.target.value }) },
    h('option', { value: '' }, 'All categories'),
    cats.map((c) => h('option', { value: c.id, selected: c.id === category }, `${'\u2002'.repeat(c.depth * 2)}${c.name}`)));
  const sorts = [
    ['relevance', 'Best match'], ['-created_at', 'Newest'], ['price', 'Price: low to high'],
    ['-price', 'Price: high to low'], ['name', 'Name'],
  ].filter(([v]) => v !== 'relevance' || q);
  const sortSelect = h('select', { id: 'f-sort', testid: 'filter-sort', onchange: (e) => go({ sort: e.target.value }) },
    sorts.map(([v, label]) => h('option', { value: v, selected: v === sort }, label)));
  const stockBox = h('input', { id: 'f-stock', type: 'checkbox', testid: 'filter-in-stock', checked: inStock,
    onchange: (e) => go({ in_stock: e.target.checked ? 'true' : '' }) });

  const summary = h('p', { class: 'summary', testid: 'results-summary' }, 'Loading…');
  const grid = h('div', { class: 'grid', testid: 'product-grid', 'aria-busy': 'true' });
  const more = h('button', { type: 'button', class: 'secondary', testid: 'load-more', hidden: true }, 'Show more');
  replace(view,
    h('section', { class: 'hero' },
      h('h1', {}, q ? `Results for “${q}”` : 'The demo catalog'),
      h('p', {}, 'Every cart, order and stock item behind this page is an actor of the node. Open a product in two ',
        'windows and buy it in one: the other shows the stock drop live.')),
    h('div', { class: 'catalog' },
      h('aside', { class: 'filters', 'aria-label': 'Filters' },
        h('label', { for: 'f-category' }, 'Category'), categorySelect,
        h('label', { for: 'f-sort' }, 'Sort by'), sortSelect,
        h('label', { class: 'check', for: 'f-stock' }, stockBox, ' In stock only'),
        q || category || inStock ? h('a', { href: '#/', class: 'reset', testid: 'filter-reset' }, 'Clear search and filters') : null),
      h('div', { class: 'results' }, summary, grid, more)));

  let cursor = null;
  let shown = 0;
  const page = async () => {
    more.disabled = true;
    const res = await api.get('/products', {
      query: { q, category, sort, in_stock: inStock ? 'true' : '', limit: PAGE_SIZE, cursor },
    });
    if (!current()) return;
    grid.append(...res.data.map(productCard));
    shown += res.data.length;
    cursor = res.meta?.next_cursor ?? null;
    more.hidden = !res.meta?.has_more;
    more.disabled = false;
    grid.setAttribute('aria-busy', 'false');
    if (shown === 0) {
      replace(summary, h('span', { testid: 'catalog-empty' }, q ? `No products match “${q}”.` : 'No products here.'));
    } else {
      replace(summary, `${shown} product${shown === 1 ? '' : 's'}${res.meta?.has_more ? ' so far' : ''}`);
    }
  };
  more.addEventListener('click', () => page().catch((e) => notify(describeError(e), 'error')));
  await page();
}

function productCard(p) {
  const status = p.stock?.status || 'in_stock';
  const add = h('button', { type: 'button', class: 'small', testid: 'quick-add', disabled: status === 'out_of_stock' },
    status === 'out_of_stock' ? 'Sold out' : 'Add to cart');
  add.addEventListener('click', async () => {
    add.disabled = true;
    try {
      await cart.add(p.id, 1);
      notify(`Added ${p.name} to the cart.`, 'success');
    } catch (e) {
      notify(describeError(e), 'error');
    } finally {
      add.disabled = false;
    }
  });
  return h('article', { class: 'card', testid: 'product-card', dataset: { productId: p.id, sku: p.sku } },
    h('a', { href: `#/product/${p.id}`, tabindex: '-1', 'aria-hidden': 'true', testid: 'product-thumb' }, thumb(p)),
    h('div', { class: 'card-body' },
      h('a', { class: 'name', href: `#/product/${p.id}`, testid: 'product-link' }, p.name),
      h('div', { class: 'row' }, priceBlock(p, 'card-price'),
        h('span', { class: `stock-badge ${status}`, testid: 'card-stock' }, STOCK_LABEL[status] || status)),
      add));
}

// ---- product -----------------------------------------------------------------------------------

async function productView(view, { id, current }) {
  const p = await api.get(`/products/${id}`);
  if (!current()) return;

  const stockText = h('span', { class: 'stock-count', testid: 'product-stock' });
  const stockBadge = h('span', { class: 'stock-badge', testid: 'product-stock-status' });
  const priceNow = h('span', { class: 'now', testid: 'product-price' });
  const priceWas = h('s', { class: 'was' });
  const qty = h('input', { id: 'qty', type: 'number', min: '1', value: '1', inputmode: 'numeric', testid: 'product-qty' });
  const addButton = h('button', { type: 'submit', testid: 'add-to-cart' }, 'Add to cart');
  const addError = h('p', { class: 'form-error', testid: 'add-error', role: 'alert', hidden: true });
  let threshold = null;

  const showStock = (available, status, source) => {
    const changed = stockText.dataset.available !== undefined && Number(stockText.dataset.available) !== available;
    stockText.dataset.available = String(available);
    stockText.dataset.source = source;
    stockText.textContent = available > 0 ? `${available} available` : 'None available';
    stockBadge.className = `stock-badge ${status}`;
    stockBadge.dataset.status = status;
    stockBadge.textContent = STOCK_LABEL[status] || status;
    qty.max = String(Math.max(1, available));
    addButton.disabled = available <= 0;
    addButton.textContent = available > 0 ? 'Add to cart' : 'Sold out';
    if (changed) flash(stockText);
  };
  const showPrice = (current_price, source) => {
    const changed = priceNow.dataset.amount !== undefined && Number(priceNow.dataset.amount) !== current_price.amount;
    priceNow.dataset.amount = String(current_price.amount);
    priceNow.dataset.source = source;
    priceNow.textContent = money(current_price);
    const discounted = p.base_price && current_price.amount < p.base_price.amount;
    priceWas.textContent = discounted ? money(p.base_price) : '';
    priceWas.hidden = !discounted;
    if (changed) flash(priceNow);
  };
  showStock(p.stock?.available ?? 0, p.stock?.status || 'in_stock', 'initial');
  showPrice(p.current_price, 'initial');

  const form = h('form', { class: 'add-form', testid: 'add-form', novalidate: true },
    h('label', { for: 'qty' }, 'Quantity'), qty, addButton);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    addError.hidden = true;
    const n = Number.parseInt(qty.value, 10);
    if (!Number.isInteger(n) || n < 1) {
      addError.hidden = false;
      addError.textContent = 'Enter a quantity of at least 1.';
      return;
    }
    addButton.disabled = true;
    try {
      await cart.add(p.id, n);
      notify(`Added ${n} × ${p.name} to the cart.`, 'success');
      replace(addError, 'Added. ', h('a', { href: '#/cart', testid: 'go-to-cart' }, 'Go to the cart'));
      addError.classList.add('ok');
      addError.hidden = false;
    } catch (err) {
      addError.classList.remove('ok');
      addError.hidden = false;
      addError.textContent = describeError(err, { [p.id]: p.name });
    } finally {
      addButton.disabled = Number(stockText.dataset.available) <= 0;
    }
  });

  const attrs = Object.entries(p.attributes || {});
  const dims = p.dimensions;
  replace(view,
    h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, h('a', { href: '#/', testid: 'crumb-catalog' }, 'Catalog'), ' › ', p.name),
    h('article', { class: 'product', testid: 'product', dataset: { productId: p.id } },
      thumb(p, true),
      h('div', { class: 'info' },
        h('h1', { testid: 'product-name' }, p.name),
        h('p', { class: 'sku' }, `SKU ${p.sku}`),
        h('p', { class: 'price big' }, priceNow, ' ', priceWas),
        h('p', { class: 'stock' }, stockBadge, ' ', stockText),
        liveIndicator(),
        form, addError,
        p.description ? h('p', { class: 'description' }, p.description) : null,
        attrs.length || p.weight || dims
          ? h('dl', { class: 'facts' },
            attrs.map(([k, v]) => [h('dt', {}, k.replace(/_/g, ' ')), h('dd', {}, String(v))]),
            p.weight ? [h('dt', {}, 'weight'), h('dd', {}, `${p.weight} kg`)] : null,
            dims ? [h('dt', {}, 'size'), h('dd', {}, `${dims.length_cm} × ${dims.width_cm} × ${dims.height_cm} cm`)] : null)
          : null)));

  // Live: the socket's stock and price messages for this product; polling while the socket is unavailable.
  onLeave(live.subscribeStock([p.id]));
  onLeave(listen(live, 'stock', (e) => {
    if (e.detail.product_id === p.id) showStock(e.detail.available, e.detail.status, 'ws');
  }));
  onLeave(listen(live, 'price', (e) => {
    if (e.detail.product_id === p.id && e.detail.current_price) showPrice(e.detail.current_price, 'ws');
  }));
  let ticks = 0;
  onLeave(live.poll(async () => {
    try {
      const inv = await api.get(`/inventory/${p.id}`);
      threshold = inv.low_stock_threshold ?? threshold;
      if (current()) showStock(inv.available, stockStatus(inv.available, threshold), 'poll');
      if (ticks++ % 6 === 0) {
        const fresh = await api.get(`/products/${p.id}`);
        if (current()) showPrice(fresh.current_price, 'poll');
      }
    } catch {
      /* the next tick tries again */
    }
  }));
}

// ---- cart and checkout -------------------------------------------------------------------------

let checkoutAttempt = null; // { key, body } of an attempt whose outcome is unknown (retry with the same key)

async function cartView(view, { current }) {
  let c = await cart.load();
  if (!current()) return;
  const names = () => Object.fromEntries((c?.items || []).map((l) => [l.product_id, l.name]));

  const lines = h('div', { class: 'lines', testid: 'cart-lines' });
  const totals = h('dl', { class: 'totals', testid: 'cart-totals' });
  const checkoutBox = h('section', { class: 'panel checkout', testid: 'checkout' });

  const draw = () => {
    if (!c || c.items.length === 0) {
      replace(lines, h('p', { class: 'empty', testid: 'cart-empty' }, 'Your cart is empty. ',
        h('a', { href: '#/', testid: 'cart-browse' }, 'Browse the catalog')));
      totals.hidden = true;
      checkoutBox.hidden = true;
      return;
    }
    totals.hidden = false;
    checkoutBox.hidden = false;
    replace(lines, c.items.map(cartLine));
    const t = c.totals;
    replace(totals,
      h('dt', {}, 'Subtotal'), h('dd', { testid: 'cart-subtotal' }, money(t.subtotal)),
      h('dt', {}, 'Tax'), h('dd', { testid: 'cart-tax' }, money(t.tax)),
      h('dt', {}, 'Shipping'), h('dd', { testid: 'cart-shipping' }, t.shipping.amount === 0 ? 'Free' : money(t.shipping)),
      t.discount.amount ? [h('dt', {}, 'Discount'), h('dd', { testid: 'cart-discount' }, `−${money(t.discount)}`)] : null,
      h('dt', { class: 'total' }, 'Total'), h('dd', { class: 'total', testid: 'cart-total' }, money(t.total)));
  };

  const mutate = async (run, row) => {
    row?.classList.add('busy');
    try {
      c = await run();
    } catch (e) {
      notify(describeError(e, names()), 'error');
      c = await cart.load().catch(() => c);
    }
    if (current()) draw();
  };

  function cartLine(l) {
    const qty = h('input', { type: 'number', min: '0', value: String(l.quantity), testid: 'cart-qty',
      'aria-label': `Quantity of ${l.name}` });
    const row = h('div', { class: 'line', testid: 'cart-line', dataset: { productId: l.product_id } },
      h('div', { class: 'line-name' }, h('a', { href: `#/product/${l.product_id}`, testid: 'cart-line-link' }, l.name), h('small', {}, l.sku),
        l.price_changed
          ? h('small', { class: 'changed', testid: 'price-changed' },
            `Price changed from ${money(l.price_changed.old_unit_price)} to ${money(l.price_changed.new_unit_price)}`)
          : null),
      h('span', { class: 'unit' }, money(l.unit_price)),
      qty,
      h('span', { class: 'line-total', testid: 'cart-line-total' }, money(l.line_total)),
      h('button', { type: 'button', class: 'link danger', testid: 'cart-remove', 'aria-label': `Remove ${l.name}`,
        onclick: () => mutate(() => cart.remove(l.product_id), row) }, 'Remove'));
    qty.addEventListener('change', () => {
      const n = Number.parseInt(qty.value, 10);
      if (!Number.isInteger(n) || n < 0) {
        qty.value = String(l.quantity);
        return;
      }
      mutate(() => (n === 0 ? cart.remove(l.product_id) : cart.setQuantity(l.product_id, n)), row);
    });
    return row;
  }

  // Checkout: signed-in customers only; a guest signs in first and the cart comes along (claim).
  const user = currentUser();
  if (!user) {
    replace(checkoutBox, h('h2', {}, 'Check out'),
      h('p', {}, 'Sign in or create an account to check out — this cart comes with you.'),
      h('a', { class: 'button', href: hashFor('/login', { next: '/cart' }), testid: 'checkout-login' }, 'Sign in to check out'));
  } else {
    const field = (label, name, value, extra = {}) => h('label', { class: 'field' }, h('span', {}, label),
      h('input', { name, value, required: true, testid: `checkout-${name}`, ...extra }));
    const error = h('p', { class: 'form-error', role: 'alert', testid: 'checkout-error', hidden: true });
    const submit = h('button', { type: 'submit', testid: 'checkout-submit' }, 'Place order');
    const form = h('form', { class: 'checkout-form', testid: 'checkout-form' },
      h('fieldset', {}, h('legend', {}, 'Ship to'),
        field('Name', 'name', user.name || ''),
        field('Street', 'line1', '1 Main St', { maxlength: '200' }),
        field('City', 'city', 'Springfield', { maxlength: '100' }),
        field('Postal code', 'postal_code', '12345', { maxlength: '20' }),
        h('label', { class: 'field' }, h('span', {}, 'Country'),
          h('select', { name: 'country', testid: 'checkout-country' },
            [['US', 'United States'], ['CA', 'Canada'], ['GB', 'United Kingdom'], ['DE', 'Germany'], ['FR', 'France']]
              .map(([code, label]) => h('option', { value: code }, label))))),
      h('fieldset', {}, h('legend', {}, 'Pay with (sandbox card)'),
        h('label', { class: 'field' }, h('span', {}, 'Card'),
          h('select', { name: 'token', testid: 'checkout-card' },
            h('option', { value: 'tok_ok' }, 'tok_ok — approved'),
            h('option', { value: 'tok_decline' }, 'tok_decline — declined (402)'),
            h('option', { value: 'tok_slow' }, 'tok_slow — provider times out')))),
      error, submit);
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const f = new FormData(form);
      const address = { name: f.get('name'), line1: f.get('line1'), city: f.get('city'),
        postal_code: f.get('postal_code'), country: f.get('country') };
      const body = { shipping_address: address, payment: { method: 'card', token: f.get('token') } };
      const bodyText = JSON.stringify(body);
      // The same key only for a repeat of an attempt whose outcome is unknown, and only with the same body.
      if (!checkoutAttempt || checkoutAttempt.body !== bodyText) checkoutAttempt = { key: uuid(), body: bodyText };
      error.hidden = true;
      submit.disabled = true;
      submit.textContent = f.get('token') === 'tok_slow' ? 'Waiting for the payment provider…' : 'Placing order…';
      form.setAttribute('aria-busy', 'true');
      try {
        const order = await cart.checkout(body, checkoutAttempt.key);
        checkoutAttempt = null;
        notify(`Order ${order.order_number} placed.`, 'success');
        location.hash = hashFor('/orders', { placed: order.id });
      } catch (err) {
        const unknown = err instanceof ApiError &&
          (err.status === 0 || err.retrySafe || err.code === 'idempotency_in_progress');
        if (!unknown) checkoutAttempt = null;
        if (!current()) return;
        error.hidden = false;
        error.dataset.code = err.code || '';
        error.dataset.status = String(err.status ?? '');
        replace(error, err.title ? h('strong', {}, `${err.title}: `) : null, describeError(err, names()),
          err.status === 412 ? ' The cart changed meanwhile; check it and place the order again.' : '');
        error.scrollIntoView({ block: 'nearest' });
        // Stock or prices moved: show the cart as it is now (the error stays).
        if (err instanceof ApiError && (err.status === 409 || err.status === 412)) {
          c = await cart.load().catch(() => c);
          if (current()) draw();
        }
      } finally {
        submit.disabled = false;
        submit.textContent = 'Place order';
        form.removeAttribute('aria-busy');
      }
    });
    replace(checkoutBox, h('h2', {}, 'Check out'), form);
  }

  replace(view, h('h1', {}, 'Your cart'), h('div', { class: 'cart' }, h('div', { class: 'cart-main' }, lines, totals), checkoutBox));
  draw();
}

// ---- orders ------------------------------------------------------------------------------------

const STATUS_LABEL = {
  pending_payment: 'Pending payment', paid: 'Paid', shipped: 'Shipped', delivered: 'Delivered', canceled: 'Canceled',
  return_requested: 'Return requested', refunded: 'Refunded', partially_refunded: 'Partially refunded',
};

async function ordersView(view, { params, current }) {
  if (!currentUser()) {
    replace(view, h('section', { class: 'panel' }, h('h1', {}, 'Your orders'),
      h('p', {}, 'Sign in to see your orders and follow their status live.'),
      h('a', { class: 'button', href: hashFor('/login', { next: '/orders' }), testid: 'orders-login' }, 'Sign in')));
    return;
  }
  const placed = params.get('placed');
  const list = h('div', { class: 'orders', testid: 'order-list', 'aria-busy': 'true' });
  const rows = new Map();
  const banner = h('div', { class: 'panel success', testid: 'order-confirmation', hidden: true });

  const statusBadge = (status) => h('span', { class: `status ${status}`, testid: 'order-status', dataset: { status } },
    STATUS_LABEL[status] || status);

  const orderRow = (o) => {
    const badge = statusBadge(o.status);
    const cancel = h('button', { type: 'button', class: 'link danger', testid: 'order-cancel',
      hidden: !['paid', 'pending_payment'].includes(o.status) }, 'Cancel');
    cancel.addEventListener('click', async () => {
      cancel.disabled = true;
      try {
        const updated = await api.post(`/orders/${o.id}/cancel`, { reason: 'changed my mind' }, { idempotencyKey: uuid() });
        setStatus(o.id, updated.status, 'api');
        notify(`Order ${o.order_number} canceled; the payment is refunded.`, 'success');
      } catch (e) {
        notify(describeError(e), 'error');
      } finally {
        cancel.disabled = false;
      }
    });
    const when = o.created_at || o.history?.[0]?.at;
    const items = o.items.map((i) => `${i.quantity} × ${i.product_name}`).join(', ');
    const row = h('article', { class: `order${o.id === placed ? ' highlight' : ''}`, testid: 'order-row',
      dataset: { orderId: o.id, status: o.status } },
    h('div', { class: 'order-head' },
      h('strong', { testid: 'order-number' }, o.order_number),
      when ? h('time', { datetime: when }, new Date(when).toLocaleString()) : null,
      badge),
    h('p', { class: 'items' }, items),
    h('div', { class: 'order-foot' }, h('span', { testid: 'order-total' }, money(o.total_amount)), cancel));
    rows.set(o.id, { row, badge, cancel, order: o });
    return row;
  };

  function setStatus(id, status, source) {
    const r = rows.get(id);
    if (!r) return false;
    if (r.row.dataset.status !== status) {
      r.row.dataset.status = status;
      r.row.dataset.source = source;
      const badge = statusBadge(status);
      r.badge.replaceWith(badge);
      r.badge = badge;
      r.cancel.hidden = !['paid', 'pending_payment'].includes(status);
      flash(badge);
    }
    return true;
  }

  const loadList = async () => {
    const res = await api.get('/orders', { query: { limit: 20 } });
    if (!current()) return;
    rows.clear();
    if (res.data.length === 0) {
      replace(list, h('p', { class: 'empty', testid: 'orders-empty' }, 'No orders yet. ', h('a', { href: '#/', testid: 'orders-shop' }, 'Go shopping')));
    } else {
      replace(list, res.data.map(orderRow));
    }
    list.setAttribute('aria-busy', 'false');
    const mine = placed && rows.get(placed);
    if (mine) {
      banner.hidden = false;
      replace(banner, h('strong', {}, `Thank you! Order ${mine.order.order_number} is placed`),
        ` — ${STATUS_LABEL[mine.order.status] || mine.order.status}, ${money(mine.order.total_amount)}.`);
    }
  };

  replace(view, h('div', { class: 'orders-head' }, h('h1', {}, 'Your orders'), liveIndicator()), banner, list);
  await loadList();

  let reloading = null;
  const reloadSoon = () => {
    if (!reloading) reloading = setTimeout(() => { reloading = null; loadList().catch(() => {}); }, 300);
  };
  onLeave(() => clearTimeout(reloading));
  onLeave(live.subscribeOrders());
  onLeave(listen(live, 'order', (e) => {
    if (!setStatus(e.detail.order_id, e.detail.status, 'ws')) reloadSoon(); // a new order (another tab)
  }));
  // The socket refused the orders topic (an expired token, say): poll until it is live again. The next REST call
  // refreshes the token, and a new token reconnects the socket, which subscribes again.
  let refused = null;
  const stopRefused = () => {
    clearInterval(refused);
    refused = null;
  };
  onLeave(stopRefused);
  onLeave(listen(live, 'server-error', (e) => {
    if (e.detail.code !== 'unauthenticated' && e.detail.code !== 'forbidden') return;
    loadList().catch(() => {});
    if (!refused) refused = setInterval(() => loadList().catch(() => {}), POLL_MS);
  }));
  onLeave(listen(live, 'state', () => {
    if (live.state !== 'live') stopRefused();
  }));
  onLeave(listen(live, 'order', stopRefused));
  onLeave(live.poll(() => loadList().catch(() => {})));
}

// ---- sign in and registration ------------------------------------------------------------------

async function loginView(view, { params }) {
  const next = params.get('next') || '/';
  const user = currentUser();
  if (user) {
    replace(view, h('section', { class: 'panel narrow' }, h('h1', {}, 'Signed in'),
      h('p', { testid: 'signed-in-as' }, `You are signed in as ${user.name} (${user.email}).`),
      h('p', {}, h('a', { href: `#${next}`, testid: 'signed-in-continue' }, 'Continue'))));
    return;
  }

  const afterSignIn = async (u) => {
    let adjustments = [];
    try {
      adjustments = await cart.claimGuestCart();
      await cart.load();
    } catch (e) {
      notify(`Your guest cart could not be moved: ${describeError(e)}`, 'error');
    }
    notify(`Welcome, ${u.name || u.email}.`, 'success');
    for (const a of adjustments) {
      notify(`A cart line was adjusted to ${a.quantity} (${a.reason.replace(/_/g, ' ')}).`, 'info');
    }
    location.hash = `#${next}`;
  };

  const loginError = h('p', { class: 'form-error', role: 'alert', testid: 'login-error', hidden: true });
  const totp = h('label', { class: 'field', hidden: true }, h('span', {}, 'Authenticator code'),
    h('input', { name: 'totp_code', inputmode: 'numeric', autocomplete: 'one-time-code', testid: 'login-totp' }));
  const loginForm = h('form', { class: 'auth-form', testid: 'login-form' },
    h('h2', {}, 'Sign in'),
    h('label', { class: 'field' }, h('span', {}, 'Email'),
      h('input', { name: 'email', type: 'email', required: true, autocomplete: 'username', testid: 'login-email' })),
    h('label', { class: 'field' }, h('span', {}, 'Password'),
      h('input', { name: 'password', type: 'password', required: true, autocomplete: 'current-password', testid: 'login-password' })),
    totp, loginError,
    h('button', { type: 'submit', testid: 'login-submit' }, 'Sign in'));
  loginForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    const f = new FormData(loginForm);
    const button = loginForm.querySelector('button');
    button.disabled = true;
    loginError.hidden = true;
    try {
      const u = await login(String(f.get('email')), String(f.get('password')), String(f.get('totp_code') || ''));
      await afterSignIn(u);
    } catch (err) {
      if (err.code === 'mfa_required') totp.hidden = false;
      loginError.hidden = false;
      loginError.dataset.code = err.code || '';
      loginError.textContent = err.code === 'invalid_credentials' ? 'Wrong email or password.' : describeError(err);
    } finally {
      button.disabled = false;
    }
  });

  const registerError = h('p', { class: 'form-error', role: 'alert', testid: 'register-error', hidden: true });
  const registerForm = h('form', { class: 'auth-form', testid: 'register-form' },
    h('h2', {}, 'Create an account'),
    h('label', { class: 'field' }, h('span', {}, 'Name'),
      h('input', { name: 'name', required: true, maxlength: '200', autocomplete: 'name', testid: 'register-name' })),
    h('label', { class: 'field' }, h('span', {}, 'Email'),
      h('input', { name: 'email', type: 'email', required: true, autocomplete: 'email', testid: 'register-email' })),
    h('label', { class: 'field' }, h('span', {}, 'Password'),
      h('input', { name: 'password', type: 'password', required: true, minlength: '8', maxlength: '128',
        autocomplete: 'new-password', testid: 'register-password' }),
      h('small', {}, '8 to 128 characters; not a common password, not your email.')),
    registerError,
    h('button', { type: 'submit', testid: 'register-submit' }, 'Create account'));
  registerForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    const f = new FormData(registerForm);
    const button = registerForm.querySelector('button');
    button.disabled = true;
    registerError.hidden = true;
    try {
      const u = await register(String(f.get('name')), String(f.get('email')), String(f.get('password')));
      await afterSignIn(u);
    } catch (err) {
      registerError.hidden = false;
      registerError.dataset.code = err.code || '';
      registerError.textContent = describeError(err);
    } finally {
      button.disabled = false;
    }
  });

  replace(view, h('h1', {}, 'Sign in or create an account'),
    next === '/cart' ? h('p', { class: 'hint' }, 'Your cart comes with you when you sign in.') : null,
    h('div', { class: 'auth' }, loginForm, registerForm));
}

// ---- start -------------------------------------------------------------------------------------

function start() {
  document.querySelector('[data-testid="search-form"]').addEventListener('submit', (e) => {
    e.preventDefault();
    const q = document.querySelector('[data-testid="search-input"]').value.trim();
    location.hash = hashFor('/', { q });
  });
  document.querySelector('[data-testid="logout"]').addEventListener('click', async () => {
    await logout();
    cart.signedOut();
    notify('Signed out.', 'info');
    location.hash = '#/';
  });
  const footer = document.querySelector('[data-testid="live-global"]');
  const showLive = () => {
    footer.textContent = live.describe();
    footer.dataset.state = live.state;
  };
  live.addEventListener('state', showLive);
  showLive();

  events.addEventListener('cart', updateHeader);
  events.addEventListener('session', () => {
    updateHeader();
    if (!currentUser()) cart.signedOut();
  });
  events.addEventListener('expired', () => notify('Your session has expired; please sign in again.', 'error'));
  window.addEventListener('hashchange', render);
  updateHeader();
  cart.load().catch(() => {});
  render();
}

start();
