"""docs/benchmarks.md from a comparison's JSON results: a pure function of them, so the report
can be rendered again (benches/load/render) and never needs typing by hand."""

from .rows import CONFIGS, ROWS
from .stats import VERDICT_RULE, head_to_head, median

PRIMARY = "Buckler"
TOOL_NAMES = {"wrk": "wrk (HTTP/1.1)", "h2": "h2load (HTTP/2)"}
METRIC_NAMES = {"rps": "requests/s", "p99": "p99 latency"}


def fmt_ns(ns):
    if ns < 1e3:
        return f"{ns:.1f} ns"
    if ns < 1e6:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns / 1e6:.2f} ms"


def mib(kib):
    return f"{kib / 1024:.1f} MiB"


def peers_of(config_data):
    """Everything Buckler is judged against: every contender but itself and `direct`."""
    return [name for name in config_data["contenders"] if name not in (PRIMARY, "direct")]


def builds_of(data):
    return {name for name, _, _ in data["builds"]}


def is_ours(data, name):
    """Another Buckler build (`--also`) or a variant of Buckler (`Buckler, Redis store`): judged
    like a peer, for the ratio, but not counted against the targets."""
    return name in builds_of(data) or name.startswith(PRIMARY + ", ")


def row_part(config_data, row):
    """The part of a configuration's results that holds `row`'s runs (`{"contenders",
    "results"}`), or None when that part did not run."""
    if row.section == "plain":
        return config_data if "results" in config_data else None
    # The failure and middleware rows are "plain" transport but have their own sections.
    sections = config_data.get("sections", {})
    return sections.get(row.tool.split("-")[0])


def judged_rows(data):
    """[(config id, Row, peer, head_to_head result or None)] for every measured row."""
    judged = []
    for row in ROWS:
        config = data["configs"].get(row.config)
        if row.planned or config is None:
            continue
        part = row_part(config, row)
        if part is None or PRIMARY not in part["results"]:
            continue
        ours = part["results"][PRIMARY][row.tool]
        for peer in peers_of(part):
            theirs = part["results"][peer].get(row.tool)
            if theirs is None:
                continue
            result = head_to_head(ours, theirs, row.metric, higher_is_better=row.metric != "p99")
            judged.append((row.config, row, peer, result))
    return judged


def verdict_cell(result):
    if result is None:
        return "no round where both served"
    verdict = result["verdict"] or "— (too few rounds)"
    return f"**{verdict}**" if result["verdict"] else verdict


def summary(data, judged):
    lines = ["## Summary", ""]
    if data["mode"] == "quick":
        return lines + ["A quick smoke run: one short round per contender, so no verdicts. "
                        "Its numbers only show that the runner works.", ""]
    peer_rows = [(cid, row, peer, r) for cid, row, peer, r in judged
                 if not is_ours(data, peer) and r]
    for config in CONFIGS:
        mine = [(row, peer, r) for cid, row, peer, r in peer_rows if cid == config.id]
        if not mine:
            continue
        counts = {v: sum(r["verdict"] == v for _, _, r in mine) for v in ("ahead", "level", "behind")}
        lines.append(f"- **{config.title}:** ahead in {counts['ahead']}, level in "
                     f"{counts['level']}, behind in {counts['behind']} of {len(mine)} rows.")
    behind = [f"{row.title} against {peer} ({cid})" for cid, row, peer, r in peer_rows
              if r["verdict"] == "behind"]
    h2_not_ahead = [f"{peer} ({cid})" for cid, row, peer, r in peer_rows
                    if row.tool == "h2" and row.metric == "rps" and r["verdict"] != "ahead"]
    tls_rows = [(cid, row, peer, r) for cid, row, peer, r in peer_rows if row.transport == "tls"]
    tls_missed = [f"{row.title} against {peer} ({cid}): {r['verdict']}"
                  for cid, row, peer, r in tls_rows
                  if r["verdict"] == "behind" or (row.tool == "tls-h2" and r["verdict"] != "ahead")]
    p99_behind = [f"{peer} ({cid})" for cid, row, peer, r in peer_rows
                  if row.metric == "p99" and r["verdict"] == "behind"]
    lines += [
        "",
        "Targets (issue 29), by the rule above:",
        "",
        "- No row behind any peer: " + ("met." if not behind else "**missed**: " + "; ".join(behind) + "."),
        "- Ahead of every peer over HTTP/2: " + ("met." if not h2_not_ahead else
                                                 "**missed** against " + ", ".join(h2_not_ahead) + "."),
        "- p99 not behind: " + ("met." if not p99_behind else "**missed** against " + ", ".join(p99_behind) + "."),
        "- Over TLS, not behind any peer and ahead of each over HTTP/2 (issue 30): "
        + ("not measured in this run." if not tls_rows else
           "met." if not tls_missed else "**missed**: " + "; ".join(tls_missed) + "."),
        "",
    ]
    return lines


