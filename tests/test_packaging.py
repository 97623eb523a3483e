"""The package as a user installs it: `pip install .` (a wheel), not the checkout."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(REPO)],
        check=True, capture_output=True, timeout=300,
    )
    (path,) = out.glob("burn_tf-*.whl")
    return path


def test_the_wheel_ships_every_config_the_clis_default_to(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {str(p.relative_to(REPO)) for p in (REPO / "burn_tf" / "configs").rglob("*.yaml")}
    assert {"burn_tf/configs/demo.yaml", "burn_tf/configs/s2bnn.yaml",
            "burn_tf/configs/imagenet/burn_stage1.yaml"} <= shipped
    assert shipped <= names


def test_installed_wheel_runs_from_another_directory(wheel, tmp_path, fashion_mnist_available):
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin",
           "HOME": str(tmp_path)}
    probe = ("import burn_tf, burn_tf.demo as d; cfg, ev = d.load_demo_config(); "
             "print(burn_tf.__file__); print(cfg.method.name, cfg.backbone.input_size, ev.linear_epochs)")
    out = subprocess.run([sys.executable, "-c", probe], cwd=elsewhere, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert str(site) in out.stdout and "burn 48 10" in out.stdout
    tiny = ["teacher.kind=resnet18", "teacher.weights=null", "teacher.small_input_stem=true",
            "teacher.input_size=32", "backbone.input_size=32", "backbone.width_multiplier=0.125", "method.head_width=16",
            "train.batch_size=8", "train.steps_per_epoch=2", "train.epochs=1", "train.verbose=0",
            "train.run_eagerly=true", "data.limit=32"]
    args = [sys.executable, "-m", "burn_tf.pretrain", "--config", "demo", "--stage", "1", "--run-dir", "run"]
    for item in tiny:
        args += ["--set", item]
    run = subprocess.run(args, cwd=elsewhere, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert (elsewhere / "run" / "stage1" / "backbone" / "metadata.json").exists()
    # The CLI start-up prints no TensorFlow C++ registration errors.
    assert "Unable to register" not in run.stderr
