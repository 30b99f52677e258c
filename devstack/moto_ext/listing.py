"""SageMaker's list filters, as the API reference describes them, where moto falls short.

- ListModels: moto returns every model, whole (PrimaryContainer and all), unpaged, whatever the
  request says. SageMaker returns `ModelSummary` items (ModelName, ModelArn, CreationTime) of the
  models whose name contains `NameContains`, created before `CreationTimeBefore` and after
  `CreationTimeAfter`, sorted by `SortBy` (`Name` or `CreationTime`, the default) in `SortOrder`
  (`Ascending` or `Descending`, the default), `MaxResults` (1-100, default 10) per page with a
  `NextToken` while more remain.
- ListEndpoints, ListEndpointConfigs: moto filters and pages them, but sorts them Ascending when
  no `SortOrder` is given; SageMaker's default is Descending.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from moto.core.responses import ActionResult
from moto.sagemaker.exceptions import ValidationError
from moto.sagemaker.responses import SageMakerResponse

DEFAULT_MAX_RESULTS = 10  # ListModels, when MaxResults is not given
MAX_RESULTS = 100


def _when(value: Any) -> dt.datetime | None:
    """A timestamp parameter (epoch seconds in SageMaker's JSON protocol) as moto stores times:
    naive UTC."""
    if value is None:
        return None
    if isinstance(value, int | float):
        return dt.datetime.fromtimestamp(value, dt.UTC).replace(tzinfo=None)
    parsed = dt.datetime.fromisoformat(str(value))
    return parsed.astimezone(dt.UTC).replace(tzinfo=None) if parsed.tzinfo else parsed


def _page(items: list[Any], token: str | None, max_results: Any) -> tuple[list[Any], str | None]:
    size = DEFAULT_MAX_RESULTS if max_results is None else int(max_results)
    if not 1 <= size <= MAX_RESULTS:
        raise ValidationError(
            message=f"1 validation error detected: Value '{size}' at 'maxResults' failed to "
            f"satisfy constraint: Member must have value less than or equal to {MAX_RESULTS}"
        )
    start = 0
    if token:
        try:
            start = int(token)
        except ValueError as exc:
            raise ValidationError(message="Invalid pagination token") from exc
    end = start + size
    return items[start:end], (str(end) if end < len(items) else None)


def list_models_response(self: SageMakerResponse) -> ActionResult:
    models = list(self.sagemaker_backend.list_models())
    contains = self._get_param("NameContains")
    before = _when(self._get_param("CreationTimeBefore"))
    after = _when(self._get_param("CreationTimeAfter"))
    if contains:
        models = [m for m in models if contains in m.model_name]
    if before is not None:
        models = [m for m in models if m.creation_time < before]
    if after is not None:
        models = [m for m in models if m.creation_time > after]
    by_name = self._get_param("SortBy") == "Name"
    models.sort(
        key=lambda m: m.model_name if by_name else m.creation_time,
        reverse=self._get_param("SortOrder", "Descending") == "Descending",
    )
    page, token = _page(models, self._get_param("NextToken"), self._get_param("MaxResults"))
    summaries = [
        {"ModelName": m.model_name, "ModelArn": m.arn, "CreationTime": m.creation_time}
        for m in page
    ]
    return ActionResult({"Models": summaries, **({"NextToken": token} if token else {})})


def descending_by_default(original: Callable[..., Any]) -> Callable[..., Any]:
    """A backend list method whose `sort_order` defaults to SageMaker's Descending."""

    def listing(self: Any, *args: Any, **kwargs: Any) -> Any:
        kwargs["sort_order"] = kwargs.get("sort_order") or "Descending"
        return original(self, *args, **kwargs)

    return listing
