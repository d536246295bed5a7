//! A minimal weighted Pingora load balancer, the Pingora contender of `benches/load/compare`.
//!
//! `pingora-lb LISTEN THREADS ADDR=WEIGHT...` proxies HTTP/1.1 and h2c (prior knowledge) on
//! LISTEN to the upstreams with Pingora's own weighted round robin, reusing upstream connections
//! from its pool. Nothing else: no health checks, no header rewriting beyond what Pingora does.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use pingora_core::apps::HttpServerOptions;
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::Server;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::Result;
use pingora_load_balancing::discovery::Static;
use pingora_load_balancing::selection::RoundRobin;
use pingora_load_balancing::{Backend, Backends, LoadBalancer};
use pingora_proxy::{ProxyHttp, Session};

struct WeightedProxy(Arc<LoadBalancer<RoundRobin>>);

#[async_trait]
impl ProxyHttp for WeightedProxy {
    type CTX = ();

    fn new_ctx(&self) -> Self::CTX {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        let backend = self
            .0
            .select(b"", 256)
            .expect("static backends are always selectable");
        Ok(Box::new(HttpPeer::new(backend.addr, false, String::new())))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: pingora-lb LISTEN THREADS ADDR=WEIGHT...";
    let listen = args.first().expect(usage).clone();
    let threads: usize = args.get(1).and_then(|t| t.parse().ok()).expect(usage);
    let mut backends = BTreeSet::new();
    for spec in &args[2..] {
        let (addr, weight) = spec.split_once('=').expect(usage);
        let weight = weight.parse().expect("weight is an integer");
        backends.insert(Backend::new_with_weight(addr, weight).expect("upstream address"));
    }
    assert!(!backends.is_empty(), "{usage}");

    let balancer = LoadBalancer::<RoundRobin>::from_backends(Backends::new(Static::new(backends)));
    // Static discovery never blocks: one poll publishes the backends to the selector.
    block_on(balancer.update()).expect("static discovery");

    let conf = ServerConf {
        threads,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut service =
        pingora_proxy::http_proxy_service(&server.configuration, WeightedProxy(Arc::new(balancer)));
    let mut options = HttpServerOptions::default();
    options.h2c = true;
    if let Some(logic) = service.app_logic_mut() {
        logic.server_options = Some(options);
    }
    service.add_tcp(&listen);
    server.add_service(service);
    eprintln!("pingora-lb listening on {listen}");
    server.run_forever();
}

/// Drives a future that completes without waiting (static discovery) to its end.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime")
        .block_on(future)
}
