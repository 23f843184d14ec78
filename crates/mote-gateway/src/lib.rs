//! `mote gateway`: the IoT gateway. It owns the path from sensors to answers:
//!
//! - [`sim`]: a seeded sensor simulator publishing `home/<room>/{temperature,humidity}` to
//!   an MQTT broker at QoS 1, with injectable faults;
//! - [`ingest`]: an MQTT subscriber (persistent session, manual acknowledgements) that
//!   stores readings in SQLite ([`store`]) and acknowledges each only after its commit;
//! - [`anomaly`] and [`tools`]: what "abnormal" means, and the tools (`list_rooms`,
//!   `get_latest`, `get_stats`, `find_anomalies`, `get_readings`) with their JSON Schemas;
//! - [`ask`]: a question in natural language answered by a tool-calling model, with every
//!   number in the answer checked against the tool results;
//! - [`http`]: `POST /ask` and the tools over HTTP, next to a running ingest;
//! - [`cli`]: the `mote gateway` subcommands.

pub mod anomaly;
pub mod ask;
pub mod cli;
pub mod clock;
pub mod grounding;
pub mod http;
pub mod ingest;
pub mod sim;
pub mod store;
pub mod tools;

pub use cli::{run, GatewayArgs};

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Time(#[from] clock::TimeError),
    #[error("{0}")]
    Tool(String),
    #[error("bad fault {0:?}: use ROOM:METRIC=VALUE@HH:MM+DURATION, e.g. bedroom:temperature=31@14:00+2h")]
    BadFault(String),
    #[error("bad broker address {0:?}: use HOST:PORT")]
    BadBroker(String),
    #[error("MQTT: {0}")]
    Mqtt(String),
    #[error("{0}")]
    Ask(String),
    #[error(transparent)]
    Session(#[from] mote_session::SessionError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl From<rusqlite::Error> for GatewayError {
    fn from(e: rusqlite::Error) -> Self {
        GatewayError::Store(e.into())
    }
}
