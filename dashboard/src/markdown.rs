//! A small Markdown renderer for the server's reports: ATX headings, paragraphs, bullet
//! and numbered lists (nested by indentation), GitHub pipe tables, fenced code blocks,
//! block quotes, rules, and inline `code`, **strong**, *emphasis*, ~~strike~~ and
//! [links](https://…).
//!
//! Safe by construction: every piece of source text is HTML-escaped before it is
//! wrapped in tags, raw HTML is shown as text, and links other than http(s), relative
//! or fragment links are dropped. (A full CommonMark crate cost about 40 KB gzipped of
//! WASM for reports we generate ourselves; see docs/dashboard.md.)

/// Markdown to sanitized HTML.
pub fn to_safe_html(markdown: &str) -> String {
    let lines: Vec<&str> = markdown.lines().collect();
    let mut out = String::with_capacity(markdown.len() * 3 / 2);
    let mut i = 0;
    while i < lines.len() {
        i = block(&lines, i, &mut out);
    }
    out
}

/// Renders the block starting at line `i`; returns the next line to look at.
fn block(lines: &[&str], i: usize, out: &mut String) -> usize {
    let line = lines[i];
    let t = line.trim();
    if t.is_empty() {
        return i + 1;
    }
    if let Some(fence) = t
        .strip_prefix("```")
        .map(|_| "```")
        .or(t.strip_prefix("~~~").map(|_| "~~~"))
    {
        let mut j = i + 1;
        out.push_str("<pre><code>");
        while j < lines.len() && !lines[j].trim_start().starts_with(fence) {
            escape_into(lines[j], out);
            out.push('\n');
            j += 1;
        }
        out.push_str("</code></pre>\n");
        return (j + 1).min(lines.len());
    }
    if let Some(level) = heading_level(t) {
        let text = t[level..].trim().trim_end_matches('#').trim_end();
        out.push_str(&format!("<h{level}>"));
        inline(text, out);
        out.push_str(&format!("</h{level}>\n"));
        return i + 1;
    }
    if is_rule(t) {
        out.push_str("<hr>\n");
        return i + 1;
    }
    if t.starts_with('>') {
        let mut j = i;
        let mut inner = Vec::new();
        while j < lines.len() && lines[j].trim_start().starts_with('>') {
            let l = lines[j].trim_start()[1..]
                .strip_prefix(' ')
                .unwrap_or(&lines[j].trim_start()[1..]);
            inner.push(l);
            j += 1;
        }
        out.push_str("<blockquote>\n");
        let mut k = 0;
        while k < inner.len() {
            k = block(&inner, k, out);
        }
        out.push_str("</blockquote>\n");
        return j;
    }
    if t.starts_with('|')
        && lines
            .get(i + 1)
            .is_some_and(|l| is_table_separator(l.trim()))
    {
        return table(lines, i, out);
    }
    if list_marker(line).is_some() {
        return list(lines, i, indent_of(line), out);
    }
    // Paragraph: until a blank line or the start of another block.
    let mut j = i;
    let mut text = String::new();
    while j < lines.len() {
        let l = lines[j].trim();
        if l.is_empty()
            || (j > i
                && (heading_level(l).is_some()
                    || l.starts_with("```")
                    || l.starts_with('>')
                    || list_marker(lines[j]).is_some()
                    || (l.starts_with('|')
                        && lines
                            .get(j + 1)
                            .is_some_and(|n| is_table_separator(n.trim())))))
        {
            break;
        }
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(l);
        j += 1;
    }
    out.push_str("<p>");
    inline(&text, out);
    out.push_str("</p>\n");
    j
}

fn heading_level(t: &str) -> Option<usize> {
    let n = t.bytes().take_while(|b| *b == b'#').count();
    ((1..=6).contains(&n) && (t.len() == n || t.as_bytes()[n] == b' ')).then_some(n)
}

fn is_rule(t: &str) -> bool {
    let c: String = t.chars().filter(|c| !c.is_whitespace()).collect();
    c.len() >= 3
        && ["-", "*", "_"]
            .iter()
            .any(|m| c.chars().all(|x| x.to_string() == *m))
}

fn indent_of(line: &str) -> usize {
    line.chars().take_while(|c| *c == ' ').count()
        + 4 * line.chars().take_while(|c| *c == '\t').count()
}

/// `(ordered, text after the marker)` when `line` is a list item.
fn list_marker(line: &str) -> Option<(bool, &str)> {
    let t = line.trim_start();
    for m in ["- ", "* ", "+ "] {
        if let Some(rest) = t.strip_prefix(m) {
            return Some((false, rest));
        }
    }
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    if (1..=9).contains(&digits) {
        let rest = &t[digits..];
        if let Some(r) = rest.strip_prefix(". ").or_else(|| rest.strip_prefix(") ")) {
            return Some((true, r));
        }
    }
    None
}

