"""``write_json``: small JSON outputs, pretty and stable."""

from __future__ import annotations

import json
from pathlib import Path

from occlufer.jsonio import write_json


def test_sorted_indented_with_a_final_newline(tmp_path: Path) -> None:
    out = tmp_path / "summary.json"
    write_json(out, {"b": 1, "a": {"d": [1, 2], "c": "é"}})
    text = out.read_text(encoding="utf-8")
    assert text == json.dumps({"a": {"c": "é", "d": [1, 2]}, "b": 1}, indent=2) + "\n"
    assert text.index('"a"') < text.index('"b"')
