//! Links and field revisions.
//!
//! * `links` — source entity → creating job and issue key.
//! * `revisions` — `(link, field) → job_id`: the newest revision applied to
//!   each field of an entity's issue, raised by an upsert that never lowers
//!   it (job ids sort by admission).

use super::*;

pub(super) fn link_from_row(r: &Row<'_>) -> rusqlite::Result<Link> {
    Ok(Link {
        creator: JobId::from_stored(r.get(0)?),
        issue_key: r.get::<_, Option<String>>(1)?.map(IssueKey::from_stored),
    })
}

impl LinkStore for SqliteDb {
    async fn link(&self, id: &LinkId) -> Result<Option<Link>, StoreError> {
        let id = id.clone();
        self.with(move |c| {
            c.query_row(
                "SELECT creator, issue_key FROM links WHERE link = ?1",
                [id.as_str()],
                link_from_row,
            )
            .optional()
        })
        .await
    }

    async fn claim_link(&self, id: &LinkId, creator: &JobId) -> Result<Link, StoreError> {
        let (id, creator) = (id.clone(), creator.clone());
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute(
                "INSERT INTO links (link, creator) VALUES (?1, ?2) ON CONFLICT(link) DO NOTHING",
                params![id.as_str(), creator.as_str()],
            )?;
            let link = tx.query_row(
                "SELECT creator, issue_key FROM links WHERE link = ?1",
                [id.as_str()],
                link_from_row,
            )?;
            tx.commit()?;
            Ok(link)
        })
        .await
    }

    async fn take_over_link(
        &self,
        id: &LinkId,
        from: &JobId,
        to: &JobId,
    ) -> Result<bool, StoreError> {
        let (id, from, to) = (id.clone(), from.clone(), to.clone());
        self.with(move |c| {
            Ok(c.execute(
                "UPDATE links SET creator = ?3 WHERE link = ?1 AND creator = ?2 AND issue_key IS NULL",
                params![id.as_str(), from.as_str(), to.as_str()],
            )? == 1)
        })
        .await
    }

    async fn set_link_issue(
        &self,
        id: &LinkId,
        creator: &JobId,
        issue: &IssueKey,
        fence: &Fence,
    ) -> Result<bool, StoreError> {
        let (id, creator, issue) = (id.clone(), creator.clone(), issue.clone());
        let fence = fence.clone();
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if !fence_holds(&tx, Some(&fence))? {
                return Ok(false);
            }
            let changed = tx.execute(
                "UPDATE links SET issue_key = ?3 WHERE link = ?1 AND creator = ?2",
                params![id.as_str(), creator.as_str(), issue.as_str()],
            )? == 1;
            tx.commit()?;
            Ok(changed)
        })
        .await
    }

    async fn field_revisions(&self, id: &LinkId) -> Result<FieldRevisions, StoreError> {
        let id = id.clone();
        let rows: Vec<(String, String)> = self
            .with(move |c| {
                let mut st =
                    c.prepare_cached("SELECT field, job_id FROM revisions WHERE link = ?1")?;
                st.query_map([id.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect()
            })
            .await?;
        Ok(rows
            .into_iter()
            .map(|(field, job)| (field, JobId::from_stored(job)))
            .collect())
    }

    async fn record_revisions(
        &self,
        id: &LinkId,
        revisions: &FieldRevisions,
        fence: &Fence,
    ) -> Result<bool, StoreError> {
        let id = id.clone();
        let revisions = revisions.clone();
        let fence = fence.clone();
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if !fence_holds(&tx, Some(&fence))? {
                return Ok(false);
            }
            for (field, job) in &revisions {
                tx.execute(
                    "INSERT INTO revisions (link, field, job_id) VALUES (?1, ?2, ?3)
                     ON CONFLICT(link, field) DO UPDATE SET job_id = excluded.job_id
                     WHERE excluded.job_id > revisions.job_id",
                    params![id.as_str(), field, job.as_str()],
                )?;
            }
            tx.commit()?;
            Ok(true)
        })
        .await
    }
}
