"""`smite models fetch` against a fake Hugging Face hub (no network): mirror first, original as fallback,
SD 2.1-base configs checked, repository and commit recorded beside the download (cli.models, model.backbone).
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
from types import SimpleNamespace

import pytest

hub = pytest.importorskip("huggingface_hub")
pytest.importorskip("diffusers")

from huggingface_hub.errors import RepositoryNotFoundError  # noqa: E402

from smite.cli.main import main  # noqa: E402
from smite.errors import MissingModelError  # noqa: E402
from smite.model.backbone import (  # noqa: E402
    MIRROR_REPO, ORIGINAL_REPO, SD21_BASE_CONFIG, SOURCE_FILE, load_backbone, make_tiny, read_source,
    sd21_base_mismatches)

pytestmark = pytest.mark.usefixtures("one_thread")


def sd21_configs(folder, **changes) -> str:
    """A folder with SD 2.1-base's component configs (values of SD21_BASE_CONFIG), a weight stand-in and a
    root checkpoint the fetch must not download. `changes`: {"file:key": value} overrides."""
    for name, values in SD21_BASE_CONFIG.items():
        path = os.path.join(folder, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        data = dict(values)
        data.update({k.split(":")[1]: v for k, v in changes.items() if k.split(":")[0] == name})
        with open(path, "w") as handle:
            json.dump(data, handle)
    with open(os.path.join(folder, "model_index.json"), "w") as handle:
        json.dump({"_class_name": "StableDiffusionPipeline"}, handle)
    with open(os.path.join(folder, "unet", "diffusion_pytorch_model.safetensors"), "wb") as handle:
        handle.write(b"weights")
    with open(os.path.join(folder, "v2-1_512-ema-pruned.ckpt"), "wb") as handle:
        handle.write(b"5 GB we do not want")
    return folder


class FakeHub:
    """model_info + snapshot_download over local folders; a repository not in `repos` answers 404."""

    def __init__(self, repos: dict[str, str]) -> None:
        self.repos, self.calls = repos, []

    def model_info(self, repo_id, revision=None, **_):
        self.calls.append(("info", repo_id, revision))
        if repo_id not in self.repos:
            raise RepositoryNotFoundError(f"404 Client Error. Repository Not Found for url: "
                                          f"https://huggingface.co/api/models/{repo_id}",
                                          response=SimpleNamespace(headers={}, request=None))
        return SimpleNamespace(sha=f"{abs(hash((repo_id, revision))):040x}"[:40])

    def snapshot_download(self, repo_id, revision=None, local_dir=None, allow_patterns=None, **_):
        self.calls.append(("download", repo_id, revision))
        source = self.repos[repo_id]
        for base, _dirs, files in os.walk(source):
            for name in files:
                rel = os.path.relpath(os.path.join(base, name), source).replace(os.sep, "/")
                if allow_patterns and not any(fnmatch.fnmatch(rel, p) for p in allow_patterns):
                    continue
                os.makedirs(os.path.join(local_dir, os.path.dirname(rel)), exist_ok=True)
                shutil.copy(os.path.join(base, name), os.path.join(local_dir, rel))
        return local_dir


@pytest.fixture
def fake_hub(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    def install(repos: dict[str, str]) -> FakeHub:
        fake = FakeHub(repos)
        monkeypatch.setattr(hub, "model_info", fake.model_info)
        monkeypatch.setattr(hub, "snapshot_download", fake.snapshot_download)
        return fake

    return install


def test_fetch_defaults_to_the_mirror_and_records_its_commit(tmp_path, fake_hub, capsys):
    fake = fake_hub({MIRROR_REPO: sd21_configs(str(tmp_path / "mirror")),
                     ORIGINAL_REPO: sd21_configs(str(tmp_path / "orig"))})
    dest = tmp_path / "sd"
    assert main(["models", "fetch", "--dest", str(dest)]) == 0
    commit = fake.model_info(MIRROR_REPO).sha
    assert fake.calls[:2] == [("info", MIRROR_REPO, None), ("download", MIRROR_REPO, commit)]  # resolved, then pinned
    assert read_source(str(dest)) == {"repo": MIRROR_REPO, "revision": "main", "commit": commit}
    assert (dest / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert not (dest / "v2-1_512-ema-pruned.ckpt").exists()
    assert f"--model {dest}" in capsys.readouterr().out
    assert main(["models", "fetch", "--dest", str(tmp_path / "r"), "--revision", "v1"]) == 0
    assert fake.calls[-2][2] == "v1" and read_source(str(tmp_path / "r"))["revision"] == "v1"


def test_fetch_falls_back_to_the_original_when_the_mirror_is_gone(tmp_path, fake_hub, capsys):
    fake = fake_hub({ORIGINAL_REPO: sd21_configs(str(tmp_path / "orig"))})
    assert main(["models", "fetch", "--dest", str(tmp_path / "sd")]) == 0
    assert [c[1] for c in fake.calls] == [MIRROR_REPO, ORIGINAL_REPO, ORIGINAL_REPO]
    assert read_source(str(tmp_path / "sd"))["repo"] == ORIGINAL_REPO
    fake_hub({})  # neither: one line naming both
    capsys.readouterr()
    assert main(["models", "fetch", "--dest", str(tmp_path / "none")]) == MissingModelError.exit_code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and MIRROR_REPO in err[0] and ORIGINAL_REPO in err[0] and "404" in err[0]
    fake = fake_hub({ORIGINAL_REPO: sd21_configs(str(tmp_path / "orig"))})
    assert main(["models", "fetch", "--repo", "me/sd21", "--dest", str(tmp_path / "x")]) == MissingModelError.exit_code
    assert [c[1] for c in fake.calls] == ["me/sd21"]  # an explicit --repo has no fallback


def test_fetch_refuses_configs_that_are_not_sd21_base(tmp_path, fake_hub, capsys):
    """SD 2.1 (768-v) has v_prediction and 96² latents; SD 1.5 a 768-wide text encoder."""
    v_model = sd21_configs(str(tmp_path / "v"), **{"scheduler/scheduler_config.json:prediction_type": "v_prediction",
                                                   "unet/config.json:sample_size": 96})
    fake_hub({MIRROR_REPO: v_model})
    assert main(["models", "fetch", "--dest", str(tmp_path / "sd")]) == MissingModelError.exit_code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not Stable Diffusion 2.1-base" in err[0]
    assert "prediction_type is 'v_prediction', SD 2.1-base has 'epsilon'" in err[0]
    assert "sample_size is 96, SD 2.1-base has 64" in err[0]
    assert not (tmp_path / "sd" / SOURCE_FILE).exists()  # not recorded as a good download
    sd15 = sd21_configs(str(tmp_path / "15"), **{"text_encoder/config.json:hidden_size": 768,
                                                  "unet/config.json:cross_attention_dim": 768})
    assert sd21_base_mismatches(sd15) == ["unet/config.json cross_attention_dim is 768, SD 2.1-base has 1024",
                                          "text_encoder/config.json hidden_size is 768, SD 2.1-base has 1024"]
    assert sd21_base_mismatches(sd21_configs(str(tmp_path / "ok"))) == []
    fake_hub({"me/sd15": sd15})
    assert main(["models", "fetch", "--repo", "me/sd15", "--dest", str(tmp_path / "15d"), "--no-check"]) == 0
    assert read_source(str(tmp_path / "15d"))["repo"] == "me/sd15"


def test_fetched_tiny_model_loads_with_its_source_and_the_same_hash(tmp_path, fake_hub):
    """The hash is the weights' identity (same from any mirror); the source is recorded beside it."""
    tiny = make_tiny(str(tmp_path / "tiny"), seed=0)
    fake_hub({"me/tiny": tiny})
    assert main(["models", "fetch", "--repo", "me/tiny", "--dest", str(tmp_path / "got")]) == MissingModelError.exit_code
    assert main(["models", "fetch", "--repo", "me/tiny", "--dest", str(tmp_path / "got"), "--no-check"]) == 0
    fetched, original = load_backbone(str(tmp_path / "got")), load_backbone(tiny)
    assert fetched.hash == original.hash and original.source == {}
    assert fetched.source["repo"] == "me/tiny"
    assert fetched.identity == f"{fetched.hash} (me/tiny@{fetched.source['commit'][:12]})"


