"""The measurements of a comparison, each returning plain data (dicts and lists) that `compare`
writes to its JSON results."""

import collections
import glob
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.request

from .common import free_port, log, pinned, run, start, wait_http
from .contenders import FLEET_DOMAIN, SWAGGER, WEIGHTS, NGINX_FLEET, buckler_config
from .loadgen import h2load, wrk

# Where the load generators run: a CPU list (None: unpinned) and how many threads they use.
Load = collections.namedtuple("Load", "cpus threads")


def throughput_rounds(contenders, upstreams, settings, load, primary):
    """wrk, then h2load, against each contender in turn, round after round, the order reversed
    every other round. Returns ({name: {"wrk": [...], "h2": [...]}}, the `primary` Buckler's
    split over the upstreams during its wrk runs, {name: peak RSS in KiB})."""
    results = {c.name: {"wrk": [], "h2": []} for c in contenders}
    share = [0, 0]
    for contender in contenders:  # warm-up: connection pools, lazy DFAs, page cache
        wrk(contender.url + "/hello", 1, settings.connections, load.cpus, load.threads)
    for round_no in range(1, settings.rounds + 1):
        # A B C … then … C B A: a contender's place in the round changes every round, so a
        # slow stretch of the machine at one end of a round does not hit the same ones each time.
        order = contenders if round_no % 2 else contenders[::-1]
        for contender in order:
            before = [u.served() for u in upstreams]
            result = wrk(contender.url + "/hello", settings.seconds, settings.connections,
                         load.cpus, load.threads)
            after = [u.served() for u in upstreams]
            if contender.name == primary:
                for i in range(2):
                    share[i] += after[i] - before[i]
            result["round"] = round_no
            results[contender.name]["wrk"].append(result)
            log(f"round {round_no} wrk    {contender.name:21} {result['rps']:>10.0f} req/s  "
                f"p50 {result['p50']:.3f} ms  p99 {result['p99']:.3f} ms  failed {result['failed']}")
        for contender in order:
            if contender.url_h2 is None:
                continue  # `direct`: the NGINX upstreams speak HTTP/1.1 only
            result = h2load(contender.url_h2 + "/hello", settings.seconds, settings.h2_connections,
                            settings.h2_streams, load.cpus, load.threads)
            if result:
                result["round"] = round_no
                results[contender.name]["h2"].append(result)
                log(f"round {round_no} h2load {contender.name:21} {result['rps']:>10.0f} req/s  "
                    f"mean {result['mean']:.3f} ms  failed {result['failed']}")
    peak = {c.name: c.rss_kib("VmHWM") for c in contenders if c.process}
    return results, share, peak


def big_body(contenders, buckler, size_mb):
    """A large response streamed through each proxy; Buckler's RSS is sampled meanwhile.
    Returns ({name: MB/s}, (Buckler's RSS at the start, its peak) in KiB)."""
    speeds = {}
    buckler_rss = (0, 0)
    for contender in contenders:
        samples = []
        process = subprocess.Popen(
            ["curl", "-s", "-o", "/dev/null", "-w", "%{speed_download} %{size_download}",
             contender.url + "/big"], stdout=subprocess.PIPE, text=True)
        while process.poll() is None:
            if contender is buckler:
                samples.append(buckler.rss_kib("VmRSS"))
            time.sleep(0.02)
        speed, size = process.stdout.read().split()
        if int(float(size)) != size_mb * 1024 * 1024:
            raise SystemExit(f"{contender.name}: /big delivered {size} bytes, not {size_mb} MiB")
        speeds[contender.name] = float(speed) / 1e6
        if contender is buckler:
            buckler_rss = (samples[0] if samples else 0, max(samples) if samples else 0)
        log(f"{size_mb} MB body via {contender.name:21} {speeds[contender.name]:.0f} MB/s")
    return speeds, buckler_rss


