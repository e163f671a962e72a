//! Fakes of the messenger platforms, at their HTTP boundary, for tests and benchmarks (feature
//! `fake`).

pub mod infobip;
pub mod ok;
pub mod telegram;
pub mod viber;
pub mod vk;
pub mod whatsapp_cloud;
