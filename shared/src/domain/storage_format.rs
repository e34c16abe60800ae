//! Plain text → Confluence storage format (XHTML), for page bodies and
//! footer comments: every character a sender sends is escaped, blank lines
//! make paragraphs and single newlines line breaks. Nothing a sender writes
//! can become markup.

pub fn to_storage(text: &str) -> String {
    let paragraphs: Vec<String> = text
        .split("\n\n")
        .map(|p| p.trim_matches('\n'))
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let lines: Vec<String> = p.lines().map(escape).collect();
            format!("<p>{}</p>", lines.join("<br/>"))
        })
        .collect();
    if paragraphs.is_empty() {
        "<p></p>".into()
    } else {
        paragraphs.concat()
    }
}

/// The anchor that marks a page or comment as one tollgate step's work:
/// set in the create call itself, invisible when the page is read
/// (Confluence's anchor macro renders nothing), and kept by Confluence's
/// normalisation of storage markup, so a lost answer is reconciled by it
/// rather than by a title or body someone else may share.
pub fn anchor(marker: &str) -> String {
    format!(
        "<ac:structured-macro ac:name=\"anchor\"><ac:parameter ac:name=\"\">{}</ac:parameter></ac:structured-macro>",
        anchor_name(marker)
    )
}

/// The anchor's name: `tollgate-` and the marker, in characters that
/// survive as an anchor name.
pub fn anchor_name(marker: &str) -> String {
    let safe: String = marker
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("tollgate-{safe}")
}

/// `body` with the marker's anchor appended.
pub fn marked(body: &str, marker: &str) -> String {
    format!("{body}{}", anchor(marker))
}

/// Whether a stored body (as Confluence answers it, normalised) carries the
/// marker's anchor.
pub fn carries(body: &str, marker: &str) -> bool {
    let name = anchor_name(marker);
    body.contains(&format!(">{name}<"))
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_text_stays_text() {
        assert_eq!(
            to_storage("<script>alert('x')</script> & \"more\""),
            "<p>&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;more&quot;</p>"
        );
    }

    #[test]
    fn blank_lines_make_paragraphs_and_newlines_breaks() {
        assert_eq!(
            to_storage("first\nline two\n\nsecond"),
            "<p>first<br/>line two</p><p>second</p>"
        );
        assert_eq!(to_storage(""), "<p></p>");
    }

    #[test]
    fn a_marked_body_carries_its_marker_and_no_other() {
        let body = marked(&to_storage("line one\nline two"), "0193abcd:0");
        assert!(carries(&body, "0193abcd:0"));
        assert!(!carries(&body, "0193abcd:1"));
        assert!(!carries(&body, "0193abcd"), "a prefix is another marker");
        // Text a sender writes cannot forge the anchor: it is escaped.
        let forged = to_storage(&anchor("0193abcd:0"));
        assert!(!carries(&forged, "0193abcd:0"));
    }
}
