"""The measurements beyond the plain rounds, each with its own contenders: TLS termination, an
upstream killed under load, API-key auth with a rate limit, and (Buckler only) the load time of
large documents. Each returns plain data for `compare`'s JSON; `interleaved_rounds` drives the
contenders the way the plain rounds do (A B C, then C B A, …)."""

import json
import os
import socket
import subprocess
import threading
import time
import urllib.request

from .common import free_port, log, pinned, run, start, stop, unverified_tls, wait_http, http_status
from .contenders import (WEIGHTS, Contender, Upstream, buckler_launch, start_buckler,
                         start_haproxy, start_nginx_proxy)
from .loadgen import h2load, handshakes, wrk

PRIMARY = "Buckler"
REDIS_VARIANT = "Buckler, Redis store"
API_KEY_HEADER = "X-Api-Key"
API_KEY = "bench-key-0123456789"
# High enough never to trigger at these rates: the limiter's work is done, its 429 never sent.
RATE_LIMIT = 1_000_000  # the most Buckler accepts per interval
HANDSHAKE_BATCH = 500  # concurrent new connections per h2load batch (under HAProxy's maxconn)


def interleaved_rounds(contenders, settings, runs, label):
    """`runs` [(tool, fn(contender) -> result dict or None)] against each contender, tool by
    tool, round after round, the order reversed every other round. Returns
    {name: {tool: [result with "round"]}}."""
    results = {c.name: {tool: [] for tool, _ in runs} for c in contenders}
    for round_no in range(1, settings.rounds + 1):
        order = contenders if round_no % 2 else contenders[::-1]
        for tool, fn in runs:
            for contender in order:
                result = fn(contender)
                if result is None:
                    continue
                result["round"] = round_no
                results[contender.name][tool].append(result)
                detail = (f"p99 {result['p99']:.3f} ms  " if "p99" in result else "")
                log(f"{label} round {round_no} {tool:14} {contender.name:21} "
                    f"{result['rps']:>10.0f}/s  {detail}failed {result['failed']}")
    return results


def stop_contenders(contenders):
    stop([c.process for c in contenders])


# --- TLS -----------------------------------------------------------------------------------

def make_certificate(workdir):
    """A self-signed RSA 2048 certificate for 127.0.0.1 and localhost, made with the openssl
    CLI: (cert, key, both in one file for HAProxy). RSA 2048 because it is what most sites
    serve and its signature is what makes a handshake cost the server: the handshake rows then
    measure the proxy, not the client (an ECDSA verify costs h2load more than the sign costs
    the server)."""
    cert, key = os.path.join(workdir, "tls.pem"), os.path.join(workdir, "tls.key")
    run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
         "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    combined = os.path.join(workdir, "tls-combined.pem")
    with open(combined, "w") as out:
        for path in (cert, key):
            with open(path) as f:
                out.write(f.read())
    return cert, key, combined


def tls_probe(url):
    """What a client offering TLS 1.2 and 1.3 and ALPN h2 and http/1.1 is given:
    "TLSv1.3, TLS_AES_256_GCM_SHA384, h2"."""
    host, port = url.split("//", 1)[1].split(":")
    context = unverified_tls()
    context.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            return f"{tls.version()}, {tls.cipher()[0]}, {tls.selected_alpn_protocol()}"


