"""The compliance gate: every contact attempt -> Decision(allow | defer(until) | block(reasons)).

Pure Python: the caller gathers the facts (borrower flags, case state, local time) and
the gate decides. It is consulted at enqueue time and again at send time (invariant 3).
"""
