"""The browser tests' fixtures (``page``, ``screenshot_dir``) live in :mod:`tests.browser_support`,
shared with the flow test that checks the retrain deployment in the Prefect UI."""

from tests.browser_support import page, screenshot_dir  # noqa: F401 - pytest fixtures
