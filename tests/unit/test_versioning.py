"""pipelines.versioning: which runs are recorded in dvc.lock, and committing what a run executed."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from pipelines import versioning
from tests.conftest import dvc as _dvc


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A git + DVC project with two stages reading a folder outside it (like fetch reads the image folder)."""
    folder = tmp_path / "images"
    (folder / "a").mkdir(parents=True)
    (folder / "a" / "1.txt").write_text("one")
    root = tmp_path / "project"
    root.mkdir()
    (root / "params.yaml").write_text(yaml.safe_dump({"fetch": {"image_folder": str(folder)}}))
    (root / "dvc.yaml").write_text(
        yaml.safe_dump(
            {
                "stages": {
                    "first": {"cmd": "true", "deps": ["${fetch.image_folder}"], "outs": ["first.txt"]},
                    "second": {"cmd": "true", "deps": ["first.txt"], "outs": ["second.txt"]},
                }
            }
        )
    )
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    _dvc(root, "init", "-q")
    (root / "table.csv").write_text("a,b\n")
    _dvc(root, "add", "-q", "table.csv")  # a .dvc file's stage beside dvc.yaml's (it has no name)
    monkeypatch.chdir(root)
    return root, folder


def test_commit_records_every_stage_in_one_lock_and_status_is_clean(project):
    root, folder = project
    (root / "first.txt").write_text("1")
    (root / "second.txt").write_text("2")
    with pytest.raises(versioning.VersioningError, match="no stage third in dvc.yaml"):
        versioning.commit_and_push(versioning.DvcProject(root), ["first", "third"])
    md5 = versioning.commit_and_push(versioning.DvcProject(root), ["first", "second"])
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    assert set(lock["stages"]) == {"first", "second"}
    assert lock["stages"]["first"]["deps"][0]["path"] == str(folder)
    assert md5 == versioning.lock_md5(versioning.DvcProject(root))
    assert _dvc(root, "status") == "Data and pipelines are up to date."
    assert versioning.changed_stages(versioning.DvcProject(root), ["first", "second"]) == set()

    (folder / "a" / "2.txt").write_text("two")  # the folder outside the project changed
    assert versioning.changed_stages(versioning.DvcProject(root), ["first", "second"]) == {"first"}


def test_changed_stages_agrees_with_dvc_status_and_names_an_unknown_stage(project):
    root, _ = project
    dvc = versioning.DvcProject(root)
    (root / "first.txt").write_text("1")
    (root / "second.txt").write_text("2")
    assert versioning.changed_stages(dvc, ["first", "second"]) == {"first", "second"}  # not in dvc.lock yet
    versioning.commit_and_push(dvc, ["first", "second"])
    (root / "second.txt").write_text("edited")  # an output changed after the commit
    assert versioning.changed_stages(dvc, ["first", "second"]) == {"second"}
    assert versioning.changed_stages(dvc, ["first"]) == set()  # only the stages asked about
    assert "second" in _dvc(root, "status", "second") and "first" not in _dvc(root, "status")
    with pytest.raises(versioning.VersioningError, match="no stage third in dvc.yaml"):
        versioning.changed_stages(dvc, ["first", "third"])


def test_a_null_image_folder_is_not_recorded_and_the_reason_names_the_key(project):
    root, _ = project
    assert versioning.dvc_project(root / "params.yaml")[0] == versioning.DvcProject(root)
    (root / "params.yaml").write_text(yaml.safe_dump({"fetch": {"image_folder": None}}))
    found, reason = versioning.dvc_project(root / "params.yaml")
    assert found is None and "fetch.image_folder" in reason and "params.yaml" in reason


def test_push_sends_the_outputs_just_committed_to_the_default_remote(project, tmp_path):
    root, _ = project
    _dvc(root, "remote", "add", "-d", "local", str(tmp_path / "storage"))
    dvc = versioning.DvcProject(root)
    (root / "first.txt").write_text("1")
    (root / "second.txt").write_text("2")
    versioning.commit_and_push(dvc, ["first", "second"])
    (root / "second.txt").write_text("edited")  # a rerun's new output: a new hash to push
    versioning.commit_and_push(dvc, ["second"])
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    md5 = lock["stages"]["second"]["outs"][0]["md5"]
    assert (tmp_path / "storage" / "files" / "md5" / md5[:2] / md5[2:]).read_text() == "edited"
    assert "in sync" in _dvc(root, "status", "--cloud")
