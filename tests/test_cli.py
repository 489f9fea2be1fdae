"""The command line as a user meets it: usage errors, a missing config, versions, --clean."""
from __future__ import annotations

import pytest

from galleria import __version__
from galleria.cli import main
from test_build import MODEL_CODE, SITE


def test_missing_config_is_a_usage_error(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["build"]) == 2
    err = capsys.readouterr().err
    assert "site.yaml: config file not found" in err and "-f PATH" in err


def test_unknown_command_and_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["bulid"])
    assert info.value.code == 2 and "invalid choice" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and __version__ in capsys.readouterr().out


def test_clean_rebuilds_a_galleria_site_and_its_cache(tmp_path, capsys):
    from PIL import Image

    (tmp_path / "photos").mkdir()
    Image.new("RGB", (40, 40), (10, 200, 30)).save(tmp_path / "photos" / "green.png")
    (tmp_path / "tinymodel_e2e.py").write_text(MODEL_CODE)
    (tmp_path / "site.yaml").write_text(SITE)
    assert main(["build", "-q"] + ["-f", str(tmp_path / "site.yaml")]) == 0
    capsys.readouterr()
    assert main(["build", "--clean", "-f", str(tmp_path / "site.yaml"), "-d", str(tmp_path / "elsewhere")]) == 0
    out = capsys.readouterr().out
    assert "images drawn" in out and "0 images drawn" not in out  # the cache was discarded
    assert (tmp_path / "elsewhere" / "tiny" / "2" / "1" / "index.html").is_file()


def test_layers_needs_a_model_name_when_there_are_several(tmp_path, capsys):
    (tmp_path / "photos").mkdir()
    (tmp_path / "tinymodel_e2e.py").write_text(MODEL_CODE)
    two = SITE.replace("examples:", "  - id: other\n    source: tinymodel_e2e:tiny\n    layers: ['0']\nexamples:")
    (tmp_path / "site.yaml").write_text(two)
    assert main(["layers", "-f", str(tmp_path / "site.yaml"), "tinny"]) == 2
    assert "did you mean 'tiny'?" in capsys.readouterr().err
