from __future__ import annotations

import pytest

from unpaired_sr.common.cli import ArgumentParser, resume_checkpoint, run_folder_of
from unpaired_sr.common.errors import UserError


def test_the_old_out_spelling_still_works_with_a_note(capsys):
    parser = ArgumentParser("prog", "Does things.\n\nMore.")
    parser.add_output_option("where to write")
    assert parser.parse_args(["--output", "a"]).output == "a" and capsys.readouterr().err == ""
    assert parser.parse_args(["--out", "b"]).output == "b"
    assert capsys.readouterr().err == "note: --out is now --output; the old spelling goes in the next release\n"
    assert "--out " not in parser.format_help() and parser.description == "Does things."
    with pytest.raises(SystemExit):
        parser.parse_args([])  # required: one of the two


def test_resume_takes_a_run_folder_or_a_checkpoint(tmp_path):
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    last.parent.mkdir(parents=True)
    last.write_bytes(b"")
    assert resume_checkpoint(tmp_path / "run") == last and resume_checkpoint(last) == last
    assert run_folder_of(last) == tmp_path / "run" and run_folder_of(tmp_path / "x.pt") == tmp_path
    with pytest.raises(UserError, match="holds no checkpoints/last.pt"):
        resume_checkpoint(tmp_path)
