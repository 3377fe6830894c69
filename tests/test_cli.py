"""The CLI contract of `symmetry measure` (names, formats, errors, exit codes)."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import pytest

from symmetry.cli import main
from symmetry.measures import MOVEMENT_MEASURES, STATIC_MEASURES

from conftest import PORTRAITS

OBAMA, ASTRONAUT = str(PORTRAITS["obama"]), str(PORTRAITS["astronaut"])


def _run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_json_contract_single_photo(capsys):
    code, out, err = _run(capsys, "measure", OBAMA, "--format", "json", "--expression", "smile_open")
    assert code == 0, err
    data = json.loads(out)
    assert isinstance(data, dict)
    for key in ("source", "expression", "mm_per_px", "head_pose_deg", "measures"):
        assert key in data
    assert data["expression"] == "smile_open"
    assert set(data["head_pose_deg"]) == {"yaw", "pitch", "roll"}
    assert 0.3 < data["mm_per_px"] < 1.0
    names = {(m["name"], m["side"]) for m in data["measures"]}
    for name in STATIC_MEASURES:
        assert (name, "left") in names and (name, "right") in names
    assert all(set(m) == {"name", "side", "value", "unit"} for m in data["measures"])
    assert {m["side"] for m in data["measures"]} <= {"left", "right", "midline"}
    assert not any(m["name"] in MOVEMENT_MEASURES for m in data["measures"])


def test_json_with_rest_has_movement_and_several_photos_give_a_list(capsys):
    code, out, err = _run(capsys, "measure", OBAMA, OBAMA, "--rest", OBAMA, "--format", "json", "--affected-side", "left")
    assert code == 0, err
    data = json.loads(out)
    assert isinstance(data, list) and len(data) == 2
    values = {(m["name"], m["side"]): m["value"] for m in data[0]["measures"]}
    for name in MOVEMENT_MEASURES:
        assert (name, "left") in values
    # the same photo against itself has not moved
    assert values[("commissure_movement", "left")] == pytest.approx(0.0, abs=0.05)
    assert values[("palpebral_fissure_change", "right")] == pytest.approx(0.0, abs=1.0)
    assert ("commissure_excursion_ratio", "midline") in values


def test_csv_is_tidy(capsys):
    code, out, err = _run(capsys, "measure", ASTRONAUT, "--format", "csv")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0]) == ["source", "expression", "name", "side", "value", "unit"]
    assert {r["name"] for r in rows} >= set(STATIC_MEASURES)


def test_table_and_annotation(capsys, tmp_path):
    out_png = tmp_path / "annotated.png"
    code, out, err = _run(capsys, "measure", OBAMA, "--annotate", str(out_png))
    assert code == 0, err
    assert "palpebral_fissure_height" in out and "left" in out
    from symmetry.images import read_image

    img = read_image(out_png)
    assert img.shape[0] >= 900  # the face is cropped and upscaled to be legible


def test_mirrored_flag_swaps_sides(capsys):
    _, plain, _ = _run(capsys, "measure", OBAMA, "--format", "json")
    _, mirrored, _ = _run(capsys, "measure", OBAMA, "--format", "json", "--mirrored")
    a = {(m["name"], m["side"]): m["value"] for m in json.loads(plain)["measures"]}
    b = {(m["name"], m["side"]): m["value"] for m in json.loads(mirrored)["measures"]}
    assert b[("commissure_y", "left")] == pytest.approx(a[("commissure_y", "right")])
    assert b[("brow_height", "right")] == pytest.approx(a[("brow_height", "left")])


def test_bad_inputs_one_line_each_and_others_still_measured(capsys, tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    blank = tmp_path / "blank.png"
    import numpy as np
    import cv2

    cv2.imwrite(str(blank), np.full((400, 400, 3), 200, np.uint8))
    missing = tmp_path / "missing.png"
    code, out, err = _run(capsys, "measure", str(text), OBAMA, str(blank), str(missing), "--format", "json")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 3
    assert "notes.jpg" in lines[0] and "blank.png" in lines[1] and "no face" in lines[1]
    assert "missing.png" in lines[2]
    assert "Traceback" not in err
    data = json.loads(out)
    assert [d["source"] for d in data] == [OBAMA]


def test_subprocess_no_traceback_and_exit_code(tmp_path):
    bad = tmp_path / "empty.jpg"
    bad.write_bytes(b"")
    proc = subprocess.run(
        [sys.executable, "-m", "symmetry.cli", "measure", str(bad)], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "empty.jpg" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_bad_scale_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["measure", OBAMA, "--mm-per-px", "-1"])
    assert exc.value.code == 2
