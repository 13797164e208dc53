//! The `switchyard` server: configuration, the app store, the HTTP API and
//! server wiring around the actors of `switchyard-actors`.

pub mod apps;
pub mod cluster;
pub mod config;
pub mod healthcheck;
pub mod http;
pub mod listen;
pub mod logging;
pub mod metrics;
pub mod server;
pub mod state;
pub mod webhooks;
