"""Index checking shared by the datasets."""

from __future__ import annotations


def check_index(index: int, length: int, unit: str) -> int:
    """``index`` as an int in ``[0, length)``, negative indices counted from the end (as for a list);
    ``IndexError`` naming ``length`` ``unit`` (e.g. "clips") when it is out of range."""
    i = int(index)
    if i < 0:
        i += length
    if not 0 <= i < length:
        raise IndexError(f"index {index} is out of range for {length} {unit}.")
    return i
