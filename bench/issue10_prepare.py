#!/usr/bin/env python3
"""Helpers of bench/issue10_bench.sh (standard library only; loopback targets only).

  carts BASE_URL OUT_FILE --carts N [--min-lines L] [--stock S] [--workers W]
      lists the products (GET /api/v1/products, cursor paging), logs in as the admin (email and password from
      the environment: BENCH_ADMIN_EMAIL, BENCH_ADMIN_PASSWORD) and raises each product's available stock to at
      least S with an inventory adjustment, opens N guest carts (POST /api/v1/carts), and writes the
      add-to-cart requests for mercato_loadgen --requests-file to OUT_FILE (see plan_adds). Prints one JSON
      line of facts on stdout.
  search-queries COLD_FILE CACHED_FILE --cold N --cached M
      writes paths of GET /api/v1/products?q=... for the generated catalog of bench/seed_catalog.sql: N
      distinct queries (cache misses) and M queries to repeat (cache hits).
  cache-metrics BASE_URL
      prints the catalog cache counters of GET /metrics as one JSON object.
"""
import argparse
import http.client
import json
import math
import os
import random
import sys
import threading
import time
import urllib.parse

# The word lists of bench/seed_catalog.sql (names: adjective + noun).
ADJECTIVES = ["Amber", "Brisk", "Crimson", "Dusky", "Eager", "Frosty", "Gentle", "Hollow",
              "Ivory", "Jolly", "Keen", "Lunar", "Misty", "Noble", "Olive", "Polar"]
NOUNS = ["Anchor", "Basket", "Candle", "Drum", "Easel", "Flask", "Globe", "Hammer", "Jacket", "Kettle",
         "Ladder", "Mirror", "Needle", "Oven", "Pillow", "Quilt", "Radio", "Saddle", "Tablet", "Umbrella",
         "Vase", "Wallet", "Yacht", "Zipper", "Blanket", "Compass", "Dagger", "Fountain", "Guitar", "Helmet",
         "Lantern", "Magnet", "Napkin", "Orchard", "Pepper", "Rocket", "Scarf", "Teapot", "Violin", "Whistle"]
MAX_PRICES = range(1000, 4050)  # minor units; generated current prices are 50 .. 4049


def die(msg):
    sys.exit(f"issue10_prepare: {msg}")


def split_base(base):
    u = urllib.parse.urlsplit(base)
    if u.scheme != "http" or u.hostname not in ("127.0.0.1", "localhost", "::1") and not (u.hostname or "").startswith("127."):
        die(f"base URL must be http on a loopback host, got {base}")
    return u.hostname, u.port or 80


class client:
    """One keep-alive connection; reconnects once on a dropped connection."""

    def __init__(self, base):
        self.host, self.port = split_base(base)
        self.conn = None

    def call(self, method, path, body=None, headers=None, expect=(200,)):
        h = {"Accept": "application/json"}
        if body is not None:
            body = json.dumps(body)
            h["Content-Type"] = "application/json"
        h.update(headers or {})
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
            try:
                self.conn.request(method, path, body=body, headers=h)
                r = self.conn.getresponse()
                data = r.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        if r.status not in expect:
            raise RuntimeError(f"{method} {path} answered {r.status}: {data[:300]!r}")
        return r.status, (json.loads(data) if data else None)


def list_products(c):
    products, cursor = [], None
    while True:
        path = "/api/v1/products?limit=100" + ("&cursor=" + urllib.parse.quote(cursor, safe="") if cursor else "")
        _, doc = c.call("GET", path)
        products += doc["data"]
        cursor = doc.get("meta", {}).get("next_cursor")
        if not cursor or len(products) >= 100_000:
            return products


