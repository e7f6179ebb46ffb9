//! Client-side routes: the page a path shows, and the path of a page.

/// A page of the dashboard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Page {
    /// `/` (also `/overview`).
    Overview,
    /// `/alerts`, or `/alerts/{id}` with the detail drawer open.
    Alerts(Option<i64>),
    /// `/history`.
    History,
    /// `/rules`.
    Rules,
    /// `/silences`.
    Silences,
    /// `/cluster`.
    Cluster,
    /// `/postgres`.
    Postgres,
    /// `/heartbeats`.
    Heartbeats,
    /// `/agents`.
    Agents,
    /// Anything else.
    NotFound,
}

impl Page {
    /// The page for a URL path (query and fragment ignored; a trailing slash is fine).
    pub fn parse(path: &str) -> Page {
        let path = path.split(['?', '#']).next().unwrap_or("");
        let trimmed = path.trim_end_matches('/');
        let mut parts = trimmed.split('/').filter(|p| !p.is_empty());
        match (parts.next(), parts.next(), parts.next()) {
            (None, _, _) | (Some("overview"), None, _) => Page::Overview,
            (Some("alerts"), None, _) => Page::Alerts(None),
            (Some("alerts"), Some(id), None) => match id.parse() {
                Ok(id) => Page::Alerts(Some(id)),
                Err(_) => Page::NotFound,
            },
            (Some("history"), None, _) => Page::History,
            (Some("rules"), None, _) => Page::Rules,
            (Some("silences"), None, _) => Page::Silences,
            (Some("cluster"), None, _) => Page::Cluster,
            (Some("postgres"), None, _) => Page::Postgres,
            (Some("heartbeats"), None, _) => Page::Heartbeats,
            (Some("agents"), None, _) => Page::Agents,
            _ => Page::NotFound,
        }
    }

    /// The canonical path.
    pub fn path(&self) -> String {
        match self {
            Page::Overview => "/".into(),
            Page::Alerts(None) => "/alerts".into(),
            Page::Alerts(Some(id)) => format!("/alerts/{id}"),
            Page::History => "/history".into(),
            Page::Rules => "/rules".into(),
            Page::Silences => "/silences".into(),
            Page::Cluster => "/cluster".into(),
            Page::Postgres => "/postgres".into(),
            Page::Heartbeats => "/heartbeats".into(),
            Page::Agents => "/agents".into(),
            Page::NotFound => "/".into(),
        }
    }

    /// The navigation section this page belongs to.
    pub fn section(&self) -> &'static str {
        match self {
            Page::Overview | Page::NotFound => "overview",
            Page::Alerts(_) => "alerts",
            Page::History => "history",
            Page::Rules => "rules",
            Page::Silences => "silences",
            Page::Cluster => "cluster",
            Page::Postgres => "postgres",
            Page::Heartbeats => "heartbeats",
            Page::Agents => "agents",
        }
    }

    /// The document title.
    pub fn title(&self) -> String {
        let t = match self {
            Page::Overview => "Overview".to_string(),
            Page::Alerts(None) => "Alerts".to_string(),
            Page::Alerts(Some(id)) => format!("Alert #{id}"),
            Page::History => "History & stats".to_string(),
            Page::Rules => "Rules".to_string(),
            Page::Silences => "Silences".to_string(),
            Page::Cluster => "Cluster".to_string(),
            Page::Postgres => "PostgreSQL".to_string(),
            Page::Heartbeats => "Heartbeats".to_string(),
            Page::Agents => "Agents".to_string(),
            Page::NotFound => "Not found".to_string(),
        };
        format!("{t} · watchpost")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_round_trip() {
        for p in [
            Page::Overview,
            Page::Alerts(None),
            Page::Alerts(Some(123)),
            Page::History,
            Page::Rules,
            Page::Silences,
            Page::Cluster,
            Page::Postgres,
            Page::Heartbeats,
            Page::Agents,
        ] {
            assert_eq!(Page::parse(&p.path()), p);
        }
        assert_eq!(Page::parse("/alerts/"), Page::Alerts(None));
        assert_eq!(Page::parse("/alerts/42?state=all"), Page::Alerts(Some(42)));
        assert_eq!(Page::parse("/overview"), Page::Overview);
        assert_eq!(Page::parse("/alerts/x"), Page::NotFound);
        assert_eq!(Page::parse("/alerts/1/2"), Page::NotFound);
        assert_eq!(Page::parse("/nope"), Page::NotFound);
        assert_eq!(Page::Alerts(Some(1)).section(), "alerts");
        assert_eq!(Page::Rules.title(), "Rules · watchpost");
        assert_eq!(Page::parse("/cluster/"), Page::Cluster);
        assert_eq!(Page::parse("/agents?x=1"), Page::Agents);
        assert_eq!(Page::Agents.title(), "Agents · watchpost");
    }
}
