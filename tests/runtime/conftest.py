"""The storage tests' object stores (tests/support/storage_fixtures.py), for tests/runtime only."""

from storage_fixtures import aws_isolated, gcs_emulator, s3_server  # noqa: F401 - fixtures
