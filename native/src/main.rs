//! The `parlor` binary: parses the command line and serves (or makes keys and tokens).

use anyhow::Context;
use clap::Parser;
use parlor::cli::{Cli, KeygenArgs, Subcommand, TokenArgs};
use parlor::component::{ComponentSpec, Runtime};
use parlor::config::FileConfig;
use parlor::keys::{self, TokenSpec};
use parlor::store::redis::RedisSettings;
use parlor::store::Store;
use parlor::{clock, AdminAuth, Mount, Settings};
use parlor_core::app::RoomService;
use parlor_core::conformance::{ConformanceApp, EngineEcho};
use parlor_core::kinds::Kind;
use parlor_core::Service;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Subcommand::Serve(args) => {
            let settings = args.settings()?;
            parlor::runtime(settings.threads)?.block_on(serve(settings))
        }
        Subcommand::Conformance(args) => {
            let mut settings = Settings::conformance(args.listen, args.log);
            // No file: conformance takes these few flags (or their variables) only.
            let mut none = FileConfig::default();
            args.component.apply(&mut none, &mut settings)?;
            args.runtime.apply(&mut none, &mut settings)?;
            settings.check()?;
            parlor::runtime(settings.threads)?.block_on(conformance(settings))
        }
        Subcommand::Keygen(args) => keygen(&args),
        Subcommand::Token(args) => token(&args),
        Subcommand::Bench(args) => parlor_bench::run(args),
    }
}

/// `parlor serve`: the room service, its store and HTTP API.
async fn serve(settings: Settings) -> anyhow::Result<()> {
    parlor::init_tracing(settings.log.as_deref())?;
    let app = settings.room.app_config()?;
    if app.auth_keys.is_empty() {
        tracing::warn!("no --auth-key: dev mode, anyone may connect; /admin and /api/ are refused");
    } else {
        let kids: Vec<&str> = app.auth_keys.iter().filter_map(|k| k.kid.as_deref()).collect();
        tracing::info!(?kids, "token keys loaded");
    }
    // The room service's signing keys also say who may use the host's admin routes.
    let admin = AdminAuth { keys: app.auth_keys.clone(), leeway_secs: app.auth_leeway_secs };
    let mut store = Store::open(&settings.data_dir, settings.history_keep)?;
    if let Some(url) = &settings.cluster.redis {
        // Cluster mode: history, notifications and read marks are the cluster's, in Redis.
        let shared = RedisSettings {
            url: url.clone(),
            prefix: settings.cluster.prefix.clone(),
            history_keep: settings.history_keep,
            wait_replicas: settings.cluster.redis_wait,
        };
        store = Store::redis(shared, store)?;
    }
    let mount = match &settings.component {
        Some(path) => {
            let config = serde_json::json!({ "core": settings.core, "app": app }).to_string();
            let runtime = Runtime::new(settings.component_limits)?;
            let spec =
                ComponentSpec { runtime, path: path.clone(), kind: Kind::Rooms.name().into(), config_json: config };
            component_mount(&settings.path, spec)?
        }
        None => Mount::new(
            settings.path.clone(),
            Service::new(settings.core.clone(), parlor::random_seed(), clock::now(), RoomService::new(app)),
        ),
    };
    let mounts = vec![mount.with_store(store).with_api().with_admin(admin)];
    parlor::run(settings, mounts, parlor::shutdown_signal()).await
}

/// `parlor conformance`: what the official suites expect, at /engine.io/ and /socket.io/.
async fn conformance(settings: Settings) -> anyhow::Result<()> {
    parlor::init_tracing(settings.log.as_deref())?;
    let config = settings.core.clone();
    // No store: the conformance machines never ask for one.
    let mounts = match &settings.component {
        Some(path) => {
            let runtime = Runtime::new(settings.component_limits)?;
            let config_json = serde_json::json!({ "core": config }).to_string();
            let spec = |kind: Kind| ComponentSpec {
                runtime: runtime.clone(),
                path: path.clone(),
                kind: kind.name().into(),
                config_json: config_json.clone(),
            };
            vec![
                component_mount("/engine.io/", spec(Kind::Echo))?,
                component_mount("/socket.io/", spec(Kind::Conformance))?,
            ]
        }
        None => vec![
            Mount::new("/engine.io/", EngineEcho::new(config.clone(), parlor::random_seed(), clock::now())),
            Mount::new("/socket.io/", Service::new(config, parlor::random_seed(), clock::now(), ConformanceApp::new())),
        ],
    };
    parlor::run(settings, mounts, parlor::shutdown_signal()).await
}

/// A mount whose machine runs from the component `spec` names.
fn component_mount(path: &str, spec: ComponentSpec) -> anyhow::Result<Mount> {
    let machine = spec.start(parlor::random_seed(), clock::now())?;
    tracing::info!(path, kind = %spec.kind, component = %spec.path.display(), "the core runs from a component");
    Ok(Mount::boxed(path, Box::new(machine)).with_component(spec))
}

fn keygen(args: &KeygenArgs) -> anyhow::Result<()> {
    let (private, public) = keys::keygen(&args.out, args.force)?;
    println!(
        "wrote {} (private: keep it secret) and {} (public: serve --auth-key)",
        private.display(),
        public.display()
    );
    Ok(())
}

fn token(args: &TokenArgs) -> anyhow::Result<()> {
    let key = keys::load_signing_key(&args.key)?;
    let ttl_secs = keys::parse_duration(&args.ttl).context("--ttl")?;
    let spec =
        TokenSpec { sub: &args.sub, name: args.name.as_deref(), ttl_secs, admin: args.admin, kid: args.kid.as_deref() };
    println!("{}", keys::mint(&key, &spec)?);
    Ok(())
}
