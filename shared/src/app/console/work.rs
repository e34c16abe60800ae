//! The console's pages of work — jobs (a filterable list; one job with its
//! trail as a timeline), approvals, the manual queue, batches, senders.
//! Their forms post to [`super::actions`].

use super::layout::{Frame, action_form, page, state_badge};
use super::{Console, Fields, percent_encode};
use super::{ConsoleQueue, ConsoleStore};
use crate::app::AppError;
use crate::app::admission::chunk_of;
use crate::app::api::JOB_FIELDS;
use crate::app::approval_page::escape;
use crate::app::batches::view_batch;
use crate::app::jobs::get_job;
use crate::app::operator_api::{approval_status, rejection_json};
use crate::app::stats::read_stats;
use crate::domain::job::JobState;
use crate::domain::rejection::RejectionId;
use crate::ports::{Clock, Notifier};
use serde_json::Value;
use std::fmt::Write;

const LIST: usize = 100;

/// The jobs page's time filter: its value, its words, its reach in ms.
const SINCE: [(&str, &str, i64); 4] = [
    ("15m", "in the last 15 minutes", 15 * 60_000),
    ("1h", "in the last hour", 3_600_000),
    ("24h", "in the last 24 hours", 24 * 3_600_000),
    ("7d", "in the last 7 days", 7 * 24 * 3_600_000),
];

