//! The governor's rows.

use super::*;

/// The governor row: created once, then written only by the holder of the
/// version it read.
pub async fn governor_rows_are_written_with_optimistic_versions<S: GovernorStore>(store: &S) {
    let site = format!("https://site-{}.example", JobId::generate());
    let (state, version) = store.load_governor(&site).await.unwrap();
    assert_eq!(version, 0);
    assert!(store.save_governor(&site, &state, 0).await.unwrap());
    assert!(
        !store.save_governor(&site, &state, 0).await.unwrap(),
        "created once"
    );
    let (_, v1) = store.load_governor(&site).await.unwrap();
    assert_eq!(v1, 1);
    assert!(store.save_governor(&site, &state, 1).await.unwrap());
    assert!(
        !store.save_governor(&site, &state, 1).await.unwrap(),
        "stale version"
    );
    assert_eq!(store.load_governor(&site).await.unwrap().1, 2);
}
