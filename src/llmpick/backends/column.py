"""The ``column`` backend: outputs read from a dataset column.

For scoring outputs produced elsewhere (another tool, a spreadsheet, a
reference solution): ``-m column:canonical_solution`` answers each row with
that row's ``canonical_solution`` value, so it goes through the same
scorers and statistics as a real model.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from llmpick.backends.base import Backend, Chunk, GenerationRequest, ModelIdentity, Usage
from llmpick.errors import DataError

__all__ = ["ColumnBackend"]


class ColumnBackend(Backend):
    """Answers each request with the value of one column of its row."""

    name = "column"
    is_local = True
    supports_seed = False
    needs_row = True
    #: the recorded output answered the row's tools / response_format already
    supports_tools = True
    supports_response_format = True

    def describe(self) -> ModelIdentity:
        """The column name is the whole identity."""
        return ModelIdentity(backend=self.name, model=self.model)

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Chunk]:
        """Yield the row's value in one chunk."""
        row = request.row
        if row is None:
            raise DataError(
                f"column:{self.model} needs a dataset row to read from",
                "use it with 'llmpick eval DATA -m column:NAME', not 'llmpick run'",
            )
        if self.model not in row:
            raise DataError(
                f"the dataset has no column '{self.model}'",
                f"columns are: {', '.join(sorted(row))}",
            )
        value = row[self.model]
        text = "" if value is None else str(value)
        now = time.perf_counter()
        yield Chunk(text=text, time_s=now, tokens=0)
        yield Chunk(time_s=now, final=True, usage=Usage(source="none"), finish_reason="stop")
