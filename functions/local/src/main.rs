//! `ticketbound-local`: every route in one process, on an embedded store, with an in-process scheduler.
//!
//! `cargo run -p ticketbound-local -- [--listen 127.0.0.1:8080] [--data-dir ./.ticketbound] [--reconcile-every PT15M|off]`

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use ticketbound::config::{parse_pending_for, parse_reconcile_every};
use ticketbound::domain::IsoDuration;
use ticketbound::domain::identity::RoleGroups;
use ticketbound::http::{AppState, IdentitySource, local_router};
use ticketbound::service::{NotifySettings, ReconcileSettings, Settings, spawn_reconciliation};

const USAGE: &str = "usage: ticketbound-local [--listen ADDR:PORT] [--data-dir DIR] [--reconcile-every DURATION|off]

  --listen           where to serve (default 127.0.0.1:8080)
  --data-dir         where the database lives (default ./.ticketbound)
  --reconcile-every  how often to re-read the tickets of open bound grants, catching closings whose
                     webhook was lost: an ISO-8601 duration such as PT15M (the default) or PT1M, or `off`

Environment: APPROVER_GROUP, ADMIN_GROUP, AUDITOR_GROUP, MAX_DURATION, PENDING_FOR as on AWS; PORTAL_URL (what
notifications link to, default http://<listen>); RUST_LOG for log levels.";

struct Args {
    listen: SocketAddr,
    data_dir: PathBuf,
    /// `None`: off.
    reconcile_every: Option<std::time::Duration>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        listen: "127.0.0.1:8080".parse().expect("valid"),
        data_dir: PathBuf::from(".ticketbound"),
        reconcile_every: Some(std::time::Duration::from_secs(15 * 60)),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f.to_owned(), Some(v.to_owned())),
            None => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--listen" => args.listen = value()?.parse().map_err(|e| format!("--listen: {e}"))?,
            "--data-dir" => args.data_dir = PathBuf::from(value()?),
            "--reconcile-every" => {
                args.reconcile_every = parse_reconcile_every(&value()?)
                    .map_err(|e| format!("--reconcile-every: {e}"))?
                    .map(|d| std::time::Duration::from_secs(d.seconds().unsigned_abs()))
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(args)
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("error: {message}\n");
            }
            eprintln!("{USAGE}");
            std::process::exit(if message.is_empty() { 0 } else { 2 });
        }
    };
    ticketbound::telemetry::init_local();
    let defaults = RoleGroups::default();
    let roles = RoleGroups {
        approver: env_or("APPROVER_GROUP", &defaults.approver),
        admin: env_or("ADMIN_GROUP", &defaults.admin),
        auditor: env_or("AUDITOR_GROUP", &defaults.auditor),
    };
    let max_duration = IsoDuration::parse(&env_or("MAX_DURATION", "P7D"))
        .map_err(|e| format!("MAX_DURATION: {e}"))?;
    let pending_for = parse_pending_for(&env_or("PENDING_FOR", "P1D"))
        .map_err(|e| format!("PENDING_FOR: {e}"))?;
    let settings = Settings {
        max_duration,
        pending_for,
        reconcile: ReconcileSettings {
            every: args.reconcile_every,
            ..ReconcileSettings::default()
        },
        // Notifications link to the grant here (the channels are under `_notifications` in the secret file).
        notifications: NotifySettings {
            portal_url: Some(env_or("PORTAL_URL", &format!("http://{}", args.listen))),
            ..NotifySettings::default()
        },
        ..Settings::default()
    };
    let (app, scheduler) = ticketbound::wiring::local_app(&args.data_dir, settings)?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let armed = scheduler.start(Arc::new(app.clone())).await?;
    if let Some(every) = args.reconcile_every {
        spawn_reconciliation(app.clone(), every);
    }
    let router = local_router(AppState {
        app,
        identity: IdentitySource::TrustedHeaders,
        roles: roles.clone(),
    });

    println!(
        "Ticketbound local server listening on http://{}",
        listener.local_addr()?
    );
    println!(
        "  data: {} ({armed} pending schedule(s) re-armed)",
        args.data_dir.join("ticketbound.db").display()
    );
    println!(
        "  WARNING: identity is taken from the X-Ticketbound-User and X-Ticketbound-Groups headers as sent."
    );
    println!(
        "  Anyone who can reach this port can act as anyone. Local use only; never expose it."
    );
    println!(
        "  approvers: group `{}`; admins: group `{}`",
        roles.approver, roles.admin
    );
    match args.reconcile_every {
        Some(every) => println!(
            "  reconciliation: every {} s (re-reads the tickets of open bound grants)",
            every.as_secs()
        ),
        None => println!("  reconciliation: off (a lost webhook leaves its grants open)"),
    }

    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
