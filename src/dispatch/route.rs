//! The routing tree (Alertmanager's `route`): each alert walks the tree depth-first and
//! lands on the deepest matching routes; `continue` keeps matching siblings.
//!
//! Options (`receiver`, `group_by`, `group_*` and `repeat_interval`) are inherited from
//! the parent when a child does not set them.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::config::{Config, RouteConfig};
use crate::silence::Matchers;

/// Alertmanager's default `group_wait`.
pub const DEFAULT_GROUP_WAIT: Duration = Duration::from_secs(30);
/// Alertmanager's default `group_interval`.
pub const DEFAULT_GROUP_INTERVAL: Duration = Duration::from_secs(300);
/// Alertmanager's default `repeat_interval`.
pub const DEFAULT_REPEAT_INTERVAL: Duration = Duration::from_secs(4 * 3600);
/// The receiver of the default route.
pub const DEFAULT_RECEIVER: &str = "telegram";

/// Which labels split alerts into groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupBy {
    /// `...`: every label (one group per alert).
    All,
    /// These labels (absent ones are left out of the group labels).
    Labels(Vec<String>),
}

impl GroupBy {
    /// The group labels of an alert with `labels`.
    pub fn group_labels(&self, labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        match self {
            GroupBy::All => labels.clone(),
            GroupBy::Labels(names) => names
                .iter()
                .filter_map(|n| labels.get(n).map(|v| (n.clone(), v.clone())))
                .collect(),
        }
    }
}

/// Effective options of a route (after inheritance).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteOpts {
    /// Receiver name.
    pub receiver: String,
    /// Grouping.
    pub group_by: GroupBy,
    /// Wait before the first notification of a new group.
    pub group_wait: Duration,
    /// Wait between notifications of a changed group.
    pub group_interval: Duration,
    /// Wait before repeating an unchanged notification.
    pub repeat_interval: Duration,
}

/// One node of the tree.
#[derive(Debug, Clone)]
pub struct Route {
    /// Stable identifier: the path of matchers from the root, with sibling indexes.
    pub id: String,
    /// Matchers (empty at the root).
    pub matchers: Matchers,
    /// Keep matching siblings after this route matched.
    pub continue_matching: bool,
    /// Effective options.
    pub opts: RouteOpts,
    /// Children.
    pub routes: Vec<Route>,
}

impl Route {
    /// The routes an alert with `labels` is delivered through, in tree order.
    pub fn match_labels(&self, labels: &BTreeMap<String, String>) -> Vec<&Route> {
        if !self.matchers.matches(labels) {
            return Vec::new();
        }
        let mut all = Vec::new();
        for child in &self.routes {
            let matched = child.match_labels(labels);
            let hit = !matched.is_empty();
            all.extend(matched);
            if hit && !child.continue_matching {
                break;
            }
        }
        if all.is_empty() {
            all.push(self);
        }
        all
    }

    /// Every route of the tree, depth-first.
    pub fn walk(&self) -> Vec<&Route> {
        let mut out = vec![self];
        for c in &self.routes {
            out.extend(c.walk());
        }
        out
    }

