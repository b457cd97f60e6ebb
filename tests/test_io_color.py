"""OpenColorIO conversion to the model's sRGB: pinned default config, $OCIO respected."""

import numpy as np
import PyOpenColorIO as ocio
import pytest

from smite.errors import BadInputError
from smite.io.color import DEFAULT_CONFIG, ColorConverter, config_uri

TINY_CONFIG = """ocio_profile_version: 2
roles:
  default: raw
  scene_linear: linear
displays:
  sRGB:
    - !<View> {name: Raw, colorspace: raw}
colorspaces:
  - !<ColorSpace>
    name: raw
  - !<ColorSpace>
    name: linear
  - !<ColorSpace>
    name: doubled
    to_scene_reference: !<MatrixTransform> {matrix: [2, 0, 0, 0, 0, 2, 0, 0, 0, 0, 2, 0, 0, 0, 0, 1]}
"""


@pytest.fixture
def no_ocio_env(monkeypatch):
    monkeypatch.delenv("OCIO", raising=False)


def test_default_is_a_pinned_builtin(no_ocio_env):
    names = [entry[0] for entry in ocio.BuiltinConfigRegistry().getBuiltinConfigs()]
    assert DEFAULT_CONFIG == "ocio://cg-config-v2.2.0_aces-v1.3_ocio-v2.4"
    assert DEFAULT_CONFIG.removeprefix("ocio://") in names
    assert config_uri() == DEFAULT_CONFIG


def test_linear_to_srgb_texture(no_ocio_env):
    conv = ColorConverter("Linear Rec.709 (sRGB)", "sRGB - Texture")
    ramp = np.linspace(0.0, 1.0, 64, dtype=np.float32)
    rgb = np.stack([ramp, ramp, ramp], axis=-1)[None]  # (1, 64, 3)
    out = conv.to_model(rgb)
    assert out.shape == rgb.shape and out.dtype == np.float32
    assert np.all(np.diff(out[0, :, 0]) > 0)
    grey = conv.to_model(np.full((2, 2, 3), 0.18, np.float32))
    # The sRGB curve: 1.055 * 0.18 ** (1 / 2.4) - 0.055
    assert np.allclose(grey, 1.055 * 0.18 ** (1 / 2.4) - 0.055, atol=2e-3)
    assert abs(float(grey[0, 0, 0]) - 0.46) < 0.01


def test_output_is_clipped_and_input_untouched(no_ocio_env):
    conv = ColorConverter("ACEScg", "sRGB - Texture")
    rgb = np.array([[[4.0, -1.0, 0.5]]], np.float32)
    before = rgb.copy()
    out = conv.to_model(rgb)
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert np.array_equal(rgb, before)


def test_identity_shortcut_and_aliases(no_ocio_env):
    conv = ColorConverter("srgb_tx", "sRGB - Texture")  # an alias of the same space
    assert conv.is_identity
    rgb = np.random.default_rng(0).random((3, 4, 3), dtype=np.float32)
    assert np.array_equal(conv.to_model(rgb), rgb)
    assert not ColorConverter("Linear Rec.709 (sRGB)").is_identity


def test_unknown_colourspace_is_named_with_valid_names(no_ocio_env):
    with pytest.raises(BadInputError) as err:
        ColorConverter("Rec.709 Lnear")
    message = str(err.value)
    assert "'Rec.709 Lnear'" in message and "ACEScg" in message and "\n" not in message


def test_ocio_environment_variable_is_respected(tmp_path, monkeypatch):
    path = tmp_path / "tiny.ocio"
    path.write_text(TINY_CONFIG)
    monkeypatch.setenv("OCIO", str(path))
    assert config_uri() == str(path)
    conv = ColorConverter("linear", "doubled")
    out = conv.to_model(np.full((1, 1, 3), 0.2, np.float32))
    assert np.allclose(out, 0.1)  # to_reference doubles, so from the reference halves
    with pytest.raises(BadInputError, match="'sRGB - Texture'.*tiny.ocio"):
        ColorConverter()  # the default model space is not in this config
    # An explicit config beats $OCIO.
    assert ColorConverter("Linear Rec.709 (sRGB)", config=DEFAULT_CONFIG).config == DEFAULT_CONFIG


def test_unreadable_config_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("OCIO", str(tmp_path / "missing.ocio"))
    with pytest.raises(BadInputError, match="cannot load OCIO config .*missing.ocio"):
        ColorConverter()
