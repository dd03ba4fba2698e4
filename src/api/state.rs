//! What every handler can reach, built once from one `Settings`: the engine (where the
//! services' work runs), who may call, the limits on requests, and the API's own counters.
//! Its fields are the HTTP layer's: nothing outside `api` sees them.

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::auth::AuthConfig;
use super::body::{BodyLimits, Budget, BODY_BUDGET, BODY_DEADLINE};
use super::metrics::Metrics;
use crate::auth::throttle::Logins;
use crate::auth::{host, origin, password};
use crate::engine::{self, Engine};
use crate::service::lifecycle::Limits;
use crate::service::{accounts, dispatch};

/// Everything `backfilld serve` decides about a server, with the defaults of its flags.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Whether every `/api` request needs an API key and an OAuth token.
    pub require_auth: bool,
    /// The API keys clients may present.
    pub api_keys: Vec<String>,
    /// The API key the dashboard's page carries: one of `api_keys`, or by default the first.
    pub dashboard_api_key: Option<String>,
    /// The most pipeline runs one start may create.
    pub max_runs: u64,
    /// How long a client has, after its request headers, to send the whole body.
    pub body_deadline: Duration,
    /// How many bytes of request bodies may be held at once, across all connections.
    pub body_budget: usize,
    /// The origins whose pages may call the API (`*` for any); none turns CORS off. Checked,
    /// and brought to the form browsers send, when the state is built.
    pub cors_origins: Vec<String>,
    /// The host names (besides the bound address, `localhost` and loopback addresses) that
    /// requests may name in `Host` (`*` for any); none on a server bound to an address that is
    /// not loopback allows any. Checked, and brought to lower case, when the state is built.
    pub allowed_hosts: Vec<String>,
    /// How long a login's session lasts, in seconds.
    pub session_lifetime: i64,
    /// The shortest lease a claim may ask for.
    pub min_lease_seconds: i64,
    /// The most bytes all runs' logs may store together; past it, the logs of the oldest
    /// finished runs are deleted.
    pub max_log_bytes: u64,
    /// The most bytes of records one page of backfills or runs answers: a page stops short
    /// of its `_limit` rather than pass it (`DEFAULT_PAGE_BYTES`; tests lower it).
    pub page_bytes: usize,
    /// How the engine runs: its reading connections, the sweep's period, the WAL's bound.
    pub engine: engine::Settings,
}

/// How many bytes a page answers at most unless set: 8 MiB, some hundred records of the
/// largest the API stores (64 KiB of variables, 64 KiB of metrics), and a thousand of the
/// usual size.
pub const DEFAULT_PAGE_BYTES: usize = 8 << 20;

/// `--max-log-bytes` unless given: 1 GiB.
pub const DEFAULT_MAX_LOG_BYTES: u64 = 1 << 30;

impl Default for Settings {
    fn default() -> Self {
        Settings {
            require_auth: false,
            api_keys: vec![],
            dashboard_api_key: None,
            max_runs: Limits::default().max_runs,
            body_deadline: BODY_DEADLINE,
            body_budget: BODY_BUDGET,
            cors_origins: vec![],
            allowed_hosts: vec![],
            session_lifetime: accounts::DEFAULT_SESSION_SECONDS,
            min_lease_seconds: dispatch::MIN_LEASE_SECONDS,
            max_log_bytes: DEFAULT_MAX_LOG_BYTES,
            page_bytes: DEFAULT_PAGE_BYTES,
            engine: engine::Settings::default(),
        }
    }
}

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A `cors_origins` entry is not an origin (the message names it).
    #[error("{0}")]
    CorsOrigin(String),
    /// An `allowed_hosts` entry is not a host name (the message names it).
    #[error("{0}")]
    AllowedHost(String),
    #[error(transparent)]
    Engine(#[from] engine::StartError),
    #[error("cannot read the data file's JWT secret: {0}")]
    Secret(engine::Error),
    /// The dashboard's API key is not one of the API keys.
    #[error(
        "--dashboard-api-key / BACKFILLD_DASHBOARD_API_KEY is not one of the --api-key keys: the dashboard's \
         logins would be refused; give it with --api-key too, or leave it out to use the first --api-key"
    )]
    DashboardApiKey,
}

