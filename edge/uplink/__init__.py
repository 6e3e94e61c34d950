"""uplink/: keep a working route to the central site over wired Ethernet, with 4G as backup.

Data flow: probes (``probe.py``) and netlink facts (``netlink.py``) feed the pure failover
policy (``policy.py``); its switches move the default route (``netlink.RouteManager``) and are
announced in ``state_dir/run/uplink.json`` (``announce.py``), which the forwarder watches to
drop its MQTT connection at once and to learn how much it may send over 4G (``budget.py``).

For the forwarder: ``UplinkWatcher(run_dir)`` with ``.on_change(cb)`` or ``.poll(timeout)``,
and ``watcher.current.allowed`` ("all", "priority_only" or "telemetry_only").
"""

from edge.uplink.announce import UplinkChange, UplinkState, UplinkWatcher, read_status
from edge.uplink.config import UplinkConfig, parse_uplink_config

__all__ = [
    "UplinkChange",
    "UplinkConfig",
    "UplinkState",
    "UplinkWatcher",
    "parse_uplink_config",
    "read_status",
]
