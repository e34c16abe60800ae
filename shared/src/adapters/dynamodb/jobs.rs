//! Jobs: the job item, its audit trail, its dedup record and the indexes
//! that find it (by state, by entity, the outbox).
//!
//! | item        | pk               | sk                    | attributes |
//! |-------------|------------------|-----------------------|------------|
//! | job         | `JOB#<jobId>`    | `JOB`                 | every `JobRecord` field; `gsi1*` (by state), `gsi2*` (outbox, only while runnable and not enqueued) |
//! | audit entry | `JOB#<jobId>`    | `AUDIT#<ms>#<uuidv7>` | `entry` (JSON) |
//! | dedup       | `DEDUP#<dedupId>`| `DEDUP`               | `jobId` |
//! | entity job  | `ENTITY#<linkId>`| `JOB#<jobId>`         | one per admitted job of an entity (job ids sort by time) |
//! | batch job   | `BATCH#<id>`     | `JOB#<jobId>`         | one per admitted job of a batch |
//!
//! * Admission is one `TransactWriteItems`: the dedup item with
//!   `attribute_not_exists(pk)` and `ReturnValuesOnConditionCheckFailure =
//!   ALL_OLD` (a duplicate names its job without a second query), the job,
//!   its entity item, its batch item, its first audit entries and its
//!   approval request — all or nothing.
//! * State changes are `UpdateItem … ConditionExpression #state = :expected`,
//!   transacted with their audit entry and fence check when there are any.
//! * GSI `gsi1` (`STATE#<state>#<shard>`, `<ms>#<jobId>`) lists jobs by
//!   state; GSI `gsi2` (`OUTBOX#<shard>`) is sparse: a job is in it while it
//!   will run and has no message sent, never once it is denied, expired or
//!   over; the sweep pages through it.
//! * `ttl` on audit, dedup and entity items (admission + retention), and on
//!   a job only once it is over (its end + retention; removed if re-run):
//!   retention never deletes work that may still run.

use super::*;

pub(super) fn entity_pk(link: &LinkId) -> String {
    format!("ENTITY#{link}")
}

/// States a worker acts on: only these belong in the outbox.
pub(super) fn runnable(state: JobState) -> bool {
    matches!(
        state,
        JobState::Queued | JobState::Waiting | JobState::Running
    )
}

/// Pages of the outbox one sweep reads per shard at most.
pub(super) const OUTBOX_PAGES: usize = 20;

pub(super) fn outbox_pk(shard: u32) -> String {
    format!("OUTBOX#{shard}")
}

pub(super) fn job_sort(job: &JobRecord) -> String {
    format!("{}#{}", sort_time(job.created_at.0), job.id)
}

pub(super) fn audit_item(
    id: &JobId,
    entry: &AuditEntry,
    at: Timestamp,
    ttl: i64,
) -> Result<Item, StoreError> {
    let json = serde_json::to_string(entry).map_err(corrupt)?;
    Ok(HashMap::from([
        ("pk".into(), s(job_pk(id.as_str()))),
        (
            "sk".into(),
            s(format!(
                "AUDIT#{}#{}",
                sort_time(at.0),
                uuid::Uuid::now_v7()
            )),
        ),
        ("entry".into(), s(json)),
        (TTL_ATTRIBUTE.into(), n(ttl)),
    ]))
}

