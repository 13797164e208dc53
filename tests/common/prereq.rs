//! What a test needs from the machine before its assertions mean anything:
//! a tool (nginx, openssl), a privilege (binding port 443), or enough speed
//! to land a few requests inside a rate limiter's window.
//!
//! A missing prerequisite is a failure under CI (`CI` set to anything but
//! empty, `0` or `false`; `.ci/run` exports `CI=true`): the test panics with
//! the command that fixes it. Locally it is a skip, printed as `SKIPPED …`
//! straight to the terminal (the test harness does not capture it), so a
//! green run never hides a test that did not run.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Whether this run is CI (`CI=true`, as GitHub Actions and `.ci/run` set it).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| {
        let v = v.trim();
        !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false")
    })
}

/// A prerequisite is missing: under CI the test fails naming `fix`;
/// locally this prints `SKIPPED` and returns `None` for the caller to
/// return on (`let Some(x) = … else { return };`).
pub fn missing<T>(what: &str, fix: &str) -> Option<T> {
    let test = std::thread::current()
        .name()
        .unwrap_or("<unnamed test>")
        .to_string();
    if in_ci() {
        panic!("{test}: {what}: {fix} (CI=true: a missing prerequisite is a failure)");
    }
    // Not eprintln!: libtest captures that and shows it only on failure.
    let _ = writeln!(
        std::io::stderr().lock(),
        "SKIPPED {test}: {what}: {fix} (with CI=true this test fails)"
    );
    None
}

/// `name` on `PATH`, or in the sbin directories a non-root `PATH` lacks.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from));
    dirs.into_iter().map(|d| d.join(name)).find(|p| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// The path of tool `name`; when it is not installed, [`missing`] with the
/// install command (e.g. `apt-get install -y nginx`).
pub fn require_tool(name: &str, install: &str) -> Option<PathBuf> {
    match find_tool(name) {
        Some(path) => Some(path),
        None => missing(&format!("{name} not found"), install),
    }
}

/// How many inconclusive attempts a [`Window`] allows before it gives up.
const ATTEMPTS: u32 = 5;

/// A timing-dependent check — "the request after the budget is refused" —
/// proves something only if its steps ran inside the limiter's window: a
/// request that arrives after a refill is rightly accepted. So the steps run
/// as attempts:
///
/// ```ignore
/// let mut w = prereq::Window::new("2 reads then a 3rd", ms(500), ms(1100));
/// let third = loop {
///     w.start().await;
///     /* the steps */
///     if w.conclusive(third.status == 429) { break third; }
/// };
/// assert_eq!(third.status, 429); // now a real failure if it is not
/// ```
///
/// An attempt is conclusive when it took less than `window` (measured from
/// before its first request to after its last answer, so the server's own
/// interval was no longer) or when it is `settled` anyway (the refusal did
/// come). An inconclusive one is retried after `reset` (the limiter refills
/// meanwhile); after 5 inconclusive attempts the test fails, naming the
/// machine as too loaded. Only a conclusive outcome reaches the assertions.
pub struct Window {
    what: String,
    window: Duration,
    reset: Duration,
    started: Option<Instant>,
    took: Vec<Duration>,
}

impl Window {
    pub fn new(what: &str, window: Duration, reset: Duration) -> Window {
        Window {
            what: what.to_string(),
            window,
            reset,
            started: None,
            took: Vec::new(),
        }
    }

    /// Start an attempt (after `reset` when one came before).
    pub async fn start(&mut self) {
        if !self.took.is_empty() {
            tokio::time::sleep(self.reset).await;
        }
        self.started = Some(Instant::now());
    }

    /// Inconclusive attempts so far.
    pub fn retries(&self) -> u32 {
        self.took.len() as u32
    }

    /// Whether the attempt just run counts (see [`Window`]); `false` means
    /// run it again.
    pub fn conclusive(&mut self, settled: bool) -> bool {
        let elapsed = self
            .started
            .take()
            .expect("Window::start before Window::conclusive")
            .elapsed();
        if settled || elapsed < self.window {
            return true;
        }
        self.took.push(elapsed);
        let _ = writeln!(
            std::io::stderr().lock(),
            "{}: attempt took {elapsed:?}, not under {:?}: inconclusive, retrying",
            self.what,
            self.window
        );
        assert!(
            self.retries() < ATTEMPTS,
            "{}: the steps never fit in {:?} ({ATTEMPTS} attempts took {:?}); \
             the machine is too loaded for this check to mean anything",
            self.what,
            self.window,
            self.took
        );
        false
    }
}
