"""What the export tests share: cfn-lint on a template, and an AWS CLI script applied to the
local AWS with the real `aws` command."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import local_client
from tuner.aws import Alarms, AutoScaling


def assert_cfn_lint_passes(template: Path) -> None:
    """cfn-lint (installed beside this Python) accepts the template file."""
    result = subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), str(template)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@contextmanager
def applied_with_aws_cli(
    script_text: str, endpoint: str, tmp_path: Path, subprocess_env: dict[str, str]
) -> Iterator[AutoScaling]:
    """Run the exported AWS CLI script (``set -euo pipefail``) against a local AWS serving
    ``endpoint``, no config or credentials file; yield a reader of what it put there."""
    from tuner.emulator import EmulatorConfig, LocalAws

    script = tmp_path / "apply.sh"
    script.write_text("set -euo pipefail\n" + script_text)
    with LocalAws(EmulatorConfig(speed=60, endpoint=endpoint)) as aws:
        env = dict(subprocess_env, **aws.env)
        env["AWS_CONFIG_FILE"] = env["AWS_SHARED_CREDENTIALS_FILE"] = str(tmp_path / "none")
        result = subprocess.run(
            ["bash", str(script)], capture_output=True, text=True, env=env, timeout=300
        )
        assert result.returncode == 0, result.stderr
        yield AutoScaling(
            local_client(aws, "application-autoscaling"),
            alarms=Alarms(local_client(aws, "cloudwatch")),
        )
