"""The load generators, wrk (HTTP/1.1 keep-alive) and h2load (h2c, h2 over TLS, and new TLS
connections), and their output parsed."""

import re
import subprocess
import time

from .common import pinned

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def parse_duration_ms(text):
    match = re.match(r"([\d.]+)(us|ms|s)$", text)
    return float(match.group(1)) * UNITS[match.group(2)]


def wrk(url, seconds, connections, cpu_list, threads, headers=()):
    """One wrk run: {rps, p50, p99, max (ms), requests, failed}; `headers` ("Name: value")
    are sent with every request."""
    extra = [arg for header in headers for arg in ("-H", header)]
    cmd = pinned(cpu_list, ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s",
                            "--latency"] + extra + [url])
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}
    for label, key in (("50%", "p50"), ("99%", "p99")):
        result[key] = parse_duration_ms(re.search(rf"^\s+{label}\s+(\S+)", out, re.M).group(1))
    result["max"] = parse_duration_ms(
        re.search(r"^\s+Latency\s+\S+\s+\S+\s+(\S+)", out, re.M).group(1))
    result["requests"] = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    result["failed"] = (int(non2xx.group(1)) if non2xx else 0) + (
        sum(int(g) for g in errors.groups()) if errors else 0)
    return result


def tls_negotiated(out):
    """What h2load printed about its TLS session: "TLSv1.3, TLS_AES_256_GCM_SHA384, X25519, h2"
    (the parts it printed), or None over plain TCP."""
    parts = [m.group(1).strip() for m in (
        re.search(rf"^{label}:\s*(.+)$", out, re.M)
        for label in ("TLS Protocol", "Cipher", "Server Temp Key", "Application protocol")) if m]
    return ", ".join(parts) or None


def h2load(url, seconds, connections, streams, cpu_list, threads):
    """One h2load run: {rps, mean (ms), failed, tls}, or None when h2load finished nothing."""
    cmd = pinned(cpu_list, ["h2load", "-t", str(threads), "-c", str(connections),
                            "-m", str(streams), "-D", str(seconds), url])
    out = subprocess.run(cmd, capture_output=True, text=True).stdout
    match = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out)
    if not match:
        return None
    times = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)", out)
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                     r"(\d+) errored", out)
    return {
        "rps": float(match.group(1)),
        "mean": parse_duration_ms(times.group(3)) if times else float("nan"),
        "failed": int(done.group(3)) + int(done.group(4)) if done else 0,
        "tls": tls_negotiated(out),
    }


def handshakes(url, seconds, batch, cpu_list, threads):
    """New TLS connections per second: batches of `batch` HTTP/1.1 clients (h2load --h1), each
    opening one connection, completing a full handshake and one GET, until `seconds` have
    passed. h2load makes a fresh TLS session for every client (no resumption: checked against
    NGINX's `$ssl_session_reused`), unlike wrk, which resumes its previous session when it
    reconnects. Returns {rps (handshakes/s over h2load's own timings), requests, failed, tls}."""
    done_total, failed_total, elapsed, tls = 0, 0, 0.0, None
    began = time.monotonic()
    while time.monotonic() - began < seconds:
        cmd = pinned(cpu_list, ["h2load", "--h1", "-t", str(min(threads, batch)), "-c", str(batch),
                                "-n", str(batch), url])
        out = subprocess.run(cmd, capture_output=True, text=True).stdout
        finished = re.search(r"finished in ([\d.]+)(us|ms|s),", out)
        done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", out)
        if not finished or not done:
            failed_total += batch
            continue
        elapsed += parse_duration_ms(finished.group(1) + finished.group(2)) / 1e3
        done_total += int(done.group(2))
        failed_total += batch - int(done.group(2))
        tls = tls_negotiated(out) or tls
    return {"rps": done_total / elapsed if elapsed else 0.0, "requests": done_total,
            "failed": failed_total, "tls": tls}
