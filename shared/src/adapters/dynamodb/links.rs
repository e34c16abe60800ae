//! Links (an entity's issue) and the field revisions applied to it.
//!
//! | item     | pk              | sk            | attributes |
//! |----------|-----------------|---------------|------------|
//! | link     | `LINK#<linkId>` | `LINK`        | `creator`, `issueKey`; never expires (an entity's issue is forever) |
//! | revision | `LINK#<linkId>` | `REV#<field>` | `jobId`: the newest revision applied to that field of the entity's issue |
//!
//! * A revision is raised by `UpdateItem … attribute_not_exists(pk) OR
//!   jobId < :id`, transacted with the writer's fence check: it never goes
//!   back.

use super::*;

pub(super) fn link_from_item(item: &Item) -> Result<Link, StoreError> {
    Ok(Link {
        creator: JobId::from_stored(get_s(item, "creator")?),
        issue_key: opt_s(item, "issueKey").map(IssueKey::from_stored),
    })
}

pub(super) fn link_pk(id: &LinkId) -> String {
    format!("LINK#{id}")
}

impl LinkStore for DynamoStore {
    async fn link(&self, id: &LinkId) -> Result<Option<Link>, StoreError> {
        self.get(link_pk(id), "LINK")
            .await?
            .map(|item| link_from_item(&item))
            .transpose()
    }

    async fn claim_link(&self, id: &LinkId, creator: &JobId) -> Result<Link, StoreError> {
        let r = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(link_pk(id)))
            .item("sk", s("LINK"))
            .item("creator", s(creator.as_str()))
            .condition_expression("attribute_not_exists(pk)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match r {
            Ok(_) => Ok(Link {
                creator: creator.clone(),
                issue_key: None,
            }),
            Err(e) => {
                let old = match e.as_service_error() {
                    Some(aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(c)) => c.item().cloned(),
                    _ => return Err(backend(e)),
                };
                let item = match old {
                    Some(item) => item,
                    None => self
                        .get(link_pk(id), "LINK")
                        .await?
                        .ok_or_else(|| corrupt("link condition failed on an absent item"))?,
                };
                link_from_item(&item)
            }
        }
    }

    async fn take_over_link(
        &self,
        id: &LinkId,
        from: &JobId,
        to: &JobId,
    ) -> Result<bool, StoreError> {
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(link_pk(id)))
            .key("sk", s("LINK"))
            .update_expression("SET creator = :to")
            .condition_expression("creator = :from AND attribute_not_exists(issueKey)")
            .expression_attribute_values(":to", s(to.as_str()))
            .expression_attribute_values(":from", s(from.as_str()))
            .send()
            .await;
        conditional(r, |e| e.is_conditional_check_failed_exception())
    }

    async fn set_link_issue(
        &self,
        id: &LinkId,
        creator: &JobId,
        issue: &IssueKey,
        fence: &Fence,
    ) -> Result<bool, StoreError> {
        let update = Update::builder()
            .table_name(&self.table)
            .key("pk", s(link_pk(id)))
            .key("sk", s("LINK"))
            .update_expression("SET issueKey = :issue")
            .condition_expression("creator = :creator")
            .expression_attribute_values(":issue", s(issue.as_str()))
            .expression_attribute_values(":creator", s(creator.as_str()))
            .build()
            .map_err(corrupt)?;
        self.transact(vec![
            self.fence_check(fence)?,
            TransactWriteItem::builder().update(update).build(),
        ])
        .await
    }

    async fn field_revisions(&self, id: &LinkId) -> Result<FieldRevisions, StoreError> {
        let mut out = FieldRevisions::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :rev)")
                .expression_attribute_values(":pk", s(link_pk(id)))
                .expression_attribute_values(":rev", s("REV#"))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(backend)?;
            for item in page.items() {
                let sk = get_s(item, "sk")?;
                let field = sk.trim_start_matches("REV#").to_string();
                out.insert(field, JobId::from_stored(get_s(item, "jobId")?));
            }
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(out),
            }
        }
    }

    async fn record_revisions(
        &self,
        id: &LinkId,
        revisions: &FieldRevisions,
        fence: &Fence,
    ) -> Result<bool, StoreError> {
        // One transaction per field (a newer revision already there fails
        // only that field's condition, which is what "never lower" means).
        for (field, job) in revisions {
            let raise = Update::builder()
                .table_name(&self.table)
                .key("pk", s(link_pk(id)))
                .key("sk", s(format!("REV#{field}")))
                .update_expression("SET jobId = :id")
                .condition_expression("attribute_not_exists(pk) OR jobId < :id")
                .expression_attribute_values(":id", s(job.as_str()))
                .build()
                .map_err(corrupt)?;
            let applied = self
                .transact(vec![
                    self.fence_check(fence)?,
                    TransactWriteItem::builder().update(raise).build(),
                ])
                .await?;
            if !applied && !self.fence_holds(fence).await? {
                return Ok(false);
            }
        }
        Ok(true)
    }
}
