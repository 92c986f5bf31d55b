"""Parley: a communication hub for collections teams (email, SMS, WhatsApp, voice)."""

__version__ = "0.1.0"
