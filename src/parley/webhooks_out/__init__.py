"""Outbound webhooks: signed HTTP notifications of domain events to the customer's systems.

``services.activity.emit`` queues a delivery per matching subscription (``queue``); a
worker job posts it (``delivery`` + ``sender``), signed per Standard Webhooks
(``signing``), to targets the SSRF guard lets through (``targets``), retrying on the
schedule in ``schedule``. Endpoints are managed through ``endpoints``.
"""
