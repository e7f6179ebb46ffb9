//! Agents: `watchpost agent` on other hosts streams their host metrics to a server
//! over one WebSocket (Netdata's parent/child model); the server stores them as
//! `{instance="<name>", job="agent"}` series and raises `AgentDown` for silent ones.
//!
//! - `protocol.rs`: the wire format both sides speak.
//! - `client.rs`, `buffer.rs`: the agent process (collect, buffer, back-fill).
//! - `registry.rs`, `session.rs`, `store.rs`: the server side.

pub mod buffer;
pub mod client;
pub mod protocol;
pub mod registry;
pub mod session;
pub mod store;

use std::time::Duration;

pub use client::{AgentOptions, run};
pub use registry::Agents;

/// Problems of `[agents]` and `[agent]`, each naming its key.
pub fn validate(config: &crate::config::Config) -> Vec<String> {
    let mut problems = Vec::new();
    let a = &config.agents;
    if a.grace < Duration::from_secs(1) {
        problems.push("agents.grace: must be at least 1s".to_string());
    }
    if a.max_connected == 0 {
        problems.push("agents.max_connected: must be at least 1".to_string());
    }
    if a.max_series == 0 {
        problems.push("agents.max_series: must be at least 1".to_string());
    }
    if a.max_message_bytes < 1024 {
        problems.push("agents.max_message_bytes: must be at least 1024".to_string());
    }
    if a.max_samples_per_second == 0 {
        problems.push("agents.max_samples_per_second: must be at least 1".to_string());
    }
    let c = &config.agent;
    if let Some(server) = &c.server {
        let hello = protocol::Hello {
            protocol: protocol::VERSION,
            name: String::new(),
            host: String::new(),
            version: String::new(),
            session: String::new(),
        };
        if let Err(e) = hello.url(server) {
            problems.push(e);
        }
    }
    if let Some(name) = &c.name
        && let Err(e) = protocol::check_name(name)
    {
        problems.push(format!("agent.name: {e}"));
    }
    if c.buffer < Duration::from_secs(1) {
        problems.push("agent.buffer: must be at least 1s".to_string());
    }
    problems
}
