//! `switchboard migrate`: apply pending migrations, say what was applied, exit.

use crate::config::Config;
use crate::database;

pub async fn run(config: Config) -> anyhow::Result<()> {
    let pool = database::connect(&config).await?;
    let applied = database::migrate(&pool).await?;
    if applied.is_empty() {
        match schema::MIGRATOR.iter().last() {
            Some(m) => println!("database is up to date (latest migration: {:04} {})", m.version, m.description),
            None => println!("database is up to date (no migrations)"),
        }
    } else {
        for m in &applied {
            println!("applied {:04} {}", m.version, m.description);
        }
        println!("applied {} migration(s)", applied.len());
    }
    pool.close().await;
    Ok(())
}
