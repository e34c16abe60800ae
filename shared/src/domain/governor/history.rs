//! What one worker saw of Jira's answers lately: the evidence the learning
//! rules read when a throttle arrives. Kept per worker (no store writes on
//! success); a worker's counts stand for the site through its share of the
//! pace, since every worker paces at the same share.

use super::CallKind;
use crate::domain::time::Timestamp;
use std::collections::{BTreeMap, VecDeque};

/// The accepted rate is measured over this window.
pub const RATE_WINDOW_MS: i64 = 1000;
/// Unexplained 429s are told from noise over this window.
pub const NOISE_WINDOW_MS: i64 = 5000;
/// Writes to one issue are remembered this long (Jira's longer per-issue
/// window is 30 s).
pub const WRITES_WINDOW_MS: i64 = 60_000;
/// Issues remembered at once; the least recently written go first.
const MAX_ISSUES: usize = 256;

/// How Jira answered one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Accepted,
    /// A 429 for writing one issue too often: the endpoint's bucket let it
    /// through (it counts towards the endpoint's accepted rate), the issue
    /// did not take it.
    IssueThrottled,
    /// Any other 429; `unexplained` when it named no reason.
    Throttled {
        unexplained: bool,
    },
}

/// What a throttle is judged by.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Evidence {
    /// Calls of the throttled endpoint Jira accepted over the last second,
    /// for the whole site. None when too few calls were seen to say.
    pub accepted_per_s: Option<f64>,
    /// The same since the first 429 of that second, once a quarter second
    /// has passed: a bucket that refused once is empty, so what it accepts
    /// after is its refill rate — the limit itself, free of the burst its
    /// capacity let through before.
    pub accepted_since_throttle: Option<f64>,
    /// Writes to the throttled issue Jira accepted lately: their ages in ms
    /// before now, oldest first.
    pub issue_writes: Vec<i64>,
    /// Over the noise window: unexplained 429s (this one included) and all
    /// answers.
    pub unexplained: (u32, u32),
}

#[derive(Debug, Clone, Copy)]
struct Run {
    start: Timestamp,
    last: Timestamp,
    accepted: u32,
    refused: u32,
}

#[derive(Debug, Default)]
pub struct History {
    /// Per endpoint: (when, accepted) over the rate window.
    calls: BTreeMap<String, VecDeque<(Timestamp, bool)>>,
    /// Per endpoint: the run of calls since it was last idle for a second
    /// (its bucket full at the start): when it began, calls accepted, and
    /// whether any was refused.
    runs: BTreeMap<String, Run>,
    /// Every answer: (when, unexplained 429) over the noise window.
    answers: VecDeque<(Timestamp, bool)>,
    /// Per issue: accepted writes over the writes window.
    writes: BTreeMap<String, VecDeque<Timestamp>>,
}

fn trim<T>(q: &mut VecDeque<T>, at: impl Fn(&T) -> Timestamp, now: Timestamp, window: i64) {
    while q.front().is_some_and(|e| now.0 - at(e).0 >= window) {
        q.pop_front();
    }
}

impl History {
    pub fn record(&mut self, call: &CallKind, answer: Answer, now: Timestamp) {
        // Through the endpoint's bucket, that is.
        let accepted = matches!(answer, Answer::Accepted | Answer::IssueThrottled);
        let run = self.runs.entry(call.endpoint.clone()).or_insert(Run {
            start: now,
            last: now,
            accepted: 0,
            refused: 0,
        });
        if now.0 - run.last.0 >= RATE_WINDOW_MS {
            *run = Run {
                start: now,
                last: now,
                accepted: 0,
                refused: 0,
            };
        }
        run.last = now;
        if accepted {
            run.accepted += 1;
        } else {
            run.refused += 1;
        }
        let calls = self.calls.entry(call.endpoint.clone()).or_default();
        calls.push_back((now, accepted));
        trim(calls, |e| e.0, now, RATE_WINDOW_MS);
        self.answers
            .push_back((now, answer == Answer::Throttled { unexplained: true }));
        trim(&mut self.answers, |e| e.0, now, NOISE_WINDOW_MS);
        if let (Answer::Accepted, true, Some(issue)) = (answer, call.write, &call.issue) {
            let q = self.writes.entry(issue.clone()).or_default();
            q.push_back(now);
            trim(q, |t| *t, now, WRITES_WINDOW_MS);
            if self.writes.len() > MAX_ISSUES {
                let stalest = self
                    .writes
                    .iter()
                    .min_by_key(|(_, q)| q.back().copied().unwrap_or_default())
                    .map(|(k, _)| k.clone());
                if let Some(k) = stalest {
                    self.writes.remove(&k);
                }
            }
        }
    }

