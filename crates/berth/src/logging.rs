//! runc-compatible logging: `--log FILE` and `--log-format text|json`.
//!
//! containerd's shim reads the log file to report why a command failed, so lines follow
//! runc's (logrus) shapes: `{"level":"error","msg":"...","time":"..."}` in JSON and
//! `time="..." level=error msg="..."` in text.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::subscriber::Interest;
use tracing::{span, Event, Level, Metadata, Subscriber};

use crate::cli::{GlobalOpts, LogFormat};

/// What `main` needs to report a fatal error.
pub struct Log {
    to_file: bool,
}

impl Log {
    /// Report the error that ends the command: to stderr, and to the log file if any. A
    /// stderr that cannot be written (closed, full) is ignored: the exit status still says it.
    pub fn fatal(&self, e: &anyhow::Error) {
        let text = sentence(e);
        if self.to_file {
            tracing::error!("{text}");
        }
        crate::output::err_line(format_args!("berth: {text}"));
    }
}

/// The error and its causes joined by `: `, each cause once: the library's errors already
/// include their cause in their own message, which `{:#}` would repeat.
pub fn sentence(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.is_empty() {
            out = text;
        } else if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
    }
    out
}

/// Install the subscriber the flags ask for. Without `--log` and `--debug` only warnings reach
/// stderr.
pub fn init(g: &GlobalOpts) -> anyhow::Result<Log> {
    let level = if g.debug {
        LevelFilter::DEBUG
    } else if g.log.is_some() {
        LevelFilter::INFO
    } else {
        LevelFilter::WARN
    };
    let (sink, to_file): (Box<dyn Write + Send>, bool) = match &g.log {
        Some(path) => {
            let f: File = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| anyhow::anyhow!("open log file {}: {e}", path.display()))?;
            (Box::new(f), true)
        }
        None => (Box::new(std::io::stderr()), false),
    };
    let subscriber = RuncLog {
        out: Mutex::new(sink),
        format: g.log_format,
        level,
        file: g.log.clone(),
        write_failed: AtomicBool::new(false),
    };
    tracing::subscriber::set_global_default(subscriber)?;
    Ok(Log { to_file })
}

/// A subscriber that writes each event as one runc-shaped line. Spans only scope events in
/// the code (nothing of theirs is printed), so none is kept.
struct RuncLog {
    out: Mutex<Box<dyn Write + Send>>,
    format: LogFormat,
    level: LevelFilter,
    /// The `--log` file, named in the warning when writing it fails.
    file: Option<std::path::PathBuf>,
    /// Whether that warning was given (once per command, as runc's logrus does for each).
    write_failed: AtomicBool,
}

#[derive(Default)]
struct Fields {
    msg: String,
    extra: Vec<(&'static str, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.msg = value.to_owned();
        } else {
            self.extra.push((field.name(), value.to_owned()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.msg = format!("{value:?}");
        } else {
            self.extra.push((field.name(), format!("{value:?}")));
        }
    }
}

fn level_name(l: &Level) -> &'static str {
    match *l {
        Level::ERROR => "error",
        Level::WARN => "warning",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

impl Subscriber for RuncLog {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        if self.enabled(metadata) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(self.level)
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= &self.level
    }

    fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
        span::Id::from_u64(1)
    }

    fn record(&self, _: &span::Id, _: &span::Record<'_>) {}

    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}

    fn enter(&self, _: &span::Id) {}

    fn exit(&self, _: &span::Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut f = Fields::default();
        event.record(&mut f);
        let time = berth_runtime::state::now_rfc3339();
        let level = level_name(event.metadata().level());
        let line = match self.format {
            LogFormat::Json => {
                let mut obj = serde_json::Map::new();
                obj.insert("level".into(), level.into());
                obj.insert("msg".into(), f.msg.into());
                obj.insert("time".into(), time.into());
                for (k, v) in f.extra {
                    obj.insert(k.into(), v.into());
                }
                let mut s = serde_json::Value::Object(obj).to_string();
                s.push('\n');
                s
            }
            LogFormat::Text => {
                let mut s = format!("time={time:?} level={level} msg={:?}", f.msg);
                for (k, v) in f.extra {
                    let _ = write!(s, " {k}={v:?}");
                }
                s.push('\n');
                s
            }
        };
        if let Ok(mut out) = self.out.lock() {
            let written = out.write_all(line.as_bytes()).and_then(|()| out.flush());
            if let (Err(e), Some(file)) = (written, &self.file) {
                // As runc: a log file that cannot be written (full, gone) is said on stderr.
                if !self.write_failed.swap(true, Ordering::Relaxed) {
                    crate::output::err_line(format_args!(
                        "berth: failed to write to log file {}: {}",
                        file.display(),
                        e.to_string().to_lowercase()
                    ));
                }
            }
        }
    }
}
