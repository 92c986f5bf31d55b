"""Inbound traffic: provider webhook receipts (status events now; replies later)."""
