#!/usr/bin/env python3
"""The analysis of bench/soak/soak.sh (standard library only): reads what the run left in $SOAK_TMP (the driver's
JSON lines closed.jsonl and soak.jsonl, the sampler's samples.tsv, the node's /metrics and exit status), prints the
tables and the checks, appends a dated section to bench/results.md (unless SOAK_APPEND=0) and exits 1 when a check
failed. Every setting comes from the SOAK_* environment variables soak.sh exports."""
import json
import os
import re
import sys

e = os.environ
tmp = e["SOAK_TMP"]


def path(name):
    return os.path.join(tmp, name)


def driver_lines(name):
    if not os.path.exists(path(name + ".jsonl")):
        return [], None
    lines = [json.loads(line) for line in open(path(name + ".jsonl")) if line.strip()]
    summary = next((d for d in lines if d["type"] == "summary"), None)
    return [d for d in lines if d["type"] == "interval"], summary


closed_intervals, closed = driver_lines("closed")
soak_intervals, soak = driver_lines("soak")
if soak is None:
    sys.exit("soak_report: the soak run left no summary")

# --- samples ---------------------------------------------------------------------------------------------------
COLS = ("epoch", "rss_kb", "fds", "threads", "db_conns", "outbox", "outbox_pending", "outbox_past_retention",
        "idem", "idem_expired", "wal_bytes", "checkpoints", "buf_checkpoint", "buf_backend", "autovacuums", "load1",
        "cpu_ticks", "pg_ticks", "machine_busy", "machine_iowait", "machine_all", "parked_kb", "parked_kind_kb")
FLOATS = ("epoch", "load1")
samples = []
for line in open(path("samples.tsv")):
    parts = line.split()
    if len(parts) == len(COLS):
        samples.append({k: (float(v) if k in FLOATS else int(v)) for k, v in zip(COLS, parts)})
# The node's CPU use between one sample and the previous one, in % of one core.
tck = float(e.get("SOAK_CLK_TCK", "100"))
for prev, cur in zip(samples, samples[1:]):
    dt = cur["epoch"] - prev["epoch"]
    cur["cpu_pct"] = 100 * (cur["cpu_ticks"] - prev["cpu_ticks"]) / tck / dt if dt > 0 else 0.0
samples[0]["cpu_pct"] = 0.0
# The node's memory outside its cache of parked entities: that cache fills for entities.keep_parked_ms (30 min) or
# up to its budget (entities.max_parked_mb per kind) by design, so RSS alone grows through a soak without a leak.
for s in samples:
    s["net_kb"] = s["rss_kb"] - s["parked_kb"]
start = float(e["SOAK_START_EPOCH"])
warm_end = start + float(e["SOAK_WARMUP"])
soak_end = warm_end + float(e["SOAK_MEASURED"])
# The node's resources after warm-up and before the driver stopped (the last sample, after it, shows the node idle).
post = [s for s in samples if warm_end <= s["epoch"] <= soak_end - 1]
if len(post) < 2:
    sys.exit("soak_report: fewer than 2 samples after the warm-up")
LEVEL_S = 30  # the after-warm-up and end levels: mean of the samples of the first / last 30 s


def level(key, at_end):
    if at_end:
        span = [s[key] for s in post if s["epoch"] >= post[-1]["epoch"] - LEVEL_S + 0.5]
    else:
        span = [s[key] for s in post if s["epoch"] <= post[0]["epoch"] + LEVEL_S - 0.5]
    return sum(span) / len(span)


checks = []  # (name, passed, detail)


def check(name, passed, detail):
    checks.append((name, bool(passed), detail))


def not_measured(name, detail):
    checks.append((name, None, detail))  # neither passed nor failed: the run did not set up its conditions


