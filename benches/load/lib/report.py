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


def judged_rows(data):
    """[(config id, Row, peer, head_to_head result or None)] for every measured row."""
    judged = []
    for row in ROWS:
        config = data["configs"].get(row.config)
        if row.planned or config is None:
            continue
        ours = config["results"][PRIMARY][row.tool]
        for peer in peers_of(config):
            theirs = config["results"][peer][row.tool]
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
    ours = builds_of(data)
    peer_rows = [(cid, row, peer, r) for cid, row, peer, r in judged if peer not in ours and r]
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
        "- Over TLS: not measured yet (see *Rows not measured yet*).",
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
    results = config_data["results"]
    b = results[PRIMARY]
    b_rps = median([r["rps"] for r in b["wrk"]])
    b_h2 = median([r["rps"] for r in b["h2"]])
    lines = [
        f"## {config.title}",
        "",
        config.description,
        "",
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
        extras = config_data.get("extras")
        if not extras:
            continue
        where = f" — {config.id}"
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
