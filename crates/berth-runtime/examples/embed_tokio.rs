//! Berth embedded in a tokio program, as a daemon would use it.
//!
//! ```text
//! cargo run --release -p berth-runtime --example embed_tokio -- \
//!     --bundle DIR --containers N --concurrency C [--exec | --exec-dropped] [--root DIR]
//! ```
//!
//! A multi-thread tokio runtime whose other worker threads (and two plain threads) allocate
//! constantly creates, starts, waits for and deletes N containers of the bundle, C at a time.
//! Each container gets its own configuration built in memory from the bundle's (its program
//! is `sh -c 'read x; echo berth-I; exit CODE'`, CODE differing per container), its stdin and
//! stdout are pipes: the program waits on stdin until the example lets it go, and its stdout
//! is read and checked. With `--exec`, each container also runs an exec'd process while it
//! lives (`echo exec-I; exit 3` to fd 3, the one fd passed to it, and a list of its fds,
//! which must be 0 to 3 only; checked too). Init and exec'd processes are awaited
//! through their pidfds (`AsyncFd`), without a thread each. With `--exec-dropped`, each
//! container runs `true` by exec and the handle is dropped unwaited: the library reaps it,
//! and init must still exit within 30 seconds.
//!
//! It exits 0 only if all N containers ran and exited with their own status and output, and
//! nothing is left: no container state, no cgroup, no mount, no child process, no extra open
//! fd. It needs root and a bundle whose rootfs has `sh` (busybox).

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_runtime::container::{ContainerBuilder, ContainerRef, ExecOptions};
use berth_runtime::handle::{ExitStatus, ProcessHandle};
use berth_runtime::spec::Bundle;
use oci_spec::runtime::Spec;
use tokio::io::unix::AsyncFd;
use tokio::io::AsyncReadExt;

/// The command line.
struct Args {
    bundle: PathBuf,
    containers: usize,
    concurrency: usize,
    exec: bool,
    exec_dropped: bool,
    root: PathBuf,
}

fn parse_args() -> Result<Args, String> {
    let mut bundle = None;
    let mut containers = 10;
    let mut concurrency = 4;
    let mut exec = false;
    let mut exec_dropped = false;
    let mut root = PathBuf::from(format!("/run/berth-embed-{}", std::process::id()));
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--bundle" => bundle = Some(PathBuf::from(value("--bundle")?)),
            "--containers" => {
                containers = value("--containers")?
                    .parse()
                    .map_err(|e| format!("--containers: {e}"))?
            }
            "--concurrency" => {
                concurrency = value("--concurrency")?
                    .parse()
                    .map_err(|e| format!("--concurrency: {e}"))?
            }
            "--root" => root = PathBuf::from(value("--root")?),
            "--exec" => exec = true,
            "--exec-dropped" => exec_dropped = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Args {
        bundle: bundle.ok_or("--bundle DIR is required")?,
        containers,
        concurrency: concurrency.max(1),
        exec,
        exec_dropped,
        root,
    })
}

