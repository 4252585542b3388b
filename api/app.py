"""The Flask app factory: builds every connection and blueprint; nothing happens at import."""

from __future__ import annotations

from flask import Flask

from api import admission, body_budget, observability, openapi
from api.auth import KeyChecker
from api.context import EXTENSION, Services
from api.dispatch import Dispatcher
from api.errors import register_error_handlers
from api.routes import batches, cohere, embeddings, files, health, jobs, models, rerank, tokenize
from embedserve import defaults
from embedserve.apikeys import KeyStore
from embedserve.celery_app import make_celery
from embedserve.events.delivery import Deliverer
from embedserve.events.endpoints import Endpoints
from embedserve.events.outbox import Outbox
from embedserve.fleet.liveness import Liveness, Reaper
from embedserve.fleet.registry import Registry
from embedserve.jobs.data import JobData
from embedserve.jobs.records import JobRecords
from embedserve.jobs.scheduler import Scheduler
from embedserve.jobs.store import open_store
from embedserve.jobs.store.identity import claim_identity
from embedserve.jobs.sweeper import Sweeper
from embedserve.publish import TaskPublisher
from embedserve.redis_client import client_for, retry_policy
from embedserve.settings import Settings


def create_app(settings: Settings | None = None) -> Flask:
    """A ready-to-serve app for `settings` (read from the environment when omitted)."""
    settings = settings or Settings.from_env()
    app = Flask("embedserve")
    # The embeddings limit is the default; the job and file routes raise it for their requests.
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False
    # Socket timeout above the longest BLPOP a request makes, so a slow reply is a 504, not an error.
    # A command whose reply was lost (a dropped connection, a Redis restart) is tried again, as the
    # workers' are: the job scripts answer a repeat as the first run did (SUBMIT of an id that
    # exists does nothing), so a lost reply does not turn an accepted job into a 503.
    client = client_for(settings, health_check_interval=30, socket_timeout=settings.sync_timeout + 10,
                        socket_connect_timeout=5, max_connections=settings.api_threads * 2 + 8,
                        retry=retry_policy())
    publisher = TaskPublisher(make_celery(settings), client)  # publishes with `client`, not through kombu
    store = open_store(settings.job_store)
    claim_identity(store, client)  # workers check they write where this API reads
    liveness = Liveness(client, settings.worker_dead_after)
    records = JobRecords(client, defaults.JOB_ERROR_SAMPLE)
    # After a submission, a WAIT for replicas when configured: a 202 outlives a primary failover.
    scheduler = Scheduler(client, wait_replicas=settings.redis_wait_replicas,
                          wait_timeout_ms=settings.redis_wait_timeout_ms)
    key_checker = KeyChecker(settings.api_keys, KeyStore(client), static_rpm=settings.static_key_rpm,
                             static_tpm=settings.static_key_tpm, static_webhook=bool(settings.webhook_url))
    app.extensions[EXTENSION] = Services(
        settings=settings, redis=client, publisher=publisher, registry=Registry.from_settings(client, settings),
        keys=key_checker, dispatcher=Dispatcher(publisher, client, liveness, settings),
        jobs=records, job_data=JobData(store), scheduler=scheduler, liveness=liveness)
    # Every API process also hands back dead workers' chunks and deletes expired jobs' data, so
    # both happen with no worker up.
    Reaper(liveness).start()
    Sweeper(records, JobData(store), client).start()
    # ...and sends job and batch events to the keys' webhook endpoints (why here: embedserve/events/delivery.py).
    Deliverer(Outbox(client), Endpoints(client, settings), settings).start()
    for blueprint in (health.bp, models.bp, embeddings.bp, cohere.bp, rerank.bp, tokenize.bp, jobs.bp, files.bp,
                      batches.bp):
        app.register_blueprint(blueprint)
    register_error_handlers(app)
    body_budget.init_app(app, settings.max_job_body_bytes)
    admission.init_app(app, client)
    observability.init_app(app, client)
    openapi.init_app(app, settings)
    return app
