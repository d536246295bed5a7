"""The processes of a comparison: NGINX upstreams, and the proxies in front of them (Buckler,
NGINX, HAProxy, Pingora), each configured for one of the configurations of `rows.CONFIGS`."""

import json
import os
import subprocess
import urllib.request

from .common import free_port, pinned, start, wait_http

WEIGHTS = (3, 1)
FLEET_DOMAIN = "fleet.bench"

# SPEC §2's `workers` key: the request-serving threads. Until the gateway reads it, the
# multi-core rows run Buckler unpinned without it, where it uses every CPU it may (Tokio's
# multi-thread scheduler, one worker per CPU). Once it does, set this to True: the multi-core
# Buckler then gets `workers: N` like the peers' `nbthread N` / `worker_processes N`.
BUCKLER_HAS_WORKERS_KEY = True

SWAGGER = {
    "swagger": "2.0",
    "info": {"title": "bench", "version": "1"},
    "paths": {
        "/hello": {"get": {"responses": {"200": {"description": "a small fixed body"}}}},
        "/big": {"get": {"responses": {"200": {"description": "a large file"}}}},
    },
}

NGINX_UPSTREAM = """
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 20000; }}
http {{
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location = /hello {{ default_type text/plain; return 200 "hello from {name}\\n"; }}
    location = /spec {{ default_type application/json; alias {dir}/spec.json; }}
    location = /big {{ default_type application/octet-stream; alias {big}; }}
    location = /nginx-status {{ stub_status; }}
  }}
}}
"""

# One NGINX listening on many ports: each port is a distinct upstream to Buckler.
NGINX_FLEET = """
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 20000; }}
http {{
  access_log off;
  server {{
{listens}
    location = /hello {{ default_type text/plain; return 200 "hello from the fleet\\n"; }}
    location = /spec {{ default_type application/json; alias {dir}/spec.json; }}
  }}
}}
"""

NGINX_PROXY = """
worker_processes {workers};
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
worker_rlimit_nofile 8192;
events {{ worker_connections 4096; }}
http {{
  access_log off;{http_extra}
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  upstream backends {{
{servers}
    keepalive 256;
  }}
  server {{
{listens}{server_extra}
    location / {{
      proxy_pass http://backends;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;{location_extra}
    }}
  }}
}}
"""

HAPROXY = """
global
  nbthread {workers}
  maxconn 4096  # the runs use at most 64 connections (500 in handshake runs); 2 fds per conn{global_extra}
defaults
  mode http
  timeout connect 5s
  timeout client 300s
  timeout server 300s
  timeout http-keep-alive 300s
  http-reuse always
frontend bench
{binds}{frontend_extra}
  default_backend backends
backend backends
  balance roundrobin{backend_extra}
{servers}
"""

# What SPEC §9 has Buckler do to every request and response beyond forwarding it, written for
# NGINX and HAProxy: `X-Forwarded-For` appended, `X-Forwarded-Proto` and `X-Forwarded-Host` set,
# `X-Request-Id` kept or generated, forwarded and echoed, `Via` added to the response. The
# "same headers" contenders run with these, so that one row compares equal work; the verdicts
# that count are against the plain configurations above.
NGINX_SAME_HEADERS_HTTP = """
  map $http_x_request_id $request_id_kept { "" $request_id; default $http_x_request_id; }"""
NGINX_SAME_HEADERS_LOCATION = """
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Host $host;
      proxy_set_header X-Request-Id $request_id_kept;
      add_header Via "1.1 nginx" always;
      add_header X-Request-Id $request_id_kept always;"""
HAPROXY_SAME_HEADERS = """
  option forwardfor
  http-request set-header X-Forwarded-Proto http
  http-request set-header X-Forwarded-Host %[req.hdr(host)]
  http-request set-header X-Request-Id %[uuid()] unless { req.hdr(x-request-id) -m found }
  http-request set-var(txn.request_id) req.hdr(x-request-id)
  http-response set-header Via "1.1 haproxy"
  http-response set-header X-Request-Id %[var(txn.request_id)]"""
