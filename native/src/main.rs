//! The `parlor` binary: parses the command line and serves.

use clap::Parser;
use parlor::cli::{Cli, Command};
use parlor::{clock, Mount, Settings};
use parlor_core::app::RoomService;
use parlor_core::conformance::{ConformanceApp, EngineEcho};
use parlor_core::Service;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            let settings = args.settings()?;
            parlor::init_tracing(settings.log.as_deref())?;
            let service = Service::new(settings.core.clone(), parlor::random_seed(), clock::now(), RoomService::new(parlor_core::app::AppConfig::default()));
            let mounts = vec![Mount::new(settings.path.clone(), service)];
            parlor::run(settings, mounts, parlor::shutdown_signal()).await
        }
        Command::Conformance(args) => {
            let settings = Settings::conformance(args.listen, args.log);
            parlor::init_tracing(settings.log.as_deref())?;
            let config = settings.core.clone();
            let mounts = vec![
                Mount::new("/engine.io/", EngineEcho::new(config.clone(), parlor::random_seed(), clock::now())),
                Mount::new(
                    "/socket.io/",
                    Service::new(config, parlor::random_seed(), clock::now(), ConformanceApp::new()),
                ),
            ];
            parlor::run(settings, mounts, parlor::shutdown_signal()).await
        }
    }
}
