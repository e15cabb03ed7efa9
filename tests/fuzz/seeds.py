#!/usr/bin/env python3
"""Writes the seed inputs of tests/fuzz/corpus/<target>/seed-*.

Run from anywhere: python3 tests/fuzz/seeds.py. Only files named seed-* are (re)written; the regression
inputs kept from bugs found (regress-*) and inputs merged in from long runs are left alone.
"""
import base64
import hashlib
import hmac
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
UUID = "0f0f0f0f-0000-4000-8000-000000000001"
UUID2 = "0f0f0f0f-0000-4000-8000-000000000002"
SECRET = b"fuzz-secret-fuzz-secret-fuzz-secret-0123"   # jwt_fuzz.cpp and edge_harness.hpp
NOW = 1_790_000_000                                    # jwt_fuzz.cpp's clock


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def j(v):
    return json.dumps(v, separators=(",", ":"))


# --- http_request: raw HTTP/1.1 requests ------------------------------------------------------------
def req(method, target, headers=(), body=None):
    lines = [f"{method} {target} HTTP/1.1", "Host: shop.example"]
    lines += list(headers)
    if body is not None:
        lines.append("Content-Type: application/json")
        lines.append(f"Content-Length: {len(body.encode())}")
    return "\r\n".join(lines) + "\r\n\r\n" + (body or "")


http = {
    "healthz": req("GET", "/healthz"),
    "readyz": req("GET", "/readyz"),
    "openapi": req("GET", "/api/v1/openapi.yaml", ["If-None-Match: \"x\""]),
    "static": req("GET", "/", ["If-None-Match: *"]),
    "head": req("HEAD", "/api/v1/products?limit=2"),
    "products": req("GET", "/api/v1/products?limit=5&sort=price_asc&min_price=100&max_price=9000&q=red%20shoe"),
    "product": req("GET", f"/api/v1/products/{UUID}", ["X-Request-Id: abc-1", "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"]),
    "categories": req("GET", "/api/v1/categories"),
    "vendor": req("GET", f"/api/v1/vendors/{UUID}"),
    "register": req("POST", "/api/v1/auth/register", [], j({"email": "a@b.example", "password": "correct horse battery", "name": "Ann"})),
    "login": req("POST", "/api/v1/auth/login", [], j({"email": "a@b.example", "password": "correct horse battery"})),
    "refresh": req("POST", "/api/v1/auth/refresh", [], j({"refresh_token": "abc"})),
    "me": req("GET", "/api/v1/me", ["Authorization: Bearer @customer"]),
    "patch_me": req("PATCH", "/api/v1/me", ["Authorization: Bearer @customer"], j({"name": "Bo", "preferences": {"lang": "en"}})),
    "address": req("POST", "/api/v1/me/addresses", ["Authorization: Bearer @customer"], j({"label": "home", "name": "Bo", "line1": "1 Road", "city": "Oslo", "postal_code": "0150", "country": "NO", "is_default": True})),
    "product_create": req("POST", "/api/v1/products", ["Authorization: Bearer @vendor"], j({"sku": "SKU-1", "name": "Shoe", "description": "red", "base_price": {"amount": 1999, "currency": "USD"}, "category_id": UUID, "initial_stock": 5, "attributes": {"color": "red"}, "images": ["https://img.example/1.png"]})),
    "product_patch": req("PATCH", f"/api/v1/products/{UUID}", ["Authorization: Bearer @admin", "If-Match: \"2\""], j({"name": "Boot", "current_price": {"amount": 1500, "currency": "USD"}})),
    "product_delete": req("DELETE", f"/api/v1/products/{UUID}", ["Authorization: Bearer @admin"]),
    "category": req("POST", "/api/v1/categories", ["Authorization: Bearer @admin"], j({"name": "Shoes", "parent_id": UUID})),
    "roles": req("PUT", f"/api/v1/admin/users/{UUID}/roles", ["Authorization: Bearer @admin"], j({"roles": ["customer", "vendor"], "vendor_id": UUID2})),
    "notifications": req("GET", "/api/v1/me/notifications?limit=10&unread=true&cursor=eyJ4IjoxfQ", ["Authorization: Bearer @customer"]),
    "totp": req("POST", "/api/v1/auth/mfa/totp/verify", ["Authorization: Bearer @customer"], j({"totp_code": "123456"})),
    "chunked": "POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
               "7\r\n{\"email\r\n5\r\n\":\"a\"\r\n1\r\n}\r\n0\r\n\r\n",
    "http10": "GET /api/v1/categories HTTP/1.0\r\n\r\n",
    "bad_token": req("GET", "/api/v1/me", ["Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.x"]),
    "method": req("OPTIONS", "/api/v1/products"),
    "encoded": req("GET", "/api/v1/products/%E2%82%AC?q=%FF"),
}
for name, data in http.items():
    write("http_request", name, data)

