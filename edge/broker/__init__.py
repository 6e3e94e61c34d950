"""The central MQTT broker's configuration, shipped with the code: a Mosquitto 2.0 template
(``mosquitto.conf``), the fleet ACL (``edge.acl``) and ``render_broker_config`` that fills
them in. The comments in both files explain each choice."""

from edge.broker.render import (
    ACL_FILE_NAME,
    CONFIG_FILE_NAME,
    BrokerConfigError,
    acl_text,
    render_broker_config,
    template_text,
)

__all__ = [
    "ACL_FILE_NAME",
    "CONFIG_FILE_NAME",
    "BrokerConfigError",
    "acl_text",
    "render_broker_config",
    "template_text",
]