SAME_HEADERS = "{}, same headers"


def check_same_headers(contender):
    """The equal-work rows mean something only if the peer really does the work: its response
    must carry `Via` and an `X-Request-Id`, and keep the client's id when there is one."""
    for sent in (None, "kept-by-the-proxy"):
        request = urllib.request.Request(contender.url + "/hello")
        if sent:
            request.add_header("X-Request-Id", sent)
        with urllib.request.urlopen(request, timeout=5) as response:
            via, request_id = response.headers.get("Via"), response.headers.get("X-Request-Id")
        if not via or not request_id or (sent and request_id != sent):
            raise SystemExit(f"{contender.name}: response has Via {via!r} and X-Request-Id "
                             f"{request_id!r}; its configuration does not do Buckler's header work")


class Upstream:
    """One NGINX instance standing for one upstream service."""

    def __init__(self, workdir, name, big_file, cpu_list, single_process=False):
        self.name = name
        self.dir = os.path.join(workdir, f"upstream-{name}")
        os.makedirs(self.dir)
        self.port = free_port()
        with open(os.path.join(self.dir, "spec.json"), "w") as f:
            json.dump(SWAGGER, f)
        conf = os.path.join(self.dir, "nginx.conf")
        text = NGINX_UPSTREAM.format(dir=self.dir, port=self.port, name=name, big=big_file)
        if single_process:
            # One process, no master: SIGKILL then stops the whole upstream at once (killing
            # an NGINX master leaves its worker serving).
            text = "master_process off;" + text
        with open(conf, "w") as f:
            f.write(text)
        self.command = pinned(cpu_list, ["nginx", "-p", self.dir, "-c", conf])
        self.process = start(self.command)
        self.url = f"http://127.0.0.1:{self.port}"
        wait_http(self.url + "/hello")

    def kill(self):
        """SIGKILL, as a crash: open connections are reset, nothing is drained. Only for an
        upstream started with `single_process`."""
        self.process.kill()
        self.process.wait(10)

    def restart(self):
        """The killed upstream back on its port (the listener sets SO_REUSEADDR)."""
        self.process = start(self.command)
        wait_http(self.url + "/hello", timeout=10, name=f"upstream {self.name}",
                  process=self.process)

    def served(self):
        """Requests this upstream has answered so far (its own status requests excluded)."""
        with urllib.request.urlopen(self.url + "/nginx-status", timeout=5) as response:
            text = response.read().decode()
        counters = text.splitlines()[2].split()
        return int(counters[2])


class Contender:
    """A process listening on `port` (HTTP/1.1) and `port_h2` (h2c prior knowledge)."""

    def __init__(self, name, process, port, port_h2, is_buckler=False):
        self.name = name
        self.process = process
        self.url = f"http://127.0.0.1:{port}"
        self.url_h2 = f"http://127.0.0.1:{port_h2}" if port_h2 else None
        self.is_buckler = is_buckler

    def pids(self):
        pids = [self.process.pid] if self.process else []
        for pid in list(pids):
            try:
                out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
                pids += [int(p) for p in out.stdout.split()]
            except OSError:
                pass
        return pids

    def rss_kib(self, field):
        """Sum of `field` (VmRSS or VmHWM) over the process and its children, in KiB."""
        total = 0
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/status") as f:
                    for line in f:
                        if line.startswith(field + ":"):
                            total += int(line.split()[1])
            except OSError:
                pass
        return total


