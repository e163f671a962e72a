//! The rooms live on this node: who is connected in which role, and the frames that go to
//! everyone else when someone joins, changes what they send, leaves, or the call ends. One
//! participant per role (agent, customer, supervisor), so at most three; a second socket for a
//! role replaces the first.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::sfu::router::PeerId;

/// A participant's role in a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Agent,
    Customer,
    Supervisor,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Customer => "customer",
            Role::Supervisor => "supervisor",
        }
    }
}

/// A participant as the others see it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Participant {
    pub id: Uuid,
    pub role: Role,
    pub name: String,
    /// The agent's or supervisor's login (never shown to the others).
    #[serde(skip)]
    pub login: Option<String>,
}

/// What goes to a participant's socket from outside its own task.
#[derive(Debug, Clone, PartialEq)]
pub enum Outgoing {
    Frame(Value),
    /// Send this frame, then close the socket (`replaced`, `ended`).
    Close(Value),
}

struct Entry {
    participant: Participant,
    tx: mpsc::UnboundedSender<Outgoing>,
    media: Value,
    /// The participant's peer connection in the SFU, once it has one.
    peer: Option<PeerId>,
}

/// A participant admitted into a room.
#[derive(Debug)]
pub struct Admission {
    /// Who else is in the room.
    pub others: Vec<Participant>,
    /// The peer connection of the participant this one replaced, to free before joining the
    /// SFU (its socket's task frees it too, later; the second time is a no-op).
    pub replaced_peer: Option<PeerId>,
}

/// Every live room of this node.
#[derive(Default)]
pub struct Rooms {
    inner: Mutex<HashMap<Uuid, Vec<Entry>>>,
}

/// Why a participant was not admitted.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The node already hosts its maximum number of rooms.
    Capacity(usize),
}

impl Rooms {
    pub fn new() -> Self {
        Rooms::default()
    }

    /// Admits `participant` into `room` and returns the others. A participant already there
    /// in the same role is told `replaced` and dropped; the others get `participant_joined`.
    pub fn admit(
        &self,
        room: Uuid,
        participant: Participant,
        tx: mpsc::UnboundedSender<Outgoing>,
        max_rooms: usize,
    ) -> Result<Admission, Refused> {
        let mut rooms = self.inner.lock().expect("rooms lock");
        if !rooms.contains_key(&room) && rooms.len() >= max_rooms {
            return Err(Refused::Capacity(rooms.len()));
        }
        let entries = rooms.entry(room).or_default();
        let mut replaced_peer = None;
        if let Some(at) = entries.iter().position(|e| e.participant.role == participant.role) {
            let old = entries.remove(at);
            replaced_peer = old.peer;
            let _ = old.tx.send(Outgoing::Close(json!({
                "type": "error", "code": "replaced",
                "message": format!("the {} joined this call from another window", participant.role.as_str()),
            })));
            for e in entries.iter() {
                let _ = e
                    .tx
                    .send(Outgoing::Frame(json!({"type": "participant_left", "participant_id": old.participant.id})));
            }
        }
        let others: Vec<Participant> = entries.iter().map(|e| e.participant.clone()).collect();
        for e in entries.iter() {
            let _ = e.tx.send(Outgoing::Frame(json!({"type": "participant_joined", "participant": participant})));
        }
        entries.push(Entry { participant, tx, media: Value::Null, peer: None });
        Ok(Admission { others, replaced_peer })
    }

    /// Records the participant's SFU peer connection.
    pub fn set_peer(&self, room: Uuid, participant: Uuid, peer: PeerId) {
        let mut rooms = self.inner.lock().expect("rooms lock");
        if let Some(e) = rooms.get_mut(&room).and_then(|e| e.iter_mut().find(|e| e.participant.id == participant)) {
            e.peer = Some(peer);
        }
    }

