"""What the comparison measures: its configurations, and the head-to-head rows the report
judges by the verdict rule (`stats.VERDICT_RULE`).

A row that a later issue adds is defined here first with `planned` set: the report lists it
as not measured yet, and the issue that builds it gives it a measurement in `compare` and
clears `planned`."""

import dataclasses

from .common import cpus


@dataclasses.dataclass(frozen=True)
class Config:
    """One way of running every proxy: pinned to one CPU with one worker, or unpinned with
    `workers` workers."""

    id: str
    title: str
    pinned: bool
    workers: int
    same_headers: bool  # also run NGINX and HAProxy doing Buckler's header work (SPEC §9)
    pingora: bool
    # After the rounds, on Buckler: "all" the extra measurements (large body, idle connections,
    # ramp, reloads, fleet spikes, callgrind) or only the fleet "spikes" (SPEC §2 `workers`:
    # a big publish must not stall the request threads).
    extras: str
    description: str
    # Which measurements run in this configuration besides the plain rounds ("plain"): "tls",
    # "failure", "middleware" (each its own contenders and interleaved rounds) and "docs"
    # (document load time, on Buckler only).
    sections: tuple = ("plain", "tls")

    @property
    def proxy_cpus(self):
        """The CPUs the proxies run on: the first allowed CPU when pinned, None (all) if not."""
        return cpus()[0] if self.pinned else None


CONFIGS = [
    Config(
        id="one-core", title="One core per proxy (pinned)", pinned=True, workers=1,
        same_headers=True, pingora=True, extras="all",
        sections=("plain", "tls", "failure", "middleware", "docs"),
        description=(
            "Every proxy on the first CPU with one worker (Buckler: Tokio's current-thread "
            "scheduler, which it picks when its affinity mask holds one CPU; NGINX "
            "`worker_processes 1`; HAProxy `nbthread 1`; Pingora 1 thread); the two NGINX "
            "upstreams, wrk and h2load on the other CPUs.")),
    Config(
        id="two-core", title="Two workers per proxy (unpinned)", pinned=False, workers=2,
        same_headers=False, pingora=False, extras="spikes", sections=("plain", "tls"),
        description=(
            "As a user runs them on a small machine: nothing pinned, two workers each (Buckler "
            "`workers: 2`, or until the gateway reads that key, unpinned with its default of a "
            "worker per CPU it may use — see `BUCKLER_HAS_WORKERS_KEY` in "
            "`benches/load/lib/contenders.py`; HAProxy `nbthread 2`; NGINX "
            "`worker_processes 2`). The upstreams and the load generators share the same "
            "CPUs, alike for every contender.")),
]


@dataclasses.dataclass(frozen=True)
class Row:
    """One head-to-head measurement: Buckler against each peer of `config`, judged by the
    verdict rule on `metric` of `tool`'s runs."""

    id: str
    config: str  # a Config id
    transport: str  # "plain" or "tls"
    tool: str  # "wrk" (HTTP/1.1) or "h2" (h2load, HTTP/2)
    metric: str  # "rps" (higher is better) or "p99" (lower is better)
    title: str
    planned: str = ""  # when set: not measured yet, and what will measure it

    @property
    def section(self):
        """Where the row's runs are in a configuration's results: the plain rounds ("plain",
        wrk and h2) or one of `Config.sections` (the tool's prefix: "tls-wrk" is in "tls")."""
        return "plain" if self.tool in ("wrk", "h2") else self.tool.split("-")[0]


def _measured_rows():
    rows = []
    for config in CONFIGS:
        rows += [
            Row(f"{config.id}-wrk-rps", config.id, "plain", "wrk", "rps",
                "HTTP/1.1 requests/s (wrk)"),
            Row(f"{config.id}-wrk-p99", config.id, "plain", "wrk", "p99",
                "HTTP/1.1 p99 latency (wrk)"),
            Row(f"{config.id}-h2-rps", config.id, "plain", "h2", "rps",
                "HTTP/2 requests/s (h2load)"),
        ]
    return rows


# Each section's rows. A section's runs are stored under its tools' names ("tls-wrk", …);
# see `Row.section`.
SECTION_TOOLS = {
    "tls": ("tls-wrk", "tls-h2", "tls-handshake"),
    "failure": ("failure",),
    "middleware": ("middleware",),
}


def _section_rows():
    rows = []
    for config in CONFIGS:
        if "tls" in config.sections:
            rows += [
                Row(f"{config.id}-tls-wrk-rps", config.id, "tls", "tls-wrk", "rps",
                    "HTTPS/1.1 requests/s (wrk, keep-alive)"),
                Row(f"{config.id}-tls-wrk-p99", config.id, "tls", "tls-wrk", "p99",
                    "HTTPS/1.1 p99 latency (wrk)"),
                Row(f"{config.id}-tls-h2-rps", config.id, "tls", "tls-h2", "rps",
                    "HTTP/2 over TLS requests/s (h2load, ALPN h2)"),
                Row(f"{config.id}-tls-handshake-rps", config.id, "tls", "tls-handshake", "rps",
                    "new TLS connections/s (h2load --h1, a full handshake and one GET each)"),
            ]
        if "failure" in config.sections:
            rows += [
                Row(f"{config.id}-failure-rps", config.id, "plain", "failure", "rps",
                    "HTTP/1.1 requests/s while one of three upstreams is killed and comes back"),
                Row(f"{config.id}-failure-p99", config.id, "plain", "failure", "p99",
                    "HTTP/1.1 p99 latency while one of three upstreams is killed and comes back"),
            ]
        if "middleware" in config.sections:
            rows += [
                Row(f"{config.id}-middleware-rps", config.id, "plain", "middleware", "rps",
                    "HTTP/1.1 requests/s with API-key auth and a rate limit"),
                Row(f"{config.id}-middleware-p99", config.id, "plain", "middleware", "p99",
                    "HTTP/1.1 p99 latency with API-key auth and a rate limit"),
            ]
    return rows


ROWS = _measured_rows() + _section_rows()


def config_by_id(config_id):
    return next(c for c in CONFIGS if c.id == config_id)
