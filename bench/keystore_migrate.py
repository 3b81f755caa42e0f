"""`kmc keystore migrate --to pkcs11` time: a software KMC with N vending keys moved onto a
throwaway SoftHSM2 token (PKI keys imported, N keys re-wrapped and checked twice, all verified).

Run: ``python -m bench keystore_migrate`` (SQLite). Key generation is not timed.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

from bench._instances import bench_instance
from bench.keystore import SOFTHSM_MODULE
from factories.keys import add_key
from kmc.instance_migrate import Migration

SIZES = (100, 1000)
PIN = "1234"


def _migrate(keys: int, pin: Path) -> None:
    with bench_instance("sqlite", f"kmc_bench_migrate_{keys}") as (app, _folder, _url):
        for n in range(keys):  # 27 identities (KRN 1-9, KT 1-3) per supply group
            group, (krn, kt) = divmod(n, 27)[0], divmod(n % 27, 3)
            add_key(app, krn + 1, kt + 1, dkga="04" if n % 2 else "02", sgc=f"{700000 + group}")
        label = f"kmc-migrate-{keys}"
        subprocess.run(
            ["softhsm2-util", "--init-token", "--free", "--label", label]
            + ["--pin", PIN, "--so-pin", "5678"],
            check=True,
            capture_output=True,
        )
        app.config.update(
            KMC_PKCS11_MODULE=str(SOFTHSM_MODULE),
            KMC_PKCS11_TOKEN=label,
            KMC_PKCS11_PIN_FILE=str(pin),
        )
        with app.app_context():
            start = time.perf_counter()
            report = Migration.prepare().run("bench", 100, lambda count: None)
            seconds = time.perf_counter() - start
        assert report.keys_rewrapped == report.keys_verified == keys
        print(
            f"  {keys:>5} keys: {seconds:6.2f} s  ({keys / seconds:,.0f} keys/s, "
            "PKI import and final verification included)"
        )


def main() -> None:
    if not SOFTHSM_MODULE.exists():
        print("  SoftHSM2 is not installed: no figures")
        return
    with tempfile.TemporaryDirectory(prefix="kmc-bench-migrate-") as tmp:
        folder = Path(tmp)
        (folder / "tokens").mkdir()
        (folder / "softhsm2.conf").write_text(f"directories.tokendir = {folder / 'tokens'}\n")
        os.environ["SOFTHSM2_CONF"] = str(folder / "softhsm2.conf")
        pin = folder / "pin"
        pin.write_text(PIN)
        pin.chmod(0o600)
        for keys in SIZES:
            _migrate(keys, pin)


if __name__ == "__main__":
    main()
