//! Parsing bot commands: `/name[@bot] args…`.

use std::time::Duration;

use crate::alerts::stats::{MAX_WINDOW, MAX_WINDOW_TEXT};
use crate::silence::{Matcher, Matchers};

/// Longest silence `/silence` creates: 10 years (humantime's `10y`, 3652.5 days). Far
/// more than any maintenance; beyond it a typo (`300000y`) is more likely than intent.
pub const MAX_SILENCE: Duration = Duration::from_secs(315_576_000);
/// [`MAX_SILENCE`] as replies write it.
pub const MAX_SILENCE_TEXT: &str = "10y";

/// A command the bot understands.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// `/alerts [severity]`: firing alerts.
    Alerts {
        /// Only this severity.
        severity: Option<String>,
    },
    /// `/alert ID`: one alert with its events.
    Alert {
        /// Alert id.
        id: i64,
    },
    /// `/ack ID [comment]`.
    Ack {
        /// Alert id.
        id: i64,
        /// Comment.
        comment: Option<String>,
    },
    /// `/silence MATCHERS DURATION [comment]`.
    Silence {
        /// Matchers.
        matchers: Vec<Matcher>,
        /// How long.
        duration: Duration,
        /// Comment.
        comment: Option<String>,
    },
    /// `/unsilence ID`.
    Unsilence {
        /// Silence id.
        id: String,
    },
    /// `/report [window]`.
    Report {
        /// Window; the configured default when absent.
        window: Option<Duration>,
    },
    /// `/status`.
    Status,
    /// `/heartbeats`.
    Heartbeats,
    /// `/agents`.
    Agents,
    /// `/help` (and `/start`).
    Help,
}

/// The `/help` text (HTML).
pub const HELP: &str = "<b>watchpost bot</b>\n\
/alerts [critical|warning|info] — firing alerts\n\
/alert ID — one alert with its history\n\
/ack ID [comment] — acknowledge (no re-notification until it resolves or escalates)\n\
/silence MATCHERS DURATION [comment] — e.g. <code>/silence alertname=\"HighCpu\" instance=~\"web-.*\" 2h deploy</code>\n\
/unsilence ID — expire a silence\n\
/report [window] — summary of e.g. 24h, 7d\n\
/status — health, database, rules, notification queues\n\
/heartbeats — cron jobs and backups that must ping: late, missed, failed\n\
/agents — hosts streaming their metrics (watchpost agent): down, disconnected, connected\n\
/help — this text";

/// Splits a message into `(command, addressed bot, args)`; `None` if it is no command.
pub fn split_command(text: &str) -> Option<(String, Option<String>, String)> {
    let text = text.trim_start();
    let rest = text.strip_prefix('/')?;
    let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
    let (head, args) = rest.split_at(end);
    let (name, bot) = match head.split_once('@') {
        Some((n, b)) => (n, Some(b.to_string())),
        None => (head, None),
    };
    if name.is_empty() {
        return None;
    }
    Some((name.to_ascii_lowercase(), bot, args.trim().to_string()))
}

/// Parses a command's arguments; the error is the reply explaining the usage.
pub fn parse(name: &str, args: &str) -> Result<Command, String> {
    match name {
        "alerts" => {
            let severity = match args.trim() {
                "" => None,
                s => {
                    let s = s.to_ascii_lowercase();
                    if !["critical", "warning", "info"].contains(&s.as_str()) {
                        return Err(format!(
                            "unknown severity {s:?}; use critical, warning or info"
                        ));
                    }
                    Some(s)
                }
            };
            Ok(Command::Alerts { severity })
        }
        "alert" => Ok(Command::Alert {
            id: parse_id(args, "/alert ID")?,
        }),
        "ack" => {
            let (id, comment) = first_word(args);
            Ok(Command::Ack {
                id: parse_id(id, "/ack ID [comment]")?,
                comment,
            })
        }
        "silence" => parse_silence(args),
        "unsilence" => {
            let id = args.trim();
            if id.is_empty() || id.contains(char::is_whitespace) {
                return Err("usage: /unsilence ID".into());
            }
            Ok(Command::Unsilence { id: id.to_string() })
        }
        "report" => {
            let window = match args.trim() {
                "" => None,
                w => Some(
                    parse_duration(w, MAX_WINDOW, MAX_WINDOW_TEXT)
                        .map_err(|e| format!("bad window {w:?}: {e}"))?,
                ),
            };
            Ok(Command::Report { window })
        }
        "status" => Ok(Command::Status),
        "heartbeats" => Ok(Command::Heartbeats),
        "agents" => Ok(Command::Agents),
        "help" | "start" => Ok(Command::Help),
        other => Err(format!("unknown command /{other}; see /help")),
    }
}

