//! Webhook settings: the global `webhooks` block and each app's targets, in
//! the shapes Sockudo 5 reads (and Soketi's filter names), checked once at
//! start-up so that a bad pattern, URL or header stops the server naming its
//! key instead of silently delivering nothing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use regex::Regex;
use reqwest::header::{HeaderName, HeaderValue};
use serde::Deserialize;
use serde_json::Value;

use crate::config::ConfigError;

/// The event types a webhook can select, with Pusher's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    ChannelOccupied,
    ChannelVacated,
    MemberAdded,
    MemberRemoved,
    ClientEvent,
    CacheMiss,
    SubscriptionCount,
}

impl EventKind {
    pub const ALL: [EventKind; 7] = [
        EventKind::ChannelOccupied,
        EventKind::ChannelVacated,
        EventKind::MemberAdded,
        EventKind::MemberRemoved,
        EventKind::ClientEvent,
        EventKind::CacheMiss,
        EventKind::SubscriptionCount,
    ];

    pub fn name(self) -> &'static str {
        match self {
            EventKind::ChannelOccupied => "channel_occupied",
            EventKind::ChannelVacated => "channel_vacated",
            EventKind::MemberAdded => "member_added",
            EventKind::MemberRemoved => "member_removed",
            EventKind::ClientEvent => "client_event",
            EventKind::CacheMiss => "cache_miss",
            EventKind::SubscriptionCount => "subscription_count",
        }
    }

    pub fn parse(name: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.name() == name)
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// A set of [`EventKind`]s.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventSet(u8);

impl EventSet {
    pub fn contains(self, kind: EventKind) -> bool {
        self.0 & kind.bit() != 0
    }

    pub fn insert(&mut self, kind: EventKind) {
        self.0 |= kind.bit();
    }

    pub fn union(self, other: EventSet) -> EventSet {
        EventSet(self.0 | other.0)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// Which channels a webhook hears about. Every constraint given must hold.
#[derive(Debug, Default)]
pub struct Filter {
    prefix: Option<String>,
    suffix: Option<String>,
    pattern: Option<Regex>,
    namespace: Option<String>,
    namespaces: Option<Vec<String>>,
}

impl Filter {
    pub fn matches(&self, channel: &str) -> bool {
        if self
            .prefix
            .as_ref()
            .is_some_and(|p| !channel.starts_with(p.as_str()))
        {
            return false;
        }
        if self
            .suffix
            .as_ref()
            .is_some_and(|s| !channel.ends_with(s.as_str()))
        {
            return false;
        }
        if self.pattern.as_ref().is_some_and(|r| !r.is_match(channel)) {
            return false;
        }
        if self.namespace.is_some() || self.namespaces.is_some() {
            let ns = namespace(channel);
            if self
                .namespace
                .as_ref()
                .is_some_and(|n| ns != Some(n.as_str()))
            {
                return false;
            }
            if self
                .namespaces
                .as_ref()
                .is_some_and(|list| !list.iter().any(|n| ns == Some(n.as_str())))
            {
                return false;
            }
        }
        true
    }
}

/// A channel's namespace: the part before the first `:` (Sockudo's
/// separator) or `.` once the channel-type prefix is removed. Pusher's
/// channel names, which Switchyard enforces, cannot hold a `:`, so for
/// Switchyard the dot is what counts: Laravel's `private-orders.42` is in
/// namespace `orders`.
pub fn namespace(channel: &str) -> Option<&str> {
    const PREFIXES: [&str; 7] = [
        "private-encrypted-cache-",
        "private-cache-",
        "presence-cache-",
        "cache-",
        "private-encrypted-",
        "presence-",
        "private-",
    ];
    let logical = PREFIXES
        .iter()
        .find_map(|p| channel.strip_prefix(p))
        .unwrap_or(channel);
    let (ns, _) = logical.split_once([':', '.'])?;
    (!ns.is_empty()).then_some(ns)
}

/// How a failed delivery is retried (Sockudo's names and defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    pub enabled: bool,
    /// Attempts in all, the first included; `None`: only the time budget.
    pub max_attempts: Option<u32>,
    /// No new attempt starts once this much time has passed since the first.
    pub max_elapsed: Duration,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            enabled: true,
            max_attempts: None,
            max_elapsed: Duration::from_millis(300_000),
            initial_backoff: Duration::from_millis(1_000),
            max_backoff: Duration::from_millis(60_000),
        }
    }
}

