//! A model of the executor's exactly-once protocol, checked with
//! [stateright] over every interleaving of workers, the entity's lease, the
//! queue's redeliveries, Jira's late, refused and lost answers, and crashes.
//!
//! It mirrors `shared/src/app/execute/` step by step (the names in
//! brackets are the functions each action stands for):
//!
//! | action | code |
//! |---|---|
//! | `Admit` — the next event arrives (revisions in admission order) | `Ingest::admit` |
//! | `Pick` — a message arrives, the lease is taken (new token) | `Executor::run_reported` → `take_lease` |
//! | `Prepare` — the job goes `RUNNING`, pending work is merged, another entity's queued create is taken as a bulk partner (its lease, its own token) | `prepare` → `transition(Lease)`, `coalesced`; `bulk_create` |
//! | `Step` — renew, reconcile a started step, skip older fields, start mark, send | `run_steps` → `renew`, `reconcile_step`, `newest_only`, `save_progress`, `call` |
//! | `Land` / `Refuse` / `Vanish` — Jira applies, refuses, or never gets the request | jira-sim route faults |
//! | `Answer` / `GiveUp` — the answer arrives, or the client gives up (lost answer, timeout) | `held_through`, `on_error` |
//! | `Checkpoint` — the outcome is written, the next step or the end | `checkpoint`, `transition(Succeed/Fail)`, `settle_merged` |
//! | `FollowCarrier` — a merged job's own message | `follow_carrier` |
//! | `Crash`, `Expire` — a worker dies; an entity's lease runs out | — |
//!
//! Time is not modelled as a clock. Each rule of the protocol that is about
//! time is modelled by what it guarantees:
//!
//! * the **honest window** (a call may land until its start + the Jira
//!   timeout; reconcile concludes "never landed" only after that plus the
//!   search lag): a reconcile may conclude "not found" only when no request
//!   of that step is still in flight at Jira;
//! * **leases that outlast a call** (renewed before each step and while a
//!   call is in flight; no call starts without a whole call's time left):
//!   a lease can run out only while its holder has no request in flight.
//!
//! [`Rules::OLD`] is the protocol before issue 20; each of its rules can be
//! switched on alone, and the tests keep the counterexample each old rule
//! allows as an expected failure.

use stateright::{Model, Property};

/// Which rules the protocol follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rules {
    /// Reconcile waits out start + timeout + lag (else: the lag alone from
    /// the start mark).
    pub honest_window: bool,
    /// Writes carry the lease's fencing token and a refused one stops the
    /// worker; leases outlast calls (else: writes check the job's state
    /// only, a refused checkpoint is ignored, and a lease may run out
    /// mid-call).
    pub fencing: bool,
    /// A running job whose worker is gone is merged like queued work, and
    /// an edit skips fields a newer revision set (else: only queued and
    /// waiting jobs merge, and edits are sent as they are).
    pub ordered_edits: bool,
    /// Merged jobs stay `MERGED` until their carrier ends and end as it did
    /// (else: `SUPERSEDED` at once).
    pub carriers: bool,
}

impl Rules {
    pub const NEW: Rules = Rules {
        honest_window: true,
        fencing: true,
        ordered_edits: true,
        carriers: true,
    };
    pub const OLD: Rules = Rules {
        honest_window: false,
        fencing: false,
        ordered_edits: false,
        carriers: false,
    };
}

/// What the jobs on the one entity are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scenario {
    /// One job: create the issue, then comment on it (both steps not safe
    /// to repeat blindly).
    CreateThenComment,
    /// Two edits of one field of an existing issue, the first older. The
    /// older one may be unmergeable (it also adds a sub-task).
    Edits { older_mergeable: bool },
    /// Two creates on two entities, which a worker may carry in one bulk
    /// call (the other's lease taken as a partner's).
    BulkOfTwo,
}

/// Kinds of step, as the plan names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StepKind {
    Create,
    Comment,
    Edit,
}

