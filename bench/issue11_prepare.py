#!/usr/bin/env python3
"""Helpers of bench/issue11_bench.sh (standard library only; loopback targets only).

  checkouts BASE_URL OUT_FILE --carts N [--products K] [--seed S] [--key-prefix P] [--workers W]
      prepares N carts ready to check out and writes one checkout request per cart to OUT_FILE, for
      mercato_loadgen --requests-file:
        - the products: the active ones of GET /api/v1/products (cursor paging), sorted by id; with
          --products K only the first K of them (the "hot" set), else all;
        - the plan: cart i gets 1 to 3 distinct products of that set (uniformly, seeded), 1 unit each;
        - the stock: logs in as the admin (BENCH_ADMIN_EMAIL / BENCH_ADMIN_PASSWORD) and raises every
          product's available stock to at least what the plan needs plus a margin (inventory adjustments,
          reason "bench"), so no checkout of the plan can run out;
        - the customers: one per cart, an HS256 access token minted here with the node's key
          (BENCH_JWT_SECRET; claims as security/jwt.cpp make_access_claims/sign_access_token: iss, aud, kid
          header, sub = a random UUID, roles ["customer"], iat/nbf/exp, jti), lifetime BENCH_JWT_TTL_S
          (default 900; must not exceed the node's MERCATO_ACCESS_TOKEN_TTL_S);
        - the carts: POST /api/v1/carts with the customer's bearer token, then POST /carts/{id}/items per
          line (W client threads);
        - OUT_FILE line i: POST /api/v1/carts/{id}/checkout of cart i, its customer's token, its own
          Idempotency-Key (<key prefix>-<i>), a shipping address and the sandbox card tok_ok.
      Prints one JSON line of facts on stdout (including the first and last cart with their tokens, so the
      caller can check afterwards whether the last one was checked out, i.e. whether the file wrapped).
  cart-state BASE_URL CART_ID TOKEN
      prints {"status": ..., "lines": n} of one cart (read with its customer's token).
"""
import argparse
import base64
import hashlib
import hmac
import json
import os
import random
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from issue10_prepare import client, in_parallel, list_products  # noqa: E402  (same folder)

SHIPPING = {"line1": "1 Bench Street", "city": "Springfield", "postal_code": "12345", "country": "US"}


def die(msg):
    sys.exit(f"issue11_prepare: {msg}")


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint_access_token(secret, subject, ttl_s, issuer="mercato", audience="mercato-api", kid="mercato-1"):
    """An access token as security/jwt.cpp signs it (HS256, kid header; the key is the secret's bytes)."""
    now = int(time.time())
    header = {"alg": "HS256", "typ": "JWT", "kid": kid}
    payload = {"iss": issuer, "aud": audience, "sub": subject, "iat": now, "nbf": now, "exp": now + ttl_s,
               "jti": os.urandom(16).hex(), "roles": ["customer"]}
    signing_input = (b64url(json.dumps(header, separators=(",", ":")).encode()) + "." +
                     b64url(json.dumps(payload, separators=(",", ":")).encode()))
    sig = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64url(sig)


def raise_stock(c, product_ids, need, margin):
    """Every product's available stock to at least need[pid] + margin; returns how many were raised."""
    email, password = os.environ.get("BENCH_ADMIN_EMAIL"), os.environ.get("BENCH_ADMIN_PASSWORD")
    if not email or not password:
        die("BENCH_ADMIN_EMAIL and BENCH_ADMIN_PASSWORD must be set")
    _, login = c.call("POST", "/api/v1/auth/login", {"email": email, "password": password})
    bearer = {"Authorization": "Bearer " + login["access_token"]}
    raised = 0
    for pid in product_ids:
        want = need.get(pid, 0) + margin
        _, inv = c.call("GET", f"/api/v1/inventory/{pid}")
        available = int(inv.get("available", int(inv.get("on_hand", 0)) - int(inv.get("reserved", 0))))
        if available < want:
            c.call("POST", f"/api/v1/inventory/{pid}/adjustments", {"delta": want - available, "reason": "bench"},
                   headers=bearer, expect=(200, 201))
            raised += 1
    return raised


