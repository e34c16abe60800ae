//! The governor as a worker uses it: before a Jira call, ask
//! ([`Governor::permit`]); after, report what Jira said
//! ([`Governor::observe`]). The rules are in [`crate::domain::governor`];
//! this file moves state between the worker's local view and the shared
//! store row: read every `refresh`, written only when a signal changes it.
//!
//! Short waits (pacing) are slept here; longer ones come back as
//! [`TrackerError::Held`] so the job returns to the queue instead of holding
//! a worker.

use crate::domain::degraded::HealthRules;
use crate::domain::governor::quota::announced_quota;
use crate::domain::governor::{Answer, CallKind, LocalView, Permit, SiteGovernor, Tunables};
use crate::domain::ratelimit::{LimitReason, RateLimitSignal};
use crate::domain::time::Timestamp;
use crate::ports::{Clock, GovernorStore, TrackerError};
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

pub struct GovernorConfig {
    /// The Jira site, as the shared row's key.
    pub site: String,
    /// When the site degrades and recovers.
    pub health: HealthRules,
    /// Workers sharing the site's pace (Lambda: the maximum concurrency).
    pub workers: usize,
    pub tunables: Tunables,
    /// How stale the local copy of the shared state may get.
    pub refresh: Duration,
    /// Waits up to this long are slept in the worker.
    pub max_inline_wait: Duration,
}

impl GovernorConfig {
    pub fn new(site: impl Into<String>, workers: usize) -> Self {
        GovernorConfig {
            site: site.into(),
            health: HealthRules::default(),
            workers,
            tunables: Tunables::default(),
            refresh: Duration::from_millis(250),
            max_inline_wait: Duration::from_millis(1500),
        }
    }
}

struct View {
    local: LocalView,
    version: u64,
}

pub struct Governor<'a, S, C> {
    store: &'a S,
    clock: &'a C,
    config: GovernorConfig,
    view: Mutex<Option<View>>,
}

