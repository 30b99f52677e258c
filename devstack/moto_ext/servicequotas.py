"""Service Quotas: ListServiceQuotas, which moto 5.2 does not implement (HTTP 500), for the service
codes a test registers (`Controls.service_quotas`).

Follows the Service Quotas API reference for ListServiceQuotas: the applied quota values of one
service for the account and region, each with ServiceCode, ServiceName, QuotaArn, QuotaCode,
QuotaName, Value, Unit, Adjustable and GlobalQuota; `MaxResults` (1-100) and `NextToken` page
them. A service code nobody registered answers NoSuchResourceException, as moto's other Service
Quotas calls do, so an operator that may read no quotas for a service behaves as it does there.
"""

from __future__ import annotations

import json
from typing import Any

from moto.core.exceptions import JsonRESTError
from moto.servicequotas.exceptions import NoSuchResource
from moto.servicequotas.responses import ServiceQuotasResponse

from .controls import CONTROLS

SERVICE_NAMES = {"sagemaker": "Amazon SageMaker"}
_INSTALLED = False


def quota_entries(
    service_code: str, values: dict[str, float], account: str, region: str
) -> list[dict[str, Any]]:
    """Quotas as ListServiceQuotas returns them, codes made up but stable (L- and 8 hex digits)."""
    entries = []
    for index, (name, value) in enumerate(sorted(values.items())):
        code = f"L-{index + 1:08X}"
        entries.append(
            {
                "ServiceCode": service_code,
                "ServiceName": SERVICE_NAMES.get(service_code, service_code),
                "QuotaArn": f"arn:aws:servicequotas:{region}:{account}:{service_code}/{code}",
                "QuotaCode": code,
                "QuotaName": name,
                "Value": float(value),
                "Unit": "None",
                "Adjustable": True,
                "GlobalQuota": False,
            }
        )
    return entries


def _list_service_quotas(self: ServiceQuotasResponse) -> str:
    params = json.loads(self.body or "{}")
    service_code = str(params.get("ServiceCode"))
    with CONTROLS.lock:
        values = CONTROLS.service_quotas.get(service_code)
    if values is None:
        raise NoSuchResource()
    page_size = int(params.get("MaxResults") or 100)
    if not 1 <= page_size <= 100:
        raise JsonRESTError("ValidationException", "MaxResults must be between 1 and 100")
    start = int(params.get("NextToken") or 0)
    entries = quota_entries(service_code, values, self.current_account, self.region)
    body: dict[str, Any] = {"Quotas": entries[start : start + page_size]}
    if start + page_size < len(entries):
        body["NextToken"] = str(start + page_size)
    return json.dumps(body)


def install() -> None:
    global _INSTALLED  # noqa: PLW0603
    if not _INSTALLED:
        ServiceQuotasResponse.list_service_quotas = _list_service_quotas  # type: ignore[attr-defined]
        _INSTALLED = True
