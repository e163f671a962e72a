//! Reading rows into domain objects.

use const_format::concatcp;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::{Result, StoreError};
use crate::domain::{Author, CustomerRef, FileRef, Interaction, Message};

pub(crate) const INTERACTION_COLUMNS: &str = "i.id, i.channel, i.account_id, i.state, i.queue, i.agent, \
     i.created_at, i.closed_at, i.fields, i.external_id, \
     c.id AS customer_id, c.name AS customer_name, c.phone AS customer_phone, c.avatar_url AS customer_avatar";

pub(crate) fn interaction_from_row(row: &PgRow) -> Result<Interaction> {
    let fields: serde_json::Value = row.try_get("fields")?;
    Ok(Interaction {
        id: row.try_get("id")?,
        channel: row.try_get::<&str, _>("channel")?.parse()?,
        account_id: row.try_get("account_id")?,
        customer: CustomerRef {
            id: row.try_get("customer_id")?,
            name: row.try_get("customer_name")?,
            external_id: row.try_get("external_id")?,
            phone: row.try_get("customer_phone")?,
            avatar_url: row.try_get("customer_avatar")?,
        },
        state: row.try_get::<&str, _>("state")?.parse()?,
        queue: row.try_get("queue")?,
        agent: row.try_get("agent")?,
        created_at: row.try_get("created_at")?,
        closed_at: row.try_get("closed_at")?,
        fields: match fields {
            serde_json::Value::Object(map) => map,
            other => {
                return Err(StoreError::Corrupt(format!("interaction fields are not an object: {other}")));
            }
        },
    })
}

/// Loads one interaction; `for_update` locks its row until the transaction ends.
pub async fn load_interaction(conn: &mut PgConnection, id: Uuid) -> Result<Interaction> {
    const SQL: &str = concatcp!(
        "SELECT ",
        INTERACTION_COLUMNS,
        " FROM interactions i JOIN customers c ON c.id = i.customer_id WHERE i.id = $1"
    );
    let row = sqlx::query(SQL)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::not_found("interaction", id))?;
    interaction_from_row(&row)
}

const MESSAGE_COLUMNS: &str = "m.id, m.interaction_id, m.direction, m.author_kind, m.author_id, m.author_name, \
     m.kind, m.text, m.location, m.contact, m.reply_to, m.forwarded, m.sticker_id, m.forward_of, m.keyboard, m.template, m.status, m.error, \
     m.client_msg_id, m.created_at, m.edited_at, m.deleted, \
     COALESCE((SELECT jsonb_agg(jsonb_build_object('id', f.id, 'name', f.name, 'mime', f.mime, 'size', f.size) \
               ORDER BY mf.position) \
               FROM message_files mf JOIN files f ON f.id = mf.file_id WHERE mf.message_id = m.id), '[]') AS files";

fn json_opt<T: serde::de::DeserializeOwned>(row: &PgRow, col: &str) -> Result<Option<T>> {
    let value: Option<serde_json::Value> = row.try_get(col)?;
    value
        .map(|v| serde_json::from_value(v).map_err(|e| StoreError::Corrupt(format!("messages.{col}: {e}"))))
        .transpose()
}

#[derive(serde::Deserialize)]
struct FileRow {
    id: Uuid,
    name: String,
    mime: String,
    size: i64,
}

fn message_from_row(row: &PgRow) -> Result<Message> {
    let files: Vec<FileRow> = json_opt(row, "files")?.unwrap_or_default();
    Ok(Message {
        id: row.try_get("id")?,
        interaction_id: row.try_get("interaction_id")?,
        direction: row.try_get::<&str, _>("direction")?.parse()?,
        author: Author {
            kind: row.try_get::<&str, _>("author_kind")?.parse()?,
            id: row.try_get("author_id")?,
            name: row.try_get("author_name")?,
        },
        kind: row.try_get::<&str, _>("kind")?.parse()?,
        text: row.try_get("text")?,
        files: files
            .into_iter()
            .map(|f| FileRef { url: FileRef::url_for(f.id), id: f.id, name: f.name, mime: f.mime, size: f.size })
            .collect(),
        location: json_opt(row, "location")?,
        contact: json_opt(row, "contact")?,
        reply_to: row.try_get("reply_to")?,
        forwarded: json_opt(row, "forwarded")?,
        sticker_id: row.try_get("sticker_id")?,
        forward_of: row.try_get("forward_of")?,
        keyboard: json_opt(row, "keyboard")?,
        template: json_opt(row, "template")?,
        status: row.try_get::<&str, _>("status")?.parse()?,
        error: row.try_get("error")?,
        client_msg_id: row.try_get("client_msg_id")?,
        created_at: row.try_get("created_at")?,
        edited_at: row.try_get("edited_at")?,
        deleted: row.try_get("deleted")?,
    })
}

pub async fn load_message(conn: &mut PgConnection, id: Uuid) -> Result<Message> {
    const SQL: &str = concatcp!("SELECT ", MESSAGE_COLUMNS, " FROM messages m WHERE m.id = $1");
    let row = sqlx::query(SQL)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::not_found("message", id))?;
    message_from_row(&row)
}

/// Loads messages by id, in the order of `ids`; ids that do not exist are skipped.
pub async fn load_messages(conn: &mut PgConnection, ids: &[Uuid]) -> Result<Vec<Message>> {
    const SQL: &str = concatcp!(
        "SELECT ",
        MESSAGE_COLUMNS,
        " FROM unnest($1::uuid[]) WITH ORDINALITY AS wanted(id, n) JOIN messages m ON m.id = wanted.id ORDER BY wanted.n"
    );
    let rows = sqlx::query(SQL).bind(ids).fetch_all(&mut *conn).await?;
    rows.iter().map(message_from_row).collect()
}