def test_doctor_names_the_model_its_source_and_how_to_point_at_a_copy(tmp_path, fake_hub, monkeypatch):
    from smite.cli.doctor import model_rows

    fake_hub({MIRROR_REPO: sd21_configs(str(tmp_path / "mirror"))})
    monkeypatch.setenv("SMITE_MODEL_DIR", str(tmp_path / "models"))
    assert main(["models", "fetch"]) == 0
    fetched = tmp_path / "models" / "stable-diffusion-2-1-base"
    other = sd21_configs(str(tmp_path / "v"), **{"scheduler/scheduler_config.json:prediction_type": "v_prediction"})
    monkeypatch.setenv("SMITE_MODEL", other)
    rows = [value for key, value in model_rows() if key == "SD model"]
    assert rows[0] == f"$SMITE_MODEL = {other} (not SD 2.1-base: scheduler/scheduler_config.json prediction_type " \
                      "is 'v_prediction', SD 2.1-base has 'epsilon')"
    commit = read_source(str(fetched))["commit"]
    assert rows[1] == f"fetched: {fetched} (SD 2.1-base configs, fetched from {MIRROR_REPO}@{commit[:12]})"
    assert "point --model (or $SMITE_MODEL) at a local diffusers copy" in rows[2] and MIRROR_REPO in rows[2]
