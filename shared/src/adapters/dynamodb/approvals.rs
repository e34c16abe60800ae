//! Approval requests.
//!
//! | item         | pk               | sk         | attributes |
//! |--------------|------------------|------------|------------|
//! | approval     | `APPROVAL#<id>`  | `APPROVAL` | every `ApprovalRecord` field; `gsi1*` under `APPROVALS#OPEN` while open, then under `APPROVALS#APPLYING` from its decision (or expiry) until every job it covers has moved |
//! | approval ref | `JOB#<jobId>`    | `APPROVAL` | `approvalId` (one per job a request names, `also` included) |
//!
//! * A decision is `UpdateItem … attribute_not_exists(decision) AND
//!   expiresAt > :at` (once, and never after expiry); expiry is the same
//!   update with the opposite time condition, so the two exclude each other.

use super::*;

pub(super) const OPEN_APPROVALS: &str = "APPROVALS#OPEN";
/// Decided (or expired) requests whose jobs may not all have moved yet.
const APPLYING_APPROVALS: &str = "APPROVALS#APPLYING";

fn applying_sort(id: &ApprovalId, at: Timestamp) -> String {
    format!("{}#{id}", sort_time(at.0))
}

pub(super) fn approval_pk(id: &ApprovalId) -> String {
    format!("APPROVAL#{id}")
}

pub(super) fn list_attr(v: &[String]) -> AttributeValue {
    AttributeValue::L(v.iter().map(|s| s_val(s)).collect())
}

pub(super) fn s_val(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

pub(super) fn get_list(item: &Item, name: &str) -> Result<Vec<String>, StoreError> {
    match item.get(name) {
        Some(AttributeValue::L(values)) => values
            .iter()
            .map(|v| match v {
                AttributeValue::S(s) => Ok(s.clone()),
                other => Err(corrupt(format!("attribute {name}: {other:?}"))),
            })
            .collect(),
        None => Ok(Vec::new()),
        other => Err(corrupt(format!("attribute {name}: {other:?}"))),
    }
}

pub(super) fn approval_from_item(item: &Item) -> Result<ApprovalRecord, StoreError> {
    let decided = match opt_s(item, "decision") {
        None => None,
        Some(d) => Some(Decided {
            decision: match d.as_str() {
                "approve" => Decision::Approve,
                "deny" => Decision::Deny,
                other => return Err(corrupt(format!("decision {other}"))),
            },
            by: get_s(item, "decidedBy")?,
            at: Timestamp(get_n(item, "decidedAt")?),
        }),
    };
    Ok(ApprovalRecord {
        id: ApprovalId::from_stored(get_s(item, "id")?),
        job_id: JobId::from_stored(get_s(item, "jobId")?),
        rule: get_s(item, "rule")?,
        intent: get_list(item, "intent")?,
        requested_by: get_s(item, "requestedBy")?,
        approvers: get_list(item, "approvers")?,
        requested_at: Timestamp(get_n(item, "requestedAt")?),
        expires_at: Timestamp(get_n(item, "expiresAt")?),
        decided,
        notified: matches!(item.get("notified"), Some(AttributeValue::Bool(true))),
        also: match item.get("also") {
            Some(_) => get_list(item, "also")?
                .into_iter()
                .map(JobId::from_stored)
                .collect(),
            None => Vec::new(),
        },
    })
}

impl DynamoStore {
    /// The approval item and the job's reference to it.
    pub(super) fn approval_items(&self, a: &ApprovalRecord) -> (Item, Item) {
        let ttl = self.ttl_from(a.requested_at);
        let mut item: Item = HashMap::from([
            ("pk".into(), s(approval_pk(&a.id))),
            ("sk".into(), s("APPROVAL")),
            ("id".into(), s(a.id.as_str())),
            ("jobId".into(), s(a.job_id.as_str())),
            ("rule".into(), s(a.rule.clone())),
            ("intent".into(), list_attr(&a.intent)),
            ("requestedBy".into(), s(a.requested_by.clone())),
            ("approvers".into(), list_attr(&a.approvers)),
            ("requestedAt".into(), n(a.requested_at.0)),
            ("expiresAt".into(), n(a.expires_at.0)),
            ("notified".into(), AttributeValue::Bool(a.notified)),
            (TTL_ATTRIBUTE.into(), n(ttl)),
        ]);
        if !a.also.is_empty() {
            let also: Vec<String> = a.also.iter().map(|j| j.to_string()).collect();
            item.insert("also".into(), list_attr(&also));
        }
        match &a.decided {
            Some(d) => {
                item.insert("decision".into(), s(d.decision.as_str()));
                item.insert("decidedBy".into(), s(d.by.clone()));
                item.insert("decidedAt".into(), n(d.at.0));
            }
            None => {
                item.insert("gsi1pk".into(), s(OPEN_APPROVALS));
                item.insert(
                    "gsi1sk".into(),
                    s(format!("{}#{}", sort_time(a.requested_at.0), a.id)),
                );
            }
        }
        let reference: Item = HashMap::from([
            ("pk".into(), s(job_pk(a.job_id.as_str()))),
            ("sk".into(), s("APPROVAL")),
            ("approvalId".into(), s(a.id.as_str())),
            (TTL_ATTRIBUTE.into(), n(ttl)),
        ]);
        (item, reference)
    }
}

impl DynamoStore {
    /// Records a decision (or the expiry's closing) once: only while none
    /// is recorded and `when` holds of the expiry (`:at` is the decision's
    /// time). The request moves to `APPROVALS#APPLYING` until its jobs have
    /// moved.
    async fn settle(&self, id: &ApprovalId, d: &Decided, when: &str) -> Result<bool, StoreError> {
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(approval_pk(id)))
            .key("sk", s("APPROVAL"))
            .update_expression(
                "SET decision = :d, decidedBy = :by, decidedAt = :at, gsi1pk = :applying, gsi1sk = :sort",
            )
            .condition_expression(format!(
                "attribute_exists(pk) AND attribute_not_exists(decision) AND {when}"
            ))
            .expression_attribute_values(":d", s(d.decision.as_str()))
            .expression_attribute_values(":by", s(d.by.clone()))
            .expression_attribute_values(":at", n(d.at.0))
            .expression_attribute_values(":applying", s(APPLYING_APPROVALS))
            .expression_attribute_values(":sort", s(applying_sort(id, d.at)))
            .send()
            .await;
        conditional(r, |e| e.is_conditional_check_failed_exception())
    }
}

