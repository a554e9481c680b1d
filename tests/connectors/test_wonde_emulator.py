"""The emulator on its own, as README tells an operator to try a Wonde base offline: started
with ``python -m tests.support.wonde_emulator`` from the repository, one base of the example
config pointed at it, then ``validate``, ``preflight`` and ``trigger`` as usual."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
README_ENDPOINT = (
    'endpoint: {type: wonde, school_id: A8813003, token: {credential: wonde}, url: "URL"}'
)


def test_the_readme_trial_of_a_wonde_base_works_offline(tmp_path):
    shutil.copytree(REPO / "config", tmp_path / "config")
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    emulator = subprocess.Popen(
        [sys.executable, "-m", "tests.support.wonde_emulator", "--examples", "examples/schools",
         "--port", "0", "--token", "dev-token"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert emulator.stdout is not None
        first = emulator.stdout.readline()
        assert first.startswith("Wonde emulator on http://127.0.0.1:"), first
        url = first.split(" on ", 1)[1].strip()
        bases = tmp_path / "config" / "bases.yaml"
        text = bases.read_text()
        old = "endpoint: {type: directory, path: ../examples/schools/8813003}"
        assert old in text
        bases.write_text(text.replace(old, README_ENDPOINT.replace("URL", url)))
        env = {**os.environ, "B2BD_WONDE_TOKEN": "dev-token"}
        env.pop("CREDENTIALS_DIRECTORY", None)

        def b2bd(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "b2bd", "--config", str(tmp_path / "config"), *args],
                capture_output=True, text=True, timeout=120, env=env,
            )  # fmt: skip

        validate = b2bd("validate")
        assert validate.returncode == 0, validate.stdout
        preflight = b2bd("preflight", "--format", "json")
        report = {b["id"]: b for b in json.loads(preflight.stdout)["bases"]}["8813003"]
        assert all(c["status"] != "fail" for c in report["checks"]), report
        trigger = b2bd("trigger", "weekly-unauthorised-absence", "--base", "8813003",
                       "--format", "json")  # fmt: skip
        transfer = json.loads(trigger.stdout)["transfers"][0]
        assert trigger.returncode == 0 and transfer["outcome"] == "succeeded", trigger.stdout
        assert transfer["counts"]["mark"] > 0
    finally:
        emulator.terminate()
        emulator.communicate(timeout=30)