def start_tls_contenders(workdir, upstreams, config, builds):
    """Each Buckler build, NGINX and HAProxy terminating TLS with the same certificate on one
    port (ALPN h2 and http/1.1) in front of `upstreams` (3:1)."""
    cert, key, combined = make_certificate(workdir)
    contenders = []
    for index, (name, binary) in enumerate(builds):
        buckler_cpus, workers = buckler_launch(binary, config)
        port = free_port()
        top = (f'\n  tls: {{ listen: "127.0.0.1:{port}", cert: "{cert}", key: "{key}" }},')
        buckler = start_buckler(workdir, upstreams, name, binary, f"{config.id}-tls-buckler-{index}",
                                buckler_cpus, workers, top_extra=top)
        buckler.url = buckler.url_h2 = f"https://127.0.0.1:{port}"
        contenders.append(buckler)

    port = free_port()
    # NGINX 1.22 offers TLS 1.2 only by default (1.23.4 added 1.3): 1.3 is turned on so that
    # every proxy negotiates the same version.
    process = start_nginx_proxy(
        workdir, f"{config.id}-tls-nginx", "NGINX", config, upstreams, WEIGHTS,
        [f"listen 127.0.0.1:{port} ssl http2 backlog=4096;"],
        server_extra=(f"\n    ssl_certificate {cert};\n    ssl_certificate_key {key};"
                      "\n    ssl_protocols TLSv1.2 TLSv1.3;"))
    contenders.append(Contender("NGINX", process, port, port))

    port = free_port()
    process = start_haproxy(workdir, f"{config.id}-tls-haproxy", config, upstreams, WEIGHTS,
                            [f"bind 127.0.0.1:{port} ssl crt {combined} alpn h2,http/1.1"])
    contenders.append(Contender("HAProxy", process, port, port))

    for contender in contenders:
        if not contender.is_buckler:
            contender.url = contender.url_h2 = f"https://127.0.0.1:{contender.url.rsplit(':', 1)[1]}"
        wait_http(contender.url + "/hello", name=f"{contender.name} over TLS",
                  process=contender.process)
    return contenders


def handshake_seconds_of(settings):
    return max(2, settings.seconds - 2)


def tls_section(workdir, upstreams, config, builds, settings, load):
    """Keep-alive HTTPS/1.1 (wrk) and HTTP/2 over TLS (h2load) requests/s, and new TLS
    connections/s (h2load --h1, one request per connection), through each contender."""
    contenders = start_tls_contenders(workdir, upstreams, config, builds)
    try:
        negotiated = {c.name: tls_probe(c.url) for c in contenders}
        for name, text in negotiated.items():
            log(f"TLS: {name} gives a client offering TLS 1.2/1.3 and h2/http/1.1: {text}")
        for contender in contenders:  # warm-up
            wrk(contender.url + "/hello", 1, settings.connections, load.cpus, load.threads)
        batch = 100 if settings.quick else HANDSHAKE_BATCH
        handshake_seconds = handshake_seconds_of(settings)
        runs = [
            ("tls-wrk", lambda c: wrk(c.url + "/hello", settings.seconds, settings.connections,
                                      load.cpus, load.threads)),
            ("tls-h2", lambda c: h2load(c.url_h2 + "/hello", settings.seconds,
                                        settings.h2_connections, settings.h2_streams, load.cpus,
                                        load.threads)),
            # Shorter: thousands of handshakes in a few seconds are plenty, and it keeps a full
            # run under 35 minutes.
            ("tls-handshake", lambda c: handshakes(c.url + "/hello", handshake_seconds, batch,
                                                   load.cpus, load.threads)),
        ]
        results = interleaved_rounds(contenders, settings, runs, "tls")
        return {"contenders": [c.name for c in contenders], "results": results,
                "negotiated": negotiated, "certificate": "RSA 2048, self-signed",
                "handshake_batch": batch, "handshake_seconds": handshake_seconds}
    finally:
        stop_contenders(contenders)


# --- An upstream killed under load ---------------------------------------------------------

# Each peer's documented way to ride out a dead upstream. Buckler runs its defaults (SPEC §9:
# circuit breakers, one retry of an idempotent request on another upstream).
NGINX_FAILURE_LOCATION = """
      proxy_next_upstream error timeout http_502 http_503;"""
HAPROXY_FAILURE_BACKEND = """
  option redispatch 1
  retries 2
  retry-on conn-failure empty-response response-timeout 502 503"""
