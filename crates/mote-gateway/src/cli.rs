//! `mote gateway` subcommands: simulate, ingest, tools, call, ask, serve.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use rumqttc::MqttOptions;

use crate::anomaly::Thresholds;
use crate::ask::{AskOptions, Asker};
use crate::sim::{DayPlan, Fault};
use crate::store::Store;
use crate::tools::{specs, Tools};
use crate::{clock, ingest, sim, GatewayError};

#[derive(Args, Debug)]
#[command(
    about = "The IoT gateway: simulate sensors, ingest MQTT readings into SQLite, ask questions answered from the data"
)]
pub struct GatewayArgs {
    #[command(subcommand)]
    pub command: GatewayCommand,
}

#[derive(Subcommand, Debug)]
pub enum GatewayCommand {
    /// Publish a seeded day of readings to home/<room>/{temperature,humidity} (QoS 1).
    Simulate(SimulateArgs),
    /// Subscribe to home/+/+ (QoS 1, persistent session) and store readings in SQLite.
    Ingest(IngestArgs),
    /// Print the tools' definitions (OpenAI `tools` array with JSON Schemas).
    Tools(DbArgs),
    /// Call one tool and print its JSON result, e.g. `call find_anomalies '{"metric":"humidity"}'`.
    Call(CallArgs),
    /// Answer a question about the sensors with a tool-calling model.
    Ask(AskArgs),
    /// Ingest (with --broker) and answer POST /ask, GET /tools, POST /tools/<name> over HTTP.
    Serve(ServeArgs),
}

#[derive(Args, Debug, Clone)]
pub struct BrokerArgs {
    /// MQTT broker, HOST:PORT.
    #[arg(long, default_value = "127.0.0.1:1883")]
    pub broker: String,
    /// MQTT client id; the broker keeps this id's session (and its queued readings).
    #[arg(long)]
    pub client_id: Option<String>,
}

impl BrokerArgs {
    pub(crate) fn options(&self, default_id: &str) -> Result<MqttOptions, GatewayError> {
        let (host, port) = self
            .broker
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
            .filter(|(h, _)| !h.is_empty())
            .ok_or_else(|| GatewayError::BadBroker(self.broker.clone()))?;
        let id = self
            .client_id
            .clone()
            .unwrap_or_else(|| default_id.to_string());
        let mut o = MqttOptions::new(id, host, port);
        o.set_keep_alive(Duration::from_secs(5));
        Ok(o)
    }
}

#[derive(Args, Debug)]
pub struct SimulateArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// Day to simulate (YYYY-MM-DD, UTC); default: today.
    #[arg(long)]
    pub date: Option<String>,
    /// Rooms, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "living_room,bedroom,bathroom,kitchen,office"
    )]
    pub rooms: Vec<String>,
    /// Seconds between two samples of one sensor.
    #[arg(long, default_value_t = 300)]
    pub interval: i64,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Inject a fault: ROOM:METRIC=VALUE@HH:MM+DURATION (repeatable), e.g.
    /// bedroom:temperature=31@14:00+2h or bathroom:humidity=85@06:00+3h.
    #[arg(long = "fault")]
    pub faults: Vec<Fault>,
    /// Simulated seconds per real second (14400: a day in 6 s); 0: as fast as possible.
    #[arg(long, default_value_t = 14_400.0)]
    pub speed: f64,
    /// Give up when not every reading is acknowledged after this many seconds.
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
    /// Print the readings as JSON lines instead of publishing them.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Args, Debug)]
pub struct DbArgs {
    /// SQLite database of readings.
    #[arg(long, default_value = "gateway.db")]
    pub db: PathBuf,
}

#[derive(Args, Debug)]
pub struct IngestArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    #[command(flatten)]
    pub db: DbArgs,
    /// Most messages stored in one transaction (each acknowledged after it commits).
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
}

#[derive(Args, Debug)]
pub struct CallArgs {
    /// Tool name.
    pub name: String,
    /// Arguments as a JSON object.
    #[arg(default_value = "{}")]
    pub arguments: String,
    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Args, Debug)]
