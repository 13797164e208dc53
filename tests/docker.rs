//! The Dockerfile, checked without a Docker engine (hadolint lints it in
//! `make lint`; this checks what a linter cannot):
//!
//! - the HEALTHCHECK command is a real mode of the binary the image ships:
//!   run against a server started with the image's own `ENV` (wildcard
//!   `HOST` included), it exits 0, within the HEALTHCHECK's `--timeout`;
//! - the dependency-caching stage copies the manifest of every member of
//!   `[workspace] members` (and nothing else before it builds), gives every
//!   target of every member a stub source, and deletes the stub artefacts of
//!   the workspace crates, so adding a member or a target cannot silently
//!   break the image build or ship a stub;
//! - the real sources of every crate the server is built from are copied
//!   after that stage.

mod common;

use common::*;
use std::path::Path;
use std::time::Duration;

fn repo_file(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// One Dockerfile instruction: keyword (upper case) and its arguments, with
/// continuation lines joined and comment lines dropped.
#[derive(Debug, Clone)]
struct Instruction {
    keyword: String,
    args: String,
}

fn instructions(text: &str) -> Vec<Instruction> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                let (keyword, args) = current
                    .split_once(char::is_whitespace)
                    .unwrap_or((&current, ""));
                out.push(Instruction {
                    keyword: keyword.to_ascii_uppercase(),
                    args: args.trim().to_string(),
                });
                current.clear();
            }
        }
    }
    assert!(current.is_empty(), "dangling continuation line");
    out
}

fn dockerfile() -> Vec<Instruction> {
    instructions(&repo_file("Dockerfile"))
}

/// The instructions of each stage, in order.
fn stages(all: &[Instruction]) -> Vec<Vec<Instruction>> {
    let mut stages: Vec<Vec<Instruction>> = Vec::new();
    for i in all {
        if i.keyword == "FROM" {
            stages.push(Vec::new());
        }
        stages.last_mut().expect("FROM first").push(i.clone());
    }
    stages
}

/// `KEY=value` pairs of an `ENV` line (unquoted values only).
fn env_pairs(args: &str) -> Vec<(String, String)> {
    args.split_whitespace()
        .map(|pair| {
            assert!(
                !pair.contains('"') && !pair.contains('\''),
                "quoted ENV: {pair}"
            );
            let (k, v) = pair.split_once('=').expect("ENV KEY=value");
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// The JSON (exec-form) argument vector at the end of `args`.
fn exec_form(args: &str) -> Vec<String> {
    let start = args.find('[').expect("exec form");
    serde_json::from_str(&args[start..]).expect("JSON array")
}

/// `--name=value` options of HEALTHCHECK.
fn option<'a>(args: &'a str, name: &str) -> Option<&'a str> {
    args.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("--{name}=")))
}

/// `3s`, `500ms`, `1m` as Docker reads durations (the forms used here).
fn docker_duration(s: &str) -> Duration {
    if let Some(ms) = s.strip_suffix("ms") {
        return Duration::from_millis(ms.parse().unwrap());
    }
    if let Some(secs) = s.strip_suffix('s') {
        return Duration::from_secs(secs.parse().unwrap());
    }
    if let Some(mins) = s.strip_suffix('m') {
        return Duration::from_secs(60 * mins.parse::<u64>().unwrap());
    }
    panic!("unsupported duration {s:?}");
}