/// One webhook of one app.
#[derive(Debug)]
pub struct Target {
    pub url: url::Url,
    pub events: EventSet,
    pub filter: Filter,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub retry: RetryPolicy,
    pub request_timeout: Duration,
}

impl Target {
    pub fn wants(&self, kind: EventKind, channel: &str) -> bool {
        self.events.contains(kind) && self.filter.matches(channel)
    }
}

/// Where queued webhook batches are kept until delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueueDriver {
    #[default]
    Memory,
    Redis,
}

impl std::str::FromStr for QueueDriver {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "memory" => Ok(QueueDriver::Memory),
            "redis" => Ok(QueueDriver::Redis),
            other => Err(format!(
                "{other:?} is not a supported queue driver (memory or redis)"
            )),
        }
    }
}

/// The global `webhooks` block, resolved, plus every app's targets.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    pub batching: bool,
    /// How long events of one app and webhook gather before they are sent.
    pub batch_duration: Duration,
    pub batch_size: usize,
    pub retry: RetryPolicy,
    pub request_timeout: Duration,
    /// How long `channel_vacated` and `member_removed` wait, so that a
    /// page reload (leave, join) tells the backend nothing.
    pub leave_grace: Duration,
    pub queue: QueueDriver,
    /// App id → its webhooks (apps without webhooks are absent).
    pub apps: HashMap<String, Arc<[Target]>>,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            batching: true,
            batch_duration: Duration::from_millis(50),
            batch_size: 100,
            retry: RetryPolicy::default(),
            request_timeout: Duration::from_millis(10_000),
            leave_grace: Duration::from_millis(DEFAULT_LEAVE_GRACE_MS),
            queue: QueueDriver::Memory,
            apps: HashMap::new(),
        }
    }
}

pub const DEFAULT_LEAVE_GRACE_MS: u64 = 2_000;

impl WebhookSettings {
    /// The global block of the config file over the defaults.
    pub(crate) fn from_file(file: FileWebhooks) -> WebhookSettings {
        let mut s = WebhookSettings::default();
        let b = file.batching;
        s.batching = b.enabled.unwrap_or(s.batching);
        if let Some(ms) = b.duration {
            s.batch_duration = Duration::from_millis(ms);
        }
        s.batch_size = b.size.unwrap_or(s.batch_size);
        s.retry = file.retry.over(&s.retry);
        if let Some(ms) = file.request_timeout_ms {
            s.request_timeout = Duration::from_millis(ms);
        }
        if let Some(ms) = file.leave_grace_ms {
            s.leave_grace = Duration::from_millis(ms);
        }
        s
    }

