"""The reference a batch of task records is checked against: each record validated
alone (``task_records.batch_from`` of a batch of one, its error renumbered), then the
checks that only a whole batch can make (keys and idempotency keys used twice). A batch
must give exactly these values, or this error."""

from __future__ import annotations

from typing import Any

import pandas as pd

from athena_orch import task_records as tr
from athena_orch.exceptions import ValidationError
from athena_orch.models import RECORD_FIELDS, TaskBatch


def one_at_a_time(data: Any) -> TaskBatch:
    if isinstance(data, pd.DataFrame) and data.columns.is_unique:
        rows = [data.iloc[[i]] for i in range(len(data))]  # keeps the columns' dtypes
    elif isinstance(data, list) and all(isinstance(r, dict) for r in data):
        rows = [[r] for r in data]
    else:  # not records at all: there is no record to take alone
        return tr.batch_from(data)
    parts = []
    for i, row in enumerate(rows):
        try:
            parts.append(tr.batch_from(row))
        except ValidationError as exc:
            raise ValidationError(str(exc).replace("record 0: ", f"record {i}: ", 1)) from None
    batch = TaskBatch(**{name: [x for p in parts for x in getattr(p, name)]
                         for name in RECORD_FIELDS})
    tr._check_batch_keys(batch.key, batch.idempotency_key)
    return batch
