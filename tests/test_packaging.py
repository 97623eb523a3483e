"""The package as a user installs it: `pip install .` (a wheel), not the checkout."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _clean_copy(where: Path) -> Path:
    """The checkout without build products or runs (``pip`` builds in the source tree)."""
    copy = where / "burn_tf"
    shutil.copytree(REPO, copy, ignore=shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "runs", ".venv",
                                                              "__pycache__", ".pytest_cache"))
    return copy


@pytest.fixture(scope="module")
def wheel_build(tmp_path_factory):
    """(the wheel built from a clean copy, what pip printed while building it)."""
    out = tmp_path_factory.mktemp("wheel")
    # From a clean copy: pip builds in the source tree, and files left in a stale build/
    # would go into the wheel (a config that is no longer shipped, say).
    source = _clean_copy(tmp_path_factory.mktemp("source"))
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(source)],
        check=True, capture_output=True, text=True, timeout=300,
    )
    (path,) = out.glob("burn_tf-*.whl")
    return path, build.stdout + build.stderr


@pytest.fixture(scope="module")
def wheel(wheel_build):
    return wheel_build[0]


def test_the_build_prints_no_setuptools_warning(wheel_build):
    # setuptools warns (40 lines, every install) about a folder of configs/ that is importable
    # but missing from setup.cfg's packages.
    _, output = wheel_build
    assert "absent from the `packages` configuration" not in output
    assert "Package would be ignored" not in output


def test_the_wheel_ships_every_config_the_clis_default_to(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    edited = {p.relative_to(REPO / "configs").as_posix() for p in (REPO / "configs").rglob("*.yaml")}
    assert {"demo.yaml", "s2bnn.yaml", "imagenet/burn_stage1.yaml"} <= edited
    # setup.cfg's package_dir ships the root configs/ as the package burn_tf.configs.
    assert {f"burn_tf/configs/{name}" for name in edited} <= names


def test_the_wheel_ships_every_module(wheel):
    # setup.cfg lists the packages by name (burn_tf.configs lives outside burn_tf/): a new
    # subpackage missing from that list would be missing from the wheel.
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {p.relative_to(REPO).as_posix() for p in (REPO / "burn_tf").rglob("*.py")}
    assert modules - names == set()


def test_the_configs_live_in_one_place():
    # configs/ at the root is what users edit and what the wheel ships: no second copy that
    # could drift from it.
    assert not (REPO / "burn_tf" / "configs").exists()
    tracked = subprocess.run(["git", "ls-files", "*.yaml", "*.yml"], cwd=REPO, capture_output=True, text=True)
    if tracked.returncode != 0:
        pytest.skip("not a git checkout")
    # (mkdocs.yml is the docs site's settings, not a run config.)
    elsewhere = [path for path in tracked.stdout.split() if not path.startswith("configs/") and path != "mkdocs.yml"]
    assert elsewhere == []


def test_an_editable_install_reads_the_root_configs(tmp_path):
    # What scripts/setup.sh does (pip install -e), of a copy of the checkout, in a throwaway
    # environment that sees this interpreter's packages but not its own burn_tf install.
    checkout = _clean_copy(tmp_path)
    env_dir = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True, timeout=120)
    python = env_dir / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    packages = subprocess.run([sys.executable, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "outer_packages.pth").write_text(packages + "\n")  # a path line: its .pth files are not run
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
                    "--no-build-isolation", "-q", "-e", str(checkout)], check=True, capture_output=True, timeout=300)
    probe = ("import importlib.resources, burn_tf.config as c; print(importlib.resources.files('burn_tf.configs')); "
             "print(c.CONFIG_DIR); print(c.resolve_config_path('demo').resolve()); "
             "print(c.resolve_config_path('configs/demo.yaml').resolve())")
    out = subprocess.run([python, "-c", probe], cwd=checkout, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    shipped, config_dir, by_name, by_path = out.stdout.split()
    assert Path(shipped) == Path(config_dir) == checkout / "configs"
    assert Path(by_name) == Path(by_path) == checkout / "configs" / "demo.yaml"


def test_installed_wheel_runs_from_another_directory(wheel, tmp_path, fashion_mnist_available):
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin",
           "HOME": str(tmp_path)}
    probe = ("import burn_tf, burn_tf.config as c, burn_tf.studies.demo as d; cfg, ev = d.load_demo_config(); "
             "print(burn_tf.__file__); print(c.resolve_config_path('demo')); "
             "print(cfg.method.name, cfg.backbone.input_size, ev.linear_epochs)")
    out = subprocess.run([sys.executable, "-c", probe], cwd=elsewhere, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert str(site) in out.stdout and "burn 48 10" in out.stdout
    assert str(site / "burn_tf" / "configs" / "demo.yaml") in out.stdout  # the wheel's copy
    tiny = [
        "teacher.kind=resnet18",
        "teacher.weights=null",
        "teacher.small_input_stem=true",
        "teacher.input_size=32",
        "backbone.input_size=32",
        "backbone.width_multiplier=0.125",
        "backbone.blocks=4",
        "method.head_width=16",
        "train.batch_size=8",
        "train.steps_per_epoch=2",
        "train.epochs=1",
        "train.verbose=0",
        "train.run_eagerly=true",
        "data.limit=32",
    ]
    args = [sys.executable, "-m", "burn_tf.pretrain", "--config", "demo", "--stage", "1", "--run-dir", "run"]
    for item in tiny:
        args += ["--set", item]
    run = subprocess.run(args, cwd=elsewhere, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert (elsewhere / "run" / "stage1" / "backbone" / "metadata.json").exists()
    # The CLI start-up prints no TensorFlow C++ registration errors.
    assert "Unable to register" not in run.stderr