# --- routes ----------------------------------------------------------------------------------------------------
ratio_max, slack = float(e["SOAK_P99_RATIO"]), float(e["SOAK_P99_SLACK"])
MIN_N = 100
route_rows = []
unexpected_total = 0
five_xx = 0
for name, r in soak["routes"].items():
    n_unexp = sum(r["unexpected"].values())
    unexpected_total += n_unexp
    five_xx += sum(v for k, v in r["unexpected"].items() if k.startswith("5"))
    exp = ", ".join(f"{k}×{v}" for k, v in sorted(r["expected"].items())) or "—"
    unexp = ", ".join(f"{k}×{v}" for k, v in sorted(r["unexpected"].items())) or "0"
    if r["first_n"] >= MIN_N and r["last_n"] >= MIN_N and r["first_p99_ms"] > 0:
        ratio = r["last_p99_ms"] / r["first_p99_ms"]
        ok = not (ratio > ratio_max and r["last_p99_ms"] - r["first_p99_ms"] > slack)
        verdict = "ok" if ok else "GREW"
        if not ok:
            check(f"p99 stable: {name}", False, f"{r['first_p99_ms']:.1f} → {r['last_p99_ms']:.1f} ms ({ratio:.2f}×)")
        ratio_text = f"{ratio:.2f}"
    else:
        ratio_text, verdict = "—", f"n/a (<{MIN_N} per window)"
    route_rows.append((name, str(r["n"] + n_unexp), exp, unexp, f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}",
                       f"{r['first_p99_ms']:.1f} ({r['first_n']})", f"{r['last_p99_ms']:.1f} ({r['last_n']})",
                       ratio_text, verdict))
compared = [row for row in route_rows if row[8] != "—"]
grew = [row for row in compared if row[9] != "ok"]
check("p99 per route stable (last window vs first)", not grew,
      f"{len(compared)} routes compared, threshold {ratio_max:g}× (and > {slack:g} ms)"
      + (f"; grew: {', '.join(r[0] for r in grew)}" if grew else ""))

closed_unexpected = sum(sum(r["unexpected"].values()) for r in closed["routes"].values()) if closed else 0
closed_5xx = sum(v for r in (closed["routes"].values() if closed else []) for k, v in r["unexpected"].items()
                 if k.startswith("5"))

# The node's own count of 5xx answers over the whole run (measurement, warm-ups and soak included).
node_5xx, node_5xx_series = 0, []
for line in open(path("metrics.txt")):
    if line.startswith("mercato_http_requests_total{") and re.search(r'status="5\d\d"', line):
        n = int(float(line.rsplit(None, 1)[1]))
        node_5xx += n
        node_5xx_series.append(f"{line.split('{', 1)[1].split('}', 1)[0]} ×{n}")
metrics_read = os.path.getsize(path("metrics.txt")) > 0
# The access log says when and where (the driver records the measured time only; the node counts warm-ups too).
access_5xx = []
if os.path.exists(e["SOAK_NODE_LOG"]):
    for line in open(e["SOAK_NODE_LOG"], errors="replace"):
        if " request " in line and re.search(r" status=5\d\d ", line):
            f = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
            access_5xx.append(f"{line.split()[0]} {f.get('method')} {f.get('path')} → {f.get('status')} after "
                              f"{int(f.get('duration_us', '0')) / 1000:.0f} ms")
check("no 5xx", five_xx == 0 and closed_5xx == 0 and node_5xx == 0 and metrics_read,
      f"driver: {five_xx} in the soak, {closed_5xx} in the measurement; node /metrics: "
      + (f"{node_5xx} over the whole run" if metrics_read else "NOT READ")
      + (f" ({'; '.join(node_5xx_series[:3])})" if node_5xx_series else "")
      + (f"; access log: {' | '.join(access_5xx[:3])}" if access_5xx else ""))
check("no reply the mix did not ask for", unexpected_total == 0 and closed_unexpected == 0,
      f"{unexpected_total} in the soak, {closed_unexpected} in the measurement (deliberate: "
      f"{soak['deliberate_errors']} in the soak)"
      + ("; e.g. " + " | ".join(soak["unexpected_samples"][:3]) if soak["unexpected_samples"] else ""))

offered = float(e["SOAK_RATE"]) * float(e["SOAK_MEASURED"])
check("offered rate sustained (≤ 1% unsent)", soak["unsent"] <= 0.01 * offered,
      f"{soak['unsent']} of ~{offered:.0f} scheduled requests never sent; achieved {soak['rate']:.1f} of "
      f"{float(e['SOAK_RATE']):.1f} req/s")
ws_bad = soak["ws_unexpected_closes"] + soak["ws_connect_failures"] + soak["ws_by_type"]["error"]
check("WebSocket subscribers: none closed by the node, refused or answered an error", ws_bad == 0,
      f"{soak['ws_opened']} opened, {soak['ws_closed_by_client']} closed by the client, "
      f"{soak['ws_unexpected_closes']} closed otherwise, {soak['ws_connect_failures']} failed to connect, "
      f"{soak['ws_by_type']['error']} error messages")

