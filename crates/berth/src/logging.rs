//! runc-compatible logging: `--log FILE` and `--log-format text|json`.
//!
//! containerd's shim reads the log file to report why a command failed, so lines follow
//! runc's (logrus) shapes: `{"level":"error","msg":"...","time":"..."}` in JSON and
//! `time="..." level=error msg="..."` in text.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::{filter::LevelFilter, Layer};

use crate::cli::{GlobalOpts, LogFormat};

/// What `main` needs to report a fatal error.
pub struct Log {
    to_file: bool,
}

impl Log {
    /// Report the error that ends the command: to stderr, and to the log file if any.
    pub fn fatal(&self, e: &anyhow::Error) {
        if self.to_file {
            tracing::error!("{e:#}");
        }
        eprintln!("berth: {e:#}");
    }
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
    let layer = RuncLayer {
        out: Mutex::new(sink),
        format: g.log_format,
    }
    .with_filter(level);
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::set_global_default(subscriber)?;
    Ok(Log { to_file })
}

struct RuncLayer {
    out: Mutex<Box<dyn Write + Send>>,
    format: LogFormat,
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

impl<S: Subscriber> Layer<S> for RuncLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
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
            let _ = out.write_all(line.as_bytes());
        }
    }
}