impl StepKind {
    /// `Step::needs_reconcile`.
    fn needs_reconcile(self) -> bool {
        !matches!(self, StepKind::Edit)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum JobState {
    /// Not admitted yet: jobs arrive in revision order, any time.
    Unborn,
    Queued,
    Running,
    Waiting,
    Merged,
    Succeeded,
    Superseded,
    Failed,
}

impl JobState {
    fn runnable(self) -> bool {
        matches!(
            self,
            JobState::Queued | JobState::Running | JobState::Waiting
        )
    }
    fn terminal(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Superseded | JobState::Failed
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Job {
    pub state: JobState,
    pub steps: Vec<StepKind>,
    pub steps_done: u8,
    /// The start mark of a step not safe to repeat.
    pub started: bool,
    pub merged_into: Option<u8>,
    /// The revision its edit carries (its admission order).
    pub rev: u8,
    pub mergeable: bool,
    /// The entity (and so the lease) it belongs to.
    pub entity: u8,
}

/// One entity's lease.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Lease {
    pub holder: Option<u8>,
    pub token: u8,
}

/// Where a worker is in `run_steps`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Pc {
    Idle,
    /// Holds the lease; `prepare` next.
    Leased,
    /// Prepared; the step at `at` next.
    Ready,
    /// A request is out.
    Calling {
        request: u8,
    },
    /// The answer is in: `Ok`, refused for good, or given up on.
    Answered(Outcome),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    Done,
    Refused,
    GaveUp,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Worker {
    pub pc: Pc,
    pub job: u8,
    pub token: u8,
    /// Its own copy of the job's progress (a worker acts on what it read).
    pub at: u8,
    /// The revision its composed edit sends (the newest it carries).
    pub rev: u8,
    /// A bulk partner: its job and the token of its lease.
    pub partner: Option<(u8, u8)>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Request {
    pub id: u8,
    pub job: u8,
    /// The bulk partner's create in the same call.
    pub also: Option<u8>,
    pub step: u8,
    pub kind_edit_rev: u8,
    pub worker: u8,
    pub state: RequestState,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RequestState {
    InFlight,
    Landed,
    Refused,
    Vanished,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct State {
    pub jobs: Vec<Job>,
    pub leases: Vec<Lease>,
    pub workers: Vec<Worker>,
    pub requests: Vec<Request>,
    pub next_request: u8,
    /// Effects in Jira, per job and step (creates and comments count).
    pub effects: Vec<Vec<u8>>,
    /// The revision whose value the edited field holds, and the newest
    /// revision recorded as applied (`revisions` in the stores).
    pub field_rev: u8,
    pub recorded_rev: u8,
    /// An older revision was applied after a newer one.
    pub regressed: bool,
    /// Per job: a request of it has landed.
    pub landed: Vec<bool>,
    pub crashes: u8,
    pub losses: u8,
    pub refusals: u8,
    pub stalls: u8,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Admit(u8),
    Pick(u8, u8),
    Prepare(u8),
    Step(u8),
    Land(u8),
    Refuse(u8),
    Vanish(u8),
    Answer(u8),
    GiveUp(u8),
    Checkpoint(u8),
    FollowCarrier(u8),
    Crash(u8),
    /// The lease of an entity runs out.
    Expire(u8),
}

/// The protocol on one entity, with `workers` workers.
#[derive(Clone, Debug)]
pub struct Protocol {
    pub rules: Rules,
    pub scenario: Scenario,
    pub workers: u8,
    /// How many of each fault may happen on one path (keeps it finite).
    pub crashes: u8,
    pub losses: u8,
    pub refusals: u8,
    pub stalls: u8,
}

impl Protocol {
    pub fn new(rules: Rules, scenario: Scenario) -> Self {
        Protocol {
            rules,
            scenario,
            workers: 2,
            crashes: 1,
            losses: 1,
            refusals: u8::from(matches!(scenario, Scenario::Edits { .. })),
            stalls: 1,
        }
    }

    fn jobs(&self) -> Vec<Job> {
        match self.scenario {
            Scenario::CreateThenComment => vec![Job {
                state: JobState::Queued,
                steps: vec![StepKind::Create, StepKind::Comment],
                steps_done: 0,
                started: false,
                merged_into: None,
                rev: 1,
                mergeable: false,
                entity: 0,
            }],
            Scenario::BulkOfTwo => (0..2)
                .map(|i| Job {
                    state: JobState::Queued,
                    steps: vec![StepKind::Create],
                    steps_done: 0,
                    started: false,
                    merged_into: None,
                    rev: 1,
                    mergeable: false,
                    entity: i,
                })
                .collect(),
            Scenario::Edits { older_mergeable } => (0..2)
                .map(|i| Job {
                    state: if i == 0 {
                        JobState::Queued
                    } else {
                        JobState::Unborn
                    },
                    steps: vec![StepKind::Edit],
                    steps_done: 0,
                    started: false,
                    merged_into: None,
                    rev: i + 1,
                    mergeable: i == 1 || older_mergeable,
                    entity: 0,
                })
                .collect(),
        }
    }

    fn entity(s: &State, job: u8) -> usize {
        s.jobs[job as usize].entity as usize
    }

    /// A write of the worker's for its job: with fencing, only while the
    /// job's lease carries its token; without, always (the state condition
    /// is checked apart).
    fn fence_holds(&self, s: &State, w: u8) -> bool {
        let worker = &s.workers[w as usize];
        !self.rules.fencing || s.leases[Self::entity(s, worker.job)].token == worker.token
    }

    /// The same for its bulk partner's writes, under the partner's lease.
    fn partner_fence_holds(&self, s: &State, job: u8, token: u8) -> bool {
        !self.rules.fencing || s.leases[Self::entity(s, job)].token == token
    }

    /// Whether `holder` has a request in flight that touches `entity`.
    fn in_flight(s: &State, holder: u8, entity: usize) -> bool {
        s.requests.iter().any(|r| {
            r.worker == holder
                && r.state == RequestState::InFlight
                && (Self::entity(s, r.job) == entity
                    || r.also.is_some_and(|a| Self::entity(s, a) == entity))
        })
    }

    /// The run ends: every lease the worker holds is released.
    fn release(s: &mut State, w: u8) {
        for lease in &mut s.leases {
            if lease.holder == Some(w) {
                lease.holder = None;
            }
        }
        s.workers[w as usize].pc = Pc::Idle;
        s.workers[w as usize].partner = None;
    }

    /// Ends the jobs carried by `carrier` as it ended (`settle_merged`).
    fn settle(&self, s: &mut State, carrier: u8) {
        let outcome = s.jobs[carrier as usize].state;
        for j in 0..s.jobs.len() {
            if s.jobs[j].merged_into == Some(carrier) && s.jobs[j].state == JobState::Merged {
                match outcome {
                    JobState::Succeeded => s.jobs[j].state = JobState::Superseded,
                    JobState::Failed => s.jobs[j].state = JobState::Failed,
                    _ => {}
                }
            }
        }
    }

    /// The job's change is in Jira (or a newer one of the same field).
    fn done_in_jira(s: &State, j: usize) -> bool {
        let job = &s.jobs[j];
        job.steps.iter().enumerate().all(|(i, k)| match k {
            StepKind::Edit => s.field_rev >= job.rev,
            _ => s.effects[j][i] >= 1,
        })
    }

    /// Token values only matter relative to each other: replace each by its
    /// rank among the tokens in use, so the state space stays finite.
    fn normalise(s: &mut State) {
        for e in 0..s.leases.len() {
            let mut live: Vec<u8> = vec![s.leases[e].token];
            for w in s.workers.iter().filter(|w| w.pc != Pc::Idle) {
                if Self::entity(s, w.job) == e {
                    live.push(w.token);
                }
                if let Some((k, t)) = w.partner
                    && Self::entity(s, k) == e
                {
                    live.push(t);
                }
            }
            live.sort_unstable();
            live.dedup();
            let rank = |t: u8| live.iter().position(|&x| x == t).unwrap_or(0) as u8;
            s.leases[e].token = rank(s.leases[e].token);
            for i in 0..s.workers.len() {
                if s.workers[i].pc == Pc::Idle {
                    continue;
                }
                if Self::entity(s, s.workers[i].job) == e {
                    s.workers[i].token = rank(s.workers[i].token);
                }
                if let Some((k, t)) = s.workers[i].partner
                    && Self::entity(s, k) == e
                {
                    s.workers[i].partner = Some((k, rank(t)));
                }
            }
        }
        for w in &mut s.workers {
            if w.pc == Pc::Idle {
                w.token = 0;
                w.partner = None;
            }
        }
        // Requests nobody waits on and Jira is done with are history; the
        // rest are renumbered in a canonical order.
        let waited: Vec<u8> = s
            .workers
            .iter()
            .filter_map(|w| match w.pc {
                Pc::Calling { request } => Some(request),
                _ => None,
            })
            .collect();
        s.requests
            .retain(|r| r.state == RequestState::InFlight || waited.contains(&r.id));
        s.requests.sort_by_key(|r| {
            (
                r.job,
                r.also,
                r.step,
                r.worker,
                r.kind_edit_rev,
                r.state,
                r.id,
            )
        });
        let renumber: Vec<(u8, u8)> = s
            .requests
            .iter()
            .enumerate()
            .map(|(i, r)| (r.id, i as u8))
            .collect();
        for w in &mut s.workers {
            if let Pc::Calling { request } = &mut w.pc
                && let Some((_, new)) = renumber.iter().find(|(old, _)| old == request)
            {
                *request = *new;
            }
        }
        for (i, r) in s.requests.iter_mut().enumerate() {
            r.id = i as u8;
        }
        s.next_request = s.requests.len() as u8;
    }

    /// `renew()` before a step: with fencing, the token must be the
    /// lease's; before, the lease had to be free or the worker's own.
    fn renew(&self, s: &mut State, w: u8) -> bool {
        let e = Self::entity(s, s.workers[w as usize].job);
        let ok = if self.rules.fencing {
            s.leases[e].token == s.workers[w as usize].token
        } else {
            s.leases[e].holder.is_none_or(|h| h == w)
        };
        if ok {
            s.leases[e].holder = Some(w);
        }
        ok
    }
}

impl Model for Protocol {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        let jobs = self.jobs();
        let effects = jobs.iter().map(|j| vec![0; j.steps.len()]).collect();
        let entities = jobs.iter().map(|j| j.entity).max().unwrap_or(0) as usize + 1;
        vec![State {
            jobs,
            leases: vec![
                Lease {
                    holder: None,
                    token: 0
                };
                entities
            ],
            workers: (0..self.workers)
                .map(|_| Worker {
                    pc: Pc::Idle,
                    job: 0,
                    token: 0,
                    at: 0,
                    rev: 0,
                    partner: None,
                })
                .collect(),
            requests: Vec::new(),
            next_request: 0,
            effects,
            field_rev: 0,
            recorded_rev: 0,
            regressed: false,
            landed: vec![false; self.jobs().len()],
            crashes: 0,
            losses: 0,
            refusals: 0,
            stalls: 0,
        }]
    }

    fn actions(&self, s: &State, actions: &mut Vec<Action>) {
        if let Some(j) = s.jobs.iter().position(|j| j.state == JobState::Unborn) {
            actions.push(Action::Admit(j as u8));
        }
        for (w, worker) in s.workers.iter().enumerate() {
            let w = w as u8;
            match &worker.pc {
                Pc::Idle => {
                    for (j, job) in s.jobs.iter().enumerate() {
                        if job.state.runnable() && s.leases[job.entity as usize].holder.is_none() {
                            actions.push(Action::Pick(w, j as u8));
                        }
                        if job.state == JobState::Merged && self.rules.carriers {
                            let carrier = job.merged_into.unwrap_or(0) as usize;
                            if s.jobs[carrier].state.terminal() {
                                actions.push(Action::FollowCarrier(j as u8));
                            }
                        }
                    }
                }
                Pc::Leased => actions.push(Action::Prepare(w)),
                Pc::Ready => actions.push(Action::Step(w)),
                Pc::Calling { request } => {
                    let r = s.requests.iter().find(|r| r.id == *request);
                    if r.is_some_and(|r| r.state != RequestState::InFlight) {
                        actions.push(Action::Answer(w));
                    }
                    // The client gives up at the call's timeout, and Jira
                    // finishes no request after it (the honest window's
                    // premise): what it gave up on has landed or vanished.
                    // The old rule assumed the search lag covered it.
                    let resolved = r.is_some_and(|r| r.state != RequestState::InFlight);
                    if s.losses < self.losses && (resolved || !self.rules.honest_window) {
                        actions.push(Action::GiveUp(w));
                    }
                }
                Pc::Answered(_) => actions.push(Action::Checkpoint(w)),
            }
            if worker.pc != Pc::Idle && s.crashes < self.crashes {
                actions.push(Action::Crash(w));
            }
        }
        for r in &s.requests {
            if r.state == RequestState::InFlight {
                actions.push(Action::Land(r.id));
                // Jira's refusal of an edit is deterministic: an edit it
                // applied once is never refused for good afterwards.
                if r.kind_edit_rev > 0 && s.refusals < self.refusals && !s.landed[r.job as usize] {
                    actions.push(Action::Refuse(r.id));
                }
                if s.losses < self.losses {
                    actions.push(Action::Vanish(r.id));
                }
            }
        }
        for (e, lease) in s.leases.iter().enumerate() {
            let Some(holder) = lease.holder else {
                continue;
            };
            let alive = s.workers[holder as usize].pc != Pc::Idle;
            // A live holder's lease runs out only when it stalls; a dead
            // one's always does. With leases renewed while a call is in
            // flight (every member's, for a bulk call), never while a
            // request of the holder's touching the entity is in flight.
            let may = (!alive || s.stalls < self.stalls)
                && (!self.rules.fencing || !Self::in_flight(s, holder, e));
            if may {
                actions.push(Action::Expire(e as u8));
            }
        }
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        let mut s = last.clone();
        match action {
            Action::Admit(j) => s.jobs[j as usize].state = JobState::Queued,
            Action::Pick(w, j) => {
                let e = Self::entity(&s, j);
                s.leases[e].holder = Some(w);
                s.leases[e].token += 1;
                let token = s.leases[e].token;
                let worker = &mut s.workers[w as usize];
                worker.pc = Pc::Leased;
                worker.job = j;
                worker.token = token;
                worker.partner = None;
            }
            Action::Prepare(w) => {
                let j = s.workers[w as usize].job as usize;
                // transition(Lease): the state must still be runnable, and
                // the fence must hold.
                if !s.jobs[j].state.runnable() || !self.fence_holds(&s, w) {
                    Self::release(&mut s, w);
                } else {
                    s.jobs[j].state = JobState::Running;
                    let fresh = s.jobs[j].steps_done == 0 && !s.jobs[j].started;
                    let mut rev = s.jobs[j].rev;
                    // coalesced(): take pending work on the entity.
                    for o in 0..s.jobs.len() {
                        if o == j {
                            continue;
                        }
                        let other = &s.jobs[o];
                        let already = other.merged_into == Some(j as u8);
                        let pending_states = if self.rules.ordered_edits {
                            matches!(
                                other.state,
                                JobState::Queued | JobState::Waiting | JobState::Running
                            )
                        } else {
                            matches!(other.state, JobState::Queued | JobState::Waiting)
                        };
                        let is_carrier = s.jobs.iter().any(|x| x.merged_into == Some(o as u8));
                        let pending = fresh
                            && other.merged_into.is_none()
                            && pending_states
                            && other.steps_done == 0
                            && !other.started
                            && other.mergeable
                            && s.jobs[j].steps.iter().all(|k| *k == StepKind::Edit)
                            && !is_carrier;
                        if already || pending {
                            rev = rev.max(other.rev);
                            if pending {
                                s.jobs[o].merged_into = Some(j as u8);
                                s.jobs[o].state = if self.rules.carriers {
                                    JobState::Merged
                                } else {
                                    JobState::Superseded
                                };
                            }
                        }
                    }
                    // bulk_create(): another entity's queued create rides
                    // along, its lease taken with a token of its own.
                    let creates_first = s.jobs[j].steps.first() == Some(&StepKind::Create);
                    let partner = (0..s.jobs.len()).find(|&k| {
                        k != j
                            && creates_first
                            && fresh
                            && s.jobs[k].entity != s.jobs[j].entity
                            && s.jobs[k].state == JobState::Queued
                            && s.jobs[k].steps_done == 0
                            && !s.jobs[k].started
                            && s.jobs[k].steps.first() == Some(&StepKind::Create)
                            && s.leases[s.jobs[k].entity as usize].holder.is_none()
                    });
                    let partner = partner.map(|k| {
                        let e = s.jobs[k].entity as usize;
                        s.leases[e].holder = Some(w);
                        s.leases[e].token += 1;
                        s.jobs[k].state = JobState::Running;
                        (k as u8, s.leases[e].token)
                    });
                    let worker = &mut s.workers[w as usize];
                    worker.at = s.jobs[j].steps_done;
                    worker.rev = rev;
                    worker.partner = partner;
                    worker.pc = Pc::Ready;
                }
            }
            Action::Step(w) => {
                let j = s.workers[w as usize].job as usize;
                let at = s.workers[w as usize].at;
                // renew(): a lost lease stops the run.
                if !self.renew(&mut s, w) {
                    Self::release(&mut s, w);
                    return Some(normalised(s));
                }
                if at as usize >= s.jobs[j].steps.len() {
                    // All steps done: SUCCEEDED (the write is fenced).
                    if self.fence_holds(&s, w) && s.jobs[j].state == JobState::Running {
                        s.jobs[j].state = JobState::Succeeded;
                        if self.rules.carriers {
                            self.settle(&mut s, j as u8);
                        }
                    }
                    Self::release(&mut s, w);
                    return Some(normalised(s));
                }
                let kind = s.jobs[j].steps[at as usize];
                if kind.needs_reconcile() && s.jobs[j].started && s.jobs[j].steps_done == at {
                    // reconcile_step(): look for the earlier attempt.
                    if s.effects[j][at as usize] >= 1 {
                        s.workers[w as usize].pc = Pc::Answered(Outcome::Done);
                        return Some(normalised(s));
                    }
                    // Its own request, or a bulk call that carried it.
                    let still_in_flight = s.requests.iter().any(|r| {
                        r.state == RequestState::InFlight
                            && ((r.job == j as u8 && r.step == at)
                                || (r.also == Some(j as u8) && at == 0))
                    });
                    if self.rules.honest_window && still_in_flight {
                        // Not visible yet and may still land: defer.
                        if self.fence_holds(&s, w) {
                            s.jobs[j].state = JobState::Waiting;
                        }
                        Self::release(&mut s, w);
                        return Some(normalised(s));
                    }
                }
                let mut rev = 0;
                if kind == StepKind::Edit {
                    rev = s.workers[w as usize].rev;
                    // newest_only(): fields a newer revision set are dropped.
                    if self.rules.ordered_edits && s.recorded_rev > rev {
                        s.workers[w as usize].pc = Pc::Answered(Outcome::Done);
                        return Some(normalised(s));
                    }
                }
                if kind.needs_reconcile() {
                    // save_progress(): the start mark, fenced.
                    if !self.fence_holds(&s, w) {
                        Self::release(&mut s, w);
                        return Some(normalised(s));
                    }
                    s.jobs[j].started = true;
                }
                // A partner whose start mark cannot be written stays out.
                let mut also = None;
                if let Some((k, t)) = s.workers[w as usize].partner {
                    if self.partner_fence_holds(&s, k, t)
                        && s.jobs[k as usize].state == JobState::Running
                    {
                        s.jobs[k as usize].started = true;
                        also = Some(k);
                    } else {
                        s.workers[w as usize].partner = None;
                    }
                }
                let id = s.next_request;
                s.next_request = s.next_request.wrapping_add(1);
                s.requests.push(Request {
                    id,
                    job: j as u8,
                    also,
                    step: at,
                    kind_edit_rev: rev,
                    worker: w,
                    state: RequestState::InFlight,
                });
                s.workers[w as usize].pc = Pc::Calling { request: id };
            }
            Action::Land(id) => {
                let r = s.requests.iter_mut().find(|r| r.id == id)?;
                r.state = RequestState::Landed;
                let (j, step, rev) = (r.job as usize, r.step as usize, r.kind_edit_rev);
                s.landed[j] = true;
                if let Some(a) = r.also {
                    s.effects[a as usize][0] += 1;
                    s.landed[a as usize] = true;
                }
                if rev > 0 {
                    if rev < s.field_rev {
                        s.regressed = true;
                    }
                    s.field_rev = rev;
                } else {
                    s.effects[j][step] += 1;
                }
            }
            Action::Refuse(id) => {
                s.refusals += 1;
                s.requests.iter_mut().find(|r| r.id == id)?.state = RequestState::Refused;
            }
            Action::Vanish(id) => {
                s.losses += 1;
                s.requests.iter_mut().find(|r| r.id == id)?.state = RequestState::Vanished;
            }
            Action::Answer(w) => {
                let Pc::Calling { request } = s.workers[w as usize].pc else {
                    return None;
                };
                let r = s.requests.iter().find(|r| r.id == request)?;
                let outcome = match r.state {
                    RequestState::Landed => Outcome::Done,
                    RequestState::Refused => Outcome::Refused,
                    RequestState::Vanished => Outcome::GaveUp,
                    RequestState::InFlight => return None,
                };
                s.workers[w as usize].pc = Pc::Answered(outcome);
            }
            Action::GiveUp(w) => {
                // The answer is lost, or the client timed out: the request
                // may still land.
                s.losses += 1;
                s.workers[w as usize].pc = Pc::Answered(Outcome::GaveUp);
            }
            Action::Checkpoint(w) => {
                let j = s.workers[w as usize].job as usize;
                let Pc::Answered(outcome) = s.workers[w as usize].pc.clone() else {
                    return None;
                };
                // The bulk partner's element of the answer, under its own
                // lease: done (its only step), or back to waiting.
                if let Some((k, t)) = s.workers[w as usize].partner.take() {
                    let kk = k as usize;
                    if self.partner_fence_holds(&s, k, t) && s.jobs[kk].state == JobState::Running {
                        match outcome {
                            Outcome::Done => {
                                s.jobs[kk].steps_done = 1;
                                s.jobs[kk].started = false;
                                s.jobs[kk].state = JobState::Succeeded;
                            }
                            _ => s.jobs[kk].state = JobState::Waiting,
                        }
                    }
                    let e = Self::entity(&s, k);
                    if s.leases[e].holder == Some(w) {
                        s.leases[e].holder = None;
                    }
                }
                let fenced_ok = self.fence_holds(&s, w);
                let running = s.jobs[j].state == JobState::Running;
                match outcome {
                    Outcome::Done => {
                        let at = s.workers[w as usize].at;
                        // checkpoint(): fenced; the old one checked the
                        // state only, and its refusal was ignored.
                        let written = fenced_ok && running;
                        if written {
                            s.jobs[j].steps_done = at + 1;
                            s.jobs[j].started = false;
                            if s.jobs[j].steps[at as usize] == StepKind::Edit
                                && self.rules.ordered_edits
                            {
                                s.recorded_rev = s.recorded_rev.max(s.workers[w as usize].rev);
                            }
                        }
                        if written || !self.rules.fencing {
                            s.workers[w as usize].at = at + 1;
                            s.workers[w as usize].pc = Pc::Ready;
                        } else {
                            Self::release(&mut s, w);
                        }
                    }
                    Outcome::Refused => {
                        if fenced_ok && running {
                            s.jobs[j].state = JobState::Failed;
                            if self.rules.carriers {
                                self.settle(&mut s, j as u8);
                            }
                        }
                        Self::release(&mut s, w);
                    }
                    Outcome::GaveUp => {
                        // on_error(Transient): defer; the start mark stays.
                        if fenced_ok && running {
                            s.jobs[j].state = JobState::Waiting;
                        }
                        Self::release(&mut s, w);
                    }
                }
            }
            Action::FollowCarrier(j) => {
                let carrier = s.jobs[j as usize].merged_into? as usize;
                match s.jobs[carrier].state {
                    JobState::Succeeded => s.jobs[j as usize].state = JobState::Superseded,
                    JobState::Failed => s.jobs[j as usize].state = JobState::Failed,
                    _ => return None,
                }
            }
            Action::Crash(w) => {
                s.crashes += 1;
                s.workers[w as usize].pc = Pc::Idle;
            }
            Action::Expire(e) => {
                let holder = s.leases[e as usize].holder?;
                if s.workers[holder as usize].pc != Pc::Idle {
                    s.stalls += 1;
                }
                s.leases[e as usize].holder = None;
            }
        }
        Some(normalised(s))
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("no effect twice", |_, s: &State| {
                s.effects.iter().flatten().all(|&n| n <= 1)
            }),
            Property::always("no older edit after a newer", |_, s: &State| !s.regressed),
            Property::always(
                "a job's record agrees with Jira when it ends",
                |_, s: &State| {
                    (0..s.jobs.len()).all(|j| match s.jobs[j].state {
                        JobState::Succeeded | JobState::Superseded => Protocol::done_in_jira(s, j),
                        _ => true,
                    })
                },
            ),
            Property::eventually("every job ends", |_, s: &State| {
                s.jobs.iter().all(|j| j.state.terminal())
            }),
            Property::sometimes("the work can succeed", |_, s: &State| {
                s.jobs
                    .iter()
                    .all(|j| matches!(j.state, JobState::Succeeded | JobState::Superseded))
            }),
        ]
    }
}

fn normalised(mut s: State) -> State {
    Protocol::normalise(&mut s);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use stateright::Checker;

    fn check(rules: Rules, scenario: Scenario) -> impl Checker<Protocol> {
        Protocol::new(rules, scenario)
            .checker()
            .threads(2)
            .spawn_bfs()
            .join()
    }

    const SCENARIOS: [Scenario; 4] = [
        Scenario::CreateThenComment,
        Scenario::BulkOfTwo,
        Scenario::Edits {
            older_mergeable: true,
        },
        Scenario::Edits {
            older_mergeable: false,
        },
    ];

    #[test]
    fn three_workers_keep_every_promise_too() {
        for scenario in [Scenario::CreateThenComment, Scenario::BulkOfTwo] {
            let checker = Protocol {
                workers: 3,
                ..Protocol::new(Rules::NEW, scenario)
            }
            .checker()
            .threads(2)
            .spawn_bfs()
            .join();
            eprintln!(
                "{scenario:?}, 3 workers: {} states",
                checker.unique_state_count()
            );
            checker.assert_properties();
        }
    }

    #[test]
    fn the_protocol_keeps_every_promise_on_every_interleaving() {
        for scenario in SCENARIOS {
            let checker = check(Rules::NEW, scenario);
            eprintln!("{scenario:?}: {} states", checker.unique_state_count());
            assert!(checker.unique_state_count() > 100, "{scenario:?} explored");
            checker.assert_properties();
        }
    }

    /// Each old rule, alone, lets a promise break: the checker finds the
    /// window the issue describes.
    fn counterexample(rules: Rules, scenario: Scenario, property: &'static str) -> Vec<Action> {
        let checker = check(rules, scenario);
        checker
            .discovery(property)
            .unwrap_or_else(|| panic!("no counterexample to {property:?} under {rules:?}"))
            .into_actions()
    }

    #[test]
    fn without_the_honest_window_a_late_create_is_made_twice() {
        let rules = Rules {
            honest_window: false,
            ..Rules::NEW
        };
        let path = counterexample(rules, Scenario::CreateThenComment, "no effect twice");
        // The first request was still in flight when the retry was sent.
        assert!(path.iter().filter(|a| matches!(a, Action::Land(_))).count() >= 2);
    }

    #[test]
    fn without_fencing_a_worker_that_lost_its_lease_repeats_a_step() {
        let rules = Rules {
            fencing: false,
            ..Rules::NEW
        };
        let path = counterexample(rules, Scenario::CreateThenComment, "no effect twice");
        assert!(
            path.iter().any(|a| matches!(a, Action::Expire(_))),
            "{path:?}"
        );
    }

    #[test]
    fn without_ordered_edits_an_older_edit_lands_after_a_newer_one() {
        let rules = Rules {
            ordered_edits: false,
            ..Rules::NEW
        };
        for older_mergeable in [true, false] {
            counterexample(
                rules,
                Scenario::Edits { older_mergeable },
                "no older edit after a newer",
            );
        }
    }

    #[test]
    fn without_carriers_that_answer_a_merged_job_ends_superseded_with_its_change_lost() {
        let rules = Rules {
            carriers: false,
            ..Rules::NEW
        };
        let path = counterexample(
            rules,
            Scenario::Edits {
                older_mergeable: true,
            },
            "a job's record agrees with Jira when it ends",
        );
        assert!(
            path.iter().any(|a| matches!(a, Action::Refuse(_))),
            "{path:?}"
        );
    }

    #[test]
    fn the_old_protocol_breaks_every_safety_promise() {
        for (scenario, property) in [
            (Scenario::CreateThenComment, "no effect twice"),
            (Scenario::BulkOfTwo, "no effect twice"),
            (
                Scenario::Edits {
                    older_mergeable: true,
                },
                "no older edit after a newer",
            ),
            (
                Scenario::Edits {
                    older_mergeable: true,
                },
                "a job's record agrees with Jira when it ends",
            ),
        ] {
            counterexample(Rules::OLD, scenario, property);
        }
    }
}