    /// Calls of `endpoint` answered over the last second, per second.
    pub fn sent_per_s(&self, endpoint: &str, now: Timestamp) -> f64 {
        self.calls.get(endpoint).map_or(0.0, |q| {
            q.iter()
                .filter(|(at, _)| now.0 - at.0 < RATE_WINDOW_MS)
                .count() as f64
                * 1000.0
                / RATE_WINDOW_MS as f64
        })
    }

    /// Accepted writes to `issue` within the last `window_ms`, oldest first.
    pub fn writes_within(&self, issue: &str, now: Timestamp, window_ms: i64) -> Vec<Timestamp> {
        self.writes.get(issue).map_or_else(Vec::new, |q| {
            q.iter()
                .filter(|t| now.0 - t.0 < window_ms)
                .copied()
                .collect()
        })
    }

    /// The evidence for a throttle of `call` just recorded. `share` is this
    /// worker's fraction of the site's pace.
    pub fn evidence(&self, call: &CallKind, now: Timestamp, share: f64) -> Evidence {
        let recent = |at: Timestamp, window: i64| now.0 - at.0 < window;
        let accepted_per_s = self.calls.get(&call.endpoint).and_then(|q| {
            let seen = q.iter().filter(|(at, _)| recent(*at, RATE_WINDOW_MS));
            let (mut all, mut ok) = (0u32, 0u32);
            for (_, accepted) in seen {
                all += 1;
                ok += u32::from(*accepted);
            }
            // Three answers are the least that say anything; none accepted
            // says the measure missed (the bucket refills), not "zero".
            (all >= 3 && ok > 0).then(|| ok as f64 * 1000.0 / RATE_WINDOW_MS as f64 / share)
        });
        // The first 429 of a run that began with a full bucket: Jira let
        // through its second of burst plus its rate since, so the rate is
        // what was accepted over one second more than the run lasted —
        // Atlassian's buckets hold one second of their rate. Later in the
        // run the window's count says more.
        let first_of_run = self.runs.get(&call.endpoint).and_then(|r| {
            let lasted = now.0 - r.start.0;
            (r.refused == 1 && r.accepted >= 3 && lasted <= RATE_WINDOW_MS)
                .then(|| f64::from(r.accepted) * 1000.0 / (RATE_WINDOW_MS + lasted) as f64 / share)
        });
        let accepted_per_s = first_of_run.or(accepted_per_s);
        let accepted_since_throttle = self.calls.get(&call.endpoint).and_then(|q| {
            let first = q
                .iter()
                .position(|(at, accepted)| !accepted && recent(*at, RATE_WINDOW_MS))?;
            let since = q[first].0;
            let elapsed = now.0 - since.0;
            let after = q.iter().skip(first + 1);
            let (mut all, mut ok) = (0u32, 0u32);
            for (_, accepted) in after {
                all += 1;
                ok += u32::from(*accepted);
            }
            (elapsed >= 250 && all >= 3 && ok > 0)
                .then(|| ok as f64 * 1000.0 / elapsed as f64 / share)
        });
        let issue_writes = call
            .issue
            .as_ref()
            .map(|i| {
                self.writes_within(i, now, WRITES_WINDOW_MS)
                    .iter()
                    .map(|t| now.0 - t.0)
                    .collect()
            })
            .unwrap_or_default();
        let (mut bare, mut all) = (0u32, 0u32);
        for (at, unexplained) in &self.answers {
            if recent(*at, NOISE_WINDOW_MS) {
                all += 1;
                bare += u32::from(*unexplained);
            }
        }
        Evidence {
            accepted_per_s,
            accepted_since_throttle,
            issue_writes,
            unexplained: (bare, all),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(endpoint: &str, issue: Option<&str>) -> CallKind {
        CallKind {
            endpoint: endpoint.into(),
            write: true,
            issue: issue.map(String::from),
            bulk: false,
        }
    }

    #[test]
    fn the_accepted_rate_counts_the_last_second_for_the_whole_site() {
        let mut h = History::default();
        let c = call("POST /i", None);
        for ms in (0..2000).step_by(100) {
            h.record(&c, Answer::Accepted, Timestamp(ms));
        }
        h.record(
            &c,
            Answer::Throttled { unexplained: false },
            Timestamp(2000),
        );
        // 1100..=1900 accepted: 9 calls in the last second, one worker of four.
        let e = h.evidence(&c, Timestamp(2000), 0.25);
        assert_eq!(e.accepted_per_s, Some(36.0));
    }

    #[test]
    fn after_a_429_the_accepted_rate_is_the_buckets_refill() {
        let mut h = History::default();
        let c = call("POST /i", None);
        // 40/s for half a second (the bucket's burst), then a 429, then 4
        // of every 10 calls accepted: a bucket refilling at 16/s.
        for ms in (0..500).step_by(25) {
            h.record(&c, Answer::Accepted, Timestamp(ms));
        }
        h.record(&c, Answer::Throttled { unexplained: false }, Timestamp(500));
        for (i, ms) in (525..=1000).step_by(25).enumerate() {
            let answer = if i % 5 < 2 {
                Answer::Accepted
            } else {
                Answer::Throttled { unexplained: false }
            };
            h.record(&c, answer, Timestamp(ms));
        }
        let e = h.evidence(&c, Timestamp(1000), 1.0);
        assert_eq!(e.accepted_since_throttle, Some(16.0));
        assert!(
            e.accepted_per_s.unwrap() > 25.0,
            "the window still holds the burst"
        );
    }

    #[test]
    fn the_first_429_of_a_fresh_run_discounts_the_buckets_second_of_burst() {
        let mut h = History::default();
        let c = call("POST /i", None);
        // 80/s against a 20/s bucket holding 20: 26 accepted in 330 ms.
        for i in 0..26 {
            h.record(&c, Answer::Accepted, Timestamp(5_000 + i * 12));
        }
        h.record(
            &c,
            Answer::Throttled { unexplained: false },
            Timestamp(5_330),
        );
        let rate = h
            .evidence(&c, Timestamp(5_330), 1.0)
            .accepted_per_s
            .unwrap();
        assert!((rate - 26.0 / 1.33).abs() < 0.01, "{rate}");
        // A later 429 in the same run reads the window.
        h.record(
            &c,
            Answer::Throttled { unexplained: false },
            Timestamp(5_400),
        );
        let rate = h
            .evidence(&c, Timestamp(5_400), 1.0)
            .accepted_per_s
            .unwrap();
        assert_eq!(rate, 26.0);
    }

    #[test]
    fn too_few_answers_measure_nothing() {
        let mut h = History::default();
        let c = call("POST /i", None);
        h.record(&c, Answer::Accepted, Timestamp(0));
        h.record(&c, Answer::Throttled { unexplained: false }, Timestamp(10));
        assert_eq!(h.evidence(&c, Timestamp(10), 1.0).accepted_per_s, None);
    }

    #[test]
    fn a_per_issue_429_passed_the_endpoints_bucket_but_is_no_write() {
        let mut h = History::default();
        let c = call("POST /i/{key}/comment", Some("OPS-1"));
        for ms in [0, 100, 200] {
            h.record(&c, Answer::Accepted, Timestamp(ms));
        }
        h.record(&c, Answer::IssueThrottled, Timestamp(300));
        h.record(&c, Answer::Throttled { unexplained: false }, Timestamp(400));
        let e = h.evidence(&c, Timestamp(400), 1.0);
        assert_eq!(e.issue_writes, [400, 300, 200]);
        // The run: 4 through the bucket, then its first refusal.
        assert_eq!(e.accepted_per_s, Some(4.0 * 1000.0 / 1400.0));
    }

    #[test]
    fn writes_to_an_issue_are_counted_from_the_first_still_remembered() {
        let mut h = History::default();
        let c = call("PUT /issue/{key}", Some("OPS-1"));
        for ms in [0, 500, 1000, 1500] {
            h.record(&c, Answer::Accepted, Timestamp(ms));
        }
        h.record(
            &c,
            Answer::Throttled { unexplained: false },
            Timestamp(1600),
        );
        assert_eq!(
            h.evidence(&c, Timestamp(1600), 1.0).issue_writes,
            [1600, 1100, 600, 100]
        );
        let other = call("PUT /issue/{key}", Some("OPS-2"));
        assert!(
            h.evidence(&other, Timestamp(1600), 1.0)
                .issue_writes
                .is_empty()
        );
    }

    #[test]
    fn unexplained_429s_are_counted_against_every_answer_of_the_window() {
        let mut h = History::default();
        let c = call("GET /x", None);
        for ms in 0..10 {
            h.record(&c, Answer::Accepted, Timestamp(ms * 10));
        }
        h.record(&c, Answer::Throttled { unexplained: true }, Timestamp(200));
        assert_eq!(h.evidence(&c, Timestamp(200), 1.0).unexplained, (1, 11));
        h.record(&c, Answer::Throttled { unexplained: true }, Timestamp(6000));
        assert_eq!(
            h.evidence(&c, Timestamp(6000), 1.0).unexplained,
            (1, 1),
            "older answers left the window"
        );
    }
}
