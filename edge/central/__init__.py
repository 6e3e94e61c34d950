"""The central site: opens sealed recordings, receives forwarded ones, issues custody
receipts, and watches the fleet. Private keys used here never go to an appliance."""

__all__: list[str] = []
