//! The `buckler` binary: parses the command line, sets up logging and runs or checks a
//! configuration. Everything else lives in `buckler-gateway`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// mimalloc: the request path allocates many small, short-lived objects (header maps, futures);
/// glibc malloc spent ~8 % of the proxy's CPU on them in the load comparison's profile.
/// `buckler-alloc` says why it is not the `mimalloc` crate's allocator.
#[global_allocator]
static ALLOCATOR: buckler_alloc::Allocator = buckler_alloc::Allocator;

/// Buckler: a weighted load-balancing API gateway.
#[derive(Debug, Parser)]
#[command(name = "buckler", version, about)]
struct Cli {
    /// Configuration file (JSON5). Without a subcommand, runs the gateway with it.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log line format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Log filter in RUST_LOG syntax (e.g. "info,buckler_gateway=debug"); overrides BUCKLER_LOG.
    #[arg(long, global = true, value_name = "FILTER")]
    log: Option<String>,
    /// How `workers` threads serve requests: one single-threaded runtime per worker, each
    /// with its own SO_REUSEPORT copy of the listeners, as NGINX runs its workers (the
    /// default: ahead in the load comparison), or one work-stealing runtime for all
    /// (`docs/architecture.md`, *Running on N cores*).
    #[arg(long, global = true, value_enum, default_value_t = RuntimeModel::PerWorker)]
    runtime: RuntimeModel,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start the gateway.
    Run,
    /// Validate the configuration and exit: `ok`, or one `FILE:LINE:COL: message` line per problem.
    Check,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum RuntimeModel {
    MultiThread,
    PerWorker,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    disable_transparent_huge_pages();
    let cli = Cli::parse();
    let Some(config_path) = cli.config.clone() else {
        eprintln!("buckler: --config FILE is required (see `buckler --help`)");
        return ExitCode::from(2);
    };
    match cli.command {
        Some(Command::Check) => check(&config_path),
        Some(Command::Run) | None => {
            init_logging(&cli);
            run(&config_path, cli.runtime)
        }
    }
}

fn check(path: &std::path::Path) -> ExitCode {
    match buckler_config::load(path) {
        Ok(config) => {
            for warning in &config.warnings {
                eprintln!("warning: {warning}");
            }
            // The files the config names, read as `run` would: check and run agree on them.
            let problems = buckler_gateway::check_files(&config);
            if !problems.is_empty() {
                for problem in problems {
                    println!("{}: {problem}", path.display());
                }
                return ExitCode::FAILURE;
            }
            println!("ok");
            ExitCode::SUCCESS
        }
        Err(errors) => {
            println!("{errors}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(cli: &Cli) {
    let filter = cli
        .log
        .clone()
        .or_else(|| std::env::var("BUCKLER_LOG").ok())
        .unwrap_or_else(|| "info".to_owned());
    let filter = tracing_subscriber::EnvFilter::try_new(&filter).unwrap_or_else(|error| {
        eprintln!("buckler: invalid log filter {filter:?} ({error}); using \"info\"");
        tracing_subscriber::EnvFilter::new("info")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// Task polls between two looks at epoll while tasks are ready (Tokio's default is 61). A
/// proxied request takes about five short polls, so at 61 the proxy took in new events every
/// ~12 requests and wrote to its peers in small runs, waking them twice as often as HAProxy
/// does; at 256 it wakes them as often as HAProxy (0.06 wake-ups per request), and runs 4 %
/// more requests over HTTP/2 (`benches/README.md`). A poll takes microseconds, so an event
/// waits at most about a quarter of a millisecond behind a full run queue.
const EVENT_INTERVAL: u32 = 256;

fn run(path: &std::path::Path, model: RuntimeModel) -> ExitCode {
    let config = match buckler_config::load(path) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("buckler: invalid configuration, not starting:\n{errors}");
            return ExitCode::FAILURE;
        }
    };
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let workers = request_threads(config.workers);
    if model == RuntimeModel::PerWorker && workers > 1 {
        return run_per_worker(config, workers);
    }
    // One thread (`workers: 1`, or "auto" on one core: a container limit, `taskset`): work
    // stealing buys nothing and costs atomics on every wake-up, so the single-threaded
    // scheduler runs there. Otherwise Tokio's multi-thread scheduler with one worker per
    // thread asked for (`docs/architecture.md`, *Running on N cores*, says why this model).
    let mut builder = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(workers);
        builder
    };
    builder.thread_name("buckler-worker");
    let runtime = match builder.event_interval(EVENT_INTERVAL).enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("buckler: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(serve(config))
}

/// The request-serving threads `workers` asks for: a count, or one per CPU this process may
/// run on (its affinity mask and cgroup quota, as `available_parallelism` reads them).
fn request_threads(workers: buckler_config::Workers) -> usize {
    match workers {
        buckler_config::Workers::Count(n) => n.max(1) as usize,
        buckler_config::Workers::Auto => {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }
}

/// One single-threaded runtime per worker: this thread's, and `workers - 1` more on threads of
/// their own, which serve their copies of the listeners until the gateway has stopped.
fn run_per_worker(config: buckler_config::Config, workers: usize) -> ExitCode {
    let single = || {
        tokio::runtime::Builder::new_current_thread()
            .event_interval(EVENT_INTERVAL)
            .enable_all()
            .build()
    };
    let (stop, _) = tokio::sync::watch::channel(false);
    let mut threads = Vec::new();
    let mut handles = Vec::new();
    for worker in 1..workers {
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let mut stopped = stop.subscribe();
        let spawned = std::thread::Builder::new()
            .name(format!("buckler-wrk-{worker}"))
            .spawn(move || match single() {
                Ok(runtime) => {
                    let _ = handle_tx.send(Ok(runtime.handle().clone()));
                    runtime.block_on(async move {
                        let _ = stopped.wait_for(|stopped| *stopped).await;
                    });
                }
                Err(error) => {
                    let _ = handle_tx.send(Err(error));
                }
            });
        match spawned.map_err(|e| e.to_string()).and_then(|thread| {
            threads.push(thread);
            handle_rx
                .recv()
                .map_err(|e| e.to_string())
                .and_then(|h| h.map_err(|e| e.to_string()))
        }) {
            Ok(handle) => handles.push(handle),
            Err(error) => {
                eprintln!("buckler: cannot start worker {worker}: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
    let code = match single() {
        Ok(runtime) => runtime.block_on(serve_on(config, &handles)),
        Err(error) => {
            eprintln!("buckler: cannot start the async runtime: {error}");
            ExitCode::FAILURE
        }
    };
    let _ = stop.send(true);
    for thread in threads {
        let _ = thread.join();
    }
    code
}

async fn serve(config: buckler_config::Config) -> ExitCode {
    serve_on(config, &[]).await
}

async fn serve_on(config: buckler_config::Config, more: &[tokio::runtime::Handle]) -> ExitCode {
    let signals = match Signals::install() {
        Ok(signals) => signals,
        Err(error) => {
            eprintln!("buckler: cannot install signal handlers: {error}");
            return ExitCode::FAILURE;
        }
    };
    let gateway = match buckler_gateway::RunningGateway::start_on(config, more).await {
        Ok(gateway) => gateway,
        Err(error) => {
            eprintln!("buckler: {error}");
            return ExitCode::FAILURE;
        }
    };
    for addr in gateway.addrs() {
        tracing::info!(%addr, "listening");
    }
    // Machine-readable line for scripts and tests that start buckler on port 0.
    let addrs: Vec<String> = gateway.addrs().iter().map(|a| a.to_string()).collect();
    println!("buckler listening on {}", addrs.join(" "));
    signals.wait_for_stop(gateway.control()).await;
    tracing::info!("stopping: no new connections, finishing in-flight requests");
    gateway.shutdown().await;
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

/// The signals the gateway answers, installed before it announces that it listens: a
/// SIGHUP sent the moment "listening" is printed must reload, not end the process (the
/// default action of a signal nobody handles yet).
#[cfg(unix)]
struct Signals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
    /// SIGUSR1: reopen the access-log files (after log rotation).
    user1: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
            hangup: signal(SignalKind::hangup())?,
            user1: signal(SignalKind::user_defined1())?,
        })
    }

    /// Waits for SIGTERM or SIGINT; SIGHUP reloads the configuration file on the way, SIGUSR1
    /// reopens the access-log files.
    async fn wait_for_stop(mut self, control: &std::sync::Arc<buckler_gateway::Control>) {
        loop {
            tokio::select! {
                _ = self.terminate.recv() => return,
                _ = self.interrupt.recv() => return,
                _ = self.hangup.recv() => {
                    tracing::info!("SIGHUP: reloading the configuration file");
                    // Outcome (and every error with its position) is logged by the reload.
                    let _ = control.reload().await;
                }
                _ = self.user1.recv() => {
                    tracing::info!("SIGUSR1: reopening access-log files");
                    control.reopen_access_logs();
                }
            }
        }
    }
}

#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn install() -> std::io::Result<Signals> {
        Ok(Signals)
    }

    async fn wait_for_stop(self, _control: &std::sync::Arc<buckler_gateway::Control>) {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Opts this process out of transparent huge pages. mimalloc's arenas are large aligned
/// mappings; with THP each touched byte can pull in a 2 MiB page, and in the load comparison
/// that raised idle RSS from ~10 to ~18 MiB and the cost of an idle keep-alive connection from
/// ~18 to ~30 KiB. The proxy's time goes to syscalls, not TLB misses, so nothing is lost.
fn disable_transparent_huge_pages() {
    // A kernel without the flag answers EINVAL: nothing to do then.
    #[cfg(target_os = "linux")]
    let _ = nix::sys::prctl::set_thp_disable(true);
}