# `observe layer7` needs `check`: a TCP check every second, out after 2 failures, back after 2.
HAPROXY_FAILURE_SERVER = " check inter 1s fall 2 rise 2 observe layer7 error-limit 10 on-error mark-down"
NGINX_FAILURE_SERVER = " max_fails=1 fail_timeout=10s"
# Beside the defaults, the primary Buckler with a larger retry budget (SPEC §9 `retry`): when
# one of three upstreams dies, about a third of the requests in flight need a retry at once,
# more than the default budget of 20 % lets through (a probe before this row was added: 13–32
# of ~35,000 GETs failed with the default, none with 100 %).
RETRY_VARIANT = "Buckler, retry budget 50 %"
RETRY_VARIANT_CONFIG = """
      retry: { attempts: 1, "budget-percent": 50 },"""


def failure_section(workdir, big, config, builds, settings, load, upstream_cpus):
    """Three upstreams (1:1:1, each one NGINX process); through each contender in turn, a wrk
    run of `seconds + 2` s during which the third upstream is SIGKILLed after 1 s and started
    again `seconds` later. Failed requests (non-2xx and socket errors) and p99 over the run."""
    upstreams = [Upstream(workdir, f"fail-{x}", big, upstream_cpus, single_process=True)
                 for x in "abc"]
    victim = upstreams[2]
    weights = (1, 1, 1)
    contenders = []
    try:
        variants = [(name, binary, "") for name, binary in builds]
        variants.append((RETRY_VARIANT, builds[0][1], RETRY_VARIANT_CONFIG))
        for index, (name, binary, extra) in enumerate(variants):
            buckler_cpus, workers = buckler_launch(binary, config)
            contenders.append(start_buckler(workdir, upstreams, name, binary,
                                            f"{config.id}-failure-buckler-{index}", buckler_cpus,
                                            workers, weights=weights, domain_extra=extra))
        port = free_port()
        process = start_nginx_proxy(workdir, f"{config.id}-failure-nginx", "NGINX", config,
                                    upstreams, weights, [f"listen 127.0.0.1:{port} backlog=4096;"],
                                    location_extra=NGINX_FAILURE_LOCATION,
                                    server_flags=NGINX_FAILURE_SERVER)
        contenders.append(Contender("NGINX", process, port, None))
        port = free_port()
        process = start_haproxy(workdir, f"{config.id}-failure-haproxy", config, upstreams,
                                weights, [f"bind 127.0.0.1:{port}"],
                                backend_extra=HAPROXY_FAILURE_BACKEND,
                                server_flags=HAPROXY_FAILURE_SERVER)
        contenders.append(Contender("HAProxy", process, port, None))
        for contender in contenders:
            wait_http(contender.url + "/hello", name=contender.name, process=contender.process)
            wrk(contender.url + "/hello", 1, settings.connections, load.cpus, load.threads)

        def killed_under_load(contender):
            holder = {}
            thread = threading.Thread(target=lambda: holder.update(
                wrk(contender.url + "/hello", settings.seconds + 2, settings.connections,
                    load.cpus, load.threads)))
            thread.start()
            time.sleep(1)
            victim.kill()
            time.sleep(settings.seconds)
            # Back for the run's last second: whether a proxy sends it traffic again is not
            # measured (Buckler's breakers and NGINX's fail_timeout wait 10 s, HAProxy's checks
            # 2 s); that it came back must not cost requests either.
            victim.restart()
            thread.join()
            return holder

        results = interleaved_rounds(contenders, settings, [("failure", killed_under_load)],
                                     "failure")
        return {"contenders": [c.name for c in contenders], "results": results,
                "down_s": settings.seconds, "run_s": settings.seconds + 2,
                "variants": {RETRY_VARIANT: RETRY_VARIANT_CONFIG.strip()}}
    finally:
        stop_contenders(contenders)
        stop([u.process for u in upstreams])


# --- Middleware: API-key auth and a rate limit --------------------------------------------