def instructions_per_request(workdir, upstreams, proxy_cpus, requests, binary):
    """Buckler's user-space instructions per proxied GET /hello, counted by callgrind over
    `requests` requests after a warm-up. Unlike req/s this is the same for the same binary and
    inputs however busy the machine is, so it shows small changes that noise would hide. It
    leaves out the kernel, which is more than half of every proxy's time on loopback."""
    counts = {}
    for label, args in (("HTTP/1.1", ["--h1"]), ("HTTP/2", ["-m", "10"])):
        port, admin_port = free_port(), free_port()
        config = os.path.join(workdir, "buckler-callgrind.json5")
        with open(config, "w") as f:
            f.write(buckler_config(port, admin_port, upstreams, WEIGHTS))
        out = os.path.join(workdir, "callgrind.out")
        process = start(
            pinned(proxy_cpus, ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                                f"--callgrind-out-file={out}", binary, "run", "--config", config]),
            stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(workdir, "buckler-callgrind.log"), "w"),
        )
        url = f"http://127.0.0.1:{port}/hello"
        wait_http(url, timeout=300, name="Buckler under callgrind", process=process)

        def drive(count):
            done = subprocess.run(["h2load", "-n", str(count), "-c", "16"] + args + [url],
                                  capture_output=True, text=True).stdout
            match = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded", done)
            if not match or int(match.group(1)) != count:
                raise SystemExit(f"callgrind run ({label}): not every request succeeded:\n{done}")

        drive(max(requests // 2, 100))  # warm-up: connections and pools open, tables built
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        run(["callgrind_control", "-i", "on", str(process.pid)], **quiet)
        drive(requests)
        run(["callgrind_control", "-i", "off", str(process.pid)], **quiet)
        run(["callgrind_control", "-d", str(process.pid)], **quiet)
        process.terminate()
        process.wait(60)
        with open(out + ".1") as f:
            total = next(int(line.split()[1]) for line in f if line.startswith("totals:"))
        counts[label] = total / requests
        log(f"callgrind: {counts[label]:,.0f} instructions per proxied request ({label}, {binary})")
        for leftover in glob.glob(out + "*"):
            os.remove(leftover)
    return counts


def accepted_open(port):
    """TCP connections a server listening on `port` has accepted and not yet closed
    (ESTABLISHED, or CLOSE_WAIT once the client has gone). Counting the server's file
    descriptors instead would also count its upstream pool, whose idle connections may close
    while the count is taken."""
    total = 0
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if fields[3] in ("01", "08") and int(fields[1].rsplit(":", 1)[1], 16) == port:
                total += 1
    return total


def idle_connections(buckler, count):
    """Opens `count` keep-alive connections to Buckler, each with one answered request; returns
    Buckler's RSS (KiB) before and with them.

    One request at a time, as clients that asked once and went idle: what stays is the cost
    of an idle client connection. (Firing all requests at once would also measure a burst of
    `count` concurrent upstream requests and the upstream pool it leaves behind.)"""
    before = buckler.rss_kib("VmRSS")
    host, port = buckler.url.rsplit("/", 1)[1].split(":")
    accepted_before = accepted_open(int(port))
    sockets = []
    request = b"GET /hello HTTP/1.1\r\nHost: bench\r\n\r\n"
    try:
        for _ in range(count):
            s = socket.create_connection((host, int(port)))
            sockets.append(s)
            s.settimeout(10)
            s.sendall(request)
            data = b""
            while b"hello from" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    raise SystemExit("Buckler closed an idle-test connection")
                data += chunk
        time.sleep(1)
        during = buckler.rss_kib("VmRSS")
        # Every connection must still be open when RSS is read (Buckler closes keep-alive
        # connections idle for 30 s; opening them takes a few seconds).
        still_open = accepted_open(int(port)) - accepted_before
        if still_open < count:
            raise SystemExit(f"only {still_open} of {count} idle-test connections were open "
                             "when Buckler's RSS was read")
    finally:
        for s in sockets:
            s.close()
    # Let Buckler reap the closed connections before the next measurement starts: 10,000 EOFs
    # at once otherwise land in the ramp measurement as a latency spike of their own.
    deadline = time.monotonic() + 15
    while accepted_open(int(port)) > accepted_before + 50 and time.monotonic() < deadline:
        time.sleep(0.1)
    log(f"{count} idle keep-alive connections: Buckler RSS {before / 1024:.1f} -> "
        f"{during / 1024:.1f} MiB")
    return before, during


def put_upstreams(buckler, domain, locations_and_weights):
    """Replaces `domain`'s upstreams through Buckler's admin API."""
    body = json.dumps([{"serviceType": "swagger2", "serviceLocation": location, "weight": weight}
                       for location, weight in locations_and_weights]).encode()
    request = urllib.request.Request(f"{buckler.admin}/admin/domains/{domain}/upstreams",
                                     data=body, method="PUT")
    with urllib.request.urlopen(request, timeout=30) as response:
        if response.status != 200:
            raise SystemExit(f"PUT of {domain}'s upstreams answered {response.status}")


def under_wrk_load(buckler, settings, load, seconds, action, lead=0.5):
    """Runs `action` `lead` seconds into a wrk run of `seconds` against Buckler; returns wrk's
    result with whatever dict `action` returned merged in."""
    holder = {}
    thread = threading.Thread(target=lambda: holder.update(
        wrk(buckler.url + "/hello", seconds, settings.connections, load.cpus, load.threads)))
    thread.start()
    time.sleep(lead)
    extra = action()
    thread.join()
    if isinstance(extra, dict):
        holder.update(extra)
    return holder


def ramp_and_reloads(buckler, upstreams, settings, load):
    """Failed requests while weights ramp fully from A to B and back, and during 20 reloads.
    Returns {label: wrk's result}."""

    def put_weights(weights):
        put_upstreams(buckler, "*", [(u.url, w) for u, w in zip(upstreams, weights)])

    outcome = {}

    def under_load(label, seconds, action):
        holder = under_wrk_load(buckler, settings, load, seconds, action)
        outcome[label] = holder
        log(f"{label}: {holder['requests']} requests, {holder['failed']} failed")

    ramp_seconds = 2 * 10 * 0.2 + 3
    under_load("full weight ramp (1:0 -> 0:1 -> 1:0)", int(ramp_seconds) + 2, lambda: (
        put_weights((1, 0)), time.sleep(2.5), put_weights((0, 1)), time.sleep(2.5),
        put_weights((1, 0))))

    def reloads():
        for i in range(settings.reloads):
            weights = (3, 1) if i % 2 else (1, 3)
            with open(buckler.config, "w") as f:
                f.write(buckler_config(int(buckler.url.rsplit(":", 1)[1]),
                                       int(buckler.admin.rsplit(":", 1)[1]), upstreams, weights))
            buckler.process.send_signal(signal.SIGHUP)
            time.sleep(0.2)

    under_load(f"{settings.reloads} reloads (SIGHUP)", int(settings.reloads * 0.2) + 3, reloads)
    put_weights(WEIGHTS)
    return outcome


def fleet_publish(buckler, workdir, settings, load, fleet_cpus):
    """Latency on the main domain while another domain gains `settings.fleet` upstreams (their
    docs load and the table is republished) and then ramps all of them to a new weight (ten
    more publishes of a table with that many upstreams). Returns {"added": …, "ramped": …},
    each wrk's result with the p99 of the same load just before (`quiet_p99`)."""
    fleet_dir = os.path.join(workdir, "fleet")
    os.makedirs(fleet_dir)
    with open(os.path.join(fleet_dir, "spec.json"), "w") as f:
        json.dump(SWAGGER, f)
    ports = set()
    while len(ports) < settings.fleet:
        ports.add(free_port())
    listens = "\n".join(f"    listen 127.0.0.1:{port};" for port in sorted(ports))
    conf = os.path.join(fleet_dir, "nginx.conf")
    with open(conf, "w") as f:
        f.write(NGINX_FLEET.format(dir=fleet_dir, listens=listens))
    start(pinned(fleet_cpus, ["nginx", "-p", fleet_dir, "-c", conf]))
    wait_http(f"http://127.0.0.1:{min(ports)}/spec", name="the fleet NGINX")

    def put_fleet(weight):
        put_upstreams(buckler, FLEET_DOMAIN,
                      [(f"http://127.0.0.1:{port}", weight) for port in sorted(ports)])

    def fleet_serving():
        url = f"{buckler.admin}/admin/domains/{FLEET_DOMAIN}/upstreams"
        with urllib.request.urlopen(url, timeout=10) as response:
            listed = json.loads(response.read())
        return sum(1 for u in listed if u.get("state") == "serving")

    def under_load(seconds, action):
        return under_wrk_load(buckler, settings, load, seconds, action, lead=1)

    def add_fleet():
        began = time.monotonic()
        put_fleet(1)
        while fleet_serving() < settings.fleet and time.monotonic() - began < 30:
            time.sleep(0.05)
        return {"loaded_s": time.monotonic() - began, "serving": fleet_serving()}

    def quiet_p99(seconds):
        # The same load with no control-plane work, just before the measured change: the
        # reference for "no spike". The machine drifts (other tenants, steal time) within a
        # run, so the throughput rounds' p99 from minutes earlier is not one.
        return under_load(seconds, lambda: None)["p99"]

    add_seconds, ramp_seconds = (4, 4) if settings.quick else (8, 6)
    quiet_before_add = quiet_p99(add_seconds)
    added = dict(under_load(add_seconds, add_fleet), quiet_p99=quiet_before_add)
    log(f"fleet of {settings.fleet} added: {added['serving']} serving after "
        f"{added['loaded_s']:.1f} s; main domain p99 {added['p99']} ms (just before, without "
        f"it: {added['quiet_p99']} ms), max {added['max']} ms, {added['failed']} failed")
    # Ten ramp steps of 200 ms: ten rebuilds of the whole table.
    quiet_before_ramp = quiet_p99(ramp_seconds)
    ramped = dict(under_load(ramp_seconds, lambda: put_fleet(2)), quiet_p99=quiet_before_ramp)
    log(f"fleet of {settings.fleet} reweighted: main domain p99 {ramped['p99']} ms (just before, "
        f"without it: {ramped['quiet_p99']} ms), max {ramped['max']} ms, "
        f"{ramped['failed']} failed")
    return {"added": added, "ramped": ramped}