/// The handlers' state.
pub struct AppState {
    pub(super) engine: Engine,
    pub(super) auth: AuthConfig,
    pub(super) limits: Limits,
    pub(super) body: BodyLimits,
    pub(super) cors_origins: Vec<String>,
    pub(super) allowed_hosts: Vec<String>,
    pub(super) session_lifetime: i64,
    pub(super) min_lease_seconds: i64,
    pub(super) max_log_bytes: u64,
    pub(super) page_bytes: usize,
    /// The data file's secret that signs sessions' JWTs.
    pub(super) jwt_secret: Vec<u8>,
    /// What `/metrics` reports.
    pub(super) metrics: Metrics,
    /// The dashboard's page, with its API key when there is one, and its `ETag`.
    pub(super) index: super::dashboard::Page,
    /// Where the next claim's walk over the backfills starts. Shared with the claims' writes
    /// (which need nothing else of the state, so that no write job holds the state itself).
    pub(super) claims: Arc<ClaimCursor>,
    /// Failed logins per address and per client (`logins()` locks them).
    logins: Mutex<Logins>,
}

impl AppState {
    /// Checks `settings`, opens the data file at `path` and starts its engine.
    pub fn open(path: &Path, settings: Settings) -> Result<AppState, StartError> {
        let cors_origins = settings
            .cors_origins
            .iter()
            .map(|o| origin::parse(o))
            .collect::<Result<Vec<_>, _>>()
            .map_err(StartError::CorsOrigin)?;
        let allowed_hosts = settings
            .allowed_hosts
            .iter()
            .map(|h| host::parse(h))
            .collect::<Result<Vec<_>, _>>()
            .map_err(StartError::AllowedHost)?;
        let dashboard_key = match settings.dashboard_api_key.as_deref() {
            Some(key) if !settings.api_keys.iter().any(|k| k == key) => return Err(StartError::DashboardApiKey),
            Some(key) => Some(key),
            None => settings.api_keys.first().map(String::as_str),
        };
        let index = super::dashboard::Page::index(dashboard_key);
        let engine = Engine::open(path, settings.engine)?;
        let jwt_secret = engine.read(accounts::jwt_secret).map_err(StartError::Secret)?;
        // Made now rather than on the first login for an unknown user, which would otherwise
        // take twice as long as any other.
        password::decoy();
        Ok(AppState {
            engine,
            auth: AuthConfig::new(settings.require_auth, &settings.api_keys),
            limits: Limits { max_runs: settings.max_runs },
            body: BodyLimits { deadline: settings.body_deadline, budget: Budget::new(settings.body_budget) },
            cors_origins,
            allowed_hosts,
            session_lifetime: settings.session_lifetime,
            min_lease_seconds: settings.min_lease_seconds,
            max_log_bytes: settings.max_log_bytes,
            page_bytes: settings.page_bytes,
            jwt_secret,
            metrics: Metrics::new(),
            index,
            claims: Arc::default(),
            logins: Mutex::default(),
        })
    }

    /// The failed logins' counts, locked (a panic while they were held leaves them usable).
    pub(super) fn logins(&self) -> MutexGuard<'_, Logins> {
        self.logins.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Where the next claim's round-robin walk over the backfills starts: after the last
/// backfill a claim served. Claims run one at a time (the single writer), so a plain load and
/// store suffice; it starts over at 0 after a restart.
#[derive(Debug, Default)]
pub(super) struct ClaimCursor(AtomicI64);

impl ClaimCursor {
    /// Where the next claim's walk starts.
    pub(super) fn start(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }

    /// The last backfill a claim served: the next claim's walk starts after it.
    pub(super) fn served(&self, backfill_id: i64) {
        self.0.store(backfill_id, Ordering::Relaxed);
    }
}