    /// Problems with the global settings, named by key.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.batch_size == 0 {
            return Err(ConfigError::invalid(
                "webhooks.batching.size (WEBHOOK_BATCHING_SIZE)",
                "must be at least 1",
            ));
        }
        if self.batch_duration.is_zero() && self.batching {
            return Err(ConfigError::invalid(
                "webhooks.batching.duration (WEBHOOK_BATCHING_DURATION)",
                "must be at least 1 ms (or disable batching)",
            ));
        }
        if self.request_timeout.is_zero() {
            return Err(ConfigError::invalid(
                "webhooks.request_timeout_ms",
                "must be at least 1",
            ));
        }
        check_retry(&self.retry, "webhooks.retry")
    }

    /// Parse one app's webhooks (`raw`, the JSON array found at `key`).
    pub(crate) fn parse_targets(
        &self,
        raw: &Value,
        key: &str,
        warnings: &mut Vec<String>,
    ) -> Result<Vec<Target>, ConfigError> {
        // Keys no field reads are reported (a misspelt `event_type` must not
        // pass unnoticed); Sockudo's webhook has no key Switchyard leaves out.
        let mut ignored = Vec::new();
        let mut record = |p: serde_ignored::Path| ignored.push(crate::config::keys::dotted(&p));
        let de = serde_ignored::Deserializer::new(raw, &mut record);
        let entries: Vec<FileWebhook> = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let at = if path == "." {
                key.to_string()
            } else {
                format!("{key}{}", dotted(&path))
            };
            ConfigError::invalid(at, e.into_inner().to_string())
        })?;
        for path in ignored {
            warnings.push(crate::config::keys::describe(&format!(
                "{key}{}",
                dotted(&path)
            )));
        }
        entries
            .into_iter()
            .enumerate()
            .map(|(i, entry)| self.target(entry, &format!("{key}[{i}]"), warnings))
            .collect()
    }

    fn target(
        &self,
        w: FileWebhook,
        key: &str,
        warnings: &mut Vec<String>,
    ) -> Result<Target, ConfigError> {
        let at = |field: &str| format!("{key}.{field}");
        if w.lambda.is_some() || w.lambda_function.is_some() {
            return Err(ConfigError::invalid(
                at(if w.lambda.is_some() {
                    "lambda"
                } else {
                    "lambda_function"
                }),
                "AWS Lambda webhooks are not supported; give the webhook a `url` (for example \
                 a Lambda function URL or an API Gateway endpoint)",
            ));
        }
        let url = w
            .url
            .ok_or_else(|| ConfigError::invalid(at("url"), "is required"))?;
        let url = url::Url::parse(url.trim())
            .map_err(|e| ConfigError::invalid(at("url"), format!("{url:?} is not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(ConfigError::invalid(
                at("url"),
                "must be an http:// or https:// URL with a host",
            ));
        }
        let types = w.event_types.ok_or_else(|| {
            ConfigError::invalid(
                at("event_types"),
                format!(
                    "is required: a list of {}",
                    EventKind::ALL.map(EventKind::name).join(", ")
                ),
            )
        })?;
        let mut events = EventSet::default();
        for (i, name) in types.iter().enumerate() {
            match EventKind::parse(name.trim()) {
                Some(kind) => events.insert(kind),
                None => warnings.push(format!(
                    "{}: event type {name:?} is not one Switchyard sends ({}); it is ignored",
                    at(&format!("event_types[{i}]")),
                    EventKind::ALL.map(EventKind::name).join(", ")
                )),
            }
        }
        if events.is_empty() {
            return Err(ConfigError::invalid(
                at("event_types"),
                "selects no event Switchyard sends, so this webhook would never be called",
            ));
        }
        let filter = match w.filter {
            Some(f) => f.resolve(&at("filter"))?,
            None => Filter::default(),
        };
        let mut headers = Vec::new();
        for (name, value) in w.headers.unwrap_or_default() {
            let hk = at(&format!("headers.{name}"));
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| ConfigError::invalid(&hk, "is not a valid header name"))?;
            if matches!(
                header.as_str(),
                "content-type" | "x-pusher-key" | "x-pusher-signature" | "x-switchyard-webhook-id"
            ) {
                return Err(ConfigError::invalid(
                    hk,
                    "is set by the server (it is part of the signed request) and cannot be overridden",
                ));
            }
            let text = match value {
                Value::String(s) => s,
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => {
                    return Err(ConfigError::invalid(hk, "must be a string"));
                }
            };
            let value = HeaderValue::from_str(&text)
                .map_err(|_| ConfigError::invalid(&hk, "is not a valid header value"))?;
            headers.push((header, value));
        }
        let retry = w.retry.unwrap_or_default().over(&self.retry);
        check_retry(&retry, &at("retry"))?;
        let request_timeout = w
            .request_timeout_ms
            .map_or(self.request_timeout, Duration::from_millis);
        if request_timeout.is_zero() {
            return Err(ConfigError::invalid(
                at("request_timeout_ms"),
                "must be at least 1",
            ));
        }
        Ok(Target {
            url,
            events,
            filter,
            headers,
            retry,
            request_timeout,
        })
    }
}

fn check_retry(r: &RetryPolicy, key: &str) -> Result<(), ConfigError> {
    if r.max_attempts == Some(0) {
        return Err(ConfigError::invalid(
            format!("{key}.max_attempts"),
            "must be at least 1 (the first attempt counts)",
        ));
    }
    if r.initial_backoff.is_zero() {
        return Err(ConfigError::invalid(
            format!("{key}.initial_backoff_ms"),
            "must be at least 1",
        ));
    }
    if r.max_backoff < r.initial_backoff {
        return Err(ConfigError::invalid(
            format!("{key}.max_backoff_ms"),
            "must not be less than initial_backoff_ms",
        ));
    }
    Ok(())
}