impl<'a, S: GovernorStore, C: Clock> Governor<'a, S, C> {
    pub fn new(store: &'a S, clock: &'a C, config: GovernorConfig) -> Self {
        Governor {
            store,
            clock,
            config,
            view: Mutex::new(None),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<View>> {
        self.view.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reloads the shared state when the local copy is stale, and grows the
    /// pace for throttle-free time (at most one writer wins each step).
    async fn refresh(&self, now: Timestamp) {
        let stale = self
            .lock()
            .as_ref()
            .is_none_or(|v| now.0 - v.local.fetched_at.0 >= self.config.refresh.as_millis() as i64);
        if !stale {
            return;
        }
        let (mut shared, version) = match self.store.load_governor(&self.config.site).await {
            Ok(loaded) => loaded,
            Err(e) => {
                // Fail open on a store hiccup: Jira's own 429s still guard.
                tracing::warn!(error = %e, "governor state unreadable; keeping the local view");
                return;
            }
        };
        let mut version = version;
        let limited: Vec<String> = match self.lock().as_ref() {
            Some(v) => shared
                .endpoints
                .keys()
                .filter(|e| v.local.recently_limited(e, now))
                .cloned()
                .collect(),
            None => Vec::new(),
        };
        if shared.grow(now, &self.config.tunables, |e| {
            limited.iter().any(|l| l == e)
        }) {
            shared.prune(now);
            if let Ok(true) = self
                .store
                .save_governor(&self.config.site, &shared, version)
                .await
            {
                version += 1;
            }
        }
        let mut guard = self.lock();
        match guard.as_mut() {
            Some(v) => {
                v.local.shared = shared;
                v.local.fetched_at = now;
                v.version = version;
            }
            None => {
                *guard = Some(View {
                    local: LocalView::new(shared, now, self.config.workers, self.config.tunables),
                    version,
                })
            }
        }
    }

    /// Waits (briefly) until the call may go, or says how long it is held.
    pub async fn permit(&self, call: &CallKind) -> Result<(), TrackerError> {
        let mut settled = false;
        let mut slotted = false;
        loop {
            let now = self.clock.now();
            self.refresh(now).await;
            // Degraded mode first: it holds risky writes whatever else
            // would let them go.
            let (degraded, quiet) = match self.lock().as_ref() {
                Some(v) => {
                    let h = &v.local.shared.health;
                    let quiet = h.degraded.as_ref().is_some_and(|d| {
                        now.0 - d.last_failure.0 >= self.config.health.quiet.as_millis() as i64
                    });
                    (h.holds(call.write, &call.endpoint), quiet)
                }
                None => (false, false),
            };
            if quiet && !settled {
                // Once per call: a store that cannot be written must not
                // spin this loop.
                settled = true;
                let rules = self.config.health;
                self.update(now, |g| {
                    g.health.settle(now, &rules);
                })
                .await;
                continue;
            }
            if degraded {
                let since = self
                    .lock()
                    .as_ref()
                    .and_then(|v| v.local.shared.health.degraded.as_ref().map(|d| d.since))
                    .unwrap_or(now);
                return Err(TrackerError::Held {
                    wait: self.config.health.hold,
                    reason: format!(
                        "site degraded since {}: transitions and edits wait",
                        since.to_rfc3339()
                    ),
                });
            }
            let known = self
                .lock()
                .as_ref()
                .is_none_or(|v| v.local.shared.endpoints.contains_key(&call.endpoint));
            if !known {
                // A first call to this endpoint starts its pace (slow start).
                let tunables = self.config.tunables;
                self.update(now, |g| g.track(&call.endpoint, now, &tunables))
                    .await;
            }
            if let (false, true, Some(issue)) = (slotted, call.write, &call.issue) {
                let hot = self
                    .lock()
                    .as_ref()
                    .is_some_and(|v| v.local.shared.issue_is_hot(issue, now));
                if hot {
                    // Take the issue's next write slot (a shared write), or
                    // learn how long until one is near.
                    let horizon = self.config.max_inline_wait;
                    let slot = std::sync::Mutex::new(None);
                    self.update(now, |g| {
                        *slot.lock().unwrap_or_else(|p| p.into_inner()) =
                            g.claim_issue_slot(issue, now, horizon);
                    })
                    .await;
                    let slot = *slot.lock().unwrap_or_else(|p| p.into_inner());
                    match slot {
                        Some(at) => {
                            // The issue's turn; the endpoint's pace still
                            // applies (hot issues are many on a strict site).
                            tokio::time::sleep(now.until(at)).await;
                            slotted = true;
                            continue;
                        }
                        None => {
                            let wait = self
                                .lock()
                                .as_ref()
                                .and_then(|v| v.local.shared.issue_wait(issue, now));
                            if let Some(wait) = wait {
                                return Err(TrackerError::Held {
                                    wait,
                                    reason: format!("writes to {issue} held by Jira"),
                                });
                            }
                        }
                    }
                }
            }
            let permit = match self.lock().as_mut() {
                Some(v) if slotted => v.local.permit_in_slot(call, now),
                Some(v) => v.local.permit(call, now),
                None => Permit::Go,
            };
            match permit {
                Permit::Go => {
                    tracing::trace!(endpoint = %call.endpoint, "call permitted");
                    return Ok(());
                }
                Permit::Wait { wait, .. } if wait <= self.config.max_inline_wait => {
                    tokio::time::sleep(wait).await
                }
                Permit::Wait { wait, reason } => return Err(TrackerError::Held { wait, reason }),
            }
        }
    }

    /// Learns from Jira's answer; writes the shared state when it changes.
    pub async fn observe(&self, call: &CallKind, result: Result<&RateLimitSignal, &TrackerError>) {
        let now = self.clock.now();
        match result {
            Ok(signal) => {
                if let Some(v) = self.lock().as_mut() {
                    v.local.record(call, Answer::Accepted, now);
                }
                // Writes only while degraded or to end a run of failures:
                // a healthy site's successes never touch the shared row.
                let tracked = self.lock().as_ref().is_some_and(|v| {
                    let h = &v.local.shared.health;
                    h.is_degraded() || !h.failures.is_empty()
                });
                if tracked {
                    let rules = self.config.health;
                    self.update(now, |g| {
                        g.health.on_success(now, &rules);
                    })
                    .await;
                }
                let recovered = self.lock().as_ref().is_some_and(|v| {
                    v.local.shared.unexplained > 0 && v.local.shared.paused_until <= now
                });
                if recovered {
                    // A success after an unexplained backoff: the next one
                    // starts from the shortest wait again.
                    self.update(now, |g| {
                        if g.paused_until <= now {
                            g.unexplained = 0;
                        }
                    })
                    .await;
                }
                // The quota Jira announces, shared when it changes (rarely),
                // for the console's charts.
                let announced = announced_quota(signal).filter(|q| {
                    self.lock()
                        .as_ref()
                        .is_some_and(|v| v.local.shared.quota != Some(*q))
                });
                if let Some(q) = announced {
                    self.update(now, |g| g.quota = Some(q)).await;
                }
                let resume = self
                    .lock()
                    .as_mut()
                    .and_then(|v| v.local.observe_quota(signal, now));
                if let Some(until) = resume {
                    tracing::debug!(site = %self.config.site, "points quota down to the reserve; bulk work waits");
                    self.update(now, |g| {
                        g.bulk_paused_until = g.bulk_paused_until.max(until)
                    })
                    .await;
                }
            }
            Err(TrackerError::Throttled { signal, .. }) => {
                let answer = match signal.reason {
                    Some(LimitReason::PerIssueWrite) => Answer::IssueThrottled,
                    ref reason => Answer::Throttled {
                        unexplained: reason.is_none(),
                    },
                };
                let evidence = self
                    .lock()
                    .as_mut()
                    .map(|v| {
                        v.local.observe_quota(signal, now);
                        v.local.record(call, answer, now);
                        v.local.evidence(call, now)
                    })
                    .unwrap_or_default();
                tracing::debug!(
                    site = %self.config.site,
                    endpoint = %call.endpoint,
                    reason = signal.reason.as_ref().map_or("none", |r| r.as_str()),
                    accepted_per_s = evidence.accepted_per_s.unwrap_or(0.0),
                    accepted_since_throttle = evidence.accepted_since_throttle.unwrap_or(0.0),
                    "throttled by Jira"
                );
                let tunables = self.config.tunables;
                let paused = |v: &Option<View>| -> Option<(Timestamp, Option<String>)> {
                    let v = v.as_ref()?;
                    (v.local.shared.paused_until > now).then(|| {
                        (
                            v.local.shared.paused_until,
                            v.local.shared.pause_reason.clone(),
                        )
                    })
                };
                let was_paused = paused(&self.lock()).is_some();
                let announced = announced_quota(signal);
                self.update(now, |g| {
                    g.on_throttle(call, signal, &evidence, now, &tunables);
                    if announced.is_some() {
                        g.quota = announced;
                    }
                })
                .await;
                if !was_paused && let Some((until, why)) = paused(&self.lock()) {
                    tracing::warn!(site = %self.config.site, until = %until.to_rfc3339(), reason = why.as_deref().unwrap_or("throttled"), "site paused: every call waits");
                }
            }
            Err(TrackerError::Transient { .. }) => {
                let rules = self.config.health;
                self.update(now, |g| {
                    g.health.on_failure(now, &rules);
                })
                .await;
                if let Some(v) = self.lock().as_ref()
                    && let Some(d) = &v.local.shared.health.degraded
                    && d.since == now
                {
                    tracing::warn!(site = %self.config.site, reason = %d.reason, "site degraded: transitions and edits wait until it recovers");
                }
            }
            Err(_) => {}
        }
    }

    /// Read-modify-write of the shared row, retried on a lost race.
    async fn update(&self, now: Timestamp, change: impl Fn(&mut SiteGovernor)) {
        for _ in 0..8 {
            let (mut shared, version) = match self.store.load_governor(&self.config.site).await {
                Ok(loaded) => loaded,
                Err(e) => {
                    tracing::warn!(error = %e, "governor state unreadable; signal not shared");
                    return;
                }
            };
            let before = shared.clone();
            change(&mut shared);
            shared.prune(now);
            if shared == before {
                // Old news (another worker wrote it already): no write.
                if let Some(v) = self.lock().as_mut() {
                    v.local.shared = shared;
                    v.local.fetched_at = now;
                    v.version = version;
                }
                return;
            }
            match self
                .store
                .save_governor(&self.config.site, &shared, version)
                .await
            {
                Ok(true) => {
                    tracing::debug!(site = %self.config.site, paces = %shared.endpoints.iter().map(|(k, p)| format!("{k}={:.1}/s", p.rate)).collect::<Vec<_>>().join(", "), paused_until = shared.paused_until.0, "governor updated");
                    if let Some(v) = self.lock().as_mut() {
                        v.local.shared = shared;
                        v.local.fetched_at = now;
                        v.version = version + 1;
                    }
                    return;
                }
                Ok(false) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "governor state not saved");
                    return;
                }
            }
        }
        tracing::warn!(site = %self.config.site, "governor update lost eight races in a row; dropped");
    }
}

/// What the executor needs of a governor; [`Ungoverned`] for callers that
/// pace elsewhere (or tests of other rules).
pub trait Pace: Send + Sync {
    fn permit(&self, call: &CallKind) -> impl Future<Output = Result<(), TrackerError>> + Send;
    fn observe(
        &self,
        call: &CallKind,
        result: Result<&RateLimitSignal, &TrackerError>,
    ) -> impl Future<Output = ()> + Send;
}

impl<S: GovernorStore, C: Clock> Pace for Governor<'_, S, C> {
    async fn permit(&self, call: &CallKind) -> Result<(), TrackerError> {
        Governor::permit(self, call).await
    }

