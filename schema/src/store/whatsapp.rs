//! WhatsApp's customer-service window and message templates (migration 0011).
//!
//! - The window: WhatsApp lets a business send free-form messages only within 24 hours of the
//!   customer's last message. The channel module records the time of every inbound message
//!   ([`record_inbound_time`], the platform's timestamp, never later than now); the chatserver
//!   reads it at `message.send` ([`last_inbound_at`]).
//! - Templates: the approved templates an account may send, by name and language, with their
//!   body and its number of parameters; edited through the admin API.

use chrono::{DateTime, Utc};
use const_format::concatcp;
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::{Result, StoreError};

/// Records that the customer `external_id` of `account_id` wrote at `at` (the platform's time;
/// a time in the future counts as now). The stored time only moves forward, so a late or
/// repeated delivery changes nothing.
pub async fn record_inbound_time(
    conn: &mut PgConnection,
    account_id: Uuid,
    external_id: &str,
    at: DateTime<Utc>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO service_windows (account_id, external_id, last_inbound_at) VALUES ($1, $2, LEAST($3, now()))
         ON CONFLICT (account_id, external_id)
         DO UPDATE SET last_inbound_at = GREATEST(service_windows.last_inbound_at, EXCLUDED.last_inbound_at)",
    )
    .bind(account_id)
    .bind(external_id)
    .bind(at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// When the customer `external_id` last wrote to `account_id`, if ever.
pub async fn last_inbound_at(
    conn: &mut PgConnection,
    account_id: Uuid,
    external_id: &str,
) -> Result<Option<DateTime<Utc>>> {
    Ok(sqlx::query_scalar("SELECT last_inbound_at FROM service_windows WHERE account_id = $1 AND external_id = $2")
        .bind(account_id)
        .bind(external_id)
        .fetch_optional(&mut *conn)
        .await?)
}

/// An approved template of an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhatsappTemplate {
    pub name: String,
    pub language: String,
    /// `marketing`, `utility` or `authentication`.
    pub category: String,
    /// The body as approved, with `{{1}}`, `{{2}}`, ... for the parameters.
    pub body: String,
    /// How many parameters the body takes.
    pub params: i32,
    pub updated_at: DateTime<Utc>,
}

/// A template as an administrator enters it.
#[derive(Debug, Clone, Default)]
pub struct TemplateInput {
    pub name: String,
    pub language: String,
    pub category: Option<String>,
    pub body: String,
}

/// The number of parameters a body takes: its highest `{{n}}`. A placeholder that is not a
/// number from 1, or a gap (`{{1}}` and `{{3}}` without `{{2}}`), is refused, as Meta does.
pub fn template_params(body: &str) -> std::result::Result<usize, String> {
    let mut seen = std::collections::BTreeSet::new();
    let mut rest = body;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        let inner = after[..end].trim();
        let n: usize =
            inner.parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
                format!("{{{{{inner}}}}} is not a parameter: parameters are {{{{1}}}}, {{{{2}}}}, ...")
            })?;
        seen.insert(n);
        rest = &after[end + 2..];
    }
    let max = seen.iter().next_back().copied().unwrap_or(0);
    if seen.len() != max {
        return Err(format!("the parameters must be numbered from {{{{1}}}} without gaps (up to {{{{{max}}}}})"));
    }
    Ok(max)
}

