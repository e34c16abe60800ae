//! Choosing a Jira transition by name. Senders name where they want the
//! issue to go ("Done"); Jira names transitions by action ("Resolve") and
//! gives their target status. Either matches, case and spacing ignored.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvailableTransition {
    pub id: String,
    pub name: String,
    pub to_status: String,
}

fn norm(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

pub fn find_transition<'a>(
    available: &'a [AvailableTransition],
    wanted: &str,
) -> Option<&'a AvailableTransition> {
    let w = norm(wanted);
    available
        .iter()
        .find(|t| norm(&t.name) == w)
        .or_else(|| available.iter().find(|t| norm(&t.to_status) == w))
}

/// A transition to the status the issue is already in has been done (by an
/// earlier attempt whose answer was lost, or by a person).
pub fn already_in(status: &str, wanted: &str) -> bool {
    norm(status) == norm(wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(id: &str, name: &str, to: &str) -> AvailableTransition {
        AvailableTransition {
            id: id.into(),
            name: name.into(),
            to_status: to.into(),
        }
    }

    #[test]
    fn a_transition_is_found_by_its_name_or_its_target_status() {
        let list = [
            t("11", "Start work", "In Progress"),
            t("31", "Resolve", "Done"),
        ];
        assert_eq!(find_transition(&list, "resolve").unwrap().id, "31");
        assert_eq!(find_transition(&list, " in  progress ").unwrap().id, "11");
        assert!(find_transition(&list, "Reopen").is_none());
    }

    #[test]
    fn the_status_already_reached_counts_as_done() {
        assert!(already_in("Done", "done"));
        assert!(!already_in("To Do", "Done"));
    }
}
