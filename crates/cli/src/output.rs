//! Rendering: human text or JSON lines on stdout, warnings on stderr, and the [`CliReporter`]
//! that turns engine [`Event`]s into progress bars, itemized change lines or JSON lines.
//!
//! Every write to stdout goes through here and returns its I/O error, so a closed pipe
//! (`offsite ls latest | head`) ends the command quietly instead of panicking.
//!
//! Human output is escaped here, where it is written ([`escape`]): file names, symlink
//! targets, hosts, tags and error messages come from the source or the repository, and a
//! control character in them (ESC, CR, ...) would otherwise reach the user's terminal and could
//! rewrite what it shows. JSON output is written exact (JSON escapes controls itself).

use std::borrow::Cow;
use std::collections::HashSet;
use std::io::{self, IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use offsite_engine::{Event, Reporter};
use serde::Serialize;

use crate::resolve::Invocation;
use crate::units::format_bytes;

/// Lock, ignoring poisoning: a panicked printer must not silence the others.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Output mode of one invocation.
#[derive(Clone, Copy, Debug)]
pub struct Output {
    /// JSON lines instead of text.
    pub json: bool,
    /// Suppress non-essential human output.
    pub quiet: bool,
    /// `-v` count.
    pub verbose: u8,
}

impl Output {
    /// The output mode an invocation asks for.
    pub fn new(inv: &Invocation) -> Output {
        Output { json: inv.json, quiet: inv.quiet, verbose: inv.verbose }
    }

    /// Print a line of human output, [`escape`]d (nothing with `--json`).
    pub fn line(&self, text: impl std::fmt::Display) -> io::Result<()> {
        if self.json {
            return Ok(());
        }
        writeln!(io::stdout().lock(), "{}", escape(&text.to_string()))
    }

    /// Print a line of human output unless `--quiet` (nothing with `--json`).
    pub fn info(&self, text: impl std::fmt::Display) -> io::Result<()> {
        if self.quiet {
            return Ok(());
        }
        self.line(text)
    }

    /// Print one JSON object as a line (only with `--json`).
    pub fn json(&self, value: &impl Serialize) -> io::Result<()> {
        if !self.json {
            return Ok(());
        }
        write_json_line(value)
    }
}

/// Serialize `value` as one line on stdout.
pub fn write_json_line(value: &impl Serialize) -> io::Result<()> {
    let mut line = serde_json::to_vec(value).map_err(io::Error::other)?;
    line.push(b'\n');
    io::stdout().lock().write_all(&line)
}

/// A warning on stderr: `offsite: warning: <text>`, [`escape`]d.
pub fn warn(text: impl std::fmt::Display) {
    let _ = writeln!(io::stderr().lock(), "offsite: warning: {}", escape(&text.to_string()));
}

/// Text made safe for a terminal, and unambiguous: every control character (C0, DEL and C1,
/// U+0080 to U+009F) is shown as an escape (`\r`, `\n`, `\t`, `\x1b`, `\u{9b}`), and a
/// backslash as `\\`, so no escaped text can pass for another. Everything else is kept as is
/// (bytes that are not UTF-8 were already shown as U+FFFD by the caller).
///
/// Every line of human output goes through this once, where it is written ([`Output::line`],
/// [`warn`], itemized changes, the progress bar, the error line); JSON output never does.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| c.is_control() || c == '\\') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x80 && c.is_control() => out.push_str(&format!("\\x{:02x}", u32::from(c))),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A notice on stderr: `offsite: notice: <text>` (something to know, nothing wrong).
pub fn notice(text: impl std::fmt::Display) {
    let _ = writeln!(io::stderr().lock(), "offsite: notice: {text}");
}

/// The warning printed for a path the engine could not read.
pub fn warn_unreadable(path: &str, message: &str) {
    warn(format_args!("cannot read {path}: {message}"));
}

/// Renders engine events for one command run.
///
/// With `--json` every event except progress becomes a JSON line on stdout. Otherwise change
/// lines (`+ /path (1.20 KiB)`) are printed when `show_changes` is set, errors and warnings go
/// to stderr, and progress drives a bar only when stderr is a terminal.
pub struct CliReporter {
    out: Output,
    show_changes: bool,
    bar: Option<ProgressBar>,
    broken_pipe: AtomicBool,
    errors_named: Mutex<HashSet<String>>,
}

impl CliReporter {
    /// A reporter for `phase` (shown next to the bar).
    pub fn new(out: Output, show_changes: bool, phase: &str) -> CliReporter {
        let bar = (!out.json && !out.quiet && io::stderr().is_terminal()).then(|| new_bar(phase));
        CliReporter {
            out,
            show_changes,
            bar,
            broken_pipe: AtomicBool::new(false),
            errors_named: Mutex::default(),
        }
    }

    /// Remove the progress bar (before printing a summary).
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    /// Whether stdout was closed under us (the command should then stop quietly).
    pub fn broken_pipe(&self) -> bool {
        self.broken_pipe.load(Ordering::Relaxed)
    }

    /// Whether a warning for this path was already printed.
    pub fn already_named(&self, path: &str) -> bool {
        lock(&self.errors_named).contains(path)
    }

    fn stdout_line(&self, write: impl FnOnce() -> io::Result<()>) {
        if self.broken_pipe() {
            return;
        }
        let result = match &self.bar {
            Some(bar) => bar.suspend(write),
            None => write(),
        };
        if let Err(e) = result {
            if e.kind() == io::ErrorKind::BrokenPipe {
                self.broken_pipe.store(true, Ordering::Relaxed);
            }
        }
    }

    fn stderr_line(&self, print: impl FnOnce()) {
        match &self.bar {
            Some(bar) => bar.suspend(print),
            None => print(),
        }
    }

    fn progress(&self, bytes_done: u64, bytes_total: Option<u64>, items_done: u64, current: Option<String>) {
        let Some(bar) = &self.bar else { return };
        if let Some(total) = bytes_total {
            bar.set_length(total);
        }
        bar.set_position(bytes_done);
        let mut msg = format!("{items_done} items");
        if let Some(c) = current {
            msg.push(' ');
            msg.push_str(&escape(&c));
        }
        bar.set_message(msg);
    }
}

fn new_bar(phase: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    let template = format!("{phase} {{elapsed_precise}} {{bytes}} {{binary_bytes_per_sec}} {{wide_msg}}");
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    bar
}

impl Reporter for CliReporter {
    fn report(&self, event: Event) {
        if self.out.json {
            if matches!(event, Event::Progress { .. }) {
                return;
            }
            if let Event::Error { path, message } = &event {
                lock(&self.errors_named).insert(path.clone());
                self.stderr_line(|| warn_unreadable(path, message));
            }
            self.stdout_line(|| write_json_line(&event));
            return;
        }
        match event {
            Event::Progress { bytes_done, bytes_total, items_done, current, .. } => {
                self.progress(bytes_done, bytes_total, items_done, current);
            }
            Event::Change { change, path, size } => {
                if self.show_changes {
                    self.stdout_line(|| {
                        writeln!(io::stdout().lock(), "{change} {} ({})", escape(&path), format_bytes(size))
                    });
                }
            }
            Event::Error { path, message } => {
                lock(&self.errors_named).insert(path.clone());
                self.stderr_line(|| warn_unreadable(&path, &message));
            }
            Event::Warning { path, message } => {
                if !self.out.quiet {
                    self.stderr_line(|| warn(format_args!("{path}: {message}")));
                }
            }
        }
    }

    fn wants_progress(&self) -> bool {
        self.bar.is_some()
    }
}

/// Write a byte stream to stdout, remembering whether the reader went away.
pub struct StdoutSink {
    inner: io::BufWriter<io::StdoutLock<'static>>,
    broken: bool,
}

impl StdoutSink {
    /// A buffered stdout.
    pub fn new() -> StdoutSink {
        StdoutSink { inner: io::BufWriter::with_capacity(1 << 16, io::stdout().lock()), broken: false }
    }
    /// Whether a write failed because stdout was closed.
    pub fn broken(&self) -> bool {
        self.broken
    }
    /// Flush, noting a closed pipe.
    pub fn finish(&mut self) -> io::Result<()> {
        let r = self.inner.flush();
        self.note(r)
    }
    fn note<T>(&mut self, r: io::Result<T>) -> io::Result<T> {
        if let Err(e) = &r {
            if e.kind() == io::ErrorKind::BrokenPipe {
                self.broken = true;
            }
        }
        r
    }
}

impl Write for StdoutSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let r = self.inner.write(buf);
        self.note(r)
    }
    fn flush(&mut self) -> io::Result<()> {
        let r = self.inner.flush();
        self.note(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_and_backslashes_are_escaped() {
        assert!(matches!(escape("/home/u/ordinary name ü"), Cow::Borrowed(_)));
        assert_eq!(escape("a\x1b[2J\rb\nc\td"), "a\\x1b[2J\\rb\\nc\\td");
        assert_eq!(escape("\0\x07\x7f"), "\\x00\\x07\\x7f");
        assert_eq!(escape("csi\u{9b}2J nel\u{85}"), "csi\\u{9b}2J nel\\u{85}");
        assert_eq!(escape("back\\slash"), "back\\\\slash");
        // Unambiguous: the escape of a name never equals the escape of another.
        assert_ne!(escape("\\x1b"), escape("\x1b"));
        // Lossy-decoded bytes stay as they were shown before; other Unicode is kept.
        assert_eq!(escape("bad\u{fffd}byte \u{a0}\u{2028}"), "bad\u{fffd}byte \u{a0}\u{2028}");
    }
}
