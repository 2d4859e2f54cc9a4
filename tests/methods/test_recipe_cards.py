"""Every recipe card (``docs/<method>.md``, see ``recipe_cards.py``) equals the registered config of its method, so
a later change of a default cannot drift from the paper's recipe silently."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest

from tests.methods.recipe_cards import read_cards, resolve, same

# Methods whose card must exist (issue 10); more are checked as their cards appear.
REQUIRED_CARDS = (
    "4d-rotor-gs", "gaussian-flow", "gaussian-flow-compressed", "c3dgs", "c3dgs-synthetic", "splatfacto-wild", "neus2",
    "mobile-r2l", "mobile-r2l-blender", "nerdf", "nerdf-blender", "pvd-al",
)
CARDS = read_cards()


def registered_config(method: str):
    for entry in entry_points(group="nerfstudio.method_configs"):
        if entry.name == method:
            return entry.load().config
    raise LookupError(f"{method} is not a registered nerfstudio method (pyproject.toml entry points)")


def test_required_cards_exist():
    missing = [method for method in REQUIRED_CARDS if method not in CARDS]
    assert not missing, f"no '## Recipe card: <method>' section in docs/ for {missing}"


def test_card_parser_reads_rows_and_literals(tmp_path):
    (tmp_path / "m.md").write_text(
        "# m\n\n## Recipe card: my-method\n\n| setting | official | source | ours | why |\n|---|---|---|---|---|\n"
        "| `max_num_iterations` | 30000 | train.py:10 @abc | `30000` | |\n"
        "| `optimizers.means.optimizer.lr` | 1.6e-4 x extent | paper 4.1 | `1.6e-4` | no extent |\n"
        "| test split | every 8th | metrics.py | every 8th | |\n"
    )
    rows = read_cards(tmp_path)["my-method"]
    assert [(row.path, row.ours) for row in rows] == [("max_num_iterations", 30000),
                                                      ("optimizers.means.optimizer.lr", 1.6e-4)]
    assert same((1, 2), [1, 2]) and not same(True, 1) and same(None, None)


@pytest.mark.parametrize("method", sorted(CARDS))
def test_registered_config_equals_its_card(method):
    config = registered_config(method)
    assert CARDS[method], f"the recipe card of {method} checks no setting"
    drift = []
    for row in CARDS[method]:
        value = resolve(config, row.path)
        if not same(value, row.ours):
            drift.append(f"{row.source_file}:{row.line} {row.path}: card {row.ours!r}, registered {value!r}")
    assert not drift, "registered config differs from its recipe card:\n" + "\n".join(drift)
