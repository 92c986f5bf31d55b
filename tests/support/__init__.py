"""Test support: database provisioning and API fixtures."""
