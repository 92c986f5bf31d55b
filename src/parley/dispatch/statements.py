"""The SQL the dispatcher runs (see pipeline.py for when and why each one)."""

PEEK_SQL = (
    "SELECT id::text, provider_account_id::text FROM messages "
    "WHERE id = ANY(%s::uuid[]) AND status = ANY(%s) ORDER BY id"
)

LOAD_SQL = """
SELECT m.id::text, m.organization_id::text, m.status, m.channel, m.to_address,
       m.from_address, m.cc, m.bcc, m.subject, m.body, m.html_body,
       m.provider_account_id::text, m.rfc822_message_id, m.attempts, m.priority,
       m.case_id::text, m.borrower_id::text, m.contact_point_id::text, m.purpose,
       m.claim_job_id, j.status::text, m.whatsapp
FROM messages m
LEFT JOIN procrastinate_jobs j ON j.id = m.claim_job_id
WHERE m.id = ANY(%s::uuid[])
ORDER BY m.id
FOR UPDATE OF m
"""

SET_STATUS_SQL = (
    "UPDATE messages SET status = %s, status_changed_at = %s WHERE id = ANY(%s::uuid[])"
)
FAIL_UNSENT_SQL = """
UPDATE messages m SET status = 'failed', status_changed_at = %(now)s, error_code = u.code,
       error_detail = u.detail
FROM unnest(%(ids)s::uuid[], %(codes)s::text[], %(details)s::text[]) AS u(id, code, detail)
WHERE m.id = u.id AND m.status IN ('queued', 'scheduled')
RETURNING m.id::text, m.organization_id::text, m.status, m.case_id::text, m.channel
"""

# The claim of a batch in one statement (one JSON parameter each, not psycopg lists):
# every candidate's compliance decision, the allowed messages marked `sending`, and a
# `sending` event for each one marked. Equal decisions in a batch share one evidence
# document (`evidence`, referenced by position `e`): PostgreSQL parses it once, not once
# per message. `claim` carries each message's status before (what the locked row said).
# attempted_at: the first claim is the contact attempt the frequency caps count (a retry
# of the same message after a transient provider error is not a new attempt).
CLAIM_BATCH_SQL = """
WITH ev AS (
  SELECT t.n, t.x->0 AS rules, t.x->1 AS facts
  FROM jsonb_array_elements(%(evidence)s::jsonb) WITH ORDINALITY AS t(x, n)
), d AS (
  INSERT INTO compliance_decisions (organization_id, message_id, outcome, defer_until, rules,
                                    facts, stage)
  SELECT u.org, u.id, u.outcome, u.until, ev.rules, ev.facts, 'send'
  FROM jsonb_to_recordset(%(decisions)s::jsonb)
       AS u(org uuid, id uuid, outcome text, until timestamptz, e bigint)
  JOIN ev ON ev.n = u.e
), c AS (
  UPDATE messages m SET status = 'sending', status_changed_at = %(now)s,
         claim_job_id = %(job)s, attempts = m.attempts + 1,
         attempted_at = coalesce(m.attempted_at, %(now)s)
  FROM jsonb_to_recordset(%(claim)s::jsonb) AS u(id uuid, before text)
  WHERE m.id = u.id AND m.status IN ('queued', 'scheduled')
  RETURNING m.id, m.organization_id, u.before
), e AS (
  INSERT INTO message_events (organization_id, message_id, event_type, status_before,
                              status_after, occurred_at, source)
  SELECT c.organization_id, c.id, 'sending', c.before, 'sending', %(now)s, 'parley' FROM c
)
SELECT c.id::text FROM c
"""

# The outcomes of a batch in one statement: each message this job still holds moves to
# its new status (`s`) with its event (`e`), and its status change is announced
# (`pg_notify`, delivered at commit, the payload `activity.emit` would send). The last
# column says whether the organization has webhook endpoints subscribed to status
# changes: only then does the caller build their deliveries. A `needs_review` outcome
# may carry a provider id too (an SMPP message whose later part failed after part 1 was
# accepted): recorded, so that the accepted parts' receipts find the message.
RECORD_SQL = """
WITH u AS (
  SELECT * FROM jsonb_to_recordset(%(outcomes)s::jsonb)
       AS u(id uuid, s text, e text, pid text, seg int, cost numeric, code text,
            detail text, at timestamptz)
), m AS (
  UPDATE messages m SET status = u.s, status_changed_at = %(now)s,
         sent_at = CASE WHEN u.s = 'sent' THEN %(now)s ELSE m.sent_at END,
         provider_message_id = CASE WHEN u.s = 'sent' THEN u.pid
                                    WHEN u.s = 'needs_review'
                                    THEN coalesce(u.pid, m.provider_message_id)
                                    ELSE m.provider_message_id END,
         segments = CASE WHEN u.s IN ('sent', 'needs_review') THEN coalesce(u.seg, m.segments)
                         ELSE m.segments END,
         cost = CASE WHEN u.s = 'sent' THEN u.cost ELSE m.cost END,
         error_code = CASE WHEN u.s = 'sent' THEN m.error_code ELSE u.code END,
         error_detail = CASE WHEN u.s = 'sent' THEN m.error_detail ELSE u.detail END,
         scheduled_at = coalesce(u.at, m.scheduled_at)
  FROM u
  WHERE m.id = u.id AND m.claim_job_id IS NOT DISTINCT FROM %(job)s
    AND (m.status = 'sending' OR (u.s = 'sent' AND m.status = 'needs_review'))
  RETURNING m.id, m.organization_id, m.case_id, m.channel, u.s, u.e,
            CASE WHEN u.s = 'sent' THEN NULL ELSE u.code END AS code,
            CASE WHEN u.s = 'sent' THEN NULL ELSE u.detail END AS detail
), ev AS (
  INSERT INTO message_events (organization_id, message_id, event_type, status_before,
                              status_after, provider_status, error_code, reason,
                              occurred_at, source)
  SELECT m.organization_id, m.id, m.e, 'sending', m.s,
         CASE WHEN m.s = 'sent' THEN 'accepted' END, m.code, m.detail, %(now)s, 'parley'
  FROM m
), subscribed AS (
  SELECT coalesce(array_agg(DISTINCT w.organization_id), '{}') AS orgs
  FROM webhook_endpoints w
  WHERE w.organization_id IN (SELECT organization_id FROM m) AND w.enabled
    AND 'message.status_changed' = ANY(w.event_types)
)
SELECT m.id::text, m.s,
       m.organization_id = ANY(subscribed.orgs), m.organization_id::text,
       m.case_id::text, m.channel, m.code,
       pg_notify(%(channel)s, json_build_object(
         'org', m.organization_id, 'type', 'message.status_changed',
         'data', CASE WHEN m.code IS NULL THEN json_build_object(
                   'messageId', m.id, 'caseId', m.case_id, 'messageType', m.channel,
                   'status', m.s, 'previousStatus', 'sending', 'timestamp', %(at)s::text)
                 ELSE json_build_object(
                   'messageId', m.id, 'caseId', m.case_id, 'messageType', m.channel,
                   'status', m.s, 'previousStatus', 'sending', 'timestamp', %(at)s::text,
                   'errorCode', m.code) END)::text)
FROM m, subscribed
"""

# The claim's rare events (review, blocked, deferred) are written with COPY: measured
# here, 1.5-3x the row rate of a multi-row INSERT ... SELECT FROM unnest and far less
# driver work than executemany.
EVENTS_COPY = (
    "COPY message_events (organization_id, message_id, event_type, status_before, "
    "status_after, provider_status, error_code, reason, occurred_at, source) FROM STDIN"
)
