//! End-to-end encrypted sessions in the browser (issue 19):
//! `node web-client/tests/e2ee.mjs` starts this build's `tandem demo`
//! (whose session is `preferred`) and drives headless Chromium: three
//! people decode each other's video and voice through the SFrame
//! transform, every page shows "End-to-end encrypted" and the same safety
//! code, no media key or ECDH secret the pages imported appears in any
//! frame the server relayed or in its log, a public key swapped in transit
//! gives the deceived page a different safety code, and after a removal
//! the others use new keys that none of the removed page's keys open. In
//! a `required` room a browser without `RTCRtpScriptTransform` is refused
//! in words ("This browser can't join this session").
//!
//! Without Chromium, Node or `npm ci` in web-client/tests the test says
//! why and passes, unless REQUIRE_BROWSER_CHECK=1 (CI).

use std::time::Duration;

use crate::helpers::browser;

#[test]
fn three_people_in_an_end_to_end_encrypted_room() {
    browser::run_chromium_script(
        "three_people_in_an_end_to_end_encrypted_room",
        "e2ee.mjs",
        Duration::from_secs(330),
    );
}
