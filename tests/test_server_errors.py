"""Telling a server that is away from one that turns a request down, through chained exceptions."""

from __future__ import annotations

import socket

import httpx
import pytest
import requests
from mlflow.exceptions import MlflowException

from tabduel.infra.errors import exception_chain
from tabduel.infra.prefect_api import prefect_refusal_message, prefect_refused
from tabduel.infra.tracking import refusal_message, server_refused, server_unreachable


def _mlflow_error(code: int) -> MlflowException:
    """The error MLflow's REST client raises for a status (its message, as the basic-auth server makes it)."""
    return MlflowException(f"API request to endpoint /api/2.0/mlflow/experiments/get-by-name failed with error code "
                           f"{code} != 200. Response body: 'You are not authenticated.'")


def _raised_from(cause: BaseException) -> RuntimeError:
    try:
        try:
            raise cause
        except BaseException as exc:
            raise RuntimeError("the step failed") from exc
    except RuntimeError as outer:
        return outer


def _httpx_error(code: int) -> httpx.HTTPStatusError:
    response = httpx.Response(code, request=httpx.Request("POST", "http://127.0.0.1:4200/api/flow_runs/"))
    with pytest.raises(httpx.HTTPStatusError) as info:
        response.raise_for_status()
    return info.value


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_exception_chain_follows_causes_and_stops_at_the_limit():
    outer = _raised_from(ValueError("root"))
    assert [type(e).__name__ for e in exception_chain(outer)] == ["RuntimeError", "ValueError"]
    assert len(list(exception_chain(outer, limit=1))) == 1


@pytest.mark.parametrize("code", [401, 403])
def test_a_tracking_server_refusal_is_found_through_the_chain(code):
    assert server_refused(_raised_from(_mlflow_error(code))) == code
    assert not server_unreachable(_raised_from(_mlflow_error(code)))


def test_other_tracking_errors_are_not_refusals():
    assert server_refused(_mlflow_error(404)) is None
    assert server_refused(ValueError("401 rows")) is None


def test_a_closed_port_is_unreachable_not_refused():
    with pytest.raises(requests.ConnectionError) as info:
        requests.get(f"http://127.0.0.1:{_closed_port()}/api/2.0/mlflow/experiments/search", timeout=5)
    assert server_unreachable(_raised_from(info.value))
    assert server_refused(info.value) is None


@pytest.mark.parametrize("code", [401, 403])
def test_a_prefect_refusal_is_found_through_the_chain(code):
    assert prefect_refused(_raised_from(_httpx_error(code))) == code
    assert server_refused(_httpx_error(code)) is None  # not taken for the tracking server


def test_other_prefect_errors_are_not_refusals():
    assert prefect_refused(_httpx_error(404)) is None
    assert prefect_refused(_mlflow_error(401)) is None


def test_refusal_messages_name_what_to_set(monkeypatch):
    assert "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD" in refusal_message(401, "http://h:5000")
    assert "MLFLOW_SERVER_ALLOWED_HOSTS" in refusal_message(403, "http://h:5000")
    monkeypatch.setenv("PREFECT_API_URL", "http://h:4200/api")
    text = prefect_refusal_message(401)
    assert "http://h:4200/api" in text and "PREFECT_API_AUTH_STRING" in text
