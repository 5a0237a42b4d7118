//! `berthd`: a daemon that speaks the Docker Engine API, so that the docker CLI and the docker
//! SDKs drive Berth unmodified.
//!
//! Every container runs under a monitor process of its own ([`monitor`]), so berthd can be
//! killed and restarted at any moment: the containers keep running and logging, and the new
//! daemon finds them (live restore).

mod api;
mod archive;
mod daemon;
mod error;
mod health;
mod images;
mod logs;
mod monitor;
mod network;
mod pidfile;
mod seccomp;
mod spec;
mod store;
mod supervisor;
mod sys;
mod util;
mod volumes;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Parser;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tower::ServiceExt;

/// berthd's command line (dockerd's flags where they exist).
#[derive(Debug, Parser)]
#[command(
    name = "berthd",
    version,
    about = "A Docker Engine API daemon over the Berth libraries"
)]
struct Args {
    /// Where to listen: unix:///PATH or tcp://127.0.0.1:PORT (loopback only: no TLS).
    #[arg(
        short = 'H',
        long = "host",
        default_value = "unix:///run/berth/berthd.sock"
    )]
    hosts: Vec<String>,
    /// Images (berth-image's store layout) and container records.
    #[arg(long, default_value = "/var/lib/berth")]
    data_root: PathBuf,
    /// Monitor sockets and the runtime's state.
    #[arg(long, default_value = "/run/berth")]
    exec_root: PathBuf,
    /// error, warn, info, debug, trace.
    #[arg(short = 'l', long, default_value = "info")]
    log_level: String,
    /// Write the daemon's pid here.
    #[arg(short = 'p', long)]
    pidfile: Option<PathBuf>,
    /// The bridge (made if missing) that containers of the default network join, through
    /// the CNI bridge plugin; `none` (the default for now) gives them a network namespace with
    /// only loopback.
    #[arg(short = 'b', long, default_value = "none")]
    bridge: String,
    /// The bridge network's subnet.
    #[arg(long, default_value = "172.31.0.0/16")]
    bridge_subnet: String,
    /// Group owning the unix socket (mode 0660); empty for root only.
    #[arg(short = 'G', long, default_value = "")]
    group: String,
}

fn main() -> Result<()> {
    // The monitor entry: before any thread or runtime exists.
    let mut argv = std::env::args_os();
    if argv.nth(1).as_deref() == Some(std::ffi::OsStr::new(monitor::MONITOR_ARG)) {
        let dir = argv.next().map(PathBuf::from).unwrap_or_default();
        monitor::main(&dir);
    }
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log_level)
        .with_context(|| format!("invalid --log-level {:?}", args.log_level))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    rt.block_on(run(args))
}

enum Listener {
    Unix(tokio::net::UnixListener),
    Tcp(tokio::net::TcpListener),
}

/// The gid of `--group`: a number, or a name looked up in `/etc/group`.
///
/// Read the file rather than ask glibc's `getgrnam_r`: berthd is linked statically, and a
/// static glibc that misses a name in `files` goes on to the next source of nsswitch.conf
/// (`systemd` on Debian) by dlopen()ing its shared `libnss_*.so`, which brings a second,
/// dynamic libc into the process and crashes it (SIGSEGV) instead of answering "not found".
fn group_id(name: &str) -> Result<Option<u32>> {
    if name.is_empty() {
        return Ok(None);
    }
    if let Ok(n) = name.parse() {
        return Ok(Some(n));
    }
    let groups = std::fs::read_to_string("/etc/group").context("read /etc/group")?;
    match group_in(&groups, name) {
        Some(g) => Ok(Some(g)),
        None => bail!("group {name:?} not found in /etc/group"),
    }
}

/// The gid of group `name` in the text of an `/etc/group` file.
fn group_in(groups: &str, name: &str) -> Option<u32> {
    groups.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next() == Some(name))
            .then(|| f.nth(1).and_then(|g| g.trim().parse().ok()))
            .flatten()
    })
}

