"""FlexCo's onboarding against the VPP Sandbox: a week of programme time in one call per test."""

from __future__ import annotations

import secrets

import pytest
from flexco_client import ApiError, FlexcoClient, outcome

PROVIDER = "prv_8587fa49c7e5297ccc6c57e5"
PROGRAMME = "vpr_6a1f8e375db9de605baadd46"


def new_device() -> str:
    return "dev_" + secrets.token_hex(12)


def test_an_enrolled_battery_is_active_a_week_later(flexco: FlexcoClient, vpp_account) -> None:
    enrolled = flexco.enrol(new_device(), PROVIDER, PROGRAMME, reference_id="FLEX-0001")
    assert enrolled.current_state == "ENROLMENT_REQUESTED" and outcome(enrolled) == "joining"

    vpp_account.advance("P7D")

    now = flexco.participation(enrolled.id)
    assert now.current_state == "ACTIVE" and now.control_active
    assert outcome(now) == "active"


@pytest.mark.parametrize(
    ("scenario", "state"),
    [("ineligible", "INELIGIBLE"), ("telemetry_never_arrives", "FAILED")],
)
def test_a_device_that_fails_onboarding_is_reported_as_failed(
    flexco: FlexcoClient, vpp_account, scenario: str, state: str
) -> None:
    enrolled = vpp_account.enrol_scenario(scenario)

    vpp_account.advance("P7D")

    now = flexco.participation(enrolled["id"])
    assert now.current_state == state and not now.control_active
    assert outcome(now) == "failed"
    # A failed participation is closed: the customer may try the same device again.
    again = flexco.enrol(now.device_id, PROVIDER, PROGRAMME)
    assert again.id != now.id and outcome(again) == "joining"


def test_a_second_enrolment_of_a_device_is_refused_with_the_api_code(
    flexco: FlexcoClient,
) -> None:
    device = new_device()
    flexco.enrol(device, PROVIDER, PROGRAMME)
    with pytest.raises(ApiError) as refused:
        flexco.enrol(device, PROVIDER, PROGRAMME)
    assert refused.value.status == 409 and refused.value.code == "participation_exists"


@pytest.mark.vpp_fault("createVppParticipation", 429, times=2)
def test_a_rate_limited_call_is_retried_after_retry_after(vpp_account) -> None:
    slept: list[float] = []
    client = FlexcoClient(
        vpp_account.base_url, vpp_account.account_id, vpp_account.api_key, sleep=slept.append
    )

    enrolled = client.enrol(new_device(), PROVIDER, PROGRAMME)

    creates = vpp_account.requests("POST", "/vpp-participations")
    assert [r.status for r in creates] == [429, 429, 201]  # two refusals, then the enrolment
    assert slept == [1.0, 1.0]  # the sandbox's Retry-After
    assert client.participation(enrolled.id) == enrolled  # enrolled exactly once
    assert len(client.participations_of(enrolled.device_id)) == 1


def test_the_client_gives_up_after_its_retries(vpp_account) -> None:
    vpp_account.fail_next("createVppParticipation", 429, times=10)
    client = FlexcoClient(
        vpp_account.base_url, vpp_account.account_id, vpp_account.api_key,
        max_retries=2, sleep=lambda s: None,
    )
    with pytest.raises(ApiError) as refused:
        client.enrol(new_device(), PROVIDER, PROGRAMME)
    assert refused.value.status == 429 and refused.value.code == "rate_limited"
    assert len(vpp_account.requests("POST", "/vpp-participations")) == 3  # one try, two retries


def test_a_server_error_is_reported_not_retried(vpp_account) -> None:
    vpp_account.fail_next("retrieveVppParticipation", 503)
    client = FlexcoClient(vpp_account.base_url, vpp_account.account_id, vpp_account.api_key)
    enrolled = client.enrol(new_device(), PROVIDER, PROGRAMME)
    with pytest.raises(ApiError) as refused:
        client.participation(enrolled.id)
    assert refused.value.status == 503 and refused.value.code == "server_busy"
    assert client.participation(enrolled.id) == enrolled