#[tokio::test]
async fn healthcheck_runs_a_real_flag_of_the_shipped_binary() {
    let all = dockerfile();
    let stages = stages(&all);
    let runtime = stages.last().unwrap();
    let find = |keyword: &str| {
        runtime
            .iter()
            .find(|i| i.keyword == keyword)
            .unwrap_or_else(|| panic!("no {keyword} in the runtime stage"))
    };

    let health = find("HEALTHCHECK");
    let cmd_at = health
        .args
        .find(" CMD ")
        .expect("HEALTHCHECK ... CMD [...]");
    let argv = exec_form(&health.args[cmd_at..]);
    let entrypoint = exec_form(&find("ENTRYPOINT").args);
    let copied = find("COPY");
    assert!(
        copied.args.starts_with("--from=build ") && copied.args.ends_with(&format!(" {}", argv[0])),
        "the HEALTHCHECK runs the binary copied from the build stage: {copied:?} vs {argv:?}"
    );
    assert_eq!(
        argv[0], entrypoint[0],
        "HEALTHCHECK and ENTRYPOINT run one binary"
    );
    assert_eq!(&argv[1..], ["--health"], "{argv:?}");

    // The probe's own deadline ends before Docker's.
    let env = env_pairs(&find("ENV").args);
    assert!(
        !env.iter().any(|(k, _)| k == "HEALTH_CHECK_TIMEOUT_MS"),
        "the image keeps the default probe timeout"
    );
    let docker_timeout = docker_duration(option(&health.args, "timeout").expect("--timeout"));
    assert!(
        docker_timeout > switchyard::healthcheck::DEFAULT_TIMEOUT,
        "HEALTHCHECK --timeout {docker_timeout:?} must exceed the probe's {:?}",
        switchyard::healthcheck::DEFAULT_TIMEOUT
    );
    assert!(
        env.iter().any(|(k, v)| k == "HOST" && v == "0.0.0.0"),
        "{env:?}"
    );

    // The image's ENV (HOST=0.0.0.0 …) plus an app; PORT is the harness's
    // free port, metrics stay off (the harness default) so 9601 is not needed.
    let mut run_env: Vec<(&str, &str)> = app_env();
    run_env.extend(
        env.iter()
            .filter(|(k, _)| k != "PORT")
            .map(|(k, v)| (k.as_str(), v.as_str())),
    );
    let server = Server::start(&run_env).await;
    let args: Vec<&str> = argv[1..].iter().map(String::as_str).collect();
    let started = std::time::Instant::now();
    let out = server.run_alongside(&run_env, &args);
    assert!(started.elapsed() < docker_timeout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // And unhealthy (1) once the server is gone.
    drop(server);
    let dir = common::security::TempDir::new();
    let out = run_once(&dir.path, common::security::pick_port(), &run_env, &args);
    assert_eq!(out.status.code(), Some(1));
}

/// `*` matches any run of characters.
fn glob_match(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, tail)) => {
            text.starts_with(head)
                && (head.len()..=text.len())
                    .any(|i| text.is_char_boundary(i) && glob_match(tail, &text[i..]))
        }
    }
}

/// Shell words of a RUN line, with redirections and `&&` as their own words.
fn words(run: &str) -> Vec<String> {
    run.replace('>', " > ")
        .split_whitespace()
        .map(|w| {
            w.trim_matches(|c| c == '\'' || c == '"' || c == ';')
                .to_string()
        })
        .collect()
}

/// A member's path (`.` = the root) joined to `rest`.
fn member_path(member: &str, rest: &str) -> String {
    if member == "." {
        rest.to_string()
    } else {
        format!("{member}/{rest}")
    }
}

struct Member {
    dir: String,
    package: String,
    /// Source files of its targets (lib and bins), relative to the root.
    target_sources: Vec<String>,
    lib: bool,
}

fn workspace_members() -> (Vec<Member>, toml::Value) {
    let root: toml::Value = toml::from_str(&repo_file("Cargo.toml")).unwrap();
    let members = root["workspace"]["members"].as_array().expect("members");
    let members = members
        .iter()
        .map(|m| {
            let dir = m.as_str().unwrap().to_string();
            let manifest: toml::Value =
                toml::from_str(&repo_file(&member_path(&dir, "Cargo.toml"))).unwrap();
            let package = manifest["package"]["name"].as_str().unwrap().to_string();
            let exists = |p: &str| Path::new(env!("CARGO_MANIFEST_DIR")).join(p).is_file();
            let mut target_sources = Vec::new();
            let lib_path = manifest
                .get("lib")
                .and_then(|l| l.get("path"))
                .and_then(|p| p.as_str())
                .map(|p| member_path(&dir, p))
                .unwrap_or_else(|| member_path(&dir, "src/lib.rs"));
            let lib = exists(&lib_path);
            if lib {
                target_sources.push(lib_path);
            }
            let bins: Vec<String> = manifest
                .get("bin")
                .and_then(|b| b.as_array())
                .map(|bins| {
                    bins.iter()
                        .filter_map(|b| b.get("path").and_then(|p| p.as_str()))
                        .map(|p| member_path(&dir, p))
                        .collect()
                })
                .unwrap_or_default();
            if bins.is_empty() {
                let main = member_path(&dir, "src/main.rs");
                if exists(&main) {
                    target_sources.push(main);
                }
            } else {
                target_sources.extend(bins);
            }
            assert!(!target_sources.is_empty(), "member {dir} has no lib or bin");
            Member {
                dir,
                package,
                target_sources,
                lib,
            }
        })
        .collect();
    (members, root)
}

