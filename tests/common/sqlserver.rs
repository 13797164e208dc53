//! A private MariaDB or PostgreSQL server of the test's own, on a free
//! loopback port, in a temporary directory; stopped on drop. Never the
//! machine's shared servers on 3306 and 5432, which tests must not stop.
//!
//! ```ignore
//! let Some(mut db) = SqlServer::start(Engine::Mariadb).await else { return }; // skipped locally, fails under CI
//! db.exec("INSERT …").await;  // in database `test`, over a fresh connection
//! db.stop();                 // an outage: connections reset, new ones refused
//! db.restart().await;        // same data directory, same port
//! ```
//!
//! How each is started (the commands, as run here):
//!
//! - **MariaDB**: `mariadb-install-db --no-defaults --datadir=DIR/data
//!   --tmpdir=DIR/tmp --auth-root-authentication-method=normal --skip-test-db
//!   [--user=root]`, then `mariadbd --no-defaults --datadir=DIR/data
//!   --tmpdir=DIR/tmp --port=PORT
//!   --bind-address=127.0.0.1 --socket=DIR/sock --pid-file=DIR/pid
//!   --skip-name-resolve [--user=root] …`. `--user=root` only when running as
//!   root (mariadbd refuses root without it). `root@127.0.0.1` has no
//!   password, as on the shared server. Stopped with SIGKILL (one process:
//!   the test's child, reaped at once); a restart runs InnoDB's recovery,
//!   well under a second.
//! - **PostgreSQL**: `initdb -D DIR/data -U postgres --auth=trust --no-sync`,
//!   then `postgres -D DIR/data -p PORT -k DIR -c listen_addresses=127.0.0.1
//!   -c fsync=off …` (the binaries of the `initdb` on `PATH`, or
//!   `/usr/lib/postgresql/*/bin`). Both refuse to run as root: as root they
//!   run as the unprivileged user `postgres` (the Debian package's; `nobody`
//!   when there is none) through `setuid`/`setgid` in the child
//!   (`CommandExt::uid`/`gid`, so the child is the postmaster itself, not a
//!   `su` in between), with `DIR` chowned to that user. Stopped with
//!   SIGQUIT (immediate shutdown: the postmaster kills and reaps its
//!   backends and exits without a checkpoint, like a crash); SIGKILL only if
//!   it is still there after 5 s, since a killed postmaster leaves its
//!   backends to `init`.
//!
//! Once up, database `test` is created. Whatever the server wrote is
//! printed when the test panics.

use super::prereq;
use sqlx::mysql::MySqlConnection;
use sqlx::postgres::PgConnection;
use sqlx::Connection;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to accept connections after it is started.
const READY: Duration = Duration::from_secs(20);
/// How long a PostgreSQL immediate shutdown may take before SIGKILL.
const SHUTDOWN: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Mariadb,
    Postgres,
}

pub struct SqlServer {
    engine: Engine,
    /// `mariadbd`, or `postgres`.
    bin: PathBuf,
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
    /// PostgreSQL when we are root: the user and group it runs as.
    run_as: Option<(u32, u32)>,
}

/// One connection to a private server's database `test`.
pub enum Conn {
    Mysql(MySqlConnection),
    Postgres(PgConnection),
}

