#!/usr/bin/env python3
"""Helper of bench/soak/soak.sh (standard library only; loopback targets only).

  setup BASE_URL OUT_FILE [--customers N] [--logins N] [--guest-carts N] [--stock N] [--seed S]
      prepares what mercato_soak_driver needs and writes its --setup JSON to OUT_FILE:
        - products: the active ones of GET /api/v1/products (cursor paging), sorted by id; the last one is made
          the "sold out" product (its available stock adjusted to 0: adding it to a cart is the mix's deliberate
          409 insufficient_stock) and left out of the others;
        - stock: every other product's available stock raised to at least --stock (admin adjustments, reason
          "soak"), so no checkout of the run can run out (a 409 on them would be an unexpected error);
        - categories: every id of the GET /api/v1/categories tree (the browse filter);
        - queries: search terms from the products' names (single words and adjacent word pairs);
        - customers: N HS256 access tokens minted with the node's key as issue11_prepare.py does (BENCH_JWT_SECRET,
          lifetime BENCH_JWT_TTL_S; a random subject each, role customer): the shoppers and WebSocket subscribers;
        - logins: N registered accounts (POST /auth/register, random passwords) the mix logs in with;
        - guest_carts: N guest carts (POST /api/v1/carts) with their cart tokens;
        - admin_token: the bootstrap admin's access token (BENCH_ADMIN_EMAIL / BENCH_ADMIN_PASSWORD), for price changes.
      Prints one JSON line of facts on stdout.
"""
import argparse
import json
import os
import random
import re
import secrets
import sys
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from issue10_prepare import client, list_products  # noqa: E402  (bench/)
from issue11_prepare import mint_access_token  # noqa: E402


def die(msg):
    sys.exit(f"soak_prepare: {msg}")


def category_ids(tree):
    out = []
    for node in tree:
        out.append(node["id"])
        out += category_ids(node.get("children") or [])
    return out


def available_of(c, pid):
    _, inv = c.call("GET", f"/api/v1/inventory/{pid}")
    return int(inv.get("available", int(inv.get("on_hand", 0)) - int(inv.get("reserved", 0))))


def adjust(c, bearer, pid, delta):
    while delta != 0:  # one adjustment moves at most 1,000,000 units
        step = max(-1_000_000, min(1_000_000, delta))
        c.call("POST", f"/api/v1/inventory/{pid}/adjustments", {"delta": step, "reason": "soak"}, headers=bearer,
               expect=(200, 201))
        delta -= step


def cmd_setup(a):
    secret = os.environ.get("BENCH_JWT_SECRET")
    if not secret or len(secret.encode()) < 32:
        die("BENCH_JWT_SECRET must be set to the node's MERCATO_JWT_SECRET (at least 32 bytes)")
    ttl = int(os.environ.get("BENCH_JWT_TTL_S", "900"))
    email, password = os.environ.get("BENCH_ADMIN_EMAIL"), os.environ.get("BENCH_ADMIN_PASSWORD")
    if not email or not password:
        die("BENCH_ADMIN_EMAIL and BENCH_ADMIN_PASSWORD must be set")
    rng = random.Random(a.seed)
    c = client(a.base)
    products = sorted((p for p in list_products(c) if p.get("status", "active") == "active"), key=lambda p: p["id"])
    if len(products) < 3:
        die("the catalog has fewer than 3 active products (start mercatod with --demo)")
    sold_out, products = products[-1], products[:-1]

    _, login = c.call("POST", "/api/v1/auth/login", {"email": email, "password": password})
    admin_token = login["access_token"]
    bearer = {"Authorization": "Bearer " + admin_token}
    t0 = time.monotonic()
    raised = 0
    for p in products:
        have = available_of(c, p["id"])
        if have < a.stock:
            adjust(c, bearer, p["id"], a.stock - have)
            raised += 1
    have = available_of(c, sold_out["id"])
    if have > 0:
        adjust(c, bearer, sold_out["id"], -have)
    if available_of(c, sold_out["id"]) != 0:
        die(f"could not sell out product {sold_out['id']}")
    stock_s = time.monotonic() - t0

    _, tree = c.call("GET", "/api/v1/categories")
    categories = category_ids(tree if isinstance(tree, list) else tree.get("data", []))

    words, pairs = set(), set()
    for p in products:
        ws = [w for w in re.findall(r"[A-Za-z]+", p["name"].lower())]
        words.update(w for w in ws if len(w) >= 4)
        pairs.update(f"{x} {y}" for x, y in zip(ws, ws[1:]) if len(x) >= 3 and len(y) >= 3)
    queries = sorted(words) + sorted(pairs)
    rng.shuffle(queries)
    queries = queries[:400]

    customers = [mint_access_token(secret, str(uuid.uuid4()), ttl) for _ in range(a.customers)]

    logins = []
    for i in range(a.logins):
        account = {"email": f"soak-{secrets.token_hex(4)}-{i}@example.com",
                   "password": "soak " + secrets.token_urlsafe(18)}
        c.call("POST", "/api/v1/auth/register", dict(account, name=f"Soak Shopper {i}"), expect=(201,))
        logins.append(account)

    guest_carts = []
    for _ in range(a.guest_carts):
        _, cart = c.call("POST", "/api/v1/carts", expect=(201,))
        guest_carts.append({"id": cart["id"], "token": cart["cart_token"]})

    with open(a.out, "w") as out:
        json.dump({"products": [p["id"] for p in products], "sold_out": sold_out["id"], "categories": categories,
                   "queries": queries, "customers": customers, "logins": logins, "guest_carts": guest_carts,
                   "admin_token": admin_token}, out)
    print(json.dumps({"products": len(products), "sold_out": sold_out["id"], "categories": len(categories),
                      "queries": len(queries), "customers": len(customers), "logins": len(logins),
                      "guest_carts": len(guest_carts), "stock_raised": raised, "stock_s": round(stock_s, 2)}))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("setup")
    s.add_argument("base")
    s.add_argument("out")
    s.add_argument("--customers", type=int, default=1000)
    s.add_argument("--logins", type=int, default=8)
    s.add_argument("--guest-carts", type=int, default=8)
    s.add_argument("--stock", type=int, default=200_000)
    s.add_argument("--seed", type=int, default=15)
    a = p.parse_args()
    if a.customers < 1 or a.logins < 1 or a.guest_carts < 1:
        die("--customers, --logins and --guest-carts must be at least 1")
    cmd_setup(a)


if __name__ == "__main__":
    main()
