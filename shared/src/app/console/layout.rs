//! The console's page frame: one self-contained document per page (inline
//! style, no script but an optional refresh), navigation, and the forms
//! every action posts (each with the session's CSRF token).

use crate::app::approval_page::escape;

pub const STYLE: &str = "body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f4f5f7;color:#172b4d}\
header{background:#0747a6;color:#fff;padding:.5rem 1rem;display:flex;flex-wrap:wrap;gap:.3rem 1rem;align-items:center}\
header a{color:#fff;text-decoration:none}header a.here{text-decoration:underline}header .who{margin-left:auto;font-size:.9rem}\
header form{display:inline}header button{background:none;border:1px solid #fff;color:#fff;padding:.2rem .6rem;border-radius:3px;cursor:pointer}\
main{max-width:64rem;margin:1rem auto;padding:0 1rem}section{background:#fff;border-radius:6px;box-shadow:0 1px 2px rgba(9,30,66,.25);padding:1rem;margin-bottom:1rem;overflow-x:auto}\
h1{font-size:1.3rem}h2{font-size:1.05rem;margin-top:0}table{border-collapse:collapse;width:100%;font-size:.9rem}\
th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #dfe1e6;vertical-align:top}th{color:#5e6c84;font-weight:600}\
td.num,th.num{text-align:right}.state{font-weight:600;font-family:ui-monospace,monospace;font-size:.85rem}\
.state.bad{color:#bf2600}.state.good{color:#006644}.state.wait{color:#974f0c}\
figure.chart{margin:0 0 1rem}figure.chart svg{width:100%;height:auto;max-width:40rem}figcaption{font-size:.85rem;color:#5e6c84}\
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(9rem,1fr));gap:.6rem}.card{background:#f4f5f7;border-radius:4px;padding:.5rem}\
.card b{display:block;font-size:1.4rem}form.inline{display:inline}button,input[type=submit]{font-size:.9rem;padding:.35rem .8rem;border:0;border-radius:3px;cursor:pointer;background:#0052cc;color:#fff;margin:.2rem .2rem .2rem 0}\
button.deny,button.cancel{background:#de350b}textarea{width:100%;min-height:12rem;font-family:ui-monospace,monospace;font-size:.85rem}\
input[type=text],input[type=password],select{font-size:.95rem;padding:.3rem;max-width:100%}label{display:block;margin:.4rem 0}\
.note{color:#5e6c84;font-size:.9rem}.flash{background:#e3fcef;border-left:4px solid #00875a;padding:.5rem 1rem}.error{background:#ffebe6;border-left:4px solid #de350b;padding:.5rem 1rem}\
progress{width:10rem}ol.timeline{list-style:none;padding-left:0}ol.timeline li{border-left:3px solid #dfe1e6;padding:.2rem 0 .4rem .8rem;margin-left:.4rem}\
ol.timeline li .at{color:#5e6c84;font-size:.8rem;font-family:ui-monospace,monospace}\
@media(max-width:30rem){main{padding:0 .4rem}section{padding:.6rem}th,td{padding:.25rem}header .who{margin-left:0}}";

/// The pages, for navigation.
pub const PAGES: [(&str, &str); 6] = [
    ("overview", "Overview"),
    ("jobs", "Jobs"),
    ("approvals", "Approvals"),
    ("rejections", "Manual queue"),
    ("batches", "Batches"),
    ("senders", "Senders"),
];

/// What every signed-in page knows: who, and the token its forms carry.
pub struct Frame<'a> {
    pub operator: &'a str,
    pub csrf: &'a str,
    /// A message from the last action (`?done=`), if any.
    pub flash: Option<&'a str>,
    /// Refresh this page every N seconds (the overview).
    pub refresh: Option<u32>,
    /// The path the console's `/ui` hangs under ("" at the root; a prefix
    /// such as cargo lambda's `/lambda-url/<function>`).
    pub base: &'a str,
}

