//! Driver and role names, parsed case-insensitively with Sockudo's aliases.
//! An unknown name is an error listing the accepted ones (Sockudo would keep
//! the previous driver and log a warning).

use std::str::FromStr;

/// Where rate-limit counters live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RateLimiterDriver {
    #[default]
    Memory,
    Redis,
    RedisCluster,
    None,
}

impl RateLimiterDriver {
    pub fn name(self) -> &'static str {
        match self {
            RateLimiterDriver::Memory => "memory",
            RateLimiterDriver::Redis => "redis",
            RateLimiterDriver::RedisCluster => "redis-cluster",
            RateLimiterDriver::None => "none",
        }
    }
}

impl FromStr for RateLimiterDriver {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "memory" => Ok(RateLimiterDriver::Memory),
            "redis" => Ok(RateLimiterDriver::Redis),
            "redis-cluster" | "redis_cluster" => Ok(RateLimiterDriver::RedisCluster),
            "none" => Ok(RateLimiterDriver::None),
            _ => Err("one of memory, redis, redis-cluster, none".into()),
        }
    }
}

/// The horizontal adapter. Only the names matter here: the server decides
/// which it can run.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AdapterDriver {
    #[default]
    Local,
    Redis,
    RedisCluster,
    Nats,
    /// A Sockudo adapter Switchyard knows by name only (canonical name:
    /// `pulsar`, `rabbitmq`, `google-pubsub`, `kafka`, `iggy`).
    Other(String),
}

impl AdapterDriver {
    pub fn name(&self) -> &str {
        match self {
            AdapterDriver::Local => "local",
            AdapterDriver::Redis => "redis",
            AdapterDriver::RedisCluster => "redis-cluster",
            AdapterDriver::Nats => "nats",
            AdapterDriver::Other(name) => name,
        }
    }
}

impl FromStr for AdapterDriver {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let other = |name: &str| Ok(AdapterDriver::Other(name.into()));
        match s.trim().to_ascii_lowercase().as_str() {
            "local" => Ok(AdapterDriver::Local),
            "redis" => Ok(AdapterDriver::Redis),
            "redis-cluster" | "redis_cluster" => Ok(AdapterDriver::RedisCluster),
            "nats" => Ok(AdapterDriver::Nats),
            "pulsar" => other("pulsar"),
            "rabbitmq" | "rabbit-mq" => other("rabbitmq"),
            "google-pubsub" | "gcp-pubsub" | "pubsub" => other("google-pubsub"),
            "kafka" => other("kafka"),
            "iggy" => other("iggy"),
            _ => Err(
                "one of local, redis, redis-cluster, nats, pulsar, rabbitmq, \
                      google-pubsub, kafka, iggy"
                    .into(),
            ),
        }
    }
}

/// `api` nodes only publish over HTTP (they need a horizontal adapter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ServerRole {
    #[default]
    Default,
    Api,
}

impl ServerRole {
    pub fn name(self) -> &'static str {
        match self {
            ServerRole::Default => "default",
            ServerRole::Api => "api",
        }
    }
}

impl FromStr for ServerRole {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "default" => Ok(ServerRole::Default),
            "api" => Ok(ServerRole::Api),
            _ => Err("default or api".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_names_parse_case_insensitively_with_sockudo_aliases() {
        assert_eq!("REDIS".parse(), Ok(AdapterDriver::Redis));
        assert_eq!("redis-cluster".parse(), Ok(AdapterDriver::RedisCluster));
        assert_eq!("Nats".parse(), Ok(AdapterDriver::Nats));
        assert_eq!(
            "gcp-pubsub".parse(),
            Ok(AdapterDriver::Other("google-pubsub".into()))
        );
        assert_eq!(
            "rabbit-mq".parse(),
            Ok(AdapterDriver::Other("rabbitmq".into()))
        );
        assert!("zeromq".parse::<AdapterDriver>().is_err());
        assert_eq!("redis-cluster".parse(), Ok(RateLimiterDriver::RedisCluster));
        assert_eq!("None".parse(), Ok(RateLimiterDriver::None));
        assert!("disk".parse::<RateLimiterDriver>().is_err());
        assert_eq!("API".parse(), Ok(ServerRole::Api));
        assert!("worker".parse::<ServerRole>().is_err());
    }
}
