"""Procrastinate tasks: batch sends, stalled-job recovery, housekeeping.

Tasks live on a Blueprint so nothing is bound at import time; the composition root adds
them to the App under the `parley` namespace and workers pass the `Container` in the
job context.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import procrastinate
from procrastinate import JobContext, RetryStrategy

if TYPE_CHECKING:
    from parley.bootstrap import Container

log = logging.getLogger(__name__)


def make_blueprint() -> procrastinate.Blueprint:
    """A fresh Blueprint with every task; one per App (adding a Blueprint to an App
    renames its tasks into the App's namespace, so one instance can't serve two)."""
    blueprint = procrastinate.Blueprint()

    def _container(context: JobContext) -> Container:
        container: Container = context.additional_context["container"]
        return container

    @blueprint.task(
        name="send_messages",
        queue="dispatch",
        pass_context=True,
        # Only for unexpected errors (a database blip): provider errors are handled per
        # message by the dispatcher and never raise.
        retry=RetryStrategy(max_attempts=10, exponential_wait=2),
    )
    async def send_messages(context: JobContext, message_ids: list[str]) -> None:
        from parley.dispatch.pipeline import Dispatcher

        job_id = context.job.id if context.job else None
        await Dispatcher(_container(context), job_id=job_id).run(message_ids)

    @blueprint.task(
        name="process_receipt",
        queue="receipts",
        pass_context=True,
        retry=RetryStrategy(max_attempts=10, exponential_wait=2),
    )
    async def process_receipt(context: JobContext, receipt_id: int, attempt: int = 0) -> None:
        from parley.inbox.receipts import process_stored_receipt

        await process_stored_receipt(_container(context), receipt_id, attempt)

    @blueprint.task(
        name="process_inbound",
        queue="receipts",
        pass_context=True,
        retry=RetryStrategy(max_attempts=10, exponential_wait=2),
    )
    async def process_inbound(context: JobContext, receipt_id: int) -> None:
        from parley.inbox.inbound import process_receipt

        await process_receipt(_container(context), receipt_id)

    # croniter reads a sixth field as SECONDS (last): every 5 s, every minute.
    @blueprint.periodic(cron="* * * * * */5", periodic_id="requeue_stalled")
    @blueprint.task(name="requeue_stalled_jobs", queue="maintenance", pass_context=True)
    async def requeue_stalled_jobs(context: JobContext, timestamp: int) -> int:
        """Put jobs of dead workers (no heartbeat) back in the queue.

        Procrastinate notices stalled workers but leaves their jobs in `doing`; re-running
        them is safe because the dispatcher resolves messages left in `sending`.
        """
        container = _container(context)
        manager = container.jobs.job_manager
        seconds = container.settings.stalled_worker_seconds
        stalled = list(await manager.get_stalled_jobs(seconds_since_heartbeat=seconds))
        for job in stalled:
            log.warning("re-queueing job %s (%s) of a stalled worker", job.id, job.task_name)
            await manager.retry_job(job)
        if stalled:
            await manager.prune_stalled_workers(seconds)
        return len(stalled)

    @blueprint.periodic(cron="17 * * * *", periodic_id="prune_idempotency")
    @blueprint.task(name="prune_idempotency_keys", queue="maintenance", pass_context=True)
    async def prune_idempotency_keys(context: JobContext, timestamp: int) -> Any:
        container = _container(context)
        async with container.db.pool.connection() as conn:
            cur = await conn.execute("DELETE FROM idempotency_keys WHERE expires_at < now()")
            return cur.rowcount

    @blueprint.periodic(cron="41 * * * *", periodic_id="prune_jobs")
    @blueprint.task(name="prune_finished_jobs", queue="maintenance", pass_context=True)
    async def prune_finished_jobs(context: JobContext, timestamp: int) -> None:
        """Delete succeeded jobs older than the retention period (failed ones stay for a look)."""
        container = _container(context)
        await container.jobs.job_manager.delete_old_jobs(
            nb_hours=container.settings.job_retention_hours
        )

    @blueprint.periodic(cron="* * * * *", periodic_id="reconcile")
    @blueprint.task(name="reconcile_messages", queue="maintenance", pass_context=True)
    async def reconcile_messages(context: JobContext, timestamp: int) -> tuple[int, int]:
        """Give messages that lost their job a new one (see dispatch/reconcile.py)."""
        from parley.dispatch.reconcile import reconcile

        return await reconcile(_container(context))

    @blueprint.task(
        name="deliver_webhooks",
        queue="webhooks",
        pass_context=True,
        # Only for unexpected errors (a database blip): HTTP failures are recorded per
        # delivery and retried on its own schedule (webhooks_out.schedule).
        retry=RetryStrategy(max_attempts=5, exponential_wait=2),
    )
    async def deliver_webhooks(context: JobContext, delivery_ids: list[str]) -> None:
        from parley.webhooks_out.delivery import deliver

        await deliver(_container(context), delivery_ids)

    @blueprint.periodic(cron="* * * * *", periodic_id="sweep_webhooks")
    @blueprint.task(name="sweep_webhook_deliveries", queue="maintenance", pass_context=True)
    async def sweep_webhook_deliveries(context: JobContext, timestamp: int) -> int:
        """Give webhook deliveries whose job was lost a new one (webhooks_out.delivery)."""
        from parley.webhooks_out.delivery import sweep

        return await sweep(_container(context))

    return blueprint
