"""`make demo`: the whole round trip through the real command lines, on a throwaway KMC instance.

KMC set-up → SM registration and certificate → supply group, vending keys and authorisations →
VKLOADREQ → EKLF → load → a meter manufactured on the default key → key change to the unique key
→ credit accepted → key rollover to a new KRN → old-key tokens refused; and, when the EA07 tables
are available ($STS_EA07_TABLES), the same on a DKGA02/EA07 key. Each step prints the command and
its output. `Walkthrough` is also what tests/test_round_trip.py drives.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

SMID = "4242"
ID_MAN = "1A2B"
PAN = "600727000000000009"
EA07_PAN = "600727000000000017"
SGC = "123457"
EA07_SGC = "654321"


class DemoFailed(Exception):
    """A step of the walkthrough did not end as expected."""


SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
DEMO_PIN = "4321"  # a throwaway token's PIN, passed to SoftHSM2's own tools only


class Walkthrough:
    """Runs `kmc`, `sm-emulator` and `meter-emulator` in subprocesses against one folder."""

    def __init__(self, folder: Path, *, echo: Callable[[str], None] = print) -> None:
        self.folder = folder
        self.echo = echo
        self.bin = Path(sys.executable).parent
        self.env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("KMC_", "SM_EMULATOR_", "METER_EMULATOR_"))
        }
        self.env.update({"KMC_INSTANCE": str(folder / "kmc"), "KMC_MODE": "test"})

    def run(
        self, program: str, *args: str, ok: bool = True, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run one command in the folder; `ok` says whether it must succeed or must be refused."""
        shown = " ".join(a if " " not in a else repr(a) for a in args)
        self.echo(f"$ {program} {shown}")
        done = subprocess.run(
            [str(self.bin / program), *args],
            cwd=self.folder,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=120,
        )
        for line in (done.stdout + done.stderr).strip().splitlines():
            self.echo(f"    {line}")
        if (done.returncode == 0) != ok:
            raise DemoFailed(f"{program} {args[0]} exited {done.returncode}: {done.stderr.strip()}")
        return done

    def use_softhsm(self) -> None:
        """KMC_KEYSTORE=pkcs11: the KMC's keys on a throwaway SoftHSM2 token in the folder, or on
        the token KMC_PKCS11_MODULE / _TOKEN / _PIN_FILE name."""
        self.env["KMC_KEYSTORE"] = "pkcs11"
        given = {k: os.environ.get(k, "") for k in ("KMC_PKCS11_MODULE", "KMC_PKCS11_TOKEN")}
        if all(given.values()):
            self.env.update(given, KMC_PKCS11_PIN_FILE=os.environ.get("KMC_PKCS11_PIN_FILE", ""))
            return
        self.step("HSM: a throwaway SoftHSM2 token for the KMC's keys")
        tokens = self.folder / "softhsm" / "tokens"
        tokens.mkdir(parents=True)
        conf = self.folder / "softhsm" / "softhsm2.conf"
        conf.write_text(f"directories.tokendir = {tokens}\n")
        pin = self.folder / "softhsm" / "pin"
        pin.write_text(DEMO_PIN)
        pin.chmod(0o600)
        self.env.update(
            SOFTHSM2_CONF=str(conf),
            KMC_PKCS11_MODULE=SOFTHSM_MODULE,
            KMC_PKCS11_TOKEN="kmc-demo",
            KMC_PKCS11_PIN_FILE=str(pin),
        )
        self.run_tool(
            "softhsm2-util",
            "--init-token",
            "--free",
            "--label",
            "kmc-demo",
            "--pin",
            DEMO_PIN,
            "--so-pin",
            "5678",
        )

    def run_tool(self, *command: str) -> None:
        """A system tool (SoftHSM2, OpenSC), shown like the other steps."""
        self.echo(f"$ {' '.join(command)}")
        done = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=60)
        for line in (done.stdout + done.stderr).strip().splitlines():
            self.echo(f"    {line}")
        if done.returncode != 0:
            raise DemoFailed(f"{command[0]} exited {done.returncode}: {done.stderr.strip()}")

    def show_token(self) -> None:
        self.step("HSM: the KMC's keys on the token, and none in the instance folder")
        self.run("kmc", "hsm", "status")
        if self.env["KMC_PKCS11_MODULE"] == SOFTHSM_MODULE:
            self.run_tool(
                "pkcs11-tool",
                "--module",
                SOFTHSM_MODULE,
                "--token-label",
                self.env["KMC_PKCS11_TOKEN"],
                "--login",
                "--pin",
                DEMO_PIN,
                "--list-objects",
            )
        found = sorted(
            str(p.relative_to(self.folder))
            for p in (self.folder / "kmc").rglob("*")
            if p.name == "master.key" or ".key" in p.name
        )
        self.echo(f"    private key or master key files in the instance: {found or 'none'}")
        if found:
            raise DemoFailed(f"key files in the instance folder: {found}")

    def step(self, title: str) -> None:
        self.echo(f"\n== {title}")

    def set_up_kmc(self) -> None:
        self.step("KMC: a fresh instance and a manufacturer")
        self.run("kmc", "init")
        self.run("kmc", "manufacturer", "add", "--id-man", ID_MAN, "--name", "Demo Meters")

    def register_sm(self) -> None:
        self.step("SM: key pair and CSR; the KMC registers, approves and certifies it")
        self.run(
            "sm-emulator",
            "init",
            "--state",
            "sm",
            "--id-man",
            ID_MAN,
            "--smid",
            SMID,
            "--out",
            "sm.csr",
        )
        self.run(
            "kmc",
            "sm",
            "register",
            "--csr",
            "sm.csr",
            "--kind",
            "virtual",
            "--as-manufacturer",
            ID_MAN,
        )
        self.run("kmc", "sm", "approve", SMID, "--reason", "demo")
        self.run("kmc", "sm", "cert", SMID, "--out", "sm.pem", "--with-chain")
        self.run("kmc", "ca", "root", "--out", "root.pem")
        self.run("sm-emulator", "trust", "--state", "sm", "--kmc-root", "root.pem")
        self.run("sm-emulator", "install-cert", "--state", "sm", "sm.pem")

    def add_key(self, sgc: str, krn: int, kt: int, dkga: str, ea: str, *limits: str) -> None:
        """Generate a vending key and authorise the SM for it (`limits`: --clm/--iut/... options)."""
        identity = ["--sgc", sgc, "--krn", str(krn), "--kt", str(kt)]
        self.run(
            "kmc",
            "key",
            "generate",
            *identity,
            "--dkga",
            dkga,
            "--ea",
            ea,
            "--base-date",
            "2014",
            "--ken",
            "255",
        )
        self.run("kmc", "key", "authorize", *identity, "--smid", SMID, *limits)

    def load(self, *keys: str, name: str = "load") -> None:
        """Request keys (SGC:KRN:KT, or all), have the KMC answer, load the EKLF."""
        wanted = [arg for key in keys for arg in ("--key", key)] or ["--all"]
        self.run("sm-emulator", "request", "--state", "sm", *wanted, "--out", f"{name}.vkloadreq")
        self.run(
            "kmc", "keyload", "process", "--request", f"{name}.vkloadreq", "--out", f"{name}.eklf"
        )
        self.run("sm-emulator", "load", "--state", "sm", f"{name}.eklf")

    @staticmethod
    def _key(sgc: str, krn: int, kt: int, pan: str) -> list[str]:
        return [
            "--state",
            "sm",
            "--sgc",
            sgc,
            "--krn",
            str(krn),
            "--kt",
            str(kt),
            "--pan",
            pan,
            "--ti",
            "1",
        ]

    def make_meter(self, meter: str, sgc: str, krn: int, dkga: str, ea: str, pan: str) -> None:
        """A meter manufactured with its decoder key under the default key (KT 1)."""
        key = self.run("sm-emulator", "decoder-key", *self._key(sgc, krn, 1, pan)).stdout.strip()
        self.run(
            "meter-emulator",
            "init",
            "--state",
            meter,
            "--pan",
            pan,
            "--sgc",
            sgc,
            "--ti",
            "1",
            "--krn",
            str(krn),
            "--kt",
            "1",
            "--ken",
            "255",
            "--base-date",
            "2014",
            "--dkga",
            dkga,
            "--ea",
            ea,
            "--decoder-key",
            key,
        )

    def credit(
        self,
        sgc: str,
        krn: int,
        kt: int,
        pan: str,
        amount: str,
        currency: str,
        *,
        ok: bool = True,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return self.run(
            "sm-emulator",
            "vend",
            "credit",
            *self._key(sgc, krn, kt, pan),
            "--amount",
            amount,
            "--currency",
            currency,
            ok=ok,
            env=env,
        )

    def key_change(
        self, sgc: str, krn: int, kt: int, new_krn: int, new_kt: int, pan: str
    ) -> list[str]:
        done = self.run(
            "sm-emulator",
            "vend",
            "key-change",
            *self._key(sgc, krn, kt, pan),
            "--new-sgc",
            sgc,
            "--new-krn",
            str(new_krn),
            "--new-kt",
            str(new_kt),
        )
        return done.stdout.split()

    def enter(self, meter: str, *tokens: str, ok: bool = True) -> dict[str, Any]:
        done = self.run("meter-emulator", "enter", "--state", meter, "--json", *tokens, ok=ok)
        result: dict[str, Any] = json.loads(done.stdout)
        return result

    def meter_key(self, sgc: str, pan: str, meter: str, dkga: str, ea: str) -> dict[str, Any]:
        """One meter's life: made on KT 1, moved to KT 2 KRN 1, credited, rolled to KRN 2."""
        self.step(f"Meter {pan}: manufactured on the default key (DKGA{dkga}/EA{ea})")
        self.make_meter(meter, sgc, 1, dkga, ea, pan)
        refused_default = self.credit(sgc, 1, 1, pan, "10", "1", ok=False).stderr.strip()
        self.step("Key change to the unique key; credit accepted")
        self.enter(meter, *self.key_change(sgc, 1, 1, 1, 2, pan))
        first = self.credit(sgc, 1, 2, pan, "25.6", "20").stdout.strip()
        self.enter(meter, first)
        self.step(
            "Key rollover: KRN 2 at the KMC, a new EKLF, key change, credit under the new key"
        )
        self.add_key(sgc, 2, 2, dkga, ea)
        self.load(f"{sgc}:2:2", name=f"rollover-{sgc}")
        self.enter(meter, *self.key_change(sgc, 1, 2, 2, 2, pan))
        second = self.credit(sgc, 2, 2, pan, "12.5", "10").stdout.strip()
        old = self.credit(sgc, 1, 2, pan, "5", "4").stdout.strip()
        self.enter(meter, second)
        refused_old = self.enter(meter, old, ok=False)["verdicts"][0]["reason"]
        replayed = self.enter(meter, second, ok=False)["verdicts"][0]["reason"]
        shown = json.loads(self.run("meter-emulator", "show", "--state", meter, "--json").stdout)
        return {
            "default_key_refusal": refused_default,
            "balance": shown["credit"]["electricity"],
            "krn": shown["krn"],
            "old_key_refusal": refused_old,
            "replay_refusal": replayed,
        }


def round_trip(walk: Walkthrough, ea07_tables: str | None) -> dict[str, Any]:
    """The whole round trip; returns what each meter ended with."""
    walk.set_up_kmc()
    walk.register_sm()
    walk.step("KMC: supply group, DKGA04/EA11 default and unique keys, authorisations")
    walk.run("kmc", "sgc", "add", "--sgc", SGC, "--name", "Demo supply group")
    walk.add_key(SGC, 1, 1, "04", "11")
    walk.add_key(SGC, 1, 2, "04", "11", "--clm", "1000")
    if ea07_tables:
        walk.step("KMC: a DKGA02/EA07 supply group (EA07 tables available)")
        walk.run("kmc", "sgc", "add", "--sgc", EA07_SGC, "--name", "EA07 supply group")
        walk.add_key(EA07_SGC, 1, 1, "02", "07")
        walk.add_key(EA07_SGC, 1, 2, "02", "07")
    walk.step("Key loading: VKLOADREQ → kmc keyload process → EKLF → sm-emulator load")
    walk.load()
    walk.run("sm-emulator", "keys", "--state", "sm")
    results = {"EA11": walk.meter_key(SGC, PAN, "meter", "04", "11")}
    if ea07_tables:
        walk.env["STS_EA07_TABLES"] = ea07_tables
        results["EA07"] = walk.meter_key(EA07_SGC, EA07_PAN, "meter-ea07", "02", "07")
    return results


def main() -> None:
    tables = os.environ.get("STS_EA07_TABLES") or None
    on_token = os.environ.get("KMC_KEYSTORE", "software") == "pkcs11"
    with tempfile.TemporaryDirectory(prefix="sts-demo-") as folder:
        walk = Walkthrough(Path(folder))
        try:
            if on_token:
                walk.use_softhsm()
            results = round_trip(walk, tables)
            if on_token:
                walk.show_token()
        except DemoFailed as failure:
            print(f"\ndemo failed: {failure}", file=sys.stderr)
            sys.exit(1)
    print("\n== Result")
    for algorithm, result in results.items():
        print(
            f"{algorithm} meter: balance {result['balance']} kWh on KRN {result['krn']}; "
            f"old-key token refused ({result['old_key_refusal']}), replay refused "
            f"({result['replay_refusal']})"
        )
    if not tables:
        print("EA07 part skipped: set STS_EA07_TABLES to the EA07 tables file to include it")


if __name__ == "__main__":
    main()
