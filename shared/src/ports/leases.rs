//! Leases with fencing tokens: one worker per entity at a time.

use super::*;

/// A held lease: its name and the fencing token it was taken with. Tokens
/// rise with every new holder of a name (a renewal keeps its token), so a
/// write carrying an older token comes from a worker that lost the lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub lease: String,
    pub token: u64,
}

/// Expiring, conditional leases: one holder at a time per name, each
/// holding carrying a fencing token.
pub trait Leases: Send + Sync {
    /// Takes the lease (absent, expired, or already `holder`'s) for `ttl`
    /// from now; its fencing token, or `None` when another holder has it.
    /// A renewal by the same holder keeps the token; a new holder gets a
    /// higher one.
    fn acquire(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send;

    /// Ends the holding now. The name's token is kept, so the next
    /// holder's is higher still.
    fn release(
        &self,
        name: &str,
        holder: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}