pub(super) fn job_item(job: &JobRecord, ttl: i64) -> Item {
    let sh = shard(&job.id);
    let mut item: Item = HashMap::from([
        ("pk".into(), s(job_pk(job.id.as_str()))),
        ("sk".into(), s("JOB")),
        ("id".into(), s(job.id.as_str())),
        ("dedup".into(), s(job.dedup.as_str())),
        ("idemKey".into(), s(job.key.as_str())),
        ("fingerprint".into(), s(job.fingerprint.as_str())),
        ("link".into(), s(job.link.as_str())),
        ("kind".into(), s(job.kind.as_str())),
        ("priority".into(), s(job.priority.as_str())),
        ("sourceSystem".into(), s(job.source_system.as_str())),
        ("externalId".into(), s(job.external_id.as_str())),
        ("payload".into(), s(job.payload.clone())),
        ("createdAt".into(), n(job.created_at.0)),
        ("gsi1pk".into(), s(by_state_pk(job.state, sh))),
        ("gsi1sk".into(), s(job_sort(job))),
    ]);
    // Retention never deletes work that is not over: the job expires only
    // once it ends (see `update_job`).
    if job.state.is_terminal() && job.state != JobState::Exhausted {
        item.insert(TTL_ATTRIBUTE.into(), n(ttl));
    }
    if let Some(batch) = &job.batch {
        item.insert("batch".into(), s(batch.as_str()));
    }
    // The outbox holds only work that will run and has no message yet: a
    // job waiting for a person enters it when it is approved.
    if !job.enqueued && runnable(job.state) {
        item.insert("gsi2pk".into(), s(outbox_pk(sh)));
        item.insert("gsi2sk".into(), s(job_sort(job)));
    }
    for (name, value) in mutable_fields(job) {
        if let Some(v) = value {
            item.insert(name.into(), v);
        }
    }
    item
}

/// The fields `update` writes; `None` means "remove the attribute".
pub(super) fn mutable_fields(job: &JobRecord) -> Vec<(&'static str, Option<AttributeValue>)> {
    vec![
        ("jobState", Some(s(job.state.as_str()))),
        ("issueKey", job.issue_key.as_ref().map(|k| s(k.as_str()))),
        ("stepsDone", Some(n(job.steps_done))),
        ("stepStarted", job.step_started.map(|(i, _)| n(i))),
        ("stepStartedAt", job.step_started.map(|(_, at)| n(at.0))),
        ("attempts", Some(n(job.attempts))),
        ("throttles", Some(n(job.throttles))),
        ("lastError", job.last_error.as_ref().map(|e| s(e.clone()))),
        ("updatedAt", Some(n(job.updated_at.0))),
        ("enqueued", Some(AttributeValue::Bool(job.enqueued))),
        (
            "mergedInto",
            job.merged_into.as_ref().map(|j| s(j.as_str())),
        ),
        ("pointsMilli", Some(n(job.points_milli))),
        ("notBefore", job.not_before.map(|t| n(t.0))),
    ]
}

pub(super) fn job_from_item(item: &Item) -> Result<JobRecord, StoreError> {
    let kind = get_s(item, "kind")?;
    let priority = get_s(item, "priority")?;
    let state = get_s(item, "jobState")?;
    let started: Option<u32> = opt_n(item, "stepStarted")?;
    let started_at: Option<i64> = opt_n(item, "stepStartedAt")?;
    Ok(JobRecord {
        id: JobId::from_stored(get_s(item, "id")?),
        key: IdempotencyKey::from_stored(get_s(item, "idemKey")?),
        fingerprint: Fingerprint::from_stored(get_s(item, "fingerprint")?),
        dedup: DedupId::from_stored(get_s(item, "dedup")?),
        link: LinkId::from_stored(get_s(item, "link")?),
        kind: OperationKind::parse(&kind).ok_or_else(|| corrupt(format!("operation {kind}")))?,
        priority: Priority::parse(&priority)
            .ok_or_else(|| corrupt(format!("priority {priority}")))?,
        source_system: SourceSystem::from_stored(get_s(item, "sourceSystem")?),
        external_id: ExternalId::from_stored(get_s(item, "externalId")?),
        payload: get_s(item, "payload")?,
        state: JobState::parse(&state).ok_or_else(|| corrupt(format!("state {state}")))?,
        issue_key: opt_s(item, "issueKey").map(IssueKey::from_stored),
        steps_done: get_n(item, "stepsDone")?,
        step_started: started.zip(started_at).map(|(i, at)| (i, Timestamp(at))),
        attempts: get_n(item, "attempts")?,
        throttles: get_n(item, "throttles")?,
        last_error: opt_s(item, "lastError"),
        created_at: Timestamp(get_n(item, "createdAt")?),
        updated_at: Timestamp(get_n(item, "updatedAt")?),
        enqueued: matches!(item.get("enqueued"), Some(AttributeValue::Bool(true))),
        merged_into: opt_s(item, "mergedInto").map(JobId::from_stored),
        batch: opt_s(item, "batch").map(BatchId::from_stored),
        points_milli: opt_n(item, "pointsMilli")?.unwrap_or(0),
        not_before: opt_n(item, "notBefore")?.map(Timestamp),
    })
}