# --- resources -------------------------------------------------------------------------------------------------
tol = float(e["SOAK_RSS_TOL"])
rss_base, rss_end = level("rss_kb", False) / 1024, level("rss_kb", True) / 1024
rss_min, rss_max = min(s["rss_kb"] for s in post) / 1024, max(s["rss_kb"] for s in post) / 1024
net_base, net_end = level("net_kb", False) / 1024, level("net_kb", True) / 1024
parked_base, parked_end = level("parked_kb", False) / 1024, level("parked_kb", True) / 1024
check(f"RSS less the parked entities flat after warm-up (end within ±{tol:.0%} of the after-warm-up level)",
      abs(net_end / net_base - 1) <= tol,
      f"{net_base:.1f} → {net_end:.1f} MB ({net_end / net_base - 1:+.1%}); RSS {rss_base:.1f} → {rss_end:.1f} MB "
      f"(min {rss_min:.1f}, max {rss_max:.1f}), of which parked entities {parked_base:.1f} → {parked_end:.1f} MB")
# RSS itself once the parked cache stopped growing. The check above leaves out what the allocator adds to the parked
# states (rounding, the table's buckets, pages kept while states are dropped and made on other threads), which grows
# with the cache; once the cache is full (every kind at its budget, or nothing more parked), RSS must stop too.
# Measured only when that happens early enough to leave a third of the run and 3 minutes (with the default
# budget it does not in 30 minutes: soak with a small MERCATO_ENTITIES_MAX_PARKED_MB for this one).
parked_full_band_kb = max(0.03 * parked_end * 1024, 1024)
full_at = len(post)  # the start of the trailing samples within the band of the end level
while full_at > 0 and abs(post[full_at - 1]["parked_kb"] - parked_end * 1024) <= parked_full_band_kb:
    full_at -= 1
full_at = full_at if full_at < len(post) else None
measured_s = post[-1]["epoch"] - post[0]["epoch"]
full_name = (f"RSS flat once the parked cache stopped growing (end within ±{tol:.0%} of the level in the first "
             f"{LEVEL_S} s after it)")
if full_at is not None and post[-1]["epoch"] - post[full_at]["epoch"] >= max(180, measured_s / 3):
    full_span = [s["rss_kb"] for s in post[full_at:] if s["epoch"] <= post[full_at]["epoch"] + LEVEL_S - 0.5]
    full_base = sum(full_span) / len(full_span) / 1024
    check(full_name, abs(rss_end / full_base - 1) <= tol,
          f"parked entities within ±{parked_full_band_kb / 1024:.1f} MB of their end level from "
          f"+{post[full_at]['epoch'] - start:.0f} s; RSS {full_base:.1f} → {rss_end:.1f} MB "
          f"({rss_end / full_base - 1:+.1%}) over the {post[-1]['epoch'] - post[full_at]['epoch']:.0f} s after")
else:
    not_measured(full_name, "the parked cache was still growing "
                 + (f"until +{post[full_at]['epoch'] - start:.0f} s" if full_at is not None else "at the end")
                 + f", which leaves less than a third of the run (and 3 minutes) after it; run with a smaller "
                 f"MERCATO_ENTITIES_MAX_PARKED_MB (budget {e['SOAK_PARKED_BUDGET_MB']} MB per kind)")
parked_budget = float(e["SOAK_PARKED_BUDGET_MB"])
parked_kind_max = max(s["parked_kind_kb"] for s in samples) / 1024
# Trimmed at each park scan (100 ms): the parks since the last scan may go past the budget until the next one.
check("parked entities within their budget (largest kind at most entities.max_parked_mb, + max(5%, 1 MB))",
      parked_kind_max <= parked_budget + max(0.05 * parked_budget, 1.0),
      f"largest kind at most {parked_kind_max:.1f} MB of {parked_budget:.0f} MB; all kinds at most "
      f"{max(s['parked_kb'] for s in samples) / 1024:.1f} MB")
fd_base, fd_end = level("fds", False), level("fds", True)
fd_allow = max(0.1 * fd_base, 20)
check("open fds flat (end within max(10%, 20) of the after-warm-up level)", abs(fd_end - fd_base) <= fd_allow,
      f"{fd_base:.0f} → {fd_end:.0f} (min {min(s['fds'] for s in post)}, max {max(s['fds'] for s in post)})")
