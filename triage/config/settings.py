"""Settings: the environment is read here, once.

Embedded defaults (SQLite, in-memory channel layer and broker) apply only when DEBUG is on, which is
how `make demo` runs. Without DEBUG the process refuses to start unless it is told where its
database, secret key and Redis live.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent.parent


# Four small readers on os.environ rather than django-environ: its lists and dicts keep the
# spaces around items ("ED, ER" would give " ER") and case of keys as typed, which these
# settings' operators are not expected to get right, and a bad KEY=VALUE pair or a missing
# production value should name the variable in the error, as these do.
def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


def _env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def _env_mapping(name: str, default: str = "") -> dict[str, str]:
    """Parse `KEY=VALUE,KEY=VALUE` (keys upper-cased)."""
    mapping: dict[str, str] = {}
    for pair in _env_list(name, default):
        key, sep, value = pair.partition("=")
        if not sep:
            raise ImproperlyConfigured(f"{name}: expected KEY=VALUE pairs, got {pair!r}")
        mapping[key.strip().upper()] = value.strip()
    return mapping


def _required(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise ImproperlyConfigured(f"{name} must be set when DEBUG is off (production).")
    return value


DEBUG = _env_bool("DEBUG", False)
EMBEDDED = DEBUG  # embedded defaults serve the demo and development only

if EMBEDDED:
    (BASE_DIR / "var").mkdir(exist_ok=True)
    SECRET_KEY = os.environ.get("SECRET_KEY") or "embedded-demo-only-not-a-secret"
    _database_url = (
        os.environ.get("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'var' / 'demo.sqlite3'}"
    )
    REDIS_URL = os.environ.get("REDIS_URL", "")
    CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL") or (REDIS_URL or "memory://localhost/")
else:
    SECRET_KEY = _required("SECRET_KEY")
    _database_url = _required("DATABASE_URL")
    REDIS_URL = _required("REDIS_URL")
    CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL") or REDIS_URL

ALLOWED_HOSTS = _env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]" if EMBEDDED else "")
CSRF_TRUSTED_ORIGINS = _env_list("CSRF_TRUSTED_ORIGINS")

DATABASES = {"default": dj_database_url.parse(_database_url, conn_max_age=60)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several threads (listener, web, worker) share the demo's file: wait for the lock.
    DATABASES["default"]["OPTIONS"] = {"timeout": 30, "transaction_mode": "IMMEDIATE"}
    DATABASES["default"]["CONN_MAX_AGE"] = 0
elif _env_bool("DATABASE_POOL", False):
    # On in the ASGI server (asgi.py sets it): there each request's database work runs in a
    # thread of its own, so a persistent connection is one per request, and opening it cost
    # ~20 ms of each DICOMweb request (bench/dicomweb.py). A process-wide psycopg pool hands a
    # connection over instead. Off in the listener and the workers, whose long-lived threads
    # keep their own connection.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # With the pool, Django checks a connection before handing it out (psycopg_pool's
    # check_connection), so one broken by a database restart is replaced, not given to a request.
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    # Merged into the URL's options (sslmode and the like stay).
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": int(os.environ.get("DATABASE_POOL_SIZE", "10")),
    }

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "channels",
    "triage",
    "worklist",
    "inference",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "triage.request_guard.NulRefused",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "triage.security_headers.SecurityHeaders",
    "triage.audit.DeniedAccessAudit",
]

ROOT_URLCONF = "triage.config.urls"
ASGI_APPLICATION = "triage.config.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "triage.context_processors.roles",
            ],
        },
    },
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "login"
# An account with this many failed sign-ins in the window is refused until the window passes.
LOGIN_FAILURES_ALLOWED = int(os.environ.get("LOGIN_FAILURES_ALLOWED", "5"))
LOGIN_LOCKOUT_MINUTES = int(os.environ.get("LOGIN_LOCKOUT_MINUTES", "15"))
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-gb"
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")  # display zone; storage is always UTC
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
# Serve static files from the ASGI app itself (demo, tests, single-host installs without a proxy).
SERVE_STATIC = _env_bool("SERVE_STATIC", EMBEDDED)
STATIC_ROOT = BASE_DIR / "var" / "static"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
if not DEBUG:
    SESSION_COOKIE_SECURE = _env_bool("SECURE_COOKIES", True)
    CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
    # Sent on HTTPS requests (uvicorn --proxy-headers behind the TLS proxy): a year of HTTPS.
    SECURE_HSTS_SECONDS = 31_536_000 if SESSION_COOKIE_SECURE else 0

# --- Channels -------------------------------------------------------------------------------
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # channels_redis blocks on Redis for up to 5 s while a socket is idle; redis-py's own
            # default socket timeout is also 5 s, which killed idle consumers. No socket timeout.
            # Hundreds of dashboards closing at once each discard their group membership: the
            # redis-py pool must not refuse them (it fails fast instead of waiting).
            "CONFIG": {
                "hosts": [{"address": REDIS_URL, "socket_timeout": None, "max_connections": 2048}]
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# --- Celery (reliability first: a worker that dies mid-task leaves the task queued) ----------
CELERY_LONGEST_TASK_SECONDS = int(os.environ.get("CELERY_LONGEST_TASK_SECONDS", "600"))
# Read by the Celery app through its CELERY_ settings namespace (triage/config/celery.py).
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    "triage.tasks.inference_run": {"queue": "inference"},
    "triage.tasks.outbound_send": {"queue": "outbound"},
}
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_LONGEST_TASK_SECONDS * 3}
# A broker that cannot take a message fails the send in about a second (logged; the periodic
# duties send the work again: triage/queueing.py) instead of holding the listener or the duties.
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 2, "interval_start": 0, "interval_step": 0.3, "interval_max": 0.5,
}  # fmt: skip
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = "UTC"
CELERY_ENABLE_UTC = True

# --- REST framework -------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first: an unauthenticated request is answered 401 with WWW-Authenticate.
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "triage.openapi.TriageAutoSchema",
}
SPECTACULAR_SETTINGS = {
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "TITLE": "ED triage worklist API",
    "DESCRIPTION": "Reading worklist, studies and DICOMweb ingest. AI output comes from "
    "demonstration models trained on synthetic phantoms; it has no clinical validity.",
    "VERSION": "0.1.0",
}

# --- DICOM ingest ---------------------------------------------------------------------------
DICOM_STORAGE_DIR = Path(
    os.environ.get("DICOM_STORAGE_DIR")
    or (BASE_DIR / "var" / "dicom" if EMBEDDED else "")
    or _required("DICOM_STORAGE_DIR")
)
DICOM_ALLOWED_AE_TITLES = _env_list("DICOM_ALLOWED_AE_TITLES")
# An empty list means "any calling AE title": allowed in the embedded demo only.
DICOM_OPEN_ACCESS = EMBEDDED and not DICOM_ALLOWED_AE_TITLES
# DICOM TLS (PS3.15 B.9 secure transport): with a certificate and key (PEM) the listener speaks
# TLS only; with a client CA it requires each sender's certificate to be signed by it.
DICOM_TLS_CERTIFICATE = os.environ.get("DICOM_TLS_CERTIFICATE", "")
DICOM_TLS_PRIVATE_KEY = os.environ.get("DICOM_TLS_PRIVATE_KEY", "")
DICOM_TLS_CLIENT_CA = os.environ.get("DICOM_TLS_CLIENT_CA", "")
# The quiet period: a study with no new instance for this long is taken as whole. A study sent
# over DICOM is ready sooner, as soon as the last association delivering it is released, except
# from the calling AE titles below: senders that spread one series over several associations
# (one association per instance, say), whose releases do not mean a series is whole.
STUDY_STABLE_SECONDS = float(os.environ.get("STUDY_STABLE_SECONDS", "8"))
DICOM_QUIET_PERIOD_AE_TITLES = [
    title.upper() for title in _env_list("DICOM_QUIET_PERIOD_AE_TITLES")
]
STOW_MAX_REQUEST_BYTES = int(os.environ.get("STOW_MAX_REQUEST_BYTES", str(2 * 1024**3)))
STOW_MAX_PART_BYTES = int(os.environ.get("STOW_MAX_PART_BYTES", str(1024**3)))

# --- The worklist ---------------------------------------------------------------------------
# Target turnaround (minutes from arrival to read) per class; the read-by deadline is arrival
# plus the smallest target that applies.
WORKLIST_PRIORITY_TARGET_MINUTES = {
    key: int(value)
    for key, value in _env_mapping(
        "WORKLIST_PRIORITY_TARGET_MINUTES", "STAT=30,HIGH=60,MEDIUM=120,ROUTINE=240,LOW=480"
    ).items()
}
WORKLIST_ED_TARGET_MINUTES = int(os.environ.get("WORKLIST_ED_TARGET_MINUTES", "60"))
WORKLIST_DEFAULT_PRIORITY = os.environ.get("WORKLIST_DEFAULT_PRIORITY", "ROUTINE").upper()
# Calling AE title -> order priority, used when the DICOM object carries none.
WORKLIST_PRIORITY_BY_AE = _env_mapping("WORKLIST_PRIORITY_BY_AE")
# Patient locations that count as the emergency department (case-insensitive prefixes).
WORKLIST_ED_LOCATIONS = [
    item.upper() for item in _env_list("WORKLIST_ED_LOCATIONS", "ED,ER,EMERGENCY,A&E")
]
# Calling AE title -> the patient location assumed when the object carries none.
WORKLIST_LOCATION_BY_AE = _env_mapping("WORKLIST_LOCATION_BY_AE")
# The site's viewer ({study_instance_uid}, {accession_number}); empty: the built-in preview.
PACS_VIEWER_URL_TEMPLATE = os.environ.get("PACS_VIEWER_URL_TEMPLATE", "")

# Results out (triage/outbound): destinations seeded from the environment; an administrator
# adds and tunes more in the admin. DICOM: AE@HOST:PORT, STOW: base URL, HL7: HOST:PORT.
OUTBOUND_DICOM = _env_list("OUTBOUND_DICOM")
OUTBOUND_STOW = _env_list("OUTBOUND_STOW")
OUTBOUND_STOW_TOKEN = os.environ.get("OUTBOUND_STOW_TOKEN", "")
OUTBOUND_HL7 = _env_list("OUTBOUND_HL7")
# DICOM destinations marked TLS (`tls:AE@HOST:PORT` in OUTBOUND_DICOM, or the destination's
# TLS box): the PACS's certificate is checked against this CA (else the system's), and ours
# (certificate and key, PEM) is presented when the PACS asks for one.
OUTBOUND_DICOM_TLS_CA = os.environ.get("OUTBOUND_DICOM_TLS_CA", "")
OUTBOUND_DICOM_TLS_CERTIFICATE = os.environ.get("OUTBOUND_DICOM_TLS_CERTIFICATE", "")
OUTBOUND_DICOM_TLS_PRIVATE_KEY = os.environ.get("OUTBOUND_DICOM_TLS_PRIVATE_KEY", "")
OUTBOUND_CALLING_AE_TITLE = os.environ.get("OUTBOUND_CALLING_AE_TITLE", "TRIAGE")
OUTBOUND_RECEIVING_APPLICATION = os.environ.get("OUTBOUND_RECEIVING_APPLICATION", "RIS")
# A message not delivered waits these seconds, then twice as long each time up to the maximum; a
# worker holds it for the lease while it sends (one that dies leaves it to be sent again).
OUTBOUND_RETRY_SECONDS = float(os.environ.get("OUTBOUND_RETRY_SECONDS", "5"))
OUTBOUND_RETRY_MAX_SECONDS = float(os.environ.get("OUTBOUND_RETRY_MAX_SECONDS", "300"))
OUTBOUND_LEASE_SECONDS = float(os.environ.get("OUTBOUND_LEASE_SECONDS", "30"))
# How long a peer may take to answer (C-STORE response, HTTP response, HL7 ACK): keep it under
# the lease, or a slow peer is sent the same message twice (harmless, but noisy).
OUTBOUND_ANSWER_SECONDS = float(os.environ.get("OUTBOUND_ANSWER_SECONDS", "10"))
# DICOMweb QIDO-RS / WADO-RS for integration accounts (radiologists, administrators and, for
# their locations, clinicians always may).
DICOMWEB_INTEGRATION_READ = _env_bool("DICOMWEB_INTEGRATION_READ", False)
# Scrolling a series in the preview asks for hundreds of rendered frames and heat maps: one
# audit record stands for one user's requests on one series for this long (per process).
AUDIT_BATCH_SECONDS = int(os.environ.get("AUDIT_BATCH_SECONDS", "300"))
# HL7 in (manage.py hl7_listener): the peers allowed to send (addresses; open only in the demo)
# and how HL7 order priorities (OBR-27.6 / TQ1-9) map to the worklist's.
HL7_ALLOWED_PEERS = _env_list("HL7_ALLOWED_PEERS")
HL7_OPEN_ACCESS = EMBEDDED and not HL7_ALLOWED_PEERS
HL7_PRIORITY_MAP = {
    key.upper(): value.upper()
    for key, value in _env_mapping(
        "HL7_PRIORITY_MAP", "S=STAT,A=HIGH,T=HIGH,R=ROUTINE,P=ROUTINE,C=ROUTINE"
    ).items()
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "filters": {
        "client_errors_one_line": {"()": "triage.config.log_filters.ClientErrorsWithoutTraceback"}
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["client_errors_one_line"],
        }
    },
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "pynetdicom": {"level": "WARNING"},
        # Its UID checks on received DIMSE commands log the sender's value as it came.
        "pynetdicom.utils": {"level": "ERROR"},
        "highdicom": {"level": "WARNING"},  # one INFO line per module copied
    },
}

# --- Inference ------------------------------------------------------------------------------
# Shipped demonstration models first; a site's folders (comma-separated) add to or replace them.
INFERENCE_MODEL_DIRS = [BASE_DIR / "inference" / "models"] + [
    Path(path) for path in _env_list("INFERENCE_EXTRA_MODEL_DIRS")
]
INFERENCE_THREADS = int(os.environ.get("INFERENCE_THREADS") or (os.cpu_count() or 1))
INFERENCE_BATCH_SIZE = int(os.environ.get("INFERENCE_BATCH_SIZE", "32"))
# A worker renews its lease on a run every third of this; a run whose lease ran out is sent
# again at once, one whose message has not started this long after it went out too (the waits
# double with each redelivery).
INFERENCE_LEASE_SECONDS = float(os.environ.get("INFERENCE_LEASE_SECONDS", "6"))
# A subgroup of a validation run whose sensitivity interval's lower bound is under this is
# flagged on the operating-point explorer (triage/subgroups.py).
VALIDATION_SENSITIVITY_FLOOR = float(os.environ.get("VALIDATION_SENSITIVITY_FLOOR", "0.8"))
INFERENCE_REDELIVER_AFTER_SECONDS = float(os.environ.get("INFERENCE_REDELIVER_AFTER_SECONDS", "15"))

# --- Alerts ---------------------------------------------------------------------------------
# Seconds before an unacknowledged alert escalates, per finding (defaults in triage/findings.py).
ALERT_ACK_TARGET_SECONDS = _env_mapping("ALERT_ACK_TARGET_SECONDS")
# Findings whose alerts reach the location's clinicians at once (the others after a
# radiologist confirms). Unset: the catalogue's defaults.
ALERT_CLINICIANS_IMMEDIATELY = (
    _env_list("ALERT_CLINICIANS_IMMEDIATELY")
    if os.environ.get("ALERT_CLINICIANS_IMMEDIATELY") is not None
    else None
)
# Alarm fatigue: at most ALERT_RATE_CAP interrupting alerts (banner and sound) per recipient in
# any ALERT_RATE_WINDOW_MINUTES; alerts beyond it are listed quietly at once and rolled into one
# digest notification when the window has passed. Escalations are never held. 0 turns it off.
ALERT_RATE_CAP = int(os.environ.get("ALERT_RATE_CAP", "6"))
ALERT_RATE_WINDOW_MINUTES = float(os.environ.get("ALERT_RATE_WINDOW_MINUTES", "30"))
if ALERT_RATE_CAP < 0 or ALERT_RATE_WINDOW_MINUTES <= 0:
    raise ImproperlyConfigured(
        "ALERT_RATE_CAP must be 0 (off) or more and ALERT_RATE_WINDOW_MINUTES above 0."
    )
