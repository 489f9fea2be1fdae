"""The built-in theme ships inside the wheel: an installed wheel, away from the source tree,
must build a site."""
from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

from test_build import MODEL_CODE, SITE

REPO = Path(__file__).resolve().parents[1]


def test_wheel_in_a_fresh_venv_builds_a_site(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(wheels), str(REPO)], check=True)
    wheel = next(wheels.glob("galleria-*.whl"))
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site_packages = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                        check=True, capture_output=True, text=True).stdout.strip())
    # Dependencies (torch & co.) come from this environment; galleria itself only from the wheel.
    (site_packages / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                    "--target", str(site_packages), str(wheel)], check=True)

    project = tmp_path / "project"
    (project / "photos").mkdir(parents=True)
    from PIL import Image

    Image.new("RGB", (40, 40), (200, 30, 30)).save(project / "photos" / "red.png")
    Image.new("RGB", (40, 40), (30, 30, 200)).save(project / "photos" / "blue.png")
    (project / "tinymodel_e2e.py").write_text(MODEL_CODE)
    (project / "site.yaml").write_text(SITE)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([str(python), "-m", "galleria", "build", "-q"], cwd=project, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    where = subprocess.run([str(python), "-c", "import galleria; print(galleria.__file__)"], cwd=project,
                           env=env, capture_output=True, text=True).stdout
    assert where.startswith(str(site_packages)), where
    schema = subprocess.run([str(python), "-m", "galleria", "schema"], cwd=project, env=env, capture_output=True,
                            text=True)  # site.yaml's schema ships beside the code it is made from
    assert schema.stdout == (site_packages / "galleria" / "site.schema.json").read_text()
    assert (project / "out" / "tiny" / "2" / "1" / "index.html").is_file()
    assert (project / "out" / "assets" / "galleria.css").is_file()
    # the live probe's vendored runtime ships in the wheel too
    assert (project / "out" / "assets" / "onnxruntime-web" / "runtime.js").stat().st_size > 1_000_000
    assert (project / "out" / "tiny" / "probe.js").is_file()