def buckler_middleware(kvstore_url=None):
    """The `*` domain's chain: `api-key-auth` then `rate-limit` (memory store, or Redis). The
    `sla` is 1 s rather than 20 ms so that every request is decided by the limiter, as the
    peers' are: a run on a loaded machine would otherwise let a few through undecided (the
    counters in the report show any that were)."""
    store = ', kvstore: "shared"' if kvstore_url else ""
    stores = (f'\n      kvstores: {{ shared: {{ type: "redis", url: "{kvstore_url}" }} }},'
              if kvstore_url else "")
    return f"""
      "middleware-chain": [{{ id: "auth", builder: "api-key-auth", sla: "1s" }},
                           {{ id: "limit", builder: "rate-limit", sla: "1s" }}],
      middleware: {{ auth: {{ "header-name": "{API_KEY_HEADER}", allowed: ["{API_KEY}"] }},
                    limit: {{ "calls-per": {RATE_LIMIT}, "per-seconds": 1{store} }} }},{stores}"""


NGINX_MIDDLEWARE_HTTP = f"""
  map $http_x_api_key $api_key_status {{ "" missing; "{API_KEY}" ok; default wrong; }}
  limit_req_zone $binary_remote_addr zone=perclient:1m rate=1000000r/s;
  limit_req_status 429;"""
NGINX_MIDDLEWARE_LOCATION = """
      if ($api_key_status = missing) { return 401; }
      if ($api_key_status = wrong) { return 403; }
      limit_req zone=perclient burst=1000000 nodelay;"""
HAPROXY_MIDDLEWARE_FRONTEND = f"""
  stick-table type ip size 100k expire 10s store http_req_rate(1s)
  http-request return status 401 if !{{ req.hdr(x-api-key) -m found }}
  http-request deny deny_status 403 unless {{ req.hdr(x-api-key) -m str {API_KEY} }}
  http-request track-sc0 src
  http-request deny deny_status 429 if {{ sc_http_req_rate(0) gt {RATE_LIMIT} }}"""


def check_middleware(contender):
    """The peer really does the work: no key 401, a wrong key 403, the key 200."""
    url = contender.url + "/hello"
    got = (http_status(url, timeout=5), http_status(url, {API_KEY_HEADER: "wrong"}, timeout=5),
           http_status(url, {API_KEY_HEADER: API_KEY}, timeout=5))
    if got != (401, 403, 200):
        raise SystemExit(f"{contender.name}: no key, a wrong key and the key answered {got}, not "
                         "(401, 403, 200): its configuration does not do the middleware's work")


