"""uplink/: keep a working route to the central site over wired Ethernet, with 4G as backup.

Data flow: probes (``probe.py``) and netlink facts (``netlink.py``) feed the pure failover
policy (``policy.py``); its switches move the default route (``netlink.RouteManager``) and are
announced in ``state_dir/run/uplink.json`` (``announce.py``), which the forwarder watches to
drop its MQTT connection at once and to learn how much it may send over 4G (``budget.py``).
"""

from edge.uplink.config import UplinkConfig, parse_uplink_config

__all__ = ["UplinkConfig", "parse_uplink_config"]