def run_section(data):
    settings, info = data["settings"], data["machine"]
    builds = "; ".join(f"`{name}`: {kind} (`{binary}`)" for name, binary, kind in data["builds"])
    return [
        "## This run",
        "",
        f"- Date: {data['date']}",
        f"- Machine: {info['cores']} cores, {info['model']}, Linux {info['kernel']}",
        "- Peers: " + "; ".join(f"{k}: {v}" for k, v in info["versions"].items()),
        f"- Buckler builds: {builds}",
        f"- Mode: {'quick (smoke run; numbers not meaningful)' if data['mode'] == 'quick' else 'full'}; "
        f"{settings['rounds']} round{'s' if settings['rounds'] != 1 else ''} of "
        f"{settings['seconds']} s per contender and tool, "
        "contenders interleaved round by round, in reverse order every other round; "
        f"wrk {settings['connections']} connections; h2load {settings['h2_connections']} "
        f"connections × {settings['h2_streams']} streams",
        "",
    ]


def config_section(config, config_data, judged):
    lines = [f"## {config.title}", "", config.description, ""]
    if "results" in config_data:
        lines += plain_tables(config_data)
    sections = config_data.get("sections", {})
    if "tls" in sections:
        lines += tls_table(sections["tls"])
    if "failure" in sections:
        lines += failure_table(sections["failure"])
    if "middleware" in sections:
        lines += middleware_table(sections["middleware"])
    lines += [
        "### Head to head",
        "",
        "| row | Buckler against | ratio | 95 % interval | ahead in rounds | verdict |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for cid, row, peer, result in judged:
        if cid != config.id:
            continue
        if result is None:
            lines.append(f"| {row.title} | {peer} | — | — | — | {verdict_cell(result)} |")
            continue
        interval = (f"{result['low']:.2f}–{result['high']:.2f}×" if result["verdict"]
                    else "—")  # one or two rounds make no interval
        lines.append(f"| {row.title} | {peer} | {result['ratio']:.2f}× | {interval} | "
                     f"{result['ahead_in']} of {result['rounds']} | {verdict_cell(result)} |")
    lines.append("")
    return lines


def med(runs, key):
    values = [x[key] for x in runs if key in x]
    return median(values)


def times(value, reference):
    return f"{value / reference:.2f}" if reference and value == value else "—"


def tls_table(part):
    results = part["results"]
    b = results[PRIMARY]
    b_wrk, b_h2, b_hs = (med(b[t], "rps") for t in ("tls-wrk", "tls-h2", "tls-handshake"))
    lines = [
        "### Over TLS (each proxy terminating TLS with the same certificate, "
        f"{part['certificate']})",
        "",
        "| contender | HTTPS/1.1 req/s (wrk) | × Buckler | p99 ms | h2 over TLS req/s | × Buckler "
        "| new TLS connections/s | × Buckler | failed | negotiated (h2 / handshake runs) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for name in part["contenders"]:
        r = results[name]
        wrk_rps, h2, hs = (med(r[t], "rps") for t in ("tls-wrk", "tls-h2", "tls-handshake"))
        failed = sum(x["failed"] for t in r.values() for x in t)
        seen = []
        for tool in ("tls-h2", "tls-handshake"):
            for x in r[tool]:
                if x.get("tls") and x["tls"] not in seen:
                    seen.append(x["tls"])
        lines.append(f"| {name} | {wrk_rps:,.0f} | {times(wrk_rps, b_wrk)} | "
                     f"{med(r['tls-wrk'], 'p99'):.3f} | {h2:,.0f} | {times(h2, b_h2)} | "
                     f"{hs:,.0f} | {times(hs, b_hs)} | {failed} | {' / '.join(seen) or '—'} |")
    lines += [
        "",
        "A client offering TLS 1.2 and 1.3 and ALPN `h2` and `http/1.1` is given: "
        + "; ".join(f"{name}: {text}" for name, text in part["negotiated"].items()) + ". "
        "New TLS connections: batches of "
        f"{part['handshake_batch']} concurrent h2load `--h1` clients, each a full handshake "
        "(no resumption) and one GET; wrk keeps its connections (one handshake each).",
        "",
    ]
    return lines


def failure_table(part):
    results = part["results"]
    lines = [
        f"### One of three upstreams killed (SIGKILL) for {part['down_s']} s of a "
        f"{part['run_s']} s wrk run, then started again",
        "",
        "| contender | req/s (median) | p99 ms | max ms | failed requests (all rounds) | "
        "requests |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in part["contenders"]:
        runs = results[name]["failure"]
        lines.append(f"| {name} | {med(runs, 'rps'):,.0f} | {med(runs, 'p99'):.3f} | "
                     f"{max((x['max'] for x in runs), default=float('nan')):.3f} | "
                     f"**{sum(x['failed'] for x in runs)}** | "
                     f"{sum(x['requests'] for x in runs):,} |")
    lines += [
        "",
        "Failed: non-2xx responses and socket errors as wrk counts them (GETs only: every one "
        "may be retried); p99 and max over the whole run. Buckler runs its defaults (circuit breakers, one retry on another "
        "upstream); NGINX `proxy_next_upstream error timeout http_502 http_503` "
        "(`max_fails=1 fail_timeout=10s`); HAProxy `option redispatch 1`, `retries 2`, "
        "`retry-on conn-failure empty-response response-timeout 502 503`, `check inter 1s "
        "observe layer7 error-limit 10 on-error mark-down`. "
        + "".join(f"`{name}`: `{config.rstrip(',')}`. "
                  for name, config in part.get("variants", {}).items()),
        "",
    ]
    return lines


def middleware_table(part):
    results = part["results"]
    b_rps = med(results[PRIMARY]["middleware"], "rps")
    lines = [
        "### API-key auth and a rate limit on the route (HTTP/1.1, wrk sending the key)",
        "",
        "| contender | req/s (median) | × Buckler | p50 ms | p99 ms | failed |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in part["contenders"]:
        runs = results[name]["middleware"]
        rps = med(runs, "rps")
        lines.append(f"| {name} | {rps:,.0f} | {times(rps, b_rps)} | {med(runs, 'p50'):.3f} | "
                     f"{med(runs, 'p99'):.3f} | {sum(x['failed'] for x in runs)} |")
    counters = part.get("buckler_counters", {})
    lines += [
        "",
        "Buckler: `api-key-auth` then `rate-limit` (a limit never reached, so the limiter "
        "decides every request and never refuses one) on a memory store, and the same on a "
        "Redis store (a `redis-server` on loopback: one `EVALSHA` per request). NGINX: a `map` "
        "on the key header (401 / 403) and `limit_req` on the client address; HAProxy: ACLs on "
        "the key header and a stick-table `http_req_rate` on the source address. Each was "
        "checked to answer 401 without the key, 403 with a wrong one, 200 with the key."
        + ("" if not counters else " Requests Buckler let through without the limiter "
           "deciding (SLA exceeded / store errors): " + "; ".join(
               f"{name}: {c['sla_exceeded']} / {c['store_errors']}" for name, c in counters.items())
           + "."),
        "",
    ]
    return lines


def docs_section(docs):
    lines = [
        "## Document load time (Buckler only, one core)",
        "",
        "Buckler started with one upstream serving a generated Swagger 2.0 document of the size "
        "of Microsoft Graph v1.0 (20 MB) and beta (47 MB); seconds from the process's start "
        "until its admin API answers, until it says `serving`, and until a route of the "
        "document answers; the load time is routed − up (fetch, parse, table built and "
        "published). Peak RSS (VmHWM) and RSS half a second after. Medians over the "
        "repetitions.",
        "",
        "| document | paths | operations | load time s | admin up s | serving s | routed s "
        "| peak RSS MiB | RSS after MiB | repetitions |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for entry in docs:
        runs = entry["runs"]
        load = median([r["routed_s"] - r.get("up_s", 0.0) for r in runs])
        lines.append(f"| {entry['bytes'] / 1e6:.1f} MB | {entry['paths']:,} | "
                     f"{entry['operations']:,} | {load:.2f} | {med(runs, 'up_s'):.2f} | "
                     f"{med(runs, 'serving_s'):.2f} | {med(runs, 'routed_s'):.2f} | "
                     f"{med(runs, 'peak_rss_kib') / 1024:.0f} | "
                     f"{med(runs, 'rss_after_kib') / 1024:.0f} | {len(runs)} |")
    return lines + [""]


def plain_tables(config_data):
    results = config_data["results"]
    b = results[PRIMARY]
    b_rps = median([r["rps"] for r in b["wrk"]])
    b_h2 = median([r["rps"] for r in b["h2"]])
    lines = [
        "### Requests through a weighted proxy (GET /hello, upstreams weighted 3:1)",
        "",
        "| contender | wrk req/s (median) | × Buckler | p50 ms | p99 ms | h2load req/s | × Buckler "
        "| h2load mean ms | peak RSS MiB | failed |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in config_data["contenders"]:
        r = results[name]
        rps = median([x["rps"] for x in r["wrk"]])
        h2 = median([x["rps"] for x in r["h2"]])
        failed = sum(x["failed"] for x in r["wrk"]) + sum(x["failed"] for x in r["h2"])
        peak = config_data["peak_rss_kib"].get(name)
        lines.append(
            f"| {name} | {rps:,.0f} | {rps / b_rps:.2f} | {median([x['p50'] for x in r['wrk']]):.3f} "
            f"| {median([x['p99'] for x in r['wrk']]):.3f} | "
            + (f"{h2:,.0f} | {h2 / b_h2:.2f} | {median([x['mean'] for x in r['h2']]):.3f}"
               if r["h2"] else "— | — | —")
            + (f" | {peak / 1024:.1f}" if peak else " | —")
            + f" | {failed} |")
    a, bb = config_data["share"]
    total = (a + bb) or 1
    lines += [
        "",
        f"Buckler's split over the upstreams during its wrk runs: {a:,} : {bb:,} requests = "
        f"{100 * a / total:.2f} % : {100 * bb / total:.2f} % (must be 75 % : 25 % ± 1 %).",
        "",
    ]
    return lines


def extras_section(data, config_data, extras):
    settings = data["settings"]
    b_p99 = median([r["p99"] for r in config_data["results"][PRIMARY]["wrk"]])
    big, idle = extras["big_body"], extras["idle_connections"]
    before, during = idle["rss_kib"]
    idle_rss = config_data["idle_rss_kib"].get(PRIMARY, 0)
    lines = [
        "## Also measured (one core per proxy, on Buckler)",
        "",
        f"| {big['mb']} MB response streamed through | MB/s |",
        "| --- | ---: |",
    ]
    lines += [f"| {name} | {speed:,.0f} |" for name, speed in big["speeds"].items()]
    lines += [
        "",
        f"- RSS while streaming {big['mb']} MB: {mib(big['buckler_rss_kib'][0])} at the start, "
        f"{mib(big['buckler_rss_kib'][1])} at the peak (flat means the body is not buffered).",
        f"- RSS idle after start: {mib(idle_rss)}; with {idle['count']:,} idle keep-alive client "
        f"connections: {mib(during)} (before opening them: {mib(before)}; "
        f"{(during - before) / idle['count']:.1f} KiB per connection).",
        "- User-space instructions per proxied `GET /hello` (callgrind; the same for the same "
        "binary however busy the machine is; the kernel's share is not counted): "
        + "; ".join(f"{build}: " + ", ".join(f"{label} {count:,.0f}" for label, count in counts.items())
                    for build, counts in extras["instructions"].items()) + ".",
    ]
    for label, outcome in extras["under_load"].items():
        lines.append(f"- Under wrk load, {label}: {outcome['requests']:,} requests, "
                     f"**{outcome['failed']} failed**, p99 {outcome['p99']:.3f} ms, max "
                     f"{outcome['max']:.3f} ms (steady state: p99 {b_p99:.3f} ms"
                     + (f"; the same load just before, without it: p99 {outcome['quiet_p99']:.3f} ms"
                        if "quiet_p99" in outcome else "") + ").")
    lines.append("")
    return lines


def limits_section(data):
    """The fixed limits: thresholds, not comparisons, so met / missed rather than a verdict."""
    criterion = {name: ns for name, ns, _ in data["criterion"]}
    rows = []

    def row(target, measured, met):
        verdict = "—" if met is None else ("met" if met else "**missed**")
        rows.append(f"| {target} | {measured} | {verdict} |")

    for name, limit, label in (
            ("route_lookup/hit/1000", 300, "route lookup over 1,000 templates (hit) < 300 ns"),
            ("route_lookup/miss/1000", 300, "route lookup over 1,000 templates (miss) < 300 ns"),
            ("weighted_pick/100", 50, "weighted pick at 100 upstreams < 50 ns"),
            ("publish_table/1000_upstreams_1000_templates", 5e6,
             "publishing a 1,000-upstream, 1,000-template table < 5 ms")):
        if name in criterion:
            row(label, fmt_ns(criterion[name]), criterion[name] < limit)
        else:
            row(label, "no criterion result (run `cargo bench -p buckler-benches`)", None)
    for config in CONFIGS:
        config_data = data["configs"].get(config.id) or {}
        where = f" — {config.id}"
        failure = config_data.get("sections", {}).get("failure")
        if failure and PRIMARY in failure["results"]:
            runs = failure["results"][PRIMARY]["failure"]
            failed = sum(x["failed"] for x in runs)
            row("0 failed GETs through Buckler while one of three upstreams is killed and "
                "comes back" + where,
                f"{failed} of {sum(x['requests'] for x in runs):,}", failed == 0)
        extras = config_data.get("extras")
        if not extras:
            continue
        if "idle_connections" in extras:
            idle_rss = config_data["idle_rss_kib"].get(PRIMARY, 0)
            idle, big = extras["idle_connections"], extras["big_body"]
            start, peak = big["buckler_rss_kib"]
            row("proxy idle RSS < 20 MB" + where, mib(idle_rss), idle_rss / 1024 < 20)
            row(f"RSS with {idle['count']:,} idle connections < 100 MB"
                + ("" if idle["count"] >= 10_000 else " (quick mode: fewer connections)") + where,
                mib(idle["rss_kib"][1]), idle["rss_kib"][1] / 1024 < 100)
            # Flat: the body is not buffered. The allocator's page reuse moves RSS by a few MiB
            # either way; buffering would move it by the body's size.
            row(f"RSS flat while streaming {big['mb']} MB (grows < 16 MiB)" + where,
                f"{mib(start)} → {mib(peak)}", peak - start < 16 * 1024)
        for label, outcome in extras["under_load"].items():
            row(f"0 failed requests, {label}{where}",
                f"{outcome['failed']} of {outcome['requests']:,}", outcome["failed"] == 0)
        # "No request latency spike while a big table publishes": p99 on the busy domain stays
        # within twice that of the same load just before, without the change.
        for label, outcome in extras["under_load"].items():
            if outcome.get("spike"):
                row(f"no latency spike (p99 ≤ 2× the same load just before), "
                    f"{label.split(' (')[0]}{where}",
                    f"p99 {outcome['p99']:.2f} vs {outcome['quiet_p99']:.2f} ms",
                    outcome["p99"] <= 2 * outcome["quiet_p99"])
    return ["## Limits", "", "| limit | this run | |", "| --- | --- | --- |"] + rows + [""]


def planned_section():
    planned = [row for row in ROWS if row.planned]
    if not planned:
        return []
    lines = ["## Rows not measured yet", "",
             "Defined in `benches/load/lib/rows.py`; the issue named adds the measurement.", ""]
    lines += [f"- {row.title} ({row.config}, {row.transport}): {row.planned}." for row in planned]
    return lines + [""]


def render(data):
    judged = judged_rows(data)
    lines = [
        "# Benchmarks",
        "",
        "Generated by `benches/load/render` from the results of `benches/load/compare`: do not "
        "edit by hand; run them again instead. How to run, and what each row means: "
        "[benches/README.md](../benches/README.md); what was learnt on the way: "
        "[performance-notes.md](performance-notes.md).",
        "",
        VERDICT_RULE,
        "",
    ]
    lines += summary(data, judged)
    lines += run_section(data)
    for config in CONFIGS:
        if config.id in data["configs"]:
            lines += config_section(config, data["configs"][config.id], judged)
    lines += [
        "`direct` is wrk against one NGINX upstream with no proxy: the limit of this machine's "
        "loopback and load generator. The `same headers` rows are NGINX and HAProxy configured "
        "to do what SPEC §9 has Buckler do to every exchange (append `X-Forwarded-For`; set "
        "`X-Forwarded-Proto` and `X-Forwarded-Host`; keep or generate `X-Request-Id`, forward "
        "and echo it; add `Via` to the response): equal work. The plain rows only forward.",
        "",
    ]
    one_core = data["configs"].get("one-core")
    extras = one_core.get("extras") if one_core else None
    if extras:
        lines += extras_section(data, one_core, extras)
    for config in CONFIGS:
        docs = (data["configs"].get(config.id) or {}).get("sections", {}).get("docs")
        if docs:
            lines += docs_section(docs)
    lines += limits_section(data)
    lines += planned_section()
    if data["criterion"]:
        lines += [
            "## Hot path (criterion medians, from the last `cargo bench -p buckler-benches`)",
            "",
            "| bench | median | measured |",
            "| --- | ---: | --- |",
        ]
        lines += [f"| `{name}` | {fmt_ns(ns)} | {stamp} |" for name, ns, stamp in data["criterion"]]
        lines.append("")
    return "\n".join(lines)
