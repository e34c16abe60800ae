//! The JQL subset the simulator understands: clauses joined by `AND` —
//! `labels = x`, `labels in (x, y)`, `project = X`, `status = "Done"` — and
//! an optional `ORDER BY created ASC|DESC`. Anything else is a JQL error,
//! as Jira would answer a query it cannot parse.

#[derive(Debug, Default)]
pub struct Query {
    labels_all: Vec<Vec<String>>,
    project: Option<String>,
    status: Option<String>,
    pub newest_first: bool,
}

impl Query {
    pub fn matches(&self, project: &str, labels: &[String], status: &str) -> bool {
        self.project.as_deref().is_none_or(|p| p == project)
            && self
                .status
                .as_deref()
                .is_none_or(|s| s.eq_ignore_ascii_case(status))
            && self
                .labels_all
                .iter()
                .all(|any| any.iter().any(|l| labels.contains(l)))
    }
}

fn unquote(s: &str) -> String {
    s.trim().trim_matches('"').trim_matches('\'').to_string()
}

pub fn parse(jql: &str) -> Result<Query, String> {
    let mut q = Query::default();
    let lower = jql.to_ascii_lowercase();
    let (filter, order) = match lower.find("order by") {
        Some(i) => (&jql[..i], Some(lower[i + 8..].trim().to_string())),
        None => (jql, None),
    };
    if let Some(order) = order {
        match order.split_whitespace().collect::<Vec<_>>().as_slice() {
            ["created"] | ["created", "asc"] => {}
            ["created", "desc"] => q.newest_first = true,
            _ => return Err(format!("unsupported ORDER BY {order:?}")),
        }
    }
    if filter.trim().is_empty() {
        return Ok(q);
    }
    for clause in filter.split(" AND ").chain(std::iter::empty()) {
        let clause = clause.trim();
        let lc = clause.to_ascii_lowercase();
        if let Some(rest) = lc.strip_prefix("labels in").map(|_| &clause[9..]) {
            let inner = rest
                .trim()
                .strip_prefix('(')
                .and_then(|r| r.strip_suffix(')'))
                .ok_or("expected ( after in")?;
            q.labels_all.push(inner.split(',').map(unquote).collect());
        } else if let Some((field, value)) = clause.split_once('=') {
            let value = unquote(value);
            match field.trim().to_ascii_lowercase().as_str() {
                "labels" => q.labels_all.push(vec![value]),
                "project" => q.project = Some(value),
                "status" => q.status = Some(value),
                other => return Err(format!("field {other:?} is not supported by the simulator")),
            }
        } else {
            return Err(format!("cannot parse clause {clause:?}"));
        }
    }
    Ok(q)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_and_project_clauses_filter() {
        let q = parse(r#"labels = "tollgate-abc" AND project = OPS ORDER BY created ASC"#).unwrap();
        assert!(q.matches("OPS", &["tollgate-abc".into()], "To Do"));
        assert!(!q.matches("OPS", &["other".into()], "To Do"));
        assert!(!q.matches("ASSET", &["tollgate-abc".into()], "To Do"));
    }

    #[test]
    fn labels_in_matches_any() {
        let q = parse("labels in (a, \"b\")").unwrap();
        assert!(q.matches("X", &["b".into()], "Done"));
    }

    #[test]
    fn unsupported_jql_is_an_error() {
        assert!(parse("summary ~ disk").is_err());
        assert!(parse("labels = a ORDER BY rank").is_err());
    }
}
