//! The workloads and limit profiles of `tollgate bench`. Every profile
//! mixes creates (which bulk create serves in a few calls) with writes that
//! cannot be bulked or folded — comments, edits and transitions of existing
//! issues, each event its own entity — so pacing is what is measured.

use super::ideal::{Need, Shift};
use jira_sim::limits::{Faults, Limits};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use tollgate::ports::MAX_BULK_CREATE;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Profile {
    /// Work needing about three times the points quota of a scaled hour.
    Quota,
    /// Many workers against Atlassian's documented per-second burst buckets.
    Burst,
    /// Over a hundred updates to one issue (per-issue write limits).
    HotIssue,
    /// The points quota halves mid-run.
    Shifting,
    /// A few seconds of everything, for CI.
    Smoke,
    /// A CMDB night: 10,000 events as batches (creates, updates of new and
    /// existing issues, 5 % invalid) against a one-call-per-event client.
    NightlySync,
    /// 2,000 events under every limit at once plus faults: gateway 429s,
    /// 503s, 500s, slow answers, connections dropped after Jira acted.
    /// (Killing the process mid-run is the chaos test's part: tests/chaos.rs.)
    Chaos,
    /// A site five times stricter than documented (burst and per-issue).
    UndocumentedBurst,
    /// Comments and transitions on existing issues, comments at 10/s:
    /// nothing to bulk or coalesce.
    CommentStorm,
    /// Burst limits halve mid-run, then recover.
    BurstShift,
    /// Documented limits plus 3 % bare 429s that do not depend on load.
    Noise,
    /// Documented limits plus faults: 5 % bare 429s (HTML body), 5 % 503,
    /// 3 % 500, 3 % connections dropped before and 3 % after Jira acted,
    /// 5 % slow answers.
    Faults,
}

impl Profile {
    pub fn name(self) -> &'static str {
        match self {
            Profile::Quota => "quota",
            Profile::Burst => "burst",
            Profile::HotIssue => "hot-issue",
            Profile::Shifting => "shifting",
            Profile::Smoke => "smoke",
            Profile::NightlySync => "nightly-sync",
            Profile::Chaos => "chaos",
            Profile::UndocumentedBurst => "undocumented-burst",
            Profile::CommentStorm => "comment-storm",
            Profile::BurstShift => "burst-shift",
            Profile::Noise => "noise",
            Profile::Faults => "faults",
        }
    }

    /// Every profile `tollgate bench` runs when none is named.
    pub const DEFAULT: [Profile; 9] = [
        Profile::UndocumentedBurst,
        Profile::CommentStorm,
        Profile::BurstShift,
        Profile::HotIssue,
        Profile::Noise,
        Profile::Faults,
        Profile::Burst,
        Profile::Quota,
        Profile::Shifting,
    ];
}

/// One event of a workload.
#[derive(Clone)]
pub struct BenchEvent {
    pub body: Value,
    pub deliveries: usize,
    pub interactive: bool,
}

pub struct Spec {
    pub limits: Limits,
    pub events: Vec<BenchEvent>,
    pub needs: Vec<Need>,
    /// Limit changes during the run, in order.
    pub shifts: Vec<Shift>,
    /// Issues created before the run (`OPS-1`…), the targets of comments,
    /// edits and transitions.
    pub setup_issues: usize,
}

/// What a workload holds. Comments, edits and transitions go round the
/// `targets` existing issues; at most one transition per issue.
#[derive(Default)]
struct Mix {
    creates: usize,
    comments: usize,
    updates: usize,
    transitions: usize,
    targets: usize,
}

fn priority(i: usize) -> (&'static str, bool) {
    if i % 10 == 5 {
        ("interactive", true)
    } else {
        ("bulk", false)
    }
}

fn key(i: usize, targets: usize) -> String {
    format!("OPS-{}", 1 + i % targets.max(1))
}