    /// Removes the participant (if it is still the one in its role) and tells the others;
    /// returns how many are left, `None` when it was no longer there.
    pub fn remove(&self, room: Uuid, participant: Uuid) -> Option<usize> {
        let mut rooms = self.inner.lock().expect("rooms lock");
        let entries = rooms.get_mut(&room)?;
        let at = entries.iter().position(|e| e.participant.id == participant)?;
        entries.remove(at);
        for e in entries.iter() {
            let _ = e.tx.send(Outgoing::Frame(json!({"type": "participant_left", "participant_id": participant})));
        }
        let left = entries.len();
        if left == 0 {
            rooms.remove(&room);
        }
        Some(left)
    }

    /// Records what a participant sends and tells the others.
    pub fn media(&self, room: Uuid, participant: Uuid, audio: bool, camera: bool, screen: bool) {
        let mut rooms = self.inner.lock().expect("rooms lock");
        let Some(entries) = rooms.get_mut(&room) else { return };
        let frame =
            json!({"type": "media", "participant_id": participant, "audio": audio, "camera": camera, "screen": screen});
        for e in entries.iter_mut() {
            if e.participant.id == participant {
                e.media = frame.clone();
            } else {
                let _ = e.tx.send(Outgoing::Frame(frame.clone()));
            }
        }
    }

    /// Sends `frame` to everyone in the room but `except`.
    pub fn broadcast(&self, room: Uuid, frame: Value, except: Option<Uuid>) {
        let rooms = self.inner.lock().expect("rooms lock");
        for e in rooms.get(&room).into_iter().flatten() {
            if Some(e.participant.id) != except {
                let _ = e.tx.send(Outgoing::Frame(frame.clone()));
            }
        }
    }