fn main() -> ExitCode {
    // Before the async runtime starts (while this process has one thread): `exec` runs runtime
    // code inside containers, so the binary must be protected first. This may re-execute the
    // program from a read-only bind mount of itself.
    if let Err(e) = berth_runtime::exe::protect() {
        eprintln!("embed_tokio: {e}");
        return ExitCode::from(1);
    }
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("embed_tokio: {e}");
            return ExitCode::from(2);
        }
    };
    // tokio keeps process-wide fds of its own once a runtime with the signal driver has
    // existed (the signal pipe, when a crate in the build enables tokio's `signal` feature, as
    // the workspace's daemon does): let a first runtime make them, so that the leak check
    // below counts only what the containers leave.
    if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        drop(rt);
    }
    let before = Snapshot::take();
    let t0 = Instant::now();
    let outcome = {
        let rt = match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!("embed_tokio: tokio runtime: {e}");
                return ExitCode::from(1);
            }
        };
        rt.block_on(run(&args))
        // The runtime (its threads and fds) is gone before the leak check.
    };
    let elapsed = t0.elapsed();
    let mut failed = outcome.failures;
    let _ = std::fs::remove_dir(&args.root);
    let bundle = std::fs::canonicalize(&args.bundle).unwrap_or_else(|_| args.bundle.clone());
    failed.extend(before.leaks(&args.root, &bundle, &outcome.id_prefix));
    for f in &failed {
        eprintln!("embed_tokio: {f}");
    }
    println!(
        "{} of {} containers ran and exited with their own status{}, {} at a time, in {:.2} s \
         ({} allocations by the other threads meanwhile)",
        outcome.ok,
        args.containers,
        if args.exec {
            " (each with an exec)"
        } else if args.exec_dropped {
            " (each with an exec whose handle was dropped)"
        } else {
            ""
        },
        args.concurrency,
        elapsed.as_secs_f64(),
        outcome.allocations,
    );
    if failed.is_empty() && outcome.ok == args.containers {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// What the run did.
struct Outcome {
    ok: usize,
    failures: Vec<String>,
    allocations: u64,
    id_prefix: String,
}

async fn run(args: &Args) -> Outcome {
    let id_prefix = format!("embed-{}-", std::process::id());
    let base = match Bundle::load(&args.bundle) {
        Ok(b) => b,
        Err(e) => {
            return Outcome {
                ok: 0,
                failures: vec![format!("bundle {}: {e}", args.bundle.display())],
                allocations: 0,
                id_prefix,
            }
        }
    };
    // The other threads allocate all the time: tasks on the runtime's workers, and two plain
    // threads. A container process cloned from this multithreaded program would deadlock on
    // the allocator's lock sooner or later; the library must not let that happen.
    let stop = Arc::new(AtomicBool::new(false));
    let allocations = Arc::new(AtomicU64::new(0));
    let mut churners = Vec::new();
    for _ in 0..4 {
        let (stop, n) = (stop.clone(), allocations.clone());
        churners.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                churn(&n);
                tokio::task::yield_now().await;
            }
        }));
    }
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let (stop, n) = (stop.clone(), allocations.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    churn(&n);
                }
            })
        })
        .collect();

    let limit = Arc::new(tokio::sync::Semaphore::new(args.concurrency));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..args.containers {
        let limit = limit.clone();
        let job = Job {
            i,
            id: format!("{id_prefix}{i}"),
            root: args.root.clone(),
            dir: base.dir().to_owned(),
            spec: base.spec().clone(),
            exec: args.exec,
            exec_dropped: args.exec_dropped,
        };
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let id = job.id.clone();
            match tokio::time::timeout(Duration::from_secs(120), job.run()).await {
                Ok(r) => r.map_err(|e| format!("{id}: {e}")),
                Err(_) => Err(format!("{id}: no end within 120 s (a hang)")),
            }
        });
    }
    let mut ok = 0;
    let mut failures = Vec::new();
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(Ok(())) => ok += 1,
            Ok(Err(e)) => failures.push(e),
            Err(e) => failures.push(format!("task: {e}")),
        }
    }
    stop.store(true, Ordering::Relaxed);
    for c in churners {
        let _ = c.await;
    }
    for t in threads {
        let _ = t.join();
    }
    Outcome {
        ok,
        failures,
        allocations: allocations.load(Ordering::Relaxed),
        id_prefix,
    }
}

/// Allocate and free a little, as a busy program does.
fn churn(n: &AtomicU64) {
    let v: Vec<String> = (0..64).map(|j| format!("allocation {j}")).collect();
    std::hint::black_box(&v);
    n.fetch_add(v.len() as u64, Ordering::Relaxed);
}

/// One container's life.
struct Job {
    i: usize,
    id: String,
    root: PathBuf,
    dir: PathBuf,
    spec: Spec,
    exec: bool,
    exec_dropped: bool,
}

impl Job {
    /// The status this container's program exits with: its own.
    fn code(&self) -> i32 {
        (self.i % 200) as i32 + 1
    }

