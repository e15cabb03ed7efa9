// Browser e2e of the demo storefront (web/), run by tests/e2e/storefront_browser_test.sh against a mercatod it
// started: Playwright (playwright-core from tests/tools) drives Debian's chromium headless.
//
// A shopper searches the catalog, opens a product, adds it to the guest cart, creates an account (the guest cart
// is claimed), checks out with tok_ok and sees the order, paid, in the order list; a second checkout with
// tok_decline shows the API's 402 payment_declined. Meanwhile a second page shows that product, and the stock it
// shows must drop without a reload.
//
// That second page's drop is the WebSocket part (GET /api/v1/ws, API.md "Live updates"): when the node has the
// endpoint, the page must be live and the drop must come over the socket. A node that answers 404 for
// /api/v1/ws fails the test (the page's polling fallback, for a socket that cannot connect, is not what is
// tested here).
//
// Every wait is on the DOM (selectors, attributes, URL), never a sleep. Screenshots go to ARTIFACTS_DIR; on a
// failure each page is saved as failure-<name>.png/.html there too. Uncaught page errors and console errors
// (a CSP violation, a failed module) fail the run.
//
// Environment: BASE_URL (the node), ARTIFACTS_DIR, TOOLS_DIR (tests/tools), CHROMIUM (default /usr/bin/chromium).

import { createRequire } from 'node:module';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';

const base = process.env.BASE_URL;
const artifacts = process.env.ARTIFACTS_DIR;
const toolsDir = process.env.TOOLS_DIR;
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const requireWs = true;  // the node has the endpoint (http/ws): its absence is a failure
if (!base || !artifacts || !toolsDir) {
  console.error('storefront.mjs: BASE_URL, ARTIFACTS_DIR and TOOLS_DIR must be set');
  process.exit(2);
}
const require = createRequire(path.join(toolsDir, 'package.json'));
const { chromium } = require('playwright-core');

const TIMEOUT = 30_000;
const log = (...a) => console.log('storefront:', ...a);
class Failure extends Error {}
function check(ok, message) {
  if (!ok) throw new Failure(message);
}