    /// The last `media` frames of the others, for a newcomer.
    pub fn media_of_others(&self, room: Uuid, participant: Uuid) -> Vec<Value> {
        let rooms = self.inner.lock().expect("rooms lock");
        rooms
            .get(&room)
            .map(|entries| {
                entries
                    .iter()
                    .filter(|e| e.participant.id != participant && !e.media.is_null())
                    .map(|e| e.media.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Closes the socket of the room's `agent`-role participant unless it is `agent` (the call
    /// was transferred: the previous agent's access is revoked) and tells the others it left;
    /// returns whether one was closed.
    pub fn revoke_agent(&self, room: Uuid, agent: &str) -> bool {
        let mut rooms = self.inner.lock().expect("rooms lock");
        let Some(entries) = rooms.get_mut(&room) else { return false };
        let Some(at) = entries
            .iter()
            .position(|e| e.participant.role == Role::Agent && e.participant.login.as_deref() != Some(agent))
        else {
            return false;
        };
        let old = entries.remove(at);
        let _ = old.tx.send(Outgoing::Close(json!({
            "type": "error", "code": "transferred",
            "message": format!("the call was transferred to {agent}"),
        })));
        for e in entries.iter() {
            let _ =
                e.tx.send(Outgoing::Frame(json!({"type": "participant_left", "participant_id": old.participant.id})));
        }
        true
    }

    /// Tells everyone the call ended and closes their sockets.
    pub fn end(&self, room: Uuid, reason: &str) {
        let entries = self.inner.lock().expect("rooms lock").remove(&room).unwrap_or_default();
        for e in entries {
            let _ = e.tx.send(Outgoing::Close(json!({"type": "ended", "reason": reason})));
        }
    }

    pub fn is_live(&self, room: Uuid) -> bool {
        self.inner.lock().expect("rooms lock").contains_key(&room)
    }

    /// The participants of a live room.
    pub fn participants(&self, room: Uuid) -> Vec<Participant> {
        let rooms = self.inner.lock().expect("rooms lock");
        rooms.get(&room).map(|e| e.iter().map(|e| e.participant.clone()).collect()).unwrap_or_default()
    }

    /// The ids of the live rooms.
    pub fn live(&self) -> Vec<Uuid> {
        self.inner.lock().expect("rooms lock").keys().copied().collect()
    }

    pub fn room_count(&self) -> usize {
        self.inner.lock().expect("rooms lock").len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(role: Role) -> Participant {
        Participant { id: Uuid::new_v4(), role, name: role.as_str().into(), login: Some(role.as_str().into()) }
    }

    #[test]
    fn a_transfer_closes_the_previous_agents_socket_only() {
        let rooms = Rooms::new();
        let room = Uuid::new_v4();
        let (agent_tx, mut agent_rx) = mpsc::unbounded_channel();
        let (customer_tx, mut customer_rx) = mpsc::unbounded_channel();
        let agent = person(Role::Agent);
        rooms.admit(room, agent.clone(), agent_tx, 10).unwrap();
        rooms.admit(room, person(Role::Customer), customer_tx, 10).unwrap();
        assert!(matches!(agent_rx.try_recv(), Ok(Outgoing::Frame(f)) if f["type"] == "participant_joined"));
        assert!(!rooms.revoke_agent(room, "agent"), "the room's agent keeps the call");
        assert!(agent_rx.try_recv().is_err());
        assert!(rooms.revoke_agent(room, "bob"));
        match agent_rx.try_recv().unwrap() {
            Outgoing::Close(frame) => assert_eq!(frame["code"], "transferred"),
            other => panic!("not closed: {other:?}"),
        }
        assert_eq!(
            customer_rx.try_recv().unwrap(),
            Outgoing::Frame(json!({"type": "participant_left", "participant_id": agent.id}))
        );
        assert_eq!(rooms.participants(room).len(), 1);
        assert!(!rooms.revoke_agent(room, "bob"), "nobody left to revoke");
    }

    #[test]
    fn joins_leaves_and_replacements_reach_the_others() {
        let rooms = Rooms::new();
        let room = Uuid::new_v4();
        let (agent_tx, mut agent_rx) = mpsc::unbounded_channel();
        let (customer_tx, mut customer_rx) = mpsc::unbounded_channel();
        let agent = person(Role::Agent);
        let customer = person(Role::Customer);
        assert!(rooms.admit(room, agent.clone(), agent_tx, 10).unwrap().others.is_empty());
        assert_eq!(rooms.admit(room, customer.clone(), customer_tx, 10).unwrap().others, vec![agent.clone()]);
        rooms.set_peer(room, customer.id, 7);
        assert_eq!(
            agent_rx.try_recv().unwrap(),
            Outgoing::Frame(json!({"type": "participant_joined", "participant": customer}))
        );
        rooms.media(room, customer.id, true, true, false);
        assert_eq!(agent_rx.try_recv().unwrap(), Outgoing::Frame(rooms.media_of_others(room, agent.id)[0].clone()));

        // the customer opens the link in a second tab: the first is closed, the agent told
        let (again_tx, _again_rx) = mpsc::unbounded_channel();
        let again = person(Role::Customer);
        assert_eq!(rooms.admit(room, again.clone(), again_tx, 10).unwrap().replaced_peer, Some(7));
        assert!(matches!(customer_rx.try_recv().unwrap(), Outgoing::Close(f) if f["code"] == "replaced"));
        assert_eq!(
            agent_rx.try_recv().unwrap(),
            Outgoing::Frame(json!({"type": "participant_left", "participant_id": customer.id}))
        );
        assert_eq!(rooms.remove(room, customer.id), None, "the replaced one is already gone");
        assert_eq!(rooms.participants(room).len(), 2);

        assert_eq!(rooms.remove(room, again.id), Some(1));
        assert_eq!(rooms.remove(room, agent.id), Some(0));
        assert!(!rooms.is_live(room), "an empty room is forgotten");
    }

    #[test]
    fn a_node_hosts_at_most_max_rooms_and_end_closes_everyone() {
        let rooms = Rooms::new();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let first = Uuid::new_v4();
        rooms.admit(first, person(Role::Agent), tx.clone(), 1).unwrap();
        assert!(matches!(rooms.admit(Uuid::new_v4(), person(Role::Agent), tx.clone(), 1), Err(Refused::Capacity(1))));
        assert!(rooms.admit(first, person(Role::Customer), tx, 1).is_ok(), "a live room still takes its participants");
        let _ = rx.try_recv();
        rooms.end(first, "ended_by_agent");
        assert_eq!(rx.try_recv().unwrap(), Outgoing::Close(json!({"type": "ended", "reason": "ended_by_agent"})));
        assert_eq!(rooms.room_count(), 0);
    }
}