    async fn observe(&self, call: &CallKind, result: Result<&RateLimitSignal, &TrackerError>) {
        Governor::observe(self, call, result).await
    }
}

/// No pacing: every call goes at once.
pub struct Ungoverned;

impl Pace for Ungoverned {
    async fn permit(&self, _: &CallKind) -> Result<(), TrackerError> {
        Ok(())
    }

    async fn observe(&self, _: &CallKind, _: Result<&RateLimitSignal, &TrackerError>) {}
}

/// Announces the site's degraded-mode changes not announced yet, then
/// records them as announced (the site's trail keeps them either way).
pub async fn announce_health<S: GovernorStore, N: crate::ports::Notifier>(
    store: &S,
    site: &str,
    notifier: &N,
) -> Result<usize, crate::ports::StoreError> {
    let (mut shared, version) = store.load_governor(site).await?;
    let changes: Vec<_> = shared.health.unannounced().cloned().collect();
    if changes.is_empty() {
        return Ok(0);
    }
    for c in &changes {
        let notice =
            crate::domain::notice::Notice::SiteHealth(crate::domain::notice::HealthNotice {
                site: site.to_string(),
                degraded: c.degraded,
                why: c.why.clone(),
                at: c.at.to_rfc3339(),
            });
        if let Err(e) = notifier.notify(&notice).await {
            tracing::warn!(site, error = %e, "site health notice not sent; the next sweep retries it");
            return Ok(0);
        }
    }
    // Sent: record it, through any number of lost races (a worker's write
    // between our read and our save), so the next sweep does not announce
    // them again. Only a crash right here sends one twice.
    let announced = changes.last().map_or(0, |c| c.seq);
    let mut version = version;
    for _ in 0..8 {
        shared.health.notified_seq = shared.health.notified_seq.max(announced);
        if store.save_governor(site, &shared, version).await? {
            return Ok(changes.len());
        }
        (shared, version) = store.load_governor(site).await?;
    }
    tracing::warn!(
        site,
        "site health notices sent but not recorded; the next sweep may repeat them"
    );
    Ok(changes.len())
}

/// An operator clears the site's degraded mode. False when it was not
/// degraded.
pub async fn clear_degraded<S: GovernorStore>(
    store: &S,
    site: &str,
    who: &str,
    now: Timestamp,
) -> Result<bool, crate::ports::StoreError> {
    for _ in 0..8 {
        let (mut shared, version) = store.load_governor(site).await?;
        if !shared.health.clear(now, who) {
            return Ok(false);
        }
        if store.save_governor(site, &shared, version).await? {
            tracing::info!(site, who, "degraded mode cleared by an operator");
            return Ok(true);
        }
    }
    Err(crate::ports::StoreError::Backend(
        "the site's row kept changing; try again".into(),
    ))
}