# --- json_bodies: route selector, flags, body ---------------------------------------------------------
bodies = [
    {"email": "a@b.example", "password": "correct horse battery", "name": "Ann"},
    {"name": "Shoes", "parent_id": UUID},
    {"name": "Acme", "email": "shop@acme.example"},
    {"sku": "SKU-1", "name": "Shoe", "base_price": {"amount": 1999, "currency": "USD"}, "category_id": UUID, "initial_stock": 5},
    {"name": "Boot", "current_price": {"amount": 1500, "currency": "EUR"}, "low_stock_threshold": 3},
    {"roles": ["customer", "vendor"], "vendor_id": UUID2},
    {"label": "home", "name": "Bo", "line1": "1 Road", "city": "Oslo", "region": "", "postal_code": "0150", "country": "NO", "phone": "+4712345678", "is_default": True},
    {"totp_code": "123456", "password": "pw", "recovery_code": "abcd-efgh"},
    {"refresh_token": "x" * 43},
    {"preferences": {"newsletter": False}, "name": "Zoë"},
]
for sel in range(24):
    write("json_bodies", f"route{sel:02d}", bytes([sel, 4 if sel % 3 else 2]) + j(bodies[sel % len(bodies)]).encode())
# A fitting body per route (json_bodies_fuzz.cpp sorts the JSON routes by target, then method).
fitting = [
    {"roles": ["customer", "vendor"], "vendor_id": UUID2},                                     # admin/users/{id}/roles
    {"email": "a@b.example", "password": "correct horse battery", "totp_code": "123456"},       # auth/login
    {"refresh_token": "x" * 43},                                                                # auth/logout
    {"password": "correct horse battery"},                                                      # auth/mfa/totp
    {"password": "correct horse battery", "totp_code": "123456"},                               # .../disable
    {"totp_code": "123456"},                                                                    # .../verify
    {"refresh_token": "x" * 43},                                                                # auth/refresh
    {"email": "a@b.example", "password": "correct horse battery", "name": "Ann"},               # auth/register
    {"name": "Shoes", "parent_id": UUID},                                                       # categories
    {"name": "Zoë", "preferences": {"newsletter": False}},                                      # me
    {"label": "home", "name": "Bo", "line1": "1 Road", "city": "Oslo", "postal_code": "0150",   # me/addresses
     "country": "NO", "is_default": True},
    {"sku": "SKU-1", "name": "Shoe", "base_price": {"amount": 1999, "currency": "USD"},         # products
     "category_id": UUID, "initial_stock": 5, "attributes": {"color": "red"}},
    {"name": "Boot", "current_price": {"amount": 1500, "currency": "USD"}},                     # products/{id}
    {"name": "Acme", "email": "shop@acme.example"},                                             # vendors
]
for sel, body in enumerate(fitting):
    write("json_bodies", f"fit{sel:02d}", bytes([sel, 4 if sel != 11 else 2]) + j(body).encode())
write("json_bodies", "dup", bytes([3, 4]) + b'{"name":"a","name":"b"}')
write("json_bodies", "syntax", bytes([5, 1]) + b'{"name": [1, 2,}')

# --- query_params: route selector, caller, query string ------------------------------------------------
cursor = base64.urlsafe_b64encode(b'{"k":"1999","id":"' + UUID.encode() + b'"}').rstrip(b"=").decode()
queries = ["limit=5&sort=price_asc", "q=red+shoe&min_price=100&max_price=2000&category=" + UUID,
           "cursor=" + cursor + "&sort=newest", "limit=0&sort=bogus&unread=maybe", "limit=100&unread=true&cursor=AAAA",
           "in_stock=true&vendor=" + UUID2 + "&sort=relevance&q=%C3%A9t%C3%A9", "limit=99999999999999999999",
           "cursor=%ZZ&q=" + "a" * 300]
for sel in range(12):
    write("query_params", f"q{sel:02d}", bytes([sel, sel % 4]) + queries[sel % len(queries)].encode())

# --- jwt --------------------------------------------------------------------------------------------
def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def token(header, payload):
    signing = b64(j(header).encode()) + "." + b64(j(payload).encode())
    mac = hmac.new(SECRET, signing.encode(), hashlib.sha256).digest()
    return signing + "." + b64(mac)


head = {"alg": "HS256", "typ": "JWT", "kid": "fuzz"}
claims = {"iss": "mercato", "aud": "mercato-api", "sub": UUID, "iat": NOW - 10, "nbf": NOW - 10, "exp": NOW + 890,
          "jti": "abc", "roles": ["customer"], "sid": "s1"}
vendor = dict(claims, roles=["vendor"], vendor_id=UUID2, aud=["other", "mercato-api"])
write("jwt", "raw_valid", b"\x00" + token(head, claims).encode())
write("jwt", "raw_vendor", b"\x00" + token(head, vendor).encode())
write("jwt", "raw_none", b"\x00" + (b64(j({"alg": "none"}).encode()) + "." + b64(j(claims).encode()) + ".").encode())
write("jwt", "raw_expired", b"\x00" + token(head, dict(claims, exp=NOW - 100)).encode())
write("jwt", "signed_valid", b"\x01" + (j(head) + "\n" + j(claims)).encode())
write("jwt", "signed_vendor", b"\x01" + (j(head) + "\n" + j(vendor)).encode())
write("jwt", "signed_payload_only", b"\x01" + j(claims).encode())
write("jwt", "signed_crit", b"\x01" + (j(dict(head, crit=["exp"])) + "\n" + j(claims)).encode())
write("jwt", "signed_floats", b"\x01" + (j(head) + "\n" + j(dict(claims, exp=NOW + 0.5, iat=1e300))).encode())

