#!/usr/bin/env python3
"""The load and the checks of bench/drills/pg_disk_full.sh (run by it; loopback only, bounded).

Shoppers add one unit at a time to their carts, each add with its own Idempotency-Key. After a few
seconds the disk of PostgreSQL's data directory is filled (--fill: a file written until ENOSPC); the load
goes on against the full disk; then the file is removed (and PostgreSQL started again if the full disk
stopped it: $DRILL_PG_START). Every add whose outcome is unknown is retried with its key until it is
acknowledged. Checks: every answer is 200, or a 503 problem+json while the disk is full; the node never
exits; it serves again without a restart; every cart holds exactly its acknowledged adds.
"""
import argparse
import collections
import errno
import os
import subprocess
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from issue10_prepare import client  # noqa: E402
from issue11_prepare import mint_access_token  # noqa: E402

SHOPPERS = 20
THREADS = 3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--secret", required=True)
    ap.add_argument("--fill", required=True, help="the file that fills the disk")
    ap.add_argument("--node-pid", type=int, required=True)
    ap.add_argument("--admin-email", required=True)
    ap.add_argument("--admin-password", required=True)
    a = ap.parse_args()

    setup = client(a.base)
    # Spread over the demo catalog: no line outgrows its product's stock.
    _, page = setup.call("GET", "/api/v1/products?limit=100")
    _, login = setup.call("POST", "/api/v1/auth/login", body={"email": a.admin_email, "password": a.admin_password})
    admin = {"Authorization": "Bearer " + login["access_token"]}
    products = [p["id"] for p in page["data"][:20]]
    for p in products:
        setup.call("POST", f"/api/v1/inventory/{p}/adjustments", body={"delta": 100_000, "reason": "disk drill"},
                   headers=admin)
    shoppers = []
    for _ in range(SHOPPERS):
        user = str(uuid.uuid4())
        token = mint_access_token(a.secret, user, 600)  # within the node's 15 min access token lifetime
        _, cart = setup.call("POST", "/api/v1/carts", headers={"Authorization": "Bearer " + token}, expect=(201,))
        shoppers.append({"token": token, "cart": cart["id"], "acked": set()})

    lock = threading.Lock()
    tally = collections.Counter()
    unexpected = []
    pending = []  # (shopper index, key)
    acked = [0]
    running = [True]
    disk_full = [False]

    def add(c, i, key):
        s = shoppers[i]
        product = products[hash(key) % len(products)]
        return c.call("POST", f"/api/v1/carts/{s['cart']}/items", body={"product_id": product, "quantity": 1},
                      headers={"Authorization": "Bearer " + s["token"], "Idempotency-Key": key},
                      expect=range(100, 600))

    def worker(t):
        c = client(a.base)
        n = 0
        while running[0]:
            i = (n * THREADS + t) % SHOPPERS
            key = f"disk-{t}-{n}"
            n += 1
            try:
                status, body = add(c, i, key)
            except Exception:  # no answer (timeout, reset)
                with lock:
                    tally["no answer"] += 1
                    pending.append((i, key))
                c = client(a.base)
                time.sleep(0.02)
                continue
            with lock:
                code = (body or {}).get("code", "") if status >= 400 else ""
                tally[f"{status} {code}".strip()] += 1
                if status == 200:
                    shoppers[i]["acked"].add(key)
                    acked[0] += 1
                else:
                    pending.append((i, key))
                    if status != 503:
                        unexpected.append(f"{status} {body}")
            if status != 200:
                time.sleep(0.02)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
    for th in threads:
        th.start()

    def wait_for(cond, limit):
        end = time.time() + limit
        while time.time() < end:
            if cond():
                return True
            time.sleep(0.05)
        return False

    ok = True
    report = []
    wait_for(lambda: acked[0] >= 100, 30)
    before_fill = acked[0]
    # Fill the disk.
    written = 0
    with open(a.fill, "wb") as f:
        chunk = b"\0" * (1 << 20)
        try:
            while True:
                f.write(chunk)
                f.flush()
                written += 1
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise
    disk_full[0] = True
    filled_at = time.time()
    print(f"disk filled after {before_fill} acknowledged adds", file=sys.stderr, flush=True)
    report.append(f"disk filled: {written} MB written until ENOSPC; {before_fill} adds acknowledged before")
    # Under the full disk: the load goes on for a while.
    refused = wait_for(lambda: tally["503 database_unavailable"] + tally["503 service_unavailable"] + tally["503 timeout"] > 0, 30)
    time.sleep(5)
    during = dict(tally)
    pg_up = subprocess.call(os.environ["DRILL_PG_READY"], shell=True) == 0
    report.append(f"while full ({time.time() - filled_at:.1f} s): refused cleanly: {refused}; PostgreSQL "
                  f"{'still up' if pg_up else 'stopped'}; answers so far: {during}")
    print(report[-1], file=sys.stderr, flush=True)
    # Space comes back.
    os.remove(a.fill)
    freed_at = time.time()
    if not pg_up:
        subprocess.check_call(os.environ["DRILL_PG_START"], shell=True)
        report.append("PostgreSQL started again")
    at_free = acked[0]
    served = wait_for(lambda: acked[0] >= at_free + 100, 60)
    report.append(f"serving again: {served}, {time.time() - freed_at:.1f} s after the space came back (+100 adds)")
    running[0] = False
    for th in threads:
        th.join()

    # Settle every unknown outcome with its own key.
    c = client(a.base)
    unsettled = 0
    last = ""
    end = time.time() + 90  # for all of them
    for i, key in pending:
        while time.time() < end:
            try:
                status, body = add(c, i, key)
                last = f"{status} {body}"
            except Exception as e:
                c = client(a.base)
                status = 0
                last = repr(e)
            if status == 200:
                shoppers[i]["acked"].add(key)
                break
            time.sleep(0.1)
        else:
            unsettled += 1
    # Every acknowledged add is in its cart once.
    lost_or_doubled = []
    for s in shoppers:
        _, cart = c.call("GET", f"/api/v1/carts/{s['cart']}", headers={"Authorization": "Bearer " + s["token"]})
        have = sum(line["quantity"] for line in cart["items"])
        if have != len(s["acked"]):
            lost_or_doubled.append(f"cart {s['cart']}: {have} units, {len(s['acked'])} acknowledged adds")
    node_alive = os.path.exists(f"/proc/{a.node_pid}")

    total = sum(len(s["acked"]) for s in shoppers)
    report.append(f"answers: {dict(tally)}")
    report.append(f"requests of unknown outcome retried with their key: {len(pending)}, unsettled: {unsettled}"
                  + (f" (last answer: {last[:200]})" if unsettled else ""))
    report.append(f"acknowledged adds: {total}; carts that differ: {len(lost_or_doubled)}")
    report.append(f"node process alive throughout: {node_alive}")
    for line in report:
        print(line)
    for line in lost_or_doubled[:10] + unexpected[:10]:
        print("VIOLATION:", line)
    ok = refused and served and not unsettled and not lost_or_doubled and not unexpected and node_alive
    print("RESULT:", "pass" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