#[test]
fn dependency_stage_matches_the_workspace() {
    let all = dockerfile();
    let build = &stages(&all)[0];
    let (members, root) = workspace_members();
    assert!(
        members.len() >= 3,
        "members: {:?}",
        members.iter().map(|m| &m.dir).collect::<Vec<_>>()
    );

    // Everything before the first RUN: manifests and Cargo.lock only.
    let first_run = build
        .iter()
        .position(|i| i.keyword == "RUN")
        .expect("a RUN in the build stage");
    let mut copied_early = Vec::new();
    for i in &build[..first_run] {
        if i.keyword == "COPY" {
            let mut parts: Vec<&str> = i.args.split_whitespace().collect();
            let dest = parts.pop().unwrap();
            for src in parts {
                assert!(
                    src.ends_with("Cargo.toml") || src == "Cargo.lock",
                    "only manifests before the dependency build, not {src:?} (to {dest})"
                );
                copied_early.push(src.to_string());
            }
        }
    }
    assert!(
        copied_early.iter().any(|s| s == "Cargo.lock"),
        "{copied_early:?}"
    );
    for m in &members {
        let manifest = member_path(&m.dir, "Cargo.toml");
        assert!(
            copied_early.contains(&manifest),
            "workspace member {:?}: its manifest {manifest} is not copied before the \
             dependency build ({copied_early:?}); cargo cannot load the workspace without it",
            m.dir
        );
    }
    if let Some(excluded) = root["workspace"].get("exclude").and_then(|e| e.as_array()) {
        for e in excluded {
            let manifest = member_path(e.as_str().unwrap(), "Cargo.toml");
            assert!(!copied_early.contains(&manifest), "{manifest} is excluded");
        }
    }

    // The stub build: a source for every target, the workspace crates'
    // artefacts deleted afterwards.
    let stub = &build[first_run].args;
    let stub_words = words(stub);
    assert!(stub.contains("cargo build --release --locked"), "{stub}");
    for m in &members {
        for source in &m.target_sources {
            assert!(
                stub_words.iter().any(|w| w == source),
                "member {:?}: no stub for {source} in the dependency RUN",
                m.dir
            );
        }
    }
    let rm_at = stub_words
        .iter()
        .position(|w| w == "rm")
        .expect("the stub RUN deletes the stub artefacts");
    let globs: Vec<&String> = stub_words[rm_at + 1..]
        .iter()
        .take_while(|w| *w != "&&")
        .filter(|w| !w.starts_with('-'))
        .collect();
    let hash = "0123456789abcdef";
    for m in &members {
        let mut artefacts = vec![format!("target/release/.fingerprint/{}-{hash}", m.package)];
        if m.lib {
            let crate_name = m.package.replace('-', "_");
            artefacts.push(format!("target/release/deps/lib{crate_name}-{hash}.rlib"));
        }
        for artefact in artefacts {
            assert!(
                globs.iter().any(|g| glob_match(g, &artefact)),
                "member {:?}: {artefact} survives the stub build ({globs:?})",
                m.dir
            );
        }
    }

    // After it: the real sources of the server and of every crate it depends
    // on by path, then the build of the shipped binary.
    let rest = &build[first_run + 1..];
    let copied_late: Vec<String> = rest
        .iter()
        .filter(|i| i.keyword == "COPY")
        .map(|i| {
            i.args
                .split_whitespace()
                .next()
                .unwrap()
                .trim_end_matches('/')
                .to_string()
        })
        .collect();
    let mut server_crates = vec![".".to_string()];
    if let Some(deps) = root.get("dependencies").and_then(|d| d.as_table()) {
        for dep in deps.values() {
            if let Some(path) = dep.get("path").and_then(|p| p.as_str()) {
                server_crates.push(path.to_string());
            }
        }
    }
    for dir in &server_crates {
        let src = member_path(dir, "src");
        assert!(
            copied_late.contains(&src),
            "{src} is not copied after the dependency stage ({copied_late:?})"
        );
    }
    let last_run = rest.iter().rev().find(|i| i.keyword == "RUN").unwrap();
    assert!(
        last_run
            .args
            .contains("cargo build --release --locked --bin switchyard"),
        "{last_run:?}"
    );
}