impl DynamoStore {
    /// The job ids listed under `pk` as `JOB#<jobId>` items (an entity's
    /// or a batch's jobs), all pages.
    pub(super) async fn member_job_ids(&self, pk: String) -> Result<Vec<String>, StoreError> {
        let mut ids = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :job)")
                .expression_attribute_values(":pk", s(pk.clone()))
                .expression_attribute_values(":job", s("JOB#"))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(backend)?;
            for item in out.items.unwrap_or_default() {
                if let Some(id) = get_s(&item, "sk")?.strip_prefix("JOB#") {
                    ids.push(id.to_string());
                }
            }
            match out.last_evaluated_key {
                Some(k) => start = Some(k),
                None => break,
            }
        }
        Ok(ids)
    }

    /// Fetches jobs by id (consistent reads, 100 keys a call).
    pub(super) async fn jobs_by_id(&self, ids: &[String]) -> Result<Vec<JobRecord>, StoreError> {
        let keys = ids
            .iter()
            .map(|id| (job_pk(id), "JOB".to_string()))
            .collect();
        self.items_by_key(keys, true)
            .await?
            .iter()
            .map(job_from_item)
            .collect()
    }

    /// Job ids from one GSI partition whose sort key is below `below`,
    /// newest first when `newest_first`.
    pub(super) async fn index_ids(
        &self,
        index: &str,
        pk: String,
        below: Option<String>,
        newest_first: bool,
        limit: usize,
    ) -> Result<Vec<(String, String)>, StoreError> {
        // Each index's keys are named after it: `gsi1pk`, `gsi1sk`.
        let (pk_attr, sk_attr) = (format!("{index}pk"), format!("{index}sk"));
        let mut found = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let mut q = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(index)
                .expression_attribute_names("#pk", &pk_attr)
                .expression_attribute_values(":pk", s(pk.clone()))
                .scan_index_forward(!newest_first)
                .limit(limit.clamp(1, 1000) as i32)
                .set_exclusive_start_key(start.take());
            q = match &below {
                Some(b) => q
                    .key_condition_expression("#pk = :pk AND #sk < :below")
                    .expression_attribute_names("#sk", &sk_attr)
                    .expression_attribute_values(":below", s(b.clone())),
                None => q.key_condition_expression("#pk = :pk"),
            };
            let out = q.send().await.map_err(backend)?;
            for item in out.items.unwrap_or_default() {
                let sort = get_s(&item, &sk_attr)?;
                let id = get_s(&item, "pk")?
                    .strip_prefix("JOB#")
                    .map(str::to_string)
                    .ok_or_else(|| corrupt("a GSI entry that is not a job"))?;
                found.push((sort, id));
            }
            match out.last_evaluated_key {
                Some(k) if found.len() < limit => start = Some(k),
                _ => break,
            }
        }
        found.truncate(limit);
        Ok(found)
    }

    /// One page of an outbox shard below `below`, oldest first, and where
    /// the next page starts.
    pub(super) async fn outbox_page(
        &self,
        pk: String,
        below: String,
        limit: usize,
        start: Option<Item>,
    ) -> Result<(Vec<String>, Option<Item>), StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(GSI_OUTBOX)
            .key_condition_expression("gsi2pk = :pk AND gsi2sk < :below")
            .expression_attribute_values(":pk", s(pk))
            .expression_attribute_values(":below", s(below))
            .scan_index_forward(true)
            .limit(limit.clamp(1, 1000) as i32)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(backend)?;
        let ids = out
            .items
            .unwrap_or_default()
            .iter()
            .map(|item| {
                get_s(item, "pk")?
                    .strip_prefix("JOB#")
                    .map(str::to_string)
                    .ok_or_else(|| corrupt("an outbox entry that is not a job"))
            })
            .collect::<Result<_, _>>()?;
        Ok((ids, out.last_evaluated_key.filter(|k| !k.is_empty())))
    }

    pub(super) async fn update_job(
        &self,
        job: &JobRecord,
        expected: JobState,
        audit: Option<&AuditEntry>,
        fence: Option<&Fence>,
    ) -> Result<bool, StoreError> {
        let mut e = Expr::default();
        for (name, value) in mutable_fields(job) {
            match (name, value) {
                // The outbox flag only ever goes up (see `mark_enqueued`).
                ("enqueued", Some(AttributeValue::Bool(false))) => {}
                (name, Some(v)) => e.set(name, v),
                (name, None) => e.remove(name),
            }
        }
        // Out of the outbox once its message is sent or it will not run
        // (denied, expired, over); into it when it becomes runnable without
        // a message (approved). Otherwise as it is: a worker's stale copy
        // must not put a sent job back.
        if job.enqueued || !runnable(job.state) {
            e.remove("gsi2pk");
            e.remove("gsi2sk");
        } else if !runnable(expected) {
            e.set("gsi2pk", s(outbox_pk(shard(&job.id))));
            e.set("gsi2sk", s(job_sort(job)));
        }
        e.set("gsi1pk", s(by_state_pk(job.state, shard(&job.id))));
        // Kept while it may still run (an exhausted job waits for a re-run);
        // retention counts from its end.
        if job.state.is_terminal() && job.state != JobState::Exhausted {
            e.set(TTL_ATTRIBUTE, n(self.ttl_from(job.updated_at)));
        } else {
            e.remove(TTL_ATTRIBUTE);
        }
        let state_name = e.name("jobState");
        let expected_value = e.value(s(expected.as_str()));
        let condition = format!("attribute_exists(pk) AND {state_name} = {expected_value}");
        let key = HashMap::from([
            ("pk".to_string(), s(job_pk(job.id.as_str()))),
            ("sk".to_string(), s("JOB")),
        ]);
        if audit.is_none() && fence.is_none() {
            let r = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(key))
                .update_expression(e.update_expression())
                .condition_expression(condition)
                .set_expression_attribute_names(Some(e.names))
                .set_expression_attribute_values(Some(e.values))
                .send()
                .await;
            return conditional(r, |e| e.is_conditional_check_failed_exception());
        }
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key))
            .update_expression(e.update_expression())
            .condition_expression(condition)
            .set_expression_attribute_names(Some(e.names))
            .set_expression_attribute_values(Some(e.values))
            .build()
            .map_err(corrupt)?;
        let mut items = Vec::with_capacity(3);
        if let Some(f) = fence {
            items.push(self.fence_check(f)?);
        }
        items.push(TransactWriteItem::builder().update(update).build());
        if let Some(entry) = audit {
            let now = SystemClock.now();
            let audit = self.put(
                audit_item(&job.id, entry, now, self.ttl_from(job.created_at))?,
                None,
            )?;
            items.push(TransactWriteItem::builder().put(audit).build());
        }
        self.transact(items).await
    }
}