# --- toml_config --------------------------------------------------------------------------------------
write("toml_config", "example", open(os.path.join(HERE, "..", "..", "mercato.example.toml"), "rb").read())
write("toml_config", "small", '[http]\nport = 8080\nmax_body_bytes = 1048576\n[rate_limits]\nlogin = "10/15m"\n'
      '[cart]\ntax_rates = "US=725,DE=1900"\n[log]\nlevel = "debug"\nformat = "json"\n')
write("toml_config", "values", '10/15m\n5/1h\n500/900s\noff\n0\nUS=725,DE=1900\n\n[x]\ny = [1, 2.5, "z", {a = 1}]\n')
write("toml_config", "bad", '[http\nport = "eighty"\n')

# --- ws_messages ----------------------------------------------------------------------------------------
write("ws_messages", "sub_stock", b"\x00" + j({"op": "subscribe", "topic": "stock", "product_ids": [UUID, UUID2, UUID]}).encode())
write("ws_messages", "unsub_price", b"\x00" + j({"op": "unsubscribe", "topic": "price", "product_ids": [UUID.upper()]}).encode())
write("ws_messages", "orders", b"\x00" + j({"op": "subscribe", "topic": "orders"}).encode())
write("ws_messages", "ping", b"\x00" + j({"op": "ping"}).encode())
write("ws_messages", "bad_op", b"\x00" + j({"op": "ÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿé"}).encode())
meta = j({"aggregate_version": 4})
for i, data in enumerate([{"available_new": 3, "low_stock_threshold": 5, "available_old": 4},
                          {"available": 9, "new": 2, "old": 1},
                          {"price_changed": True, "version": 6, "new_prices": {"current_price": 1500, "currency": "USD"}},
                          {"from": "paid", "to": "shipped", "customer_id": UUID2}]):
    for sel in range(4):
        write("ws_messages", f"event{i}{sel}", bytes([1, sel]) + (j(data) + "\n" + meta).encode())

# --- snapshots: kind selector, stored JSON ------------------------------------------------------------
cart = {"schema": 2, "owner_user_id": UUID, "token_hash": "", "currency": "USD", "status": "active",
        "items": [{"product_id": UUID2, "sku": "S", "name": "Shoe", "quantity": 2, "unit_price": 1999}],
        "updated_at": "2026-09-21T12:00:00Z", "merged_into": "", "last_order_id": "", "merged_from": [UUID2]}
cart_v1 = {"schema": 1, "owner": UUID, "lines": [{"product": UUID2, "sku": "S", "name": "n", "qty": 1, "price": 5}]}
inventory = {"schema": 1, "on_hand": 10, "reserved": 2, "low_stock_threshold": 3,
             "reservations": [{"id": "r1", "quantity": 2, "expires_at": "2026-09-21T12:00:00.000Z", "reserved_at": "2026-09-21T11:50:00Z"}],
             "low": False, "settled": [{"id": "r0", "outcome": "committed", "quantity": 1, "at": "2026-09-21T11:00:00Z"}],
             "updated_at": "2026-09-21T12:00:00Z"}
order = {"schema": 1, "order_number": "ORD-1", "customer_id": UUID, "cart_id": UUID2, "status": "paid", "currency": "USD",
         "items": [{"product_id": UUID2, "sku": "S", "name": "Shoe", "vendor_id": UUID, "quantity": 1, "unit_price": 1999}],
         "subtotal": 1999, "tax": 145, "shipping": 500, "discount": 0, "total": 2644,
         "shipping_address": {"city": "Oslo"}, "billing_address": {}, "payment_id": UUID2, "payment_status": "captured",
         "history": [{"status": "pending", "at": "2026-09-21T12:00:00Z"}], "failure_code": "", "failure_detail": "",
         "created_at": "2026-09-21T12:00:00Z", "updated_at": "2026-09-21T12:00:00Z", "payment_token": "tok", "refunded": 0,
         "shipments": [], "returns": [], "operation": "", "operation_return_id": "", "capturing": False}
payment = {"schema": 1, "order_id": UUID, "customer_id": UUID2, "status": "captured", "amount": 2644, "refunded_amount": 0,
           "currency": "USD", "provider": "sandbox", "provider_reference": "ref", "token": "tok", "failure_code": "",
           "created_at": "2026-09-21T12:00:00Z", "updated_at": "2026-09-21T12:00:00Z", "refund_ids": ["f1"], "pending_refunds": []}
for sel, (name, snap) in enumerate([("cart", cart), ("inventory", inventory), ("order", order), ("payment", payment)]):
    write("snapshots", name, bytes([sel]) + j(snap).encode())
write("snapshots", "cart_v1", b"\x00" + j(cart_v1).encode())
write("snapshots", "empty", b"\x02{}")
print("seeds written")
