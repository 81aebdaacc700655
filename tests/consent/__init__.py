"""The consent policy's scenario table (unit; the live half is tests/live/test_consent_live.py)."""
