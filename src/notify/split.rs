//! Splitting Telegram HTML messages over the 4,096-character limit into numbered parts
//! `(1/3)`, at line boundaries, never inside a tag or an entity, with formatting that
//! spans a cut closed at the end of one part and reopened at the start of the next.

/// Telegram's limit is 4,096 characters after entity parsing; we measure the raw HTML
/// in UTF-16 code units (always at least the parsed length) and keep a margin.
pub const TELEGRAM_LIMIT: usize = 4000;
/// Room kept for the `(k/n) ` prefix.
const NUMBER_RESERVE: usize = 12;

/// Length as Telegram counts it (UTF-16 code units).
pub fn tg_len(s: &str) -> usize {
    s.encode_utf16().count()
}

/// An open tag: its name and its full opening text (e.g. `<a href="…">`).
#[derive(Debug, Clone, PartialEq)]
struct Open {
    name: String,
    text: String,
}

/// Applies the tags of `piece` to the stack of open tags.
fn scan_tags(piece: &str, stack: &mut Vec<Open>) {
    let mut rest = piece;
    while let Some(start) = rest.find('<') {
        let Some(end) = rest[start..].find('>') else {
            break;
        };
        let tag = &rest[start..start + end + 1];
        rest = &rest[start + end + 1..];
        let inner = tag[1..tag.len() - 1].trim();
        if let Some(name) = inner.strip_prefix('/') {
            let name = name.trim().to_ascii_lowercase();
            if let Some(pos) = stack.iter().rposition(|o| o.name == name) {
                stack.truncate(pos);
            }
        } else if !inner.ends_with('/') {
            let name: String = inner
                .chars()
                .take_while(|c| !c.is_whitespace())
                .collect::<String>()
                .to_ascii_lowercase();
            stack.push(Open {
                name,
                text: tag.to_string(),
            });
        }
    }
}

fn closing(stack: &[Open]) -> String {
    stack
        .iter()
        .rev()
        .map(|o| format!("</{}>", o.name))
        .collect()
}

fn opening(stack: &[Open]) -> String {
    stack.iter().map(|o| o.text.as_str()).collect()
}

/// Cuts one over-long line into pieces of at most `max` units, never inside a tag or an
/// entity, preferring whitespace in the second half of a piece. One pass.
fn cut_line(line: &str, max: usize) -> Vec<&str> {
    if tg_len(line) <= max {
        return vec![line];
    }
    let mut pieces = Vec::new();
    let mut start = 0; // byte offset of the current piece
    let mut len = 0; // its length in UTF-16 units so far
    let mut last_safe: Option<(usize, usize)> = None; // (byte offset, length before it)
    let mut last_ws: Option<(usize, usize)> = None;
    let mut in_tag = false;
    let mut in_entity = false;
    for (i, c) in line.char_indices() {
        if i > start && !in_tag && !in_entity {
            last_safe = Some((i, len));
            if c.is_whitespace() && len > max / 2 {
                last_ws = Some((i, len));
            }
        }
        let w = c.len_utf16();
        // (Without a safe point, a single tag longer than the limit stays whole.)
        if len + w > max
            && let Some((cut, cut_len)) = last_ws.or(last_safe)
        {
            pieces.push(&line[start..cut]);
            start = cut;
            len -= cut_len;
            last_safe = None;
            last_ws = None;
        }
        len += w;
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            '&' if !in_tag => in_entity = true,
            ';' if in_entity => in_entity = false,
            c if in_entity && c.is_whitespace() => in_entity = false,
            _ => {}
        }
    }
    pieces.push(&line[start..]);
    pieces
}

/// Splits `html` into parts of at most `limit` UTF-16 units each, numbered `(k/n)` when
/// there is more than one. Short messages come back unchanged.
pub fn split_html(html: &str, limit: usize) -> Vec<String> {
    split_parts(html, limit, limit)
}

/// Telegram's limit of a photo caption (after entity parsing).
pub const CAPTION_LIMIT: usize = 1024;

/// Splits `html` as [`split_html`] does, but the first part (a photo's caption) holds at
/// most `first` units and the others at most `limit`.
pub fn split_caption(html: &str, first: usize, limit: usize) -> Vec<String> {
    split_parts(html, first, limit)
}

fn split_parts(html: &str, first: usize, limit: usize) -> Vec<String> {
    if tg_len(html) <= first {
        return vec![html.to_string()];
    }
    let budget_of = |part: usize| (if part == 0 { first } else { limit }) - NUMBER_RESERVE;
    let piece_max = budget_of(0).min(budget_of(1)) / 2;
    // (piece, starts a new line)
    let mut pieces: Vec<(&str, bool)> = Vec::new();
    for line in html.split('\n') {
        for (i, p) in cut_line(line, piece_max).into_iter().enumerate() {
            pieces.push((p, i == 0));
        }
    }

    let mut parts: Vec<String> = Vec::new();
    let mut stack: Vec<Open> = Vec::new();
    let mut current = String::new();
    let mut current_has_content = false;
    for (piece, new_line) in pieces {
        let mut after = stack.clone();
        scan_tags(piece, &mut after);
        let sep = if current_has_content && new_line {
            "\n"
        } else {
            ""
        };
        let candidate_len =
            tg_len(&current) + tg_len(sep) + tg_len(piece) + tg_len(&closing(&after));
        if current_has_content && candidate_len > budget_of(parts.len()) {
            current.push_str(&closing(&stack));
            parts.push(std::mem::take(&mut current));
            current.push_str(&opening(&stack));
            current.push_str(piece);
        } else {
            current.push_str(sep);
            current.push_str(piece);
        }
        current_has_content = true;
        stack = after;
    }
    current.push_str(&closing(&stack));
    parts.push(current);
    // Drop parts that are only whitespace after a trailing newline.
    parts.retain(|p| !strip_tags(p).trim().is_empty());
    let n = parts.len();
    if n == 1 {
        return parts;
    }
    parts
        .into_iter()
        .enumerate()
        .map(|(i, p)| format!("({}/{n}) {}", i + 1, p.trim_start_matches('\n')))
        .collect()
}

