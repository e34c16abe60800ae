//! The Confluence part of a site (`/wiki/api/v2`): pages and their footer
//! comments, with Confluence's rules that matter to a client — a title is
//! unique in its space (a second create is refused with 400), unknown pages
//! are 404, bodies are storage format — and stored normalised, as
//! Confluence does (line breaks between elements dropped, `<br/>` written
//! `<br />`), so a client cannot find its comment by comparing the body it
//! sent. Footer comments are listed a page at a time with a cursor.

use super::store::SimError;
use serde_json::{Value, json};
use std::collections::BTreeMap;

pub struct Page {
    pub id: u64,
    pub space_id: String,
    pub title: String,
    pub parent_id: Option<String>,
    pub body: String,
    pub comments: Vec<(u64, String)>,
}

#[derive(Default)]
pub struct Pages {
    pages: Vec<Page>,
    next_id: u64,
}

fn storage_value(body: &Value) -> Result<String, SimError> {
    if body["representation"] != "storage" {
        return Err(SimError::Message(
            "body.representation must be storage".into(),
        ));
    }
    body["value"]
        .as_str()
        .map(normalise)
        .ok_or_else(|| SimError::Message("body.value is required".into()))
}

/// Storage markup as Confluence keeps it.
fn normalise(value: &str) -> String {
    value.replace(">\n<", "><").replace("<br/>", "<br />")
}

/// Most footer comments one list call answers.
const COMMENT_PAGE_MAX: usize = 250;

fn numeric(v: &Value) -> Option<String> {
    v.as_str()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .map(str::to_string)
}

impl Pages {
    pub fn create(&mut self, body: &Value) -> Result<Value, SimError> {
        let space_id = numeric(&body["spaceId"])
            .ok_or_else(|| SimError::Message("spaceId is required".into()))?;
        let title = body["title"]
            .as_str()
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| SimError::Message("title is required".into()))?
            .to_string();
        let content = storage_value(&body["body"])?;
        let parent_id = match body.get("parentId") {
            None | Some(Value::Null) => None,
            Some(p) => {
                let id = numeric(p).ok_or(SimError::NotFound)?;
                if !self.pages.iter().any(|pg| pg.id.to_string() == id) {
                    return Err(SimError::NotFound);
                }
                Some(id)
            }
        };
        if self
            .pages
            .iter()
            .any(|p| p.space_id == space_id && p.title == title)
        {
            return Err(SimError::Message(
                "A page with this title already exists: A page already exists with the same TITLE in this space".into(),
            ));
        }
        self.next_id += 1;
        let id = 3_000_000 + self.next_id;
        self.pages.push(Page {
            id,
            space_id: space_id.clone(),
            title: title.clone(),
            parent_id: parent_id.clone(),
            body: content,
            comments: Vec::new(),
        });
        Ok(
            json!({"id": id.to_string(), "status": "current", "title": title,
                  "spaceId": space_id, "parentId": parent_id}),
        )
    }

    pub fn find(&self, space_id: Option<&str>, title: Option<&str>, with_body: bool) -> Value {
        let results: Vec<Value> = self
            .pages
            .iter()
            .filter(|p| space_id.is_none_or(|s| p.space_id == s))
            .filter(|p| title.is_none_or(|t| p.title == t))
            .map(|p| {
                let mut v = json!({"id": p.id.to_string(), "title": p.title, "spaceId": p.space_id, "status": "current"});
                if with_body {
                    v["body"] = json!({"storage": {"representation": "storage", "value": p.body}});
                }
                v
            })
            .collect();
        json!({ "results": results, "_links": {} })
    }

    fn page_mut(&mut self, id: &str) -> Result<&mut Page, SimError> {
        self.pages
            .iter_mut()
            .find(|p| p.id.to_string() == id)
            .ok_or(SimError::NotFound)
    }

    pub fn add_comment(&mut self, body: &Value) -> Result<Value, SimError> {
        let page_id = numeric(&body["pageId"]).ok_or(SimError::NotFound)?;
        let content = storage_value(&body["body"])?;
        self.next_id += 1;
        let id = 4_000_000 + self.next_id;
        let page = self.page_mut(&page_id)?;
        page.comments.push((id, content));
        Ok(json!({"id": id.to_string(), "pageId": page_id, "status": "current"}))
    }

    /// One page of a page's footer comments, oldest first, from `cursor`
    /// (an opaque position); `_links.next` names the next page.
    pub fn comments(
        &mut self,
        page_id: &str,
        cursor: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Value, SimError> {
        let page = self.page_mut(page_id)?;
        let from: usize = match cursor {
            None => 0,
            Some(c) => c
                .parse()
                .map_err(|_| SimError::Message("cursor is not valid".into()))?,
        };
        let limit = limit.unwrap_or(25).clamp(1, COMMENT_PAGE_MAX);
        let results: Vec<Value> = page
            .comments
            .iter()
            .skip(from)
            .take(limit)
            .map(|(id, body)| {
                json!({"id": id.to_string(), "pageId": page_id,
                       "body": {"storage": {"representation": "storage", "value": body}}})
            })
            .collect();
        let mut links = json!({});
        if from + limit < page.comments.len() {
            links["next"] = json!(format!(
                "/wiki/api/v2/pages/{page_id}/footer-comments?body-format=storage&limit={limit}&cursor={}",
                from + limit
            ));
        }
        Ok(json!({ "results": results, "_links": links }))
    }

    /// Pages with their comments as a reader sees them (anchors render
    /// nothing: they are listed apart, as `markers`), and comments posted
    /// twice — two carrying one tollgate anchor on one page — (the
    /// duplicates a client must not make).
    pub fn report(&self) -> (Value, usize) {
        let mut duplicates = 0;
        let pages: Vec<Value> = self
            .pages
            .iter()
            .map(|p| {
                let mut seen: BTreeMap<String, usize> = BTreeMap::new();
                let mut comments = Vec::new();
                for (_, body) in &p.comments {
                    let (visible, anchors) = split_anchors(body);
                    for a in anchors.into_iter().filter(|a| a.starts_with("tollgate-")) {
                        *seen.entry(a).or_default() += 1;
                    }
                    comments.push(visible);
                }
                duplicates += seen.values().map(|n| n - 1).sum::<usize>();
                let (body, markers) = split_anchors(&p.body);
                json!({"id": p.id.to_string(), "spaceId": p.space_id, "title": p.title,
                       "parentId": p.parent_id, "body": body, "markers": markers,
                       "comments": comments})
            })
            .collect();
        (json!(pages), duplicates)
    }
}

const ANCHOR_OPEN: &str = "<ac:structured-macro ac:name=\"anchor\"><ac:parameter ac:name=\"\">";
const ANCHOR_CLOSE: &str = "</ac:parameter></ac:structured-macro>";

/// A storage body without its anchor macros, and the anchors' names.
fn split_anchors(body: &str) -> (String, Vec<String>) {
    let mut visible = String::with_capacity(body.len());
    let mut anchors = Vec::new();
    let mut rest = body;
    while let Some(i) = rest.find(ANCHOR_OPEN) {
        visible.push_str(&rest[..i]);
        let after = &rest[i + ANCHOR_OPEN.len()..];
        match after.find(ANCHOR_CLOSE) {
            Some(j) => {
                anchors.push(after[..j].to_string());
                rest = &after[j + ANCHOR_CLOSE.len()..];
            }
            None => {
                visible.push_str(&rest[i..]);
                rest = "";
            }
        }
    }
    visible.push_str(rest);
    (visible, anchors)
}
