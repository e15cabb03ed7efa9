#!/usr/bin/env python3
"""Helpers of bench/cluster_bench.sh (standard library only; loopback targets only).

  carts BASE_URL OUT_DIR --carts N --product ID
      opens N guest carts through BASE_URL and writes, per cart, "id token shard" lines to OUT_DIR/carts.txt
      (shard: the cart kind's shard of the id, as supervisors/entity_env's shard_of computes it).
  requests OUT_DIR OWNERS_FILE --owner NODE --product ID
      OWNERS_FILE has "shard owner" lines (the live cart leases); writes OUT_DIR/get_NODE.jsonl (GET of each
      cart NODE owns) and OUT_DIR/add_NODE.jsonl (add-to-cart of the same carts) for mercato_loadgen.
  probe BASE_URL OUT_DIR OWNERS_FILE --owner NODE --product ID --timeout S
      adds one item to a cart NODE owned, through BASE_URL, every 50 ms until one is acknowledged (after the
      caller killed NODE); prints the seconds from the first attempt to that answer.
  ready BASE_URL --timeout S
      waits for GET /readyz 200; prints the seconds it took.
"""
import argparse
import http.client
import json
import sys
import time
import urllib.parse
import uuid


def die(msg):
    sys.exit(f"cluster_prepare: {msg}")


def split_base(base):
    u = urllib.parse.urlsplit(base)
    if u.scheme != "http" or not (u.hostname in ("localhost", "::1") or (u.hostname or "").startswith("127.")):
        die(f"base URL must be http on a loopback host, got {base}")
    return u.hostname, u.port or 80


def call(base, method, path, body=None, headers=None, timeout=15):
    host, port = split_base(base)
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    h = {"Accept": "application/json"}
    if body is not None:
        body = json.dumps(body)
        h["Content-Type"] = "application/json"
    h.update(headers or {})
    try:
        conn.request(method, path, body=body, headers=h)
        r = conn.getresponse()
        data = r.read()
        return r.status, data
    finally:
        conn.close()


def shard_of(text, shards=64):
    h = 2166136261
    for c in text.encode():
        h ^= c
        h = (h * 16777619) & 0xFFFFFFFF
    return h % shards


def cmd_carts(a):
    lines = []
    for _ in range(a.carts):
        status, data = call(a.base, "POST", "/api/v1/carts")
        if status != 201:
            die(f"POST /api/v1/carts answered {status}: {data[:200]!r}")
        doc = json.loads(data)
        lines.append(f"{doc['id']} {doc['cart_token']} {shard_of(doc['id'])}")
    with open(f"{a.out_dir}/carts.txt", "w") as f:
        f.write("\n".join(lines) + "\n")


def owned(out_dir, owners_file, owner):
    owners = {}
    with open(owners_file) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 2:
                owners[int(parts[0])] = parts[1]
    carts = []
    with open(f"{out_dir}/carts.txt") as f:
        for line in f:
            cid, token, shard = line.split()
            if owners.get(int(shard)) == owner:
                carts.append((cid, token))
    if not carts:
        die(f"no cart is owned by {owner}")
    return carts


def cmd_requests(a):
    carts = owned(a.out_dir, a.owners, a.owner)
    with open(f"{a.out_dir}/get_{a.owner}.jsonl", "w") as g, open(f"{a.out_dir}/add_{a.owner}.jsonl", "w") as p:
        for cid, token in carts:
            g.write(json.dumps({"path": f"/api/v1/carts/{cid}", "headers": {"X-Cart-Token": token}}) + "\n")
            p.write(json.dumps({"method": "POST", "path": f"/api/v1/carts/{cid}/items",
                                "headers": {"X-Cart-Token": token},
                                "body": json.dumps({"product_id": a.product, "quantity": 1})}) + "\n")
    print(len(carts))


def cmd_probe(a):
    cid, token = owned(a.out_dir, a.owners, a.owner)[0]
    start = time.monotonic()
    key = str(uuid.uuid4())
    while time.monotonic() - start < a.timeout:
        try:
            status, _ = call(a.base, "POST", f"/api/v1/carts/{cid}/items",
                             body={"product_id": a.product, "quantity": 1},
                             headers={"X-Cart-Token": token, "Idempotency-Key": key}, timeout=a.timeout)
            if status == 200:
                print(f"{time.monotonic() - start:.2f}")
                return
        except OSError:
            pass
        time.sleep(0.05)
    die(f"no add was acknowledged within {a.timeout} s")


def cmd_ready(a):
    start = time.monotonic()
    while time.monotonic() - start < a.timeout:
        try:
            status, _ = call(a.base, "GET", "/readyz", timeout=2)
            if status == 200:
                print(f"{time.monotonic() - start:.2f}")
                return
        except OSError:
            pass
        time.sleep(0.05)
    die(f"{a.base} was not ready within {a.timeout} s")


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("carts")
    c.add_argument("base")
    c.add_argument("out_dir")
    c.add_argument("--carts", type=int, default=400)
    r = sub.add_parser("requests")
    r.add_argument("out_dir")
    r.add_argument("owners")
    r.add_argument("--owner", required=True)
    r.add_argument("--product", required=True)
    pr = sub.add_parser("probe")
    pr.add_argument("base")
    pr.add_argument("out_dir")
    pr.add_argument("owners")
    pr.add_argument("--owner", required=True)
    pr.add_argument("--product", required=True)
    pr.add_argument("--timeout", type=float, default=60)
    rd = sub.add_parser("ready")
    rd.add_argument("base")
    rd.add_argument("--timeout", type=float, default=120)
    a = p.parse_args()
    {"carts": cmd_carts, "requests": cmd_requests, "probe": cmd_probe, "ready": cmd_ready}[a.cmd](a)


if __name__ == "__main__":
    main()