def start_redis(workdir, cpu_list):
    port = free_port()
    rdir = os.path.join(workdir, "redis")
    os.makedirs(rdir)
    process = start(pinned(cpu_list, ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                                      "--save", "", "--appendonly", "no", "--dir", rdir]),
                    stdout=open(os.path.join(rdir, "redis.log"), "w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return process, f"redis://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"redis-server did not answer on port {port} within 10 s")


def middleware_counters(contender):
    """Buckler's counters that say the limiter did its work: SLA overruns and store errors
    (either means a request was allowed without the limiter deciding)."""
    counters = {"sla_exceeded": 0, "store_errors": 0}
    with urllib.request.urlopen(contender.url + "/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            for key, prefix in (("sla_exceeded", "buckler_middleware_sla_exceeded_total"),
                                ("store_errors", "buckler_ratelimit_store_errors_total")):
                if line.startswith(prefix):
                    counters[key] += int(float(line.rsplit(" ", 1)[1]))
    return counters


def middleware_section(workdir, upstreams, config, builds, settings, load, upstream_cpus):
    """HTTP/1.1 requests/s (wrk, sending the key) with API-key auth and a rate limit that never
    triggers, through each Buckler build (memory store), the primary Buckler with a Redis
    store (the Redis round trip's cost), NGINX and HAProxy."""
    redis, redis_url = start_redis(workdir, upstream_cpus)
    contenders = []
    key = {API_KEY_HEADER: API_KEY}
    try:
        variants = [(name, binary, None) for name, binary in builds]
        variants.append((REDIS_VARIANT, builds[0][1], redis_url))
        for index, (name, binary, store) in enumerate(variants):
            buckler_cpus, workers = buckler_launch(binary, config)
            contenders.append(start_buckler(workdir, upstreams, name, binary,
                                            f"{config.id}-middleware-buckler-{index}", buckler_cpus,
                                            workers, domain_extra=buckler_middleware(store),
                                            wait_headers=key))
        port = free_port()
        process = start_nginx_proxy(workdir, f"{config.id}-middleware-nginx", "NGINX", config,
                                    upstreams, WEIGHTS, [f"listen 127.0.0.1:{port} backlog=4096;"],
                                    http_extra=NGINX_MIDDLEWARE_HTTP,
                                    location_extra=NGINX_MIDDLEWARE_LOCATION)
        contenders.append(Contender("NGINX", process, port, None))
        port = free_port()
        process = start_haproxy(workdir, f"{config.id}-middleware-haproxy", config, upstreams,
                                WEIGHTS, [f"bind 127.0.0.1:{port}"],
                                frontend_extra=HAPROXY_MIDDLEWARE_FRONTEND)
        contenders.append(Contender("HAProxy", process, port, None))
        header = [f"{API_KEY_HEADER}: {API_KEY}"]
        for contender in contenders:
            wait_http(contender.url + "/hello", name=contender.name, process=contender.process,
                      headers=key)
            check_middleware(contender)
            wrk(contender.url + "/hello", 1, settings.connections, load.cpus, load.threads, header)
        runs = [("middleware", lambda c: wrk(c.url + "/hello", settings.seconds,
                                             settings.connections, load.cpus, load.threads,
                                             header))]
        results = interleaved_rounds(contenders, settings, runs, "middleware")
        counters = {c.name: middleware_counters(c) for c in contenders if c.is_buckler}
        return {"contenders": [c.name for c in contenders], "results": results,
                "buckler_counters": counters,
                "variants": {REDIS_VARIANT: "the same chain, rate-limit on a redis kvstore"}}
    finally:
        stop_contenders(contenders)
        stop([redis])


# --- Document load time --------------------------------------------------------------------

def big_swagger(target_bytes):
    """A Swagger 2.0 document of about `target_bytes`, shaped like Microsoft Graph's (about
    1.75 KB per operation: a path parameter, query options, described responses), with
    `/hello` last so that a 200 for it means the whole table is in. Returns (text, paths,
    operations)."""
    filler = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 12
    head = '{"swagger":"2.0","info":{"title":"big","version":"1"},"paths":{'
    parts, size, index = [], len(head), 0
    while size < target_bytes:
        path = {
            "get": {"operationId": f"items{index}.get", "summary": filler, "parameters": [
                {"name": "id", "in": "path", "required": True, "type": "string"},
                {"name": "$select", "in": "query", "type": "array", "items": {"type": "string"}},
                {"name": "$expand", "in": "query", "type": "string"}],
                "responses": {"200": {"description": filler}, "default": {"description": "error"}}},
            "patch": {"operationId": f"items{index}.update", "summary": filler, "parameters": [
                {"name": "id", "in": "path", "required": True, "type": "string"},
                {"name": "body", "in": "body", "schema": {"type": "object"}}],
                "responses": {"204": {"description": "updated"}, "default": {"description": filler}}},
        }
        part = json.dumps(f"/service{index % 97}/items{index}/{{id}}") + ":" + json.dumps(path)
        parts.append(part)
        size += len(part) + 1
        index += 1
    hello = '"/hello":{"get":{"responses":{"200":{"description":"hello"}}}}'
    text = head + ",".join(parts + [hello]) + "}}"
    return text, index + 1, 2 * index + 1


def docs_section(workdir, binary, big, proxy_cpus, upstream_cpus, settings):
    """Buckler started with one upstream serving a large generated document: seconds from the
    process's start until its admin API answers, until it says `serving`, and until a route of
    the document answers; peak RSS (VmHWM). Each size `settings.docs_reps` times; returns one dict per
    size with every repetition."""
    out = []
    upstream = Upstream(workdir, "docs", big, upstream_cpus)
    # The binary paged in before the first timed start (a cold start took 3 s more).
    subprocess.run([binary, "--version"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for megabytes in settings.docs_mb:
            text, paths, operations = big_swagger(megabytes * 1_000_000)
            with open(os.path.join(upstream.dir, "spec.json"), "w") as f:
                f.write(text)
            runs = [docs_load_once(workdir, binary, upstream, proxy_cpus, megabytes, rep)
                    for rep in range(settings.docs_reps)]
            out.append({"bytes": len(text), "paths": paths, "operations": operations,
                        "runs": runs})
            log(f"docs: {len(text) / 1e6:.1f} MB, {operations:,} operations: admin API up after "
                + ", ".join(f"{r['up_s']:.2f}" for r in runs) + " s; serving after "
                + ", ".join(f"{r['serving_s']:.2f}" for r in runs) + " s; routed after "
                + ", ".join(f"{r['routed_s']:.2f}" for r in runs) + " s; peak RSS "
                + ", ".join(f"{r['peak_rss_kib'] / 1024:.0f}" for r in runs) + " MiB")
    finally:
        stop([upstream.process])
    return out


def docs_load_once(workdir, binary, upstream, proxy_cpus, megabytes, rep):
    port, admin_port = free_port(), free_port()
    config = os.path.join(workdir, f"docs-{megabytes}-{rep}.json5")
    with open(config, "w") as f:
        f.write(f"""{{
  listen: "127.0.0.1:{port}",
  admin: {{ listen: "127.0.0.1:{admin_port}" }},
  domains: [ {{ "domain-name": "*",
               upstreams: [ {{ serviceType: "swagger2", serviceLocation: "{upstream.url}" }} ] }} ],
}}
""")
    began = time.monotonic()
    process = start(pinned(proxy_cpus, [binary, "run", "--config", config]),
                    stdout=subprocess.DEVNULL,
                    stderr=open(os.path.join(workdir, f"docs-{megabytes}-{rep}.log"), "w"))
    try:
        state_url = f"http://127.0.0.1:{admin_port}/admin/domains/*/upstreams"
        up_s = serving_s = routed_s = None
        peak = 0
        deadline = began + 120
        while time.monotonic() < deadline and routed_s is None:
            if process.poll() is not None:
                raise SystemExit(f"docs load: Buckler exited with {process.returncode}")
            peak = max(peak, rss_kib(process.pid, "VmHWM"))
            now = time.monotonic() - began
            if serving_s is None:
                try:
                    with urllib.request.urlopen(state_url, timeout=2) as response:
                        listed = json.loads(response.read())
                    up_s = now if up_s is None else up_s
                    if listed and listed[0].get("state") == "serving":
                        serving_s = now
                    elif listed and listed[0].get("state") == "failed":
                        raise SystemExit(f"docs load: the {megabytes} MB document failed: "
                                         f"{listed[0].get('docsError')}")
                except (OSError, ValueError):
                    pass
            try:
                if http_status(f"http://127.0.0.1:{port}/hello", timeout=2) == 200:
                    routed_s = time.monotonic() - began
            except OSError:
                pass
            time.sleep(0.01)
        if routed_s is None:
            raise SystemExit(f"docs load: the {megabytes} MB document was not routed within 120 s")
        time.sleep(0.5)
        peak = max(peak, rss_kib(process.pid, "VmHWM"))
        return {"up_s": up_s if up_s is not None else routed_s,
                "serving_s": serving_s if serving_s is not None else routed_s,
                "routed_s": routed_s, "peak_rss_kib": peak,
                "rss_after_kib": rss_kib(process.pid, "VmRSS")}
    finally:
        stop([process])


def rss_kib(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0