impl<S, Q, C, N> Console<'_, S, Q, C, N>
where
    S: ConsoleStore,
    Q: ConsoleQueue,
    C: Clock,
    N: Notifier,
{
    pub(super) async fn jobs(&self, frame: &Frame<'_>, query: &Fields) -> Result<String, AppError> {
        let base = frame.base;
        let state = query.get("state").and_then(|s| JobState::parse(s));
        let filter = |k: &str| query.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
        let (source, operation, batch) = (filter("source"), filter("operation"), filter("batch"));
        let since = filter("since").and_then(|v| SINCE.iter().find(|(k, _, _)| *k == v));
        let now = self.api.clock.now();
        let all = self.api.store.list(state, 500).await?;
        let shown: Vec<_> = all
            .iter()
            .filter(|j| source.is_none_or(|s| j.source_system.as_str() == s))
            .filter(|j| operation.is_none_or(|o| j.kind.as_str() == o))
            .filter(|j| batch.is_none_or(|b| j.batch.as_ref().is_some_and(|x| x.as_str() == b)))
            .filter(|j| since.is_none_or(|(_, _, ms)| j.updated_at.0 >= now.0 - ms))
            .take(LIST)
            .collect();
        let mut body = format!(
            "<section><form method=\"get\" action=\"{base}/ui/jobs\"><label>state <select name=\"state\"><option value=\"\">any</option>"
        );
        for s in JobState::ALL {
            let selected = if state == Some(s) { " selected" } else { "" };
            let _ = write!(body, "<option{selected}>{}</option>", s.as_str());
        }
        body.push_str("</select></label><label>changed <select name=\"since\"><option value=\"\">any time</option>");
        for (key, words, _) in SINCE {
            let selected = if since.is_some_and(|(k, _, _)| *k == key) {
                " selected"
            } else {
                ""
            };
            let _ = write!(body, "<option value=\"{key}\"{selected}>{words}</option>");
        }
        let value = |v: Option<&str>| escape(v.unwrap_or_default());
        let _ = write!(
            body,
            "</select></label><label>source <input type=\"text\" name=\"source\" value=\"{}\"></label>\
<label>operation <input type=\"text\" name=\"operation\" value=\"{}\"></label>\
<label>batch <input type=\"text\" name=\"batch\" value=\"{}\"></label><button type=\"submit\">Filter</button></form></section>",
            value(source),
            value(operation),
            value(batch)
        );
        body.push_str("<section><table id=\"jobs\"><tr><th>updated</th><th>state</th><th>operation</th><th>source</th><th>external id</th><th>issue</th><th>job</th></tr>");
        for j in &shown {
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><a href=\"{base}/ui/jobs?id={}\">{}</a></td></tr>",
                escape(&j.updated_at.to_rfc3339()),
                state_badge(j.state.as_str()),
                j.kind.as_str(),
                escape(j.source_system.as_str()),
                escape(j.external_id.as_str()),
                escape(j.issue_key.as_ref().map_or("-", |k| k.as_str())),
                j.id,
                &j.id.to_string()[..8]
            );
        }
        if shown.is_empty() {
            body.push_str("<tr><td colspan=\"7\">no jobs found</td></tr>");
        }
        body.push_str("</table></section>");
        Ok(page(frame, "jobs", "Jobs", &body))
    }

    pub(super) async fn job(&self, frame: &Frame<'_>, raw: &str) -> Result<String, AppError> {
        let base = frame.base;
        let answer = get_job(self.api.store, raw).await?;
        if answer.status != 200 {
            return Ok(page(
                frame,
                "jobs",
                "No such job",
                "<section><p>There is no such job.</p></section>",
            ));
        }
        let j = &answer.body;
        let text = |k: &str| match &j[k] {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            v => Some(v.to_string()),
        };
        let state = text("state").unwrap_or_default();
        let mut body = String::from("<section><table id=\"job\">");
        for (label, key) in JOB_FIELDS.into_iter().filter(|(_, k)| *k != "jobId") {
            if let Some(v) = text(key) {
                let shown = if key == "state" {
                    state_badge(&v)
                } else {
                    escape(&v)
                };
                let _ = write!(body, "<tr><th>{label}</th><td>{shown}</td></tr>");
            }
        }
        body.push_str("</table>");
        let back = format!("/ui/jobs?id={raw}");
        let id = text("jobId").unwrap_or_default();
        if matches!(state.as_str(), "FAILED" | "EXHAUSTED") {
            body.push_str(&action_form(
                frame,
                "retry",
                &[("job", &id), ("back", &back)],
                "Retry",
                "",
            ));
        }
        if matches!(state.as_str(), "QUEUED" | "WAITING" | "PENDING_APPROVAL") {
            let _ = write!(
                body,
                "<form class=\"inline\" method=\"post\" action=\"{base}/ui/act\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
<input type=\"hidden\" name=\"action\" value=\"cancel\"><input type=\"hidden\" name=\"job\" value=\"{}\">\
<input type=\"hidden\" name=\"back\" value=\"{}\"><label>reason <input type=\"text\" name=\"reason\" required></label>\
<button type=\"submit\" class=\"cancel\" data-action=\"cancel\">Cancel</button></form>",
                escape(frame.csrf),
                escape(&id),
                escape(&back)
            );
        }
        body.push_str("</section><section><h2>Trail</h2><ol class=\"timeline\" id=\"trail\">");
        for e in j["audit"].as_array().into_iter().flatten() {
            let s = |k: &str| e[k].as_str().unwrap_or_default().to_string();
            let _ = write!(
                body,
                "<li><span class=\"at\">{} · {} · {}</span><br>{}{}{}</li>",
                escape(&s("at")),
                escape(&s("stage")),
                escape(&s("actor")),
                escape(&s("outcome")),
                e["state"]
                    .as_str()
                    .map(|st| format!(" → {}", state_badge(st)))
                    .unwrap_or_default(),
                e["intent"]
                    .as_str()
                    .map(|i| format!("<br><span class=\"note\">{}</span>", escape(i)))
                    .unwrap_or_default()
            );
        }
        body.push_str("</ol></section>");
        Ok(page(
            frame,
            "jobs",
            &format!("Job {}", &id.get(..8).unwrap_or(&id)),
            &body,
        ))
    }

    pub(super) async fn approvals(&self, frame: &Frame<'_>) -> Result<String, AppError> {
        let now = self.api.clock.now();
        let open = self.api.store.open_approvals(LIST).await?;
        let mut body = String::new();
        if open.is_empty() {
            body.push_str("<section><p>No approval request waits.</p></section>");
        }
        for a in &open {
            let first_job = self.api.store.job(&a.job_id).await?;
            let batch = first_job.as_ref().and_then(|j| j.batch.clone());
            let _ = write!(
                body,
                "<section class=\"approval\" data-approval=\"{}\"><h2>{} <span class=\"note\">({} job{}, {})</span></h2><ul>",
                a.id,
                escape(&a.rule),
                1 + a.also.len(),
                if a.also.is_empty() { "" } else { "s" },
                approval_status(a, now)
            );
            for line in &a.intent {
                let _ = write!(body, "<li>{}</li>", escape(line));
            }
            let _ = write!(
                body,
                "</ul><p class=\"note\">asked by {} · expires {} · approvers {}</p>",
                escape(&a.requested_by),
                escape(&a.expires_at.to_rfc3339()),
                escape(&a.approvers.join(", "))
            );
            let id = a.id.to_string();
            let back = "/ui/approvals";
            body.push_str(&action_form(
                frame,
                "approve",
                &[("approval", &id), ("back", back)],
                "Approve",
                "approve",
            ));
            body.push_str(&action_form(
                frame,
                "deny",
                &[("approval", &id), ("back", back)],
                "Deny",
                "deny",
            ));
            if let Some(batch) = batch {
                let chunk = chunk_of(a, &batch)
                    .map(|c| c.to_string())
                    .unwrap_or_default();
                let _ = write!(
                    body,
                    "<p class=\"note\">batch {}{}</p>",
                    escape(batch.as_str()),
                    if chunk.is_empty() {
                        String::new()
                    } else {
                        format!(", chunk {chunk}")
                    }
                );
                body.push_str(&action_form(
                    frame,
                    "approve-batch",
                    &[("batch", batch.as_str()), ("back", back)],
                    "Approve every open request of this batch",
                    "approve",
                ));
            }
            body.push_str("</section>");
        }
        Ok(page(frame, "approvals", "Approvals", &body))
    }

    pub(super) async fn rejections(&self, frame: &Frame<'_>) -> Result<String, AppError> {
        let base = frame.base;
        let found = self.api.store.rejections(LIST).await?;
        let mut body = String::from(
            "<section><table id=\"rejections\"><tr><th>received</th><th>source</th><th>kind</th><th>status</th><th>first reason</th><th></th></tr>",
        );
        for r in &found {
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><a href=\"{base}/ui/rejections?id={}\">view</a></td></tr>",
                escape(&r.received_at.to_rfc3339()),
                escape(r.source_system.as_deref().unwrap_or("-")),
                r.origin.kind(),
                r.status(),
                escape(
                    &r.errors
                        .first()
                        .map(ToString::to_string)
                        .unwrap_or_default()
                ),
                r.id
            );
        }
        if found.is_empty() {
            body.push_str("<tr><td colspan=\"6\">no rejections found</td></tr>");
        }
        body.push_str("</table></section>");
        Ok(page(frame, "rejections", "Manual queue", &body))
    }

    pub(super) async fn rejection(&self, frame: &Frame<'_>, raw: &str) -> Result<String, AppError> {
        let base = frame.base;
        let Some(id) = RejectionId::parse(raw) else {
            return Ok(page(frame, "rejections", "No such rejection", ""));
        };
        let Some(r) = self.api.store.rejection(&id).await? else {
            return Ok(page(frame, "rejections", "No such rejection", ""));
        };
        let mut body = String::from("<section><h2>Why it was refused</h2><ul id=\"reasons\">");
        for e in &r.errors {
            let _ = write!(body, "<li>{}</li>", escape(&e.to_string()));
        }
        let info = rejection_json(&r);
        let _ = write!(
            body,
            "</ul><p class=\"note\">status {} · {}</p></section>",
            escape(info["status"].as_str().unwrap_or_default()),
            escape(&r.received_at.to_rfc3339())
        );
        if r.status() == "open" {
            let pretty = serde_json::from_str::<Value>(&r.body)
                .ok()
                .and_then(|v| serde_json::to_string_pretty(&v).ok())
                .unwrap_or_else(|| r.body.clone());
            let back = format!("/ui/rejections?id={raw}");
            let _ = write!(
                body,
                "<section><h2>Re-submit</h2><form method=\"post\" action=\"{base}/ui/act\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
<input type=\"hidden\" name=\"action\" value=\"resubmit\"><input type=\"hidden\" name=\"rejection\" value=\"{}\">\
<input type=\"hidden\" name=\"back\" value=\"{}\"><label>The body — as received, or corrected (validated before it is accepted)\
<textarea name=\"body\" id=\"body\">{}</textarea></label><button type=\"submit\" data-action=\"resubmit\">Re-submit</button></form>\
<form method=\"post\" action=\"{base}/ui/act\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><input type=\"hidden\" name=\"action\" value=\"discard\">\
<input type=\"hidden\" name=\"rejection\" value=\"{}\"><input type=\"hidden\" name=\"back\" value=\"/ui/rejections\">\
<label>reason to discard <input type=\"text\" name=\"reason\" required></label><button type=\"submit\" class=\"deny\" data-action=\"discard\">Discard</button></form></section>",
                escape(frame.csrf),
                r.id,
                escape(&back),
                escape(&pretty),
                escape(frame.csrf),
                r.id
            );
        } else {
            let _ = write!(body, "<section><pre>{}</pre></section>", escape(&r.body));
        }
        Ok(page(frame, "rejections", "Rejection", &body))
    }

    pub(super) async fn batches(&self, frame: &Frame<'_>) -> Result<String, AppError> {
        let base = frame.base;
        let store = self.api.store;
        let mut body = String::from(
            "<section><table id=\"batches\"><tr><th>batch</th><th>source</th><th>progress</th><th class=\"num\">points</th><th class=\"num\">ETA</th><th></th></tr>",
        );
        let ids = store.recent_batches(50).await?;
        for id in &ids {
            let Some(v) = view_batch(store, self.api.clock, id).await? else {
                continue;
            };
            let (b, p) = (&v.batch, &v.progress);
            let total = p.finished + p.remaining;
            let status = if b.paused {
                "PAUSED"
            } else if p.remaining == 0 {
                "done"
            } else {
                "running"
            };
            let control = if b.paused {
                action_form(
                    frame,
                    "resume",
                    &[("batch", b.id.as_str()), ("back", "/ui/batches")],
                    "Resume",
                    "",
                )
            } else if p.remaining > 0 {
                action_form(
                    frame,
                    "pause",
                    &[("batch", b.id.as_str()), ("back", "/ui/batches")],
                    "Pause",
                    "",
                )
            } else {
                String::new()
            };
            let _ = write!(
                body,
                "<tr data-batch=\"{}\"><td><a href=\"{base}/ui/jobs?batch={}\">{}</a></td><td>{}</td><td><progress max=\"{total}\" value=\"{}\"></progress> \
{} of {total} · <span class=\"batch-status\">{status}</span></td><td class=\"num\">{:.1}</td><td class=\"num\">{}</td><td>{control}</td></tr>",
                escape(b.id.as_str()),
                percent_encode(b.id.as_str()),
                escape(b.id.as_str()),
                escape(b.source_system.as_str()),
                p.finished,
                p.finished,
                p.points,
                p.eta_seconds.map_or("-".into(), |s| format!("{s} s"))
            );
        }
        if ids.is_empty() {
            body.push_str("<tr><td colspan=\"6\">no batches found</td></tr>");
        }
        body.push_str("</table></section>");
        Ok(page(frame, "batches", "Batches", &body))
    }

    pub(super) async fn senders(&self, frame: &Frame<'_>) -> Result<String, AppError> {
        let stats = read_stats(self.api.store, self.api.clock, 1).await?;
        let recent = self.api.store.rejections(LIST).await?;
        let mut body = String::from(
            "<section><p class=\"note\">This hour (UTC).</p><table id=\"senders\"><tr><th>sender</th><th class=\"num\">accepted</th><th class=\"num\">duplicate</th><th class=\"num\">rejected</th><th class=\"num\">ignored</th><th>last error</th></tr>",
        );
        for (name, s) in &stats.senders {
            let last = recent
                .iter()
                .find(|r| r.source_system.as_deref() == Some(name.as_str()))
                .and_then(|r| r.errors.first())
                .map(ToString::to_string)
                .unwrap_or_else(|| "-".into());
            let _ = write!(
                body,
                "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
                escape(name),
                s.accepted,
                s.duplicate,
                s.rejected,
                s.ignored,
                escape(&last)
            );
        }
        if stats.senders.is_empty() {
            body.push_str("<tr><td colspan=\"6\">no sender posted this hour</td></tr>");
        }
        body.push_str("</table></section>");
        Ok(page(frame, "senders", "Senders", &body))
    }
}