db = [s["db_conns"] for s in post]
check("PostgreSQL connections flat (max − min ≤ 2 after warm-up)", max(db) - min(db) <= 2,
      f"{min(db)}..{max(db)} connections of the node to mercato_soak")

# --- retention-bound tables ------------------------------------------------------------------------------------
first, last = samples[0], samples[-1]
minutes_measured = max(1e-9, (post[-1]["epoch"] - post[0]["epoch"]) / 60)
outbox_rate = (post[-1]["outbox"] - post[0]["outbox"]) / minutes_measured
retention_s = int(e["SOAK_OUTBOX_RETENTION"])
batch = int(e["SOAK_OUTBOX_BATCH"])
# -1: not counted in that sample (soak.sh counts once a minute and at the end); no count at all fails the check.
past = max((s["outbox_past_retention"] for s in samples if s["outbox_past_retention"] >= 0), default=-1)
check("outbox bounded by its retention",
      past == 0 and last["outbox_pending"] < 2 * batch,
      f"~{first['outbox']} → ~{last['outbox']} rows (estimates; +{outbox_rate:.0f}/min after warm-up); undispatched at the end "
      f"{last['outbox_pending']} (max {max(s['outbox_pending'] for s in samples)}; limit {2 * batch}); rows "
      f"dispatched that occurred more than retention ({retention_s} s) + 2 sweeps ago: {past}")
keys_sent = soak["idempotency_keys_sent"] + (closed["idempotency_keys_sent"] if closed else 0)
idem_new = last["idem"] - first["idem"]
idem_rate = (post[-1]["idem"] - post[0]["idem"]) / minutes_measured
expired = max(s["idem_expired"] for s in samples)
check("idempotency_keys bounded by their 24 h expiry",
      expired == 0 and idem_new <= keys_sent,
      f"{idem_new} rows inserted (+{idem_rate:.0f}/min after warm-up) for "
      f"{keys_sent} Idempotency-Keys sent; rows past expiry + 2 housekeeping intervals: {expired}")

node_rc = int(open(path("node.rc")).read().strip() or "1")
check("the node served to the end and stopped cleanly (SIGTERM → exit 0)", node_rc == 0 and metrics_read,
      f"exit status {node_rc}")

log_lines = [line for line in open(e["SOAK_NODE_LOG"], errors="replace")] if os.path.exists(e["SOAK_NODE_LOG"]) else []
bad_log = [line for line in log_lines if re.match(r"\S+ (warning|error|critical) ", line)]
log_kinds = {}
for line in bad_log:
    k = re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}", "<uuid>", line.strip())
    k = re.sub(r"^\S+ ", "", k)  # the timestamp
    k = re.sub(r"\d+", "N", k)[:160]
    log_kinds[k] = log_kinds.get(k, 0) + 1