    /// The receiver names the tree uses.
    pub fn receivers(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .walk()
            .iter()
            .map(|r| r.opts.receiver.clone())
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

/// Builds the routing tree from `[route]`, or the default route (everything to the
/// `telegram` receiver) when there is no `[route]` and `telegram.bot_token` is set.
/// `Ok(None)` means nothing is routed anywhere. Problems name their config key.
pub fn build(config: &Config) -> Result<Option<Route>, Vec<String>> {
    let telegram_on = config.telegram.bot_token.is_some();
    let Some(root) = &config.route else {
        if !telegram_on {
            return Ok(None);
        }
        return Ok(Some(Route {
            id: "{}".into(),
            matchers: Matchers::default(),
            continue_matching: false,
            opts: RouteOpts {
                receiver: DEFAULT_RECEIVER.into(),
                group_by: GroupBy::Labels(vec!["alertname".into()]),
                group_wait: DEFAULT_GROUP_WAIT,
                group_interval: DEFAULT_GROUP_INTERVAL,
                repeat_interval: DEFAULT_REPEAT_INTERVAL,
            },
            routes: Vec::new(),
        }));
    };
    let mut problems = Vec::new();
    if !root.matchers.is_empty() {
        problems.push("route.matchers: the root route must not have matchers".to_string());
    }
    let receiver = match &root.receiver {
        Some(r) => r.clone(),
        None if telegram_on => DEFAULT_RECEIVER.to_string(),
        None => {
            problems.push(
                "route.receiver: the root route needs a receiver (or set telegram.bot_token to use \"telegram\")"
                    .to_string(),
            );
            String::new()
        }
    };
    let parent = RouteOpts {
        receiver,
        group_by: GroupBy::Labels(vec!["alertname".into()]),
        group_wait: DEFAULT_GROUP_WAIT,
        group_interval: DEFAULT_GROUP_INTERVAL,
        repeat_interval: DEFAULT_REPEAT_INTERVAL,
    };
    let route = node(root, &parent, "route", "{}".into(), &mut problems);
    if problems.is_empty() {
        Ok(Some(route))
    } else {
        Err(problems)
    }
}

fn node(
    cfg: &RouteConfig,
    parent: &RouteOpts,
    key: &str,
    id: String,
    problems: &mut Vec<String>,
) -> Route {
    let mut matchers = Matchers::default();
    for (i, m) in cfg.matchers.iter().enumerate() {
        match Matchers::parse(m) {
            Ok(ms) => matchers.0.extend(ms.0),
            Err(e) => problems.push(format!("{key}.matchers[{i}]: {e}")),
        }
    }
    let group_by = match &cfg.group_by {
        None => parent.group_by.clone(),
        Some(list) if list.iter().any(|l| l == "...") => {
            if list.len() > 1 {
                problems.push(format!(
                    "{key}.group_by: \"...\" must be the only entry when used"
                ));
            }
            GroupBy::All
        }
        Some(list) => {
            let mut names = Vec::new();
            for l in list {
                if l.is_empty() || l.starts_with(|c: char| c.is_ascii_digit()) {
                    problems.push(format!("{key}.group_by: invalid label name {l:?}"));
                } else if !names.contains(l) {
                    names.push(l.clone());
                }
            }
            GroupBy::Labels(names)
        }
    };
    let opts = RouteOpts {
        receiver: cfg
            .receiver
            .clone()
            .unwrap_or_else(|| parent.receiver.clone()),
        group_by,
        group_wait: cfg.group_wait.unwrap_or(parent.group_wait),
        group_interval: cfg.group_interval.unwrap_or(parent.group_interval),
        repeat_interval: cfg.repeat_interval.unwrap_or(parent.repeat_interval),
    };
    if cfg.receiver.as_deref().is_some_and(|r| r.trim().is_empty()) {
        problems.push(format!(
            "{key}.receiver: must not be empty (omit the key to inherit the parent's receiver)"
        ));
    }
    if opts.group_interval.is_zero() {
        problems.push(format!("{key}.group_interval: must be greater than 0"));
    }
    if opts.repeat_interval.is_zero() {
        problems.push(format!("{key}.repeat_interval: must be greater than 0"));
    }
    let routes = cfg
        .routes
        .iter()
        .enumerate()
        .map(|(i, child)| {
            let child_id = format!("{id}/{}/{i}", matchers_key(child));
            node(
                child,
                &opts,
                &format!("{key}.routes[{i}]"),
                child_id,
                problems,
            )
        })
        .collect();
    Route {
        id,
        matchers,
        continue_matching: cfg.continue_matching,
        opts,
        routes,
    }
}

fn matchers_key(cfg: &RouteConfig) -> String {
    Matchers::parse_all(&cfg.matchers)
        .map(|m| m.to_string())
        .unwrap_or_else(|_| "{?}".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn tree(toml: &str) -> Route {
        let c = Config::from_toml(toml).unwrap();
        build(&c).unwrap().unwrap()
    }

    const TREE: &str = r#"
[telegram]
bot_token = "1:x"
chat_ids = [1]
[route]
receiver = "default"
group_by = ["alertname", "instance"]
group_wait = "1s"
[[route.routes]]
matchers = ["severity=\"critical\""]
receiver = "pager"
continue = true
repeat_interval = "1h"
[[route.routes]]
matchers = ["severity=~\"critical|warning\""]
receiver = "chat"
group_by = ["..."]
[[route.routes.routes]]
matchers = ["team=\"db\""]
receiver = "dba"
[[route.routes]]
matchers = ["severity=\"info\""]
receiver = "info"
[[receivers]]
name = "default"
webhook = { url = "http://127.0.0.1:1/" }
[[receivers]]
name = "pager"
webhook = { url = "http://127.0.0.1:1/" }
[[receivers]]
name = "chat"
webhook = { url = "http://127.0.0.1:1/" }
[[receivers]]
name = "dba"
webhook = { url = "http://127.0.0.1:1/" }
[[receivers]]
name = "info"
webhook = { url = "http://127.0.0.1:1/" }
"#;

    #[test]
    fn continue_and_first_match_and_inheritance() {
        let t = tree(TREE);
        let names = |l: &[(&str, &str)]| {
            t.match_labels(&labels(l))
                .iter()
                .map(|r| r.opts.receiver.clone())
                .collect::<Vec<_>>()
        };
        // critical: pager (continue) then chat.
        assert_eq!(names(&[("severity", "critical")]), ["pager", "chat"]);
        // critical db: pager, then the chat subtree's dba child.
        assert_eq!(
            names(&[("severity", "critical"), ("team", "db")]),
            ["pager", "dba"]
        );
        assert_eq!(names(&[("severity", "warning")]), ["chat"]);
        // info matches only the third child: first match wins, no continue.
        assert_eq!(names(&[("severity", "info")]), ["info"]);
        // nothing matches: the root.
        assert_eq!(names(&[("severity", "debug")]), ["default"]);

        let critical = t.match_labels(&labels(&[("severity", "critical")]));
        assert_eq!(critical[0].opts.repeat_interval, Duration::from_secs(3600));
        assert_eq!(
            critical[0].opts.group_wait,
            Duration::from_secs(1),
            "inherited"
        );
        assert_eq!(critical[0].opts.group_interval, DEFAULT_GROUP_INTERVAL);
        assert_eq!(critical[1].opts.group_by, GroupBy::All);
        let dba = t.match_labels(&labels(&[("severity", "warning"), ("team", "db")]));
        assert_eq!(dba[0].opts.group_by, GroupBy::All, "inherited from parent");
        assert_ne!(critical[0].id, critical[1].id);
    }

    #[test]
    fn group_labels() {
        let l = labels(&[("alertname", "A"), ("job", "x"), ("instance", "i")]);
        let g = GroupBy::Labels(vec!["alertname".into(), "missing".into()]);
        assert_eq!(g.group_labels(&l), labels(&[("alertname", "A")]));
        assert_eq!(GroupBy::All.group_labels(&l), l);
    }

    #[test]
    fn default_route_only_with_a_bot_token() {
        assert!(build(&Config::default()).unwrap().is_none());
        let c = Config::from_toml("[telegram]\nbot_token = \"1:x\"\nchat_ids = [5]\n").unwrap();
        let r = build(&c).unwrap().unwrap();
        assert_eq!(r.opts.receiver, "telegram");
        assert_eq!(r.opts.group_wait, DEFAULT_GROUP_WAIT);
        assert_eq!(r.opts.group_interval, DEFAULT_GROUP_INTERVAL);
        assert_eq!(r.opts.repeat_interval, DEFAULT_REPEAT_INTERVAL);
        assert_eq!(r.opts.group_by, GroupBy::Labels(vec!["alertname".into()]));
    }

    #[test]
    fn problems_name_the_key() {
        let c = Config {
            route: Some(RouteConfig {
                receiver: Some("x".into()),
                matchers: vec![],
                group_by: None,
                group_wait: None,
                group_interval: Some(Duration::ZERO),
                repeat_interval: None,
                continue_matching: false,
                routes: vec![RouteConfig {
                    receiver: None,
                    matchers: vec!["a=~\"(\"".into()],
                    group_by: Some(vec!["...".into(), "x".into()]),
                    group_wait: None,
                    group_interval: None,
                    repeat_interval: None,
                    continue_matching: false,
                    routes: vec![],
                }],
            }),
            ..Config::default()
        };
        let problems = build(&c).unwrap_err().join("\n");
        assert!(problems.contains("route.group_interval"), "{problems}");
        assert!(
            problems.contains("route.routes[0].matchers[0]"),
            "{problems}"
        );
        assert!(problems.contains("route.routes[0].group_by"), "{problems}");
    }

    #[test]
    fn an_empty_receiver_is_refused_not_inherited() {
        let c = Config::from_toml(
            "[route]\nreceiver = \"hook\"\n[[route.routes]]\nmatchers = [\"a=\\\"b\\\"\"]\nreceiver = \"\"\n\
             [[receivers]]\nname = \"hook\"\nwebhook = { url = \"http://127.0.0.1:9/x\" }\n",
        )
        .unwrap();
        let err = build(&c).unwrap_err().join("\n");
        assert!(
            err.contains("route.routes[0].receiver: must not be empty"),
            "{err}"
        );
    }
}
