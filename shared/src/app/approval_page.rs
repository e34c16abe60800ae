//! The approval confirmation page and its answers, rendered on the server:
//! one small self-contained HTML document (no scripts, no external assets,
//! readable on a phone). Everything shown is escaped; the page's own links
//! carry no referrer, so a token never leaks to another site.

use super::approvals::{DecideOutcome, PageView, Refusal, ViewOutcome, past_tense};
use crate::domain::approval::{ApprovalStatus, Decision};

/// An HTML answer.
#[derive(Debug, Clone, PartialEq)]
pub struct HtmlAnswer {
    pub status: u16,
    pub html: String,
}

/// Headers every page is served with: not cached, not framed, no scripts,
/// forms only to this origin, no referrer.
pub const PAGE_HEADERS: [(&str, &str); 5] = [
    ("content-type", "text/html; charset=utf-8"),
    ("cache-control", "no-store"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
    (
        "content-security-policy",
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
    ),
];

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f4f5f7;color:#172b4d}\
main{max-width:34rem;margin:2rem auto;padding:1.5rem;background:#fff;border-radius:8px;box-shadow:0 1px 3px rgba(9,30,66,.25)}\
h1{font-size:1.3rem;margin-top:0}dl{display:grid;grid-template-columns:max-content 1fr;gap:.4rem 1rem}dt{color:#5e6c84}dd{margin:0}\
ul.intent{background:#f4f5f7;border-radius:4px;padding:.75rem 1rem .75rem 2rem}ul.intent li{margin:.2rem 0;word-break:break-word}\
form{display:inline}button{font-size:1rem;padding:.6rem 1.4rem;border:0;border-radius:4px;margin:.5rem .5rem 0 0;cursor:pointer}\
button.approve{background:#00875a;color:#fff}button.deny{background:#de350b;color:#fff}p.note{color:#5e6c84;font-size:.9rem}\
@media(max-width:30rem){main{margin:0;border-radius:0}button{width:100%;margin:.4rem 0}}";

fn document(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<meta name=\"referrer\" content=\"no-referrer\"><meta name=\"robots\" content=\"noindex\">\
<title>{}</title><style>{STYLE}</style></head><body><main>{body}</main></body></html>",
        escape(title)
    )
}

/// The form posts to its token next to the page's own URL (a relative
/// action), so the page works under any path prefix: an API Gateway
/// stage, `cargo lambda watch`'s `/lambda-url/<function>/`, a proxy.
fn button(token: &str, decision: Decision) -> String {
    let (class, label) = match decision {
        Decision::Approve => ("approve", "Approve"),
        Decision::Deny => ("deny", "Deny"),
    };
    format!(
        "<form method=\"post\" action=\"./{}\"><button type=\"submit\" class=\"{class}\" name=\"decision\" value=\"{class}\">{label}</button></form>",
        escape(token)
    )
}

/// The confirmation page (GET). It shows; only its buttons decide.
pub fn render_page(view: &PageView) -> String {
    let a = &view.approval;
    let intent: String = a
        .intent
        .iter()
        .map(|line| format!("<li>{}</li>", escape(line)))
        .collect();
    let status = match view.status {
        ApprovalStatus::Pending => String::new(),
        ApprovalStatus::Expired => {
            "<p class=\"note\"><strong>This request has expired.</strong> Nothing will change.</p>"
                .into()
        }
        ApprovalStatus::Decided(d) => {
            let by = a.decided.as_ref().map(|x| x.by.as_str()).unwrap_or("");
            format!(
                "<p class=\"note\"><strong>Already {} by {}.</strong> Nothing more to do.</p>",
                past_tense(d),
                escape(by)
            )
        }
    };
    let buttons = if view.status == ApprovalStatus::Pending {
        let (first, second) = match view.offered {
            Decision::Approve => (
                button(&view.approve_token, Decision::Approve),
                button(&view.deny_token, Decision::Deny),
            ),
            Decision::Deny => (
                button(&view.deny_token, Decision::Deny),
                button(&view.approve_token, Decision::Approve),
            ),
        };
        format!(
            "<div class=\"actions\">{first}{second}</div><p class=\"note\">Nothing happens until you press a button.</p>"
        )
    } else {
        String::new()
    };
    let body = format!(
        "<h1>Approval requested</h1>\
<dl><dt>Asked by</dt><dd id=\"requested-by\">{}</dd><dt>Why</dt><dd>{}</dd>\
<dt>You</dt><dd id=\"approver\">{}</dd><dt>Expires</dt><dd>{}</dd></dl>\
<h2 style=\"font-size:1rem\">What will change in Jira</h2><ul class=\"intent\" id=\"intent\">{intent}</ul>{status}{buttons}",
        escape(&a.requested_by),
        escape(&a.rule),
        escape(&view.approver),
        escape(&a.expires_at.to_rfc3339()),
    );
    document("Approval requested — tollgate", &body)
}

fn refusal_page(r: &Refusal) -> HtmlAnswer {
    let title = match r {
        Refusal::AlreadyDecided(_) => "Already decided",
        Refusal::LinkExpired | Refusal::RequestExpired => "Expired",
        _ => "Link not valid",
    };
    HtmlAnswer {
        status: r.status(),
        html: document(
            &format!("{title} — tollgate"),
            &format!(
                "<h1 id=\"outcome\">{}</h1><p>{}</p>",
                escape(title),
                escape(&r.message())
            ),
        ),
    }
}

pub fn view_answer(outcome: &ViewOutcome) -> HtmlAnswer {
    match outcome {
        ViewOutcome::Page(view) => HtmlAnswer {
            status: 200,
            html: render_page(view),
        },
        ViewOutcome::Refused(r) => refusal_page(r),
    }
}

pub fn decide_answer(outcome: &DecideOutcome) -> HtmlAnswer {
    match outcome {
        DecideOutcome::Decided { decision, by, .. } => {
            let (title, next) = match decision {
                Decision::Approve => (
                    "Approved",
                    "The change is queued and will run at the pace Jira accepts.",
                ),
                Decision::Deny => ("Denied", "Nothing will change in Jira."),
            };
            HtmlAnswer {
                status: 200,
                html: document(
                    &format!("{title} — tollgate"),
                    &format!(
                        "<h1 id=\"outcome\">{title}</h1><p>{} by {}. {next}</p>",
                        escape(title),
                        escape(by)
                    ),
                ),
            }
        }
        DecideOutcome::Refused(r) => refusal_page(r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::approval::{ApprovalId, ApprovalRecord};
    use crate::domain::ids::JobId;
    use crate::domain::time::Timestamp;

    fn view(status: ApprovalStatus) -> PageView {
        PageView {
            approval: ApprovalRecord {
                id: ApprovalId::generate(),
                job_id: JobId::generate(),
                also: Vec::new(),
                rule: "built-in: transitions need approval".into(),
                intent: vec![
                    "on OPS-1:".into(),
                    "transition to \"<script>alert(1)</script>\"".into(),
                ],
                requested_by: "itsm<img src=x onerror=alert(1)>".into(),
                approvers: vec!["lead@example.com".into()],
                requested_at: Timestamp(0),
                expires_at: Timestamp(1_000_000),
                decided: None,
                notified: true,
            },
            status,
            approver: "lead@example.com".into(),
            offered: Decision::Approve,
            approve_token: "a.tok\"en".into(),
            deny_token: "d.token".into(),
        }
    }

    #[test]
    fn everything_shown_is_escaped() {
        let html = render_page(&view(ApprovalStatus::Pending));
        assert!(!html.contains("<script>"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(html.contains("&lt;script&gt;"));
        assert!(html.contains("action=\"./a.tok&quot;en\""));
    }

    #[test]
    fn a_pending_request_offers_both_buttons_with_the_links_own_first() {
        let html = render_page(&view(ApprovalStatus::Pending));
        let approve = html.find("value=\"approve\"").unwrap();
        let deny = html.find("value=\"deny\"").unwrap();
        assert!(approve < deny);
        assert!(!html.contains("<script"), "no scripts at all");
    }

    #[test]
    fn a_closed_request_offers_no_buttons() {
        for status in [
            ApprovalStatus::Expired,
            ApprovalStatus::Decided(Decision::Deny),
        ] {
            let html = render_page(&view(status));
            assert!(!html.contains("<button"), "{status:?}");
        }
    }

    #[test]
    fn refusals_carry_their_status() {
        assert_eq!(
            view_answer(&ViewOutcome::Refused(Refusal::InvalidLink)).status,
            403
        );
        assert_eq!(
            view_answer(&ViewOutcome::Refused(Refusal::LinkExpired)).status,
            410
        );
        assert_eq!(
            view_answer(&ViewOutcome::Refused(Refusal::NotFound)).status,
            404
        );
    }
}