def buckler_config(port, admin_port, upstreams, weights, step_duration="200ms", workers=None,
                   top_extra="", domain_extra=""):
    """Buckler in front of `upstreams` with `weights`, plus the (nearly empty) fleet domain;
    `workers` adds SPEC §2's key when set; `top_extra` and `domain_extra` are JSON5 keys (each
    ending in a comma) added at the top level and to the `*` domain."""
    entries = ",\n".join(
        f'        {{ serviceType: "swagger2", serviceLocation: "{u.url}", weight: {w} }}'
        for u, w in zip(upstreams, weights)
    )
    workers_line = f"\n  workers: {workers}," if workers is not None else ""
    return f"""{{
  listen: "127.0.0.1:{port}",{workers_line}{top_extra}
  admin: {{ listen: "127.0.0.1:{admin_port}" }},
  domains: [
    {{
      "domain-name": "*",
      "request-timeout": "60s",{domain_extra}
      "upstream-weighting": {{ "step-count": 10, "step-duration": "{step_duration}" }},
      upstreams: [
{entries}
      ],
    }},
    {{
      // Filled with a fleet of upstreams through the admin API by `fleet_publish`.
      "domain-name": "{FLEET_DOMAIN}",
      "upstream-weighting": {{ "step-count": 10, "step-duration": "{step_duration}" }},
      upstreams: [ {{ serviceType: "swagger2", serviceLocation: "{upstreams[1].url}" }} ],
    }},
  ],
}}
"""


def buckler_launch(binary, config):
    """How a configuration runs Buckler: (the command's CPU list, its `workers` key or None).

    Pinned to one CPU, Buckler sees one CPU in its affinity mask and runs Tokio's current-thread
    scheduler. Unpinned, it runs the multi-thread scheduler with a worker per CPU it may use;
    without the `workers` key on a machine with more CPUs than the configuration's worker
    count, it is given that many CPUs so that it runs as many workers as the peers."""
    if config.proxy_cpus is not None:
        return config.proxy_cpus, None
    if BUCKLER_HAS_WORKERS_KEY:
        return None, config.workers
    available = sorted(os.sched_getaffinity(0))
    if len(available) > config.workers:
        return available[:config.workers], None
    return None, None


def start_buckler(workdir, upstreams, name, binary, stem, cpu_list=None, workers=None,
                  weights=WEIGHTS, top_extra="", domain_extra="", wait_headers=None):
    """`binary` on `cpu_list` (None: unpinned) in front of `upstreams` (3:1), serving once both
    docs are loaded; its config is `{stem}.json5` and its log `{stem}.log` in `workdir`."""
    port, admin_port = free_port(), free_port()
    config = os.path.join(workdir, f"{stem}.json5")
    with open(config, "w") as f:
        f.write(buckler_config(port, admin_port, upstreams, weights, workers=workers,
                               top_extra=top_extra, domain_extra=domain_extra))
    process = start(
        pinned(cpu_list, [binary, "run", "--config", config]),
        stdout=subprocess.DEVNULL,
        stderr=open(os.path.join(workdir, f"{stem}.log"), "w"),
    )
    buckler = Contender(name, process, port, port, is_buckler=True)
    buckler.binary = binary
    buckler.config = config
    buckler.admin = f"http://127.0.0.1:{admin_port}"
    # 200 once both docs are loaded
    wait_http(buckler.url + "/hello", timeout=120, name=name, process=process,
              headers=wait_headers)
    return buckler


def nginx_servers(upstreams, weights, extra=""):
    return "\n".join(f"    server 127.0.0.1:{u.port} weight={w}{extra};"
                      for u, w in zip(upstreams, weights))


def haproxy_servers(upstreams, weights, extra=""):
    return "\n".join(f"  server {u.name} 127.0.0.1:{u.port} weight {w}{extra}"
                      for u, w in zip(upstreams, weights))


def start_nginx_proxy(workdir, stem, name, config, upstreams, weights, listens, http_extra="",
                      server_extra="", location_extra="", server_flags=""):
    """An NGINX proxy of `config` in front of `upstreams`; `listens` are its `listen` lines
    (without indentation); returns the process (the caller makes the Contender)."""
    ndir = os.path.join(workdir, stem)
    os.makedirs(ndir)
    conf = os.path.join(ndir, "nginx.conf")
    with open(conf, "w") as f:
        f.write(NGINX_PROXY.format(
            workers=config.workers, dir=ndir, servers=nginx_servers(upstreams, weights, server_flags),
            listens="\n".join(f"    {line}" for line in listens), server_extra=server_extra,
            http_extra=http_extra, location_extra=location_extra))
    return start(pinned(config.proxy_cpus, ["nginx", "-p", ndir, "-c", conf]))


