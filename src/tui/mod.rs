//! The terminal UI: `salvor` with no arguments, or `salvor tui`.
//!
//! Shaped like gitui: an [`App`] model that keys mutate and `ui::draw` only reads; long work runs
//! on a worker thread ([`worker`]) that reports over a channel, which the loop polls between
//! frames. The loop is generic over the ratatui backend, so tests run the whole app on
//! `TestBackend`. This module is the only part of salvor that touches the terminal.

pub mod app;
pub mod blockmap;
pub mod browse;
pub mod copier;
pub mod disks;
pub mod imaging;
mod imgui;
pub mod livefiles;
pub mod partinfo;
pub mod places;
mod placesui;
pub mod result;
mod resultui;
pub mod sysinfo;
pub mod ui;
pub mod worker;

#[cfg(test)]
mod tests;

pub use app::{Action, App, Host, JobRequest, RealHost, RescueRequest};

use crate::progress::{Control, StopReason};
use ratatui::backend::Backend;
use ratatui::crossterm::event::{self, Event, KeyEventKind};
use ratatui::Terminal;
use std::sync::Arc;
use std::time::Duration;

/// Where key presses come from: the real terminal, or a script in tests.
pub trait Events {
    /// The next event, waiting at most `timeout`; `None` if nothing happened.
    fn next(&mut self, timeout: Duration) -> std::io::Result<Option<Event>>;
}

/// Events from the terminal through crossterm.
pub struct TerminalEvents;

impl Events for TerminalEvents {
    fn next(&mut self, timeout: Duration) -> std::io::Result<Option<Event>> {
        if event::poll(timeout)? {
            Ok(Some(event::read()?))
        } else {
            Ok(None)
        }
    }
}

/// Starts and steers jobs for the loop; tests can replace it to observe requests.
pub trait Runner {
    fn start(&mut self, req: JobRequest) -> Result<(), String>;
    fn act(&mut self, action: &Action);
    /// Messages from the running job and tasks, without blocking.
    fn poll(&mut self) -> Vec<worker::WorkerMsg>;
    /// Starts a task (a report, a copy) beside the job.
    fn start_task(&mut self, task: worker::Task) -> Result<(), String>;
}

/// Runs jobs on worker threads.
pub struct ThreadRunner {
    job: Option<worker::JobHandle>,
    /// Every task's thread sends here.
    task_tx: std::sync::mpsc::Sender<worker::WorkerMsg>,
    task_rx: std::sync::mpsc::Receiver<worker::WorkerMsg>,
    /// The running copy's steering and thread: it can be stopped, and is waited for on exit
    /// (it removes a half-copied file). Other tasks are never waited for: a probe may hang on
    /// a dying disk.
    copy: Option<(Arc<Control>, std::thread::JoinHandle<()>)>,
}

impl Default for ThreadRunner {
    fn default() -> Self {
        let (task_tx, task_rx) = std::sync::mpsc::channel();
        ThreadRunner {
            job: None,
            task_tx,
            task_rx,
            copy: None,
        }
    }
}

impl ThreadRunner {
    /// Stops a job that is still running and waits a while for it to save (a rescue's mapfile).
    pub fn shutdown(&mut self, reason: StopReason) -> bool {
        match &mut self.job {
            Some(j) if !j.is_finished() => j.shutdown(reason, Duration::from_secs(20)),
            _ => true,
        }
    }
}

impl Runner for ThreadRunner {
    fn start(&mut self, req: JobRequest) -> Result<(), String> {
        if self.job.as_ref().is_some_and(|j| !j.is_finished()) {
            return Err("a job is already running".into());
        }
        let job = match req {
            JobRequest::Rescue(r) => worker::start(r),
            JobRequest::Image(r) => worker::start_image(r),
        };
        self.job = Some(job.map_err(|e| format!("cannot start the worker: {e}"))?);
        Ok(())
    }

    fn act(&mut self, action: &Action) {
        if *action == Action::CancelTask {
            self.cancel_task();
            return;
        }
        let Some(job) = &self.job else {
            return;
        };
        match action {
            Action::Pause => job.control.set_paused(true),
            Action::Resume => job.control.set_paused(false),
            Action::Abort => {
                // A paused engine must wake up to see the stop and save.
                job.control.set_paused(false);
                job.control.request_stop(crate::progress::StopReason::User);
            }
            _ => {}
        }
    }

    fn poll(&mut self) -> Vec<worker::WorkerMsg> {
        let mut v: Vec<worker::WorkerMsg> = self.task_rx.try_iter().take(1000).collect();
        if let Some(job) = &self.job {
            // Bounded so that a flood of read errors cannot starve the screen.
            v.extend(job.rx.try_iter().take(10_000));
        }
        v
    }

    fn start_task(&mut self, task: worker::Task) -> Result<(), String> {
        let control = Arc::new(Control::new());
        let is_copy = matches!(task, worker::Task::Copy(_));
        let thread = worker::start_task(task, control.clone(), self.task_tx.clone())
            .map_err(|e| format!("cannot start the worker: {e}"))?;
        if is_copy {
            self.copy = Some((control, thread));
        }
        Ok(())
    }
}

