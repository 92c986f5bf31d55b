"""SQL shared by the statements that record one provider event (`status_events` for a
message, `message_parts` for a part of one)."""

from __future__ import annotations

# The last step of both: move the message as the stored event (CTE `e`, with
# status_before and status_after) says, keeping the first delivery time and, for a
# failure, its code and reason. Parameters: message, at, failure, code, reason.
MOVE_MESSAGE_SQL = """
UPDATE messages SET
  status = e.status_after,
  status_changed_at = %(at)s::timestamptz,
  delivered_at = CASE WHEN e.status_after = 'delivered'
                      THEN coalesce(messages.delivered_at, %(at)s::timestamptz)
                      ELSE messages.delivered_at END,
  error_code = CASE WHEN %(failure)s THEN coalesce(%(code)s, messages.error_code)
                    ELSE messages.error_code END,
  error_detail = CASE WHEN %(failure)s THEN coalesce(%(reason)s, messages.error_detail)
                      ELSE messages.error_detail END
FROM e
WHERE messages.id = %(message)s::uuid AND e.status_after <> e.status_before
RETURNING messages.id::text, e.status_before, e.status_after
"""