#[test]
fn glob_matching() {
    assert!(glob_match("a-*", "a-b"));
    assert!(glob_match("*x*", "axb"));
    assert!(!glob_match("a-*", "b-a"));
    assert!(glob_match(
        "target/release/deps/*switchyard*",
        "target/release/deps/libswitchyard_actors-1.rlib"
    ));
    assert!(!glob_match(
        "target/release/switchyard*",
        "target/release/deps/switchyard-1"
    ));
}

/// The one instruction `keyword` of `stage`; panics on none or several.
fn only<'a>(stage: &'a [Instruction], keyword: &str) -> &'a str {
    let found: Vec<&Instruction> = stage.iter().filter(|i| i.keyword == keyword).collect();
    assert_eq!(
        found.len(),
        1,
        "one {keyword} in the runtime stage: {found:?}"
    );
    &found[0].args
}

/// README, Docker: the runtime image is non-root (uid 10001), exposes 6001
/// and 9601, listens for metrics on all interfaces and logs JSON by default,
/// stops on SIGTERM, and health-checks every 10 s with a 3 s timeout.
#[test]
fn the_runtime_image_is_non_root_and_has_the_documented_attributes() {
    let all = dockerfile();
    let stages = stages(&all);
    let runtime = stages.last().unwrap();

    assert_eq!(only(runtime, "USER"), "10001:10001");
    let run = runtime
        .iter()
        .filter(|i| i.keyword == "RUN")
        .map(|i| i.args.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    assert!(run.contains("useradd --system --uid 10001"), "{run}");

    let mut exposed: Vec<&str> = only(runtime, "EXPOSE").split_whitespace().collect();
    exposed.sort();
    assert_eq!(exposed, ["6001", "9601"]);

    let env: Vec<(String, String)> = runtime
        .iter()
        .filter(|i| i.keyword == "ENV")
        .flat_map(|i| env_pairs(&i.args))
        .collect();
    let value = |k: &str| {
        env.iter()
            .rev()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("{k} not set by ENV: {env:?}"))
    };
    assert_eq!(value("METRICS_HOST"), "0.0.0.0");
    assert_eq!(value("LOG_OUTPUT_FORMAT"), "json");
    assert_eq!(value("PORT"), "6001");
    assert_eq!(value("METRICS_PORT"), "9601");

    assert_eq!(only(runtime, "STOPSIGNAL"), "SIGTERM");
    let health = only(runtime, "HEALTHCHECK");
    let duration = |name: &str| {
        docker_duration(option(health, name).unwrap_or_else(|| panic!("--{name} in {health}")))
    };
    assert_eq!(duration("interval"), Duration::from_secs(10));
    assert_eq!(duration("timeout"), Duration::from_secs(3));
}

// ---------------------------------------------------------------------------
// docker-compose.yml, read with a parser for the YAML subset it uses (block
// maps and lists, `[a, b]` lists, quoted scalars, `&anchor` and `<<: *anchor`
// merges), so that the checks follow the merge as Compose does; a construct
// outside the subset fails the parse instead of passing unread.

#[derive(Debug, Clone, PartialEq)]
enum Yaml {
    Str(String),
    List(Vec<Yaml>),
    Map(Vec<(String, Yaml)>),
}

impl Yaml {
    fn get(&self, key: &str) -> &Yaml {
        match self {
            Yaml::Map(entries) => entries
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v)
                .unwrap_or_else(|| panic!("no `{key}` in {self:?}")),
            _ => panic!("`{key}` looked up in a non-map {self:?}"),
        }
    }

    fn str(&self) -> &str {
        match self {
            Yaml::Str(s) => s,
            _ => panic!("not a scalar: {self:?}"),
        }
    }

    fn list(&self) -> Vec<&str> {
        match self {
            Yaml::List(items) => items.iter().map(Yaml::str).collect(),
            _ => panic!("not a list: {self:?}"),
        }
    }

    fn keys(&self) -> Vec<&str> {
        match self {
            Yaml::Map(entries) => entries.iter().map(|(k, _)| k.as_str()).collect(),
            _ => panic!("not a map: {self:?}"),
        }
    }
}

fn yaml_scalar(s: &str) -> Yaml {
    let s = s.trim();
    if let Some(inner) = s.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
        return Yaml::List(
            inner
                .split(',')
                .filter(|i| !i.trim().is_empty())
                .map(yaml_scalar)
                .collect(),
        );
    }
    assert!(
        !s.starts_with(['{', '*', '&', '|', '>']),
        "outside the YAML subset: {s:?}"
    );
    let unquoted = s
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .or_else(|| s.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')))
        .unwrap_or(s);
    Yaml::Str(unquoted.to_string())
}