impl JobStore for DynamoStore {
    async fn admit(
        &self,
        job: &JobRecord,
        audit: &[AuditEntry],
        approval: Option<&ApprovalRecord>,
    ) -> Result<Admission, StoreError> {
        let ttl = self.ttl_from(job.created_at);
        let dedup = Put::builder()
            .table_name(&self.table)
            .set_item(Some(HashMap::from([
                ("pk".into(), s(format!("DEDUP#{}", job.dedup))),
                ("sk".into(), s("DEDUP")),
                ("jobId".into(), s(job.id.as_str())),
                (TTL_ATTRIBUTE.into(), n(ttl)),
            ])))
            .condition_expression("attribute_not_exists(pk)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(corrupt)?;
        let mut items = vec![
            TransactWriteItem::builder().put(dedup).build(),
            TransactWriteItem::builder()
                .put(self.put(job_item(job, ttl), Some("attribute_not_exists(pk)"))?)
                .build(),
            TransactWriteItem::builder()
                .put(self.put(
                    HashMap::from([
                        ("pk".into(), s(entity_pk(&job.link))),
                        ("sk".into(), s(format!("JOB#{}", job.id))),
                        (TTL_ATTRIBUTE.into(), n(ttl)),
                    ]),
                    None,
                )?)
                .build(),
        ];
        if let Some(batch) = &job.batch {
            items.push(
                TransactWriteItem::builder()
                    .put(self.put(
                        HashMap::from([
                            ("pk".into(), s(batch_pk(batch))),
                            ("sk".into(), s(format!("JOB#{}", job.id))),
                            (TTL_ATTRIBUTE.into(), n(ttl)),
                        ]),
                        None,
                    )?)
                    .build(),
            );
        }
        if let Some(a) = approval {
            let (item, reference) = self.approval_items(a);
            items.push(
                TransactWriteItem::builder()
                    .put(self.put(item, Some("attribute_not_exists(pk)"))?)
                    .build(),
            );
            items.push(
                TransactWriteItem::builder()
                    .put(self.put(reference, None)?)
                    .build(),
            );
        }
        for entry in audit {
            items.push(
                TransactWriteItem::builder()
                    .put(self.put(audit_item(&job.id, entry, job.created_at, ttl)?, None)?)
                    .build(),
            );
        }
        for attempt in 0..6 {
            let r = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .send()
                .await;
            let err = match r {
                Ok(_) => return Ok(Admission::New),
                Err(err) => err,
            };
            match err.as_service_error().and_then(cancellation) {
                Some(Cancelled::Condition(old)) => {
                    let old = match old {
                        Some(item) => item,
                        None => self
                            .get(format!("DEDUP#{}", job.dedup), "DEDUP")
                            .await?
                            .ok_or_else(|| corrupt("dedup condition failed on an absent item"))?,
                    };
                    let id = get_s(&old, "jobId")?;
                    let existing = self
                        .get(job_pk(&id), "JOB")
                        .await?
                        .ok_or_else(|| corrupt(format!("dedup record names a missing job {id}")))?;
                    return Ok(Admission::Existing(Box::new(job_from_item(&existing)?)));
                }
                Some(Cancelled::Conflict) if attempt < 5 => {
                    tokio::time::sleep(Duration::from_millis(
                        10 + fastrand::u64(0..(20 << attempt)),
                    ))
                    .await;
                }
                _ => return Err(backend(err)),
            }
        }
        Err(StoreError::Backend("admission kept conflicting".into()))
    }

    async fn job_by_dedup(&self, dedup: &DedupId) -> Result<Option<JobId>, StoreError> {
        Ok(self
            .get(format!("DEDUP#{dedup}"), "DEDUP")
            .await?
            .map(|item| get_s(&item, "jobId"))
            .transpose()?
            .map(JobId::from_stored))
    }

    async fn job(&self, id: &JobId) -> Result<Option<JobRecord>, StoreError> {
        self.get(job_pk(id.as_str()), "JOB")
            .await?
            .map(|item| job_from_item(&item))
            .transpose()
    }

    async fn update_fenced(
        &self,
        job: &JobRecord,
        expected: JobState,
        audit: Option<&AuditEntry>,
        fence: Option<&Fence>,
    ) -> Result<bool, StoreError> {
        self.update_job(job, expected, audit, fence).await
    }

    async fn mark_enqueued(&self, id: &JobId) -> Result<(), StoreError> {
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(job_pk(id.as_str())))
            .key("sk", s("JOB"))
            .update_expression("SET enqueued = :t REMOVE gsi2pk, gsi2sk")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .send()
            .await;
        conditional(r, |e| e.is_conditional_check_failed_exception()).map(|_| ())
    }

