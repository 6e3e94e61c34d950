"""Office edge appliance for e-KTP enrolment.

Data flow, one folder per part:

    workstation --HTTP PUT--> intake/ --seal/--> spool/ --forward/ (MQTT)--> central/
                                                   ^                             |
                                                   +------ signed receipt -------+

uplink/ keeps a working route to the central site, panel/ shows staff what is going on,
provision/ turns a blank Pi into an enrolled appliance.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