fn list(lines: &[&str], start: usize, indent: usize, out: &mut String) -> usize {
    let ordered = list_marker(lines[start]).is_some_and(|m| m.0);
    out.push_str(if ordered { "<ol>\n" } else { "<ul>\n" });
    let mut i = start;
    while i < lines.len() {
        let line = lines[i];
        let Some((o, text)) = list_marker(line) else {
            break;
        };
        let ind = indent_of(line);
        if ind < indent || (ind == indent && o != ordered) {
            break;
        }
        out.push_str("<li>");
        inline(text.trim(), out);
        i += 1;
        // Continuation lines and nested lists.
        while i < lines.len() {
            let next = lines[i];
            if next.trim().is_empty() {
                // A blank line ends the list unless an indented item follows.
                if lines
                    .get(i + 1)
                    .is_some_and(|n| list_marker(n).is_some() && indent_of(n) >= indent)
                {
                    i += 1;
                    continue;
                }
                break;
            }
            match list_marker(next) {
                Some(_) if indent_of(next) > indent => {
                    out.push('\n');
                    i = list(lines, i, indent_of(next), out);
                }
                Some(_) => break,
                None if indent_of(next) > indent => {
                    out.push(' ');
                    inline(next.trim(), out);
                    i += 1;
                }
                None => break,
            }
        }
        out.push_str("</li>\n");
        if lines.get(i).is_none_or(|l| l.trim().is_empty()) {
            break;
        }
    }
    out.push_str(if ordered { "</ol>\n" } else { "</ul>\n" });
    i
}

fn is_table_separator(t: &str) -> bool {
    t.contains('-') && t.chars().all(|c| matches!(c, '|' | '-' | ':' | ' ')) && t.contains('|')
}

fn cells(line: &str) -> Vec<&str> {
    let t = line.trim();
    let t = t.strip_prefix('|').unwrap_or(t);
    let t = t.strip_suffix('|').unwrap_or(t);
    t.split('|').map(str::trim).collect()
}

fn table(lines: &[&str], start: usize, out: &mut String) -> usize {
    let aligns: Vec<&str> = cells(lines[start + 1])
        .iter()
        .map(|c| match (c.starts_with(':'), c.ends_with(':')) {
            (true, true) => " style=\"text-align:center\"",
            (false, true) => " style=\"text-align:right\"",
            _ => "",
        })
        .collect();
    out.push_str("<table>\n<thead><tr>");
    for (k, c) in cells(lines[start]).iter().enumerate() {
        out.push_str(&format!("<th{}>", aligns.get(k).copied().unwrap_or("")));
        inline(c, out);
        out.push_str("</th>");
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    let mut i = start + 2;
    while i < lines.len() && lines[i].trim().starts_with('|') {
        out.push_str("<tr>");
        for (k, c) in cells(lines[i]).iter().enumerate() {
            out.push_str(&format!("<td{}>", aligns.get(k).copied().unwrap_or("")));
            inline(c, out);
            out.push_str("</td>");
        }
        out.push_str("</tr>\n");
        i += 1;
    }
    out.push_str("</tbody>\n</table>\n");
    i
}

/// Inline markup of one block's text.
fn inline(text: &str, out: &mut String) {
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    let mut buf = String::new();
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\\' if i + 1 < chars.len() && chars[i + 1].is_ascii_punctuation() => {
                buf.push(chars[i + 1]);
                i += 2;
            }
            '\n' => {
                buf.push(' ');
                i += 1;
            }
            '`' => match find(&chars, i + 1, &['`']) {
                Some(end) => {
                    flush(&mut buf, out);
                    out.push_str("<code>");
                    escape_into(&chars[i + 1..end].iter().collect::<String>(), out);
                    out.push_str("</code>");
                    i = end + 1;
                }
                None => {
                    buf.push(c);
                    i += 1;
                }
            },
            '*' | '_' | '~' if i + 1 < chars.len() && chars[i + 1] == c => {
                let tag = if c == '~' { "del" } else { "strong" };
                match find(&chars, i + 2, &[c, c]) {
                    Some(end) if end > i + 2 => {
                        flush(&mut buf, out);
                        out.push_str(&format!("<{tag}>"));
                        inline(&chars[i + 2..end].iter().collect::<String>(), out);
                        out.push_str(&format!("</{tag}>"));
                        i = end + 2;
                    }
                    _ => {
                        buf.push(c);
                        buf.push(c);
                        i += 2;
                    }
                }
            }
            '*' | '_'
                if i + 1 < chars.len()
                    && !chars[i + 1].is_whitespace()
                    && (c == '*' || i == 0 || !chars[i - 1].is_alphanumeric()) =>
            {
                match find(&chars, i + 1, &[c]) {
                    Some(end) if end > i + 1 && !chars[end - 1].is_whitespace() => {
                        flush(&mut buf, out);
                        out.push_str("<em>");
                        inline(&chars[i + 1..end].iter().collect::<String>(), out);
                        out.push_str("</em>");
                        i = end + 1;
                    }
                    _ => {
                        buf.push(c);
                        i += 1;
                    }
                }
            }
            '[' => match link_at(&chars, i) {
                Some((label, url, end)) => {
                    flush(&mut buf, out);
                    if safe_url(&url) {
                        out.push_str("<a href=\"");
                        escape_into(&url, out);
                        out.push_str("\">");
                        inline(&label, out);
                        out.push_str("</a>");
                    } else {
                        inline(&label, out);
                    }
                    i = end;
                }
                None => {
                    buf.push(c);
                    i += 1;
                }
            },
            _ => {
                buf.push(c);
                i += 1;
            }
        }
    }
    flush(&mut buf, out);
}

