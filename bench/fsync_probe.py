#!/usr/bin/env python3
"""The disk's own commit latency: 8 kB written and fdatasync'ed in a loop, as PostgreSQL's WAL flush does.

A durable add-to-cart waits for one such flush (synchronous_commit = on), so the disk's fdatasync tail is a
floor under the add's tail that no change in the node can lower. Run it on the volume of PostgreSQL's data
directory, beside (or instead of) a latency benchmark, to tell the disk's stalls from the server's:

    bench/fsync_probe.py --dir var/run --seconds 15 [--interval-ms 10] [--json]

Bounded in time, writes one 1 MB file in --dir and deletes it. Prints the count, p50/p99/p99.9/max in ms and
how many flushes took longer than 20 and 50 ms; with --json also the wall-clock time of each flush over 20 ms,
to line up with a load generator's per-second timeline. --interval-ms paces the flushes (default: back to
back), so that it samples the disk beside a benchmark without loading it much.
"""
import argparse
import json
import os
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default=".", help="a directory on the volume to probe (default: .)")
    ap.add_argument("--seconds", type=float, default=15.0, help="how long to probe (default 15, at most 600)")
    ap.add_argument("--interval-ms", type=float, default=0.0, help="pause between flushes (default 0, at most 1000)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a line of text")
    args = ap.parse_args()
    if not 0 < args.seconds <= 600:
        ap.error("--seconds must be in (0, 600]")
    if not 0 <= args.interval_ms <= 1000:
        ap.error("--interval-ms must be in [0, 1000]")
    path = os.path.join(args.dir, f".fsync_probe.{os.getpid()}")
    block = b"\x5a" * 8192
    lat_ms = []
    slow = []  # [unix time at the flush's start, ms] of each flush over 20 ms
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        end = time.monotonic() + args.seconds
        i = 0
        while time.monotonic() < end:
            os.pwrite(fd, block, (i % 128) * len(block))  # a 1 MB ring, like a WAL segment's tail
            wall = time.time()
            t = time.perf_counter()
            os.fdatasync(fd)
            ms = (time.perf_counter() - t) * 1000.0
            lat_ms.append(ms)
            if ms > 20.0:
                slow.append([round(wall, 3), round(ms, 3)])
            i += 1
            if args.interval_ms > 0:
                time.sleep(args.interval_ms / 1000.0)
    finally:
        os.close(fd)
        os.unlink(path)
    if not lat_ms:
        print("no flush completed", file=sys.stderr)
        return 1
    lat_ms.sort()
    n = len(lat_ms)

    def pct(p: float) -> float:
        return lat_ms[min(n - 1, int(n * p))]

    out = {
        "flushes": n,
        "seconds": args.seconds,
        "p50_ms": round(pct(0.50), 3),
        "p99_ms": round(pct(0.99), 3),
        "p999_ms": round(pct(0.999), 3),
        "max_ms": round(lat_ms[-1], 3),
        "over_20ms": sum(1 for x in lat_ms if x > 20.0),
        "over_50ms": sum(1 for x in lat_ms if x > 50.0),
        "slow": slow,
    }
    if args.json:
        print(json.dumps(out))
    else:
        print(f"fdatasync of 8 kB on {os.path.abspath(args.dir)}: {n} flushes in {args.seconds:g} s; "
              f"p50 {out['p50_ms']} ms, p99 {out['p99_ms']} ms, p99.9 {out['p999_ms']} ms, max {out['max_ms']} ms; "
              f"{out['over_20ms']} over 20 ms, {out['over_50ms']} over 50 ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