fs.mkdirSync(artifacts, { recursive: true });
for (const f of fs.readdirSync(artifacts)) {
  if (/\.(png|html)$/.test(f)) fs.rmSync(path.join(artifacts, f));
}
let shot = 0;
async function screenshot(page, name) {
  const file = path.join(artifacts, `${String(++shot).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  log(`screenshot ${file}`);
}

// ---- is there a WebSocket endpoint? ------------------------------------------------------------
// A real upgrade request: 101 (or any refusal but 404) means the endpoint exists.
const probeStatus = await new Promise((resolve) => {
  const req = http.request(`${base}/api/v1/ws`, {
    headers: { Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13',
      'Sec-WebSocket-Key': randomBytes(16).toString('base64') },
  });
  req.on('upgrade', (res, socket) => { socket.destroy(); resolve(101); });
  req.on('response', (res) => { res.resume(); resolve(res.statusCode); });
  req.on('error', (e) => resolve(`error ${e.message}`));
  req.setTimeout(10_000, () => { req.destroy(); resolve('timeout'); });
  req.end();
});
const wsAvailable = probeStatus !== 404;
log(`a WebSocket upgrade of GET /api/v1/ws answers ${probeStatus}: the node ${wsAvailable ? 'has' : 'has NO'} WebSocket endpoint`);
if (!wsAvailable && requireWs) {
  console.error('storefront: FAIL: the node answers 404 for /api/v1/ws');
  process.exit(1);
}

const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mercato-chromium-'));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath,
  headless: true,
  args: ['--no-sandbox', '--disable-background-networking', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-component-update', '--disable-sync'],
  viewport: { width: 1280, height: 900 },
  timeout: 60_000,
});
context.setDefaultTimeout(TIMEOUT);

const problems = [];
function watch(page, name) {
  page.on('pageerror', (e) => problems.push(`${name}: uncaught ${e.message}`));
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    const text = m.text();
    // The API's refusals the page shows (402 payment_declined, ...) are logged by the browser as failed loads.
    if (/^Failed to load resource/.test(text) && (m.location()?.url || '').includes('/api/v1/')) return;
    // Without the endpoint the browser reports each failed WebSocket attempt.
    if (!wsAvailable && /WebSocket connection to .*\/api\/v1\/ws.* failed/.test(text)) return;
    problems.push(`${name}: console error: ${text}`);
  });
  page.on('requestfailed', (r) => {
    if (!r.url().includes('/api/v1/ws')) problems.push(`${name}: request failed: ${r.url()} ${r.failure()?.errorText}`);
  });
}

const shopper = context.pages()[0] ?? (await context.newPage());
watch(shopper, 'shopper');
let watcher = null;
const testid = (page, id) => page.locator(`[data-testid="${id}"]`);

let exitCode = 0;
try {
  // ---- the page loads, from the node, with the catalog ----------------------------------------
  const response = await shopper.goto(`${base}/`);
  check(response.status() === 200, `GET / answered ${response.status()}`);
  check((response.headers()['content-security-policy'] || '').includes("default-src 'self'"), 'GET / has no CSP');
  await testid(shopper, 'product-card').first().waitFor();
  await shopper.waitForSelector('[data-testid="results-summary"]:not(:has-text("Loading"))');
  await screenshot(shopper, 'catalog');

  // ---- search -------------------------------------------------------------------------------
  const productName = 'Quiet One Headphones';
  await testid(shopper, 'search-input').fill('Quiet One');
  await testid(shopper, 'search-submit').click();
  await shopper.waitForURL(/#\/\?q=Quiet\+One/);
  const card = shopper.locator('[data-testid="product-card"]', { hasText: productName });
  await card.waitFor();
  const productId = await card.getAttribute('data-product-id');
  check(/^[0-9a-f-]{36}$/.test(productId || ''), `the card has no product id (${productId})`);
  check(await testid(shopper, 'product-card').count() < 20, 'the search did not narrow the catalog');
  await screenshot(shopper, 'search');

  // ---- a second page watches the product ----------------------------------------------------
  watcher = await context.newPage();
  watch(watcher, 'second page');
  await watcher.goto(`${base}/#/product/${productId}`);
  const watchedStock = testid(watcher, 'product-stock');
  await watchedStock.waitFor();
  await testid(watcher, 'live-indicator').waitFor();
  if (wsAvailable) {
    // Live, and the current value came over the socket first.
    await watcher.waitForSelector('[data-testid="live-indicator"][data-state="live"]');
    await watcher.waitForSelector('[data-testid="product-stock"][data-source="ws"]');
  } else {
    await watcher.waitForSelector('[data-testid="live-indicator"][data-state="unavailable"]');
    const text = await testid(watcher, 'live-indicator').textContent();
    check(/live updates unavailable/i.test(text), `the live indicator says "${text}"`);
  }
  const before = Number(await watchedStock.getAttribute('data-available'));
  check(Number.isInteger(before) && before >= 3, `the second page shows ${before} available`);
  // A marker that a reload would wipe out.
  await watcher.evaluate(() => { window.__noReload = true; });
  log(`second page: ${before} available, live state ${await testid(watcher, 'live-indicator').getAttribute('data-state')}`);

  // ---- product page, add to the guest cart ---------------------------------------------------
  await card.locator('[data-testid="product-link"]').click();
  await shopper.waitForURL(new RegExp(`#/product/${productId}$`));
  await testid(shopper, 'product-name').filter({ hasText: productName }).waitFor();
  await testid(shopper, 'product-qty').fill('2');
  await testid(shopper, 'add-to-cart').click();
  await shopper.waitForSelector('[data-testid="cart-count"]:text-is("2")');
  await testid(shopper, 'go-to-cart').waitFor();
  await screenshot(shopper, 'product');

  // ---- cart, then an account (the guest cart comes along) -----------------------------------
  await testid(shopper, 'nav-cart').click();
  await shopper.waitForURL(/#\/cart$/);
  const line = shopper.locator('[data-testid="cart-line"]', { hasText: productName });
  await line.waitFor();
  check(await line.locator('[data-testid="cart-qty"]').inputValue() === '2', 'the cart line does not hold 2');
  await testid(shopper, 'checkout-login').click();
  await shopper.waitForURL(/#\/login\?next=%2Fcart$/);
  const email = `shopper-${Date.now()}-${process.pid}@example.com`;
  await testid(shopper, 'register-name').fill('Storefront Shopper');
  await testid(shopper, 'register-email').fill(email);
  await testid(shopper, 'register-password').fill('a browser test passphrase');
  await testid(shopper, 'register-submit').click();
  await shopper.waitForURL(/#\/cart$/);
  await testid(shopper, 'nav-user').filter({ hasText: 'Storefront Shopper' }).waitFor();
  await testid(shopper, 'checkout-form').waitFor();
  await line.waitFor();
  check(await line.locator('[data-testid="cart-qty"]').inputValue() === '2', 'the claimed cart line does not hold 2');
  const total = await testid(shopper, 'cart-total').textContent();
  await screenshot(shopper, 'cart');

  // ---- check out with tok_ok -----------------------------------------------------------------
  await testid(shopper, 'checkout-card').selectOption('tok_ok');
  await testid(shopper, 'checkout-submit').click();
  await shopper.waitForURL(/#\/orders\?placed=[0-9a-f-]{36}$/);
  const orderId = new URL(shopper.url()).hash.split('placed=')[1];
  await testid(shopper, 'order-confirmation').waitFor();
  const row = shopper.locator(`[data-testid="order-row"][data-order-id="${orderId}"]`);
  await row.waitFor();
  await shopper.waitForSelector(`[data-testid="order-row"][data-order-id="${orderId}"] [data-testid="order-status"][data-status="paid"]`);
  check((await row.locator('[data-testid="order-total"]').textContent()) === total,
    `the order total is not the cart's ${total}`);
  check((await row.textContent()).includes(`2 × ${productName}`), 'the order row does not list the 2 headphones');
  check(await testid(shopper, 'cart-count').textContent() === '0', 'the cart badge is not 0 after checkout');
  await screenshot(shopper, 'orders');
  log(`order ${orderId} placed and listed as paid (total ${total})`);

  // ---- the second page: the stock drops, without a reload ------------------------------------
  await watcher.waitForFunction(
    (n) => Number(document.querySelector('[data-testid="product-stock"]')?.dataset.available) < n, before,
    { timeout: TIMEOUT });
  check(await watcher.evaluate(() => window.__noReload === true), 'the second page was reloaded');
  const after = Number(await watchedStock.getAttribute('data-available'));
  const source = await watchedStock.getAttribute('data-source');
  log(`second page: ${before} → ${after} available, delivered by ${source}`);
  check(after <= before - 2, `the second page shows ${after}, expected at most ${before - 2}`);
  check(source === 'ws', `the drop came by ${source}, not over the WebSocket`);
  check(await testid(watcher, 'live-indicator').getAttribute('data-state') === 'live', 'the second page is not live');
  await screenshot(watcher, 'second-page-stock-dropped');

  // ---- a declined card shows the API's problem ------------------------------------------------
  await shopper.goto(`${base}/#/product/${productId}`);
  await testid(shopper, 'add-to-cart').click();
  await shopper.waitForSelector('[data-testid="cart-count"]:text-is("1")');
  await testid(shopper, 'nav-cart').click();
  await testid(shopper, 'checkout-form').waitFor();
  await testid(shopper, 'checkout-card').selectOption('tok_decline');
  await testid(shopper, 'checkout-submit').click();
  const declined = shopper.locator('[data-testid="checkout-error"][data-status="402"]');
  await declined.waitFor();
  check((await declined.getAttribute('data-code')) === 'payment_declined', 'the 402 is not payment_declined');
  check((await declined.textContent()).trim().length > 0, 'the decline shows no detail');
  check(await testid(shopper, 'cart-line').count() === 1, 'the cart did not stay as it was after the decline');
  await screenshot(shopper, 'declined');

  check(problems.length === 0, `the pages reported problems:\n  ${problems.join('\n  ')}`);
  log('PASS');
} catch (e) {
  exitCode = 1;
  console.error(`storefront: FAIL: ${e instanceof Failure ? e.message : e.stack || e}`);
  if (problems.length) console.error(`storefront: page problems:\n  ${problems.join('\n  ')}`);
  for (const [name, page] of [['shopper', shopper], ['second-page', watcher]]) {
    if (!page) continue;
    try {
      console.error(`storefront: ${name} was at ${page.url()}`);
      await page.screenshot({ path: path.join(artifacts, `failure-${name}.png`), fullPage: true });
      fs.writeFileSync(path.join(artifacts, `failure-${name}.html`), await page.content());
    } catch {
      /* the page may be gone */
    }
  }
} finally {
  await context.close().catch(() => {});
  fs.rmSync(userDataDir, { recursive: true, force: true });
}
process.exit(exitCode);