/// Index of the next occurrence of `pat` at or after `from`.
fn find(chars: &[char], from: usize, pat: &[char]) -> Option<usize> {
    (from..chars.len().saturating_sub(pat.len() - 1)).find(|&k| chars[k..k + pat.len()] == *pat)
}

/// `[label](url)` starting at `i`: (label, url, index after it).
fn link_at(chars: &[char], i: usize) -> Option<(String, String, usize)> {
    let close = find(chars, i + 1, &[']'])?;
    if chars.get(close + 1) != Some(&'(') {
        return None;
    }
    let end = find(chars, close + 2, &[')'])?;
    let label: String = chars[i + 1..close].iter().collect();
    let url: String = chars[close + 2..end].iter().collect();
    Some((label, url.trim().to_string(), end + 1))
}

fn flush(buf: &mut String, out: &mut String) {
    escape_into(buf, out);
    buf.clear();
}

fn escape_into(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
}

fn safe_url(url: &str) -> bool {
    let lower = url.trim().to_ascii_lowercase();
    lower.starts_with("http://")
        || lower.starts_with("https://")
        || lower.starts_with('/')
        || lower.starts_with('#')
        || !lower.contains(':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_headings_tables_and_lists() {
        let h = to_safe_html(
            "# Report\n\nAlerts in **24h**: 12\n\n| a | b |\n|---|--:|\n| 1 | 2 |\n\n- **x**\n- `y`\n  - nested\n\n1. one\n2. two\n",
        );
        assert!(h.contains("<h1>Report</h1>"), "{h}");
        assert!(
            h.contains("<p>Alerts in <strong>24h</strong>: 12</p>"),
            "{h}"
        );
        assert!(h.contains("<table>") && h.contains("<td>1</td>"), "{h}");
        assert!(h.contains("<td style=\"text-align:right\">2</td>"), "{h}");
        assert!(h.contains("<li><strong>x</strong></li>"), "{h}");
        assert!(h.contains("<code>y</code>"), "{h}");
        assert!(h.contains("<ul>\n<li>nested</li>"), "{h}");
        assert!(h.contains("<ol>\n<li>one</li>\n<li>two</li>\n</ol>"), "{h}");
    }

    #[test]
    fn inline_markup() {
        assert_eq!(
            to_safe_html("*em* _em_ ~~del~~ snake_case_name 2*3*4"),
            "<p><em>em</em> <em>em</em> <del>del</del> snake_case_name 2<em>3</em>4</p>\n"
        );
        assert_eq!(to_safe_html("\\*not em\\*"), "<p>*not em*</p>\n");
        assert_eq!(
            to_safe_html("a `<b>` c"),
            "<p>a <code>&lt;b&gt;</code> c</p>\n"
        );
        assert_eq!(to_safe_html("unclosed **bold"), "<p>unclosed **bold</p>\n");
    }

    #[test]
    fn blocks() {
        let h = to_safe_html(
            "```\nfn x() {}\n<b>\n```\n> quoted\n> more\n\n---\n## Sub ##\ntext\nmore text",
        );
        assert!(
            h.contains("<pre><code>fn x() {}\n&lt;b&gt;\n</code></pre>"),
            "{h}"
        );
        assert!(
            h.contains("<blockquote>\n<p>quoted\nmore</p>\n</blockquote>")
                || h.contains("<blockquote>\n<p>quoted more</p>"),
            "{h}"
        );
        assert!(h.contains("<hr>"), "{h}");
        assert!(h.contains("<h2>Sub</h2>\n<p>text more text</p>"), "{h}");
    }

    #[test]
    fn raw_html_and_script_links_are_neutralised() {
        let h = to_safe_html(
            "<script>alert(1)</script>\n\nhi <img src=x onerror=alert(1)>\n\n[x](javascript:alert(1)) [ok](https://example.com/a?b=1&c=\"2\")",
        );
        assert!(!h.contains("<script"), "{h}");
        assert!(!h.contains("<img"), "{h}");
        assert!(h.contains("&lt;script&gt;"), "{h}");
        assert!(!h.contains("javascript:"), "{h}");
        assert!(
            h.contains("<a href=\"https://example.com/a?b=1&amp;c=&quot;2&quot;\">ok</a>"),
            "{h}"
        );
    }
}
