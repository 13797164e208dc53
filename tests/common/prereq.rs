//! What a test needs from the machine before its assertions mean anything:
//! a tool (nginx, openssl), a privilege (binding port 443), or enough speed
//! to land a few requests inside a rate limiter's window.
//!
//! A missing prerequisite is a failure under CI (`CI` set to anything but
//! empty, `0` or `false`; `.ci/run` exports `CI=true`): the test panics with
//! the command that fixes it. Locally it is a skip, printed as `SKIPPED …`
//! straight to the terminal (the test harness does not capture it), so a
//! green run never hides a test that did not run.

use std::future::Future;
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

/// How many times [`within`] tries before it gives up on the machine.
const ATTEMPTS: usize = 5;

/// A timing-dependent check — "the request after the budget is refused" —
/// proves something only if its steps ran inside the limiter's window: a
/// request that arrives after a refill is rightly accepted. `attempt` runs
/// the steps and returns what it saw; `settled(&seen)` says whether that
/// outcome stands however long it took (typically: the refusal came).
/// An attempt that took `window` or longer (measured from before its first
/// request to after its last answer, so the server's own interval was no
/// longer) and is not settled is inconclusive: wait `reset` for the
/// limiter to refill and try again. The first conclusive outcome is
/// returned for the caller to assert on; never returns an inconclusive one.
pub async fn within<T, F, Fut>(
    what: &str,
    window: Duration,
    reset: Duration,
    mut attempt: F,
    settled: impl Fn(&T) -> bool,
) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
{
    let mut took = Vec::new();
    for _ in 0..ATTEMPTS {
        let start = Instant::now();
        let seen = attempt().await;
        let elapsed = start.elapsed();
        if elapsed < window || settled(&seen) {
            return seen;
        }
        took.push(elapsed);
        tokio::time::sleep(reset).await;
    }
    panic!(
        "{what}: the steps never fit in {window:?} ({ATTEMPTS} attempts took {took:?}); \
         the machine is too loaded for this check to mean anything"
    );
}