def cmd_checkouts(a):
    secret = os.environ.get("BENCH_JWT_SECRET")
    if not secret or len(secret.encode()) < 32:
        die("BENCH_JWT_SECRET must be set to the node's MERCATO_JWT_SECRET (at least 32 bytes)")
    ttl = int(os.environ.get("BENCH_JWT_TTL_S", "900"))
    main = client(a.base)
    products = sorted(p["id"] for p in list_products(main) if p.get("status", "active") == "active")
    if not products:
        die("the catalog is empty (start mercatod with --demo)")
    if a.products:
        if a.products > len(products):
            die(f"--products {a.products}: the catalog has only {len(products)} active products")
        products = products[:a.products]

    rng = random.Random(a.seed)
    plan = [rng.sample(products, rng.randint(1, min(3, len(products)))) for _ in range(a.carts)]
    need = {}
    for lines in plan:
        for pid in lines:
            need[pid] = need.get(pid, 0) + 1
    t0 = time.monotonic()
    raised = raise_stock(main, products, need, a.stock_margin)
    stock_s = time.monotonic() - t0

    clients = [client(a.base) for _ in range(a.workers)]

    def make_cart(w, i):
        c = clients[w]
        token = mint_access_token(secret, str(uuid.uuid4()), ttl)
        auth = {"Authorization": "Bearer " + token}
        _, cart = c.call("POST", "/api/v1/carts", headers=auth, expect=(201,))
        for pid in plan[i]:
            c.call("POST", f"/api/v1/carts/{cart['id']}/items", {"product_id": pid, "quantity": 1}, headers=auth,
                   expect=(200, 201))
        return cart["id"], token

    t0 = time.monotonic()
    carts = in_parallel(a.workers, a.carts, make_cart)
    carts_s = time.monotonic() - t0

    body = json.dumps({"shipping_address": SHIPPING, "payment": {"method": "card", "token": "tok_ok"}},
                      separators=(",", ":"))
    with open(a.out, "w") as out:
        for i, (cart_id, token) in enumerate(carts):
            out.write(json.dumps({
                "method": "POST",
                "path": f"/api/v1/carts/{cart_id}/checkout",
                "headers": {"Authorization": "Bearer " + token, "Idempotency-Key": f"{a.key_prefix}-{i}"},
                "body": body,
            }, separators=(",", ":")) + "\n")
    lines = sum(len(p) for p in plan)
    print(json.dumps({"carts": len(carts), "products": len(products), "lines": lines,
                      "lines_per_cart": round(lines / len(carts), 2), "stock_raised": raised,
                      "stock_s": round(stock_s, 2), "carts_s": round(carts_s, 2),
                      "carts_per_s": round(len(carts) / carts_s, 1) if carts_s > 0 else None,
                      "first_cart": {"id": carts[0][0], "token": carts[0][1]},
                      "last_cart": {"id": carts[-1][0], "token": carts[-1][1]}}))


def cmd_cart_state(a):
    c = client(a.base)
    status, doc = c.call("GET", f"/api/v1/carts/{a.cart_id}", headers={"Authorization": "Bearer " + a.token},
                         expect=(200, 404))
    if status == 404:
        print(json.dumps({"status": "not_found", "lines": 0}))
    else:
        print(json.dumps({"status": doc.get("status"), "lines": len(doc.get("items", []))}))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("checkouts")
    c.add_argument("base")
    c.add_argument("out")
    c.add_argument("--carts", type=int, required=True)
    c.add_argument("--products", type=int, default=0, help="only the first K products (0: all)")
    c.add_argument("--seed", type=int, default=11)
    c.add_argument("--key-prefix", default="bench11")
    c.add_argument("--stock-margin", type=int, default=100)
    c.add_argument("--workers", type=int, default=16)
    s = sub.add_parser("cart-state")
    s.add_argument("base")
    s.add_argument("cart_id")
    s.add_argument("token")
    a = p.parse_args()
    if a.cmd == "checkouts":
        if a.carts < 1:
            die("--carts must be at least 1")
        cmd_checkouts(a)
    else:
        cmd_cart_state(a)


if __name__ == "__main__":
    main()
