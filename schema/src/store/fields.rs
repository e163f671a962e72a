//! Admin-defined interaction fields (schema::fields): the definitions, and an agent setting a
//! value on an interaction it owns.

use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::{Result, StoreError};
use crate::domain::Interaction;
use crate::fields::{FieldDef, FieldType, FieldValueError, check_def, check_value};

fn def_from_row(row: &sqlx::postgres::PgRow) -> Result<FieldDef> {
    let kind: String = row.try_get("type")?;
    let kind: FieldType = serde_json::from_value(serde_json::Value::String(kind))
        .map_err(|e| StoreError::Corrupt(format!("a field definition's type: {e}")))?;
    let choices: serde_json::Value = row.try_get("choices")?;
    Ok(FieldDef {
        key: row.try_get("key")?,
        label: row.try_get("label")?,
        kind,
        choices: serde_json::from_value(choices)
            .map_err(|e| StoreError::Corrupt(format!("a field definition's choices: {e}")))?,
        required: row.try_get("required")?,
    })
}

/// Every field definition, by key.
pub async fn list_field_defs(conn: &mut PgConnection) -> Result<Vec<FieldDef>> {
    let rows = sqlx::query("SELECT key, label, type, choices, required FROM interaction_field_defs ORDER BY key")
        .fetch_all(&mut *conn)
        .await?;
    rows.iter().map(def_from_row).collect()
}

/// One field definition.
pub async fn field_def(conn: &mut PgConnection, key: &str) -> Result<Option<FieldDef>> {
    let row = sqlx::query("SELECT key, label, type, choices, required FROM interaction_field_defs WHERE key = $1")
        .bind(key)
        .fetch_optional(&mut *conn)
        .await?;
    row.as_ref().map(def_from_row).transpose()
}

/// Creates or replaces a definition (checked by `check_def`: `Invalid` with the reason).
/// Returns whether it was created. Values set before stay as they are.
pub async fn put_field_def(conn: &mut PgConnection, def: &FieldDef) -> Result<bool> {
    check_def(def).map_err(StoreError::Invalid)?;
    let created: bool = sqlx::query_scalar(
        "INSERT INTO interaction_field_defs (key, label, type, choices, required) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (key) DO UPDATE SET label = EXCLUDED.label, type = EXCLUDED.type, choices = EXCLUDED.choices,
             required = EXCLUDED.required, updated_at = now()
         RETURNING xmax = 0",
    )
    .bind(&def.key)
    .bind(&def.label)
    .bind(def.kind.as_str())
    .bind(serde_json::to_value(&def.choices).expect("choices serialize"))
    .bind(def.required)
    .fetch_one(&mut *conn)
    .await?;
    Ok(created)
}

/// Removes a definition; `false` when there was none. Values set before stay on their
/// interactions.
pub async fn delete_field_def(conn: &mut PgConnection, key: &str) -> Result<bool> {
    let done = sqlx::query("DELETE FROM interaction_field_defs WHERE key = $1").bind(key).execute(&mut *conn).await?;
    Ok(done.rows_affected() == 1)
}

/// What became of an agent's value.
#[derive(Debug)]
pub enum FieldSet {
    /// Set (or cleared): the interaction as it is now.
    Done(Box<Interaction>),
    /// No field has this key.
    UnknownField,
    /// The value does not fit the definition.
    Invalid(FieldValueError),
}

/// `agent` sets field `key` of an interaction assigned to it (`null` clears it). `NotFound`
/// when the interaction is not assigned to `agent` (closed, someone else's, or none).
pub async fn set_interaction_field(
    conn: &mut PgConnection,
    interaction_id: Uuid,
    agent: &str,
    key: &str,
    value: &serde_json::Value,
) -> Result<FieldSet> {
    let owned: Option<bool> = sqlx::query_scalar(
        "SELECT state = 'assigned' AND agent = $2 FROM interactions WHERE id = $1 FOR NO KEY UPDATE",
    )
    .bind(interaction_id)
    .bind(agent)
    .fetch_optional(&mut *conn)
    .await?;
    if owned != Some(true) {
        return Err(StoreError::not_found("interaction", interaction_id));
    }
    let Some(def) = field_def(conn, key).await? else { return Ok(FieldSet::UnknownField) };
    let value = match check_value(&def, value) {
        Ok(value) => value,
        Err(e) => return Ok(FieldSet::Invalid(e)),
    };
    match value {
        Some(value) => {
            sqlx::query("UPDATE interactions SET fields = fields || jsonb_build_object($2::text, $3::jsonb), updated_at = now() WHERE id = $1")
                .bind(interaction_id)
                .bind(key)
                .bind(value)
                .execute(&mut *conn)
                .await?
        }
        None => {
            sqlx::query("UPDATE interactions SET fields = fields - $2::text, updated_at = now() WHERE id = $1")
                .bind(interaction_id)
                .bind(key)
                .execute(&mut *conn)
                .await?
        }
    };
    Ok(FieldSet::Done(Box::new(super::load_interaction(conn, interaction_id).await?)))
}
