"""The built wheel is a working KMC: templates, static files and migrations travel in it."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (localhost only)
        return response.status, response.read().decode()


def test_the_wheel_installed_in_a_fresh_environment_inits_and_serves_the_login_page(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", wheels, ROOT],
        check=True,
    )
    (wheel,) = wheels.glob("sts_kmc-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    # The dependencies come from this test's environment as a plain path entry: no download,
    # and (unlike a site dir) its .pth files are not run, so the editable source tree stays out.
    site = Path(
        subprocess.check_output(
            [
                venv / "bin" / "python",
                "-c",
                "import sysconfig; print(sysconfig.get_paths()['purelib'])",
            ],
            text=True,
        ).strip()
    )
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # --ignore-installed: through the path entry above, the editable checkout looks installed.
    pip = (sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install")
    subprocess.run(
        [*pip, "--quiet", "--no-deps", "--ignore-installed", wheel],
        check=True,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "KMC_INSTANCE": str(tmp_path / "instance"),
        "HOME": str(tmp_path),
    }
    where = subprocess.check_output(
        [venv / "bin" / "python", "-c", "import kmc; print(kmc.__file__)"],
        env=env,
        text=True,
        cwd=tmp_path,
    )
    assert where.startswith(str(venv)), where
    init = subprocess.run(
        [venv / "bin" / "kmc", "init"], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert init.returncode == 0, init.stderr
    assert "one-time password" in init.stdout
    port = _free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as log_file:
        server = subprocess.Popen(
            [venv / "bin" / "kmc", "serve", "--port", str(port)],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=log_file,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                status, page = _get(f"http://127.0.0.1:{port}/login")
                break
            except OSError:
                assert server.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "the KMC did not start serving"
                time.sleep(0.2)
        assert status == 200
        assert 'name="password"' in page
        stylesheet = re.search(r'<link[^>]+href="([^"]+\.css)"', page)
        assert stylesheet is not None, "the login page links no stylesheet"
        css_status, css = _get(f"http://127.0.0.1:{port}{stylesheet.group(1)}")
        assert css_status == 200 and len(css) > 1000
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert os.path.exists(tmp_path / "instance" / "kmc.sqlite3")
