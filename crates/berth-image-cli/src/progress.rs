//! Drawing progress on stderr: per-layer bars (indicatif) when stderr is a terminal, one line
//! per layer state change otherwise (as `docker pull` does when its output is not a terminal),
//! nothing with `--quiet`.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;

use berth_image::{Digest, LayerProgress, LayerState, ProgressEvent, PullEvent};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How progress is shown.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Quiet,
    Lines,
    Bars,
}

fn mode(quiet: bool) -> Mode {
    if quiet {
        Mode::Quiet
    } else if std::io::stderr().is_terminal() {
        Mode::Bars
    } else {
        Mode::Lines
    }
}

fn layer_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{prefix}: {msg:<18} [{bar:30}] {bytes:>10}/{total_bytes:<10} {bytes_per_sec}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ")
}

fn done_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix}: {msg}").unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// What the pull's layers look like so far.
#[derive(Default)]
struct PullState {
    bars: HashMap<Digest, ProgressBar>,
    /// Each layer's last state, for line mode (a line per change).
    last: HashMap<Digest, LayerState>,
    /// Whether any layer had to be fetched or unpacked.
    changed: bool,
}

/// Shows a pull's [`PullEvent`]s.
pub struct PullView {
    mode: Mode,
    multi: MultiProgress,
    state: Mutex<PullState>,
}

impl PullView {
    /// A view for `berth image pull [--quiet]`.
    pub fn new(quiet: bool) -> Self {
        let mode = mode(quiet);
        let target = if mode == Mode::Bars {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        Self {
            mode,
            multi: MultiProgress::with_draw_target(target),
            state: Mutex::new(PullState::default()),
        }
    }

    /// Print a line on stderr (above the bars when they are drawn).
    pub fn line(&self, text: &str) {
        match self.mode {
            Mode::Quiet => {}
            Mode::Bars => {
                let _ = self.multi.println(text);
            }
            Mode::Lines => {
                let _ = writeln!(std::io::stderr().lock(), "{text}");
            }
        }
    }

    /// Take one event.
    pub fn event(&self, e: PullEvent) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match e {
            PullEvent::Resolved { layers, .. } if self.mode == Mode::Bars => {
                for (d, size) in layers {
                    let bar = self.multi.add(ProgressBar::new(size));
                    bar.set_style(layer_style());
                    bar.set_prefix(short(&d).to_owned());
                    s.bars.insert(d, bar);
                }
            }
            PullEvent::Layer(l) => {
                if !matches!(l.state, LayerState::Waiting | LayerState::AlreadyExists) {
                    s.changed = true;
                }
                match self.mode {
                    Mode::Quiet => {}
                    Mode::Bars => {
                        if let Some(bar) = s.bars.get(&l.digest) {
                            draw(bar, &l);
                        }
                    }
                    Mode::Lines => {
                        if s.last.insert(l.digest.clone(), l.state) != Some(l.state) {
                            drop(s);
                            self.line(&format!("{}: {}", l.short_id(), l.state.docker_status()));
                        }
                    }
                }
            }
            _ => {}
        }
    }

    /// Whether the pull fetched or unpacked anything (docker's "Downloaded newer image" as
    /// against "Image is up to date").
    pub fn changed(&self) -> bool {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).changed
    }

    /// Stop drawing (after success or failure), leaving the bars' last state on screen.
    pub fn finish(&self) {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        for bar in s.bars.values() {
            if !bar.is_finished() {
                bar.abandon();
            }
        }
    }
}

fn short(d: &Digest) -> &str {
    &d.hex()[..12.min(d.hex().len())]
}

fn draw(bar: &ProgressBar, l: &LayerProgress) {
    bar.set_message(l.state.docker_status());
    if l.state.is_final() {
        bar.set_style(done_style());
        bar.finish();
        return;
    }
    if l.state == LayerState::Extracting && bar.position() > l.current {
        // Extraction counts from 0 again (a stored blob being unpacked).
        bar.reset();
    }
    bar.set_position(l.current);
}

/// A bytes bar for `berth image unpack` (the store's aggregate [`ProgressEvent`]s), drawn
/// only when stderr is a terminal.
pub struct UnpackBar {
    bar: Option<ProgressBar>,
    layers: Mutex<(usize, usize)>,
}

impl UnpackBar {
    /// A bar unless `quiet` or stderr is not a terminal.
    pub fn new(quiet: bool) -> Self {
        let bar = (mode(quiet) == Mode::Bars).then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes:>10}/{total_bytes:<10} {bytes_per_sec}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar
        });
        Self {
            bar,
            layers: Mutex::new((0, 0)),
        }
    }

    /// Take one event.
    pub fn event(&self, e: ProgressEvent) {
        let Some(bar) = &self.bar else { return };
        let mut l = self.layers.lock().unwrap_or_else(|p| p.into_inner());
        match e {
            ProgressEvent::Start { layers, bytes } => {
                l.1 += layers;
                bar.inc_length(bytes);
            }
            ProgressEvent::Bytes(n) => bar.inc(n),
            ProgressEvent::LayerDone => l.0 += 1,
        }
        bar.set_message(format!("{}/{} layers", l.0, l.1));
    }

    /// Stop drawing.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}
