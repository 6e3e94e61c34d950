"""edge.bootid: the kernel's boot id, or systemd's (%b) where a unit hides /proc/sys."""

from pathlib import Path

import pytest

from edge.bootid import BOOT_ID_ENV, read_boot_id


def test_the_kernel_file_in_its_own_form(tmp_path: Path) -> None:
    f = tmp_path / "boot_id"
    f.write_text("3F2504E0-4F89-11D3-9A0C-0305E82C3301\n")
    assert read_boot_id(f) == "3f2504e0-4f89-11d3-9a0c-0305e82c3301"


def test_systemds_form_from_the_environment_gives_the_same_id(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(BOOT_ID_ENV, "3f2504e04f8911d39a0c0305e82c3301")
    assert read_boot_id(tmp_path / "hidden") == "3f2504e0-4f89-11d3-9a0c-0305e82c3301"


def test_nothing_readable_gives_an_empty_id_and_a_warning(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv(BOOT_ID_ENV, raising=False)
    assert read_boot_id(tmp_path / "hidden") == ""
    assert "set Environment=EDGE_BOOT_ID=%b" in caplog.text


def test_this_machine() -> None:
    assert len(read_boot_id()) == 36