    async fn run(self) -> Result<(), String> {
        let code = self.code();
        let mut spec = self.spec.clone();
        let mut process = spec.process().clone().ok_or("the bundle has no process")?;
        process.set_terminal(Some(false));
        process.set_args(Some(vec![
            "sh".into(),
            "-c".into(),
            format!("read x; echo berth-{}; exit {code}", self.i),
        ]));
        spec.set_process(Some(process.clone()));
        let bundle = Bundle::from_spec(&self.dir, spec).map_err(|e| e.to_string())?;
        let (stdin_r, stdin_w) = pipe()?;
        let (stdout_r, stdout_w) = pipe()?;
        let (id, root) = (self.id.clone(), self.root.clone());
        // The library's calls block (for milliseconds): off the async workers.
        let init = tokio::task::spawn_blocking(move || {
            let mut c = ContainerBuilder::new(&id, bundle.dir())
                .root(&root)
                .stdin(stdin_r)
                .stdout(stdout_w)
                .create_from(bundle)?;
            let init = c.take_init_process();
            if let Err(e) = c.start() {
                let _ = c.delete(true);
                return Err(e);
            }
            // The container's lock goes with `c`; the init's pidfd stays with us.
            Ok(init)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("create and start: {e}"))?
        .ok_or("create returned no init process handle")?;
        let output = read_all(stdout_r);

        let result = self.live(init, stdin_w, &process, code).await;
        let out = output.await.map_err(|e| e.to_string())??;
        let deleted = self.delete().await;
        result?;
        deleted?;
        let want = format!("berth-{}\n", self.i);
        if out != want {
            return Err(format!("stdout {out:?}, expected {want:?}"));
        }
        Ok(())
    }

    /// While the container lives: the exec (if asked), then let init go and wait for it.
    async fn live(
        &self,
        init: ProcessHandle,
        stdin_w: OwnedFd,
        process: &oci_spec::runtime::Process,
        code: i32,
    ) -> Result<(), String> {
        let exec = if self.exec {
            self.exec_one(process).await
        } else if self.exec_dropped {
            self.exec_and_drop(process).await
        } else {
            Ok(())
        };
        drop(stdin_w); // `read x` returns: the program prints and exits
                       // An exec'd process left unreaped would keep init from finishing its exit for good.
        let status = tokio::time::timeout(Duration::from_secs(30), wait_exit(init))
            .await
            .map_err(|_| "init did not exit within 30s".to_owned())??;
        exec?;
        if status != ExitStatus::Exited(code) {
            return Err(format!("init {status}, expected exit status {code}"));
        }
        Ok(())
    }

    async fn exec_one(&self, process: &oci_spec::runtime::Process) -> Result<(), String> {
        let mut process = process.clone();
        process.set_args(Some(vec![
            "sh".into(),
            "-c".into(),
            // Its output goes to fd 3, the one fd passed (`stdio.fds`): then it lists its
            // own fds, which must be stdio and that one, none of this program's.
            format!("exec >&3; echo exec-{}; ls /proc/$$/fd; exit 3", self.i),
        ]));
        let (out_r, out_w) = pipe()?;
        let (id, root) = (self.id.clone(), self.root.clone());
        let handle = tokio::task::spawn_blocking(move || {
            let mut opts = ExecOptions::default();
            opts.stdio.fds = vec![Arc::new(out_w)];
            ContainerRef::new(root, id).exec(process, &opts)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("exec: {e}"))?;
        let output = read_all(out_r);
        let status = wait_exit(handle).await?;
        let out = output.await.map_err(|e| e.to_string())??;
        if status != ExitStatus::Exited(3) || out != format!("exec-{}\n0\n1\n2\n3\n", self.i) {
            return Err(format!("exec {status}, stdout {out:?}"));
        }
        Ok(())
    }

    /// Exec a short process and drop its handle without waiting: the library must reap it
    /// (else it stays a zombie in the container's pid namespace and init never finishes
    /// exiting).
    async fn exec_and_drop(&self, process: &oci_spec::runtime::Process) -> Result<(), String> {
        let mut process = process.clone();
        process.set_args(Some(vec!["true".into()]));
        let (id, root) = (self.id.clone(), self.root.clone());
        tokio::task::spawn_blocking(move || {
            ContainerRef::new(root, id).exec(process, &ExecOptions::default())
        })
        .await
        .map_err(|e| e.to_string())?
        .map(drop)
        .map_err(|e| format!("exec: {e}"))
    }

    async fn delete(&self) -> Result<(), String> {
        let (id, root) = (self.id.clone(), self.root.clone());
        // By id, in one lock (a `Container` would be loaded under a lock of its own first).
        tokio::task::spawn_blocking(move || ContainerRef::new(root, id).delete(false))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("delete: {e}"))
    }
}

/// Wait for a process to exit without blocking a worker: its pidfd becomes readable.
async fn wait_exit(handle: ProcessHandle) -> Result<ExitStatus, String> {
    // `with_interest` is deprecated in favour of the unsafe `register_with_interest` (tokio
    // cannot know that an fd it watches stays open); here the AsyncFd owns the handle, which
    // owns the pidfd, so it cannot be closed while registered.
    #[allow(deprecated)]
    let mut fd = AsyncFd::with_interest(handle, tokio::io::Interest::READABLE)
        .map_err(|e| format!("register pidfd: {e}"))?;
    loop {
        if let Some(status) = fd.get_mut().try_wait().map_err(|e| e.to_string())? {
            return Ok(status);
        }
        let mut guard = fd.readable_mut().await.map_err(|e| e.to_string())?;
        guard.clear_ready();
    }
}

/// A pipe, both ends close-on-exec.
fn pipe() -> Result<(OwnedFd, OwnedFd), String> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))
}

