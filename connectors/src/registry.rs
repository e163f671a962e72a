//! The channel modules this build has: one line per messenger. Adding a channel is a folder
//! under `connectors/src/`, its fake under `connectors/src/fake/`, and one line here.

use std::sync::Arc;

use crate::channel::ChannelModule;
use crate::runtime::Shared;

/// Every channel module, built once per runtime.
pub fn modules(shared: &Shared) -> Vec<Arc<dyn ChannelModule>> {
    vec![
        Arc::new(crate::telegram::Module),
        Arc::new(crate::viber::Module),
        Arc::new(crate::vk::Module),
        Arc::new(crate::ok::Module),
        Arc::new(crate::webchat::Module::new(shared.clone())),
        Arc::new(crate::whatsapp::Module),
    ]
}