impl ThreadRunner {
    /// Asks the running copy to stop.
    fn cancel_task(&mut self) {
        if let Some((c, _)) = &self.copy {
            c.request_stop(StopReason::User);
        }
    }

    /// Stops a running copy and waits up to `wait` for it to end (it leaves no partial file).
    pub fn stop_copy(&mut self, wait: Duration) -> bool {
        let Some((c, thread)) = self.copy.take() else {
            return true;
        };
        c.request_stop(StopReason::User);
        let deadline = std::time::Instant::now() + wait;
        while !thread.is_finished() {
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = thread.join();
        true
    }
}

/// One turn of the loop: apply worker messages, draw, wait briefly for a key and handle it.
/// Returns false when the user quit.
pub fn step<B: Backend>(
    terminal: &mut Terminal<B>,
    app: &mut App,
    events: &mut dyn Events,
    runner: &mut dyn Runner,
    timeout: Duration,
) -> std::io::Result<bool> {
    for msg in runner.poll() {
        app.on_worker(msg);
    }
    start_tasks(app, runner);
    if app.tick(std::time::Instant::now()) {
        // The disk set changed: redraw every cell, not just the differences, so that a serial
        // console (where kernel messages may have landed in between) shows whole, fresh lines.
        terminal.clear()?;
    }
    terminal.draw(|f| ui::draw(app, f))?;
    let Some(Event::Key(key)) = events.next(timeout)? else {
        return Ok(true);
    };
    if key.kind != KeyEventKind::Press {
        return Ok(true);
    }
    match app.on_key(key) {
        Action::Quit => return Ok(false),
        Action::StartRescue(req) => {
            if let Err(e) = runner.start(JobRequest::Rescue(req)) {
                app.on_worker(worker::WorkerMsg::Done(Err(e)));
            }
        }
        Action::StartImage(req) => {
            if let Err(e) = runner.start(JobRequest::Image(req)) {
                app.on_worker(worker::WorkerMsg::Done(Err(e)));
            }
        }
        a @ (Action::Pause | Action::Resume | Action::Abort | Action::CancelTask) => runner.act(&a),
        Action::None => {}
    }
    start_tasks(app, runner);
    Ok(true)
}

/// Hands the tasks the app asked for to the runner; one that cannot start fails in the app.
fn start_tasks(app: &mut App, runner: &mut dyn Runner) {
    for t in app.take_tasks() {
        if let Err(e) = runner.start_task(t.clone()) {
            app.on_task_failed(&t, e);
        }
    }
}

/// Runs until the user quits or `signals` asks to stop.
pub fn run_loop<B: Backend>(
    terminal: &mut Terminal<B>,
    app: &mut App,
    events: &mut dyn Events,
    runner: &mut dyn Runner,
    signals: &Control,
) -> std::io::Result<()> {
    // 100 ms: the screen stays live while no key comes, without burning CPU.
    while signals.stop_requested().is_none()
        && step(terminal, app, events, runner, Duration::from_millis(100))?
    {}
    Ok(())
}

/// Entry point for `salvor` / `salvor tui`: returns the exit code.
pub fn run() -> i32 {
    // SIGTERM, and SIGHUP when a serial line drops, must still let a running job save its map.
    let signals = Arc::new(Control::new());
    if let Err(e) = crate::cli::signals::install(signals.clone()) {
        eprintln!("salvor: {e}");
        return 1;
    }
    // try_init installs a panic hook that restores the terminal before the message is printed.
    let mut terminal = match ratatui::try_init() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("salvor: cannot start the terminal UI: {e}");
            return 1;
        }
    };
    let mut app = App::new(Box::new(RealHost));
    let mut runner = ThreadRunner::default();
    let result = run_loop(
        &mut terminal,
        &mut app,
        &mut TerminalEvents,
        &mut runner,
        &signals,
    );
    ratatui::restore();
    let reason = signals.stop_requested().unwrap_or(StopReason::User);
    // Normally no job runs here (quitting is refused while one does); after a signal or a lost
    // terminal one may, and it gets a bounded time to save: a stuck read must not hang the exit.
    if !runner.shutdown(reason) {
        eprintln!(
            "salvor: the job did not stop in time (a rescue's mapfile holds its last periodic save)"
        );
    }
    if !runner.stop_copy(Duration::from_secs(10)) {
        eprintln!("salvor: the file copy did not stop in time");
    }
    // Mounts stay while the UI runs (the user may start more jobs); leaving, everything salvor
    // mounted is synced and unmounted so that the disks may be unplugged.
    for e in app.release_mounts() {
        eprintln!("salvor: {e}");
    }
    if let Err(e) = result {
        eprintln!("salvor: terminal error: {e}");
        return 1;
    }
    match reason {
        StopReason::Signal(s) => 128 + s,
        StopReason::User => 0,
    }
}
