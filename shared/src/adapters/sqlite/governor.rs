//! Governor rows.
//!
//! * `governors` — one row per Jira site: the shared governor state as JSON
//!   and a version; writes are `… WHERE version = ?expected`.

use super::*;

impl GovernorStore for SqliteDb {
    async fn load_governor(&self, site: &str) -> Result<(SiteGovernor, u64), StoreError> {
        let site = site.to_string();
        let row: Option<(i64, String)> = self
            .with(move |c| {
                c.query_row(
                    "SELECT version, state FROM governors WHERE site = ?1",
                    [site],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
            })
            .await?;
        match row {
            None => Ok((SiteGovernor::default(), 0)),
            Some((version, state)) => {
                let g =
                    serde_json::from_str(&state).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                Ok((g, version as u64))
            }
        }
    }

    async fn save_governor(
        &self,
        site: &str,
        state: &SiteGovernor,
        expected: u64,
    ) -> Result<bool, StoreError> {
        let site = site.to_string();
        let json = serde_json::to_string(state).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.with(move |c| {
            let changed = if expected == 0 {
                c.execute(
                    "INSERT INTO governors (site, version, state) VALUES (?1, 1, ?2) ON CONFLICT(site) DO NOTHING",
                    params![site, json],
                )?
            } else {
                c.execute(
                    "UPDATE governors SET version = version + 1, state = ?2 WHERE site = ?1 AND version = ?3",
                    params![site, json, expected as i64],
                )?
            };
            Ok(changed == 1)
        })
        .await
    }
}