def in_parallel(workers, count, fn):
    """fn(client_index, i) for i in range(count) over `workers` threads; returns the results in order."""
    out = [None] * count
    errors = []
    next_i = [0]
    lock = threading.Lock()

    def run(w):
        while not errors:
            with lock:
                i = next_i[0]
                next_i[0] += 1
            if i >= count:
                return
            try:
                out[i] = fn(w, i)
            except Exception as e:  # noqa: BLE001 - the first failure stops everything and is reported
                errors.append(e)

    threads = [threading.Thread(target=run, args=(w,)) for w in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return out


def plan_adds(carts, product_ids, min_lines):
    """The add-to-cart requests, in file order. Line i adds 1 unit to cart i % C of product
    (c + i // C) % P: consecutive requests go to different carts (no two in flight on one cart as long as
    C exceeds the requests in flight), each cart gets K = ceil(min_lines / C) distinct products (K <= P and
    K <= 100, the line limit), and each pass over the file adds 1 unit to each of its (cart, product) lines.
    So after R passes a line holds R units: replies stay 200 while R stays below the 999-unit line limit and
    the products' available stock (raised to --stock first)."""
    c_count, p_count = len(carts), len(product_ids)
    k = max(1, min(p_count, 100, math.ceil(min_lines / c_count)))
    lines = []
    for i in range(c_count * k):
        c = i % c_count
        cart_id, token = carts[c]
        product = product_ids[(c + i // c_count) % p_count]
        lines.append(json.dumps({
            "method": "POST",
            "path": f"/api/v1/carts/{cart_id}/items",
            "headers": {"X-Cart-Token": token},
            "body": json.dumps({"product_id": product, "quantity": 1}, separators=(",", ":")),
        }, separators=(",", ":")))
    return lines, k


def cmd_carts(a):
    email, password = os.environ.get("BENCH_ADMIN_EMAIL"), os.environ.get("BENCH_ADMIN_PASSWORD")
    if not email or not password:
        die("BENCH_ADMIN_EMAIL and BENCH_ADMIN_PASSWORD must be set")
    main = client(a.base)
    products = [p for p in list_products(main) if p.get("status", "active") == "active"]
    if not products:
        die("the catalog is empty (start mercatod with --demo)")
    product_ids = [p["id"] for p in products]

    _, login = main.call("POST", "/api/v1/auth/login", {"email": email, "password": password})
    bearer = {"Authorization": "Bearer " + login["access_token"]}
    raised = 0
    t0 = time.monotonic()
    for pid in product_ids:
        _, inv = main.call("GET", f"/api/v1/inventory/{pid}")
        available = int(inv.get("available", int(inv.get("on_hand", 0)) - int(inv.get("reserved", 0))))
        if available < a.stock:
            main.call("POST", f"/api/v1/inventory/{pid}/adjustments",
                      {"delta": a.stock - available, "reason": "bench"}, headers=bearer, expect=(200, 201))
            raised += 1
    stock_s = time.monotonic() - t0

    clients = [client(a.base) for _ in range(a.workers)]

    def open_cart(w, _i):
        _, doc = clients[w].call("POST", "/api/v1/carts", expect=(201,))
        return doc["id"], doc["cart_token"]

    t0 = time.monotonic()
    carts = in_parallel(a.workers, a.carts, open_cart)
    carts_s = time.monotonic() - t0

    lines, per_cart = plan_adds(carts, product_ids, a.min_lines)
    with open(a.out, "w") as out:
        out.write("\n".join(lines) + "\n")
    print(json.dumps({"products": len(product_ids), "stock_raised": raised, "stock_s": round(stock_s, 2),
                      "carts": len(carts), "carts_s": round(carts_s, 2),
                      "carts_per_s": round(len(carts) / carts_s, 1) if carts_s > 0 else None,
                      "requests": len(lines), "products_per_cart": per_cart,
                      "sample_cart": {"id": carts[0][0], "token": carts[0][1]}}))


def query_path(adjective, noun, max_price):
    q = urllib.parse.quote(f"{adjective} {noun}".lower())
    return f"/api/v1/products?q={q}&max_price={max_price}"


def cmd_search_queries(a):
    rng = random.Random(10)
    space = len(ADJECTIVES) * len(NOUNS) * len(MAX_PRICES)
    if a.cold > space:
        die(f"at most {space} distinct queries")

    def path(n):
        pair, price = divmod(n, len(MAX_PRICES))
        adj, noun = divmod(pair, len(NOUNS))
        return query_path(ADJECTIVES[adj], NOUNS[noun], MAX_PRICES[price])

    picks = rng.sample(range(space), a.cold + a.cached)
    with open(a.cold_file, "w") as out:
        out.write("\n".join(path(n) for n in picks[:a.cold]) + "\n")
    with open(a.cached_file, "w") as out:
        out.write("\n".join(path(n) for n in picks[a.cold:]) + "\n")


def cmd_cache_metrics(a):
    host, port = split_base(a.base)
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("mercato_cache_requests_total{") or line.startswith("mercato_cache_loads_total"):
            name, _, value = line.rpartition(" ")
            labels = dict(kv.split("=", 1) for kv in name[name.find("{") + 1:name.rfind("}")].split(",") if "=" in kv)
            labels = {k: v.strip('"') for k, v in labels.items()}
            if name.startswith("mercato_cache_loads_total"):
                key = "loads" + "".join("_" + v for k, v in sorted(labels.items()))
            else:
                key = f"{labels.get('level')}_{labels.get('result')}"
            out[key] = out.get(key, 0) + float(value)
    print(json.dumps(out))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("carts")
    c.add_argument("base")
    c.add_argument("out")
    c.add_argument("--carts", type=int, default=10_000)
    c.add_argument("--min-lines", type=int, default=100_000)
    c.add_argument("--stock", type=int, default=1000)
    c.add_argument("--workers", type=int, default=16)
    s = sub.add_parser("search-queries")
    s.add_argument("cold_file")
    s.add_argument("cached_file")
    s.add_argument("--cold", type=int, default=200_000)
    s.add_argument("--cached", type=int, default=20)
    m = sub.add_parser("cache-metrics")
    m.add_argument("base")
    a = p.parse_args()
    if a.cmd == "carts":
        if a.carts < 1:
            die("--carts must be at least 1")
        cmd_carts(a)
    elif a.cmd == "search-queries":
        cmd_search_queries(a)
    else:
        cmd_cache_metrics(a)


if __name__ == "__main__":
    main()
