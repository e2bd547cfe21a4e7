//! `ticketbound-local`: every route in one process, on an embedded store, with an in-process scheduler.
//!
//! `cargo run -p ticketbound-local -- [--listen 127.0.0.1:8080] [--data-dir ./.ticketbound] [--reconcile-every PT15M|off]`
//!
//! The HTTP side (timeouts, the connection cap, which `Host` and `Origin` it answers) is [`serve`].

mod serve;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use ticketbound::config::{parse_pending_for, parse_reconcile_every};
use ticketbound::domain::IsoDuration;
use ticketbound::domain::identity::RoleGroups;
use ticketbound::http::{AppState, IdentitySource, local_router};
use ticketbound::service::{NotifySettings, ReconcileSettings, Settings, spawn_reconciliation};

const USAGE: &str = "usage: ticketbound-local [--listen ADDR:PORT] [--data-dir DIR] [--reconcile-every DURATION|off]
                         [--public-url URL] [--header-timeout DURATION] [--body-timeout DURATION]
                         [--max-connections N]

  --listen           where to serve (default 127.0.0.1:8080)
  --data-dir         where the database lives (default ./.ticketbound)
  --reconcile-every  how often to re-read the tickets of open bound grants, catching closings whose
                     webhook was lost: an ISO-8601 duration such as PT15M (the default) or PT1M, or `off`
  --public-url       the URL users and webhooks reach this server at when it is not its listen address (a
                     tunnel, a proxy): its host is accepted in `Host` and its origin may send changes;
                     notifications link to it (default: PORTAL_URL, else http://<listen>)
  --header-timeout   how long a request's headers may take to arrive, and an idle connection stay open
                     (default PT10S)
  --body-timeout     how long a request's body may take to arrive after its headers (default PT30S)
  --max-connections  how many connections are served at once; one more is answered 503 (default 64)

Environment: APPROVER_GROUP, ADMIN_GROUP, AUDITOR_GROUP, MAX_DURATION, PENDING_FOR as on AWS; PORTAL_URL (as
--public-url); RUST_LOG for log levels.";

struct Args {
    listen: SocketAddr,
    data_dir: PathBuf,
    /// `None`: off.
    reconcile_every: Option<std::time::Duration>,
    public_url: Option<String>,
    limits: serve::Limits,
}

/// A timeout flag: an ISO-8601 duration of at least one second.
fn parse_timeout(flag: &str, text: &str) -> Result<std::time::Duration, String> {
    let seconds = IsoDuration::parse(text)
        .map_err(|e| format!("{flag}: {e}"))?
        .seconds();
    if seconds < 1 {
        return Err(format!("{flag}: must be at least PT1S"));
    }
    Ok(std::time::Duration::from_secs(seconds.unsigned_abs()))
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        listen: "127.0.0.1:8080".parse().expect("valid"),
        data_dir: PathBuf::from(".ticketbound"),
        reconcile_every: Some(std::time::Duration::from_secs(15 * 60)),
        public_url: None,
        limits: serve::Limits::default(),
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
            "--public-url" => args.public_url = Some(value()?),
            "--header-timeout" => {
                args.limits.header_timeout = parse_timeout(&flag, &value()?)?;
            }
            "--body-timeout" => args.limits.body_timeout = parse_timeout(&flag, &value()?)?,
            "--max-connections" => {
                args.limits.max_connections = value()?
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or("--max-connections: a whole number of at least 1")?;
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
    let public_url = match args
        .public_url
        .clone()
        .or_else(|| std::env::var("PORTAL_URL").ok().filter(|v| !v.is_empty()))
    {
        Some(raw) => Some(
            url::Url::parse(&raw)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
                .ok_or_else(|| {
                    format!("--public-url / PORTAL_URL: `{raw}` is not an http(s) URL")
                })?,
        ),
        None => None,
    };
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
            portal_url: Some(public_url.as_ref().map_or_else(
                || format!("http://{}", args.listen),
                |u| u.as_str().trim_end_matches('/').to_owned(),
            )),
            approver_group: roles.approver.clone(),
            ..NotifySettings::default()
        },
        ..Settings::default()
    };
    let (app, scheduler) = ticketbound::wiring::local_app(&args.data_dir, settings)?;
    // Bound ticket keys stored as typed by an older version move to the ticket system's spelling.
    app.canonicalise_ticket_keys().await?;
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

    let limits = args.limits;
    println!(
        "  connections: at most {}; headers within {} s, bodies within {} s",
        limits.max_connections,
        limits.header_timeout.as_secs(),
        limits.body_timeout.as_secs()
    );
    let origins = serve::Origins::new(listener.local_addr()?, public_url.as_ref());
    println!(
        "  answers to Host: {} (others: 421; writes from other origins: 403)",
        origins.hosts().join(", ")
    );
    serve::serve(listener, router, origins, limits, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await;
    Ok(())
}
