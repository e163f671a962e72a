//! `docs/channels.md` is generated from the capability table and the registry: this test fails
//! when the page and the code differ (`SWITCHBOARD_WRITE_DOCS=1` rewrites the page).

use std::sync::Arc;

use connectors::Runtime;

#[tokio::test]
async fn channels_md_is_the_code_s_matrix() {
    let pool = sqlx::PgPool::connect_lazy("postgres://unused@127.0.0.1:1/none").expect("a lazy pool");
    let runtime = Runtime::new(pool, Arc::new(coord::LocalCoordinator::new()), connectors::Config::default(), None);
    let generated = schema::channels::channels_markdown(&runtime.channels());
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/channels.md");
    if std::env::var_os("SWITCHBOARD_WRITE_DOCS").is_some() {
        std::fs::write(path, &generated).expect("docs/channels.md written");
    }
    let on_disk = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        on_disk == generated,
        "docs/channels.md differs from the code: run `SWITCHBOARD_WRITE_DOCS=1 cargo test -p connectors --test channels_doc` and commit it"
    );
}