impl ApprovalStore for DynamoStore {
    async fn create_approval(&self, a: &ApprovalRecord) -> Result<(), StoreError> {
        let (item, reference) = self.approval_items(a);
        // The other jobs' references first: once the request exists, every
        // job it covers finds it (the sweep settles decisions through them).
        let ttl = self.ttl_from(a.requested_at);
        let references = a
            .also
            .iter()
            .map(|job| {
                HashMap::from([
                    ("pk".into(), s(job_pk(job.as_str()))),
                    ("sk".into(), s("APPROVAL")),
                    ("approvalId".into(), s(a.id.as_str())),
                    (TTL_ATTRIBUTE.into(), n(ttl)),
                ])
            })
            .collect();
        self.write_all(references).await?;
        // Created once: a request that exists (a chunk's page admitted
        // again) stays as it is.
        self.transact(vec![
            TransactWriteItem::builder()
                .put(self.put(item, Some("attribute_not_exists(pk)"))?)
                .build(),
            TransactWriteItem::builder()
                .put(self.put(reference, None)?)
                .build(),
        ])
        .await?;
        Ok(())
    }

    async fn approval(&self, id: &ApprovalId) -> Result<Option<ApprovalRecord>, StoreError> {
        self.get(approval_pk(id), "APPROVAL")
            .await?
            .map(|item| approval_from_item(&item))
            .transpose()
    }

    async fn approval_for_job(&self, job: &JobId) -> Result<Option<ApprovalRecord>, StoreError> {
        let Some(reference) = self.get(job_pk(job.as_str()), "APPROVAL").await? else {
            return Ok(None);
        };
        let id = ApprovalId::from_stored(get_s(&reference, "approvalId")?);
        self.approval(&id).await
    }

    async fn decide(&self, id: &ApprovalId, decided: &Decided) -> Result<bool, StoreError> {
        self.settle(id, decided, "expiresAt > :at").await
    }

    async fn close_expired(&self, id: &ApprovalId, closed: &Decided) -> Result<bool, StoreError> {
        self.settle(id, closed, "expiresAt <= :at").await
    }

    async fn mark_notified(&self, id: &ApprovalId) -> Result<(), StoreError> {
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(approval_pk(id)))
            .key("sk", s("APPROVAL"))
            .update_expression("SET notified = :t")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .send()
            .await;
        conditional(r, |e| e.is_conditional_check_failed_exception()).map(|_| ())
    }

    async fn mark_applied(&self, id: &ApprovalId) -> Result<(), StoreError> {
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(approval_pk(id)))
            .key("sk", s("APPROVAL"))
            .update_expression("REMOVE gsi1pk, gsi1sk")
            .condition_expression("attribute_exists(pk)")
            .send()
            .await;
        conditional(r, |e| e.is_conditional_check_failed_exception()).map(|_| ())
    }

    async fn unapplied_approvals(&self, limit: usize) -> Result<Vec<ApprovalRecord>, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(GSI_BY_STATE)
            .key_condition_expression("gsi1pk = :applying")
            .expression_attribute_values(":applying", s(APPLYING_APPROVALS))
            .limit(limit.clamp(1, 1000) as i32)
            .send()
            .await
            .map_err(backend)?;
        let mut found = Vec::new();
        for item in out.items.unwrap_or_default() {
            let id = get_s(&item, "pk")?
                .strip_prefix("APPROVAL#")
                .map(|s| ApprovalId::from_stored(s.to_string()))
                .ok_or_else(|| corrupt("an applying-approvals entry that is not an approval"))?;
            if let Some(a) = self.approval(&id).await?
                && a.decided.is_some()
            {
                found.push(a);
            }
        }
        Ok(found)
    }

    async fn open_approvals_after(
        &self,
        after: Option<&ApprovalRecord>,
        limit: usize,
    ) -> Result<Vec<ApprovalRecord>, StoreError> {
        let q = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(GSI_BY_STATE)
            .expression_attribute_values(":open", s(OPEN_APPROVALS))
            .limit(limit.clamp(1, 1000) as i32);
        // A key condition cannot compare with an empty string: the first
        // page has none.
        let q = match after {
            None => q.key_condition_expression("gsi1pk = :open"),
            Some(a) => q
                .key_condition_expression("gsi1pk = :open AND gsi1sk > :after")
                .expression_attribute_values(
                    ":after",
                    s(format!("{}#{}", sort_time(a.requested_at.0), a.id)),
                ),
        };
        let out = q.send().await.map_err(backend)?;
        let mut found = Vec::new();
        for item in out.items.unwrap_or_default() {
            let id = get_s(&item, "pk")?
                .strip_prefix("APPROVAL#")
                .map(|s| ApprovalId::from_stored(s.to_string()))
                .ok_or_else(|| corrupt("an open-approvals entry that is not an approval"))?;
            // The index lags: keep only those still undecided.
            if let Some(a) = self.approval(&id).await?
                && a.decided.is_none()
            {
                found.push(a);
            }
        }
        Ok(found)
    }
}
