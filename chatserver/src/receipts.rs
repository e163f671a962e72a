//! `interaction.typing` and `message.read`: the agent tells the customer it is typing
//! (ephemeral, coalesced in the store) and marks the customer's messages read (stored).
//! Both need the right to write into the interaction: assigned to you, or joined to
//! `participate` (monitoring supervisors get `forbidden`).

use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use schema::store;
use schema::topics;

use crate::AppState;
use crate::commands::may_write;
use crate::error::{ApiError, code};
use crate::wake::wake_agents;
use ops::auth::Claims;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TypingArgs {
    interaction_id: Uuid,
    /// `false`: stopped typing (e.g. the draft was cleared). Default `true`.
    typing: Option<bool>,
}

ops::no_strings!(TypingArgs, ReadArgs);

pub(crate) async fn typing(state: &AppState, claims: &Claims, a: TypingArgs) -> Result<Value, ApiError> {
    let me = claims.sub.as_str();
    let name = claims.name.clone().unwrap_or_else(|| me.to_owned());
    let mut conn = state.pool.acquire().await?;
    may_write(&mut conn, a.interaction_id, me).await?;
    let ring = store::agent_typing(&mut conn, a.interaction_id, me, &name, a.typing.unwrap_or(true)).await?;
    if let Some(account) = ring {
        state.coord.notify(&topics::webchat(account));
    }
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReadArgs {
    interaction_id: Uuid,
    up_to: Uuid,
}

pub(crate) async fn read(state: &AppState, claims: &Claims, a: ReadArgs) -> Result<Value, ApiError> {
    let me = claims.sub.as_str();
    let mut tx = state.pool.begin().await?;
    may_write(&mut tx, a.interaction_id, me).await?;
    let done = match store::agent_read(&mut tx, a.interaction_id, me, a.up_to).await {
        Err(store::StoreError::NotFound { what: "message", .. }) => {
            return Err(ApiError::new(
                code::MESSAGE_NOT_FOUND,
                format!("no message {} in interaction {}", a.up_to, a.interaction_id),
            ));
        }
        other => other?,
    };
    tx.commit().await?;
    wake_agents(state.coord.as_ref(), &done.audience);
    if let Some(account) = done.webchat {
        state.coord.notify(&topics::webchat(account));
    }
    Ok(json!({ "interaction_id": a.interaction_id, "up_to": a.up_to, "read": done.read }))
}
