"""Settings, read from the environment (prefix `PARLEY_`) and an optional `.env` file.

Nothing is built here at import time; `Settings()` is created by the composition root.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PARLEY_", env_file=".env", extra="ignore")

    # Where embedded PostgreSQL keeps its data and Parley keeps its files.
    data_dir: Path = Field(default=Path(".parley"))
    # An external PostgreSQL (postgresql://user:pass@host:port/db). Unset: embedded server.
    database_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    # Base URL providers use to reach our webhooks (behind a proxy: the public URL).
    public_base_url: str | None = None
    db_pool_size: int = 10
    worker_concurrency: int = 8
    # A `parley worker` process (not `parley run`) runs at least at this niceness, and so
    # do its backends on a local PostgreSQL (storage/priority.py): bulk sending then
    # yields the CPU to API requests sharing the host.
    worker_nice: int = Field(default=5, ge=0, le=19)
    # normal: as is; nice: worker_nice; idle: worker_nice and Linux SCHED_IDLE (bulk
    # sending gets only the CPU nothing else wants). Its local database backends too.
    worker_priority: Literal["normal", "nice", "idle"] = "nice"
    # A `parley worker` and its local database backends run only on these CPUs ("1",
    # "2-3", "0,2"), leaving the others to the API (storage/priority.py). Unset: any CPU.
    worker_cpus: str | None = None

    @field_validator("worker_cpus")
    @classmethod
    def _cpu_list(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        from parley.storage.priority import parse_cpu_list

        parse_cpu_list(value)  # the format; availability is checked where it is applied
        return value.strip()

    # How often an idle worker looks for jobs that became due (retries, scheduled sends).
    job_poll_seconds: float = 0.5
    # Bulk sends are split into jobs of this many messages (one job, many message ids).
    dispatch_batch_size: int = 200
    # Concurrent provider calls per dispatch job.
    dispatch_parallelism: int = 64
    max_attempts: int = 6
    retry_base_seconds: float = 2.0
    retry_max_seconds: float = 3600.0
    # A worker that has not sent a heartbeat for this long is presumed dead.
    stalled_worker_seconds: float = 30.0
    # Succeeded dispatch jobs are kept this long, then pruned (messages keep every event).
    job_retention_hours: int = 168
    # Workers run the listeners of accounts that receive over a connection of their own
    # (SMPP binds, IMAP mailboxes) and re-read the accounts this often.
    listeners_enabled: bool = True
    listener_poll_seconds: float = 15.0
    # Provider status callbacks that arrive while earlier ones are being written are
    # stored together, up to this many per transaction (1: each in its own).
    webhook_batch_size: int = Field(default=200, ge=1, le=1000)
    max_request_bytes: int = 1_048_576
    # Document uploads (25 MB files plus multipart framing) and inbound-parse emails
    # (attachments base64-encoded) get a larger request limit than the rest of the API.
    max_upload_request_bytes: int = 26_500_000
    max_inbound_email_bytes: int = 50_000_000
    idempotency_ttl_hours: int = 48
    log_level: str = "INFO"
    # Outbound webhooks refuse private, loopback, link-local and other non-public targets
    # (SSRF); an operator whose receivers live on the private network turns this on.
    webhooks_allow_private_targets: bool = False
    # Seconds one webhook delivery attempt may take (connect + answer).
    webhooks_timeout_seconds: float = 10.0

    @property
    def base_url(self) -> str:
        return self.public_base_url or f"http://{self.host}:{self.port}"