pub struct AskArgs {
    /// The question, in any language the model reads (English, Chinese, ...).
    pub question: String,
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub ask: AskOptions,
    /// Print the whole record (tool calls, results, checks, timings) as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// Also ingest from this broker (HOST:PORT) while serving.
    #[arg(long)]
    pub broker: Option<String>,
    /// MQTT client id of the ingest.
    #[arg(long, default_value = "mote-gateway")]
    pub client_id: String,
    #[command(flatten)]
    pub ask: AskOptions,
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, default_value_t = 8090)]
    pub port: u16,
}

pub fn run(args: GatewayArgs) -> Result<(), GatewayError> {
    match args.command {
        GatewayCommand::Simulate(a) => simulate(a),
        GatewayCommand::Ingest(a) => {
            let opts = ingest::IngestOptions {
                mqtt: a.broker.options("mote-gateway")?,
                db: a.db.db,
                batch: a.batch.max(1),
            };
            ingest::run(opts, Arc::default(), Arc::new(AtomicBool::new(false)))
        }
        GatewayCommand::Tools(a) => {
            let store = Store::open(&a.db)?;
            let tools = Tools {
                store: &store,
                thresholds: Thresholds::default(),
            };
            let list: Vec<_> = specs(&tools.room_names()?)
                .iter()
                .map(|s| s.to_openai())
                .collect();
            print_json(&serde_json::Value::Array(list));
            Ok(())
        }
        GatewayCommand::Call(a) => {
            let args: serde_json::Value = serde_json::from_str(&a.arguments)
                .map_err(|e| GatewayError::Tool(format!("arguments are not JSON: {e}")))?;
            let store = Store::open(&a.db.db)?;
            let tools = Tools {
                store: &store,
                thresholds: Thresholds::default(),
            };
            print_json(&tools.call(&a.name, &args)?);
            Ok(())
        }
        GatewayCommand::Ask(a) => {
            let store = Store::open(&a.db.db)?;
            let mut asker = Asker::load(&a.ask)?;
            let record = asker.ask(&store, &a.question)?;
            if a.json {
                print_json(&record.to_json());
            } else {
                println!("{}", record.answer);
            }
            Ok(())
        }
        GatewayCommand::Serve(a) => crate::http::serve(a),
    }
}

fn print_json(v: &serde_json::Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

fn simulate(a: SimulateArgs) -> Result<(), GatewayError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let day = match &a.date {
        Some(d) => clock::start_of_day(clock::parse_time(d, now)?),
        None => clock::start_of_day(now),
    };
    if let Some(bad) = a.rooms.iter().find(|r| !sim::room_name_ok(r)) {
        return Err(GatewayError::Tool(format!(
            "room {bad:?}: use lower-case letters, digits and _"
        )));
    }
    if !(1..=86_400).contains(&a.interval) {
        return Err(GatewayError::Tool(
            "--interval must be 1..86400 seconds".into(),
        ));
    }
    let plan = DayPlan {
        rooms: a.rooms,
        day,
        interval: a.interval,
        seed: a.seed,
        faults: a.faults,
    };
    let readings = sim::generate_day(&plan);
    if a.dry_run {
        for r in &readings {
            println!(
                "{{\"topic\":\"{}\",\"payload\":{}}}",
                sim::topic(r),
                sim::payload(r)
            );
        }
        return Ok(());
    }
    let opts = a.broker.options(&format!("mote-sim-{}", a.seed))?;
    let report = sim::publish(opts, &readings, a.speed, Duration::from_secs(a.timeout))?;
    eprintln!(
        "simulate: {} readings, {} published, {} acknowledged by the broker, {} reconnects, {:.1} s",
        readings.len(),
        report.published,
        report.acked,
        report.reconnects,
        report.elapsed.as_secs_f64()
    );
    // The one line on stdout: how many readings the broker acknowledged.
    println!("{}", report.acked);
    if report.acked < readings.len() {
        return Err(GatewayError::Mqtt(format!(
            "only {} of {} readings were acknowledged within {} s",
            report.acked,
            readings.len(),
            a.timeout
        )));
    }
    Ok(())
}
