"""Central ops tools: fleet init, one-time enrolment codes and bundles, the enrolment
service on the claim channel, offline CSR signing, revocation and the daily CRL refresh.

    layout  = init_central(DIR, broker_host="mqtt.central.example")   # edge-central init
    central = Central(load_layout(DIR))
    issued  = central.issue_code("kec-3171-01", "Kecamatan Menteng")   # edge-central enrol
    EnrolService(central).run(stop)                                   # edge-central enrol-service
    central.revoke_device("kec-3171-01")                              # edge-central revoke
"""

from edge.central.ops.authority import Central, IssuedCode
from edge.central.ops.errors import CodeRefused, OpsError
from edge.central.ops.init import init_central
from edge.central.ops.layout import CentralLayout, load_layout, parse_duration

__all__ = [
    "Central",
    "CentralLayout",
    "CodeRefused",
    "IssuedCode",
    "OpsError",
    "init_central",
    "load_layout",
    "parse_duration",
]
