"""Exposure of each systemd unit as ``systemd-analyze security --offline=true`` scores it
(0 = locked down, 10 = unprotected), with the reason for every point that remains.

    .venv/bin/python bench/deploy_security.py > bench/results/deploy.md

Not a speed benchmark: the figure the lead copies into README/BENCHMARKS. The unit files
are copied with /opt/edge/bin pointing at this venv, as systemd-analyze wants the
executables to exist.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# why each remaining exposure is there (keys as systemd-analyze names them)
WHY = {
    "RootDirectory=/RootImage=": "runs from the host's root file system: a separate image per "
    "program would double the SD card footprint; ProtectSystem=strict makes it read-only",
    "RestrictAddressFamilies=~AF_UNIX": "journal logging and sd_notify are AF_UNIX",
    "RestrictAddressFamilies=~AF_(INET|INET6)": "the program's job is networking (LAN "
    "intake, MQTT to the central site, probes)",
    "RestrictAddressFamilies=~AF_NETLINK": "uplink: route switching and link events",
    "PrivateNetwork=": "needs the host's network (same reason)",
    "IPAddressDeny=": "no IP allow-list: intake serves whatever LAN range the office has, "
    "forward/uplink/central reach the central site over changing 4G/Ethernet addresses; a "
    "site can add IPAddressAllow= in a drop-in",
    "DeviceAllow=": "systemd's built-in char-rtc:r read access (panel: plus the GPIO "
    "character devices, and nothing else)",
    "AmbientCapabilities=": "uplink: CAP_NET_ADMIN, the one capability it needs",
    "CapabilityBoundingSet=~CAP_NET_ADMIN": "uplink: route changes over netlink",
    "PrivateUsers=": "uplink: its CAP_NET_ADMIN must count in the host user namespace; "
    "panel: the supplementary group gpio would not be mapped",
    "SupplementaryGroups=": "panel: group gpio for /dev/gpiomem and /dev/gpiochip*",
    "PrivateDevices=": "panel: needs the GPIO devices (DevicePolicy=closed + DeviceAllow= "
    "limit it to those)",
}


def main() -> int:
    analyze = "systemd-analyze"
    venv_bin = Path(sys.executable).parent
    version = subprocess.run([analyze, "--version"], capture_output=True, text=True,
                             check=True).stdout.splitlines()[0]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for src in sorted((REPO / "systemd").glob("*.service")):
            dst = Path(tmp) / src.name
            dst.write_text(src.read_text().replace("/opt/edge/bin/", f"{venv_bin}/"))
            out = subprocess.run([analyze, "security", "--offline=true", "--no-pager",
                                  str(dst)], capture_output=True, text=True).stdout
            m = re.search(r"Overall exposure level for \S+: (\d+\.\d) (\w+)", out)
            assert m, out
            open_items = []
            for line in out.splitlines():
                if line.startswith("✗"):
                    parts = re.split(r"\s{2,}", line[1:].strip())
                    open_items.append((parts[0], parts[-1]))
            rows.append((src.name, m.group(1), m.group(2), open_items))
    print("# Deployment: systemd unit exposure\n")
    print(f"Command: `.venv/bin/python bench/deploy_security.py` ({version}, "
          "`systemd-analyze security --offline=true`; 0 = locked down, 10 = unprotected; "
          "≤ 2.5 is rated OK/SAFE).\n")
    print("| unit | exposure | rating |")
    print("|---|---|---|")
    for name, score, rating, _ in rows:
        print(f"| `{name}` | {score} | {rating} |")
    print("\n## What remains, and why\n")
    for name, score, _, items in rows:
        print(f"### `{name}` ({score})\n")
        for key, points in items:
            print(f"- `{key}` ({points}): {WHY.get(key, 'not explained yet: explain it')}")
        print()
    print("""## How the sandbox was checked beyond the score

`tests/deploy/test_systemd_boot.py` boots this machine's root (tmpfs overlay) in
systemd-nspawn with systemd as PID 1, runs `provisioning/install.sh` for real inside, then:
`edge intake` under `edge-intake.service` takes a 300 kB recording over HTTP and seals it
(ML-KEM-768+X25519, SQLite WAL, fsync) with MemoryDenyWriteExecute=, the seccomp filter,
PrivateUsers= and ProtectSystem=strict in force (main process: NoNewPrivs 1, Seccomp 2,
CapEff 0); forward/uplink/panel units run a probe in place of their programs (not merged
yet) that checks writable paths, address families, capabilities (uplink: exactly
CAP_NET_ADMIN), W+X mmap refused, cryptography working, sd_notify READY/STATUS, and that
the watchdog kills and restarts a probe that stops pinging.
""")
    return 0


if __name__ == "__main__":
    sys.exit(main())
