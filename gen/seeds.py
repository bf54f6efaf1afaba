"""The one range a seed may take, and its check.

Seeds go to torch.Generator.manual_seed and numpy, are mixed into other streams and stored in
INTEGER columns: one range that all of them accept, checked where the seed enters (the CLI's
--seed option, and the Python API's train and sample for callers that skip the CLI).
"""

from __future__ import annotations

from gen.errors import GenError

MAX_SEED = 2**31 - 1


def check_seed(seed: int) -> None:
    """One sentence unless the seed is in the range every consumer of it accepts."""
    if not 0 <= seed <= MAX_SEED:
        raise GenError(f"--seed must be between 0 and {MAX_SEED}.")
