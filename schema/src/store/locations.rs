//! The positions customers share in a call (docs/video.md, "Location").

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::Result;

/// The most positions a call keeps.
pub const MAX_LOCATIONS_PER_CALL: i64 = 20;

/// A position shared in a call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallLocation {
    pub room_id: Uuid,
    pub participant_id: Uuid,
    pub lat: f64,
    pub lon: f64,
    /// Metres, as the browser estimated it.
    pub accuracy_m: Option<f64>,
    /// What the geocoder found there.
    pub address: Option<String>,
    pub at: DateTime<Utc>,
}

/// Keeps a shared position with the call; `None` when the call keeps
/// [`MAX_LOCATIONS_PER_CALL`] already.
pub async fn insert_location(
    conn: &mut PgConnection,
    room: Uuid,
    participant: Uuid,
    lat: f64,
    lon: f64,
    accuracy_m: Option<f64>,
    address: Option<&str>,
) -> Result<Option<CallLocation>> {
    let at: Option<DateTime<Utc>> = sqlx::query_scalar(
        "INSERT INTO video_locations (room_id, participant_id, lat, lon, accuracy_m, address)
         SELECT $1, $2, $3, $4, $5, $6
         WHERE (SELECT count(*) FROM video_locations WHERE room_id = $1) < $7
         RETURNING at",
    )
    .bind(room)
    .bind(participant)
    .bind(lat)
    .bind(lon)
    .bind(accuracy_m)
    .bind(address)
    .bind(MAX_LOCATIONS_PER_CALL)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(at.map(|at| CallLocation {
        room_id: room,
        participant_id: participant,
        lat,
        lon,
        accuracy_m,
        address: address.map(str::to_owned),
        at,
    }))
}

/// The latest position shared in each of these calls.
pub async fn latest_locations(conn: &mut PgConnection, rooms: &[Uuid]) -> Result<Vec<CallLocation>> {
    let rows = sqlx::query(
        "SELECT DISTINCT ON (room_id) room_id, participant_id, lat, lon, accuracy_m, address, at
         FROM video_locations WHERE room_id = ANY($1) ORDER BY room_id, at DESC, id DESC",
    )
    .bind(rooms)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(CallLocation {
                room_id: r.try_get("room_id")?,
                participant_id: r.try_get("participant_id")?,
                lat: r.try_get("lat")?,
                lon: r.try_get("lon")?,
                accuracy_m: r.try_get("accuracy_m")?,
                address: r.try_get("address")?,
                at: r.try_get("at")?,
            })
        })
        .collect()
}