fn parse_id(s: &str, usage: &str) -> Result<i64, String> {
    let s = s.trim().trim_start_matches('#');
    s.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| format!("usage: {usage} (ID is the alert number)"))
}

fn first_word(s: &str) -> (&str, Option<String>) {
    let s = s.trim();
    match s.split_once(char::is_whitespace) {
        Some((w, rest)) => {
            let rest = rest.trim();
            (w, (!rest.is_empty()).then(|| rest.to_string()))
        }
        None => (s, None),
    }
}

/// A duration greater than 0 and at most `max` (written `max_text` in the error).
fn parse_duration(s: &str, max: Duration, max_text: &str) -> Result<Duration, String> {
    let too_long = || format!("must be at most {max_text}");
    let d = humantime::parse_duration(s).map_err(|e| match e {
        humantime::DurationError::NumberOverflow if !s.contains('.') => too_long(),
        e => e.to_string(),
    })?;
    if d.is_zero() {
        return Err("must be greater than 0".into());
    }
    if d > max {
        return Err(too_long());
    }
    Ok(d)
}

/// Whether a token is meant as a duration: it parses, or only its size is wrong.
fn is_duration(t: &str) -> bool {
    matches!(
        humantime::parse_duration(t),
        Ok(_) | Err(humantime::DurationError::NumberOverflow)
    )
}

/// Byte ranges of whitespace-separated tokens, quotes kept together.
fn tokens(s: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    let mut in_quote = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if start.is_none() {
            if c.is_whitespace() {
                continue;
            }
            start = Some(i);
        }
        if escaped {
            escaped = false;
        } else if c == '\\' && in_quote {
            escaped = true;
        } else if c == '"' {
            in_quote = !in_quote;
        } else if c.is_whitespace() && !in_quote {
            out.push((start.take().unwrap_or(i), i));
        }
    }
    if let Some(st) = start {
        out.push((st, s.len()));
    }
    out
}

