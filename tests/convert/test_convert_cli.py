"""``python -m burn_tf.convert``: a user's mistake is one ``error: …`` line and exit code 2."""

from burn_tf.convert.__main__ import main as convert_main


def test_missing_checkpoint_is_one_error_line(tmp_path, capsys):
    missing = tmp_path / "no_such.pth"
    argv = ["--arch", "resnet18", "--checkpoint", str(missing), "--out", str(tmp_path / "r18.weights.h5")]
    assert convert_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and str(missing) in err and len(err.splitlines()) == 1
    assert not list(tmp_path.iterdir())


def test_not_a_checkpoint_is_one_error_line(tmp_path, capsys):
    bogus = tmp_path / "notes.pth"
    bogus.write_text("not a checkpoint")
    argv = ["--arch", "resnet18", "--checkpoint", str(bogus), "--out", str(tmp_path / "r18.weights.h5")]
    assert convert_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and str(bogus) in err and len(err.splitlines()) == 1
