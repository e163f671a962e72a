//! The fake Nominatim (`video::fake_nominatim`) as a process, for the browser tests
//! (`tests/browser/video.test.mjs`): the hub's `[video.geocoder]` points at it, and it knows one
//! place, Red Square in Moscow (55.7539, 37.6208). Its `/static` serves the map pictures
//! (`video.geocoder.preview_url`) as the map provider's static API would.
//!
//! `cargo run --example fake_nominatim` prints one line and serves until stdin closes (or
//! Ctrl-C):
//!
//! ```text
//! nominatim: http://127.0.0.1:PORT    the base URL (video.geocoder.url)
//! ```

use tokio::io::AsyncReadExt;
use video::fake_nominatim::FakeNominatim;

#[tokio::main]
async fn main() {
    let fake = FakeNominatim::start().await;
    fake.add_place(55.7539, 37.6208, "Red Square, Tverskoy District, Moscow, Russia");
    println!("nominatim: {}", fake.url());
    // serve until the parent closes our stdin (or a signal ends us)
    let mut sink = Vec::new();
    let _ = tokio::io::stdin().read_to_end(&mut sink).await;
}
