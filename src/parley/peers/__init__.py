"""Protocol peers: local servers that speak each provider's wire protocol.

Tests, benchmarks and the demo point providers at these instead of the real services:
`smtp_sink.SmtpSink` (SMTP) and `twilio_api.TwilioApiPeer` (Twilio Messages API). They
record what they receive and fail on request, deterministically.
"""
