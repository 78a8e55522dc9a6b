//! What the unit tests share.

use std::future::Future;
use std::time::Duration;

/// The longest a unit test run by [`bounded`] may take.
const TEST_BOUND: Duration = Duration::from_secs(300);

/// Runs an async test body in a fresh actix System, as `#[actix_rt::test]`
/// does, and fails the test if it has not finished within [`TEST_BOUND`],
/// so that every await of the test is bounded.
pub(crate) fn bounded(test: impl Future<Output = ()>) {
    actix_rt::System::new().block_on(async move {
        if actix_rt::time::timeout(TEST_BOUND, test).await.is_err() {
            panic!("the test did not finish within {TEST_BOUND:?}");
        }
    });
}
