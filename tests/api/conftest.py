"""The API fixtures live in ``tests/api_client.py`` (loaded for every test folder)."""

from tests.api_client import Api, api, make_api  # noqa: F401
