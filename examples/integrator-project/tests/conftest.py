"""FlexCo's client on a fresh sandbox account per test (the vpp_account fixture of vpp-sandbox)."""

from __future__ import annotations

import pytest
from flexco_client import FlexcoClient


@pytest.fixture
def flexco(vpp_account) -> FlexcoClient:
    return FlexcoClient(vpp_account.base_url, vpp_account.account_id, vpp_account.api_key)