/// The events (one in ten interactive, one create in ten delivered twice,
/// as webhook senders do) and the cheapest calls they need.
fn workload(mix: &Mix) -> (Vec<BenchEvent>, Vec<Need>) {
    let mut events = Vec::new();
    for i in 0..mix.creates {
        let (p, interactive) = priority(i);
        events.push(BenchEvent {
            body: json!({"sourceSystem": "bench", "externalId": format!("ev-{i:05}"), "desiredOperation": "create",
                         "projectKey": "OPS", "issueType": "Task", "summary": format!("Bench event {i}"), "priority": p}),
            deliveries: if i % 10 == 3 { 2 } else { 1 },
            interactive,
        });
    }
    let mut per_issue: BTreeMap<(String, &'static str, &'static str), usize> = BTreeMap::new();
    for i in 0..mix.comments {
        let (p, interactive) = priority(i);
        let k = key(i, mix.targets);
        events.push(BenchEvent {
            body: json!({"sourceSystem": "bench", "externalId": format!("cm-{i:05}"), "desiredOperation": "comment",
                         "issueKey": k, "comment": format!("Bench comment {i}"), "priority": p}),
            deliveries: 1,
            interactive,
        });
        *per_issue
            .entry((k, "POST", "/rest/api/3/issue/{key}/comment"))
            .or_default() += 1;
    }
    for i in 0..mix.updates {
        let (p, interactive) = priority(i);
        let k = key(i * 7, mix.targets);
        events.push(BenchEvent {
            body: json!({"sourceSystem": "bench", "externalId": format!("up-{i:05}"), "desiredOperation": "update",
                         "issueKey": k, "fields": {"customfield_10100": i}, "priority": p}),
            deliveries: 1,
            interactive,
        });
        *per_issue
            .entry((k, "PUT", "/rest/api/3/issue/{key}"))
            .or_default() += 1;
    }
    for i in 0..mix.transitions.min(mix.targets) {
        let (p, interactive) = priority(i);
        let k = key(i, mix.targets);
        events.push(BenchEvent {
            body: json!({"sourceSystem": "bench", "externalId": format!("tr-{i:05}"), "desiredOperation": "transition",
                         "issueKey": k, "transition": "In Progress", "priority": p}),
            deliveries: 1,
            interactive,
        });
        *per_issue
            .entry((k, "POST", "/rest/api/3/issue/{key}/transitions"))
            .or_default() += 1;
    }
    let mut needs = Vec::new();
    if mix.creates > 0 {
        needs.push(Need {
            method: "POST",
            endpoint: "/rest/api/3/issue/bulk",
            issue: None,
            count: mix.creates.div_ceil(MAX_BULK_CREATE),
        });
    }
    for ((issue, method, endpoint), count) in per_issue {
        needs.push(Need {
            method,
            endpoint,
            issue: Some(issue),
            count,
        });
    }
    (events, needs)
}

fn spec_of(limits: Limits, mix: Mix, shifts: Vec<Shift>) -> Spec {
    let (events, needs) = workload(&mix);
    Spec {
        limits,
        events,
        needs,
        shifts,
        setup_issues: mix.targets,
    }
}

