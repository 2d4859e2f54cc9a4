"""Recipe cards (``docs/<method>.md``): the table a method's registered config must equal.

A card is a markdown section headed ``## Recipe card: <method-name>`` followed by a table whose first five columns
are ``setting | official | source | ours | why different``. A row is *checked* when its setting is one backticked
config path relative to nerfstudio's ``TrainerConfig`` (attributes, and keys for dicts such as ``optimizers``), e.g.
```` `pipeline.model.densify_grad_thresh` ```` or ```` `optimizers.means.optimizer.lr` ````, and its ``ours`` cell is
one backticked Python literal (``1.6e-4``, ``(5000, 15000)``, ``"black"``, ``None``, ``True``). Other rows document
protocol choices in prose and are not checked. ``ours`` is compared with ``==`` (tuples and lists alike).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List

DOCS = Path(__file__).resolve().parents[2] / "docs"
_HEADING = re.compile(r"^##\s+Recipe card:\s*(?P<method>[\w.-]+)\s*$")
_CODE = re.compile(r"^`([^`]+)`$")
_PATH = re.compile(r"^[A-Za-z_][\w]*(\.[\w-]+)*$")


@dataclass(frozen=True)
class CardRow:
    """One checked row of a recipe card."""

    method: str
    path: str
    ours: Any
    source_file: str
    line: int


def _cells(line: str) -> List[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _table_rows(lines: List[str], start: int) -> List[tuple]:
    """``(line number, cells)`` of the table that follows line ``start`` (skipping blank/prose lines before it)."""
    rows, index = [], start + 1
    while index < len(lines) and not lines[index].lstrip().startswith("|"):
        if lines[index].startswith("## "):
            return rows
        index += 1
    while index < len(lines) and lines[index].lstrip().startswith("|"):
        cells = _cells(lines[index])
        if not all(set(cell) <= set("-: ") for cell in cells):  # not the separator
            rows.append((index + 1, cells))
        index += 1
    return rows[1:]  # the header row


def read_cards(docs: Path = DOCS) -> Dict[str, List[CardRow]]:
    """Checked rows of every recipe card under ``docs``, by method name."""
    cards: Dict[str, List[CardRow]] = {}
    for path in sorted(docs.glob("*.md")):
        lines = path.read_text().splitlines()
        for number, line in enumerate(lines):
            heading = _HEADING.match(line)
            if not heading:
                continue
            method = heading["method"]
            if method in cards:
                raise ValueError(f"{path.name}:{number + 1}: a second recipe card for {method}")
            cards[method] = []
            for row_line, cells in _table_rows(lines, number):
                if len(cells) < 4:
                    raise ValueError(f"{path.name}:{row_line}: a card row needs setting|official|source|ours|why")
                setting, ours = _CODE.match(cells[0]), _CODE.match(cells[3])
                if setting and _PATH.match(setting[1]) and ours:
                    value = _literal(ours[1], f"{path.name}:{row_line}")
                    cards[method].append(CardRow(method, setting[1], value, path.name, row_line))
    return cards


def _literal(text: str, where: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError) as error:
        raise ValueError(f"{where}: 'ours' must be a Python literal, got {text!r} ({error})") from None


def resolve(config: Any, path: str) -> Any:
    """``config.a.b['c'].d`` for ``path = "a.b.c.d"`` (dict keys and attributes alike)."""
    value = config
    for part in path.split("."):
        if isinstance(value, dict):
            if part not in value:
                raise KeyError(f"{path}: no key {part!r} (keys: {sorted(value)})")
            value = value[part]
        elif hasattr(value, part):
            value = getattr(value, part)
        else:
            raise AttributeError(f"{path}: {type(value).__name__} has no attribute {part!r}")
    return value


def same(registered: Any, card: Any) -> bool:
    """Equality with tuples and lists alike (dataclass fields often hold either)."""
    if isinstance(registered, (list, tuple)) and isinstance(card, (list, tuple)):
        return len(registered) == len(card) and all(same(a, b) for a, b in zip(registered, card))
    if isinstance(registered, bool) or isinstance(card, bool):
        return registered is card
    return registered == card