def start_haproxy(workdir, stem, config, upstreams, weights, binds, global_extra="",
                  frontend_extra="", backend_extra="", server_flags=""):
    """An HAProxy of `config` in front of `upstreams`; `binds` are its `bind` lines."""
    conf = os.path.join(workdir, f"{stem}.cfg")
    with open(conf, "w") as f:
        f.write(HAPROXY.format(workers=config.workers, global_extra=global_extra,
                               binds="\n".join(f"  {line}" for line in binds),
                               frontend_extra=frontend_extra, backend_extra=backend_extra,
                               servers=haproxy_servers(upstreams, weights, server_flags)))
    return start(pinned(config.proxy_cpus, ["haproxy", "-db", "-f", conf]),
                 stdout=subprocess.DEVNULL,
                 stderr=open(os.path.join(workdir, f"{stem}.log"), "w"))


def start_contenders(workdir, upstreams, config, builds, pingora_bin):
    """Every contender of `config` (a `rows.Config`) in front of `upstreams`: `direct`, each
    Buckler build of `builds` ([(name, binary)]), NGINX and HAProxy (and their same-headers
    variants and Pingora when the configuration has them)."""
    a, b = upstreams
    cpu_list = config.proxy_cpus
    contenders = [Contender("direct", None, a.port, None)]
    contenders[0].url = a.url

    for index, (name, binary) in enumerate(builds):
        buckler_cpus, workers = buckler_launch(binary, config)
        contenders.append(start_buckler(workdir, upstreams, name, binary,
                                        f"{config.id}-buckler-{index}", buckler_cpus, workers))

    for same_headers in (False, True) if config.same_headers else (False,):
        name = SAME_HEADERS.format("NGINX") if same_headers else "NGINX"
        port, port_h2 = free_port(), free_port()
        process = start_nginx_proxy(
            workdir, f"{config.id}-nginx-proxy" + ("-same-headers" if same_headers else ""), name,
            config, upstreams, WEIGHTS,
            [f"listen 127.0.0.1:{port} backlog=4096;",
             f"listen 127.0.0.1:{port_h2} http2 backlog=4096;"],
            http_extra=NGINX_SAME_HEADERS_HTTP if same_headers else "",
            location_extra=NGINX_SAME_HEADERS_LOCATION if same_headers else "")
        contenders.append(Contender(name, process, port, port_h2))

    for same_headers in (False, True) if config.same_headers else (False,):
        name = SAME_HEADERS.format("HAProxy") if same_headers else "HAProxy"
        stem = f"{config.id}-haproxy" + ("-same-headers" if same_headers else "")
        port, port_h2 = free_port(), free_port()
        process = start_haproxy(workdir, stem, config, upstreams, WEIGHTS,
                                [f"bind 127.0.0.1:{port}", f"bind 127.0.0.1:{port_h2} proto h2"],
                                frontend_extra=HAPROXY_SAME_HEADERS if same_headers else "")
        contenders.append(Contender(name, process, port, port_h2))

    if config.pingora and pingora_bin:
        port = free_port()
        process = start(
            pinned(cpu_list, [pingora_bin, f"127.0.0.1:{port}", str(config.workers),
                              f"127.0.0.1:{a.port}={WEIGHTS[0]}", f"127.0.0.1:{b.port}={WEIGHTS[1]}"]),
            stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(workdir, f"{config.id}-pingora.log"), "w"),
        )
        contenders.append(Contender("Pingora", process, port, port))

    for contender in contenders:
        wait_http(contender.url + "/hello", name=contender.name, process=contender.process)
        if contender.name.endswith(SAME_HEADERS.format("")):
            check_same_headers(contender)
    return contenders