    async fn reset_outbox(&self, job: &JobRecord) -> Result<(), StoreError> {
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(job_pk(job.id.as_str())))
            .key("sk", s("JOB"))
            .update_expression("SET enqueued = :f, gsi2pk = :opk, gsi2sk = :osk")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":f", AttributeValue::Bool(false))
            .expression_attribute_values(":opk", s(outbox_pk(shard(&job.id))))
            .expression_attribute_values(":osk", s(job_sort(job)))
            .send()
            .await;
        conditional(r, |e| e.is_conditional_check_failed_exception()).map(|_| ())
    }

    async fn append_audit(&self, id: &JobId, entry: &AuditEntry) -> Result<(), StoreError> {
        let now = SystemClock.now();
        let ttl = self.ttl_from(now);
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(audit_item(id, entry, now, ttl)?))
            .send()
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn audit_trail(&self, id: &JobId) -> Result<Vec<AuditEntry>, StoreError> {
        let mut entries = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :audit)")
                .expression_attribute_values(":pk", s(job_pk(id.as_str())))
                .expression_attribute_values(":audit", s("AUDIT#"))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(backend)?;
            for item in out.items.unwrap_or_default() {
                let raw = get_s(&item, "entry")?;
                entries.push(serde_json::from_str(&raw).map_err(corrupt)?);
            }
            match out.last_evaluated_key {
                Some(k) => start = Some(k),
                None => break,
            }
        }
        Ok(entries)
    }

    async fn entity_jobs(&self, link: &LinkId) -> Result<Vec<JobRecord>, StoreError> {
        let ids = self.member_job_ids(entity_pk(link)).await?;
        let mut jobs = self.jobs_by_id(&ids).await?;
        jobs.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(jobs)
    }

    async fn queued_creates(&self, limit: usize) -> Result<Vec<JobRecord>, StoreError> {
        // The by-state index does not know the operation: read a few times
        // the limit and keep the creates.
        let mut jobs: Vec<JobRecord> = self
            .list(Some(JobState::Queued), limit.saturating_mul(4))
            .await?
            .into_iter()
            .filter(|j| j.kind.creates())
            .collect();
        jobs.sort_by_key(|j| j.created_at);
        jobs.truncate(limit);
        Ok(jobs)
    }

    async fn unenqueued(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> Result<Vec<JobRecord>, StoreError> {
        // Page through each shard, oldest first, until enough runnable jobs
        // are found: entries of jobs that will not run (left by an earlier
        // version, or moved meanwhile) are skipped, never a wall.
        let mut jobs: Vec<JobRecord> = Vec::new();
        let mut skipped = 0usize;
        for sh in 0..SHARDS {
            let mut start: Option<Item> = None;
            for _ in 0..OUTBOX_PAGES {
                let (ids, next) = self
                    .outbox_page(outbox_pk(sh), sort_time(before.0), limit, start.take())
                    .await?;
                for job in self.jobs_by_id(&ids).await? {
                    if !job.enqueued && runnable(job.state) {
                        jobs.push(job);
                    } else {
                        skipped += 1;
                    }
                }
                match next {
                    Some(k) if jobs.len() < limit => start = Some(k),
                    _ => break,
                }
            }
        }
        if skipped > 0 {
            tracing::info!(
                skipped,
                "outbox entries of jobs that will not run were skipped"
            );
        }
        jobs.sort_by_key(|j| j.created_at);
        jobs.truncate(limit);
        Ok(jobs)
    }

    async fn list(
        &self,
        state: Option<JobState>,
        limit: usize,
    ) -> Result<Vec<JobRecord>, StoreError> {
        let states: Vec<JobState> = match state {
            Some(s) => vec![s],
            None => JobState::ALL.to_vec(),
        };
        let mut found = Vec::new();
        for st in states {
            for sh in 0..SHARDS {
                found.extend(
                    self.index_ids(GSI_BY_STATE, by_state_pk(st, sh), None, true, limit)
                        .await?,
                );
            }
        }
        found.sort_by(|a, b| b.cmp(a));
        found.dedup();
        found.truncate(limit);
        let ids: Vec<String> = found.into_iter().map(|(_, id)| id).collect();
        // The index is eventually consistent: keep only jobs still in the
        // state asked for.
        let mut jobs: Vec<JobRecord> = self
            .jobs_by_id(&ids)
            .await?
            .into_iter()
            .filter(|j| state.is_none_or(|s| j.state == s))
            .collect();
        jobs.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
        Ok(jobs)
    }
}
