"""Paths, processes, ports and CPUs: what every load tool needs."""

import os
import resource
import shutil
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))

# Where the builds land. `cargo build --release -p buckler` makes the plain one; `scripts/build-dist`
# makes the fully optimised one (fat LTO, profile-guided, laid out by BOLT); `scripts/setup-bench`
# builds the Pingora contender.
PLAIN_BIN = os.path.join(TARGET, "release", "buckler")
DIST_BIN = os.path.join(TARGET, "pgo", "bolt", "buckler")
PINGORA_BIN = os.path.join(TARGET, "release", "pingora-lb")

# Each tool the runners call, and the Debian package that has it (scripts/setup-bench installs
# them all).
TOOLS = {
    "wrk": "wrk",
    "h2load": "nghttp2-client",
    "nginx": "nginx",
    "haproxy": "haproxy",
    "curl": "curl",
    "taskset": "util-linux",
    "pgrep": "procps",
    "valgrind": "valgrind",
    "callgrind_control": "valgrind",
    "openssl": "openssl",
    "redis-server": "redis-server",
}


def log(message, who="compare"):
    print(f"[{who} {time.strftime('%H:%M:%S')}] {message}", flush=True)


def run(cmd, **kwargs):
    return subprocess.run(cmd, check=True, **kwargs)


def require_tools(names, for_what):
    """Refuses to go on when a tool is missing, naming the step that installs it. The runners
    never install anything themselves."""
    missing = [name for name in names if shutil.which(name) is None]
    if missing:
        packages = sorted({TOOLS.get(name, name) for name in missing})
        raise SystemExit(
            f"{for_what} needs {', '.join(missing)}, not found on PATH.\n"
            f"Install the load tools once with: scripts/setup-bench\n"
            f"(or by hand: apt-get install -y {' '.join(packages)})")


def require_binary(path, what, how):
    """Refuses to go on when a binary to measure is missing, naming the command that builds it."""
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise SystemExit(f"{what} not found at {path}.\nBuild it with: {how}")


def raise_open_files(needed):
    """Lifts the soft open-file limit as far as the hard one allows; refuses when even that is
    below `needed`."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    if want < needed:
        raise SystemExit(f"the open-file limit ({hard}) is too low for this run (needs {needed})")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unverified_tls():
    """The runs' certificates are self-signed, made for the run: the checks do not verify them
    (the load generators do not either)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def http_status(url, headers=None, timeout=2):
    """The status `url` answers a GET with (4xx and 5xx included)."""
    request = urllib.request.Request(url, headers=headers or {})
    context = unverified_tls() if url.startswith("https:") else None
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def wait_http(url, timeout=60.0, want=200, name=None, process=None, headers=None):
    """Waits until `url` answers `want`; names the contender and notices when it has exited."""
    deadline = time.time() + timeout
    last = None
    who = f"{name} ({url})" if name else url
    while time.time() < deadline:
        if process is not None and process.poll() is not None:
            raise SystemExit(f"{who} exited with status {process.returncode} before answering")
        try:
            status = http_status(url, headers)
            if status == want:
                return
            last = status
        except Exception as error:  # noqa: BLE001 - any failure means "not yet"
            last = error
        time.sleep(0.1)
    raise SystemExit(f"{who} did not answer {want} within {timeout:.0f} s (last: {last})")


def cpus():
    """(the proxy's CPU, the others): the one-core rows pin each proxy to the first CPU this
    process may use, and the upstreams and load generators to the rest."""
    available = sorted(os.sched_getaffinity(0))
    proxy = [available[0]]
    load = available[1:] or available
    return proxy, load


def all_cpus():
    return sorted(os.sched_getaffinity(0))


def pinned(cpu_list, cmd):
    """`cmd` run on `cpu_list` only; None means unpinned (the multi-core rows)."""
    if cpu_list is None:
        return list(cmd)
    return ["taskset", "-c", ",".join(map(str, cpu_list))] + list(cmd)


STARTED = []  # every process a run started, stopped on the way out whatever happens


def start(cmd, **kwargs):
    process = subprocess.Popen(cmd, **kwargs)
    STARTED.append(process)
    return process


def stop(processes):
    """Stops `processes` (started by `start`) and forgets them; the others keep running."""
    processes = [p for p in processes if p is not None]
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        if process in STARTED:
            STARTED.remove(process)


def stop_all():
    """Stops every process `start` started (newest first) and forgets them."""
    for process in reversed(STARTED):
        if process.poll() is None:
            process.terminate()
    for process in STARTED:
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    STARTED.clear()