fn listen(host: &str, group: Option<u32>) -> Result<Listener> {
    if let Some(path) = host.strip_prefix("unix://") {
        let path = Path::new(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("create {}", parent.display()))?;
        }
        let _ = std::fs::remove_file(path);
        let l = tokio::net::UnixListener::bind(path)
            .with_context(|| format!("listen on {}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
        if let Some(g) = group {
            nix::unistd::chown(path, None, Some(nix::unistd::Gid::from_raw(g)))
                .context("chown the socket")?;
        }
        return Ok(Listener::Unix(l));
    }
    if let Some(addr) = host.strip_prefix("tcp://") {
        let sa: std::net::SocketAddr = addr
            .parse()
            .with_context(|| format!("invalid address {addr:?}"))?;
        if !sa.ip().is_loopback() {
            bail!("refusing to listen on {sa} without TLS: only loopback addresses are allowed");
        }
        let l = std::net::TcpListener::bind(sa).with_context(|| format!("listen on {sa}"))?;
        l.set_nonblocking(true)?;
        return Ok(Listener::Tcp(tokio::net::TcpListener::from_std(l)?));
    }
    bail!("unsupported host {host:?} (unix:///PATH or tcp://127.0.0.1:PORT)")
}

async fn run(args: Args) -> Result<()> {
    let group = group_id(&args.group)?;
    // Before anything is touched (a socket of the same path would be unlinked): one daemon
    // per data root, exec root and pid file.
    let lock =
        pidfile::DaemonLock::acquire(&args.data_root, &args.exec_root, args.pidfile.as_deref())?;
    let listeners: Vec<Listener> = args
        .hosts
        .iter()
        .map(|h| listen(h, group))
        .collect::<Result<_>>()?;
    std::fs::create_dir_all(&args.data_root)?;
    let paths = store::Paths {
        data_root: args.data_root.clone(),
        exec_root: args.exec_root.clone(),
    };
    let bridge = (args.bridge != "none").then(|| network::Bridge {
        name: args.bridge.clone(),
        subnet: args.bridge_subnet.clone(),
        ipam_dir: args.data_root.join("network/ipam"),
    });
    let d = daemon::Daemon::new(paths, bridge).await?;
    // As dockerd: 0710 (the image store makes its root 0700 when it opens it).
    std::fs::set_permissions(&args.data_root, std::fs::Permissions::from_mode(0o710))?;
    let router = api::router(d.clone());
    tracing::info!(hosts = ?args.hosts, "berthd is listening");
    let mut tasks = Vec::new();
    for l in listeners {
        let router = router.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                match &l {
                    Listener::Unix(u) => match u.accept().await {
                        Ok((s, _)) => serve(TokioIo::new(s), router.clone()),
                        Err(e) => tracing::warn!("accept: {e}"),
                    },
                    Listener::Tcp(t) => match t.accept().await {
                        Ok((s, _)) => serve(TokioIo::new(s), router.clone()),
                        Err(e) => tracing::warn!("accept: {e}"),
                    },
                }
            }
        }));
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    // Containers keep running under their monitors (live restore).
    tracing::info!("berthd stopping; containers keep running");
    drop(d);
    // Removes the pid file (ours: we hold its lock).
    drop(lock);
    Ok(())
}

fn serve<I>(io: I, router: axum::Router)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let router = router.clone();
            async move {
                let mut req = match read_small_body(req).await {
                    Ok(req) => req,
                    Err(mut resp) => {
                        api::common_headers(&mut resp);
                        return Ok::<_, std::convert::Infallible>(resp);
                    }
                };
                if let Err(resp) = api::rewrite(&mut req) {
                    let mut resp = *resp;
                    api::common_headers(&mut resp);
                    return Ok(resp);
                }
                let mut resp = router.oneshot(req).await.unwrap_or_else(|e| match e {});
                api::common_headers(&mut resp);
                Ok(resp)
            }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .serve_connection(io, svc)
            .with_upgrades();
        if let Err(e) = conn.await {
            tracing::debug!("connection: {e}");
        }
    });
}

/// Request bodies of at most this many bytes (by `Content-Length`) are read whole before the
/// request is routed.
const SMALL_BODY_MAX: usize = 1 << 20;

/// Read a small request body (the JSON of most API calls) before routing it, as Go's
/// net/http server drains up to 256 KiB of an unread body before answering: a handler that
/// refuses a request without reading its body (a bad parameter, an unsupported endpoint)
/// would otherwise answer and close the connection while the client is still writing, and
/// the client would report `broken pipe` instead of the answer. Larger bodies (image
/// archives, `docker cp` tars) stream to their handlers, which read them.
async fn read_small_body(
    req: hyper::Request<Incoming>,
) -> Result<hyper::Request<axum::body::Body>, axum::response::Response> {
    let small = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|n| n > 0 && n <= SMALL_BODY_MAX);
    let (parts, body) = req.into_parts();
    let body = axum::body::Body::new(body);
    if !small {
        return Ok(hyper::Request::from_parts(parts, body));
    }
    match axum::body::to_bytes(body, SMALL_BODY_MAX).await {
        Ok(bytes) => Ok(hyper::Request::from_parts(
            parts,
            axum::body::Body::from(bytes),
        )),
        Err(e) => Err(api::json(
            hyper::StatusCode::BAD_REQUEST,
            &serde_json::json!({"message": format!("reading the request body failed: {e}")}),
        )),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn group_lookup_reads_the_file() {
        let f = "root:x:0:\ndocker:x:999:alice,bob\nbroken\n";
        assert_eq!(super::group_in(f, "docker"), Some(999));
        assert_eq!(super::group_in(f, "root"), Some(0));
        assert_eq!(super::group_in(f, "nosuchgroup"), None);
        assert_eq!(super::group_in(f, "broken"), None);
    }
}
