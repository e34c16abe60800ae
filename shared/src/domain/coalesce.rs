//! Coalescing: pending work on one entity becomes as few Jira calls as
//! possible. Field edits fold into one composed edit — or into the create,
//! when the issue does not exist yet — with the newest value winning per
//! field; comments are all kept, in the order they arrived.
//!
//! Only work that has not touched Jira is folded in (a job with a step done
//! or started must finish on its own), and only edits and comments: a
//! transition or a sub-task keeps its own job.

use super::event::OperationKind;
use super::plan::Step;
use serde_json::{Value, json};

/// Whether a job of this kind, given the steps it would run on an existing
/// issue, may be folded into another job's run.
pub fn mergeable(kind: OperationKind, linked_steps: &[Step]) -> bool {
    matches!(
        kind,
        OperationKind::Update | OperationKind::Upsert | OperationKind::Comment
    ) && !linked_steps.is_empty()
        && linked_steps
            .iter()
            .all(|s| matches!(s, Step::Edit { .. } | Step::Comment { .. }))
}

/// Folds plans, given oldest first, into one. The carrier's plan is among
/// them; the others hold only edits and comments (see [`mergeable`]).
///
/// The result: the create (with every edit folded into its fields), the
/// sub-tasks, one composed edit when nothing is created, then every comment
/// in arrival order. A lone plan is returned as it is.
pub fn coalesce(plans: &[Vec<Step>]) -> Vec<Step> {
    if let [only] = plans {
        return only.clone();
    }
    let mut create: Option<Step> = None;
    let mut children = Vec::new();
    let mut edit: Option<(serde_json::Map<String, Value>, Vec<String>)> = None;
    let mut comments = Vec::new();
    let mut rest = Vec::new();
    for step in plans.iter().flatten() {
        match step {
            Step::CreateIssue { .. } if create.is_none() => create = Some(step.clone()),
            Step::CreateChild { .. } => children.push(step.clone()),
            Step::Edit { fields, add_labels } => {
                let (all_fields, all_labels) = edit.get_or_insert_with(Default::default);
                for (name, value) in fields {
                    all_fields.insert(name.clone(), value.clone());
                }
                for label in add_labels {
                    if !all_labels.contains(label) {
                        all_labels.push(label.clone());
                    }
                }
            }
            Step::Comment { .. } => comments.push(step.clone()),
            _ => rest.push(step.clone()),
        }
    }
    let mut out = Vec::new();
    match (create, edit) {
        (Some(Step::CreateIssue { mut fields, label }), edit) => {
            if let Some((edit_fields, add_labels)) = edit {
                fold_into_create(&mut fields, edit_fields, &add_labels);
            }
            out.push(Step::CreateIssue { fields, label });
            out.extend(children);
        }
        (_, Some((fields, add_labels))) => {
            out.extend(children);
            out.push(Step::Edit { fields, add_labels });
        }
        (_, None) => out.extend(children),
    }
    out.extend(comments);
    out.extend(rest);
    out
}

fn fold_into_create(
    fields: &mut serde_json::Map<String, Value>,
    edit: serde_json::Map<String, Value>,
    add_labels: &[String],
) {
    for (name, value) in edit {
        if name == "labels" {
            continue;
        }
        fields.insert(name, value);
    }
    let mut labels: Vec<Value> = fields
        .get("labels")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for label in add_labels {
        let label = json!(label);
        if !labels.contains(&label) {
            labels.push(label);
        }
    }
    fields.insert("labels".into(), Value::Array(labels));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    fn edit(pairs: &[(&str, Value)], labels: &[&str]) -> Step {
        let fields: Map<String, Value> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        Step::Edit {
            fields,
            add_labels: labels.iter().map(|l| l.to_string()).collect(),
        }
    }

    fn comment(text: &str) -> Step {
        Step::Comment { text: text.into() }
    }

    fn create() -> Step {
        let mut fields = Map::new();
        fields.insert("summary".into(), json!("first"));
        fields.insert("priority".into(), json!({"name": "Low"}));
        fields.insert("labels".into(), json!(["cmdb", "tollgate-x"]));
        Step::CreateIssue {
            fields,
            label: "tollgate-x".into(),
        }
    }

    #[test]
    fn the_newest_value_wins_per_field_and_older_fields_stay() {
        let out = coalesce(&[
            vec![edit(
                &[("summary", json!("a")), ("customfield_1", json!(1))],
                &[],
            )],
            vec![edit(&[("summary", json!("b"))], &["x"])],
            vec![edit(&[("summary", json!("c"))], &["y", "x"])],
        ]);
        assert_eq!(
            out,
            [edit(
                &[("summary", json!("c")), ("customfield_1", json!(1))],
                &["x", "y"]
            )]
        );
    }

    #[test]
    fn comments_are_all_kept_in_arrival_order_after_the_edit() {
        let out = coalesce(&[
            vec![comment("one")],
            vec![edit(&[("summary", json!("s"))], &[]), comment("two")],
            vec![comment("three")],
        ]);
        assert_eq!(
            out,
            [
                edit(&[("summary", json!("s"))], &[]),
                comment("one"),
                comment("two"),
                comment("three")
            ]
        );
    }

    #[test]
    fn updates_before_the_create_ran_fold_into_one_create() {
        let out = coalesce(&[
            vec![create()],
            vec![edit(&[("summary", json!("second"))], &["late"])],
            vec![comment("hello")],
        ]);
        let [Step::CreateIssue { fields, label }, c] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!(label, "tollgate-x");
        assert_eq!(fields["summary"], "second");
        assert_eq!(fields["priority"]["name"], "Low");
        assert_eq!(fields["labels"], json!(["cmdb", "tollgate-x", "late"]));
        assert_eq!(c, &comment("hello"));
    }

    #[test]
    fn a_lone_plan_is_unchanged() {
        let plan = vec![create(), Step::Comment { text: "c".into() }];
        assert_eq!(coalesce(std::slice::from_ref(&plan)), plan);
        let t = vec![
            Step::Transition {
                name: "Done".into(),
            },
            comment("why"),
        ];
        assert_eq!(coalesce(std::slice::from_ref(&t)), t);
    }

    #[test]
    fn only_edits_and_comments_of_updates_upserts_and_comments_merge() {
        let e = vec![edit(&[("summary", json!("s"))], &[])];
        assert!(mergeable(OperationKind::Update, &e));
        assert!(mergeable(OperationKind::Comment, &[comment("c")]));
        assert!(!mergeable(OperationKind::Create, &e));
        assert!(!mergeable(
            OperationKind::Transition,
            &[Step::Transition {
                name: "Done".into()
            }]
        ));
        assert!(!mergeable(OperationKind::Upsert, &[create()]));
        assert!(!mergeable(OperationKind::Update, &[]));
    }
}
