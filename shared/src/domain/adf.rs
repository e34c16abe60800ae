//! Plain text to Atlassian Document Format, which Jira Cloud's v3 API
//! requires for descriptions and comments. Blank lines split paragraphs,
//! single newlines become hard breaks. Text is carried in JSON strings, so
//! nothing a sender writes can become markup.

use serde_json::{Value, json};

pub fn to_adf(text: &str) -> Value {
    let normalized = text.replace("\r\n", "\n");
    let paragraphs: Vec<Value> = normalized
        .split("\n\n")
        .filter(|p| !p.trim().is_empty())
        .map(paragraph)
        .collect();
    json!({ "type": "doc", "version": 1, "content": paragraphs })
}

fn paragraph(text: &str) -> Value {
    let mut content = Vec::new();
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            content.push(json!({ "type": "hardBreak" }));
        }
        if !line.is_empty() {
            content.push(json!({ "type": "text", "text": line }));
        }
    }
    json!({ "type": "paragraph", "content": content })
}

/// The plain text back out of an ADF document (for the simulator's report
/// and for comparing a comment that may already have been posted).
pub fn to_plain_text(doc: &Value) -> String {
    let mut paragraphs = Vec::new();
    for p in doc["content"].as_array().into_iter().flatten() {
        let mut s = String::new();
        for node in p["content"].as_array().into_iter().flatten() {
            match node["type"].as_str() {
                Some("text") => s.push_str(node["text"].as_str().unwrap_or_default()),
                Some("hardBreak") => s.push('\n'),
                _ => {}
            }
        }
        paragraphs.push(s);
    }
    paragraphs.join("\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_become_hard_breaks_and_blank_lines_paragraphs() {
        let doc = to_adf("a\nb\n\nc");
        assert_eq!(doc["content"].as_array().unwrap().len(), 2);
        assert_eq!(doc["content"][0]["content"][1]["type"], "hardBreak");
        assert_eq!(to_plain_text(&doc), "a\nb\n\nc");
    }

    #[test]
    fn markup_in_text_stays_text() {
        let doc = to_adf("<b>{\"type\":\"mention\"}</b>");
        assert_eq!(
            doc["content"][0]["content"][0]["text"],
            "<b>{\"type\":\"mention\"}</b>"
        );
    }
}