/// `[0].filter.channel_pattern` from serde_path_to_error's `[0].filter...`.
fn dotted(path: &str) -> String {
    if path.starts_with('[') {
        path.to_string()
    } else {
        format!(".{path}")
    }
}

// ---- file shapes ----

/// `webhooks` at the top level of the config file.
#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct FileWebhooks {
    pub batching: FileBatching,
    pub retry: FileRetry,
    #[serde(deserialize_with = "crate::config::de_opt_num")]
    pub request_timeout_ms: Option<u64>,
    /// Switchyard extension: the grace before `channel_vacated` / `member_removed`.
    #[serde(deserialize_with = "crate::config::de_opt_num")]
    pub leave_grace_ms: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct FileBatching {
    pub enabled: Option<bool>,
    #[serde(deserialize_with = "crate::config::de_opt_num")]
    pub duration: Option<u64>,
    #[serde(deserialize_with = "crate::config::de_opt_num")]
    pub size: Option<usize>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(default)]
pub(crate) struct FileRetry {
    pub enabled: Option<bool>,
    #[serde(deserialize_with = "crate::config::de_opt_num")]
    pub max_attempts: Option<u32>,
    #[serde(deserialize_with = "crate::config::de_opt_num")]
    pub max_elapsed_time_ms: Option<u64>,
    #[serde(deserialize_with = "crate::config::de_opt_num")]
    pub initial_backoff_ms: Option<u64>,
    #[serde(deserialize_with = "crate::config::de_opt_num")]
    pub max_backoff_ms: Option<u64>,
}

impl FileRetry {
    /// Each setting given here, else `base`'s.
    fn over(&self, base: &RetryPolicy) -> RetryPolicy {
        let ms = Duration::from_millis;
        RetryPolicy {
            enabled: self.enabled.unwrap_or(base.enabled),
            max_attempts: self.max_attempts.or(base.max_attempts),
            max_elapsed: self.max_elapsed_time_ms.map_or(base.max_elapsed, ms),
            initial_backoff: self.initial_backoff_ms.map_or(base.initial_backoff, ms),
            max_backoff: self.max_backoff_ms.map_or(base.max_backoff, ms),
        }
    }
}

/// One entry of an app's `webhooks` (or `policy.webhooks`).
#[derive(Deserialize, Default)]
#[serde(default)]
struct FileWebhook {
    url: Option<String>,
    event_types: Option<Vec<String>>,
    filter: Option<FileFilter>,
    headers: Option<serde_json::Map<String, Value>>,
    retry: Option<FileRetry>,
    #[serde(deserialize_with = "crate::config::de_opt_num")]
    request_timeout_ms: Option<u64>,
    lambda: Option<Value>,
    lambda_function: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct FileFilter {
    channel_prefix: Option<String>,
    channel_suffix: Option<String>,
    channel_pattern: Option<String>,
    channel_namespace: Option<String>,
    channel_namespaces: Option<Vec<String>>,
    /// Soketi's names for a prefix and a suffix.
    channel_name_starts_with: Option<String>,
    channel_name_ends_with: Option<String>,
}

impl FileFilter {
    fn resolve(self, key: &str) -> Result<Filter, ConfigError> {
        let both = |a: Option<String>, b: Option<String>, names: (&str, &str)| match (a, b) {
            (Some(a), Some(b)) if a != b => Err(ConfigError::invalid(
                format!("{key}.{}", names.1),
                format!("disagrees with {key}.{} (give one of them)", names.0),
            )),
            (a, b) => Ok(a.or(b)),
        };
        let prefix = both(
            self.channel_prefix,
            self.channel_name_starts_with,
            ("channel_prefix", "channel_name_starts_with"),
        )?;
        let suffix = both(
            self.channel_suffix,
            self.channel_name_ends_with,
            ("channel_suffix", "channel_name_ends_with"),
        )?;
        let pattern = match self.channel_pattern {
            Some(p) => Some(Regex::new(&p).map_err(|e| {
                ConfigError::invalid(
                    format!("{key}.channel_pattern"),
                    format!("{p:?} is not a valid regular expression: {e}"),
                )
            })?),
            None => None,
        };
        Ok(Filter {
            prefix,
            suffix,
            pattern,
            namespace: self.channel_namespace,
            namespaces: self.channel_namespaces,
        })
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
