"""Shell completion through Typer's own mechanism: `textrnn --install-completion` /
`--show-completion`, and the `_TEXTRNN_COMPLETE` environment variable that the installed
script sets when the user presses TAB."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from textrnn.cli import main


def test_shell_completion_through_typers_environment_variables(tmp_path):
    """What the installed script does on TAB: run textrnn with _TEXTRNN_COMPLETE set."""
    script = Path(sys.executable).with_name("textrnn")  # the console script the shell runs
    command = [str(script)] if script.exists() else [sys.executable, "-m", "textrnn"]

    def complete(
        words: str, shell: str = "bash", module: bool = False
    ) -> subprocess.CompletedProcess:
        env = {**os.environ, "_TEXTRNN_COMPLETE": f"complete_{shell}", "COMP_WORDS": words,
               "COMP_CWORD": str(len(words.split(" ")) - 1), "_TYPER_COMPLETE_ARGS": words}  # fmt: skip
        argv = [sys.executable, "-m", "textrnn"] if module else command
        return subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path
        )

    asks = {"ta": ("textrnn ta",), "tag": ("textrnn tag ",), "axis": ("textrnn plot --x ",),
            "zsh": ("textrnn ta", "zsh"), "module": ("textrnn ta", "bash", True)}  # fmt: skip
    with ThreadPoolExecutor(max_workers=2) as pool:
        jobs = dict(zip(asks, pool.map(lambda ask: complete(*ask), asks.values()), strict=True))
    for res in jobs.values():
        assert res.returncode == 0 and res.stderr == "", res.stderr
    assert jobs["ta"].stdout.split() == ["tag"] == jobs["module"].stdout.split()
    assert {"train", "predict", "eval"} <= set(jobs["tag"].stdout.split())
    assert jobs["axis"].stdout.split() == ["step", "tokens", "time"]
    assert '"tag":' in jobs["zsh"].stdout


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_show_completion_prints_the_script_to_install(shell, capsys, monkeypatch):
    # Typer's switch for naming the shell instead of detecting it from the parent process.
    monkeypatch.setenv("_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION", "1")
    with pytest.raises(SystemExit) as exit_:
        main(["--show-completion", shell])
    out, err = capsys.readouterr()
    assert exit_.value.code == 0 and err == "", err
    assert "_TEXTRNN_COMPLETE" in out and f"complete_{shell}" in out


def test_completion_leaves_help_and_errors_alone(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0 and "--install-completion" in out and "plot" in out
    with pytest.raises(SystemExit) as exit_:
        main(["nonsense"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and err.startswith("textrnn: error: ")