impl Conn {
    /// Run `sql` (text protocol: also `LOCK TABLES`, `BEGIN`, …).
    pub async fn exec(&mut self, sql: &str) {
        let result = match self {
            Conn::Mysql(c) => sqlx::raw_sql(sql).execute(c).await.map(drop),
            Conn::Postgres(c) => sqlx::raw_sql(sql).execute(c).await.map(drop),
        };
        result.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// The first column of the only row of `sql`, as an integer.
    pub async fn scalar(&mut self, sql: &str) -> i64 {
        let result = match self {
            Conn::Mysql(c) => sqlx::query_scalar::<_, i64>(sql).fetch_one(c).await,
            Conn::Postgres(c) => sqlx::query_scalar::<_, i64>(sql).fetch_one(c).await,
        };
        result.unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// The server's id of this connection (`CONNECTION_ID()`, the backend pid).
    pub async fn id(&mut self) -> i64 {
        match self {
            Conn::Mysql(_) => self.scalar("SELECT CAST(CONNECTION_ID() AS SIGNED)").await,
            Conn::Postgres(_) => self.scalar("SELECT pg_backend_pid()::BIGINT").await,
        }
    }

    /// Client connections to database `test` other than `except` (ids from
    /// [`Conn::id`]); on a private server, those of the server under test.
    pub async fn clients(&mut self, except: &[i64]) -> i64 {
        let except = except
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let sql = match self {
            Conn::Mysql(_) => format!(
                "SELECT COUNT(*) FROM information_schema.processlist \
                 WHERE db = 'test' AND command <> 'Daemon' AND id NOT IN ({except})"
            ),
            Conn::Postgres(_) => format!(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = 'test' \
                 AND backend_type = 'client backend' AND pid NOT IN ({except})"
            ),
        };
        self.scalar(&sql).await
    }
}

impl SqlServer {
    /// Initialise a data directory, start the server, create database
    /// `test`. `None` (after printing SKIPPED) when the binaries are not
    /// installed and this is not CI; under `CI=true` that is a failure.
    pub async fn start(engine: Engine) -> Option<SqlServer> {
        let (init, bin, run_as) = match engine {
            Engine::Mariadb => {
                let install = "apt-get install -y mariadb-server";
                let init = prereq::find_tool("mariadb-install-db")
                    .or_else(|| prereq::find_tool("mysql_install_db"));
                let Some(init) = init else {
                    return prereq::missing("mariadb-install-db not found", install);
                };
                let bin = prereq::find_tool("mariadbd").or_else(|| prereq::find_tool("mysqld"));
                let Some(bin) = bin else {
                    return prereq::missing("mariadbd not found", install);
                };
                (init, bin, None)
            }
            Engine::Postgres => {
                let Some(init) = postgres_tool("initdb") else {
                    return prereq::missing("initdb not found", "apt-get install -y postgresql");
                };
                // The server of the same installation as initdb.
                let dir = std::fs::canonicalize(&init)
                    .ok()
                    .and_then(|p| p.parent().map(Path::to_path_buf));
                let Some(bin) = dir.map(|d| d.join("postgres")).filter(|p| p.is_file()) else {
                    return prereq::missing(
                        "postgres next to initdb not found",
                        "apt-get install -y postgresql",
                    );
                };
                (init, bin, unprivileged_user())
            }
        };
        let mut last = String::new();
        // A free port can be taken between picking and binding: retry.
        for _ in 0..3 {
            let mut server = SqlServer {
                engine,
                bin: bin.clone(),
                port: super::free_port(),
                // Removed on drop.
                dir: super::fresh_dir(),
                child: None,
                run_as,
            };
            server.init(&init);
            match server.spawn().await {
                Ok(()) => {
                    let (mut admin, create) = match engine {
                        Engine::Mariadb => {
                            (server.connect_to("mysql").await, "CREATE DATABASE test")
                        }
                        Engine::Postgres => {
                            (server.connect_to("postgres").await, "CREATE DATABASE test")
                        }
                    };
                    admin.exec(create).await;
                    return Some(server);
                }
                Err(e) => last = e,
            }
        }
        panic!("{engine:?} did not start: {last}");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's pid (for `kill`), while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// A new connection to database `test`.
    pub async fn connect(&self) -> Conn {
        self.connect_to("test").await
    }

    /// Run `sql` in database `test` over a connection of its own.
    pub async fn exec(&self, sql: &str) {
        self.connect().await.exec(sql).await;
    }

    /// Stop it the hard way: clients see their connections reset and new
    /// ones refused. Idempotent.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if self.engine == Engine::Postgres {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGQUIT) };
            let deadline = Instant::now() + SHUTDOWN;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Start it again on the same data directory and port.
    pub async fn restart(&mut self) {
        self.stop();
        let (what, port) = (format!("{:?}", self.engine), self.port);
        super::respawn(&what, port, async || self.spawn().await).await;
    }

    /// What the server (and the initialisation) wrote.
    pub fn log(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        format!(
            "--- init ---\n{}--- server ---\n{}",
            read("init.log"),
            read("server.log")
        )
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// MariaDB's `--tmpdir`, a directory of its own: in the shared `/tmp`,
    /// concurrent `mariadb-install-db` runs now and then fail on each
    /// other's temporary tables (`Unknown table 'mysql.tmp_user_sys'`).
    fn tmpdir(&self) -> String {
        let dir = self.dir.join("tmp");
        std::fs::create_dir_all(&dir).expect("MariaDB tmpdir");
        format!("--tmpdir={}", dir.display())
    }

    fn log_file(&self, name: &str) -> Stdio {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(name))
            .expect("server log");
        Stdio::from(file)
    }

    /// A command run as the server's user, in its directory, logging to `log`.
    fn command(&self, program: &Path, log: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(self.log_file(log))
            .stderr(self.log_file(log));
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid);
        }
        cmd
    }

    /// The data directory (blocking: a few seconds at most).
    fn init(&self, init: &Path) {
        let mut cmd = self.command(init, "init.log");
        match self.engine {
            Engine::Mariadb => {
                cmd.arg("--no-defaults")
                    .arg(format!("--datadir={}", self.data().display()))
                    .arg(self.tmpdir())
                    .args([
                        "--auth-root-authentication-method=normal",
                        "--skip-test-db",
                        "--skip-name-resolve",
                    ]);
                if is_root() {
                    cmd.arg("--user=root");
                }
            }
            Engine::Postgres => {
                if let Some((uid, gid)) = self.run_as {
                    std::os::unix::fs::chown(&self.dir, Some(uid), Some(gid))
                        .expect("chown the PostgreSQL directory");
                }
                cmd.arg("-D").arg(self.data()).args([
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--no-sync",
                    "-E",
                    "UTF8",
                ]);
            }
        }
        let status = cmd.status().expect("run the database initialisation");
        assert!(
            status.success(),
            "{:?} initialisation failed ({status}):\n{}",
            self.engine,
            self.log()
        );
    }

    async fn spawn(&mut self) -> Result<(), String> {
        let mut cmd = self.command(&self.bin, "server.log");
        match self.engine {
            Engine::Mariadb => {
                cmd.arg("--no-defaults")
                    .arg(format!("--datadir={}", self.data().display()))
                    .arg(self.tmpdir())
                    .arg(format!("--port={}", self.port))
                    .arg("--bind-address=127.0.0.1")
                    .arg(format!("--socket={}", self.dir.join("sock").display()))
                    .arg(format!("--pid-file={}", self.dir.join("pid").display()))
                    .args([
                        "--skip-name-resolve",
                        "--innodb-buffer-pool-size=16M",
                        "--skip-log-bin",
                    ]);
                if is_root() {
                    cmd.arg("--user=root");
                }
            }
            Engine::Postgres => {
                cmd.arg("-D")
                    .arg(self.data())
                    .args(["-p", &self.port.to_string()])
                    .arg("-k")
                    .arg(&self.dir)
                    .args(["-c", "listen_addresses=127.0.0.1"])
                    .args(["-c", "fsync=off", "-c", "shared_buffers=16MB"]);
            }
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", self.bin.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + READY;
        let system = match self.engine {
            Engine::Mariadb => "mysql",
            Engine::Postgres => "postgres",
        };
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return Err(format!("exited with {status}:\n{}", self.log()));
            }
            if self.try_connect(system).await.is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.stop();
                return Err(format!("not ready within {READY:?}:\n{}", self.log()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn url(&self, database: &str) -> String {
        match self.engine {
            Engine::Mariadb => format!("mysql://root@127.0.0.1:{}/{database}", self.port),
            Engine::Postgres => format!("postgres://postgres@127.0.0.1:{}/{database}", self.port),
        }
    }

    async fn try_connect(&self, database: &str) -> Result<Conn, String> {
        let url = self.url(database);
        let connect = async {
            match self.engine {
                Engine::Mariadb => MySqlConnection::connect(&url).await.map(Conn::Mysql),
                Engine::Postgres => PgConnection::connect(&url).await.map(Conn::Postgres),
            }
        };
        match tokio::time::timeout(Duration::from_secs(5), connect).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(format!("{url}: {e}")),
            Err(_) => Err(format!("{url}: no answer in 5 s")),
        }
    }

    async fn connect_to(&self, database: &str) -> Conn {
        self.try_connect(database)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", self.log()))
    }
}

impl Drop for SqlServer {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!(
                "==== {:?} (port {}, dir {}) ====\n{}",
                self.engine,
                self.port,
                self.dir.display(),
                self.log()
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid(2) has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// As root: the uid and gid of `postgres` (or `nobody`), which PostgreSQL
/// runs as; `None` when not root (it runs as we do).
fn unprivileged_user() -> Option<(u32, u32)> {
    if !is_root() {
        return None;
    }
    for name in [c"postgres", c"nobody"] {
        // SAFETY: getpwnam(3) with a NUL-terminated name; the entry is read
        // at once, before any other call that could overwrite it.
        let entry = unsafe { libc::getpwnam(name.as_ptr()) };
        if !entry.is_null() {
            let entry = unsafe { &*entry };
            return Some((entry.pw_uid, entry.pw_gid));
        }
    }
    panic!("running as root, and neither user postgres nor nobody exists to run PostgreSQL as");
}

/// `name` on `PATH` (Debian's `/usr/local/bin` links, say), or in the
/// newest `/usr/lib/postgresql/*/bin`.
fn postgres_tool(name: &str) -> Option<PathBuf> {
    prereq::find_tool(name).or_else(|| {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .collect();
        dirs.sort_by_key(|d| {
            d.parent()
                .and_then(|v| v.file_name())
                .and_then(|v| v.to_str())
                .and_then(|v| v.parse::<u32>().ok())
        });
        dirs.into_iter()
            .rev()
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}
