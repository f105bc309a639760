"""Files written through atomic_path get the permissions of any other new file, not mkstemp's owner-only 0600."""
import os
import stat

import pytest

from raydc.files.atomic import atomic_path


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077], ids=["022", "002", "077"])
def test_replaced_file_has_the_umask_mode(tmp_path, umask):
    previous = os.umask(umask)
    try:
        with atomic_path(tmp_path / "trials.parquet") as temp:
            temp.write_bytes(b"rows")
        plain = tmp_path / "plain"
        plain.write_bytes(b"rows")
    finally:
        os.umask(previous)
    assert _mode(tmp_path / "trials.parquet") == _mode(plain) == 0o666 & ~umask
    assert set(os.listdir(tmp_path)) == {"trials.parquet", "plain"}  # no temporary file left behind


def test_failed_write_leaves_the_old_file(tmp_path):
    target = tmp_path / "epochs.parquet"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as temp:
        temp.write_bytes(b"half")
        raise RuntimeError
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["epochs.parquet"]