struct YamlParser {
    /// (indent, content) of each line that is not blank or a comment.
    lines: Vec<(usize, String)>,
    at: usize,
    anchors: std::collections::HashMap<String, Yaml>,
}

impl YamlParser {
    fn parse(text: &str) -> Yaml {
        let lines = text
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
            .map(|l| {
                assert!(!l.contains('\t'), "tab in YAML: {l:?}");
                (l.len() - l.trim_start().len(), l.trim().to_string())
            })
            .collect();
        let mut p = YamlParser {
            lines,
            at: 0,
            anchors: Default::default(),
        };
        let doc = p.block(0);
        assert_eq!(p.at, p.lines.len(), "unparsed line {:?}", p.lines.get(p.at));
        doc
    }

    fn block(&mut self, indent: usize) -> Yaml {
        if self.lines[self.at].1.starts_with("- ") {
            let mut items = Vec::new();
            while let Some((i, line)) = self.lines.get(self.at) {
                if *i != indent || !line.starts_with("- ") {
                    break;
                }
                items.push(yaml_scalar(&line[2..]));
                self.at += 1;
            }
            return Yaml::List(items);
        }
        let mut entries: Vec<(String, Yaml)> = Vec::new();
        while let Some((i, line)) = self.lines.get(self.at).cloned() {
            if i < indent {
                break;
            }
            assert_eq!(i, indent, "unexpected indentation at {line:?}");
            let (key, rest) = match line.split_once(": ") {
                Some((k, v)) => (k.trim().to_string(), v.trim().to_string()),
                None => (
                    line.strip_suffix(':')
                        .unwrap_or_else(|| panic!("not `key: value`: {line:?}"))
                        .to_string(),
                    String::new(),
                ),
            };
            self.at += 1;
            let value = if key == "<<" {
                let name = rest.strip_prefix('*').expect("`<<: *anchor`");
                let merged = self.anchors.get(name).expect("anchor defined").clone();
                let Yaml::Map(merged) = merged else {
                    panic!("merge of a non-map")
                };
                for (k, v) in merged {
                    if !entries.iter().any(|(e, _)| *e == k) {
                        entries.push((k, v));
                    }
                }
                continue;
            } else if rest.is_empty() || rest.starts_with('&') {
                let child_indent = self.lines.get(self.at).map_or(0, |(i, _)| *i);
                assert!(child_indent > indent, "empty value of `{key}`");
                let child = self.block(child_indent);
                if let Some(anchor) = rest.strip_prefix('&') {
                    self.anchors.insert(anchor.to_string(), child.clone());
                }
                child
            } else {
                yaml_scalar(&rest)
            };
            // A key given after a merge overrides the merged one.
            entries.retain(|(k, _)| *k != key);
            entries.push((key, value));
        }
        Yaml::Map(entries)
    }
}

#[test]
fn yaml_subset_parser_follows_anchors_and_merges() {
    let doc = YamlParser::parse(
        "x-base: &base\n  a: 1\n  b: [p, q]\ns:\n  one:\n    <<: *base\n    a: \"2\"\n    l:\n      - \"127.0.0.1:1:1\"\n",
    );
    let one = doc.get("s").get("one");
    assert_eq!(one.get("a").str(), "2");
    assert_eq!(one.get("b").list(), ["p", "q"]);
    assert_eq!(one.get("l").list(), ["127.0.0.1:1:1"]);
}

/// The node services of docker-compose.yml (`switchyard-*`).
fn compose_nodes(services: &Yaml) -> Vec<&str> {
    services
        .keys()
        .into_iter()
        .filter(|k| k.starts_with("switchyard-"))
        .collect()
}