# --- output ----------------------------------------------------------------------------------------------------
def table(header, rows, left=(0,)):
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    out = []
    for i, row in enumerate([header] + rows):
        out.append("  ".join(str(c).ljust(widths[j]) if j in left else str(c).rjust(widths[j]) for j, c in enumerate(row)))
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def md_table(header, rows, left=(0,)):
    out = ["| " + " | ".join(header) + " |",
           "|" + "|".join("---" if i in left else "---:" for i in range(len(header))) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


route_header = ("route", "requests", "expected", "unexpected", "p50 ms", "p99 ms", "p99 first (n)", "p99 last (n)",
                "last/first", "p99 check")


res_header = ("resource (after warm-up)", "at warm-up end", "at the end", "min", "max", "change")
res_rows = [
    ("node RSS MB", f"{rss_base:.1f}", f"{rss_end:.1f}", f"{rss_min:.1f}", f"{rss_max:.1f}", f"{rss_end / rss_base - 1:+.1%}"),
    ("parked entities MB (node's count)", f"{parked_base:.1f}", f"{parked_end:.1f}",
     f"{min(s['parked_kb'] for s in post) / 1024:.1f}", f"{max(s['parked_kb'] for s in post) / 1024:.1f}",
     f"{parked_end - parked_base:+.1f} MB"),
    ("RSS less parked MB", f"{net_base:.1f}", f"{net_end:.1f}", f"{min(s['net_kb'] for s in post) / 1024:.1f}",
     f"{max(s['net_kb'] for s in post) / 1024:.1f}", f"{net_end / net_base - 1:+.1%}"),
    ("node open fds", f"{fd_base:.0f}", f"{fd_end:.0f}", str(min(s["fds"] for s in post)),
     str(max(s["fds"] for s in post)), f"{fd_end - fd_base:+.0f}"),
    ("node threads", str(post[0]["threads"]), str(post[-1]["threads"]), str(min(s["threads"] for s in post)),
     str(max(s["threads"] for s in post)), f"{post[-1]['threads'] - post[0]['threads']:+d}"),
    ("PostgreSQL connections", str(post[0]["db_conns"]), str(post[-1]["db_conns"]), str(min(db)), str(max(db)),
     f"{post[-1]['db_conns'] - post[0]['db_conns']:+d}"),
    ("outbox rows (estimate)", str(post[0]["outbox"]), str(post[-1]["outbox"]), str(min(s["outbox"] for s in post)),
     str(max(s["outbox"] for s in post)), f"+{outbox_rate:.0f}/min"),
    ("outbox undispatched", str(post[0]["outbox_pending"]), str(post[-1]["outbox_pending"]),
     str(min(s["outbox_pending"] for s in post)), str(max(s["outbox_pending"] for s in post)), ""),
    ("idempotency_keys inserted", str(post[0]["idem"]), str(post[-1]["idem"]), str(min(s["idem"] for s in post)),
     str(max(s["idem"] for s in post)), f"+{idem_rate:.0f}/min"),
    ("node CPU % of a core", f"{post[0]['cpu_pct']:.0f}", f"{post[-1]['cpu_pct']:.0f}",
     f"{min(s['cpu_pct'] for s in post):.0f}", f"{max(s['cpu_pct'] for s in post):.0f}", ""),
    ("machine load average (1 min)", f"{post[0]['load1']:.2f}", f"{post[-1]['load1']:.2f}",
     f"{min(s['load1'] for s in post):.2f}", f"{max(s['load1'] for s in post):.2f}", ""),
]
# Over time: a handful of evenly spaced samples of the whole run (measurement and warm-up included).
pick = sorted(set([0, len(samples) - 1] + [round(i * (len(samples) - 1) / 7) for i in range(8)]))
time_header = ("t (s from soak start)", "RSS MB", "parked MB", "fds", "threads", "PG conns", "outbox (est.)", "undispatched",
               "idempotency_keys inserted", "node CPU %", "load 1m")
time_rows = [(f"{samples[i]['epoch'] - start:+.0f}", f"{samples[i]['rss_kb'] / 1024:.1f}",
              f"{samples[i]['parked_kb'] / 1024:.1f}", str(samples[i]["fds"]),
              str(samples[i]["threads"]), str(samples[i]["db_conns"]), str(samples[i]["outbox"]),
              str(samples[i]["outbox_pending"]), str(samples[i]["idem"]), f"{samples[i]['cpu_pct']:.0f}",
              f"{samples[i]['load1']:.2f}") for i in pick]

nproc = int(e.get("SOAK_NPROC", "1"))


# Minute by minute (measurement and soak): the worst 10-s p99 of any route beside what the machine and the database
# did in that minute, to line latency spikes up with CPU saturation, I/O wait, checkpoints, backend writes and
# autovacuum.
def minute_rows():
    rows = []
    intervals = []
    for phase, ivs in (("maximum", closed_intervals), ("soak", soak_intervals)):
        prev_sent, prev_epoch = 0, None
        for d in ivs:
            # "sent" counts from the start of the phase; the first interval's length is the driver's --interval.
            span = d["epoch"] - prev_epoch if prev_epoch is not None else float(e["SOAK_INTERVAL"])
            d = dict(d, sent_delta=d["sent"] - prev_sent, span=span)
            prev_sent, prev_epoch = d["sent"], d["epoch"]
            intervals.append((phase if d["routes"] or phase == "maximum" else "warm-up", d))
    if not intervals or len(samples) < 2:
        return rows
    t0 = min(d["epoch"] for _, d in intervals) - 10
    t_end = max(d["epoch"] for _, d in intervals)
    n_min = int((t_end - t0) // 60) + 1
    page_mb = 8192 / 1e6
    for k in range(n_min):
        lo, hi = t0 + 60 * k, t0 + 60 * (k + 1)
        ivs = [(phase, d) for phase, d in intervals if lo < d["epoch"] <= hi]
        a = next((s for s in samples if s["epoch"] >= lo), None)
        b = next((s for s in reversed(samples) if s["epoch"] <= hi), None)
        if not ivs or a is None or b is None or b["epoch"] - a["epoch"] < 5:
            continue
        dt = b["epoch"] - a["epoch"]
        worst, worst_route = 0.0, ""
        for _, d in ivs:
            for name, r in d["routes"].items():
                if r["p99_ms"] > worst:
                    worst, worst_route = r["p99_ms"], name
        get_p99 = max((d["routes"].get("GET /products/{id}", {}).get("p99_ms", 0.0) for _, d in ivs), default=0.0)
        sent = sum(d["sent_delta"] for _, d in ivs)
        span = sum(d["span"] for _, d in ivs)
        all_ticks = max(1, b["machine_all"] - a["machine_all"])
        busy = (b["machine_busy"] - a["machine_busy"]) / all_ticks
        node_cpu = (b["cpu_ticks"] - a["cpu_ticks"]) / tck / dt
        pg_cpu = (b["pg_ticks"] - a["pg_ticks"]) / tck / dt
        phases = "/".join(dict.fromkeys(phase for phase, _ in ivs))
        rows.append((f"{lo - start:+.0f}", phases, f"{sent / span:.0f}", f"{worst:.0f}" if worst_route else "—",
                     worst_route or "—", f"{get_p99:.0f}" if worst_route else "—", f"{100 * busy:.0f}",
                     f"{100 * (b['machine_iowait'] - a['machine_iowait']) / all_ticks:.0f}",
                     f"{100 * node_cpu:.0f}", f"{100 * pg_cpu:.0f}", f"{100 * (busy * nproc - node_cpu - pg_cpu):.0f}",
                     f"{(b['wal_bytes'] - a['wal_bytes']) / 1e6 * 60 / dt:.0f}",
                     str(b["checkpoints"] - a["checkpoints"]),
                     f"{(b['buf_checkpoint'] - a['buf_checkpoint']) * page_mb * 60 / dt:.0f}",
                     f"{(b['buf_backend'] - a['buf_backend']) * page_mb * 60 / dt:.0f}",
                     str(b["autovacuums"] - a["autovacuums"])))
    return rows


minute_header = ("t (min start, s)", "phase", "req/s", "worst 10-s p99 ms", "route", "GET /products/{id} p99 ms",
                 "machine busy %", "iowait %", "node CPU %", "PostgreSQL CPU %", "other CPU %", "WAL MB/min", "checkpoints",
                 "checkpoint writes MB/min", "backend writes MB/min", "autovacuum/analyze runs")
minute_table = minute_rows()

# What the retention implies: with the current rates, the steady state once rows start being deleted.
bound_lines = [
    f"outbox: dispatched events are deleted {retention_s} s ({retention_s / 86400:g} days) after they occurred "
    f"(outbox.retention_s, swept every {os.environ.get('MERCATO_OUTBOX_RETENTION_INTERVAL_S', '60')} s); at "
    f"{outbox_rate:.0f} rows/min the table levels off near {outbox_rate * retention_s / 60:,.0f} rows, far beyond a "
    f"{e['SOAK_MINUTES']}-minute run: it can only grow here. Checked instead: nothing older than the retention is left, "
    f"and the dispatcher keeps up (undispatched rows stay below 2 × outbox.batch_size).",
    f"idempotency_keys: a key expires 24 h after its request (housekeeping deletes expired keys every 30 s); at "
    f"{idem_rate:.0f} keys/min the table levels off near {idem_rate * 1440:,.0f} rows. Within the run no key "
    f"expires, so the bound is the keys sent: {idem_new} rows inserted ≤ {keys_sent} Idempotency-Keys sent (add-to-cart "
    f"and checkout).",
]

max_rate = e["SOAK_MAX_RATE"]
mix = ", ".join(f"{k} {v:g}" for k, v in soak["mix"].items())
facts = [
    f"mix maximum (closed loop, {closed['connections']} connections, {closed['duration_s']:g} s): "
    f"{closed['rate']:.1f} req/s" if closed else f"no measurement: --rate {e['SOAK_RATE']}",
    f"soak: open model at {float(e['SOAK_RATE']):.1f} req/s"
    + (f" = {e['SOAK_FRACTION']} of the maximum" if max_rate else "")
    + f", {soak['connections']} connections, {e['SOAK_MINUTES']} min = {e['SOAK_WARMUP']} s warm-up + "
      f"{e['SOAK_MEASURED']} s measured; achieved {soak['rate']:.1f} req/s, {soak['unsent']} unsent; p99 windows "
      f"{soak['window_s']:g} s (first vs last); {soak['idle_connections_reopened']} idle connections closed by the "
      f"node's idle timeout and reopened",
    f"requests measured: {soak['ok']} ok, {soak['deliberate_errors']} client errors the mix asked for (404 unknown "
    f"product, 409 sold out, 402 declined card, 409 price_changed after its price changes), {soak['unexpected']} "
    f"unexpected; paid checkouts {soak['checkouts_paid_total']} "
    f"(warm-up included)",
    f"WebSocket: {soak['ws_clients']} subscribers held open (mean lifetime {os.environ.get('SOAK_WS_LIFETIME', '60')} s, "
    f"then reconnect): {soak['ws_opened']} connections opened, {soak['ws_messages']} messages (stock "
    f"{soak['ws_by_type']['stock']}, price {soak['ws_by_type']['price']}, order {soak['ws_by_type']['order']})",
    f"mix weights (per request): {mix}",
    f"node: default settings, rate limits on with every budget at {e['SOAK_BUDGET']}; log lines at warn or above: "
    f"{len(bad_log)}" + ("; most frequent: " + "; ".join(f"{n}× {k}" for k, n in sorted(log_kinds.items(), key=lambda kv: -kv[1])[:3])
                         if log_kinds else ""),
]

failed = [c for c in checks if c[1] is False]
measured_checks = [c for c in checks if c[1] is not None]
print()
print(table(route_header, route_rows))
print()
print(table(res_header, res_rows))
print()
print(table(time_header, time_rows))
print()
MINUTE_NOTE = ("machine busy and iowait: % of all cores; CPU of the node, PostgreSQL (all its processes) and the "
               "rest (the driver, Redis, anything else): % of one core; req/s: requests sent; p99: none in the "
               "soak's warm-up, which the driver does not measure")
print("minute by minute (" + MINUTE_NOTE + ")")
print(table(minute_header, minute_table, left=(0, 1, 4)))
print()
for f in facts:
    print(f)
for b in bound_lines:
    print(b)
print()
def check_verdict(ok):
    return "NOT MEASURED" if ok is None else "PASS" if ok else "FAIL"


for name, ok, detail in checks:
    print(f"{check_verdict(ok)}  {name}: {detail}")
print()
print(f"soak: {'FAILED: ' + str(len(failed)) + ' check(s)' if failed else 'all ' + str(len(measured_checks)) + ' checks passed'}"
      + (f" ({len(checks) - len(measured_checks)} not measured)" if len(measured_checks) < len(checks) else ""))

if e["SOAK_APPEND"] == "1":
    with open(e["SOAK_RESULTS"], "a") as out:
        out.write(f"\n## {e['SOAK_STARTED']} — issue 15 soak (bench/soak/soak.sh, {e['SOAK_MINUTES']} min) — rev "
                  f"{e['SOAK_REV']}, nproc {e['SOAK_NPROC']}\n\n")
        out.write(f"{e['SOAK_CPU']}; one node; load average before {e['SOAK_LOAD']}"
                  + (f"; {e['SOAK_NOTE']}" if e["SOAK_NOTE"] else "") + "\n\n")
        out.write("".join(f"- {f}\n" for f in facts) + "\n")
        out.write(md_table(route_header, route_rows) + "\n\n")
        out.write(md_table(res_header, res_rows) + "\n\n")
        out.write(md_table(time_header, time_rows) + "\n\n")
        out.write("Minute by minute (" + MINUTE_NOTE + "):\n\n")
        out.write(md_table(minute_header, minute_table, left=(0, 1, 4)) + "\n\n")
        out.write("".join(f"- {b}\n" for b in bound_lines) + "\n")
        out.write("".join(f"- **{check_verdict(ok)}** {name}: {detail}\n" for name, ok, detail in checks))
        out.write(f"\nResult: {'FAILED (' + str(len(failed)) + ' checks)' if failed else 'all checks passed'}.\n")
    print(f"appended to {e['SOAK_RESULTS']}")
sys.exit(1 if failed else 0)
