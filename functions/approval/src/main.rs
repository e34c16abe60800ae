//! Approval Lambda (signed approval links: confirmation page on GET, the
//! decision on POST). The approval use case and its wiring arrive with the
//! approvals and serverless issues; until then this binary refuses to start.

fn main() -> anyhow::Result<()> {
    anyhow::bail!("tollgate-approval is not deployable yet: approvals land with their own issue")
}
