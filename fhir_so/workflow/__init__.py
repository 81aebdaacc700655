"""Workflows: push, pull, transfer and profile installation, built on the client."""