/// Read a pipe to its end in a task of its own.
fn read_all(fd: OwnedFd) -> tokio::task::JoinHandle<Result<String, String>> {
    tokio::spawn(async move {
        let mut rx = tokio::net::unix::pipe::Receiver::from_owned_fd(fd)
            .map_err(|e| format!("pipe: {e}"))?;
        let mut out = String::new();
        rx.read_to_string(&mut out)
            .await
            .map_err(|e| format!("read stdout: {e}"))?;
        Ok(out)
    })
}

/// What the host looked like before, to find what was left.
struct Snapshot {
    fds: usize,
    mounts: Vec<String>,
}

impl Snapshot {
    fn take() -> Snapshot {
        Snapshot {
            fds: count_dir("/proc/self/fd"),
            mounts: mount_points(),
        }
    }

    /// What is left of this run: the host is shared (other programs mount and unmount
    /// meanwhile), so a new mount counts when it is under the bundle or the runtime root, or
    /// names one of our containers.
    fn leaks(&self, root: &Path, bundle: &Path, prefix: &str) -> Vec<String> {
        let mut out = Vec::new();
        // The library's background reaper (of dropped exec handles, `--exec-dropped`) closes
        // its wake pipe just after its last reap: give it a moment to end.
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut fds = count_dir("/proc/self/fd");
        while fds != self.fds && Instant::now() < deadline {
            std::thread::yield_now();
            fds = count_dir("/proc/self/fd");
        }
        if fds != self.fds {
            out.push(format!("open fds: {fds} now, {} before", self.fds));
        }
        for m in mount_points() {
            let ours = m.starts_with(&*bundle.to_string_lossy())
                || m.starts_with(&*root.to_string_lossy())
                || m.contains(prefix);
            if ours && !self.mounts.contains(&m) {
                out.push(format!("mount left: {m}"));
            }
        }
        if root.exists() {
            out.push(format!("state left in {}", root.display()));
        }
        let me = std::process::id() as i32;
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if berth_runtime::procfs::ProcStat::of(pid).is_some_and(|st| st.ppid == me) {
                out.push(format!("child process {pid} left"));
            }
        }
        for dir in cgroups_named(Path::new("/sys/fs/cgroup"), prefix, 4) {
            out.push(format!("cgroup left: {}", dir.display()));
        }
        out
    }
}

fn count_dir(path: &str) -> usize {
    std::fs::read_dir(path).map(|d| d.count()).unwrap_or(0)
}

/// The mount points of this mount namespace (field 5 of /proc/self/mountinfo).
fn mount_points() -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|s| {
            s.lines()
                .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Cgroup directories (up to `depth` levels down) whose name starts with `prefix`.
fn cgroups_named(dir: &Path, prefix: &str, depth: usize) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if depth == 0 {
        return out;
    }
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = e.path();
        if !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        if e.file_name().to_string_lossy().starts_with(prefix) {
            out.push(path);
        } else {
            out.extend(cgroups_named(&path, prefix, depth - 1));
        }
    }
    out
}