/// README, Docker/Compose: two nodes, both built from this directory as
/// `switchyard:local` with `pull_policy: build`; the app secret a compose
/// secret mounted at /run/secrets/app_secret and named by
/// `SOCKUDO_DEFAULT_APP_SECRET_FILE`; metrics on all interfaces inside the
/// container but published on the host's loopback only.
#[test]
fn compose_runs_two_locally_built_nodes_with_the_secret_file_and_loopback_metrics() {
    let doc = YamlParser::parse(&repo_file("docker-compose.yml"));
    let services = doc.get("services");
    assert_eq!(services.keys(), ["redis", "switchyard-1", "switchyard-2"]);
    let mut published_ws = Vec::new();
    for name in compose_nodes(services) {
        let node = services.get(name);
        assert_eq!(node.get("build").str(), ".", "{name}");
        assert_eq!(node.get("image").str(), "switchyard:local", "{name}");
        assert_eq!(node.get("pull_policy").str(), "build", "{name}");
        assert_eq!(node.get("secrets").list(), ["app_secret"], "{name}");
        let env = node.get("environment");
        assert_eq!(
            env.get("SOCKUDO_DEFAULT_APP_SECRET_FILE").str(),
            "/run/secrets/app_secret",
            "{name}"
        );
        assert_eq!(env.get("METRICS_HOST").str(), "0.0.0.0", "{name}");
        let ports = node.get("ports").list();
        let metrics: Vec<&&str> = ports.iter().filter(|p| p.ends_with(":9601")).collect();
        assert_eq!(metrics.len(), 1, "{name}: {ports:?}");
        assert!(
            metrics[0].starts_with("127.0.0.1:"),
            "{name}: metrics published beyond loopback: {ports:?}"
        );
        let ws: Vec<&&str> = ports.iter().filter(|p| p.ends_with(":6001")).collect();
        assert_eq!(ws.len(), 1, "{name}: {ports:?}");
        published_ws.push(ws[0].to_string());
    }
    assert_ne!(published_ws[0], published_ws[1], "host ports differ");
    assert_eq!(
        doc.get("secrets").get("app_secret").get("file").str(),
        "./secrets/app_secret"
    );
}

/// README, Docker/Compose and scaling: the nodes are one cluster on a Redis
/// of their own — `redis:7-alpine`, not published on the host, keeping
/// nothing (no RDB snapshots, no AOF, /data in memory), health-checked with
/// `redis-cli ping`; every node waits for it to be healthy and runs with
/// `ADAPTER_DRIVER=redis`, `REDIS_URL` naming that service and the shared
/// rate limiter, set in `environment` so that they win over .env.
#[test]
fn compose_nodes_share_a_redis_service_of_their_own() {
    let doc = YamlParser::parse(&repo_file("docker-compose.yml"));
    let services = doc.get("services");
    let redis = services.get("redis");
    assert_eq!(redis.get("image").str(), "redis:7-alpine");
    assert!(
        !redis.keys().contains(&"ports") && !redis.keys().contains(&"expose"),
        "redis must not be published: {redis:?}"
    );
    let command = redis.get("command").list();
    assert_eq!(command.first(), Some(&"redis-server"), "{command:?}");
    // `--save ""` (no snapshots) and `--appendonly no` (no AOF), as pairs.
    let pair = |flag: &str| {
        command
            .iter()
            .position(|a| *a == flag)
            .and_then(|i| command.get(i + 1))
            .copied()
            .unwrap_or_else(|| panic!("{flag} not in {command:?}"))
    };
    assert_eq!(pair("--save"), "", "{command:?}");
    assert_eq!(pair("--appendonly"), "no", "{command:?}");
    assert_eq!(redis.get("tmpfs").list(), ["/data"]);
    assert!(
        !redis.keys().contains(&"volumes"),
        "nothing of Redis on disk: {redis:?}"
    );
    let health = redis.get("healthcheck");
    assert_eq!(health.get("test").list(), ["CMD", "redis-cli", "ping"]);
    for key in ["interval", "timeout", "retries"] {
        assert!(!health.get(key).str().is_empty(), "healthcheck {key}");
    }

    let nodes = compose_nodes(services);
    assert_eq!(nodes.len(), 2, "{nodes:?}");
    for name in nodes {
        let node = services.get(name);
        assert_eq!(
            node.get("depends_on").get("redis").get("condition").str(),
            "service_healthy",
            "{name}"
        );
        let env = node.get("environment");
        assert_eq!(env.get("ADAPTER_DRIVER").str(), "redis", "{name}");
        assert_eq!(env.get("REDIS_URL").str(), "redis://redis:6379", "{name}");
        assert_eq!(env.get("RATE_LIMITER_DRIVER").str(), "redis", "{name}");
        // The URL names the service above, on Redis's own port.
        let url = env.get("REDIS_URL").str();
        let host = url
            .strip_prefix("redis://")
            .and_then(|rest| rest.split(['/', ':']).next())
            .unwrap();
        assert!(services.keys().contains(&host), "{name}: {url}");
    }
}
