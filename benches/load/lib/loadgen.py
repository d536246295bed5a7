"""The load generators, wrk (HTTP/1.1 keep-alive) and h2load (h2c), and their output parsed."""

import re
import subprocess

from .common import pinned

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def parse_duration_ms(text):
    match = re.match(r"([\d.]+)(us|ms|s)$", text)
    return float(match.group(1)) * UNITS[match.group(2)]


def wrk(url, seconds, connections, cpu_list, threads):
    """One wrk run: {rps, p50, p99, max (ms), requests, failed}."""
    cmd = pinned(cpu_list, ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s",
                            "--latency", url])
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


def h2load(url, seconds, connections, streams, cpu_list, threads):
    """One h2load run: {rps, mean (ms), failed}, or None when h2load finished nothing."""
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
    }