/// The body with `{{n}}` replaced by the n-th parameter (as the customer will read it).
pub fn render_template(body: &str, params: &[String]) -> String {
    let mut out = String::with_capacity(body.len());
    let mut rest = body;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        match after[..end].trim().parse::<usize>().ok().and_then(|n| n.checked_sub(1)).and_then(|i| params.get(i)) {
            Some(param) => out.push_str(param),
            None => out.push_str(&rest[start..start + 2 + end + 2]),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

fn template_from_row(row: &sqlx::postgres::PgRow) -> Result<WhatsappTemplate> {
    Ok(WhatsappTemplate {
        name: row.try_get("name")?,
        language: row.try_get("language")?,
        category: row.try_get("category")?,
        body: row.try_get("body")?,
        params: row.try_get("params")?,
        updated_at: row.try_get("updated_at")?,
    })
}

const TEMPLATE_COLUMNS: &str = "name, language, category, body, params, updated_at";

/// Every template of an account, by name and language.
pub async fn list_templates(conn: &mut PgConnection, account_id: Uuid) -> Result<Vec<WhatsappTemplate>> {
    const SQL: &str = concatcp!(
        "SELECT ",
        TEMPLATE_COLUMNS,
        " FROM whatsapp_templates WHERE account_id = $1 ORDER BY name, language"
    );
    let rows = sqlx::query(SQL).bind(account_id).fetch_all(&mut *conn).await?;
    rows.iter().map(template_from_row).collect()
}

/// One template, if the account has it.
pub async fn get_template(
    conn: &mut PgConnection,
    account_id: Uuid,
    name: &str,
    language: &str,
) -> Result<Option<WhatsappTemplate>> {
    const SQL: &str = concatcp!(
        "SELECT ",
        TEMPLATE_COLUMNS,
        " FROM whatsapp_templates WHERE account_id = $1 AND name = $2 AND language = $3"
    );
    let row = sqlx::query(SQL).bind(account_id).bind(name).bind(language).fetch_optional(&mut *conn).await?;
    row.as_ref().map(template_from_row).transpose()
}

/// Creates or replaces a template; `true` when it was new. The name, language, category and
/// body are checked (`Invalid` says what is wrong).
pub async fn put_template(
    conn: &mut PgConnection,
    account_id: Uuid,
    input: &TemplateInput,
) -> Result<(WhatsappTemplate, bool)> {
    let valid_name = !input.name.is_empty()
        && input.name.len() <= 512
        && input.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !valid_name {
        return Err(StoreError::Invalid(format!(
            "template name {:?}: 1-512 characters of a-z, 0-9 and _ (as Meta names them)",
            input.name
        )));
    }
    let (lang, region) = input.language.split_once('_').unwrap_or((&input.language, ""));
    let valid_language = (2..=3).contains(&lang.len())
        && lang.bytes().all(|b| b.is_ascii_alphabetic())
        && (region.is_empty() && !input.language.contains('_')
            || (2..=8).contains(&region.len()) && region.bytes().all(|b| b.is_ascii_alphanumeric()));
    if !valid_language {
        return Err(StoreError::Invalid(format!(
            "template language {:?}: a code such as en, en_US, pt_BR",
            input.language
        )));
    }
    let category = input.category.as_deref().unwrap_or("utility");
    if !matches!(category, "marketing" | "utility" | "authentication") {
        return Err(StoreError::Invalid(format!(
            "template category {category:?}: marketing, utility or authentication"
        )));
    }
    if input.body.trim().is_empty() || input.body.chars().count() > 1024 {
        return Err(StoreError::Invalid("a template body is 1 to 1024 characters".into()));
    }
    let params = template_params(&input.body).map_err(StoreError::Invalid)?;
    const SQL: &str = concatcp!(
        "INSERT INTO whatsapp_templates (account_id, name, language, category, body, params)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (account_id, name, language) DO UPDATE
           SET category = EXCLUDED.category, body = EXCLUDED.body, params = EXCLUDED.params, updated_at = now()
         RETURNING ",
        TEMPLATE_COLUMNS,
        ", (xmax = 0) AS created"
    );
    let row = sqlx::query(SQL)
        .bind(account_id)
        .bind(&input.name)
        .bind(&input.language)
        .bind(category)
        .bind(&input.body)
        .bind(params as i32)
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| match e {
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::not_found("account", account_id),
            other => other.into(),
        })?;
    Ok((template_from_row(&row)?, row.try_get("created")?))
}

/// Removes a template; `false` when the account had no such template.
pub async fn delete_template(conn: &mut PgConnection, account_id: Uuid, name: &str, language: &str) -> Result<bool> {
    let deleted = sqlx::query("DELETE FROM whatsapp_templates WHERE account_id = $1 AND name = $2 AND language = $3")
        .bind(account_id)
        .bind(name)
        .bind(language)
        .execute(&mut *conn)
        .await?;
    Ok(deleted.rows_affected() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_counted_and_filled_in() {
        assert_eq!(template_params("Hello"), Ok(0));
        assert_eq!(template_params("Order {{1}} ships on {{2}}; {{1}} again"), Ok(2));
        assert!(template_params("{{1}} and {{3}}").unwrap_err().contains("without gaps"));
        assert!(template_params("{{name}}").unwrap_err().contains("not a parameter"));
        assert!(template_params("{{0}}").is_err());
        let params = vec!["7731".to_owned(), "Friday".to_owned()];
        assert_eq!(
            render_template("Order {{1}} ships on {{ 2 }}. {{3}} stays", &params),
            "Order 7731 ships on Friday. {{3}} stays"
        );
        assert_eq!(render_template("no close {{1", &params), "no close {{1");
    }
}