/// A whole signed-in page.
pub fn page(frame: &Frame<'_>, here: &str, title: &str, body: &str) -> String {
    let nav: String = PAGES
        .iter()
        .map(|(slug, name)| {
            let base = escape(frame.base);
            let href = if *slug == "overview" {
                format!("{base}/ui")
            } else {
                format!("{base}/ui/{slug}")
            };
            let class = if *slug == here { " class=\"here\"" } else { "" };
            format!("<a href=\"{href}\"{class}>{name}</a>")
        })
        .collect();
    let flash = frame
        .flash
        .map(|f| format!("<p class=\"flash\" role=\"status\">{}</p>", escape(f)))
        .unwrap_or_default();
    let refresh = frame
        .refresh
        .map(|s| format!("<meta http-equiv=\"refresh\" content=\"{s}\">"))
        .unwrap_or_default();
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">{refresh}\
<meta name=\"referrer\" content=\"no-referrer\"><meta name=\"robots\" content=\"noindex\">\
<title>{} — tollgate</title><style>{STYLE}</style></head><body>\
<header><strong>tollgate</strong>{nav}<span class=\"who\">signed in as <b id=\"operator\">{}</b></span>\
{}</header><main><h1>{}</h1>{flash}{body}</main></body></html>",
        escape(title),
        escape(frame.operator),
        action_form(frame, "sign-out", &[], "Sign out", ""),
        escape(title)
    )
}

/// A one-button form posting `action` with hidden `fields` to /ui/act.
pub fn action_form(
    frame: &Frame<'_>,
    action: &str,
    fields: &[(&str, &str)],
    label: &str,
    class: &str,
) -> String {
    let hidden: String = fields
        .iter()
        .map(|(k, v)| {
            format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                escape(k),
                escape(v)
            )
        })
        .collect();
    let target = format!(
        "{}/ui/{}",
        escape(frame.base),
        if action == "sign-out" {
            "sign-out"
        } else {
            "act"
        }
    );
    format!(
        "<form class=\"inline\" method=\"post\" action=\"{target}\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
<input type=\"hidden\" name=\"action\" value=\"{}\">{hidden}<button type=\"submit\" class=\"{}\" data-action=\"{}\">{}</button></form>",
        escape(frame.csrf),
        escape(action),
        escape(class),
        escape(action),
        escape(label)
    )
}

/// A state in words, with a class for colour (never colour alone).
pub fn state_badge(state: &str) -> String {
    let class = match state {
        "FAILED" | "EXHAUSTED" | "DENIED" | "EXPIRED" | "REJECTED" | "CANCELLED" => "bad",
        "SUCCEEDED" | "SUPERSEDED" => "good",
        "WAITING" | "PENDING_APPROVAL" | "QUEUED" | "RUNNING" | "MERGED" => "wait",
        _ => "",
    };
    format!("<span class=\"state {class}\">{}</span>", escape(state))
}

/// The sign-in page (no session yet).
pub fn sign_in_page(base: &str, message: Option<&str>) -> String {
    let base = escape(base);
    let message = message
        .map(|m| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(m)))
        .unwrap_or_default();
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><meta name=\"robots\" content=\"noindex\">\
<title>Sign in — tollgate</title><style>{STYLE}</style></head><body><main><section>\
<h1>tollgate console</h1>{message}<form method=\"post\" action=\"{base}/ui/sign-in\">\
<label>Your name (recorded with every action)<br><input type=\"text\" name=\"operator\" id=\"operator\" required maxlength=\"80\"></label>\
<label>Operator token<br><input type=\"password\" name=\"token\" id=\"token\" required autocomplete=\"current-password\"></label>\
<button type=\"submit\" id=\"sign-in\">Sign in</button></form>\
<p class=\"note\">The operator token: TOLLGATE_OPERATOR_TOKEN for tollgate serve, operatorTokens in the stack's secret on AWS.</p></section></main></body></html>"
    )
}