/// The workload of a single-event profile (nightly-sync has its own module).
pub fn spec(profile: Profile) -> Option<Spec> {
    let documented = Limits {
        per_issue: true,
        ..Limits::atlassian()
    };
    let no_quota = |l: Limits| Limits {
        quota_points: 0,
        ..l
    };
    Some(match profile {
        Profile::NightlySync => return None,
        Profile::Chaos => {
            let limits = Limits {
                quota_points: 500,
                window_seconds: 10.0,
                faults: Faults {
                    gateway_429: 0.02,
                    error_503: 0.02,
                    error_500: 0.01,
                    slow: 0.01,
                    slow_ms: 1500,
                    drop: 0.02,
                    ..Faults::default()
                },
                ..documented
            };
            let mix = Mix {
                creates: 1500,
                comments: 500,
                targets: 50,
                ..Mix::default()
            };
            spec_of(limits, mix, Vec::new())
        }
        Profile::Quota => {
            let limits = Limits {
                quota_points: 500,
                window_seconds: 10.0,
                per_issue: false,
                ..documented
            };
            let mix = Mix {
                creates: 500,
                comments: 1300,
                targets: 50,
                ..Mix::default()
            };
            spec_of(limits, mix, Vec::new())
        }
        Profile::Burst => {
            let mix = Mix {
                creates: 1200,
                comments: 1500,
                updates: 300,
                targets: 60,
                ..Mix::default()
            };
            spec_of(no_quota(documented), mix, Vec::new())
        }
        Profile::HotIssue => {
            let limits = no_quota(documented);
            let events = (0..110)
                .map(|i| {
                    let (p, interactive) = priority(i);
                    BenchEvent {
                        body: json!({"sourceSystem": "bench", "externalId": format!("upd-{i:04}"), "desiredOperation": "update",
                                     "issueKey": "OPS-1", "fields": {"customfield_10100": i}, "priority": p}),
                        deliveries: 1,
                        interactive,
                    }
                })
                .collect();
            let needs = vec![Need {
                method: "PUT",
                endpoint: "/rest/api/3/issue/{key}",
                issue: Some("OPS-1".into()),
                count: 110,
            }];
            Spec {
                limits,
                events,
                needs,
                shifts: Vec::new(),
                setup_issues: 1,
            }
        }
        Profile::Shifting => {
            let limits = Limits {
                quota_points: 600,
                window_seconds: 10.0,
                per_issue: false,
                ..documented
            };
            let shifted = Limits {
                quota_points: 300,
                ..limits.clone()
            };
            let mix = Mix {
                creates: 400,
                comments: 1000,
                targets: 50,
                ..Mix::default()
            };
            spec_of(
                limits,
                mix,
                vec![Shift {
                    at: 12.0,
                    limits: shifted,
                }],
            )
        }
        Profile::Smoke => {
            let limits = Limits {
                quota_points: 60,
                window_seconds: 3.0,
                burst_get_post: 40.0,
                burst_put_delete: 20.0,
                ..documented
            };
            let mix = Mix {
                creates: 60,
                comments: 20,
                transitions: 5,
                targets: 5,
                ..Mix::default()
            };
            spec_of(limits, mix, Vec::new())
        }
        Profile::UndocumentedBurst => {
            let mix = Mix {
                creates: 150,
                comments: 300,
                updates: 100,
                targets: 30,
                ..Mix::default()
            };
            spec_of(no_quota(Limits::atlassian_times(0.2, 0.2)), mix, Vec::new())
        }
        Profile::CommentStorm => {
            let mut limits = no_quota(Limits::atlassian_times(0.5, 1.0));
            limits
                .burst_routes
                .insert("POST /rest/api/3/issue/{key}/comment".into(), 10.0);
            let mix = Mix {
                comments: 300,
                transitions: 40,
                targets: 40,
                ..Mix::default()
            };
            spec_of(limits, mix, Vec::new())
        }
        Profile::BurstShift => {
            let limits = no_quota(Limits::atlassian_times(0.3, 1.0));
            let shifts = vec![
                Shift {
                    at: 10.0,
                    limits: limits.scaled(0.5),
                },
                Shift {
                    at: 25.0,
                    limits: limits.clone(),
                },
            ];
            let mix = Mix {
                creates: 200,
                comments: 900,
                targets: 60,
                ..Mix::default()
            };
            spec_of(limits, mix, shifts)
        }
        Profile::Noise => {
            let limits = Limits {
                faults: Faults {
                    gateway_429: 0.03,
                    ..Faults::default()
                },
                ..no_quota(documented)
            };
            let mix = Mix {
                creates: 300,
                comments: 1500,
                targets: 60,
                ..Mix::default()
            };
            spec_of(limits, mix, Vec::new())
        }
        Profile::Faults => {
            let limits = Limits {
                faults: Faults {
                    gateway_429: 0.05,
                    error_503: 0.05,
                    error_500: 0.03,
                    drop_before: 0.03,
                    drop: 0.03,
                    slow: 0.05,
                    slow_ms: 2000,
                    ..Faults::default()
                },
                ..no_quota(documented)
            };
            let mix = Mix {
                creates: 150,
                comments: 300,
                targets: 30,
                ..Mix::default()
            };
            spec_of(limits, mix, Vec::new())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_profile_holds_writes_that_cannot_be_bulked() {
        for p in Profile::DEFAULT
            .into_iter()
            .chain([Profile::Smoke, Profile::Chaos])
        {
            let s = spec(p).expect("a single-event profile");
            assert!(
                s.needs.iter().any(|n| n.issue.is_some()),
                "{} has only bulkable work",
                p.name()
            );
        }
    }

    #[test]
    fn creates_are_needed_in_bulk_and_the_rest_one_call_each() {
        let (events, needs) = workload(&Mix {
            creates: 120,
            comments: 10,
            updates: 4,
            transitions: 9,
            targets: 3,
        });
        assert_eq!(events.len(), 120 + 10 + 4 + 3, "one transition per issue");
        let bulk: usize = needs
            .iter()
            .filter(|n| n.issue.is_none())
            .map(|n| n.count)
            .sum();
        assert_eq!(bulk, 3);
        let single: usize = needs
            .iter()
            .filter(|n| n.issue.is_some())
            .map(|n| n.count)
            .sum();
        assert_eq!(single, 10 + 4 + 3);
    }
}
