//! `switchboard config`: print the effective configuration (defaults < file < environment) as
//! TOML, secrets and the database URL's password masked.

use crate::config::Config;

pub fn run(config: &Config) -> anyhow::Result<()> {
    let text = ops::config::render(&config.redacted())?;
    println!("# effective configuration: defaults < config file < SWITCHBOARD_* environment");
    print!("{text}");
    Ok(())
}