fn parse_silence(args: &str) -> Result<Command, String> {
    const USAGE: &str =
        "usage: /silence MATCHERS DURATION [comment], e.g. /silence alertname=\"HighCpu\" 2h";
    // The duration is the first token (after at least one) that is not a matcher.
    let toks = tokens(args);
    let at = toks
        .iter()
        .enumerate()
        .skip(1)
        .find(|(_, (a, b))| {
            let t = &args[*a..*b];
            !t.contains(['=', '~', '"', '{', '}']) && is_duration(t)
        })
        .map(|(i, _)| i)
        .ok_or_else(|| USAGE.to_string())?;
    let (dstart, dend) = toks[at];
    let matchers = Matchers::parse(args[..dstart].trim()).map_err(|e| format!("{e}\n{USAGE}"))?;
    if matchers.0.iter().all(|m| m.matches_value("")) {
        return Err("at least one matcher must not match the empty string (this silence would match every alert)".into());
    }
    let duration = parse_duration(&args[dstart..dend], MAX_SILENCE, MAX_SILENCE_TEXT)
        .map_err(|e| format!("bad duration: {e}\n{USAGE}"))?;
    let comment = args[dend..].trim();
    Ok(Command::Silence {
        matchers: matchers.0,
        duration,
        comment: (!comment.is_empty()).then(|| comment.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_commands() {
        assert_eq!(
            split_command("/ack@watch_bot 12 on it"),
            Some(("ack".into(), Some("watch_bot".into()), "12 on it".into()))
        );
        assert_eq!(
            split_command("/Status"),
            Some(("status".into(), None, "".into()))
        );
        assert_eq!(split_command("hello"), None);
        assert_eq!(split_command("/"), None);
    }

    #[test]
    fn parses_commands() {
        assert_eq!(
            parse("ack", "#12 looking into it").unwrap(),
            Command::Ack {
                id: 12,
                comment: Some("looking into it".into())
            }
        );
        assert!(parse("ack", "x").unwrap_err().contains("usage"));
        assert_eq!(
            parse("alerts", "CRITICAL").unwrap(),
            Command::Alerts {
                severity: Some("critical".into())
            }
        );
        assert!(parse("alerts", "loud").is_err());
        assert_eq!(
            parse("report", "7d").unwrap(),
            Command::Report {
                window: Some(Duration::from_secs(7 * 86400))
            }
        );
        assert!(parse("report", "soon").is_err());
        assert!(parse("frobnicate", "").unwrap_err().contains("/help"));
        assert_eq!(parse("agents", "").unwrap(), Command::Agents);
        assert!(HELP.contains("/agents"));
    }

    #[test]
    fn parses_silences() {
        let Command::Silence {
            matchers,
            duration,
            comment,
        } = parse(
            "silence",
            r#"alertname="High CPU" instance=~"web-.*" 2h30m deploy of v2"#,
        )
        .unwrap()
        else {
            panic!()
        };
        assert_eq!(matchers.len(), 2);
        assert_eq!(matchers[0].value, "High CPU");
        assert_eq!(duration, Duration::from_secs(9000));
        assert_eq!(comment.as_deref(), Some("deploy of v2"));

        let Command::Silence { matchers, .. } =
            parse("silence", r#"{job="node", severity!="info"} 1h"#).unwrap()
        else {
            panic!()
        };
        assert_eq!(matchers.len(), 2);

        assert!(parse("silence", "2h").is_err(), "no matchers");
        assert!(parse("silence", r#"alertname="x""#).is_err(), "no duration");
        assert!(
            parse("silence", r#"alertname=~".*" 1h"#)
                .unwrap_err()
                .contains("every alert")
        );
        assert!(
            parse("silence", r#"alertname=~"(" 1h"#)
                .unwrap_err()
                .contains("regex")
        );
    }

    #[test]
    fn silence_durations_are_bounded() {
        let ok = parse("silence", r#"alertname="x" 10y"#).unwrap();
        assert!(matches!(ok, Command::Silence { duration, .. } if duration == MAX_SILENCE));
        for d in [
            "10y1s",
            "11y",
            "300000y",
            "584542046090y",
            "99999999999999999999y",
        ] {
            let e = parse("silence", &format!(r#"alertname="x" {d} typo"#)).unwrap_err();
            assert!(
                e.starts_with("bad duration: must be at most 10y"),
                "{d}: {e}"
            );
        }
        // Not a matcher, so the usage (and no panic).
        let e = parse("silence", "x 300000y").unwrap_err();
        assert!(e.contains("usage: /silence"), "{e}");
        assert!(parse("silence", r#"alertname="x" 0s"#).is_err());
    }

    #[test]
    fn report_windows_are_bounded() {
        assert_eq!(
            parse("report", "366d").unwrap(),
            Command::Report {
                window: Some(MAX_WINDOW)
            }
        );
        for w in ["367d", "2y", "300000y", "99999999999999999999y"] {
            let e = parse("report", w).unwrap_err();
            assert!(e.contains("must be at most 366d"), "{w}: {e}");
        }
    }

    #[test]
    fn ids_out_of_range_are_usage() {
        for id in ["9223372036854775808", "-9223372036854775808", "0", "1e300"] {
            let e = parse("ack", id).unwrap_err();
            assert!(e.starts_with("usage: /ack"), "{id}: {e}");
            assert!(parse("alert", id).unwrap_err().starts_with("usage: /alert"));
        }
        let max = parse("alert", "9223372036854775807").unwrap();
        assert_eq!(max, Command::Alert { id: i64::MAX });
    }
}