/// The text without tags, entities decoded: the plain-text fallback when Telegram
/// rejects the HTML.
pub fn strip_tags(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Checks a part is well-formed Telegram HTML: balanced tags, whole entities.
    pub(crate) fn assert_valid_html(part: &str) {
        let mut stack: Vec<String> = Vec::new();
        let mut rest = part;
        while let Some(start) = rest.find(['<', '&']) {
            if rest[start..].starts_with('&') {
                let end = rest[start..]
                    .find(';')
                    .unwrap_or_else(|| panic!("entity cut in {rest:?}"));
                let ent = &rest[start..start + end + 1];
                assert!(
                    ["&amp;", "&lt;", "&gt;", "&quot;", "&#39;"].contains(&ent),
                    "bad entity {ent:?}"
                );
                rest = &rest[start + end + 1..];
                continue;
            }
            let end = rest[start..]
                .find('>')
                .unwrap_or_else(|| panic!("tag cut in {rest:?}"));
            let tag = &rest[start + 1..start + end];
            assert!(!tag.contains('<'), "tag cut: {tag:?}");
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(stack.pop().as_deref(), Some(name), "unbalanced in {part:?}");
            } else {
                stack.push(tag.split_whitespace().next().unwrap().to_string());
            }
            rest = &rest[start + end + 1..];
        }
        assert!(stack.is_empty(), "unclosed {stack:?}");
    }

    #[test]
    fn short_messages_are_untouched() {
        assert_eq!(split_html("<b>hi</b>", 4000), vec!["<b>hi</b>"]);
    }

    #[test]
    fn splits_at_lines_numbers_parts_and_keeps_tags_balanced() {
        let mut html = String::from("<b>Title</b>\n<blockquote>");
        for i in 0..400 {
            html.push_str(&format!("line {i} with <code>a &amp; b</code> &lt;x&gt;\n"));
        }
        html.push_str("</blockquote>\nend");
        let parts = split_html(&html, 1000);
        assert!(parts.len() > 10);
        let n = parts.len();
        for (i, p) in parts.iter().enumerate() {
            assert!(tg_len(p) <= 1000, "part {i} is {}", tg_len(p));
            assert!(p.starts_with(&format!("({}/{n}) ", i + 1)), "{p:.40}");
            assert_valid_html(p);
        }
        // Nothing lost: every line appears once.
        let all: String = parts.iter().map(|p| strip_tags(p)).collect();
        for i in 0..400 {
            assert_eq!(
                all.matches(&format!("line {i} with")).count(),
                1,
                "line {i}"
            );
        }
    }

    #[test]
    fn long_lines_are_cut_outside_tags_and_entities() {
        let mut html = String::new();
        for i in 0..3000 {
            html.push_str(&format!("<i>w{i}</i>&amp;"));
        }
        let parts = split_html(&html, 2000);
        assert!(parts.len() > 2);
        for p in &parts {
            assert!(tg_len(p) <= 2000);
            assert_valid_html(p);
        }
    }

    #[test]
    fn ten_thousand_character_message() {
        let line = "🔴 <b>critical</b> · instance=<code>web-01:9100</code> &amp; more &lt;text&gt;";
        let mut html = String::from("<b>FIRING · 200 alerts</b>\n");
        while tg_len(&html) < 10_000 {
            html.push_str(line);
            html.push('\n');
        }
        let parts = split_html(&html, TELEGRAM_LIMIT);
        assert!(parts.len() >= 3, "{}", parts.len());
        for p in &parts {
            assert!(tg_len(p) < 4096);
            assert_valid_html(p);
        }
    }

    #[test]
    fn a_caption_part_first_then_full_parts() {
        let mut html = String::from("<b>Title</b>\n<blockquote>");
        for i in 0..150 {
            html.push_str(&format!("line {i} with <code>a &amp; b</code>\n"));
        }
        html.push_str("</blockquote>");
        let parts = split_caption(&html, CAPTION_LIMIT, TELEGRAM_LIMIT);
        assert!(parts.len() >= 2, "{}", parts.len());
        assert!(tg_len(&parts[0]) <= CAPTION_LIMIT);
        assert!(
            tg_len(&parts[1]) > CAPTION_LIMIT,
            "the rest is not cut to the caption's size"
        );
        for p in &parts {
            assert!(tg_len(p) <= TELEGRAM_LIMIT);
            assert_valid_html(p);
        }
        assert_eq!(
            split_caption("<b>x</b>", CAPTION_LIMIT, TELEGRAM_LIMIT),
            vec!["<b>x</b>"]
        );
    }

    #[test]
    fn strip_tags_decodes() {
        assert_eq!(strip_tags("<b>a &amp; &lt;b&gt;</b>"), "a & <b>");
    }
}
