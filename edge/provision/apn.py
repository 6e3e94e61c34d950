"""The 4G modem's APN, set through NetworkManager where the image has it.

Place in the data flow: a provisioning step. The uplink manager (``edge uplink``) decides
*when* 4G carries traffic; NetworkManager only has to bring the modem up with the right
access point name. One connection profile, ``edge-4g``, made once and modified on later
runs (``nmcli connection add`` twice would make two profiles fighting for the modem).
Raspberry Pi OS Bookworm ships NetworkManager; an image without it (or with it stopped)
is reported, not failed: the APN then goes into the modem's own settings or ModemManager
by hand (docs/provisioning.md).
"""

from __future__ import annotations

import re

from edge.provision.host import Host

__all__ = ["CONNECTION_NAME", "configure_apn"]

CONNECTION_NAME = "edge-4g"
_APN_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,99}$")


def configure_apn(host: Host, apn: str) -> tuple[bool, str]:
    """(done?, what happened) — never raises for a missing NetworkManager."""
    if not _APN_RE.match(apn):
        return False, (f"APN {apn!r} is not a valid access point name (letters, digits, "
                       "'.', '-'); pass the operator's APN with --apn")
    if host.staging:
        host.run(["nmcli", "connection", "add", "type", "gsm", "ifname", "*", "con-name",
                  CONNECTION_NAME, "apn", apn, "connection.autoconnect", "yes"],
                 plan_note=f"(if NetworkManager is present; 'nmcli connection modify "
                           f"{CONNECTION_NAME} gsm.apn {apn}' if the profile exists)")
        return True, f"4G APN {apn} planned (NetworkManager profile {CONNECTION_NAME})"
    if not host.has_command("nmcli"):
        return False, ("NetworkManager is not installed: set the 4G APN "
                       f"{apn!r} in the modem's settings by hand (docs/provisioning.md)")
    state = (host.run(["nmcli", "-t", "-f", "RUNNING", "general"]) or "").strip()
    if state != "running":
        return False, (f"NetworkManager is not running ({state or 'no answer'}): start it "
                       f"(systemctl start NetworkManager) and run provisioning again, or set "
                       f"the APN {apn!r} by hand")
    names = (host.run(["nmcli", "-t", "-f", "NAME", "connection", "show"]) or "").splitlines()
    if CONNECTION_NAME in names:
        host.run(["nmcli", "connection", "modify", CONNECTION_NAME, "gsm.apn", apn])
        return True, f"4G APN set to {apn} (profile {CONNECTION_NAME} updated)"
    host.run(["nmcli", "connection", "add", "type", "gsm", "ifname", "*", "con-name",
              CONNECTION_NAME, "apn", apn, "connection.autoconnect", "yes"])
    return True, f"4G APN set to {apn} (profile {CONNECTION_NAME} added)"
